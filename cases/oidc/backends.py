"""Who may log in how: local passwords (perhaps for admins only) and sessions opened by single sign-on."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib.auth.backends import ModelBackend


def local_login_allowed(*, user: Any) -> bool:
    """``PNEUMO_LOCAL_LOGIN=admins`` keeps passwords for break-glass admin accounts only."""
    return settings.PNEUMO_LOCAL_LOGIN == "all" or bool(user.is_staff)


class LocalPasswordBackend(ModelBackend):
    """Django's username and password check, for the login page and the token endpoint alike."""

    def authenticate(self, request: Any, username: str | None = None, password: str | None = None, **kwargs: Any):
        user = super().authenticate(request, username=username, password=password, **kwargs)
        return user if user is not None and local_login_allowed(user=user) else None


class SsoBackend(ModelBackend):
    """Keeps sessions that the SSO callback opened; it never checks a password itself."""

    def authenticate(self, request: Any, **credentials: Any) -> None:
        return None
