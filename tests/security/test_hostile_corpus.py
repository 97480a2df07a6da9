"""The hostile corpus (tests/security/hostile.py) replayed through every way in: the upload page, the API
and ``import_studies``.

Whatever arrives, the server answers (never a 500), refuses with a reason or
stores a valid image, spends at most a few seconds per file, keeps its memory,
and afterwards holds exactly one stored file per accepted upload. Script
payloads in DICOM text tags are stored and shown escaped on every page.
"""

from __future__ import annotations

import re
import resource
import time
from pathlib import Path

import pytest
from django.core.cache import cache
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import call_command
from django.db import models
from django.http import HttpResponse
from django.test import Client
from django.urls import reverse
from django.utils.html import escape
from rest_framework.test import APIClient

from cases.api.tokens import token_create
from cases.imaging import warm_up
from cases.models import Image, Study
from inference.models import Prediction
from inference.services import prediction_run
from tests.security.hostile import REFUSED, SKIPPED, STORED, XSS, Hostile, _dicom, _zip, corpus, replayable, summary

pytestmark = pytest.mark.django_db

FILE_SECONDS = 5.0  # per file, decode included (the guarded decode stops at 10 s; nothing here comes close)
RSS_GROWTH_MB = 256  # the test process's peak resident memory may grow this much over a whole replay
TYPED_PATIENT = "TYPED-0001"  # typed with every upload: PNG and JPEG carry no patient of their own


@pytest.fixture
def media(settings, tmp_path) -> Path:
    """A media folder of this test's own, so that files on disk can be counted."""
    folder = tmp_path / "media"
    folder.mkdir()
    settings.MEDIA_ROOT = folder
    settings.STORAGES = {
        **settings.STORAGES,
        "default": {**settings.STORAGES["default"], "OPTIONS": {"location": str(folder)}},
    }
    return folder


@pytest.fixture
def ready(media, active_model, demo_site, tech):
    warm_up()  # the decoding forkserver starts before the first timed upload
    cache.clear()  # upload throttles count in the cache, across tests
    return demo_site, tech


def files_on_disk(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def check_outcome(entry: Hostile, outcome: dict, *, expected: str | None = None) -> None:
    expected = expected or entry.outcome
    assert outcome["status"] == expected, (entry.name, outcome)
    if expected in (REFUSED, SKIPPED):
        assert outcome["reason"].strip(), (entry.name, f"{expected} without a reason")
        assert not entry.reason or re.search(entry.reason, outcome["reason"], re.IGNORECASE), (entry.name, outcome)


def check_invariant(media: Path, outcomes: list[dict]) -> None:
    """Accepted uploads = stored images = files on disk (duplicates store nothing new)."""
    accepted = sum(1 for outcome in outcomes if outcome["status"] == STORED)
    stored = Image.objects.count()
    on_disk = len(files_on_disk(media))
    assert accepted == stored == on_disk, f"accepted {accepted}, stored images {stored}, files on disk {on_disk}"
    names = {image.file.name for image in Image.objects.all()}
    assert {str(path.relative_to(media)) for path in files_on_disk(media)} == names


def check_stored_rows(image: Image) -> None:
    """Every stored value fits its column (PostgreSQL refuses longer ones), and DICOM preambles are zeroed."""
    for row in (image, image.study, image.study.patient):
        for field in row._meta.concrete_fields:
            value = getattr(row, field.attname)
            if isinstance(field, models.CharField) and isinstance(value, str) and field.max_length:
                assert len(value) <= field.max_length, f"{type(row).__name__}.{field.name} is {len(value)} long"
    if image.kind == "dicom":
        with image.file.open("rb") as handle:
            assert handle.read(132) == bytes(128) + b"DICM"


def upload_page(client: Client, *entries: Hostile) -> HttpResponse:
    uploads = [SimpleUploadedFile(entry.name, entry.data) for entry in entries]
    return client.post(reverse("upload_files"), {"files": uploads, "priority": "routine", "patient_id": TYPED_PATIENT})


# --- The corpus itself ----------------------------------------------------------------------------------


def test_it_builds_a_corpus_of_at_least_forty_hostile_files() -> None:
    entries = corpus()
    print(f"\nhostile corpus: {summary()}")
    assert len(entries) >= 40
    assert {entry.category for entry in entries} >= {
        "truncated",
        "lying-length",
        "huge",
        "nesting",
        "preamble",
        "polyglot",
        "bomb",
        "zip",
        "impostor",
        "garbage",
        "xss",
        "multiframe",
        "wrong-vr",
    }
    assert all(entry.outcome in (STORED, REFUSED, SKIPPED) for entry in entries)
    assert all(entry.reason for entry in entries if entry.outcome in (REFUSED, SKIPPED) and not entry.known_bug)
    assert {entry.xss_field for entry in entries if entry.xss_field} >= set(XSS)


# --- (a) The upload page, one request per file ----------------------------------------------------------


def replay_one(client: Client, entry: Hostile) -> tuple[dict, list[str]]:
    """Upload one file on the page; the outcome, and what went wrong with it."""
    started = time.monotonic()
    response = upload_page(client, entry)
    elapsed = time.monotonic() - started
    problems = []
    if response.status_code != (200 if entry.outcome == STORED else 400):
        problems.append(f"HTTP {response.status_code}: {response.content[:200]!r}")
    if elapsed > FILE_SECONDS:
        problems.append(f"took {elapsed:.1f} s")
    if response.status_code >= 500:
        return {}, problems
    outcomes = response.json()["files"]
    try:
        assert len(outcomes) == 1, outcomes
        check_outcome(entry, outcomes[0])
    except AssertionError as error:
        problems.append(str(error))
    return outcomes[0], problems


def test_it_answers_each_hostile_file_on_the_upload_page(ready, tech, media) -> None:
    # Given a technician on the upload page, and the peak memory so far
    client = Client(raise_request_exception=False)
    client.force_login(tech)
    rss_before = peak_rss_mb()

    # When each file of the corpus is uploaded in a request of its own
    results = {entry.name: replay_one(client, entry) for entry in replayable()}

    # Then each got its outcome quickly, the server stored exactly what it accepted, and kept its memory
    problems = {name: issues for name, (_, issues) in results.items() if issues}
    assert not problems, "\n".join(f"{name}: {issues}" for name, issues in problems.items())
    check_invariant(media, [outcome for outcome, _ in results.values()])
    for image in Image.objects.select_related("study__patient"):
        check_stored_rows(image)
    assert peak_rss_mb() - rss_before < RSS_GROWTH_MB


def test_it_answers_the_whole_corpus_as_one_batch_and_the_stored_files_again(ready, tech, media) -> None:
    # Given a technician, and the peak memory so far
    client = Client(raise_request_exception=False)
    client.force_login(tech)
    entries = replayable()
    rss_before = peak_rss_mb()

    # When the whole corpus is uploaded in one request, then the files it stored once more
    first = upload_page(client, *entries)
    kept = [entry for entry in entries if entry.outcome == STORED]
    second = upload_page(client, *kept)

    # Then each file has its outcome in order, the second time as a duplicate, and nothing else was stored
    assert first.status_code == second.status_code == 200
    first_files, second_files = first.json()["files"], second.json()["files"]
    assert len(first_files) == len(entries) and len(second_files) == len(kept)
    for entry, outcome in zip(entries, first_files, strict=True):
        check_outcome(entry, outcome)
    stored_ids = [outcome["image_id"] for outcome in first_files if outcome["status"] == STORED]
    assert [outcome["status"] for outcome in second_files] == ["duplicate"] * len(kept)
    assert [outcome["image_id"] for outcome in second_files] == stored_ids
    check_invariant(media, first_files + second_files)
    assert peak_rss_mb() - rss_before < RSS_GROWTH_MB


# --- (b) The API --------------------------------------------------------------------------------------------


def test_it_answers_each_hostile_file_on_the_api(ready, tech, media) -> None:
    # Given a technician's API token
    api = APIClient(raise_request_exception=False)
    api.credentials(HTTP_AUTHORIZATION=f"Token {token_create(user=tech)[0]}")
    rss_before = peak_rss_mb()
    outcomes, slow = [], []

    # When each file is posted to /api/v1/studies/
    for entry in replayable():
        started = time.monotonic()
        response = api.post(
            reverse("api:study-list"),
            {"files": [SimpleUploadedFile(entry.name, entry.data)], "site": "DEMO", "patient_id": TYPED_PATIENT},
            format="multipart",
        )
        if time.monotonic() - started > FILE_SECONDS:
            slow.append(entry.name)

        # Then it is stored (201) or refused with a reason (400), never a server error
        assert response.status_code == (201 if entry.outcome == STORED else 400), (entry.name, response.content)
        body = response.json()
        check_outcome(entry, body["files"][0])
        outcomes += body["files"]

    assert not slow, f"slower than {FILE_SECONDS} s: {slow}"
    check_invariant(media, outcomes)
    assert peak_rss_mb() - rss_before < RSS_GROWTH_MB


# --- (c) import_studies --------------------------------------------------------------------------------------

_LINE = re.compile(r"^(stored|duplicate|refused|skipped)\s+(\S+?)(?: \(study \d+\))?(?:: (.*))?$")


def test_it_imports_a_folder_of_the_corpus(ready, media, tmp_path, capsys) -> None:
    # Given a folder holding every file of the corpus
    folder = tmp_path / "import"
    folder.mkdir()
    entries = {entry.name: entry for entry in replayable()}
    for name, entry in entries.items():
        (folder / name).write_bytes(entry.data)

    # When import_studies reads it
    started = time.monotonic()
    with pytest.raises(SystemExit) as exit_info:
        call_command("import_studies", str(folder), "--site", "DEMO")
    elapsed = time.monotonic() - started

    # Then each file got its line; PNG and JPEG are refused, as no patient ID can be typed here
    assert exit_info.value.code == 1
    lines = [line for line in capsys.readouterr().out.splitlines() if not line.startswith("summary:")]
    assert len(lines) == len(entries), lines
    outcomes = []
    for line in lines:
        match = _LINE.match(line)
        assert match, line
        status, path, reason = match.groups()
        entry = entries[Path(path).relative_to(folder).parts[0]]
        expected = REFUSED if entry.raster and entry.outcome == STORED else entry.outcome
        outcome = {"status": status, "reason": reason or ""}
        check_outcome(entry, outcome, expected=expected)
        if expected != entry.outcome:
            assert "patient ID" in outcome["reason"]
        outcomes.append(outcome)
    check_invariant(media, outcomes)
    assert elapsed < len(entries) * 1.0, f"{elapsed:.1f} s for {len(entries)} files"


def test_it_writes_nothing_outside_the_media_folder_for_a_zip_with_traversal_names(ready, tech, media, tmp_path):
    data = _zip(("../../etc/passwd", _dicom(18)), ("/etc/IM0001", _dicom(94)), ("EXPORT/IM0002", _dicom(95)))
    client = Client()
    client.force_login(tech)
    response = upload_page(client, Hostile("traversal.zip", data, STORED, "zip"))
    assert [line["status"] for line in response.json()["files"]] == [SKIPPED, STORED, STORED]
    written = {path for path in tmp_path.rglob("*") if path.is_file()}
    assert len(written) == 2 and all(path.is_relative_to(media / "studies") for path in written)
    assert written == {media / image.file.name for image in Image.objects.all()}


# --- Script payloads are shown escaped -------------------------------------------------------------------------

# Where each payload-carrying attribute is shown: the pages that must show it escaped.
SHOWN_ON = {
    "patient.name": {"study", "worklist", "worklist_rows", "studies", "report"},
    "patient.patient_id": {"study", "worklist", "worklist_rows", "studies", "report"},
    "study.description": {"study", "report"},
    "study.accession_number": {"study", "worklist", "worklist_rows", "report"},
    "image.body_part": {"study"},  # inside the eligibility reason
    "image.view_position": {"study"},
    "image.modality": {"study"},
}


def _value(image: Image, field: str) -> str:
    owner, attribute = field.split(".")
    row = {"image": image, "study": image.study, "patient": image.study.patient}[owner]
    return getattr(row, attribute)


def _pages(client: Client, study: Study) -> dict[str, str]:
    rows = client.get(reverse("worklist_rows"), HTTP_X_PNEUMO_BACKGROUND="1").json()["html"]
    return {
        "worklist": client.get(reverse("worklist")).content.decode(),
        "worklist_rows": rows,
        "studies": client.get(reverse("studies")).content.decode(),
        "study": client.get(reverse("study_detail", args=[study.pk])).content.decode(),
        "report": client.get(reverse("study_report", args=[study.pk])).content.decode(),
    }


def test_it_stores_script_payloads_and_shows_them_escaped_on_every_page(ready, tech, rad) -> None:
    # Given every payload-carrying DICOM uploaded, and the AI run on them
    uploader = Client()
    uploader.force_login(tech)
    entries = [entry for entry in corpus() if entry.xss_field]
    response = upload_page(uploader, *entries)
    assert [f["status"] for f in response.json()["files"]] == [STORED] * len(entries)
    for prediction in Prediction.objects.filter(status="pending"):
        prediction_run(prediction_id=prediction.pk)

    # When a radiologist opens the worklist, the study list, each study page and its report
    reader = Client()
    reader.force_login(rad)
    for entry, outcome in zip(entries, response.json()["files"], strict=True):
        image = Image.objects.select_related("study__patient").get(pk=outcome["image_id"])
        value = _value(image, entry.xss_field)
        assert "<" in value  # stored verbatim, not sanitised away
        pages = _pages(reader, image.study)

        # Then the payload is shown escaped where the attribute is shown, and raw nowhere
        for page, html in pages.items():
            assert value not in html, (entry.name, page)
            assert "<script>" not in html.lower(), (entry.name, page)
            if page in SHOWN_ON[entry.xss_field]:
                assert str(escape(value)) in html, (entry.name, page)


def test_it_serves_a_stored_hostile_file_only_as_an_attachment(ready, tech) -> None:
    entry = next(entry for entry in corpus() if entry.name == "preamble-html.dcm")
    client = Client()
    client.force_login(tech)
    image_id = upload_page(client, entry).json()["files"][0]["image_id"]
    response = client.get(reverse("image_file", args=[image_id]))
    body = b"".join(response.streaming_content)
    assert response["Content-Disposition"].startswith("attachment")
    assert response["X-Content-Type-Options"] == "nosniff" and response["Content-Type"] == "application/dicom"
    assert body[:132] == bytes(128) + b"DICM" and b"<script>" not in body
    assert len(body) == Image.objects.get().size_bytes
