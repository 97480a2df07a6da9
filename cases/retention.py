"""The retention policy: which stored images are due for deletion (selector), and deleting them (service).

A site with ``retention_days`` keeps the images of a reported study for that
many days after the study's latest signature. Then the stored file, the kept
model input grid and Pneumo's own secondary captures of the image are deleted;
the study, its AI results, reports and audit trail stay, and the image row is
marked ``purged`` so that pages, integrity checks and backups know the file is
gone on purpose. A legal hold on the study or its patient keeps everything.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from django.core.files.storage import default_storage
from django.db import transaction
from django.db.models import Max, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from cases.audit import audit_record
from cases.models import FileState, Image, OutboxItem, Patient, ResultObject, Site, Study, User
from cases.states import StudyStatus

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DueImage:
    image_id: int
    study_id: int
    site_code: str
    signed_at: datetime

    def line(self) -> str:
        return f"image {self.image_id} study {self.study_id} site {self.site_code} signed {self.signed_at:%Y-%m-%d}"


def _due_for_site(site: Site, now: datetime) -> QuerySet[Image]:
    if site.retention_days is None:
        return Image.objects.none()
    cutoff = now - timedelta(days=site.retention_days)
    return (
        Image.objects.filter(
            site=site,
            study__status=StudyStatus.REPORTED,
            study__legal_hold=False,
            study__patient__legal_hold=False,
        )
        .exclude(file_state=FileState.PURGED)
        .annotate(latest_signed_at=Max("study__reviews__signed_at"))
        .filter(latest_signed_at__lte=cutoff)
    )


def images_due_for_retention(*, now: datetime | None = None) -> list[DueImage]:
    """Every image past its site's retention period, oldest signature first."""
    now = now or timezone.now()
    due = [
        DueImage(pk, study_id, site.code, signed_at)
        for site in Site.objects.filter(retention_days__isnull=False)
        for pk, study_id, signed_at in _due_for_site(site, now).values_list("pk", "study_id", "latest_signed_at")
    ]
    return sorted(due, key=lambda item: (item.signed_at, item.image_id))


def _secondary_captures(image: Image) -> QuerySet[OutboxItem]:
    return OutboxItem.objects.filter(image=image, kind=ResultObject.SECONDARY_CAPTURE)


def image_purge(*, image_id: int, now: datetime | None = None) -> bool:
    """Delete one due image's files (idempotent: False when it is not, or no longer, due)."""
    now = now or timezone.now()
    with transaction.atomic():
        image = Image.objects.select_for_update().filter(pk=image_id).first()
        # Checked again under the lock: a hold or an amendment since the selection wins.
        due = _due_for_site(image.site, now).filter(pk=image_id) if image is not None else Image.objects.none()
        signed_at = due.values_list("latest_signed_at", flat=True).first()
        if signed_at is None:
            return False
        captures = _secondary_captures(image)
        names = [image.file.name, *sorted(set(captures.values_list("file", flat=True)))]
        capture_uids = sorted(set(captures.values_list("sop_instance_uid", flat=True)))
        # The rows of Pneumo's own captures go with their files: nothing may list or resend a deleted object.
        captures.delete()
        Image.objects.filter(pk=image.pk).update(
            file_state=FileState.PURGED, purged_at=now, model_input=None, model_input_version=""
        )
        audit_record(
            action="retention_purge",
            obj=image,
            site=image.site,
            study_id=image.study_id,
            signed_at=signed_at.isoformat(),
            retention_days=image.site.retention_days,
            secondary_captures=capture_uids,
        )
    # After the commit: a rolled-back purge must never have lost a file.
    for name in names:
        _storage_delete(name)
    return True


def _storage_delete(name: str) -> None:
    try:
        default_storage.delete(name)
    except OSError:
        # Left for an admin: verify_storage reports it as an orphan.
        logger.exception("retention could not delete a stored file")


def retention_apply(*, now: datetime | None = None) -> int:
    """Purge every due image, one transaction each; returns how many were purged."""
    now = now or timezone.now()
    return sum(image_purge(image_id=item.image_id, now=now) for item in images_due_for_retention(now=now))


def retention_notice(image: Image) -> str:
    """What pages say in place of a purged image ("" for any other)."""
    if image.file_state != FileState.PURGED:
        return ""
    when: date | None = timezone.localdate(image.purged_at) if image.purged_at else None
    return f"Deleted by retention policy on {when:%Y-%m-%d}." if when else "Deleted by retention policy."


def legal_hold_recorded(*, obj: Study | Patient, user: User, request: HttpRequest | None = None) -> None:
    """Audit a legal hold set or lifted on a study or patient (the reason stays on the row, not in the trail)."""
    audit_record(
        action="legal_hold_set" if obj.legal_hold else "legal_hold_lifted",
        user=user,
        obj=obj,
        site=obj.site,
        request=request,
        reason_given=bool(obj.legal_hold_reason.strip()),
    )
