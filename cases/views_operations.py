"""The admins' operations console: thin views over ``cases.operations``."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_POST

from cases import operations, selectors
from cases.models import Site


def _require_admin(request: HttpRequest) -> None:
    if not selectors.user_is_admin(user=request.user):
        raise PermissionDenied("The operations console is for admins.")


def _page(request: HttpRequest, *, error: str = "", status: int = 200) -> HttpResponse:
    now = timezone.now()
    context = {
        "queue": operations.prediction_queue()[:500],
        "sites": selectors.sites_for_user(user=request.user).select_related("ai_paused_by").order_by("code"),
        "sources": operations.sources_last_received(now=now),
        "error": error,
    }
    return render(request, "operations/console.html", context, status=status)


@login_required
@require_GET
def operations_page(request: HttpRequest) -> HttpResponse:
    _require_admin(request)
    return _page(request)


def _posted_id(request: HttpRequest, name: str) -> int | None:
    return selectors.as_id(request.POST.get(name, ""))


def _prediction_action(request: HttpRequest, action) -> HttpResponse:
    _require_admin(request)
    prediction_id = _posted_id(request, "prediction")
    if prediction_id is None:
        return _page(request, error="No prediction was chosen.", status=400)
    try:
        action(prediction_id=prediction_id, user=request.user, request=request)
    except operations.OperationRefused as refused:
        return _page(request, error=str(refused), status=409)
    return redirect("operations")


@login_required
@require_POST
def prediction_retry(request: HttpRequest) -> HttpResponse:
    return _prediction_action(request, operations.prediction_retry)


@login_required
@require_POST
def prediction_cancel(request: HttpRequest) -> HttpResponse:
    return _prediction_action(request, operations.prediction_cancel)


def _site_action(request: HttpRequest, action) -> HttpResponse:
    _require_admin(request)
    site_id = _posted_id(request, "site")
    if site_id is None:
        return _page(request, error="No site was chosen.", status=400)
    action(site=get_object_or_404(Site, pk=site_id), user=request.user, request=request)
    return redirect("operations")


@login_required
@require_POST
def site_pause(request: HttpRequest) -> HttpResponse:
    return _site_action(request, operations.site_ai_pause)


@login_required
@require_POST
def site_resume(request: HttpRequest) -> HttpResponse:
    return _site_action(request, operations.site_ai_resume)


@login_required
@require_GET
def study_timeline(request: HttpRequest, pk: int) -> HttpResponse:
    # Another site's study is 404 before the role is asked, as on every page with an object.
    study = selectors.study_for_user(user=request.user, pk=pk)
    _require_admin(request)
    steps = operations.study_timeline(study=study)
    return render(request, "operations/timeline.html", {"study": study, "steps": steps})
