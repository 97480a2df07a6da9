"""Writes for patients, studies, reviews and sites. Views, the API, commands and
tasks call these; none of them change a model directly."""

from __future__ import annotations

import secrets
from dataclasses import dataclass

from django.contrib.auth.models import Group
from django.db import transaction
from django.utils import timezone

from cases.audit import audit_record
from cases.models import Site, Study, User
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


@dataclass(frozen=True)
class DemoUser:
    username: str
    role: str
    site_codes: tuple[str, ...]
    is_staff: bool = False
    display_name: str = ""


DEMO_SITES = (("DEMO", "Demo General Hospital"), ("NORTH", "North Community Clinic"))
DEMO_USERS = (
    DemoUser("admin", "admin", ("DEMO",), is_staff=True, display_name="Site Administrator"),
    DemoUser("tech", TECHNICIAN, ("DEMO",), display_name="Terry Tech"),
    DemoUser("rad", RADIOLOGIST, ("DEMO",), display_name="Dr Rae Diologist"),
    DemoUser("rad2", RADIOLOGIST, ("NORTH",), display_name="Dr Nora North"),
)


def demo_password_generate() -> str:
    return "-".join(secrets.token_urlsafe(6) for _ in range(3))


@transaction.atomic
def demo_data_ensure(*, password: str = "") -> dict[str, str]:
    """Create the demo sites and users if missing and reset their passwords.

    Idempotent. Returns ``{username: password}``: ``password`` for everyone when
    given, else a fresh random one each (printed by the caller).
    """
    sites = {code: Site.objects.get_or_create(code=code, defaults={"name": name})[0] for code, name in DEMO_SITES}
    logins = {}
    for spec in DEMO_USERS:
        user, _ = User.objects.get_or_create(username=spec.username)
        user.is_staff = user.is_superuser = spec.is_staff
        user.display_name = spec.display_name
        user.is_active = True
        logins[spec.username] = password or demo_password_generate()
        user.set_password(logins[spec.username])
        user.save()
        user.sites.set([sites[c] for c in spec.site_codes])
        if spec.role != "admin":
            user.groups.set([Group.objects.get(name=spec.role)])
    _lockouts_clear(list(logins))
    return logins


def _lockouts_clear(usernames: list[str]) -> None:
    from axes.utils import reset

    for username in usernames:
        reset(username=username)


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
