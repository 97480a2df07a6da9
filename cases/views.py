from __future__ import annotations

import time

from django.contrib.auth.decorators import login_required
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

from cases import selectors
from inference.broker import broker_ping, workers_alive

_HEALTH_CACHE: dict[str, tuple[float, object]] = {}
_HEALTH_TTL = 2.0


def _cached(key: str, compute) -> object:
    # /health/ is polled by load balancers: Redis is asked at most every 2 s.
    now = time.monotonic()
    hit = _HEALTH_CACHE.get(key)
    if hit and now - hit[0] < _HEALTH_TTL:
        return hit[1]
    value = compute()
    _HEALTH_CACHE[key] = (now, value)
    return value


def _database_ok() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:  # noqa: BLE001 - any database error means "not reachable"
        return False


@require_GET
@never_cache
def health(request: HttpRequest) -> JsonResponse:
    database = _database_ok()
    broker = bool(_cached("broker", broker_ping))
    workers = _cached("workers", workers_alive) if broker else []
    body = {
        "status": "ok" if database and broker and workers else ("degraded" if database else "down"),
        "database": database,
        "broker": broker,
        "workers": len(workers),
        "worker_ready": bool(workers),
    }
    return JsonResponse(body, status=200 if database else 503)


@login_required
def home(request: HttpRequest) -> HttpResponse:
    return redirect(selectors.user_home_url_name(user=request.user))


@login_required
def placeholder(request: HttpRequest, title: str) -> HttpResponse:
    return render(request, "cases/placeholder.html", {"title": title})
