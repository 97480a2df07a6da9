"""The upload page's result lines in a real Chromium: skipped zip members, and a request over the limit."""

from __future__ import annotations

import pytest

from tests.zip_factory import plain_zip

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_it_shows_a_skipped_line_for_each_member_a_zip_upload_skips(logged_in_page, tech, problems, tmp_path) -> None:
    export = tmp_path / "export.zip"
    export.write_bytes(plain_zip(("EXPORT/DICOMDIR", b"index"), ("EXPORT/.DS_Store", b"litter")))
    page = logged_in_page(tech)
    page.goto("/upload/")

    page.set_input_files("#file-input", str(export))
    page.click("#upload-start")

    result = page.wait_for_selector(".result.skipped")
    lines = result.inner_text().splitlines()
    assert lines == [
        "skipped: DICOMDIR is the export's index, not an image",
        "skipped: A hidden file (its name starts with a dot), not an image",
    ]
    assert [p for p in problems if "400" not in p] == []  # nothing stored: the upload's answer is a 400


def test_it_shows_why_a_request_over_the_limit_was_refused(logged_in_page, tech, settings, tmp_path) -> None:
    settings.PNEUMO_MAX_REQUEST_BYTES = 100_000
    big = tmp_path / "IM0001"
    big.write_bytes(bytes(200_000))
    page = logged_in_page(tech)
    page.goto("/upload/")

    page.set_input_files("#file-input", str(big))
    page.click("#upload-start")

    text = page.wait_for_selector(".result.refused").inner_text()
    assert text.startswith("refused: The request is 1 MB, over the 0 MB limit for one request")
