"""The admins' operations console: the prediction queue, pausing the AI per site, timelines and sources.

Pausing a site stops only the AI's queue: its predictions are still made (they
wait pending, unqueued) and reading, signing and sending results go on. On
resume the site's waiting predictions are queued oldest first.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Max, Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from cases.audit import audit_record
from cases.models import AuditEvent, Image, OutboxItem, Site, Study, User
from cases.states import StudyStatus
from inference.models import Prediction, PredictionStatus
from inference.services import predictions_enqueue, study_ai_refresh

P = PredictionStatus
QUEUE_STATUSES = (P.PENDING, P.RUNNING, P.FAILED)
SILENCE_HISTORY_DAYS = 3


class OperationRefused(ValueError):
    """The prediction is no longer in a state the action applies to."""


# --- The prediction queue --------------------------------------------------------------------------------


def prediction_queue() -> QuerySet[Prediction]:
    """Pending, running and failed predictions, oldest first."""
    return (
        Prediction.objects.filter(status__in=QUEUE_STATUSES)
        .select_related("image__study__site", "model_version")
        .order_by("created_at", "pk")
    )


def _enqueue_on_commit(prediction_ids: list[int]) -> None:
    if prediction_ids:
        transaction.on_commit(lambda: predictions_enqueue(prediction_ids=prediction_ids))


def prediction_retry(*, prediction_id: int, user: User, request: HttpRequest | None = None) -> Prediction:
    """A failed prediction gets new attempts: pending again, queued on commit unless its site is paused."""
    with transaction.atomic():
        reset = Prediction.objects.filter(pk=prediction_id, status=P.FAILED).update(
            status=P.PENDING, attempts=0, error="", lease_until=None, lease_owner="", queued_at=None, finished_at=None
        )
        if reset != 1:
            raise OperationRefused("Only a failed prediction can be retried.")
        prediction = Prediction.objects.select_related("image__study__site").get(pk=prediction_id)
        study_ai_refresh(study_id=prediction.image.study_id)
        audit_record(action="prediction_retry", user=user, obj=prediction, site=prediction.image.site, request=request)
        if not prediction.image.site.ai_paused:
            _enqueue_on_commit([prediction.pk])
    return prediction


def prediction_cancel(*, prediction_id: int, user: User, request: HttpRequest | None = None) -> Prediction:
    """Stop a pending or running prediction for good; its study goes to the readers without it.

    A worker still running it cannot store its result: storing needs the row to be running.
    """
    now = timezone.now()
    with transaction.atomic():
        cancelled = Prediction.objects.filter(pk=prediction_id, status__in=(P.PENDING, P.RUNNING)).update(
            status=P.CANCELLED,
            lease_until=None,
            lease_owner="",
            finished_at=now,
            error=f"Cancelled by an admin ({user.username}).",
        )
        if cancelled != 1:
            raise OperationRefused("Only a pending or running prediction can be cancelled.")
        prediction = Prediction.objects.select_related("image__study__site").get(pk=prediction_id)
        study_ai_refresh(study_id=prediction.image.study_id)
        audit_record(action="prediction_cancel", user=user, obj=prediction, site=prediction.image.site, request=request)
    return prediction


# --- Pausing the AI per site -----------------------------------------------------------------------------


def site_ai_pause(*, site: Site, user: User, request: HttpRequest | None = None) -> Site:
    with transaction.atomic():
        Site.objects.filter(pk=site.pk).update(ai_paused=True, ai_paused_at=timezone.now(), ai_paused_by=user)
        audit_record(action="site_ai_pause", user=user, obj=site, site=site, request=request)
        # Studies waiting for the AI go to the readers now (inference.services.study_ai_refresh).
        for study_id in Study.objects.filter(site=site, status=StudyStatus.QUEUED).values_list("pk", flat=True):
            study_ai_refresh(study_id=study_id)
    site.refresh_from_db()
    return site


def site_ai_resume(*, site: Site, user: User, request: HttpRequest | None = None) -> list[int]:
    """Unpause the site and queue, on commit, its predictions that waited unqueued, oldest first."""
    with transaction.atomic():
        Site.objects.filter(pk=site.pk).update(ai_paused=False, ai_paused_at=None, ai_paused_by=None)
        waiting = Prediction.objects.filter(image__site=site, status=P.PENDING, queued_at__isnull=True)
        ids = list(waiting.order_by("created_at", "pk").values_list("pk", flat=True))
        audit_record(action="site_ai_resume", user=user, obj=site, site=site, request=request, queued=len(ids))
        for study_id in sorted(set(waiting.values_list("image__study_id", flat=True))):
            study_ai_refresh(study_id=study_id)
        _enqueue_on_commit(ids)
    site.refresh_from_db()
    return ids


# --- A study's timeline ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Step:
    at: datetime
    step: str
    detail: str = ""


def study_timeline(*, study: Study) -> list[Step]:
    """Received, queued, predicted, claimed, signed and sent, from the rows' timestamps and the audit trail."""
    steps = [Step(study.received_at, "received", f"{study.images.count()} image(s)")]
    predictions = Prediction.objects.filter(image__study=study).select_related("model_version").order_by("pk")
    for p in predictions:
        if p.queued_at:
            steps.append(Step(p.queued_at, "queued", f"prediction {p.pk} ({p.model_version.name})"))
        if p.finished_at:
            steps.append(Step(p.finished_at, "predicted", f"prediction {p.pk}: {p.get_status_display()}"))
    claims = AuditEvent.objects.filter(action="claim", object_type="Study", object_id=str(study.pk))
    steps += [Step(e.created_at, "claimed", e.username) for e in claims]
    steps += [
        Step(r.signed_at, "signed", f"version {r.version} by {r.radiologist}")
        for r in study.reviews.select_related("radiologist")
    ]
    sent = OutboxItem.objects.filter(study=study, sent_at__isnull=False).select_related("destination")
    steps += [Step(o.sent_at, "sent", f"{o.kind} to {o.destination}") for o in sent]
    return sorted(steps, key=lambda s: s.at)


# --- Last image received per source ----------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    site: str
    name: str  # the calling AE title, or the uploader's username
    via: str  # "DICOM" or "upload"
    last_received: datetime
    silent: bool  # sent on each of the previous days, nothing within the silence window


def sources_last_received(*, now: datetime | None = None) -> list[Source]:
    """Each source's latest image, and whether its usual stream has gone silent.

    A source is silent when it sent nothing for ``PNEUMO_SOURCE_SILENCE_HOURS``
    but sent something on each of the 3 days (24-hour windows) before that:
    a source that sends rarely raises no alarm. One grouped query.
    """
    now = now or timezone.now()
    window_end = now - timedelta(hours=settings.PNEUMO_SOURCE_SILENCE_HOURS)
    days = {
        f"day{k}": Count(
            "pk",
            filter=Q(created_at__gte=window_end - timedelta(days=k), created_at__lt=window_end - timedelta(days=k - 1)),
        )
        for k in range(1, SILENCE_HISTORY_DAYS + 1)
    }
    rows = (
        Image.objects.values("site__code", "source_ae_title", "uploaded_by__username")
        .annotate(last=Max("created_at"), **days)
        .order_by("site__code", "source_ae_title", "uploaded_by__username")
    )
    return [_source(row, window_end) for row in rows]


def _source(row: dict, window_end: datetime) -> Source:
    ae = row["source_ae_title"]
    name = ae or row["uploaded_by__username"] or "(unknown uploader)"
    usual = all(row[f"day{k}"] for k in range(1, SILENCE_HISTORY_DAYS + 1))
    return Source(row["site__code"], name, "DICOM" if ae else "upload", row["last"], usual and row["last"] < window_end)
