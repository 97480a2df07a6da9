"""``Authorization: Token <key>`` with expiring, hashed tokens (see ``cases.api.tokens``)."""

from __future__ import annotations

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.request import Request

from cases.api.tokens import token_for_key
from cases.models import ApiToken, User

KEYWORD = "Token"


class ExpiringTokenAuthentication(BaseAuthentication):
    """Listed first, so that an anonymous call gets 401 with ``WWW-Authenticate: Token``."""

    def authenticate(self, request: Request) -> tuple[User, ApiToken] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != KEYWORD.lower().encode():
            return None  # another scheme, or none: session authentication may still apply
        if len(parts) != 2:
            raise exceptions.AuthenticationFailed("Invalid token header: send 'Token <token>'.")
        try:
            key = parts[1].decode("ascii")
        except UnicodeDecodeError as exc:
            raise exceptions.AuthenticationFailed("Invalid token header: send 'Token <token>'.") from exc
        token = token_for_key(key=key)
        if token is None:
            raise exceptions.AuthenticationFailed("Invalid or expired token.")
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return KEYWORD
