from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest

from cases import selectors


def roles(request: HttpRequest) -> dict:
    """What the navigation offers: the same role selectors the views and the API check."""
    user = getattr(request, "user", None)
    signed_in = bool(user and user.is_authenticated)
    return {
        "SITE_NAME": settings.SITE_NAME,
        "can_upload": signed_in and selectors.user_can_upload(user=user),
        "can_read_worklist": signed_in and selectors.user_can_read_worklist(user=user),
        "can_see_stats": signed_in and selectors.user_can_see_stats(user=user),
        "is_admin": signed_in and selectors.user_is_admin(user=user),
        "role_label": selectors.user_role_label(user=user) if signed_in else "",
        "idle_logout_seconds": settings.PNEUMO_IDLE_LOGOUT_SECONDS,
    }
