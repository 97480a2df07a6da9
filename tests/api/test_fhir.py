"""GET /api/v1/studies/{id}/fhir/: a FHIR R4 Bundle that fhir.resources' R4B models accept, through the workflow."""

from __future__ import annotations

import pytest
from django.utils import timezone
from fhir.resources.R4B.bundle import Bundle

from cases.models import AuditEvent, Study
from cases.reviews import ReadingInput, review_amend, review_sign
from cases.states import StudyStatus
from inference.models import Prediction

FHIR_JSON = "application/fhir+json"


def _url(study: Study) -> str:
    return f"/api/v1/studies/{study.pk}/fhir/"


def _bundle(client, study: Study) -> dict:
    response = client.get(_url(study))
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith(FHIR_JSON)
    data = response.json()
    Bundle.model_validate(data)  # raises on anything R4 does not allow
    return data


def _resources(bundle: dict, resource_type: str) -> list[dict]:
    return [e["resource"] for e in bundle["entry"] if e["resource"]["resourceType"] == resource_type]


def _one(bundle: dict, resource_type: str) -> dict:
    (resource,) = _resources(bundle, resource_type)
    return resource


def _full_url(bundle: dict, resource: dict) -> str:
    return next(e["fullUrl"] for e in bundle["entry"] if e["resource"] is resource)


@pytest.fixture
def fresh(demo_site, make_study, make_image, model_version):
    """A study awaiting review with one DICOM image and, so far, no AI result."""

    def make(**study_fields) -> tuple[Study, object]:
        study = make_study(demo_site, status=StudyStatus.AWAITING_REVIEW, accession_number="ACC9", **study_fields)
        image = make_image(
            study,
            series_instance_uid="1.2.826.0.1.3680043.12.1",
            sop_class_uid="1.2.840.10008.5.1.4.1.1.1",
            modality="CR",
        )
        return study, image

    return make


def _predict(image, version, **fields) -> Prediction:
    values = {
        "status": "succeeded",
        "probability": 0.91,
        "label": "pneumonia",
        "threshold": 0.5,
        "domain": "in_domain",
        "finished_at": timezone.now(),
    } | fields
    return Prediction.objects.create(
        image=image, model_version=version, preprocessing_version=version.preprocessing_version, **values
    )


def test_it_answers_a_bundle_of_the_study_that_validates_as_r4(world, api, rad) -> None:
    study = world.demo.awaiting
    bundle = _bundle(api(rad), study)

    assert bundle["type"] == "collection"
    assert sorted({e["resource"]["resourceType"] for e in bundle["entry"]}) == [
        "Device",
        "DiagnosticReport",
        "ImagingStudy",
        "Observation",
        "Patient",
    ]
    patient = _one(bundle, "Patient")
    assert patient["identifier"][0]["value"] == study.patient.patient_id
    assert patient["name"][0]["family"] == "DOE" and patient["name"][0]["given"] == ["JANE"]
    imaging = _one(bundle, "ImagingStudy")
    assert imaging["identifier"][0]["value"] == f"urn:oid:{study.study_instance_uid}"
    assert imaging["subject"]["reference"] == _full_url(bundle, patient)
    device = _one(bundle, "Device")
    assert device["deviceName"] == [{"name": world.version.name, "type": "model-name"}]
    assert device["version"] == [{"value": world.version.sha256}]
    observation = _one(bundle, "Observation")
    assert observation["device"]["reference"] == _full_url(bundle, device)
    ucum_one = {"value": 0.91, "unit": "1", "system": "http://unitsofmeasure.org", "code": "1"}
    assert observation["valueQuantity"] == ucum_one
    assert observation["interpretation"][0]["coding"][0]["code"] == "POS"
    report = _one(bundle, "DiagnosticReport")
    assert report["status"] == "preliminary"
    assert report["result"] == [{"reference": _full_url(bundle, observation)}]
    assert AuditEvent.objects.filter(action="view_study_fhir", user=rad, object_id=str(study.pk)).count() == 1


@pytest.mark.django_db
def test_it_moves_the_report_from_registered_to_preliminary_final_and_amended(fresh, api, rad, model_version) -> None:
    # Given a study with no AI result and no signature
    study, image = fresh()
    client = api(rad)
    assert _one(_bundle(client, study), "DiagnosticReport")["status"] == "registered"
    assert not _resources(_bundle(client, study), "Observation")

    # When the AI answers, unconfirmed
    _predict(image, model_version)
    Study.objects.filter(pk=study.pk).update(ai_probability=0.91, ai_flagged=True, ai_domain="in_domain")
    unconfirmed = _bundle(client, study)
    assert _one(unconfirmed, "DiagnosticReport")["status"] == "preliminary"
    assert _one(unconfirmed, "Observation")["status"] == "preliminary"

    # When a radiologist signs
    review_sign(study_id=study.pk, user=rad, reading=ReadingInput(finding="pneumonia", report="Right lower lobe."))
    signed = _one(_bundle(client, study), "DiagnosticReport")
    assert signed["status"] == "final"
    assert signed["conclusion"].startswith("Pneumonia") and "Right lower lobe." in signed["conclusion"]
    assert signed["conclusionCode"][0]["coding"][0]["code"] == "233604007"
    assert signed["resultsInterpreter"] == [{"display": rad.signature_name}]

    # When the reading is amended
    review_amend(
        study_id=study.pk,
        user=rad,
        reading=ReadingInput(finding="no_pneumonia", reason="false_positive"),
        amendment_reason="Second look",
        amends_version=1,
    )
    amended = _one(_bundle(client, study), "DiagnosticReport")
    assert amended["status"] == "amended"
    assert "conclusionCode" not in amended and "Second look" in amended["conclusion"]


@pytest.mark.django_db
def test_it_never_presents_a_muted_result_as_a_finding(fresh, api, rad, model_version) -> None:
    study, image = fresh()
    _predict(image, model_version, domain="outside_domain", domain_reason="unlike the validation images")

    observation = _one(_bundle(api(rad), study), "Observation")

    assert observation["valueQuantity"]["value"] == 0.91  # stored and shown greyed
    interpretation = observation["interpretation"][0]
    assert "coding" not in interpretation and "not validated" in interpretation["text"]
    assert any("not validated" in note["text"] for note in observation["note"])


@pytest.mark.django_db
def test_it_gives_no_probability_for_an_image_that_is_no_chest_xray(fresh, api, rad, model_version) -> None:
    study, image = fresh()
    _predict(image, model_version, probability=None, label="", domain="not_chest_xray", heatmap=None)

    bundle = _bundle(api(rad), study)
    observation = _one(bundle, "Observation")

    assert "valueQuantity" not in observation and "interpretation" not in observation
    assert observation["dataAbsentReason"]["coding"][0]["code"] == "not-applicable"
    assert _one(bundle, "DiagnosticReport")["status"] == "preliminary"  # the AI has answered: no result


@pytest.mark.django_db
def test_it_withholds_a_muted_result_where_the_site_runs_no_ai_outside_validated_use(
    fresh, api, rad, model_version, demo_site
) -> None:
    demo_site.ai_outside_validated_use = False
    demo_site.save()
    study, image = fresh()
    _predict(image, model_version, domain="outside_domain")

    observation = _one(_bundle(api(rad), study), "Observation")

    assert "valueQuantity" not in observation
    assert observation["dataAbsentReason"]["coding"][0]["code"] == "not-permitted"


@pytest.mark.django_db
def test_it_names_the_patient_from_the_readable_dicom_name(fresh, api, rad) -> None:
    study, _ = fresh()
    study.patient.name = "DOE, JANE MARIE"
    study.patient.save()

    (name,) = _one(_bundle(api(rad), study), "Patient")["name"]

    assert name == {"text": "JANE MARIE DOE", "family": "DOE", "given": ["JANE", "MARIE"]}


def test_it_hides_another_sites_study_and_refuses_the_anonymous(world, api, rad) -> None:
    assert api(rad).get(_url(world.north.awaiting)).status_code == 404
    assert api(None).get(_url(world.demo.awaiting)).status_code == 401
    assert not AuditEvent.objects.filter(action="view_study_fhir").exists()
