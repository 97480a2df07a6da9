"""API tokens (services and their one read): only a token's sha256 is stored, and it expires.

The clear token is shown once, in the response that creates it. A leaked
database therefore yields no usable token, and a leaked token stops working
after ``PNEUMO_API_TOKEN_HOURS``.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone

from cases.audit import audit_record
from cases.models import ApiToken, User

PREFIX_LENGTH = 8
# Writing last_used_at on every request would cost a database write per call.
TOUCH_EVERY = timedelta(minutes=1)


def token_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def token_lifetime() -> timedelta:
    return timedelta(hours=settings.PNEUMO_API_TOKEN_HOURS)


def token_create(*, user: User, request: HttpRequest | None = None) -> tuple[str, ApiToken]:
    """A new token for ``user``: returns the clear key (never stored) and its row.

    The user's expired tokens go at the same time, so the table holds live tokens only.
    """
    ApiToken.objects.filter(user=user, expires_at__lte=timezone.now()).delete()
    key = secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user, key_hash=token_hash(key), prefix=key[:PREFIX_LENGTH], expires_at=timezone.now() + token_lifetime()
    )
    audit_record(action="api_token_create", user=user, obj=token, request=request, prefix=token.prefix)
    return key, token


def token_revoke(*, token: ApiToken, request: HttpRequest | None = None) -> None:
    audit_record(action="api_token_revoke", user=token.user, obj=token, request=request, prefix=token.prefix)
    ApiToken.objects.filter(pk=token.pk).delete()


def token_for_key(*, key: str) -> ApiToken | None:
    """The live token with this key, its user loaded, or None (unknown, expired or inactive user)."""
    token = (
        ApiToken.objects.select_related("user")
        .filter(key_hash=token_hash(key), expires_at__gt=timezone.now(), user__is_active=True)
        .first()
    )
    if token is not None:
        _token_touch(token)
    return token


def _token_touch(token: ApiToken) -> None:
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > TOUCH_EVERY:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
