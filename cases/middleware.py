"""Automatic logoff after a period without user activity.

Background refreshes (worklist and status polling) send the
``X-Pneumo-Background`` header and do not count as activity, so an open page
that polls still logs out an absent user.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import logout
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, resolve_url

SESSION_KEY = "pneumo_last_activity"
# Writing the session on every request would cost a database write per poll.
WRITE_EVERY_SECONDS = 15


def is_background(request: HttpRequest) -> bool:
    return request.headers.get("X-Pneumo-Background") == "1"


class IdleLogoutMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        if request.user.is_authenticated and hasattr(request, "session") and "HTTP_AUTHORIZATION" not in request.META:
            expired = self._check(request)
            if expired is not None:
                return expired
        return self.get_response(request)

    def _check(self, request: HttpRequest) -> HttpResponse | None:
        now = time.time()
        last = request.session.get(SESSION_KEY, now)
        if now - last > settings.PNEUMO_IDLE_LOGOUT_SECONDS:
            logout(request)
            if is_background(request) or request.path.startswith("/api/"):
                return JsonResponse({"detail": "Logged out after inactivity."}, status=401)
            return redirect(f"{resolve_url(settings.LOGIN_URL)}?idle=1")
        if not is_background(request) and (now - last > WRITE_EVERY_SECONDS or SESSION_KEY not in request.session):
            request.session[SESSION_KEY] = now
        return None
