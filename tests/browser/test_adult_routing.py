"""End to end in a real Chromium with both real models: adult films are read by the adult model, and say why."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from inference.models import Population, Prediction, Routing
from tests.dicom_factory import make_dicom

pytestmark = [pytest.mark.browser, pytest.mark.slow]
ADULT_FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "adult"


def _adult_film(name: str) -> Path:
    return ADULT_FIXTURES / name


def test_adult_films_uploaded_in_the_browser_are_read_by_the_adult_model(
    logged_in_page, celery_worker, tech, rad, problems, screenshot, tmp_path
) -> None:
    film = _adult_film("PNEUMONIA/00000398_002.png")
    pixels = np.asarray(PILImage.open(film).convert("L"))
    dicom = tmp_path / "IM0058"
    dicom.write_bytes(make_dicom(pixels, shape=pixels.shape, patient_id="ADULT-58", patient_age="058Y", view="PA"))
    png = tmp_path / "adult-unknown-age.png"
    png.write_bytes(_adult_film("NORMAL/00001680_000.png").read_bytes())
    page = logged_in_page(tech)
    page.set_default_timeout(90_000)  # the real worker reads each film
    page.goto("/upload/")
    page.set_input_files("#file-input", [str(dicom)])
    page.click("#upload-start")
    page.wait_for_selector(".result.stored")
    page.set_input_files("#file-input", [str(png)])
    page.wait_for_selector("#manual-patient:not([hidden])")  # a PNG carries no patient: typed in, without an age
    page.fill("#id_patient_id", "ADULT-PNG")
    page.click("#upload-start")
    page.wait_for_selector(".result.stored >> nth=1")
    page.wait_for_selector('td.study-status[data-status="awaiting_review"] >> nth=1')

    predictions = list(Prediction.objects.select_related("model_version", "image"))
    assert len(predictions) == 2
    for prediction in predictions:
        assert prediction.status == "succeeded"
        assert prediction.model_version.population == Population.ADULT, prediction.routing_reason
    by_kind = {p.image.kind: p for p in predictions}
    assert (by_kind["dicom"].routing, by_kind["dicom"].routing_reason) == (Routing.AGE, "age 58 years: adult model")
    assert by_kind["png"].routing == Routing.DOMAIN
    assert by_kind["png"].routing_reason == "age unknown: image most like the adult training images"

    # The radiologist sees which model read each film, and why.
    page = logged_in_page(rad)
    for prediction in predictions:
        page.goto(f"/studies/{prediction.image.study_id}/")
        why = page.locator("[data-routing]").first
        assert why.inner_text().lower() == prediction.routing_reason
        assert "pneumo-xception224-adult-v1" in page.locator(".ai-card").first.inner_text()
    screenshot(page, "adult-routing")
    assert problems == []
