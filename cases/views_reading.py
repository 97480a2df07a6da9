"""Reading pages: the worklist, the study page and its viewer, signing, the printable report,
the dashboard, and the image renders they show.

Every view fetches what it shows through a selector first (another site's
study is a 404) and calls one service for what it changes. Patient data never
travels in a URL: the worklist search is POSTed and kept in the session.
"""

from __future__ import annotations

from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.template.loader import render_to_string
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from cases import pictures, reviews, selectors
from cases.ai_modes import study_ai_hidden_from, study_ai_shadowed
from cases.audit import audit_record
from cases.downloads import purged_response
from cases.drift import drift_alarms_open_for_user
from cases.edges import drawn, heatmap_viewed, image_viewed, no_store, png_response, review_error_status
from cases.imaging.age import age_statement
from cases.models import Finding, Image, OverruleReason, Priority, Review, Site, Study, User
from cases.retention import retention_notice
from cases.reviews import ReadingInput, ReviewError
from cases.states import REVIEWABLE, StudyStatus
from cases.stats import daily_chart, dashboard_stats
from cases.worklist import (
    DEFAULT_PAGE_SIZE,
    PAGE_SIZES,
    WorklistFilters,
    lane_counts,
    rows_fingerprint,
    waiting_text,
    worklist_alerts,
    worklist_change_token,
    worklist_filters_from,
    worklist_for_user,
    worklist_row,
)
from inference.display import domain_label, prediction_shown, study_is_muted
from inference.models import Prediction, PredictionStatus
from inference.registry import active_model_versions
from inference.selectors import prediction_has_heatmap, predictions_current_by_image, study_ai_prediction

FILTERS_SESSION_KEY = "pneumo_worklist_filters"
POLL_SECONDS = 1  # the version check is one indexed query; rows are fetched only on change
TOUCH_SECONDS = 60


# --- Worklist ---------------------------------------------------------------------------


class WorklistFilterForm(forms.Form):
    status = forms.ChoiceField(
        choices=[("", "Any status")] + [(s.value, s.label) for s in StudyStatus if s in REVIEWABLE], required=False
    )
    site = forms.TypedChoiceField(coerce=int, required=False, empty_value=None)
    priority = forms.ChoiceField(choices=[("", "Any priority"), *Priority.choices], required=False)
    flagged = forms.TypedChoiceField(
        choices=[("", "AI: any"), ("yes", "AI-flagged"), ("no", "Not flagged")],
        coerce=lambda value: value == "yes",
        empty_value=None,
        required=False,
    )
    date_from = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    date_to = forms.DateField(required=False, widget=forms.DateInput(attrs={"type": "date"}))
    search = forms.CharField(max_length=100, required=False, strip=True)
    per_page = forms.TypedChoiceField(
        coerce=int, choices=[(n, f"{n} per page") for n in PAGE_SIZES], initial=DEFAULT_PAGE_SIZE, required=False
    )

    def __init__(self, *args, sites, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.fields["site"].choices = [("", "All my sites")] + [(s.pk, s.code) for s in sites]

    def worklist_filters(self) -> WorklistFilters:
        return worklist_filters_from(self.cleaned_data if self.is_valid() else {})

    def page_size(self) -> int:
        return (self.cleaned_data.get("per_page") if self.is_valid() else None) or DEFAULT_PAGE_SIZE


def _worklist_allowed(user: User) -> None:
    if not selectors.user_can_read_worklist(user=user):
        raise PermissionDenied("The worklist is for radiologists and admins.")


def _filter_form(request: HttpRequest, data: dict | None = None) -> WorklistFilterForm:
    if data is None:
        data = {"per_page": str(DEFAULT_PAGE_SIZE)} | request.session.get(FILTERS_SESSION_KEY, {})
    return WorklistFilterForm(data, sites=list(selectors.sites_for_user(user=request.user)))


def _worklist_page(request: HttpRequest, form: WorklistFilterForm) -> tuple[Page, list]:
    studies = worklist_for_user(user=request.user, filters=form.worklist_filters())
    page = Paginator(studies, form.page_size()).get_page(request.GET.get("page"))
    now = timezone.now()
    return page, [worklist_row(study, now=now) for study in page]


def _rows_context(form: WorklistFilterForm, rows: list) -> dict:
    # One tick on the probability bars when one threshold applies to every row (one active version).
    actives = list(active_model_versions().values())
    return {
        "rows": rows,
        "threshold_pct": round(actives[0].threshold * 100) if len(actives) == 1 else None,
        "sites_count": len(form.fields["site"].choices) - 1,
        "filters_active": form.worklist_filters().active,
    }


@login_required
@require_http_methods(["GET", "POST"])
def worklist(request: HttpRequest) -> HttpResponse:
    _worklist_allowed(request.user)
    if request.method == "POST":
        return _worklist_filters_save(request)
    form = _filter_form(request)
    page, rows = _worklist_page(request, form)
    audit_record(action="view_worklist", user=request.user, request=request, page=page.number)
    context = _rows_context(form, rows) | {
        "form": form,
        "page": page,
        "lanes": lane_counts(user=request.user),
        "poll_seconds": POLL_SECONDS,
        "version": worklist_change_token(user=request.user),
        "now": timezone.now(),
        "alerts_enabled": selectors.user_can_review(user=request.user),
    }
    return no_store(render(request, "reading/worklist.html", context))


def _worklist_filters_save(request: HttpRequest) -> HttpResponse:
    """Post/redirect/get: the filters, search words included, stay in the session, never in a URL."""
    if "clear" in request.POST:
        request.session.pop(FILTERS_SESSION_KEY, None)
        return redirect("worklist")
    form = _filter_form(request, request.POST)
    if form.is_valid():
        request.session[FILTERS_SESSION_KEY] = {k: v for k, v in request.POST.items() if k in form.fields}
    else:
        messages.error(request, "Some filters were not understood and were left out.")
    return redirect("worklist")


@login_required
@require_GET
@never_cache
def worklist_version(request: HttpRequest) -> JsonResponse:
    """Polled every second (as a background request): one indexed query that says whether anything changed.

    The page fetches its rows only when this changes, so results show within
    about a second without re-running the worklist's queries each second.
    """
    _worklist_allowed(request.user)
    return JsonResponse({"version": worklist_change_token(user=request.user)})


@login_required
@require_GET
@never_cache
def worklist_rows(request: HttpRequest) -> JsonResponse:
    """Polled by the worklist page (as a background request): fresh rows, lane counts and alerts."""
    _worklist_allowed(request.user)
    form = _filter_form(request)
    page, rows = _worklist_page(request, form)
    now = timezone.now()
    since = parse_datetime(request.GET.get("since", "")) or now
    alerts = worklist_alerts(user=request.user, since=since) if selectors.user_can_review(user=request.user) else []
    fingerprint = rows_fingerprint(rows)
    # Rendering is most of a poll's cost: skip it when the page looks the same as last time.
    unchanged = request.GET.get("fp") == fingerprint
    html = None if unchanged else render_to_string("reading/_worklist_rows.html", _rows_context(form, rows))
    return JsonResponse(
        {
            "html": html,
            "fp": fingerprint,
            "lanes": lane_counts(user=request.user),
            "count": page.paginator.count,
            "page": page.number,
            "num_pages": page.paginator.num_pages,
            "now": now.isoformat(),
            "ids": [row.study.pk for row in rows],
            "alerts": [_alert_json(study) for study in alerts],
        }
    )


def _alert_json(study: Study) -> dict:
    return {
        "id": study.pk,
        "priority": study.priority,
        "priority_display": study.get_priority_display(),
        "probability": study.ai_probability,
        "site": study.site.code,
        "patient_id": study.patient.patient_id,
        "patient_name": study.patient.name,
        "url": f"/studies/{study.pk}/",
    }


# --- Study page, reading and signing ---------------------------------------------------------


@login_required
@require_GET
@never_cache
def study_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """The study page. Looking changes nothing: a radiologist's page claims the study by POST once loaded
    (another site can send a browser here, cookie and all, but cannot make it POST with the CSRF token)."""
    study = selectors.study_for_user(user=request.user, pk=pk)
    audit_record(action="view_study", user=request.user, obj=study, request=request)
    return no_store(render(request, "reading/study.html", _study_context(request, study)))


@login_required
@require_POST
def study_claim(request: HttpRequest, pk: int) -> JsonResponse:
    """Posted by the study page on load (as a background request): the study becomes in review by its reader."""
    study = selectors.study_for_user(user=request.user, pk=pk)
    try:
        study = reviews.study_claim(study_id=study.pk, user=request.user, request=request)
    except ReviewError as error:
        study.refresh_from_db(fields=["status", "claimed_by"])
        return JsonResponse(_claim_json(study) | {"detail": error.message}, status=review_error_status(error))
    return JsonResponse(_claim_json(study))


def _claim_json(study: Study) -> dict:
    claimed_by = study.claimed_by.signature_name if study.claimed_by else None
    return {"status": study.status, "claimed_by": claimed_by}


def _priors(request: HttpRequest, study: Study) -> list[Study]:
    return list(
        selectors.study_rows_for_user(user=request.user).filter(patient_id=study.patient_id).exclude(pk=study.pk)[:20]
    )


def _next_to_read(request: HttpRequest, study: Study) -> Study | None:
    """The worklist's next unclaimed study, offered once the reader is done with this one."""
    waiting = WorklistFilters(statuses=(StudyStatus.AWAITING_REVIEW,))
    return worklist_for_user(user=request.user, filters=waiting).exclude(pk=study.pk).first()


def _study_context(
    request: HttpRequest,
    study: Study,
    *,
    reading: ReadingInput | None = None,
    error: ReviewError | None = None,
    amendment_reason: str = "",
) -> dict:
    user = request.user
    predictions = predictions_current_by_image(study=study, user=user)
    images = [_image_item(image, predictions.get(image.pk), site=study.site) for image in study.images.all()]
    history = list(selectors.reviews_for_study(study=study))
    ai_prediction = study_ai_prediction(study=study, user=user)
    can_review = selectors.user_can_review(user=user)
    mine = study.status == StudyStatus.IN_REVIEW and study.claimed_by_id == user.pk
    by_other = study.status == StudyStatus.IN_REVIEW and not mine and reviews.claim_is_live(study)
    # The page will claim it once loaded (study_claim): it is read as if already this reader's.
    to_claim = can_review and study.status in REVIEWABLE and not mine and not by_other
    return {
        "study": study,
        "patient": study.patient,
        "images": images,
        "first": images[0] if images else None,
        "history": history,
        "latest": history[-1] if history else None,
        "priors": _priors(request, study),
        "ai_label": reviews.ai_label_of(study),
        "ai_muted": study_is_muted(study),
        "ai_prediction": ai_prediction,
        # Shadow mode (cases.ai_modes): readers get no AI section at all; an admin is told readers do not see it.
        "ai_hidden": study_ai_hidden_from(user=user, study=study),
        "ai_shadowed": study_ai_shadowed(study),
        "ai_model": ai_prediction.model_version if ai_prediction else None,
        "can_review": can_review,
        "claimed_by_me": mine,
        "to_claim": to_claim,
        "claimed_by_other": by_other,
        "can_sign": can_review and study.status in REVIEWABLE and not by_other,
        "can_amend": can_review and study.status == StudyStatus.REPORTED and bool(history),
        "can_release": study.status == StudyStatus.IN_REVIEW and (mine or selectors.user_is_admin(user=user)),
        "reading": reading or ReadingInput(finding=""),
        "error": error,
        "amendment_reason": amendment_reason,
        "findings": Finding.choices,
        "reasons": OverruleReason.choices,
        "touch_seconds": TOUCH_SECONDS,
        "age_years": worklist_row(study, now=timezone.now()).age_years,
        "next_study": _next_to_read(request, study) if can_review and not (mine or to_claim) else None,
        "succeeded": PredictionStatus.SUCCEEDED,
    }


def _image_item(image: Image, prediction: Prediction | None, *, site: Site) -> dict:
    shown = prediction_shown(prediction, site=site)
    return {
        "image": image,
        "prediction": prediction,
        "shown": shown,
        "domain_label": domain_label(prediction.domain if prediction else None),
        # A result that does not count gets no heatmap on the pages: nothing hot to look at.
        "has_heatmap": prediction_has_heatmap(prediction),
        "age": age_statement(image.patient_age_years, image.patient_age_source, image.patient_age_reason),
        "notice": retention_notice(image),
    }


def _reading_input(request: HttpRequest) -> ReadingInput:
    post = request.POST
    return ReadingInput(
        finding=post.get("finding", ""), reason=post.get("reason", ""), report=post.get("report", "")[:20000]
    )


def _reading_refused(
    request: HttpRequest, study: Study, error: ReviewError, reading: ReadingInput, amendment_reason: str = ""
) -> HttpResponse:
    study.refresh_from_db()
    context = _study_context(request, study, reading=reading, error=error, amendment_reason=amendment_reason)
    return render(request, "reading/study.html", context, status=review_error_status(error))


@login_required
@require_POST
def study_sign(request: HttpRequest, pk: int) -> HttpResponse:
    study = selectors.study_for_user(user=request.user, pk=pk)
    reading = _reading_input(request)
    try:
        review = reviews.review_sign(study_id=study.pk, user=request.user, reading=reading, request=request)
    except ReviewError as error:
        return _reading_refused(request, study, error, reading)
    return _signed(request, review, f"Signed: {review.get_finding_display()}. The study is reported.")


def _signed(request: HttpRequest, review: Review, message: str) -> HttpResponse:
    messages.success(request, message)
    return redirect("study_detail", pk=review.study_id)


def _amends_version(request: HttpRequest) -> int | None:
    """The version the amend form was shown with (its hidden field); None when absent or garbled."""
    try:
        return int(request.POST.get("amends_version", ""))
    except ValueError:
        return None


@login_required
@require_POST
def study_amend(request: HttpRequest, pk: int) -> HttpResponse:
    study = selectors.study_for_user(user=request.user, pk=pk)
    reading, why = _reading_input(request), request.POST.get("amendment_reason", "")[:2000]
    try:
        review = reviews.review_amend(
            study_id=study.pk,
            user=request.user,
            reading=reading,
            amendment_reason=why,
            amends_version=_amends_version(request),
            request=request,
        )
    except ReviewError as error:
        return _reading_refused(request, study, error, reading, amendment_reason=why)
    return _signed(request, review, f"Amendment signed (version {review.version}); earlier versions stay on record.")


@login_required
@require_POST
def study_release(request: HttpRequest, pk: int) -> HttpResponse:
    study = selectors.study_for_user(user=request.user, pk=pk)
    try:
        study = reviews.study_release(study_id=study.pk, user=request.user, request=request)
    except ReviewError as error:
        # The study page again, with the reason and the refusal's status code.
        messages.error(request, error.message)
        return render(request, "reading/study.html", _study_context(request, study), status=review_error_status(error))
    messages.info(request, "Study released back to the worklist.")
    return redirect("worklist" if selectors.user_can_read_worklist(user=request.user) else "studies")


@login_required
@require_POST
def study_claim_touch(request: HttpRequest, pk: int) -> JsonResponse:
    """The reader is still working (sent on interaction, at most once a minute)."""
    study = selectors.study_for_user(user=request.user, pk=pk)
    kept = reviews.study_claim_touch(study_id=study.pk, user=request.user)
    study.refresh_from_db(fields=["status", "claimed_by"])
    claimed_by = study.claimed_by.signature_name if study.claimed_by else None
    return JsonResponse(
        {"claimed": kept, "status": study.status, "claimed_by": claimed_by}, status=200 if kept else 409
    )


@login_required
@require_GET
@never_cache
def study_report(request: HttpRequest, pk: int) -> HttpResponse:
    study = selectors.study_for_user(user=request.user, pk=pk)
    audit_record(action="view_report", user=request.user, obj=study, request=request)
    context = _study_context(request, study) | {"printed_at": timezone.now()}
    return no_store(render(request, "reading/report.html", context))


# --- Image renders (the viewer, thumbnails, the report) ----------------------------------------


def _number(request: HttpRequest, name: str) -> float | None:
    try:
        value = float(request.GET[name])
    except (KeyError, ValueError):
        return None
    return value if value == value and abs(value) < 1e9 else None  # value == value: not NaN


def _size(request: HttpRequest, name: str) -> int | None:
    size = _number(request, name)
    return int(size) if size else None


@login_required
@require_GET
def image_pixels(request: HttpRequest, pk: int) -> HttpResponse:
    """Raw little-endian uint16 display values for the viewer; size, offset and window in headers."""
    image = image_viewed(request=request, pk=pk, rendering="pixels")
    if (gone := purged_response(image)) is not None:
        return gone
    data, meta = drawn(lambda: pictures.image_source_pixels(image))
    gzipped = "gzip" in request.headers.get("Accept-Encoding", "")
    response = HttpResponse(pictures.gzip_bytes(data) if gzipped else data, content_type="application/octet-stream")
    if gzipped:
        response["Content-Encoding"] = "gzip"
    for key, value in meta.items():
        response[f"X-Pneumo-{key.replace('_', '-').title()}"] = str(value)
    return no_store(response)


@login_required
@require_GET
def image_render(request: HttpRequest, pk: int) -> HttpResponse:
    image = image_viewed(request=request, pk=pk, rendering="render")
    if (gone := purged_response(image)) is not None:
        return gone
    window = {"center": _number(request, "center"), "width": _number(request, "width")}
    return png_response(drawn(lambda: pictures.render_image_png(image, max_size=_size(request, "max_size"), **window)))


@login_required
@require_GET
def image_heatmap(request: HttpRequest, pk: int) -> HttpResponse:
    prediction = heatmap_viewed(request=request, pk=pk, rendering="png")
    size = _size(request, "size")
    return png_response(drawn(lambda: pictures.heatmap_overlay_png(prediction, size=size)), unconfirmed=True)


# --- Dashboard ------------------------------------------------------------------------------


def _duration(seconds: float | None) -> str:
    return "—" if seconds is None else waiting_text(round(seconds))


def _reason_rows(agreement: dict) -> list[dict]:
    counts = agreement["overrule_reasons"]
    peak = max([*counts.values(), 1])
    labels = dict(OverruleReason.choices)
    return [{"code": c, "label": labels[c], "n": n, "pct": round(100 * n / peak)} for c, n in counts.items()]


def _dashboard_context(stats: dict) -> dict:
    return {
        "stats": stats | {"agreement": [a | {"reason_rows": _reason_rows(a)} for a in stats["agreement"]]},
        "chart": daily_chart(stats["received_per_day"], stats["reported_per_day"]),
        "turnaround": {
            key: {"median": _duration(t["median_s"]), "p90": _duration(t["p90_s"])}
            for key, t in stats["turnaround"].items()
        },
        "totals": {
            "received": sum(d["count"] for d in stats["received_per_day"]),
            "reported": sum(d["count"] for d in stats["reported_per_day"]),
        },
    }


@login_required
@require_GET
def dashboard(request: HttpRequest) -> HttpResponse:
    if not selectors.user_can_see_stats(user=request.user):
        raise PermissionDenied("The dashboard is for radiologists and admins.")
    days = 14 if request.GET.get("days") == "14" else 30
    stats = dashboard_stats(user=request.user, days=days)
    alarms = list(drift_alarms_open_for_user(user=request.user)) if selectors.user_is_admin(user=request.user) else []
    return render(request, "reading/dashboard.html", _dashboard_context(stats) | {"days": days, "drift_alarms": alarms})
