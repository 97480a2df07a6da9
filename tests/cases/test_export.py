"""export_deidentified: a site's films de-identified, labelled by the latest signed reading, with a manifest."""

from __future__ import annotations

import csv
import hashlib
import io
import stat
import zipfile
from datetime import date, timedelta
from pathlib import Path

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.test import override_settings
from django.urls import reverse
from django.utils import timezone
from pydicom import dcmread
from pydicom.valuerep import DA

from cases.deidentify import uid_remap
from cases.models import AuditEvent, FileState, Finding, Image, Review, Study
from inference import evaluation, training
from tests.dicom_factory import make_dicom, make_png

KEY = "a" * 64


@pytest.fixture
def key_file(tmp_path) -> Path:
    path = tmp_path / "deid.key"
    path.write_text(KEY + "\n")
    return path


@pytest.fixture
def export(key_file, tmp_path):
    """Run the command into a new folder under tmp_path; returns the folder."""

    def run(*args: str, name: str = "out", key: Path | None = None) -> Path:
        out = tmp_path / name
        with override_settings(PNEUMO_DEID_KEY_FILE=str(key or key_file)):
            call_command("export_deidentified", "--site", "DEMO", "--out", str(out), *args, stdout=io.StringIO())
        return out

    return run


def _review(study, rad, finding: str, version: int = 1) -> Review:
    return Review.objects.create(
        study=study, radiologist=rad, finding=finding, agreement="no_ai", version=version, signed_at=timezone.now()
    )


@pytest.fixture
def site_films(demo_site, north_site, rad, make_patient, make_study, make_image) -> dict:
    """Two DEMO patients: A with two signed studies, B with unsigned, indeterminate and unexportable films."""

    def image(study, data: bytes, *, kind: str = "dicom", age: float | None = 4.0) -> int:
        name = default_storage.save(f"studies/test/export.{'dcm' if kind == 'dicom' else kind}", ContentFile(data))
        return make_image(study, file=name, kind=kind, view_position="AP", patient_age_years=age).pk

    a = make_patient(demo_site, patient_id="MRN-A", name="Smith^Anna", sex="F")
    b = make_patient(demo_site, patient_id="MRN-B", name="Jones^Ben", sex="M")
    a1 = make_study(demo_site, a, study_instance_uid="1.2.826.0.1.3680043.10.901")
    a2 = make_study(demo_site, a, study_instance_uid="1.2.826.0.1.3680043.10.902")
    unsigned, indeterminate, unsafe = (make_study(demo_site, b) for _ in range(3))
    _review(a1, rad, Finding.NO_PNEUMONIA, 1)
    _review(a1, rad, Finding.PNEUMONIA, 2)  # the amendment is the reading that counts
    _review(a2, rad, Finding.NO_PNEUMONIA)
    _review(indeterminate, rad, Finding.INDETERMINATE)
    _review(unsafe, rad, Finding.PNEUMONIA)
    a1_uid = a1.study_instance_uid
    ids = {
        "a1_declared": image(
            a1, make_dicom(8, study_uid=a1_uid, study_date="20240110", extra={"BurnedInAnnotation": "NO"})
        ),
        "a1_undeclared": image(a1, make_dicom(9, study_uid=a1_uid, study_date="20240110"), age=95.0),
        "a2": image(
            a2,
            make_dicom(0, study_uid=a2.study_instance_uid, study_date="20240301", extra={"BurnedInAnnotation": "NO"}),
        ),
        "unsigned": image(unsigned, make_dicom(1, patient_id="MRN-B", extra={"BurnedInAnnotation": "NO"})),
        "indeterminate": image(indeterminate, make_dicom(2, patient_id="MRN-B", extra={"BurnedInAnnotation": "NO"})),
        "burned_in": image(unsafe, make_dicom(10, patient_id="MRN-B", extra={"BurnedInAnnotation": "YES"})),
        "png": image(unsafe, make_png(11), kind="png"),
    }
    north = make_study(north_site)
    image(north, make_dicom(12, extra={"BurnedInAnnotation": "NO"}))
    _review(north, rad, Finding.PNEUMONIA)
    return ids


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as handle:
        return list(csv.DictReader(handle))


def _by_image(out: Path, site_films: dict) -> dict[str, dict[str, str]]:
    """The manifest rows by the test's image name, matched through each original's remapped SOPInstanceUID."""
    by_uid = {_exported_uid(pk): name for name, pk in site_films.items()}
    return {by_uid[dcmread(out / row["path"]).SOPInstanceUID]: row for row in _rows(out / "manifest.csv")}


def _exported_uid(image_pk: int) -> str:
    image = Image.objects.get(pk=image_pk)
    if image.kind != "dicom":
        return ""
    with image.file.open("rb") as handle:
        return uid_remap(dcmread(handle).SOPInstanceUID, key=KEY.encode())


def test_it_labels_each_film_by_the_latest_signed_reading(site_films, export) -> None:
    out = export()
    rows = _by_image(out, site_films)
    assert {name: row["label"] for name, row in rows.items()} == {
        "a1_declared": "PNEUMONIA",
        "a1_undeclared": "PNEUMONIA",
        "a2": "NORMAL",
        "unsigned": "UNLABELLED",
        "indeterminate": "UNLABELLED",
    }
    assert all(row["path"].startswith(row["label"] + "/") for row in rows.values())


def test_it_writes_the_data_manifest_with_pseudonymised_patients(site_films, export) -> None:
    out = export()
    assert list(_rows(out / "manifest.csv")[0]) == ["path", "label", "patient_id", "age", "sex", "view", "sha256"]
    rows = _by_image(out, site_films)
    anna = {rows[name]["patient_id"] for name in ("a1_declared", "a1_undeclared", "a2")}
    ben = {rows[name]["patient_id"] for name in ("unsigned", "indeterminate")}
    assert len(anna) == len(ben) == 1 and anna != ben
    assert not {"MRN-A", "MRN-B"} & (anna | ben)
    assert (rows["a2"]["sex"], rows["a2"]["view"], rows["a2"]["age"]) == ("F", "AP", "4.0")
    assert rows["a1_undeclared"]["age"] == "90.0"  # over 89: one group
    for row in rows.values():
        data = (out / row["path"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"]
        ds = dcmread(io.BytesIO(data))
        assert ds.PatientID == row["patient_id"] and ds.PatientIdentityRemoved == "YES"
        assert "Smith" not in str(ds.PatientName) and "Jones" not in str(ds.PatientName)


def test_it_keeps_a_study_one_study_and_a_patients_intervals(site_films, export) -> None:
    out = export()
    rows = _by_image(out, site_films)
    first, second, other = (dcmread(out / rows[name]["path"]) for name in ("a1_declared", "a1_undeclared", "a2"))
    assert first.StudyInstanceUID == second.StudyInstanceUID != other.StudyInstanceUID
    assert first.StudyInstanceUID != "1.2.826.0.1.3680043.10.901"
    assert first.StudyDate != "20240110"
    assert DA(other.StudyDate) - DA(first.StudyDate) == date(2024, 3, 1) - date(2024, 1, 10)


def test_it_leaves_out_burned_in_and_picture_files_and_lists_undeclared_ones(site_films, export) -> None:
    out = export()
    excluded = {int(row["image_id"]): row["reason"] for row in _rows(out / "excluded.csv")}
    assert excluded == {
        site_films["burned_in"]: "BurnedInAnnotation YES",
        site_films["png"]: "not DICOM: no header can declare burned-in text",
    }
    undeclared = _rows(out / "undeclared.csv")
    assert [int(row["image_id"]) for row in undeclared] == [site_films["a1_undeclared"]]
    assert (out / undeclared[0]["path"]).is_file()
    assert len(list(out.rglob("*.dcm"))) == 5


def test_it_exports_only_confirmed_findings_with_signed(site_films, export) -> None:
    out = export("--signed")
    assert sorted(row["label"] for row in _rows(out / "manifest.csv")) == ["NORMAL", "PNEUMONIA", "PNEUMONIA"]
    assert not (out / "UNLABELLED").exists()
    excluded = {int(row["image_id"]): row["reason"] for row in _rows(out / "excluded.csv")}
    assert excluded[site_films["indeterminate"]] == "no signed pneumonia or no-pneumonia finding"
    assert site_films["unsigned"] not in excluded  # never chosen: an unsigned study is no candidate


def test_it_exports_only_studies_received_since_a_day(site_films, export) -> None:
    Study.objects.filter(images__pk=site_films["a2"]).update(received_at=timezone.now() - timedelta(days=10))
    out = export("--since", (timezone.now() - timedelta(days=1)).date().isoformat())
    assert len(_rows(out / "manifest.csv")) == 4
    assert "a2" not in _by_image(out, site_films)


def test_it_is_read_by_evaluate_models_folder_reader(site_films, export) -> None:
    out = export()
    files = list(evaluation.labelled_files(out))
    assert sorted(label for _, label in files) == [0, 1, 1]
    for path, _ in files:
        assert evaluation.model_input(path, 50_000_000, 50_000_000) is not None


def test_it_gives_the_same_uids_and_pseudonyms_again_and_others_under_another_key(site_films, export, tmp_path) -> None:
    first, again = export(name="first"), export(name="again")
    other_key = tmp_path / "other.key"
    other_key.write_text("b" * 64)
    other = export(name="other", key=other_key)
    listing = [
        sorted((row["path"], row["patient_id"]) for row in _rows(out / "manifest.csv")) for out in (first, again, other)
    ]
    assert listing[0] == listing[1]
    assert not {p for p, _ in listing[0]} & {p for p, _ in listing[2]}
    assert not {i for _, i in listing[0]} & {i for _, i in listing[2]}


def test_it_generates_a_private_key_once_when_none_is_set(site_films, tmp_path) -> None:
    generated = tmp_path / "var" / "deid.key"
    with override_settings(PNEUMO_DEID_KEY_FILE="", PNEUMO_DEID_GENERATED_KEY_FILE=generated):
        call_command("export_deidentified", "--site", "DEMO", "--out", str(tmp_path / "one"), stdout=io.StringIO())
        key = generated.read_bytes()
        call_command("export_deidentified", "--site", "DEMO", "--out", str(tmp_path / "two"), stdout=io.StringIO())
    assert stat.S_IMODE(generated.stat().st_mode) == 0o600
    assert generated.read_bytes() == key and len(key.strip()) == 64
    assert _rows(tmp_path / "one" / "manifest.csv") == _rows(tmp_path / "two" / "manifest.csv")


def test_it_refuses_a_missing_or_short_key_and_a_folder_in_use(site_films, tmp_path, export) -> None:
    for key in (tmp_path / "absent.key", tmp_path / "short.key"):
        (tmp_path / "short.key").write_text("short")
        with override_settings(PNEUMO_DEID_KEY_FILE=str(key)), pytest.raises(CommandError, match="key"):
            call_command("export_deidentified", "--site", "DEMO", "--out", str(tmp_path / "x"), stdout=io.StringIO())
    used = tmp_path / "used"
    used.mkdir()
    (used / "something").write_text("")
    with pytest.raises(CommandError, match="not an empty folder"):
        export(name="used")
    with pytest.raises(CommandError, match="No site"):
        call_command("export_deidentified", "--site", "NOPE", "--out", str(tmp_path / "y"))


def test_it_audits_the_export_with_counts_only(site_films, export, demo_site) -> None:
    export()
    event = AuditEvent.objects.get(action="deidentified_export")
    assert event.site == demo_site
    assert event.detail == {"studies": 5, "exported": 5, "excluded": 2, "undeclared": 1}


def test_it_names_no_patient_in_what_it_writes(site_films, export) -> None:
    out = export()
    for path in out.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            for secret in (b"MRN-A", b"MRN-B", b"Smith", b"Jones", b"TEST^PATIENT", b"PID-0001", b"ACC0001"):
                assert secret not in data, (path.name, secret)


def test_the_admin_action_downloads_the_selected_studies_de_identified(
    client, site_films, admin_user, key_file
) -> None:
    admin_user.is_superuser = True
    admin_user.save()
    client.force_login(admin_user)
    chosen = Study.objects.filter(images__pk=site_films["a2"]).get()
    form = {"action": "export_deidentified", "_selected_action": [chosen.pk]}
    with override_settings(PNEUMO_DEID_KEY_FILE=str(key_file)):
        response = client.post(reverse("admin:cases_study_changelist"), form)
    assert response.status_code == 200 and response["Content-Type"] == "application/zip"
    with zipfile.ZipFile(io.BytesIO(b"".join(response.streaming_content))) as archive:
        names = archive.namelist()
        manifest = archive.read("manifest.csv").decode()
    assert sorted(name for name in names if name.endswith(".csv")) == ["excluded.csv", "manifest.csv", "undeclared.csv"]
    assert [name for name in names if name.endswith(".dcm")] == [f"NORMAL/{_exported_uid(site_films['a2'])}.dcm"]
    assert "MRN-A" not in manifest and AuditEvent.objects.filter(action="deidentified_export", user=admin_user).exists()


def test_it_is_a_patient_manifest_for_train_models_split(site_films, export) -> None:
    out = export()
    assert training.has_patient_manifest(out)
    examples = training.examples_from_manifest(out)
    rows = _by_image(out, site_films)
    assert sorted(e.path for e in examples) == sorted(rows[n]["path"] for n in ("a1_declared", "a1_undeclared", "a2"))
    assert {e.patient for e in examples} == {rows["a2"]["patient_id"]}
    assert sorted(e.label for e in examples) == [0, 1, 1]


def test_it_leaves_out_a_file_deleted_by_retention_or_changed_on_disk(site_films, export) -> None:
    Image.objects.filter(pk=site_films["a2"]).update(file_state=FileState.PURGED)
    Image.objects.filter(pk=site_films["unsigned"]).update(file_state=FileState.CHANGED)
    out = export()
    excluded = {int(row["image_id"]): row["reason"] for row in _rows(out / "excluded.csv")}
    assert excluded[site_films["a2"]] == "stored file: Deleted by retention policy"
    assert excluded[site_films["unsigned"]] == "stored file: Changed on disk"
    assert len(_rows(out / "manifest.csv")) == 3
