from __future__ import annotations

from django.conf import settings
from django.http import HttpRequest


def roles(request: HttpRequest) -> dict:
    user = getattr(request, "user", None)
    authenticated = bool(user and user.is_authenticated)
    return {
        "SITE_NAME": settings.SITE_NAME,
        "is_technician": authenticated and user.is_technician,
        "is_radiologist": authenticated and user.is_radiologist,
        "is_admin": authenticated and user.is_staff,
        "idle_logout_seconds": settings.PNEUMO_IDLE_LOGOUT_SECONDS,
    }
