"""The retention policy: due images of reported studies lose their files, never their study, results or audit."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone

from cases.ingest import IncomingFile, studies_ingest
from cases.models import AuditEvent, FileState, Image, OutboxItem, ResultDestination, ResultObject, Review, Study
from cases.retention import image_purge, images_due_for_retention, retention_apply
from cases.reviews import ReadingInput, review_amend, review_sign
from cases.tasks import retention_apply_task
from inference.models import Prediction, PredictionStatus
from tests.dicom_factory import make_dicom


@pytest.fixture
def own_media(settings, tmp_path):
    settings.MEDIA_ROOT = tmp_path
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {**settings.STORAGES["default"], "OPTIONS": {"location": str(tmp_path)}},
    }


def _ingested_study(site, tech, index: int) -> Study:
    data = make_dicom(index, patient_id=f"MRN-{index}", study_uid=f"1.2.826.0.1.3680043.10.77.{index}")
    studies_ingest(files=[IncomingFile(f"{index}.dcm", data)], site=site, user=tech)
    return Study.objects.get(study_instance_uid=f"1.2.826.0.1.3680043.10.77.{index}")


def _signed(study: Study, rad, *, days_ago: int) -> Study:
    Study.objects.filter(pk=study.pk).update(status="awaiting_review")
    review = review_sign(study_id=study.pk, user=rad, reading=ReadingInput(finding="no_pneumonia"))
    Review.objects.filter(pk=review.pk).update(signed_at=timezone.now() - timedelta(days=days_ago))
    return Study.objects.get(pk=study.pk)


@pytest.fixture
def policy_site(demo_site):
    demo_site.retention_days = 30
    demo_site.save()
    return demo_site


@pytest.fixture
def old_study(own_media, active_model, policy_site, tech, rad) -> Study:
    """A study signed 40 days ago at a site that keeps images 30 days."""
    return _signed(_ingested_study(policy_site, tech, 0), rad, days_ago=40)


def _image(study: Study) -> Image:
    return Image.objects.get(study=study)


@pytest.mark.slow  # ingests a real DICOM with the shipped models
def test_it_lists_due_files_on_a_dry_run_and_deletes_nothing(old_study, rad, tech, policy_site, capsys) -> None:
    recent = _signed(_ingested_study(policy_site, tech, 1), rad, days_ago=10)
    image = _image(old_study)
    signed = old_study.reviews.get().signed_at
    call_command("apply_retention", "--dry-run")
    out = capsys.readouterr().out.splitlines()
    assert out == [
        f"image {image.pk} study {old_study.pk} site DEMO signed {signed:%Y-%m-%d}",
        "total: 1 due",
    ]
    assert default_storage.exists(image.file.name) and _image(old_study).file_state == FileState.OK
    assert _image(recent).file_state == FileState.OK


@pytest.mark.slow  # ingests a real DICOM with the shipped models
def test_it_purges_the_files_and_keeps_the_rows_results_and_audit(old_study, capsys) -> None:
    image = _image(old_study)
    # The ingest queued the image's prediction; it stands for a result the worker delivered.
    assert Prediction.objects.filter(image=image).update(status=PredictionStatus.SUCCEEDED, probability=0.2) == 1
    before = AuditEvent.objects.count()
    assert image.model_input  # the ingest kept the input grid
    call_command("apply_retention")
    assert capsys.readouterr().out.splitlines()[-1] == "total: 1 purged"
    purged = _image(old_study)
    assert purged.file_state == FileState.PURGED and purged.purged_at is not None
    assert purged.model_input is None and purged.model_input_version == ""
    assert not default_storage.exists(image.file.name)
    assert Study.objects.filter(pk=old_study.pk).exists() and old_study.reviews.count() == 1
    assert Prediction.objects.filter(image=image, status=PredictionStatus.SUCCEEDED).exists()
    events = AuditEvent.objects.filter(action="retention_purge")
    assert events.count() == 1 and AuditEvent.objects.count() == before + 1
    event = events.get()
    assert (event.object_type, event.object_id, event.detail["study_id"]) == ("Image", str(image.pk), old_study.pk)
    assert event.detail["retention_days"] == 30
    # A second run (or a redelivered beat task) purges nothing twice.
    assert retention_apply_task() == 0 and image_purge(image_id=image.pk) is False


@pytest.mark.slow  # ingests a real DICOM with the shipped models
def test_it_deletes_pneumos_secondary_captures_of_the_image_but_not_its_reports(old_study) -> None:
    image = _image(old_study)
    destination = ResultDestination.objects.create(ae_title="PACS", host="127.0.0.1", port=104)
    capture = _queued(old_study, image, destination, ResultObject.SECONDARY_CAPTURE, "1.2.3.4.1")
    report = _queued(old_study, None, destination, ResultObject.REPORT_SR, "1.2.3.4.2")
    assert retention_apply() == 1
    assert not default_storage.exists(capture.file.name) and not OutboxItem.objects.filter(pk=capture.pk).exists()
    assert default_storage.exists(report.file.name) and OutboxItem.objects.filter(pk=report.pk).exists()
    assert AuditEvent.objects.get(action="retention_purge").detail["secondary_captures"] == ["1.2.3.4.1"]


def _queued(study, image, destination, kind, uid) -> OutboxItem:
    now = timezone.now()
    name = default_storage.save(f"outbox/test/{uid}.dcm", ContentFile(b"DICM"))
    return OutboxItem.objects.create(
        destination=destination,
        kind=kind,
        site=study.site,
        study=study,
        image=image,
        sop_instance_uid=uid,
        file=name,
        next_attempt_at=now,
        retry_from=now,
    )


@pytest.mark.slow  # ingests a real DICOM with the shipped models
def test_it_keeps_a_study_under_legal_hold(old_study) -> None:
    Study.objects.filter(pk=old_study.pk).update(legal_hold=True, legal_hold_reason="Litigation 2026-7")
    assert images_due_for_retention() == [] and retention_apply() == 0
    assert _image(old_study).file_state == FileState.OK


@pytest.mark.slow  # ingests a real DICOM with the shipped models
def test_it_keeps_the_studies_of_a_patient_under_legal_hold(old_study) -> None:
    patient = old_study.patient
    patient.legal_hold = True
    patient.save()
    assert retention_apply() == 0
    assert default_storage.exists(_image(old_study).file.name)


@pytest.mark.slow  # ingests a real DICOM with the shipped models
def test_it_keeps_images_forever_without_a_policy(old_study, policy_site) -> None:
    policy_site.retention_days = None
    policy_site.save()
    assert retention_apply(now=timezone.now() + timedelta(days=3650)) == 0


@pytest.mark.slow  # ingests a real DICOM with the shipped models
def test_it_never_purges_an_unsigned_study(own_media, active_model, policy_site, tech) -> None:
    study = _ingested_study(policy_site, tech, 2)
    Study.objects.filter(pk=study.pk).update(status="awaiting_review")
    assert retention_apply(now=timezone.now() + timedelta(days=3650)) == 0
    assert _image(study).file_state == FileState.OK


@pytest.mark.slow  # ingests a real DICOM with the shipped models
def test_it_counts_from_the_latest_signature(old_study, rad) -> None:
    review_amend(
        study_id=old_study.pk,
        user=rad,
        reading=ReadingInput(finding="pneumonia", reason="false_negative"),
        amendment_reason="Second look",
        amends_version=1,
    )
    assert retention_apply() == 0  # amended today: 30 more days


@pytest.mark.slow  # ingests a real DICOM with the shipped models
def test_it_lets_a_purged_study_be_amended(old_study, rad) -> None:
    assert retention_apply() == 1
    review = review_amend(
        study_id=old_study.pk,
        user=rad,
        reading=ReadingInput(finding="pneumonia", reason="false_negative"),
        amendment_reason="Clinical follow-up",
        amends_version=1,
    )
    assert review.version == 2


@pytest.mark.slow  # ingests a real DICOM with the shipped models
def test_it_lists_purged_files_apart_in_verify_storage_and_exits_0(old_study, capsys) -> None:
    retention_apply()
    image = _image(old_study)
    call_command("verify_storage")  # no SystemExit: clean
    out = capsys.readouterr().out
    assert f"purged   image {image.pk} (deleted by retention policy)" in out
    assert "0 missing, 0 changed, 0 orphaned, 1 purged" in out
    assert _image(old_study).file_state == FileState.PURGED  # not turned into "missing"


@pytest.mark.slow  # ingests a real DICOM with the shipped models
def test_it_says_on_the_study_page_and_endpoints_that_retention_deleted_the_image(old_study, client, rad) -> None:
    retention_apply()
    image = _image(old_study)
    notice = f"Deleted by retention policy on {timezone.localdate(image.purged_at):%Y-%m-%d}."
    client.force_login(rad)
    page = client.get(reverse("study_detail", args=[old_study.pk])).content.decode()
    assert notice in page
    assert f'data-notice="{notice}"' in page
    for name in ("image_pixels", "image_render", "image_file"):
        response = client.get(reverse(name, args=[image.pk]))
        assert response.status_code == 410
        assert response.content.decode() == notice
    report = client.get(reverse("study_report", args=[old_study.pk])).content.decode()
    assert notice in report


def test_it_audits_a_legal_hold_set_in_the_admin(client, admin_user, demo_site, make_study) -> None:
    admin_user.is_superuser = True
    admin_user.save()
    study = make_study(demo_site)
    client.force_login(admin_user)
    form = {
        "patient": study.patient.pk,
        "site": demo_site.pk,
        "study_instance_uid": study.study_instance_uid,
        "priority": "routine",
        "legal_hold": "on",
        "legal_hold_reason": "Litigation 2026-7",
        "images-TOTAL_FORMS": 0,
        "images-INITIAL_FORMS": 0,
    }
    assert client.post(reverse("admin:cases_study_change", args=[study.pk]), form).status_code == 302
    study.refresh_from_db()
    assert study.legal_hold and study.legal_hold_reason == "Litigation 2026-7"
    event = AuditEvent.objects.get(action="legal_hold_set")
    assert (event.object_type, event.object_id, event.username) == ("Study", str(study.pk), "admin")
    assert "Litigation" not in str(event.detail)  # the reason stays on the study, not in the trail


def test_it_runs_daily_from_beat(settings) -> None:
    entries = [e for e in settings.CELERY_BEAT_SCHEDULE.values() if e["task"] == "cases.tasks.retention_apply"]
    assert entries == [{"task": "cases.tasks.retention_apply", "schedule": 24 * 3600.0}]


@pytest.mark.slow  # ingests a real DICOM with the shipped models
def test_it_leaves_a_purged_image_out_of_dicomweb(old_study) -> None:
    from cases.dicomweb.instances import instances_of

    assert [i.sop_uid for i in instances_of([old_study])] == [_image(old_study).sop_instance_uid]
    retention_apply()
    assert instances_of([old_study]) == []


def test_it_audits_a_legal_hold_lifted_from_a_patient_in_the_admin(client, admin_user, demo_site, make_patient):
    admin_user.is_superuser = True
    admin_user.save()
    patient = make_patient(demo_site, legal_hold=True, legal_hold_reason="Court order")
    client.force_login(admin_user)
    form = {"site": demo_site.pk, "patient_id": patient.patient_id, "name": patient.name, "sex": ""}
    assert client.post(reverse("admin:cases_patient_change", args=[patient.pk]), form).status_code == 302
    patient.refresh_from_db()
    assert not patient.legal_hold
    event = AuditEvent.objects.get(action="legal_hold_lifted")
    assert (event.object_type, event.object_id, event.detail) == ("Patient", str(patient.pk), {"reason_given": False})
