"""The result outbox: Pneumo's DICOM result objects, queued per destination and sent by C-STORE with retries.

A result (an AI prediction, a signed review) of an image received as DICOM is
built into DICOM objects by ``cases.dicom.results`` (AI result SR, heatmap
secondary capture, report SR), stored once through Django's storage API, and
queued as one ``OutboxItem`` per destination that wants that kind of object
for that site. A Celery task sends one item; a failure to reach the
destination is retried after 10 s, doubling up to
``PNEUMO_RESULT_RETRY_MAX_SECONDS``, for ``PNEUMO_RESULT_RETRY_HOURS``, then
the item is ``failed`` until an admin resends it. Beat's sweeper re-queues
due items whose message was lost, so nothing is lost while a PACS is down.

Destinations come from the admin, plus ``PNEUMO_RESULT_DESTINATIONS``
(every object of every site), registered on the first queueing in each
process: every object passes through here before a destination is needed,
in the web process (signing) and the worker (predictions) alike, and
AppConfig.ready must not write to the database.
"""

from __future__ import annotations

import io
import logging
import tomllib
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import F, Q, QuerySet
from django.utils import timezone

from cases.audit import audit_record
from cases.dicom.addresses import ae_addresses_parse
from cases.models import Image, OutboxItem, OutboxState, ResultDestination, ResultObject, Review, Study, User
from inference.models import AiMode

if TYPE_CHECKING:
    from django.http import HttpRequest
    from pydicom.dataset import Dataset

    from inference.models import Prediction

logger = logging.getLogger(__name__)

FIRST_RETRY_SECONDS = 10
SEND_LEASE_SECONDS = 120  # longer than the network timeouts below add up to
NETWORK_TIMEOUT_SECONDS = 20
SWEEP_GRACE_SECONDS = 5  # a retry's own delayed message goes first; the sweeper catches lost ones
_KIND_FLAG = {
    ResultObject.AI_SR: "send_ai_sr",
    ResultObject.SECONDARY_CAPTURE: "send_secondary_capture",
    ResultObject.REPORT_SR: "send_report_sr",
}


class NotDelivered(Exception):
    """The destination did not take the object; ``retry`` says whether another try may succeed."""

    def __init__(self, reason: str, *, retry: bool) -> None:
        super().__init__(reason)
        self.retry = retry


# --- Destinations ------------------------------------------------------------------------------


_registered_from: list[str] = []  # the PNEUMO_RESULT_DESTINATIONS value this process registered


def destinations_register() -> int:
    """Make PNEUMO_RESULT_DESTINATIONS' entries destinations of every object of every site; idempotent.

    An entry removed from the variable stops receiving (inactive), its outbox kept.
    """
    text = settings.PNEUMO_RESULT_DESTINATIONS
    try:
        addresses = ae_addresses_parse(text, variable="PNEUMO_RESULT_DESTINATIONS")
    except ValueError as exc:
        raise ImproperlyConfigured(str(exc)) from None
    keep = []
    for address in addresses:
        destination, _ = ResultDestination.objects.update_or_create(
            ae_title=address.ae_title,
            host=address.host,
            port=address.port,
            defaults={"from_settings": True, "active": True, "all_sites": True}
            | dict.fromkeys(_KIND_FLAG.values(), True),
        )
        keep.append(destination.pk)
    ResultDestination.objects.filter(from_settings=True).exclude(pk__in=keep).update(active=False)
    return len(keep)


def _destinations_registered() -> None:
    if _registered_from != [settings.PNEUMO_RESULT_DESTINATIONS]:
        destinations_register()
        _registered_from[:] = [settings.PNEUMO_RESULT_DESTINATIONS]


def destinations_for(*, study: Study, kind: str) -> QuerySet[ResultDestination]:
    """The active destinations that receive ``kind`` objects of the study's site."""
    _destinations_registered()
    wanted = ResultDestination.objects.filter(active=True, **{_KIND_FLAG[kind]: True})
    return wanted.filter(Q(all_sites=True) | Q(sites=study.site_id)).distinct().order_by("pk")


# --- Queueing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class ResultDicom:
    """One object to queue: its kind and the dataset ``cases.dicom.results`` built."""

    kind: str
    dataset: Dataset


@cache
def pneumo_version() -> str:
    """Pneumo's own version (pyproject.toml), named in every object's SoftwareVersions."""
    with open(settings.BASE_DIR / "pyproject.toml", "rb") as handle:
        return str(tomllib.load(handle)["project"]["version"])


def source_dataset(image: Image) -> Dataset:
    """The stored DICOM file of an image, pixels included (the secondary capture burns its heatmap into them)."""
    from pydicom import dcmread

    with default_storage.open(image.file.name, "rb") as handle:
        return dcmread(handle)


def _received_as_dicom(image: Image) -> bool:
    # PNG and JPEG uploads have no DICOM study to join.
    return image.kind == "dicom"


def outbox_queue_for_prediction(prediction: Prediction) -> list[OutboxItem]:
    """Queue the AI result SR and the heatmap secondary capture of a stored prediction for its destinations."""
    from inference.models import PredictionStatus

    image = prediction.image
    kinds = (ResultObject.AI_SR, ResultObject.SECONDARY_CAPTURE)
    if prediction.status != PredictionStatus.SUCCEEDED or not _received_as_dicom(image):
        return []
    if image.study.site.ai_mode == AiMode.SHADOW:
        return []  # a shadow site's AI results go nowhere (cases.ai_modes); going live sends the unsigned ones
    if not any(destinations_for(study=image.study, kind=kind).exists() for kind in kinds):
        return []  # nothing is built for nobody
    try:
        objects = _prediction_objects(prediction, source_dataset(image))
    except Exception:  # a header the builders cannot describe must never cost the prediction itself
        logger.exception("the result objects of prediction %s could not be built", prediction.pk)
        return []
    return outbox_queue(study=image.study, image=image, objects=objects, prediction=prediction)


def _prediction_objects(prediction: Prediction, source: Dataset) -> list[ResultDicom]:
    from cases.dicom import results

    result = results.ai_result_from_prediction(prediction)
    objects = [ResultDicom(ResultObject.AI_SR, results.ai_result_sr(source, result, pneumo_version=pneumo_version()))]
    capture = results.heatmap_secondary_capture(source, result, pneumo_version=pneumo_version())
    if capture is not None:  # none for an image that is no chest X-ray
        objects.append(ResultDicom(ResultObject.SECONDARY_CAPTURE, capture))
    return objects


def outbox_queue_for_review(review: Review) -> list[OutboxItem]:
    """Queue the signed report SR of a review (an amendment references the SR it replaces)."""
    image = _report_source_image(review.study)
    if image is None or not destinations_for(study=review.study, kind=ResultObject.REPORT_SR).exists():
        return []
    from cases.dicom import results

    try:
        amends = _report_dataset(review.supersedes) if review.supersedes_id else None
        report = results.signed_report_from_review(review, amends=amends)
        dataset = results.report_sr(source_dataset(image), report, pneumo_version=pneumo_version())
    except Exception:  # the signature stands whatever the source header holds
        logger.exception("the report SR of review %s could not be built", review.pk)
        return []
    return outbox_queue(
        study=review.study, image=image, objects=[ResultDicom(ResultObject.REPORT_SR, dataset)], review=review
    )


def _report_source_image(study: Study) -> Image | None:
    return next((image for image in study.images.order_by("pk") if _received_as_dicom(image)), None)


def _report_dataset(review: Review) -> Dataset | None:
    """The report SR sent for ``review`` (what an amendment names as its predecessor), if one was built."""
    from pydicom import dcmread

    item = OutboxItem.objects.filter(review=review, kind=ResultObject.REPORT_SR).order_by("pk").first()
    if item is None:
        return None
    with default_storage.open(item.file.name, "rb") as handle:
        return dcmread(handle, stop_before_pixels=True)


def outbox_queue(
    *,
    study: Study,
    image: Image | None,
    objects: list[ResultDicom],
    prediction: Prediction | None = None,
    review: Review | None = None,
) -> list[OutboxItem]:
    """One outbox item per object and destination that wants it; the same object again queues nothing."""
    now = timezone.now()
    created: list[OutboxItem] = []
    with transaction.atomic():
        for result in objects:
            destinations = list(destinations_for(study=study, kind=result.kind))
            uid = str(result.dataset.SOPInstanceUID)
            fresh = [d for d in destinations if not _already_queued(d, result.kind, uid, prediction, review)]
            if not fresh:
                continue
            stored = _object_store(result.dataset, uid, now)
            for destination in fresh:
                created.append(
                    OutboxItem.objects.create(
                        destination=destination,
                        kind=result.kind,
                        site_id=study.site_id,
                        study=study,
                        image=image,
                        prediction=prediction,
                        review=review,
                        sop_instance_uid=uid,
                        sop_class_uid=str(result.dataset.SOPClassUID),
                        file=stored,
                        next_attempt_at=now,
                        retry_from=now,
                    )
                )
        ids = [item.pk for item in created]
        transaction.on_commit(lambda: _publish(ids))
    return created


def _already_queued(
    destination: ResultDestination, kind: str, uid: str, prediction: Prediction | None, review: Review | None
) -> bool:
    same = Q(sop_instance_uid=uid)
    if prediction is not None:
        same |= Q(kind=kind, prediction=prediction)
    if review is not None:
        same |= Q(kind=kind, review=review)
    return OutboxItem.objects.filter(same, destination=destination).exists()


def _object_store(dataset: Dataset, uid: str, now: datetime) -> str:
    from pydicom import dcmwrite

    buffer = io.BytesIO()
    dcmwrite(buffer, dataset, enforce_file_format=True)
    # Named by its UID, never by patient data; shared by the items of every destination.
    return default_storage.save(f"outbox/{now:%Y/%m}/{uid}.dcm", ContentFile(buffer.getvalue()))


# --- Sending -----------------------------------------------------------------------------------


def _publish(item_ids: list[int], *, countdown: float | None = None) -> None:
    from cases.tasks import outbox_send_task

    for item_id in item_ids:
        try:
            outbox_send_task.apply_async(kwargs={"item_id": item_id}, countdown=countdown)
        except Exception as exc:  # noqa: BLE001 - any broker error: the sweeper sends it once the broker is back
            logger.warning("could not queue outbox item %s (%s)", item_id, type(exc).__name__)


def _claim(item_id: int, now: datetime) -> bool:
    """Take a due item with a lease (one conditional update): a second message for it is a no-op."""
    due = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    return (
        OutboxItem.objects.filter(due, pk=item_id, state=OutboxState.PENDING, next_attempt_at__lte=now).update(
            lease_until=now + timedelta(seconds=SEND_LEASE_SECONDS), attempts=F("attempts") + 1
        )
        == 1
    )


def outbox_send(*, item_id: int, now: datetime | None = None) -> str:
    """Send one due item by C-STORE; returns its state afterwards, or "skipped" when it was not due."""
    now = now or timezone.now()
    if not _claim(item_id, now):
        return "skipped"
    item = OutboxItem.objects.select_related("destination").get(pk=item_id)
    try:
        c_store_send(item)
    except NotDelivered as failure:
        return _not_delivered(item, failure, now)
    except Exception as exc:  # a network or library error: the item stays in the outbox, tried again
        logger.exception("outbox item %s: the C-STORE failed unexpectedly", item.pk)
        return _not_delivered(item, NotDelivered(f"{type(exc).__name__}: {exc}", retry=True), now)
    OutboxItem.objects.filter(pk=item.pk).update(
        state=OutboxState.SENT, sent_at=timezone.now(), lease_until=None, last_error=""
    )
    audit_record(
        action="result_sent",
        obj=item,
        site=item.site,
        study_id=item.study_id,
        kind=item.kind,
        destination=str(item.destination),
        attempts=item.attempts,
    )
    logger.info("outbox item %s sent to %s", item.pk, item.destination)
    return OutboxState.SENT


def _retry_delay(attempts: int) -> float:
    return min(settings.PNEUMO_RESULT_RETRY_MAX_SECONDS, FIRST_RETRY_SECONDS * 2 ** max(0, attempts - 1))


def _not_delivered(item: OutboxItem, failure: NotDelivered, now: datetime) -> str:
    delay = _retry_delay(item.attempts)
    give_up_at = item.retry_from + timedelta(hours=settings.PNEUMO_RESULT_RETRY_HOURS)
    reason = str(failure)[:1000]
    if not failure.retry or now + timedelta(seconds=delay) > give_up_at:
        why = reason if not failure.retry else f"{reason}; gave up after {item.attempts} attempts"
        OutboxItem.objects.filter(pk=item.pk).update(state=OutboxState.FAILED, lease_until=None, last_error=why)
        audit_record(action="result_send_failed", obj=item, site=item.site, study_id=item.study_id, kind=item.kind)
        logger.warning("outbox item %s failed: %s", item.pk, why)
        return OutboxState.FAILED
    OutboxItem.objects.filter(pk=item.pk).update(
        lease_until=None, last_error=reason, next_attempt_at=now + timedelta(seconds=delay)
    )
    logger.info("outbox item %s not delivered (%s): next try in %.0f s", item.pk, reason, delay)
    transaction.on_commit(lambda: _publish([item.pk], countdown=delay))
    return OutboxState.PENDING


def c_store_send(item: OutboxItem) -> None:
    """C-STORE the item's object to its destination; NotDelivered says why not."""
    from pydicom import dcmread
    from pydicom.uid import ExplicitVRLittleEndian, ImplicitVRLittleEndian
    from pynetdicom import AE

    try:
        with default_storage.open(item.file.name, "rb") as handle:
            dataset = dcmread(handle)
    except OSError as exc:
        raise NotDelivered(f"the stored object cannot be read ({type(exc).__name__})", retry=False) from None
    destination = item.destination
    ae = AE(ae_title=settings.PNEUMO_DICOM_AE)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = NETWORK_TIMEOUT_SECONDS
    ae.connection_timeout = NETWORK_TIMEOUT_SECONDS
    ae.add_requested_context(dataset.SOPClassUID, [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
    assoc = ae.associate(destination.host, destination.port, ae_title=destination.ae_title)
    if not assoc.is_established:
        raise NotDelivered(f"{destination} {_not_associated(assoc)}", retry=True)
    try:
        status = assoc.send_c_store(dataset)
    except ValueError:  # pynetdicom: no accepted presentation context for the object's SOP class
        raise NotDelivered(f"{destination} accepts no {dataset.SOPClassUID.name} objects", retry=False) from None
    finally:
        assoc.release()
    _status_check(status, destination)


def _not_associated(assoc) -> str:
    if assoc.is_rejected:
        return "rejected the association (is Pneumo's AE title known to it?)"
    # A refused connection and an abort read alike in pynetdicom (A-P-ABORT).
    return "could not be reached, or aborted the association (down, or it accepts no such object)"


def _status_check(status: Dataset | None, destination: ResultDestination) -> None:
    if status is None or "Status" not in status:
        raise NotDelivered(f"{destination} did not answer the C-STORE (timeout or aborted)", retry=True)
    code = int(status.Status)
    if code == 0x0000 or code in (0x0001, 0x0107, 0x0116) or code >> 12 == 0xB:
        return  # success, or a warning: the object is stored
    comment = str(status.get("ErrorComment", "")).strip()
    detail = f"{destination} refused the object: status 0x{code:04X}" + (f" ({comment})" if comment else "")
    # 0xA7xx is "out of resources": worth another try; any other refusal would be refused again.
    raise NotDelivered(detail, retry=code >> 8 == 0xA7)


def outbox_sweep(*, now: datetime | None = None) -> int:
    """Queue the due items whose message was lost (broker down, worker killed); the claim makes extras harmless."""
    now = now or timezone.now()
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    due = OutboxItem.objects.filter(
        free, state=OutboxState.PENDING, next_attempt_at__lte=now - timedelta(seconds=SWEEP_GRACE_SECONDS)
    )
    ids = list(due.order_by("next_attempt_at").values_list("pk", flat=True)[:1000])
    _publish(ids)
    return len(ids)


def outbox_resend(*, items: QuerySet[OutboxItem], user: User | None, request: HttpRequest | None = None) -> int:
    """Send items again from now, with a fresh retry window (a failed one, or one the PACS lost); audited."""
    now = timezone.now()
    with transaction.atomic():
        ids = list(items.select_for_update().values_list("pk", flat=True))
        OutboxItem.objects.filter(pk__in=ids).update(
            state=OutboxState.PENDING, attempts=0, next_attempt_at=now, retry_from=now, lease_until=None, sent_at=None
        )
        for item in OutboxItem.objects.filter(pk__in=ids).select_related("site"):
            audit_record(
                action="result_resend", user=user, obj=item, site=item.site, request=request, study_id=item.study_id
            )
        transaction.on_commit(lambda: _publish(ids))
    return len(ids)
