"""API tokens (services and their one read): only a token's sha256 is stored, and it expires.

The clear token is shown once, in the response that creates it. A leaked
database therefore yields no usable token, and a leaked token stops working
after ``PNEUMO_API_TOKEN_HOURS``. A token also ends when its user's password
changes, by whatever path (admin, ``changepassword``, shell): it records a
keyed hash of the password hash it was made under, as Django's sessions do,
and a token whose fingerprint no longer matches is deleted on its next use.
Deactivating a user deletes the user's tokens at once (``tokens_revoke_all``).
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from django.conf import settings
from django.http import HttpRequest
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac

from cases.audit import audit_record
from cases.models import ApiToken, User

PREFIX_LENGTH = 8
# Writing last_used_at on every request would cost a database write per call.
TOUCH_EVERY = timedelta(minutes=1)


def token_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def credentials_fingerprint(user: User) -> str:
    """Changes whenever the user's password does; reveals nothing about it without SECRET_KEY."""
    return salted_hmac("pneumo.api-token", user.password, algorithm="sha256").hexdigest()


def token_lifetime() -> timedelta:
    return timedelta(hours=settings.PNEUMO_API_TOKEN_HOURS)


def token_create(*, user: User, request: HttpRequest | None = None) -> tuple[str, ApiToken]:
    """A new token for ``user``: returns the clear key (never stored) and its row.

    The user's expired tokens go at the same time, so the table holds live tokens only.
    """
    ApiToken.objects.filter(user=user, expires_at__lte=timezone.now()).delete()
    key = secrets.token_urlsafe(32)
    token = ApiToken.objects.create(
        user=user,
        key_hash=token_hash(key),
        prefix=key[:PREFIX_LENGTH],
        expires_at=timezone.now() + token_lifetime(),
        credentials_fingerprint=credentials_fingerprint(user),
    )
    audit_record(action="api_token_create", user=user, obj=token, request=request, prefix=token.prefix)
    return key, token


def token_revoke(
    *, token: ApiToken, request: HttpRequest | None = None, by: User | None = None, reason: str = "signed_out"
) -> None:
    """End one token; ``by`` is who ended it (the owner signing out, or an admin)."""
    audit_record(
        action="api_token_revoke",
        user=by or token.user,
        obj=token,
        request=request,
        prefix=token.prefix,
        owner_id=token.user_id,
        reason=reason,
    )
    ApiToken.objects.filter(pk=token.pk).delete()


def tokens_revoke_all(*, user: User, reason: str, by: User | None = None, request: HttpRequest | None = None) -> int:
    """End every token of ``user`` (password changed, account deactivated); audited when there were any."""
    count, _ = ApiToken.objects.filter(user=user).delete()
    if count:
        audit_record(action="api_tokens_revoke_all", user=by, obj=user, request=request, count=count, reason=reason)
    return count


def token_for_key(*, key: str) -> ApiToken | None:
    """The live token with this key, its user loaded, or None (unknown, expired or inactive user)."""
    token = (
        ApiToken.objects.select_related("user")
        .filter(key_hash=token_hash(key), expires_at__gt=timezone.now(), user__is_active=True)
        .first()
    )
    if token is None:
        return None
    if not constant_time_compare(token.credentials_fingerprint, credentials_fingerprint(token.user)):
        # The password changed since the token was made (or it predates fingerprints): it is over.
        token_revoke(token=token, by=None, reason="password_changed")
        return None
    _token_touch(token)
    return token


def _token_touch(token: ApiToken) -> None:
    now = timezone.now()
    if token.last_used_at is None or now - token.last_used_at > TOUCH_EVERY:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now)
        token.last_used_at = now
