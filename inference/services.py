"""Predictions: creating, queueing, claiming, running and sweeping them.

A task claims its prediction with a lease: one conditional UPDATE takes a row
that is pending, or running with an expired lease, sets a new lease and counts
the attempt. A redelivery while the lease is live is a no-op; one after a
worker died takes it over; the attempt cap ends poison inputs.
"""

from __future__ import annotations

import logging
import socket
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
from django.conf import settings
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from cases.ai_modes import AI_OFF_REASON, study_ai_shadowed
from cases.audit import audit_record
from cases.models import Eligibility, FileState, Image, Study
from cases.notices import study_flagged_notice_queue
from cases.services import study_transition
from cases.states import StudyStatus, status_after_ai
from inference.display import prediction_counts, predictions_summary
from inference.model_input import DecodeLimits, InputGrid, model_image_load
from inference.models import AiMode, ModelVersion, Prediction, PredictionStatus, Routing
from inference.registry import active_model_versions
from inference.routing import Route, caveats_for, route_image, route_requested
from inference.scope import RoutedOutput, image_scope_routed, result_fields
from inference.thresholds import threshold_in_force

logger = logging.getLogger(__name__)
P = PredictionStatus


@dataclass(frozen=True)
class RunOutcome:
    prediction_id: int
    ran: bool
    status: str


def _images_to_predict(study: Study) -> list[Image]:
    allowed = [Eligibility.ELIGIBLE]
    if study.site.ai_outside_validated_use:
        allowed.append(Eligibility.OUTSIDE_VALIDATED_USE)
    # A file the retention policy deleted has nothing left to read (cases.retention).
    return [
        image
        for image in study.images.all()
        if image.ai_eligibility in allowed and image.file_state != FileState.PURGED
    ]


def _outside_use(image: Image, version: ModelVersion) -> tuple[bool, str]:
    """The image's notes (a tag missing) and the caveats of ``version``'s validated ages and views."""
    notes = [c for c in image.ai_eligibility_reason.split("; ") if c]
    caveats = caveats_for(version, age_years=image.patient_age_years, view=image.view_position or None)
    reasons = notes + caveats
    return bool(reasons), "; ".join(reasons)


def _prediction_create(image: Image, route: Route) -> Prediction | None:
    """The image's prediction on ``route``, created if missing; None when the site does not run it there.

    Routed by age, the version's caveats are known now; routed by the image, the worker adds them.
    """
    version = route.version
    outside, reason = _outside_use(image, version) if route.decided else (bool(image.ai_eligibility_reason), "")
    caveats = caveats_for(version, age_years=image.patient_age_years, view=image.view_position or None)
    if route.decided and caveats and not image.site.ai_outside_validated_use:
        return None
    prediction, _ = Prediction.objects.get_or_create(
        image=image,
        model_version=version,
        preprocessing_version=version.preprocessing_version,
        defaults={
            "routing": route.routing,
            "routing_reason": route.reason[:200],
            "outside_validated_use": outside,
            "outside_validated_use_reason": reason or image.ai_eligibility_reason,
            "ai_mode": image.site.ai_mode,
        },
    )
    return prediction


def _current_routed(image: Image, versions: set[int]) -> Prediction | None:
    """A prediction of ``image`` by an active version: routed once, it is not routed again."""
    return next((p for p in image.predictions.all() if p.model_version_id in versions), None)


def predictions_request(
    *, study: Study, retry_failed: bool = False, version: ModelVersion | None = None, user=None
) -> list[Prediction]:
    """Route each eligible image of ``study`` to a version, create its missing prediction and queue it on commit.

    Each image is routed once (``inference.routing``): an image that already has a prediction by an
    active version keeps it. With ``version`` (an admin's re-run) every image runs again with that
    version. With ``retry_failed``, failed ones are reset for new attempts. Returns the study's
    predictions that this request covers.
    """
    if study.site.ai_mode == AiMode.OFF:
        study_ai_refresh(study_id=study.pk, no_ai_reason=AI_OFF_REASON)
        return []
    actives = active_model_versions()
    if not actives and version is None:
        study_ai_refresh(study_id=study.pk, no_ai_reason="No active AI model")
        return []
    active_ids = {v.pk for v in actives.values()}
    predictions: list[Prediction] = []
    rerun: list[int] = []
    for image in _images_to_predict(study):
        existing = None if version is not None else _current_routed(image, active_ids)
        if existing is not None:
            predictions.append(existing)
            continue
        route = route_requested(version) if version is not None else route_image(image.patient_age_years, actives)
        prediction = _prediction_create(image, route)
        if prediction is None:
            continue
        if version is not None and prediction.status in (P.SUCCEEDED, P.FAILED):
            rerun.append(prediction.pk)
        predictions.append(prediction)
    failed = [p.pk for p in predictions if p.status == P.FAILED] if retry_failed else []
    reset = sorted(set(failed) | set(rerun))
    Prediction.objects.filter(pk__in=reset).update(
        status=P.PENDING, attempts=0, error="", lease_until=None, queued_at=None
    )
    if version is not None:
        Prediction.objects.filter(pk__in=[p.pk for p in predictions]).update(
            routing=Routing.REQUESTED, routing_reason=route_requested(version).reason[:200]
        )
        audit_record(action="predictions_rerun", user=user, obj=study, site=study.site, model=version.name)
    to_queue = [p.pk for p in predictions if p.status == P.PENDING] + reset
    study_ai_refresh(study_id=study.pk)
    # A paused site keeps them pending, unqueued: resuming queues them oldest first (cases.operations).
    if to_queue and not study.site.ai_paused:
        transaction.on_commit(lambda: predictions_enqueue(prediction_ids=sorted(set(to_queue))))
    return list(Prediction.objects.filter(pk__in=[p.pk for p in predictions]))


def predictions_enqueue(*, prediction_ids: list[int]) -> int:
    """Publish one message per prediction; give up quickly when the broker is down.

    Predictions that could not be published stay pending with no ``queued_at``
    and the sweeper publishes them once the broker is back.
    """
    from inference.broker import publishing_connection

    sent: list[int] = []
    try:
        # A pooled connection (inference.broker): the exception that ends a failed batch inside the
        # block makes the pool replace it rather than hand a broken socket to the next request.
        with publishing_connection() as connection:
            _publish(connection, prediction_ids, sent)
    except Exception as exc:  # noqa: BLE001 - any broker error, or no free connection: leave it to the sweeper
        failed = prediction_ids[len(sent)] if len(sent) < len(prediction_ids) else None
        logger.warning("could not queue prediction %s (%s); the sweeper will retry", failed, type(exc).__name__)
    return len(sent)


def _publish(connection, prediction_ids: list[int], sent: list[int]) -> None:
    from inference.tasks import prediction_run_task

    for prediction_id in prediction_ids:
        # No retry here: a broker that did not answer within the timeout is left to the sweeper.
        prediction_run_task.apply_async(kwargs={"prediction_id": prediction_id}, connection=connection, retry=False)
        Prediction.objects.filter(pk=prediction_id, status=P.PENDING).update(queued_at=timezone.now())
        sent.append(prediction_id)


def prediction_claim(*, prediction_id: int, hostname: str = "", task_id: str = "") -> Prediction | None:
    """Take a prediction for one attempt, or return None when another owns it or it is done.

    The message that holds the lease may take it again at once: that is its own
    retry, or its redelivery after its worker died (Redis redelivers a message
    only then, its visibility timeout being longer than any task).
    """
    now = timezone.now()
    lease = now + timedelta(seconds=settings.PNEUMO_TASK_LEASE_SECONDS)
    takeable = Q(status=P.PENDING) | Q(status=P.RUNNING, lease_until__lt=now)
    if task_id:
        takeable |= Q(status=P.RUNNING, lease_owner=task_id)
    updated = Prediction.objects.filter(
        takeable, pk=prediction_id, attempts__lt=settings.PNEUMO_TASK_MAX_ATTEMPTS
    ).update(
        status=P.RUNNING,
        lease_until=lease,
        lease_owner=task_id[:64],
        attempts=F("attempts") + 1,
        started_at=now,
        worker_host=hostname[:200],
    )
    if updated == 1:
        return Prediction.objects.select_related("image__study__site", "model_version").get(pk=prediction_id)
    _fail_if_exhausted(prediction_id, now)
    return None


def _fail_if_exhausted(prediction_id: int, now) -> None:
    """A takeable prediction past the attempt cap is a poison input: fail it for good."""
    takeable = Q(status=P.PENDING) | Q(status=P.RUNNING, lease_until__lt=now)
    exhausted = Prediction.objects.filter(takeable, pk=prediction_id, attempts__gte=settings.PNEUMO_TASK_MAX_ATTEMPTS)
    if exhausted.update(status=P.FAILED, lease_until=None, finished_at=now) == 1:
        prediction = Prediction.objects.get(pk=prediction_id)
        if not prediction.error:
            prediction.error = "The AI stopped on this image repeatedly (the worker died or timed out)."
            prediction.save(update_fields=["error"])
        study_ai_refresh(study_id=prediction.image.study_id)


def _stored_bytes(image: Image) -> bytes:
    with default_storage.open(image.file.name, "rb") as handle:
        return handle.read()


def _model_image(image: Image, preprocessing_version: str) -> tuple[np.ndarray, float]:
    """The image's model input (see ``inference.model_input``) and the milliseconds it took."""
    started = time.perf_counter()
    model_image = model_image_load(
        grid=InputGrid(bytes(image.model_input), image.model_input_version) if image.model_input else None,
        preprocessing_version=preprocessing_version,
        read_original=lambda: _stored_bytes(image),
        filename=image.original_filename or image.file.name,
        limits=DecodeLimits(
            max_bytes=settings.PNEUMO_MAX_UPLOAD_BYTES,
            max_pixels=settings.PNEUMO_MAX_PIXELS,
            decode_threads=settings.PNEUMO_DECODE_THREADS,
        ),
    )
    return model_image, (time.perf_counter() - started) * 1000


def prediction_run(*, prediction_id: int, hostname: str = "", task_id: str = "") -> RunOutcome:
    """One attempt at a prediction. Raises on failure; the task decides whether to retry."""
    prediction = prediction_claim(
        prediction_id=prediction_id, hostname=hostname or socket.gethostname(), task_id=task_id
    )
    if prediction is None:
        current = Prediction.objects.filter(pk=prediction_id).values_list("status", flat=True).first()
        return RunOutcome(prediction_id, False, current or "missing")
    study_ai_refresh(study_id=prediction.image.study_id)
    route = _route_of(prediction)
    # One preprocessing among the candidates: its kept grid serves them all; several: the original does.
    preprocessings = {v.preprocessing_version for v in route.candidates}
    model_image, decode_ms = _model_image(prediction.image, preprocessings.pop() if len(preprocessings) == 1 else "")
    # The probability and the domain verdict come from one forward pass (inference.scope); with the
    # age unknown, every candidate version's too, and the version that fits the image best is kept.
    routed = image_scope_routed(model_image, route=route)
    _prediction_store(prediction, routed, decode_ms)
    return RunOutcome(prediction_id, True, P.SUCCEEDED)


def _route_of(prediction: Prediction) -> Route:
    """What the worker compares: the prediction's version, or, routed by the image, every active candidate.

    A candidate that already holds another prediction of this image is left out (its result exists).
    """
    version = prediction.model_version
    if prediction.routing != Routing.DOMAIN:
        return Route(version, prediction.routing, prediction.routing_reason, (version,))
    taken = set(
        Prediction.objects.filter(image_id=prediction.image_id)
        .exclude(pk=prediction.pk)
        .values_list("model_version_id", flat=True)
    )
    candidates = [v for v in active_model_versions().values() if v.pk not in taken]
    if version.pk not in {v.pk for v in candidates}:
        candidates.insert(0, version)
    return Route(version, Routing.DOMAIN, prediction.routing_reason, tuple(candidates))


def _prediction_store(prediction: Prediction, routed: RoutedOutput, decode_ms: float) -> None:
    """Store a result under the version that produced it; one that is no chest X-ray keeps no probability."""
    now = timezone.now()
    version = routed.version
    scoped = routed.scoped
    threshold, threshold_source = threshold_in_force(site=prediction.image.study.site, version=version)
    result = scoped.output
    outside, reason = _outside_use(prediction.image, version)
    queued = prediction.queued_at or prediction.created_at
    with transaction.atomic():
        # Only the attempt that holds the lease may write its result.
        updated = Prediction.objects.filter(pk=prediction.pk, status=P.RUNNING, attempts=prediction.attempts).update(
            status=P.SUCCEEDED,
            lease_until=None,
            lease_owner="",
            finished_at=now,
            error="",
            model_version=version,
            routing_reason=routed.reason[:200],
            outside_validated_use=outside,
            outside_validated_use_reason=reason,
            threshold=threshold,
            threshold_source=threshold_source,
            **result_fields(scoped, threshold=threshold),
            input_sha256=result.input_sha256,
            queue_wait_ms=max(0.0, (prediction.started_at - queued).total_seconds() * 1000),
            decode_ms=decode_ms,
            preprocess_ms=result.preprocess_ms,
            inference_ms=result.inference_ms,
            heatmap_ms=result.heatmap_ms,
        )
        if updated:
            study_ai_refresh(study_id=prediction.image.study_id)
            audit_record(
                action="prediction",
                obj=prediction,
                site=prediction.image.study.site,
                model_version=version.pk,
                status=P.SUCCEEDED,
                domain=scoped.verdict.domain,
            )
            # Its DICOM result objects go to the site's PACS once the result is committed (cases.dicom.outbox).
            transaction.on_commit(lambda: _results_send(prediction.pk))


def _results_send(prediction_id: int) -> None:
    from cases.dicom.outbox import outbox_queue_for_prediction

    try:
        outbox_queue_for_prediction(
            Prediction.objects.select_related("image__study__site", "model_version").get(pk=prediction_id)
        )
    except Exception:  # the result is stored and shown whatever happens to its copies for the PACS
        logger.exception("could not queue the DICOM result objects of prediction %s", prediction_id)


def prediction_attempt_failed(*, prediction_id: int, error: str) -> bool:
    """Record a failed attempt. Returns True when another attempt may follow, False when it gave up."""
    now = timezone.now()
    with transaction.atomic():
        prediction = Prediction.objects.select_for_update().filter(pk=prediction_id, status=P.RUNNING).first()
        if prediction is None:
            return False
        prediction.error = error[:2000]
        prediction.lease_until = None
        prediction.lease_owner = ""
        retry = prediction.attempts < settings.PNEUMO_TASK_MAX_ATTEMPTS
        prediction.status = P.PENDING if retry else P.FAILED
        prediction.finished_at = None if retry else now
        prediction.save(update_fields=["error", "lease_until", "lease_owner", "status", "finished_at"])
        study_ai_refresh(study_id=prediction.image.study_id)
        if not retry:
            audit_record(
                action="prediction_failed", obj=prediction, site=prediction.image.site, attempts=prediction.attempts
            )
    return retry


def predictions_sweep(*, pending_after_seconds: int = 300) -> int:
    """Re-queue predictions stranded by a lost message, a dead worker or a broker outage."""
    now = timezone.now()
    expired = Q(status=P.RUNNING, lease_until__lt=now)
    unsent = Q(status=P.PENDING, queued_at__isnull=True, created_at__lt=now - timedelta(seconds=2))
    stale = Q(status=P.PENDING, queued_at__lt=now - timedelta(seconds=pending_after_seconds))
    stranded = Prediction.objects.filter(expired | unsent | stale).exclude(image__site__ai_paused=True)
    ids = list(stranded.values_list("pk", flat=True)[:5000])
    for prediction_id in ids:
        _fail_if_exhausted(prediction_id, now)
    live = list(Prediction.objects.filter(pk__in=ids).exclude(status=P.FAILED).values_list("pk", flat=True))
    return predictions_enqueue(prediction_ids=live) if live else 0


def predictions_reclaim(*, hostname: str, started_before: datetime) -> int:
    """Re-queue at once what an earlier process of worker ``hostname`` left running.

    Called when a worker starts: a process of that name started at
    ``started_before`` cannot be running what its namesake claimed before then
    (make run kills a dead worker's whole process group before restarting it),
    so those leases need not run out first. The attempt stays counted: an
    input that kills its worker still meets the attempt cap.
    """
    now = timezone.now()
    abandoned = Prediction.objects.filter(status=P.RUNNING, worker_host=hostname[:200], started_at__lt=started_before)
    ids = list(abandoned.values_list("pk", flat=True)[:5000])
    abandoned.filter(pk__in=ids).update(status=P.PENDING, lease_until=None, lease_owner="", queued_at=None)
    for prediction_id in ids:
        _fail_if_exhausted(prediction_id, now)
    for study_id in set(Image.objects.filter(predictions__pk__in=ids).values_list("study_id", flat=True)):
        study_ai_refresh(study_id=study_id)
    pending = Prediction.objects.filter(pk__in=ids, status=P.PENDING).exclude(image__site__ai_paused=True)
    live = list(pending.values_list("pk", flat=True))
    if live:
        logger.info("worker %s takes back %d predictions its previous process left running", hostname, len(live))
    return predictions_enqueue(prediction_ids=live) if live else 0


def _study_ai_summary(study: Study) -> dict:
    """The study's AI from its images' current predictions, each judged at its own version's threshold."""
    from inference.selectors import predictions_current_first

    rows = list(Prediction.objects.filter(image__study=study).select_related("model_version"))
    current: dict[int, Prediction] = {}
    for prediction in predictions_current_first(rows):
        current.setdefault(prediction.image_id, prediction)
    unfinished = [p for p in rows if p.status in (P.PENDING, P.RUNNING)]
    # Only results that count make the study's probability and flag (inference.display): a muted one is shown.
    summary = predictions_summary(current.values())
    flagged = any(
        prediction_counts(p)
        and p.probability >= (p.threshold if p.threshold is not None else p.model_version.threshold)
        for p in current.values()
    )
    return {
        "statuses": {p.status for p in current.values()} | {p.status for p in unfinished},
        "probability": summary.probability,
        "muted_probability": summary.muted_probability,
        "domain": summary.domain,
        "flagged": flagged,
    }


def _threshold_of(prediction: Prediction) -> float:
    # The threshold recorded when it ran; older rows have none recorded and use their version's.
    return prediction.threshold if prediction.threshold is not None else prediction.model_version.threshold


AI_CANCELLED_REASON = "No AI result: AI cancelled by an admin."
AI_PAUSED_REASON = "No AI result yet: AI paused at this site."


def _no_ai_reason(study: Study, statuses: set[str]) -> str:
    if P.CANCELLED in statuses:
        return AI_CANCELLED_REASON
    if P.FAILED in statuses:
        return "No AI result: the AI failed on this study's images."
    reasons = {img.ai_eligibility_reason for img in study.images.all() if img.ai_eligibility_reason}
    if not study.site.ai_outside_validated_use and reasons:
        return (
            "No AI result: AI is off at this site for images outside validated use ("
            + "; ".join(sorted(reasons))
            + ")."
        )
    return "No AI result: " + ("; ".join(sorted(reasons)) if reasons else "no image is eligible for the AI.")


@dataclass(frozen=True)
class StudyAi:
    """A study's AI summary as its readers are shown it (see ``study_ai_refresh``)."""

    probability: float | None
    flagged: bool
    muted_probability: float | None
    domain: str | None


def study_ai_result(*, study: Study) -> StudyAi:
    """The study's AI summary from its predictions, whether or not its readers may see it yet.

    A shadow reading is compared with it when signed (``cases.reviews``).
    """
    summary = _study_ai_summary(study)
    return StudyAi(summary["probability"], summary["flagged"], summary["muted_probability"], summary["domain"])


def study_ai_refresh(*, study_id: int, no_ai_reason: str = "") -> Study:
    """Make the study's status and AI summary follow its predictions.

    A shadowed study (``cases.ai_modes``) keeps an empty summary and goes to its readers at once, with no
    AI status or reason: its predictions run unseen, and nothing that orders, filters or alerts can use them.
    """
    with transaction.atomic():
        study = Study.objects.select_for_update().select_related("site").get(pk=study_id)
        summary = _study_ai_summary(study)
        shadowed = study_ai_shadowed(study)
        if shadowed:
            summary = {**summary, "probability": None, "muted_probability": None, "domain": None, "flagged": False}
        # What readers are shown moving the study: nothing, when shadowed.
        statuses = set() if shadowed else summary["statuses"]
        newly_flagged = summary["flagged"] and not study.ai_flagged
        study.ai_probability = summary["probability"]
        study.ai_flagged = summary["flagged"]
        study.ai_muted_probability = summary["muted_probability"]
        study.ai_domain = summary["domain"]
        fields = ["ai_probability", "ai_flagged", "ai_muted_probability", "ai_domain", "updated_at"]
        done = not statuses & {P.PENDING, P.RUNNING}
        # Reading is never paused: at a paused site, waiting predictions do not hold a study from its readers.
        held = study.site.ai_paused and P.PENDING in statuses and P.RUNNING not in statuses
        reason = AI_PAUSED_REASON if held else ""
        if done:
            reason = "" if P.SUCCEEDED in statuses or shadowed else (no_ai_reason or _no_ai_reason(study, statuses))
            finished = summary["statuses"] and not summary["statuses"] & {P.PENDING, P.RUNNING}
            if study.ai_completed_at is None and finished:
                study.ai_completed_at = timezone.now()
                fields.append("ai_completed_at")
        study.save(update_fields=fields)
        pending = P.PENDING in statuses and not held
        target = status_after_ai(study.status, running=P.RUNNING in statuses, pending=pending)
        if target != study.status:
            study_transition(study=study, target=target, reason=reason)
        elif study.status == StudyStatus.AWAITING_REVIEW and reason != study.status_reason:
            study.status_reason = reason
            study.save(update_fields=["status_reason"])
        # A result that arrives after signing (a re-run, a study signed in shadow) alerts nobody.
        if newly_flagged and study.status != StudyStatus.REPORTED:
            study_flagged_notice_queue(study=study)
    return study
