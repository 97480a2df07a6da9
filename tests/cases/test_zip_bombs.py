"""Zip bombs that a per-entry ratio check misses, and zips of many small members, through the upload page.

Every archive is built by tests/zip_factory.py with ``struct`` and ``zlib``
(no fixture files), in milliseconds. Bombs must be refused whole, by reason,
before they are inflated.
"""

from __future__ import annotations

import io
import struct
import time
import zipfile

import pytest
from django.test import Client
from django.urls import reverse

from cases import ingest
from cases.ingest import IncomingFile, studies_ingest
from cases.models import AuditEvent, Image
from tests.dicom_factory import make_dicom
from tests.zip_factory import (
    MIB,
    Entry,
    central_directory,
    deflated,
    local_header,
    overlapping_bomb,
    plain_zip,
    quoted_overlap_bomb,
    understated_member,
)

pytestmark = pytest.mark.django_db


@pytest.fixture
def uploader(active_model, demo_site, tech) -> Client:
    client = Client()
    client.force_login(tech)
    return client


def upload(client: Client, name: str, data: bytes):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return client.post(reverse("upload_files"), {"files": [SimpleUploadedFile(name, data)], "priority": "routine"})


# --- Bombs are refused whole, quickly, by reason --------------------------------------------------------


def test_it_refuses_a_bomb_of_fifteen_entries_sharing_one_stream_in_under_five_seconds(uploader) -> None:
    # Given the probe's bomb: 15 central entries pointing at one 190 MiB deflate stream, each under the ratio limit
    bomb = overlapping_bomb(15, 190)
    assert len(bomb) < 1.5 * MIB

    # When it is uploaded
    started = time.monotonic()
    response = upload(uploader, "export.zip", bomb)
    elapsed = time.monotonic() - started

    # Then the whole archive is refused as a bomb on one line, quickly, and nothing is stored
    assert response.status_code == 400
    [line] = response.json()["files"]
    assert line["name"] == "export.zip" and line["status"] == "refused"
    assert "overlap" in line["reason"] and "zip bomb" in line["reason"]
    assert elapsed < 5, f"{elapsed:.1f} s"
    assert not Image.objects.exists()
    assert AuditEvent.objects.get(action="upload_refused").detail["reason"] == line["reason"][:200]


def test_it_refuses_entries_that_start_inside_another_entry_s_data(uploader) -> None:
    [line] = upload(uploader, "export.zip", quoted_overlap_bomb()).json()["files"]
    assert line["status"] == "refused" and "overlap" in line["reason"]


def test_it_refuses_an_entry_running_into_the_central_directory(uploader) -> None:
    stream, crc = deflated(1)
    member = Entry(b"IM0001.dcm", 0, len(stream) + 40, MIB, crc)  # claims the directory's bytes as its data
    body = local_header(member) + member.name + stream
    [line] = upload(uploader, "export.zip", body + central_directory([member], len(body))).json()["files"]
    assert line["status"] == "refused" and "overlap" in line["reason"]


def test_it_refuses_a_whole_archive_that_unpacks_to_more_than_the_limit_and_stores_none_of_it(
    uploader, settings
) -> None:
    # Given three valid images in a zip, together over the archive limit though each is small
    members = [(f"IM{n}", make_dicom(n)) for n in range(3)]
    settings.PNEUMO_MAX_INFLATED_BYTES = sum(len(data) for _, data in members) - 1

    # When the zip is uploaded
    response = upload(uploader, "export.zip", plain_zip(*members))

    # Then it is refused as one line naming the limit, and not even its first image is stored
    assert response.status_code == 400
    [line] = response.json()["files"]
    assert line["status"] == "refused" and "limit for one archive" in line["reason"]
    assert not Image.objects.exists()


def test_it_inflates_no_more_than_a_member_declares_when_its_headers_understate_it(uploader) -> None:
    # Given a member declaring 1 MiB whose stream inflates to 1 GiB (the ratio check sees 1 MiB / 1 MiB)
    data = understated_member(1024, declared=MIB)

    # When it is uploaded
    started = time.monotonic()
    [line] = upload(uploader, "export.zip", data).json()["files"]

    # Then inflating stops at the declared size, and the member is refused as damaged
    assert time.monotonic() - started < 5
    assert line["status"] == "refused" and "damaged" in line["reason"]


def test_it_counts_inflated_bytes_against_the_archive_limit_while_reading(settings, demo_site, tech) -> None:
    # Given an archive limit below what one member really inflates to
    settings.PNEUMO_MAX_INFLATED_BYTES = 4 * MIB
    archive = zipfile.ZipFile(io.BytesIO(plain_zip(("IM1", bytes(3 * MIB)))))
    budget = ingest._Budget(bytes_left=2 * MIB, deadline=time.monotonic() + 60)

    # When the member is inflated with only 2 MiB left in the archive's budget
    with pytest.raises(ingest.Refused, match="zip bomb"):
        ingest._inflate(archive, archive.infolist()[0], budget)

    # Then nothing more of the archive may be inflated
    assert budget.expired()


def test_it_refuses_the_members_left_when_an_archive_takes_too_long(active_model, demo_site, tech, monkeypatch) -> None:
    monkeypatch.setattr(ingest, "ZIP_MAX_SECONDS", -1)
    data = plain_zip(("IM1", make_dicom(1)), ("IM2", make_dicom(2)))
    report = studies_ingest(files=[IncomingFile("export.zip", data)], site=demo_site, user=tech)
    assert [f.status for f in report.files] == ["refused", "refused"]
    assert all("took longer" in f.reason for f in report.files)
    assert not Image.objects.exists()


def test_it_refuses_a_zip_whose_end_record_announces_too_many_entries_before_reading_them(
    active_model, demo_site, tech
) -> None:
    data = bytearray(plain_zip(("IM1", b"x")))
    struct.pack_into("<HH", data, len(data) - 22 + 8, 6000, 6000)  # the end record's two entry counts
    report = studies_ingest(files=[IncomingFile("export.zip", bytes(data))], site=demo_site, user=tech)
    assert [(f.status, f.reason) for f in report.files] == [("refused", "The zip file holds more than 5000 files")]


# --- Many small members: answered quickly, audited once ---------------------------------------------------


def test_it_answers_a_zip_of_1500_tiny_members_in_under_ten_seconds(uploader) -> None:
    # Given a zip of 1,500 one-byte members
    data = plain_zip(*[(f"IM{n:05d}", b"x") for n in range(1500)])

    # When it is uploaded
    started = time.monotonic()
    response = upload(uploader, "export.zip", data)
    elapsed = time.monotonic() - started

    # Then every member has its refusal line, within 10 s, and the audit trail has one event with the count
    lines = response.json()["files"]
    assert len(lines) == 1500 and {line["status"] for line in lines} == {"refused"}
    assert elapsed < 10, f"{elapsed:.1f} s"
    [event] = AuditEvent.objects.filter(action="upload_refused")
    assert event.detail["refused"] == 1500 and event.detail["files"] == 1500


# --- Skipped members get a line ----------------------------------------------------------------------------


def test_it_gives_every_skipped_member_a_line_with_its_reason(uploader) -> None:
    # Given an export with one image and everything a zip may carry beside images
    data = plain_zip(
        ("EXPORT/IM0001", make_dicom(0)),
        ("EXPORT/DICOMDIR", b"index"),
        ("EXPORT/.DS_Store", b"litter"),
        ("__MACOSX/EXPORT/._IM0001", b"resource fork"),
        ("../IM0002", make_dicom(1)),
        ("EXPORT\\IM0003", make_dicom(2)),
        directories=("EXPORT",),
    )

    # When it is uploaded
    response = upload(uploader, "export.zip", data)

    # Then the image is stored and each other member has a "skipped" line saying why
    assert response.status_code == 200
    lines = {line["name"].removeprefix("export.zip/"): line for line in response.json()["files"]}
    assert lines["EXPORT/IM0001"]["status"] == "stored"
    reasons = {name: line["reason"] for name, line in lines.items() if line["status"] == "skipped"}
    assert reasons.keys() == {"EXPORT/", "EXPORT/DICOMDIR", "EXPORT/.DS_Store", "__MACOSX/EXPORT/._IM0001",
                              "../IM0002", "EXPORT\\IM0003"}  # fmt: skip
    assert "folder" in reasons["EXPORT/"] and "index" in reasons["EXPORT/DICOMDIR"]
    assert "hidden" in reasons["EXPORT/.DS_Store"] and "macOS" in reasons["__MACOSX/EXPORT/._IM0001"]
    assert "'..'" in reasons["../IM0002"] and "backslash" in reasons["EXPORT\\IM0003"]
    assert Image.objects.count() == 1


def test_it_answers_400_when_a_zip_holds_only_skipped_members(uploader) -> None:
    response = upload(uploader, "export.zip", plain_zip(("DICOMDIR", b"index"), (".hidden", b"x")))
    assert response.status_code == 400
    assert [line["status"] for line in response.json()["files"]] == ["skipped", "skipped"]
