"""Ingest through the service, the upload view and import_studies: good files stored, bad ones refused."""

from __future__ import annotations

import io
import threading
import zipfile
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.core.management import call_command
from django.db import connection
from django.urls import reverse
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, RLELossless

from cases.ingest import IncomingFile, ManualPatient, studies_ingest
from cases.models import AuditEvent, Image, Patient, Study
from inference.models import Prediction
from tests.dicom_factory import make_dicom, make_jpeg, make_other_image, make_png


def _ingest(site, user, *files: tuple[str, bytes], **kwargs):
    return studies_ingest(files=[IncomingFile(n, d) for n, d in files], site=site, user=user, **kwargs)


def _stored_files() -> set[str]:
    found = set()
    for root, _dirs, files in __import__("os").walk(default_storage.location):
        found |= {str(Path(root, f)) for f in files}
    return found


@pytest.fixture
def ready(active_model, demo_site, tech):
    return demo_site, tech


def test_it_stores_a_dicom_as_patient_study_and_image(ready) -> None:
    site, tech = ready
    report = _ingest(site, tech, ("chest.dcm", make_dicom(patient_id="MRN-1", patient_name="Doe^Jane")))
    assert [f.status for f in report.files] == ["stored"]
    image = Image.objects.get()
    assert image.study.patient.patient_id == "MRN-1" and image.study.patient.name == "Doe, Jane"
    assert image.ai_eligibility == "eligible" and image.modality == "CR" and image.view_position == "AP"
    assert report.study_ids == [image.study_id]
    assert Prediction.objects.get().image == image
    assert Study.objects.get().status == "queued"


def test_it_zeroes_the_dicom_preamble_of_stored_files(ready) -> None:
    site, tech = ready
    _ingest(site, tech, ("evil.dcm", make_dicom(preamble=b"MZ\x90\x00" + b"\xcc" * 124)))
    with default_storage.open(Image.objects.get().file.name) as handle:
        assert handle.read(132) == b"\x00" * 128 + b"DICM"


def test_it_groups_files_sharing_a_study_uid_into_one_study(ready) -> None:
    site, tech = ready
    report = _ingest(
        site, tech, ("a.dcm", make_dicom(0, study_uid="1.2.3.4")), ("b.dcm", make_dicom(1, study_uid="1.2.3.4"))
    )
    assert [f.status for f in report.files] == ["stored", "stored"]
    assert Study.objects.count() == 1 and Image.objects.count() == 2


def test_it_reports_the_same_sop_instance_again_as_a_duplicate(ready) -> None:
    site, tech = ready
    data = make_dicom(sop_uid="1.2.3.99")
    first = _ingest(site, tech, ("a.dcm", data))
    again = _ingest(site, tech, ("a-again.dcm", data))
    assert again.files[0].status == "duplicate" and again.files[0].study_id == first.files[0].study_id
    assert again.study_ids == [] and Image.objects.count() == 1


def test_it_refuses_a_study_uid_arriving_with_another_patient(ready) -> None:
    site, tech = ready
    _ingest(site, tech, ("a.dcm", make_dicom(patient_id="P1", study_uid="1.2.3.5")))
    report = _ingest(site, tech, ("b.dcm", make_dicom(1, patient_id="P2", study_uid="1.2.3.5")))
    assert report.files[0].status == "refused" and "Identity conflict" in report.files[0].reason
    assert Image.objects.count() == 1 and not Patient.objects.filter(patient_id="P2").exists()


def test_it_flags_a_known_patient_arriving_with_other_demographics(ready) -> None:
    site, tech = ready
    _ingest(site, tech, ("a.dcm", make_dicom(patient_id="P1", patient_name="Doe^Jane")))
    report = _ingest(site, tech, ("b.dcm", make_dicom(1, patient_id="P1", patient_name="Roe^Janet")))
    assert report.files[0].status == "stored"
    patient = Patient.objects.get(patient_id="P1")
    assert patient.name == "Doe, Jane" and "name" in patient.demographics_conflict


def test_it_keeps_uids_per_site_so_another_site_learns_nothing(
    active_model, demo_site, north_site, tech, north_tech
) -> None:
    data = make_dicom(sop_uid="1.2.3.77", study_uid="1.2.3.78")
    _ingest(demo_site, tech, ("a.dcm", data))
    report = _ingest(north_site, north_tech, ("a.dcm", data))
    assert report.files[0].status == "stored"
    assert Study.objects.filter(study_instance_uid="1.2.3.78").count() == 2


def test_it_stores_png_and_jpeg_with_the_typed_patient(ready) -> None:
    site, tech = ready
    manual = ManualPatient(patient_id="MRN-9", name="Ada Lovelace", study_description="CXR")
    report = _ingest(site, tech, ("a.png", make_png(bits=16)), ("b.jpg", make_jpeg(1)), manual=manual)
    assert [f.status for f in report.files] == ["stored", "stored"]
    assert Study.objects.count() == 1 and Study.objects.get().patient.patient_id == "MRN-9"
    assert {i.kind for i in Image.objects.all()} == {"png", "jpeg"}
    assert all(i.ai_eligibility == "outside_validated_use" for i in Image.objects.all())


def test_it_refuses_png_without_a_patient_id(ready) -> None:
    site, tech = ready
    report = _ingest(site, tech, ("a.png", make_png()))
    assert report.files[0].status == "refused" and "patient ID" in report.files[0].reason


@pytest.mark.parametrize(
    ("kwargs", "reason_part"),
    [
        ({"modality": "CT"}, "CT"),
        ({"body_part": "KNEE"}, "KNEE"),
        ({"view": "LL"}, "ateral"),
        ({"frames": 3}, "frame"),
    ],
)
def test_it_stores_what_the_ai_cannot_read_as_not_eligible(ready, kwargs, reason_part) -> None:
    site, tech = ready
    report = _ingest(site, tech, ("x.dcm", make_dicom(**kwargs)))
    image = Image.objects.get()
    assert report.files[0].status == "stored" and image.ai_eligibility == "not_eligible"
    assert reason_part.lower() in image.ai_eligibility_reason.lower()
    study = Study.objects.get()
    assert study.status == "awaiting_review" and study.status_reason.startswith("No AI result")
    assert not Prediction.objects.exists()


def test_it_routes_an_adult_to_the_adult_model_inside_its_validated_use(ready) -> None:
    site, tech = ready
    _ingest(site, tech, ("adult.dcm", make_dicom(patient_age="045Y")))
    prediction = Prediction.objects.get()
    assert prediction.model_version.population == "adult" and not prediction.outside_validated_use


def test_it_runs_but_flags_an_age_outside_the_routed_models_validated_ages(ready) -> None:
    site, tech = ready
    _ingest(site, tech, ("old.dcm", make_dicom(patient_age="090Y")))
    prediction = Prediction.objects.get()
    assert prediction.outside_validated_use
    assert "outside the validated ages of 18 to 85 years" in prediction.outside_validated_use_reason


def test_it_skips_outside_validated_use_when_the_site_turned_that_off(ready) -> None:
    site, tech = ready
    site.ai_outside_validated_use = False
    site.save()
    _ingest(site, tech, ("old.dcm", make_dicom(patient_age="090Y")))
    assert not Prediction.objects.exists()
    assert Study.objects.get().status_reason.startswith("No AI result")


@pytest.mark.parametrize("syntax", [JPEGBaseline8Bit, JPEG2000Lossless, RLELossless], ids=["jpeg", "j2k", "rle"])
def test_it_stores_compressed_dicom(ready, syntax) -> None:
    site, tech = ready
    assert _ingest(site, tech, ("c.dcm", make_dicom(transfer_syntax=syntax))).files[0].status == "stored"


def _zip(*members: tuple[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def test_it_unpacks_a_zip_export(ready) -> None:
    site, tech = ready
    data = _zip(
        ("EXPORT/IM0001", make_dicom(0)),
        ("EXPORT/IM0002", make_dicom(1)),
        ("EXPORT/README.txt", b"hi"),
        ("DICOMDIR", b"x"),
    )
    report = _ingest(site, tech, ("export.zip", data))
    assert sorted(f.status for f in report.files) == ["refused", "skipped", "stored", "stored"]


def bad_files() -> dict[str, bytes]:
    dicom = make_dicom(sop_uid="1.2.3.1000")
    return {
        "notes.txt": b"Patient is coughing since Tuesday\n" * 20,
        "report.pdf": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n" * 10,
        "setup.dcm": b"MZ\x90\x00\x03\x00\x00\x00" + b"\x00" * 600,
        "elf.dcm": b"\x7fELF\x02\x01\x01" + b"\x00" * 600,
        "empty.dcm": b"",
        "truncated-header.dcm": dicom[:300],
        "truncated-pixels.dcm": dicom[: len(dicom) - 500],
        "gif.png": make_other_image("GIF"),
        "tiff.png": make_other_image("TIFF"),
        "webp.png": make_other_image("WEBP"),
        "truncated.jpg": make_jpeg()[:400],
    }


def test_it_stores_nine_of_ten_when_one_is_broken(ready) -> None:
    site, tech = ready
    files = [(f"good-{i}.dcm", make_dicom(i, sop_uid=f"1.2.3.{500 + i}")) for i in range(9)]
    files.insert(4, ("broken.dcm", b"DICM" + b"\x00" * 50))
    before = _stored_files()
    report = _ingest(site, tech, *files)
    assert [f.status for f in report.files].count("stored") == 9
    assert [f.status for f in report.files].count("refused") == 1
    assert Image.objects.count() == 9 and len(_stored_files() - before) == 9


def test_it_refuses_every_bad_file_with_a_reason_and_leaves_nothing(ready) -> None:
    site, tech = ready
    before = _stored_files()
    report = _ingest(site, tech, *bad_files().items())
    assert all(f.status == "refused" and f.reason for f in report.files), report.files
    assert not Image.objects.exists() and not Study.objects.exists() and not Patient.objects.exists()
    assert _stored_files() == before
    assert AuditEvent.objects.filter(action="upload_refused").count() == len(report.files)


def test_it_refuses_a_file_over_the_size_limit(ready, settings) -> None:
    site, tech = ready
    settings.PNEUMO_MAX_UPLOAD_BYTES = 1000
    report = _ingest(site, tech, ("big.dcm", make_dicom()))
    assert report.files[0].status == "refused" and "limit" in report.files[0].reason


def test_it_keeps_names_with_other_character_sets_and_markup_verbatim(ready) -> None:
    site, tech = ready
    _ingest(
        site,
        tech,
        ("a.dcm", make_dicom(0, patient_id="A", patient_name="Müller^Jürgen", charset="ISO_IR 100")),
        ("b.dcm", make_dicom(1, patient_id="B", patient_name="<script>alert(1)</script>")),
    )
    assert Patient.objects.get(patient_id="A").name == "Müller, Jürgen"
    assert "<script>" in Patient.objects.get(patient_id="B").name


@pytest.mark.parametrize(
    ("header", "value", "reason_part"),
    [
        ("patient_id", "MRN-\u202e4321", "patient ID (PatientID) contains a bidirectional-text control character"),
        ("patient_id", "MRN\u20661", "U+2066"),
        ("patient_id", "MRN\n1", "patient ID (PatientID) contains a line break or another control character"),
        ("patient_name", "DOE^\u202eENAJ", "patient name (PatientName) contains a bidirectional-text control"),
        ("patient_name", "DOE\r\nJANE", "U+000D"),
    ],
)
def test_it_refuses_a_dicom_whose_patient_id_or_name_can_pass_for_another(ready, header, value, reason_part) -> None:
    # Given a DICOM whose PatientID or PatientName carries a bidi override or a line break
    site, tech = ready
    before = _stored_files()
    data = make_dicom(charset="ISO_IR 192", **{header: value})

    # When it is ingested (the page, the API, import_studies and the listener all come here)
    report = _ingest(site, tech, ("spoof.dcm", data))

    # Then it is refused with the reason, and nothing is stored
    assert report.files[0].status == "refused" and reason_part in report.files[0].reason
    assert not Patient.objects.exists() and not Study.objects.exists() and not Image.objects.exists()
    assert _stored_files() == before
    assert AuditEvent.objects.filter(action="upload_refused").count() == 1


def test_it_refuses_a_typed_patient_id_that_can_pass_for_another(ready) -> None:
    site, tech = ready
    for manual in (ManualPatient(patient_id="MRN\u202e9"), ManualPatient(patient_id="MRN-9", name="Ada\u2069")):
        report = _ingest(site, tech, ("a.png", make_png()), manual=manual)
        assert report.files[0].status == "refused" and "bidirectional-text control" in report.files[0].reason
    assert not Patient.objects.exists()


# --- through the upload page ---------------------------------------------------------


def _post(client, *files: tuple[str, bytes], **fields):
    uploads = []
    for name, data in files:
        upload = io.BytesIO(data)
        upload.name = name
        uploads.append(upload)
    return client.post(reverse("upload_files"), {"files": uploads, "priority": "urgent", **fields})


def test_it_uploads_a_mixed_batch_through_the_page(client, ready) -> None:
    _site, tech = ready
    client.force_login(tech)
    response = _post(client, ("good.dcm", make_dicom()), ("bad.dcm", b"not a dicom"))
    assert response.status_code == 200
    body = response.json()
    assert [f["status"] for f in body["files"]] == ["stored", "refused"]
    assert Study.objects.get().priority == "urgent"


def test_it_answers_400_when_every_file_is_refused(client, ready) -> None:
    _site, tech = ready
    client.force_login(tech)
    response = _post(client, *bad_files().items())
    assert response.status_code == 400
    assert all(f["status"] == "refused" and f["reason"] for f in response.json()["files"])


@pytest.mark.parametrize(("field", "value"), [("patient_id", "MRN\u202e9"), ("patient_name", "Ada\nLovelace")])
def test_it_refuses_a_typed_patient_that_can_pass_for_another_on_the_page(client, ready, field, value) -> None:
    _site, tech = ready
    client.force_login(tech)
    fields = {"patient_id": "MRN-9", "patient_name": "Ada Lovelace"} | {field: value}
    response = _post(client, ("chest.png", make_png()), **fields)
    assert response.status_code == 400
    (reason,) = response.json()["errors"][field]
    assert reason.startswith("The patient ") and "can make it look like another patient's" in reason
    assert not Study.objects.exists()


def test_it_shows_escaped_names_on_the_studies_page(client, ready) -> None:
    site, tech = ready
    _ingest(site, tech, ("b.dcm", make_dicom(patient_name="<script>alert(1)</script>")))
    client.force_login(tech)
    page = client.get(reverse("studies")).content.decode()
    assert "<script>alert(1)</script>" not in page and "&lt;script&gt;" in page


def test_it_lets_only_technicians_and_admins_upload(client, ready, rad) -> None:
    client.force_login(rad)
    assert client.get(reverse("upload")).status_code == 403
    assert _post(client, ("good.dcm", make_dicom())).status_code == 403


def test_it_refuses_an_upload_to_a_site_that_is_not_the_users(client, ready, north_site) -> None:
    _site, tech = ready
    client.force_login(tech)
    response = _post(client, ("good.dcm", make_dicom()), site=north_site.pk)
    assert response.status_code == 400 and not Image.objects.exists()


def test_it_serves_the_stored_file_only_to_the_site(client, ready, north_tech, rad) -> None:
    site, tech = ready
    _ingest(site, tech, ("a.dcm", make_dicom()))
    image = Image.objects.get()
    client.force_login(rad)
    response = client.get(reverse("image_file", args=[image.pk]))
    assert response.status_code == 200 and response["Content-Disposition"].startswith("attachment")
    assert response["X-Content-Type-Options"] == "nosniff"
    client.force_login(north_tech)
    assert client.get(reverse("image_file", args=[image.pk])).status_code == 404


@pytest.mark.django_db(transaction=True)
def test_it_makes_one_study_when_two_technicians_upload_it_at_once(active_model, demo_site, tech, colleague_rad):
    if connection.vendor == "sqlite":
        pytest.skip("concurrent writers need a server database; SQLite serialises them (IMMEDIATE)")
    data = [make_dicom(i, study_uid="1.2.3.4242", sop_uid=f"1.2.3.4242.{i}") for i in range(2)]
    barrier = threading.Barrier(2)
    results = []

    def upload(user) -> None:
        barrier.wait()
        try:
            results.append(_ingest(demo_site, user, ("a.dcm", data[0]), ("b.dcm", data[1])))
        finally:
            connection.close()

    threads = [threading.Thread(target=upload, args=(u,)) for u in (tech, tech)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    statuses = sorted(f.status for r in results for f in r.files)
    assert statuses == ["duplicate", "duplicate", "stored", "stored"]
    assert Study.objects.count() == 1 and Image.objects.count() == 2


# --- import_studies ----------------------------------------------------------------------


def test_it_imports_a_folder_of_good_and_bad_files(ready, tmp_path, capsys) -> None:
    _ = ready
    (tmp_path / "cd" / "sub").mkdir(parents=True)
    (tmp_path / "cd" / "IM1").write_bytes(make_dicom(0))
    (tmp_path / "cd" / "sub" / "IM2.dcm").write_bytes(make_dicom(1))
    (tmp_path / "cd" / "export.zip").write_bytes(_zip(("IM3", make_dicom(2))))
    for name, data in bad_files().items():
        (tmp_path / "cd" / name).write_bytes(data)
    with pytest.raises(SystemExit) as exit_info:
        call_command("import_studies", str(tmp_path / "cd"), "--site", "DEMO", "--priority", "stat")
    out = capsys.readouterr().out
    assert exit_info.value.code == 1
    assert f"summary: 3 stored, 0 duplicate, {len(bad_files())} refused, 0 skipped" in out
    assert out.count("refused ") == len(bad_files())
    assert Image.objects.count() == 3 and set(Study.objects.values_list("priority", flat=True)) == {"stat"}


def test_it_exits_zero_when_nothing_was_refused(ready, tmp_path, capsys) -> None:
    (tmp_path / "IM1").write_bytes(make_dicom(0))
    call_command("import_studies", str(tmp_path), "--site", "DEMO")
    out = capsys.readouterr().out
    assert "summary: 1 stored, 0 duplicate, 0 refused" in out
    call_command("import_studies", str(tmp_path), "--site", "DEMO")
    assert "summary: 0 stored, 1 duplicate, 0 refused" in capsys.readouterr().out


def test_it_reports_a_missing_path_as_refused(ready, tmp_path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:
        call_command("import_studies", str(tmp_path / "nope.dcm"), "--site", "DEMO")
    assert exit_info.value.code == 1 and "Cannot read" in capsys.readouterr().out


def test_it_keeps_the_active_models_input_grid_and_none_for_an_unknown_preprocessing(ready) -> None:
    from PIL import Image as PILImage

    from inference.classifier import preprocessing_get
    from inference.models import ModelVersion

    site, tech = ready
    active = ModelVersion.objects.filter(is_active=True).first()  # both shipped versions share one preprocessing
    size = preprocessing_get(active.preprocessing_version).size
    _ingest(site, tech, ("a.dcm", make_dicom(1, shape=(733, 611))))
    image = Image.objects.get()
    assert image.model_input_version == active.preprocessing_version
    with PILImage.open(io.BytesIO(bytes(image.model_input))) as grid:
        assert grid.size == (size, size) and grid.mode == "L"
    # A version whose preprocessing this code does not know: the upload is stored all the same.
    ModelVersion.objects.filter(is_active=True).update(preprocessing_version="unknown-v9")
    report = _ingest(site, tech, ("b.dcm", make_dicom(2)))
    assert [f.status for f in report.files] == ["stored"]
    assert Image.objects.get(pk=report.files[0].image_id).model_input_version == ""
