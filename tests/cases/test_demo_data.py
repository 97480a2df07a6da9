from __future__ import annotations

import re
from collections import Counter
from datetime import date, datetime
from io import BytesIO, StringIO

import numpy as np
import pytest
from axes.models import AccessAttempt
from django.contrib.auth.models import Group
from django.core.management import call_command
from PIL import Image
from pydicom import dcmread
from pydicom.uid import UID, ExplicitVRLittleEndian

from cases.demo import DEMO_STUDIES, DX_SOP_CLASS, demo_dicom
from cases.models import Image as StoredImage
from cases.models import Patient, Review, Site, Study, User
from cases.states import StudyStatus
from inference.model_package import packaged_sample_images
from inference.models import Prediction


def _run(settings, password: str = "") -> dict[str, str]:
    settings.PNEUMO_DEMO_PASSWORD = password
    out = StringIO()
    call_command("demo_data", stdout=out)
    return {line.split()[1]: line.split()[2] for line in out.getvalue().splitlines() if line.startswith("login ")}


@pytest.mark.django_db
def test_it_creates_the_demo_sites_and_users(settings) -> None:
    logins = _run(settings)
    assert set(logins) == {"admin", "tech", "rad", "rad2"}
    assert set(Site.objects.values_list("code", flat=True)) == {"DEMO", "NORTH"}
    assert User.objects.get(username="tech").is_technician
    assert User.objects.get(username="rad").is_radiologist
    assert User.objects.get(username="admin").is_staff
    assert list(User.objects.get(username="rad2").sites.values_list("code", flat=True)) == ["NORTH"]
    assert list(User.objects.get(username="rad").sites.values_list("code", flat=True)) == ["DEMO"]


@pytest.mark.django_db
def test_it_is_idempotent(settings) -> None:
    _run(settings)
    _run(settings)
    assert Site.objects.count() == 2
    assert User.objects.count() == 4
    assert User.objects.get(username="tech").groups.count() == 1


@pytest.mark.django_db
def test_it_resets_passwords_to_the_configured_one(settings) -> None:
    _run(settings)
    user = User.objects.get(username="rad")
    user.set_password("something-else-entirely")
    user.save()
    _run(settings, password="demo-password-123")
    assert User.objects.get(username="rad").check_password("demo-password-123")


@pytest.mark.django_db
def test_it_generates_and_prints_working_passwords_when_none_is_configured(settings) -> None:
    first = _run(settings)
    second = _run(settings)
    assert User.objects.get(username="tech").check_password(second["tech"])
    assert first["tech"] != second["tech"]


@pytest.mark.django_db
def test_it_clears_login_lockouts(settings) -> None:
    _run(settings)
    AccessAttempt.objects.create(
        username="tech",
        ip_address="127.0.0.1",
        failures_since_start=9,
        user_agent="x",
        get_data="",
        post_data="",
        http_accept="",
        path_info="/",
    )
    _run(settings, password="demo-password-123")
    assert not AccessAttempt.objects.filter(username="tech").exists()


# ---- the demo studies ----------------------------------------------------------------------------


def _load(settings, *args: str) -> str:
    settings.PNEUMO_DEMO_PASSWORD = "demo-password-123"
    out = StringIO()
    call_command("demo_data", *args, stdout=out)
    return out.getvalue()


def test_it_builds_real_dx_files_of_invented_children() -> None:
    files = [dcmread(BytesIO(demo_dicom(spec, today=date(2025, 3, 14)))) for spec in DEMO_STUDIES]
    assert {ds.file_meta.TransferSyntaxUID for ds in files} == {ExplicitVRLittleEndian}
    assert {(ds.Modality, ds.SOPClassUID, ds.BodyPartExamined) for ds in files} == {("DX", DX_SOP_CLASS, "CHEST")}
    uids = [uid for ds in files for uid in (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)]
    assert len(set(uids)) == len(uids) and all(UID(uid).is_valid for uid in uids)
    assert all(ds.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID for ds in files)
    for ds in files:
        assert re.fullmatch(r"00[1-5]Y", ds.PatientAge)
        born = datetime.strptime(ds.PatientBirthDate, "%Y%m%d").date()
        assert int(ds.PatientAge[:3]) == (date(2025, 3, 14) - born).days // 365.25
        assert ds.PatientName.family_name in {"Example", "Sample", "Fictional", "Madeup"}
    assert sorted(ds.ViewPosition for ds in files) == ["AP"] * 16 + ["LL"]
    # Every packaged picture once as a frontal view, at its own size.
    frontal = [(spec, ds) for spec, ds in zip(DEMO_STUDIES, files, strict=True) if ds.ViewPosition == "AP"]
    assert sorted(spec.sample for spec, _ in frontal) == list(range(16))
    spec, ds = frontal[0]
    picture = Image.open(packaged_sample_images()[spec.sample][0])
    assert (ds.Columns, ds.Rows) == picture.size
    assert np.array_equal(ds.pixel_array, np.asarray(picture.convert("L")))


@pytest.mark.django_db
def test_it_loads_the_demo_studies_through_the_ingest_service(settings, active_model) -> None:
    output = _load(settings, "--studies", "--wait", "0")
    assert "demo studies: 17 stored" in output
    per_site = Counter(Study.objects.values_list("site__code", "priority"))
    assert per_site == {
        ("DEMO", "stat"): 2,
        ("DEMO", "urgent"): 4,
        ("DEMO", "routine"): 7,
        ("NORTH", "stat"): 1,
        ("NORTH", "urgent"): 1,
        ("NORTH", "routine"): 2,
    }
    assert {image.patient_age_years for image in StoredImage.objects.all()} == {1.0, 2.0, 3.0, 4.0, 5.0}
    assert set(Study.objects.filter(site__code="DEMO").values_list("uploaded_by__username", flat=True)) == {"tech"}
    # The worker (absent here) predicts the sixteen frontal views; the lateral one is refused at once.
    assert Prediction.objects.filter(status="pending").count() == 16
    lateral = StoredImage.objects.get(view_position="LL")
    assert lateral.ai_eligibility == "not_eligible"
    assert "lateral" in lateral.ai_eligibility_reason
    assert lateral.study.status == StudyStatus.AWAITING_REVIEW
    assert not lateral.predictions.exists()
    assert "17 in all, 0 signed now" in output  # nothing to sign before the AI has answered


@pytest.mark.django_db
def test_it_loads_the_demo_studies_once(settings, active_model) -> None:
    _load(settings, "--studies", "--wait", "0")
    output = _load(settings, "--studies", "--wait", "0")
    assert "stored" not in output
    assert (Patient.objects.count(), Study.objects.count(), StoredImage.objects.count()) == (17, 17, 17)
    assert Prediction.objects.count() == 16


@pytest.mark.django_db
def test_it_loads_no_studies_when_PNEUMO_DEMO_STUDIES_is_off(settings) -> None:
    settings.PNEUMO_DEMO_STUDIES = False
    output = _load(settings, "--studies")
    assert "demo studies skipped (PNEUMO_DEMO_STUDIES=0)" in output
    assert "login rad demo-password-123" in output  # the users are still there to log in
    assert not Study.objects.exists()


@pytest.mark.django_db
def test_it_loads_no_studies_unless_asked(settings) -> None:
    _load(settings)
    assert not Study.objects.exists()


@pytest.mark.slow
def test_it_shows_the_whole_workflow_once_the_real_worker_has_predicted(settings, celery_worker) -> None:
    for name in ("Technician", "Radiologist"):  # a transactional test's flush removes the migration's groups
        Group.objects.get_or_create(name=name)
    output = _load(settings, "--studies", "--wait", "240")
    assert "17 in all, 3 signed now" in output
    with_ai = Study.objects.filter(status=StudyStatus.AWAITING_REVIEW, ai_probability__isnull=False)
    assert with_ai.filter(site__code="DEMO").count() == 10
    assert with_ai.filter(site__code="NORTH").count() == 3
    assert Counter(Study.objects.filter(status=StudyStatus.REPORTED).values_list("site__code", flat=True)) == {
        "DEMO": 2,
        "NORTH": 1,
    }
    truth = {i: label for i, (_, label) in enumerate(packaged_sample_images())}
    by_uid = {spec.uid("study"): spec for spec in DEMO_STUDIES}
    for review in Review.objects.select_related("study", "radiologist"):
        spec = by_uid[review.study.study_instance_uid]
        assert review.radiologist.username == spec.signer
        assert review.finding == ("pneumonia" if truth[spec.sample] == "PNEUMONIA" else "no_pneumonia")
        # A sample film the scope check finds unlike the model's validation images is read as "not validated".
        assert review.agreement in {"agree", "disagree", "not_validated"}
        assert bool(review.reason) == (review.agreement == "disagree")
    lateral = Study.objects.get(images__view_position="LL")
    assert (lateral.status, lateral.ai_probability) == (StudyStatus.AWAITING_REVIEW, None)
    # A second start signs nothing twice.
    assert "17 in all, 0 signed now" in _load(settings, "--studies", "--wait", "5")
    assert Review.objects.count() == 3
