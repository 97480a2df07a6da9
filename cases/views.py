from __future__ import annotations

import time

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db import connection
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_POST

from cases import selectors
from cases.audit import audit_record
from cases.downloads import image_download
from cases.edges import upload_ingest, upload_result
from cases.forms import UploadForm
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
    if value:  # a bad answer is asked again next time, so recovery shows at once
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


# --- Upload ---------------------------------------------------------------------------


def _upload_allowed(request: HttpRequest) -> None:
    if not selectors.user_can_upload(user=request.user):
        raise PermissionDenied("Only technicians and admins upload studies.")


@login_required
def upload(request: HttpRequest) -> HttpResponse:
    _upload_allowed(request)
    form = UploadForm(user=request.user)
    return render(request, "cases/upload.html", {"form": form, "max_upload_mb": settings.PNEUMO_MAX_UPLOAD_BYTES >> 20})


@login_required
@require_POST
def upload_files(request: HttpRequest) -> JsonResponse:
    """Store the posted files; one JSON line per file: stored, duplicate, refused or skipped, and why."""
    _upload_allowed(request)
    form = UploadForm(request.POST, user=request.user)
    if not form.is_valid():
        return JsonResponse({"detail": "Invalid upload form", "errors": form.errors}, status=400)
    files = request.FILES.getlist("files")
    if not files:
        return JsonResponse({"detail": "No file was sent"}, status=400)
    report = upload_ingest(request=request, files=files, fields=form.cleaned_data, site=form.cleaned_data["site"])
    return JsonResponse(upload_result(report), status=200 if report.accepted else 400)


# --- Studies (every role) ---------------------------------------------------------------


@login_required
def studies(request: HttpRequest) -> HttpResponse:
    page = Paginator(selectors.study_rows_for_user(user=request.user), 50).get_page(request.GET.get("page"))
    audit_record(action="list_studies", user=request.user, request=request, page=page.number)
    return render(request, "cases/studies.html", {"page": page})


@login_required
@require_GET
def study_statuses(request: HttpRequest) -> JsonResponse:
    """Polled by open pages (marked as background requests, not user activity)."""
    ids = [int(i) for i in request.GET.get("ids", "").split(",") if i.strip().isdigit()][:200]
    rows = selectors.study_rows_for_user(user=request.user).filter(pk__in=ids)
    return JsonResponse({"studies": [selectors.study_status_json(study=s) for s in rows]})


@login_required
def image_file(request: HttpRequest, pk: int) -> HttpResponse:
    return image_download(request=request, pk=pk)


@require_GET
@never_cache
def metrics(request: HttpRequest) -> HttpResponse:
    """Prometheus scrape: ``Authorization: Bearer $PNEUMO_METRICS_TOKEN``, or an admin's session."""
    token = settings.PNEUMO_METRICS_TOKEN
    bearer = request.headers.get("Authorization", "") == f"Bearer {token}" if token else False
    if not (bearer or selectors.user_is_admin(user=request.user)):
        return HttpResponse(status=404)
    from prometheus_client import CONTENT_TYPE_LATEST

    from inference.metrics import metrics_text

    return HttpResponse(metrics_text(), content_type=CONTENT_TYPE_LATEST)
