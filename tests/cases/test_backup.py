"""Backup and restore: a worked site backed up, wiped and restored in another process is the same site.

The restore runs in a subprocess whose DATABASE_URL and MEDIA_ROOT point at a
new, empty target (a SQLite file that does not exist yet, or a PostgreSQL
database created for the test), as an operator's restore drill would.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.conf import settings as django_settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import CommandError, call_command
from django.db import connection
from django.utils import timezone

from cases.ingest import IncomingFile, studies_ingest
from cases.models import AuditEvent, Image, OutboxItem, Patient, ResultDestination, ResultObject, Review, Study, User
from cases.reviews import ReadingInput, review_amend, review_sign
from inference.models import ModelVersion, Prediction, PredictionStatus
from tests.dicom_factory import make_dicom

pytestmark = pytest.mark.django_db(transaction=True)  # committed rows: pg_dump and SQLite's backup read them

ROOT = Path(django_settings.BASE_DIR)
COUNTED = (Patient, Study, Image, Prediction, Review, AuditEvent, OutboxItem, User, ModelVersion)

# Run in the restored site: counts, the audit trail, verify_storage, and a radiologist opening and signing a study.
PROBE = """
import json, sys
import django
django.setup()
from django.core.management import call_command
from django.test import Client
from django.test.utils import setup_test_environment
from django.urls import reverse
from cases.models import AuditEvent, Study, User
setup_test_environment()
COUNTED = sys.argv[1].split(",")
from django.apps import apps
counts = {name: apps.get_model(name).objects.count() for name in COUNTED}
trail = list(AuditEvent.objects.order_by("pk").values_list("pk", "action", "object_type", "object_id"))
try:
    call_command("verify_storage")
    storage = 0
except SystemExit as exit:
    storage = exit.code
client = Client()
client.force_login(User.objects.get(username="rad"))
study = Study.objects.get(pk=int(sys.argv[2]))
page = client.get(reverse("study_detail", args=[study.pk]))
signed = client.post(reverse("study_sign", args=[study.pk]), {"finding": "no_pneumonia"})
study.refresh_from_db()
print(json.dumps({"counts": counts, "trail": trail, "storage": storage, "page": page.status_code,
                  "signed": signed.status_code, "status": study.status}))
"""


@pytest.fixture
def own_media(settings, tmp_path):
    media = tmp_path / "media"
    settings.MEDIA_ROOT = media
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {**settings.STORAGES["default"], "OPTIONS": {"location": str(media)}},
    }
    return media


@pytest.fixture
def key_file(tmp_path, settings) -> Path:
    path = tmp_path / "backup.key"
    path.write_text(base64.urlsafe_b64encode(os.urandom(32)).decode())
    settings.PNEUMO_BACKUP_KEY_FILE = str(path)
    return path


def _study(site, tech, index: int) -> Study:
    uid = f"1.2.826.0.1.3680043.10.88.{index}"
    data = make_dicom(index, patient_id=f"MRN-{index}", study_uid=uid)
    studies_ingest(files=[IncomingFile(f"{index}.dcm", data)], site=site, user=tech)
    study = Study.objects.get(study_instance_uid=uid)
    # The worker's part: a succeeded prediction, the study ready to read.
    Prediction.objects.filter(image__study=study).update(
        status=PredictionStatus.SUCCEEDED, probability=0.1 * index, finished_at=timezone.now()
    )
    Study.objects.filter(pk=study.pk).update(status="awaiting_review")
    return study


def _capture(study: Study) -> OutboxItem:
    destination, _ = ResultDestination.objects.get_or_create(ae_title="PACS", host="127.0.0.1", port=104)
    uid = f"1.2.826.0.1.3680043.10.89.{study.pk}"
    now = timezone.now()
    return OutboxItem.objects.create(
        destination=destination,
        kind=ResultObject.SECONDARY_CAPTURE,
        site=study.site,
        study=study,
        image=study.images.first(),
        sop_instance_uid=uid,
        file=default_storage.save(f"outbox/test/{uid}.dcm", ContentFile(b"DICM capture")),
        next_attempt_at=now,
        retry_from=now,
    )


@pytest.fixture
def worked_site(own_media, active_model, demo_site, tech, rad, colleague_rad) -> list[Study]:
    """Three uploads with AI results: one signed and amended, one signed, one waiting to be read."""
    studies = [_study(demo_site, tech, index) for index in range(3)]
    review_sign(study_id=studies[0].pk, user=rad, reading=ReadingInput(finding="no_pneumonia"))
    review_amend(
        study_id=studies[0].pk,
        user=colleague_rad,
        reading=ReadingInput(finding="pneumonia", reason="false_negative"),
        amendment_reason="Second look",
        amends_version=1,
    )
    review_sign(study_id=studies[1].pk, user=rad, reading=ReadingInput(finding="no_pneumonia"))
    _capture(studies[0])
    return studies


def _counts() -> dict[str, int]:
    return {model._meta.label: model.objects.count() for model in COUNTED}


def _trail() -> list[list]:
    return [
        list(row) for row in AuditEvent.objects.order_by("pk").values_list("pk", "action", "object_type", "object_id")
    ]


class EmptyTarget:
    """A database with no tables and an empty media folder, for a restore in another process."""

    def __init__(self, tmp_path: Path) -> None:
        self.media = tmp_path / "restored-media"
        self.pg_name = None
        if connection.vendor == "postgresql":
            self.pg_name = f"pneumo_restore_{uuid.uuid4().hex[:12]}"
            self._psql(f'CREATE DATABASE "{self.pg_name}"')
            url = urlsplit(django_settings.DATABASE_URL)
            self.url = urlunsplit(url._replace(path=f"/{self.pg_name}"))
        else:
            self.url = f"sqlite:///{tmp_path / 'restored.sqlite3'}"

    def _psql(self, sql: str) -> None:
        url = urlsplit(django_settings.DATABASE_URL)
        admin = urlunsplit(url._replace(path="/postgres"))
        subprocess.run(["psql", admin, "-v", "ON_ERROR_STOP=1", "-qc", sql], check=True, capture_output=True)

    def env(self, **extra: str) -> dict[str, str]:
        env = {
            **os.environ,
            "DJANGO_SETTINGS_MODULE": "pneumo.settings",
            "DEBUG": "1",
            "DATABASE_URL": self.url,
            "MEDIA_ROOT": str(self.media),
            "PNEUMO_BACKUP_KEY_FILE": django_settings.PNEUMO_BACKUP_KEY_FILE,
        }
        return {**env, **extra}

    def manage(self, *args: str, **extra: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "manage.py", *args]
        return subprocess.run(command, cwd=ROOT, env=self.env(**extra), capture_output=True, text=True, timeout=300)

    def probe(self, study_id: int) -> dict:
        labels = ",".join(model._meta.label for model in COUNTED)
        command = [sys.executable, "-c", PROBE, labels, str(study_id)]
        result = subprocess.run(command, cwd=ROOT, env=self.env(), capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        return json.loads(result.stdout.strip().splitlines()[-1])

    def tables(self) -> int:
        result = self.manage(
            "shell", "-c", "from django.db import connection; print(len(connection.introspection.table_names()))"
        )
        return int(result.stdout.strip().splitlines()[-1])

    def drop(self) -> None:
        if self.pg_name:
            self._psql(f'DROP DATABASE IF EXISTS "{self.pg_name}" WITH (FORCE)')


@pytest.fixture
def empty_target(tmp_path):
    target = EmptyTarget(tmp_path)
    yield target
    target.drop()


@pytest.mark.slow
def test_it_restores_a_worked_site_into_an_empty_target(worked_site, tmp_path, empty_target) -> None:
    # Given a site with uploads, AI results, signatures, an amendment and a stored result object
    before, trail = _counts(), _trail()
    backup = tmp_path / "backup"

    # When it is backed up, and restored into a new database and empty storage by another process
    call_command("backup", str(backup))
    key = tmp_path / "restore.key"  # a key on the restoring machine does not stop a plain backup
    key.write_text(base64.urlsafe_b64encode(os.urandom(32)).decode())
    restored = empty_target.manage("restore", str(backup), PNEUMO_BACKUP_KEY_FILE=str(key))
    assert restored.returncode == 0, restored.stderr

    # Then it is the same site: counts, audit trail, files intact, and a radiologist reads and signs
    probe = empty_target.probe(worked_site[2].pk)
    assert probe["counts"] == before
    assert probe["trail"] == trail
    assert probe["storage"] == 0
    assert (probe["page"], probe["signed"], probe["status"]) == (200, 302, "reported")
    manifest = json.loads((backup / "manifest.json").read_text())
    assert set(manifest["files"]) == {*Image.objects.values_list("file", flat=True), *_outbox_files()}
    assert len(list(empty_target.media.rglob("*.dcm"))) == 4
    assert "0013_retention_and_legal_hold" in manifest["migrations"]["cases"]
    assert {m["name"]: m["sha256"] for m in manifest["models"]} == dict(
        ModelVersion.objects.values_list("name", "sha256")
    )


def _outbox_files() -> set[str]:
    return set(OutboxItem.objects.values_list("file", flat=True))


@pytest.fixture
def small_backup(own_media, demo_site, make_study, make_image, tmp_path) -> Path:
    study = make_study(demo_site)
    name = default_storage.save("studies/test/one.dcm", ContentFile(b"DICM one"))
    make_image(study, file=name)
    call_command("backup", str(tmp_path / "backup"))
    return tmp_path / "backup"


def test_it_writes_sha256_of_every_file_and_the_database(small_backup) -> None:
    manifest = json.loads((small_backup / "manifest.json").read_text())
    assert manifest["files"] == {"studies/test/one.dcm": hashlib.sha256(b"DICM one").hexdigest()}
    assert (small_backup / "files/studies/test/one.dcm").read_bytes() == b"DICM one"
    dump = small_backup / manifest["database"]["file"]
    assert hashlib.sha256(dump.read_bytes()).hexdigest() == manifest["database"]["sha256"]
    magic = b"PGDMP" if connection.vendor == "postgresql" else b"SQLite format 3"
    assert dump.read_bytes().startswith(magic)  # pg_dump's custom format, or SQLite's own file


def test_it_refuses_to_write_into_a_folder_that_is_not_empty(small_backup) -> None:
    with pytest.raises(CommandError, match="not empty"):
        call_command("backup", str(small_backup))


def test_it_refuses_to_restore_into_a_database_that_is_not_empty(small_backup) -> None:
    before = _counts()
    with pytest.raises(CommandError, match="target database is not empty"):
        call_command("restore", str(small_backup))
    assert _counts() == before


def test_it_refuses_a_backup_made_by_a_newer_release(small_backup) -> None:
    manifest_path = small_backup / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    manifest["migrations"]["cases"].append("9999_from_the_future")
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(CommandError, match=r"lacks the migrations cases\.9999_from_the_future"):
        call_command("restore", str(small_backup))


@pytest.mark.slow
def test_it_refuses_a_damaged_file_and_changes_nothing(small_backup, empty_target) -> None:
    (small_backup / "files/studies/test/one.dcm").write_bytes(b"DICM 0ne")
    result = empty_target.manage("restore", str(small_backup))
    assert result.returncode != 0
    assert "studies/test/one.dcm does not match its sha256" in result.stderr
    assert empty_target.tables() == 0
    assert not empty_target.media.exists() or not any(empty_target.media.iterdir())


@pytest.mark.slow
def test_it_encrypts_with_the_backup_key_and_restores_with_it_only(
    key_file, own_media, demo_site, make_study, make_image, tmp_path, empty_target
) -> None:
    study = make_study(demo_site)
    make_image(study, file=default_storage.save("studies/test/secret.dcm", ContentFile(b"DICM secret pixels")))
    backup = tmp_path / "backup"
    call_command("backup", str(backup))
    assert b"secret pixels" not in (backup / "files/studies/test/secret.dcm").read_bytes()
    manifest = json.loads((backup / "manifest.json").read_text())
    assert manifest["encrypted"] is True
    assert not (backup / manifest["database"]["file"]).read_bytes().startswith((b"SQLite format 3", b"PGDMP"))

    other_key = tmp_path / "other.key"
    other_key.write_text(base64.urlsafe_b64encode(os.urandom(32)).decode())
    wrong = empty_target.manage("restore", str(backup), PNEUMO_BACKUP_KEY_FILE=str(other_key))
    assert wrong.returncode != 0 and "does not match the backup key" in wrong.stderr
    none = empty_target.manage("restore", str(backup), PNEUMO_BACKUP_KEY_FILE="")
    assert none.returncode != 0 and "set PNEUMO_BACKUP_KEY_FILE" in none.stderr

    restored = empty_target.manage("restore", str(backup))
    assert restored.returncode == 0, restored.stderr
    assert (empty_target.media / "studies/test/secret.dcm").read_bytes() == b"DICM secret pixels"


@pytest.mark.slow
def test_it_refuses_a_backup_whose_encrypted_file_was_cut_off(small_backup_encrypted, empty_target) -> None:
    path = small_backup_encrypted / "files/studies/test/one.dcm"
    path.write_bytes(path.read_bytes()[:-1])
    result = empty_target.manage("restore", str(small_backup_encrypted))
    assert result.returncode != 0 and "does not decrypt with this key" in result.stderr
    assert empty_target.tables() == 0


@pytest.fixture
def small_backup_encrypted(key_file, own_media, demo_site, make_study, make_image, tmp_path) -> Path:
    make_image(make_study(demo_site), file=default_storage.save("studies/test/one.dcm", ContentFile(b"DICM one")))
    call_command("backup", str(tmp_path / "backup"))
    return tmp_path / "backup"


def test_it_leaves_out_files_the_retention_policy_deleted(own_media, demo_site, make_study, make_image, tmp_path):
    study = make_study(demo_site)
    kept = make_image(study, file=default_storage.save("studies/test/kept.dcm", ContentFile(b"DICM kept")))
    make_image(study, file="studies/test/purged.dcm", file_state="purged", purged_at=timezone.now())
    call_command("backup", str(tmp_path / "backup"))
    manifest = json.loads((tmp_path / "backup" / "manifest.json").read_text())
    assert list(manifest["files"]) == [kept.file.name] and manifest["missing"] == []
