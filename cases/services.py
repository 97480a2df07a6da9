"""Writes for patients, studies, reviews and sites. Views, the API, commands and
tasks call these; none of them change a model directly."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from cases.audit import audit_record
from cases.models import Study, User
from cases.states import StudyStatus, check_transition

TECHNICIAN = "Technician"
RADIOLOGIST = "Radiologist"


def study_transition(*, study: Study, target: str, reason: str | None = None) -> bool:
    """Move a study to ``target`` if it is not there already; refuse illegal moves.

    ``reason`` None keeps the current reason (a "no AI result" note survives
    claiming and signing). Returns whether the status changed. Callers hold the
    study's row lock.
    """
    if study.status == target:
        return False
    check_transition(study.status, target)
    study.status = target
    if reason is not None:
        study.status_reason = reason
    fields = ["status", "status_reason", "updated_at"]
    if target == StudyStatus.REPORTED:
        study.reported_at = timezone.now()
        fields.append("reported_at")
    study.save(update_fields=fields)
    return True


def patient_correct(*, patient, changed_fields: list[str], user: User, request=None) -> None:
    """An admin corrected demographics: saving resolves any conflict flagged at upload."""
    patient.save()
    audit_record(action="patient_correct", user=user, obj=patient, request=request, fields=changed_fields)


def study_move(*, study: Study, patient, user: User, request=None) -> Study:
    """Move a study (and its images) to the right patient of the same site."""
    from cases.models import Image

    if patient.site_id != study.site_id:
        raise ValueError("A study can only move to a patient of its own site.")
    with transaction.atomic():
        previous = study.patient_id
        study.patient = patient
        study.save(update_fields=["patient", "updated_at"])
        Image.objects.filter(study=study).update(site=study.site)
        audit_record(
            action="study_move", user=user, obj=study, request=request, from_patient=previous, to_patient=patient.pk
        )
    return study


def study_delete(*, study: Study, user: User, request=None) -> None:
    """Delete a study uploaded in error, with its images, predictions and files."""
    from django.core.files.storage import default_storage

    names = list(study.images.values_list("file", flat=True))
    with transaction.atomic():
        audit_record(action="study_delete", user=user, obj=study, request=request, images=len(names))
        study.reviews.all().delete()
        study.delete()
        transaction.on_commit(lambda: [default_storage.delete(name) for name in names])
