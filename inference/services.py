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

from cases.audit import audit_record
from cases.models import Eligibility, Image, Study
from cases.notices import study_flagged_notice_queue
from cases.services import study_transition
from cases.states import StudyStatus, status_after_ai
from inference.display import predictions_summary
from inference.model_input import DecodeLimits, InputGrid, model_image_load
from inference.models import ModelVersion, Prediction, PredictionStatus
from inference.registry import active_model_version
from inference.scope import ScopedOutput, image_scope, result_fields

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
    return [image for image in study.images.all() if image.ai_eligibility in allowed]


def _prediction_create(image: Image, version: ModelVersion) -> Prediction:
    outside = image.ai_eligibility == Eligibility.OUTSIDE_VALIDATED_USE
    prediction, _ = Prediction.objects.get_or_create(
        image=image,
        model_version=version,
        preprocessing_version=version.preprocessing_version,
        defaults={
            "outside_validated_use": outside,
            "outside_validated_use_reason": image.ai_eligibility_reason if outside else "",
        },
    )
    return prediction


def predictions_request(*, study: Study, retry_failed: bool = False) -> list[Prediction]:
    """Create the missing predictions of ``study`` for the active model and queue them on commit.

    With ``retry_failed``, failed ones are reset for new attempts. Returns the
    study's predictions for the active model.
    """
    version = active_model_version()
    if version is None:
        study_ai_refresh(study_id=study.pk, no_ai_reason="No active AI model")
        return []
    predictions = [_prediction_create(image, version) for image in _images_to_predict(study)]
    failed = [p.pk for p in predictions if p.status == P.FAILED] if retry_failed else []
    Prediction.objects.filter(pk__in=failed).update(status=P.PENDING, attempts=0, error="", lease_until=None)
    to_queue = [p.pk for p in predictions if p.status == P.PENDING] + failed
    study_ai_refresh(study_id=study.pk)
    if to_queue:
        transaction.on_commit(lambda: predictions_enqueue(prediction_ids=to_queue))
    return list(Prediction.objects.filter(pk__in=[p.pk for p in predictions]))


def predictions_enqueue(*, prediction_ids: list[int]) -> int:
    """Publish one message per prediction; give up quickly when the broker is down.

    Predictions that could not be published stay pending with no ``queued_at``
    and the sweeper publishes them once the broker is back.
    """
    from inference.broker import publishing_connection
    from inference.tasks import prediction_run_task

    sent = 0
    with publishing_connection() as connection:
        for prediction_id in prediction_ids:
            try:
                # No retry here: a broker that did not answer within the timeout is left to the sweeper.
                prediction_run_task.apply_async(
                    kwargs={"prediction_id": prediction_id}, connection=connection, retry=False
                )
            except Exception as exc:  # noqa: BLE001 - any broker error: leave it to the sweeper
                logger.warning(
                    "could not queue prediction %s (%s); the sweeper will retry", prediction_id, type(exc).__name__
                )
                break
            Prediction.objects.filter(pk=prediction_id, status=P.PENDING).update(queued_at=timezone.now())
            sent += 1
    return sent


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


def _model_image(image: Image, version: ModelVersion) -> tuple[np.ndarray, float]:
    """The image's model input (see ``inference.model_input``) and the milliseconds it took."""
    started = time.perf_counter()
    model_image = model_image_load(
        grid=InputGrid(bytes(image.model_input), image.model_input_version) if image.model_input else None,
        preprocessing_version=version.preprocessing_version,
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
    model_image, decode_ms = _model_image(prediction.image, prediction.model_version)
    # The probability and the domain verdict come from one forward pass (inference.scope).
    scoped = image_scope(model_image, version=prediction.model_version)
    _prediction_store(prediction, scoped, decode_ms)
    return RunOutcome(prediction_id, True, P.SUCCEEDED)


def _prediction_store(prediction: Prediction, scoped: ScopedOutput, decode_ms: float) -> None:
    """Store a result; one that is no chest X-ray is a result too, without a probability."""
    now = timezone.now()
    threshold = prediction.model_version.threshold
    result = scoped.output
    queued = prediction.queued_at or prediction.created_at
    with transaction.atomic():
        # Only the attempt that holds the lease may write its result.
        updated = Prediction.objects.filter(pk=prediction.pk, status=P.RUNNING, attempts=prediction.attempts).update(
            status=P.SUCCEEDED,
            lease_until=None,
            lease_owner="",
            finished_at=now,
            error="",
            threshold=threshold,
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
                site=prediction.image.site,
                model_version=prediction.model_version_id,
                status=P.SUCCEEDED,
                domain=scoped.verdict.domain,
            )


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
    ids = list(Prediction.objects.filter(expired | unsent | stale).values_list("pk", flat=True)[:5000])
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
    live = list(Prediction.objects.filter(pk__in=ids, status=P.PENDING).values_list("pk", flat=True))
    if live:
        logger.info("worker %s takes back %d predictions its previous process left running", hostname, len(live))
    return predictions_enqueue(prediction_ids=live) if live else 0


def _study_ai_summary(study: Study, version: ModelVersion | None) -> dict:
    predictions = Prediction.objects.filter(image__study=study)
    if version is not None:
        predictions = predictions.filter(model_version=version)
    rows = list(predictions)
    # Only results that count make the study's probability and flag (inference.display): a muted one is shown.
    summary = predictions_summary(rows)
    best = summary.probability
    return {
        "statuses": {p.status for p in rows},
        "probability": best,
        "muted_probability": summary.muted_probability,
        "domain": summary.domain,
        "flagged": best is not None and version is not None and best >= version.threshold,
    }


def _no_ai_reason(study: Study, statuses: set[str]) -> str:
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


def study_ai_refresh(*, study_id: int, no_ai_reason: str = "") -> Study:
    """Make the study's status and AI summary follow its predictions."""
    with transaction.atomic():
        study = Study.objects.select_for_update().select_related("site").get(pk=study_id)
        version = active_model_version()
        summary = _study_ai_summary(study, version)
        statuses = summary["statuses"]
        newly_flagged = summary["flagged"] and not study.ai_flagged
        study.ai_probability = summary["probability"]
        study.ai_flagged = summary["flagged"]
        study.ai_muted_probability = summary["muted_probability"]
        study.ai_domain = summary["domain"]
        fields = ["ai_probability", "ai_flagged", "ai_muted_probability", "ai_domain", "updated_at"]
        done = not statuses & {P.PENDING, P.RUNNING}
        reason = ""
        if done:
            reason = "" if P.SUCCEEDED in statuses else (no_ai_reason or _no_ai_reason(study, statuses))
            if study.ai_completed_at is None and statuses:
                study.ai_completed_at = timezone.now()
                fields.append("ai_completed_at")
        study.save(update_fields=fields)
        target = status_after_ai(study.status, running=P.RUNNING in statuses, pending=P.PENDING in statuses)
        if target != study.status:
            study_transition(study=study, target=target, reason=reason)
        elif study.status == StudyStatus.AWAITING_REVIEW and reason != study.status_reason:
            study.status_reason = reason
            study.save(update_fields=["status_reason"])
        if newly_flagged:
            study_flagged_notice_queue(study=study)
    return study
