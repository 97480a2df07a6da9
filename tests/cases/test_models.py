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
