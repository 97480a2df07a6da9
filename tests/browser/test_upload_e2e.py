"""End to end in a real Chromium with the real model: a technician uploads, the worker answers."""

from __future__ import annotations

import pytest

from inference.models import Prediction
from tests.browser.conftest import VIEWPORT
from tests.dicom_factory import make_dicom

pytestmark = [pytest.mark.browser, pytest.mark.slow]


def test_it_takes_a_technicians_upload_to_awaiting_review(
    chromium_browser, live_server, celery_worker, tech, problems, screenshot, tmp_path
) -> None:
    chest = tmp_path / "IM0001"  # DICOM files often have no extension
    chest.write_bytes(make_dicom(12, shape=(512, 512), patient_id="E2E-1", patient_name="Upload^Ursula"))
    context = chromium_browser.new_context(viewport=VIEWPORT, base_url=live_server.url)
    page = context.new_page()
    page.set_default_timeout(60_000)
    problems.watch(page)

    page.goto("/accounts/login/")
    page.fill("#id_username", tech.username)
    page.fill("#id_password", "correct-horse-battery")
    page.click("button[type=submit]")
    page.wait_for_url("**/upload/")

    page.set_input_files("#file-input", str(chest))
    page.select_option("select[name=priority]", "urgent")
    page.click("#upload-start")
    page.wait_for_selector(".result.stored")
    page.wait_for_selector('td.study-status[data-status="awaiting_review"]')
    screenshot(page, "00-technician-upload")

    prediction = Prediction.objects.get()
    assert prediction.status == "succeeded" and prediction.model_version.is_active
    status_text = page.locator("td.study-status").first.inner_text()
    assert "Awaiting review" in status_text and "unconfirmed" in status_text
    assert problems == []
    context.close()
