from __future__ import annotations

import pytest
from django.db import IntegrityError, connection, transaction

from cases.audit import audit_record
from cases.models import AuditEvent, Patient


def test_it_keeps_patient_ids_unique_per_site_only(demo_site, north_site, make_patient) -> None:
    make_patient(demo_site, patient_id="MRN1")
    make_patient(north_site, patient_id="MRN1")
    with pytest.raises(IntegrityError), transaction.atomic():
        make_patient(demo_site, patient_id="MRN1")
    assert Patient.objects.filter(patient_id="MRN1").count() == 2


def test_it_keeps_study_uids_unique_per_site_only(demo_site, north_site, make_study) -> None:
    make_study(demo_site, study_instance_uid="1.2.3")
    make_study(north_site, study_instance_uid="1.2.3")
    with pytest.raises(IntegrityError), transaction.atomic():
        make_study(demo_site, study_instance_uid="1.2.3")


def test_it_keeps_sop_uids_unique_per_site_only(demo_site, north_site, make_study, make_image) -> None:
    make_image(make_study(demo_site), sop_instance_uid="9.9")
    make_image(make_study(north_site), sop_instance_uid="9.9")
    with pytest.raises(IntegrityError), transaction.atomic():
        make_image(make_study(demo_site), sop_instance_uid="9.9")


def test_it_never_updates_or_deletes_an_audit_event(demo_site, tech) -> None:
    event = audit_record(action="view_study", user=tech, site=demo_site)
    event.action = "tampered"
    with pytest.raises(PermissionError):
        event.save()
    with pytest.raises(PermissionError):
        event.delete()
    assert AuditEvent.objects.get(pk=event.pk).action == "view_study"


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the trigger is PostgreSQL's")
def test_it_refuses_audit_updates_at_the_database(demo_site, tech) -> None:
    event = audit_record(action="view_study", user=tech, site=demo_site)
    with pytest.raises(Exception, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).update(action="tampered")
    with pytest.raises(Exception, match="append-only"), transaction.atomic():
        AuditEvent.objects.filter(pk=event.pk).delete()


def test_it_turns_a_stored_failed_study_into_one_awaiting_review(demo_site, make_study) -> None:
    from importlib import import_module

    from django.apps import apps

    migration = import_module("cases.migrations.0008_study_status_without_failed")
    silent = make_study(demo_site, status="failed")
    explained = make_study(demo_site, status="failed", status_reason="No AI result: no image is eligible for the AI.")
    reported = make_study(demo_site, status="reported")

    migration.failed_to_awaiting_review(apps, None)

    for study in (silent, explained, reported):
        study.refresh_from_db()
    assert (silent.status, silent.status_reason) == ("awaiting_review", migration.NO_AI_REASON)
    assert (explained.status, explained.status_reason) == (
        "awaiting_review",
        "No AI result: no image is eligible for the AI.",
    )
    assert reported.status == "reported"
