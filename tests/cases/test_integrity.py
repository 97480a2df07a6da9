from __future__ import annotations

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.management import call_command

from cases.ingest import IncomingFile, studies_ingest
from cases.models import Image
from cases.reviews import ReadingInput, ReviewError, review_sign
from tests.dicom_factory import make_dicom


@pytest.fixture
def own_media(settings, tmp_path):
    """A media folder of this test's own, so other tests' files are not orphans here."""
    settings.MEDIA_ROOT = tmp_path
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {**settings.STORAGES["default"], "OPTIONS": {"location": str(tmp_path)}},
    }


@pytest.fixture
def stored(own_media, active_model, demo_site, tech):
    studies_ingest(files=[IncomingFile(f"{i}.dcm", make_dicom(i)) for i in range(3)], site=demo_site, user=tech)
    return list(Image.objects.order_by("pk"))


def test_it_reports_a_clean_store(stored, capsys) -> None:
    call_command("verify_storage")
    assert "summary: 3 checked, 0 missing, 0 changed, 0 orphaned" in capsys.readouterr().out


def test_it_finds_missing_changed_and_orphaned_files(stored, capsys) -> None:
    default_storage.delete(stored[0].file.name)
    with default_storage.open(stored[1].file.name, "wb") as handle:
        handle.write(b"tampered")
    orphan = default_storage.save("studies/2020/01/aa/orphan.dcm", ContentFile(b"x"))
    with pytest.raises(SystemExit) as exit_info:
        call_command("verify_storage")
    out = capsys.readouterr().out
    assert exit_info.value.code == 1
    assert f"missing  image {stored[0].pk}" in out and f"changed  image {stored[1].pk}" in out
    assert f"orphan   {orphan}" in out
    assert Image.objects.get(pk=stored[1].pk).file_state == "changed"


def test_it_blocks_signing_a_study_whose_file_changed(stored, rad) -> None:
    with default_storage.open(stored[0].file.name, "wb") as handle:
        handle.write(b"tampered")
    with pytest.raises(SystemExit):
        call_command("verify_storage")
    study = stored[0].study
    study.status = "awaiting_review"
    study.save()
    with pytest.raises(ReviewError, match="changed or went missing"):
        review_sign(study_id=study.pk, user=rad, reading=ReadingInput(finding="no_pneumonia"))
