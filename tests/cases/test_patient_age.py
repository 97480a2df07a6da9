"""The age at imaging through ingest, the study page and the API: its value and source, or why it is unknown."""

from __future__ import annotations

import html
import io
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from cases.api.tokens import token_create
from cases.ingest import IncomingFile, ManualPatient, studies_ingest
from cases.models import Image
from inference.models import Prediction
from tests.dicom_factory import make_dicom, make_png


@pytest.fixture
def ready(make_model_version, demo_site, tech):
    # A registered paediatric version (1 to 5 years): ingest decides eligibility against its intended ages.
    make_model_version(is_active=True, intended_min_age_years=1.0, intended_max_age_years=5.0, intended_views=["AP"])
    return demo_site, tech


def _ingest(site, user, name: str, data: bytes, **kwargs) -> Image:
    report = studies_ingest(files=[IncomingFile(name, data)], site=site, user=user, **kwargs)
    assert [f.status for f in report.files] == ["stored"], report.files
    return Image.objects.get(pk=report.files[0].image_id)


def test_it_reads_a_plain_number_patient_age_as_an_adult_outside_the_paediatric_model(ready) -> None:
    site, tech = ready

    image = _ingest(site, tech, "adult.dcm", make_dicom(patient_age="58"))

    assert (image.patient_age_years, image.patient_age_source, image.patient_age_reason) == (58.0, "dicom_age", "")
    # The age is inside no version's check at ingest: the routed (paediatric) version's caveat is the prediction's.
    assert image.ai_eligibility == "eligible"
    prediction = Prediction.objects.get(image=image)
    assert "Patient is 58 years old, outside the validated ages" in prediction.outside_validated_use_reason
    assert prediction.routing_reason == "age 58 years: no adult model is active, so the paediatric model"
    assert prediction.outside_validated_use and "58 years" in prediction.outside_validated_use_reason


def test_it_keeps_a_standard_paediatric_age_inside_the_validated_ages(ready) -> None:
    site, tech = ready

    image = _ingest(site, tech, "child.dcm", make_dicom(patient_age="003Y"))

    assert (image.patient_age_years, image.patient_age_source) == (3.0, "dicom_age")
    assert image.ai_eligibility == "eligible"


def test_it_counts_the_age_from_the_dicom_birth_and_study_dates_without_patient_age(ready) -> None:
    site, tech = ready

    image = _ingest(site, tech, "child.dcm", make_dicom(patient_age=None, birth_date="20210115", study_date="20240115"))

    assert image.patient_age_years == pytest.approx(3.0, abs=0.01)
    assert image.patient_age_source == "dicom_birth_date"
    assert image.ai_eligibility == "eligible"


def test_it_takes_a_png_age_from_the_birth_date_typed_at_upload(ready) -> None:
    site, tech = ready
    born = timezone.localdate() - timedelta(days=round(3 * 365.25))
    manual = ManualPatient(patient_id="MRN-5", birth_date=born)

    image = _ingest(site, tech, "child.png", make_png(), manual=manual)

    assert image.patient_age_years == pytest.approx(3.0, abs=0.01)
    assert image.patient_age_source == "upload_form"
    assert "age" not in image.ai_eligibility_reason.lower()  # a known age inside 1 to 5 years is no caveat


def test_it_leaves_a_malformed_patient_age_unknown_with_the_reason_and_stores_the_image(ready) -> None:
    site, tech = ready

    image = _ingest(site, tech, "odd.dcm", make_dicom(patient_age="12X"))

    assert image.patient_age_years is None and image.patient_age_source == "unknown"
    assert image.patient_age_reason == "PatientAge '12X' is not a valid age"
    assert image.ai_eligibility == "outside_validated_use" and "Patient age is unknown" in image.ai_eligibility_reason


def test_it_shows_the_age_and_its_source_or_why_it_is_unknown_on_the_study_page(client, ready, rad) -> None:
    site, tech = ready
    known = _ingest(site, tech, "child.dcm", make_dicom(patient_age="003Y", patient_id="P-1"))
    odd = _ingest(site, tech, "odd.dcm", make_dicom(patient_age="12X", patient_id="P-2"))
    client.force_login(rad)

    known_page = html.unescape(client.get(reverse("study_detail", args=[known.study_id])).content.decode())
    odd_page = html.unescape(client.get(reverse("study_detail", args=[odd.study_id])).content.decode())

    assert "Age 3 years (from DICOM PatientAge)" in known_page
    assert "Age unknown: PatientAge '12X' is not a valid age" in odd_page


def test_it_gives_the_age_its_source_and_the_reason_in_the_apis_image_objects(ready, rad) -> None:
    site, tech = ready
    odd = _ingest(site, tech, "odd.dcm", make_dicom(patient_age="12X", patient_id="P-2"))
    adult = _ingest(site, tech, "adult.dcm", make_dicom(patient_age="58", patient_id="P-3"))
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token_create(user=rad)[0]}")

    [odd_image] = api.get(f"/api/v1/studies/{odd.study_id}/").json()["images"]
    [adult_image] = api.get(f"/api/v1/studies/{adult.study_id}/").json()["images"]

    assert (odd_image["patient_age_years"], odd_image["patient_age_source"]) == (None, "unknown")
    assert odd_image["patient_age_reason"] == "PatientAge '12X' is not a valid age"
    assert (adult_image["patient_age_years"], adult_image["patient_age_source"]) == (58.0, "dicom_age")
    assert adult_image["patient_age_reason"] == ""


def _post(client, url: str, name: str, data: bytes, **fields):
    upload = io.BytesIO(data)
    upload.name = name
    return client.post(
        url,
        {"files": [upload], "priority": "routine", **fields},
        **({"format": "multipart"} if isinstance(client, APIClient) else {}),
    )


def test_it_takes_an_age_in_years_typed_on_the_upload_page(client, ready) -> None:
    _site, tech = ready
    client.force_login(tech)

    response = _post(client, reverse("upload_files"), "adult.png", make_png(), patient_id="MRN-7", age_years="58")

    assert response.status_code == 200, response.content
    image = Image.objects.get()
    assert (image.patient_age_years, image.patient_age_source) == (58.0, "upload_form")
    assert "58 years old" in Prediction.objects.get(image=image).outside_validated_use_reason


def test_it_takes_an_age_in_years_sent_to_the_api(ready) -> None:
    _site, tech = ready
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token_create(user=tech)[0]}")

    response = _post(api, "/api/v1/studies/", "child.png", make_png(), patient_id="MRN-8", age_years="2.5")

    assert response.status_code in (200, 201), response.content
    image = Image.objects.get()
    assert (image.patient_age_years, image.patient_age_source) == (2.5, "upload_form")


@pytest.mark.parametrize("age_years", ["-1", "200", "old"])
def test_it_refuses_an_impossible_typed_age_on_the_upload_page(client, ready, age_years: str) -> None:
    _site, tech = ready
    client.force_login(tech)

    response = _post(client, reverse("upload_files"), "a.png", make_png(), patient_id="MRN-7", age_years=age_years)

    assert response.status_code == 400 and not Image.objects.exists()


def test_it_counts_from_the_birth_date_sent_to_the_api_when_the_age_field_is_left_empty(ready) -> None:
    _site, tech = ready
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {token_create(user=tech)[0]}")
    born = timezone.localdate() - timedelta(days=round(4 * 365.25))

    response = _post(
        api, "/api/v1/studies/", "child.png", make_png(), patient_id="MRN-9", age_years="", birth_date=born.isoformat()
    )

    assert response.status_code in (200, 201), response.content
    image = Image.objects.get()
    assert image.patient_age_years == pytest.approx(4.0, abs=0.01) and image.patient_age_source == "upload_form"
