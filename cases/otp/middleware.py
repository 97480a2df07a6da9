"""An admin's session reaches no page without a verified second factor (after django_otp's OTPMiddleware)."""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils.http import urlencode

from cases.otp.services import second_factor_required, totp_enrolled

# Pages an unverified admin may still open: logging in and out, and the second factor's own pages.
OPEN_URL_NAMES = ("login", "logout", "otp_verify", "otp_enrol", "sso_login", "sso_callback", "health", "favicon")
API_PREFIXES = ("/api/", "/dicomweb/")


class StaffSecondFactorMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response
        self._open_paths: frozenset[str] | None = None

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = request.user
        if not user.is_authenticated or user.is_verified() or request.path in self.open_paths():
            return self.get_response(request)
        if not second_factor_required(user=user):
            return self.get_response(request)
        if request.path.startswith(API_PREFIXES):
            # A browser session of an admin; tokens (checked in the views) already needed the code.
            detail = "An administrator's session needs its second factor: verify it on the web page first."
            return JsonResponse({"detail": detail, "otp_required": True}, status=403)
        page = "otp_verify" if totp_enrolled(user=user) else "otp_enrol"
        return redirect(f"{reverse(page)}?{urlencode({'next': request.get_full_path()})}")

    def open_paths(self) -> frozenset[str]:
        if self._open_paths is None:  # reversed at the first request: URLconfs are not ready at start-up
            self._open_paths = frozenset(reverse(name) for name in OPEN_URL_NAMES)
        return self._open_paths
