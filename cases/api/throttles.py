"""Per-user rate limits, counted in the default cache (local memory: they work while Redis is down).

Rates come from ``REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]`` (read from the
environment in settings); the defaults below apply when a scope is missing.
"""

from __future__ import annotations

from rest_framework.request import Request
from rest_framework.settings import api_settings
from rest_framework.throttling import SimpleRateThrottle, UserRateThrottle

DEFAULT_RATES = {"api": "1000/min", "api_upload": "120/min", "api_token": "30/min"}


class _ConfiguredRate:
    scope: str

    def get_rate(self) -> str:
        # Read at call time, not import time, so that settings overrides apply.
        rates = api_settings.DEFAULT_THROTTLE_RATES or {}
        return rates.get(self.scope) or DEFAULT_RATES[self.scope]

    def get_ident(self, request: Request) -> str:
        # DRF trusts a client's X-Forwarded-For unless NUM_PROXIES is set: anyone could then
        # pick a fresh address per request. Without a configured proxy count, the peer address counts.
        if api_settings.NUM_PROXIES is None:
            return request.META.get("REMOTE_ADDR", "")
        return super().get_ident(request)


class ApiUserThrottle(_ConfiguredRate, UserRateThrottle):
    """Every API call, per user (per IP address for anonymous calls)."""

    scope = "api"


class UploadThrottle(_ConfiguredRate, UserRateThrottle):
    """Uploads, per user: each one decodes files in a subprocess."""

    scope = "api_upload"

    def allow_request(self, request, view) -> bool:
        return request.method != "POST" or super().allow_request(request, view)


class TokenThrottle(_ConfiguredRate, SimpleRateThrottle):
    """Sign-ins, per client IP address (the caller is not yet known); axes locks accounts besides."""

    scope = "api_token"

    def get_cache_key(self, request, view) -> str:
        return self.cache_format % {"scope": self.scope, "ident": self.get_ident(request)}
