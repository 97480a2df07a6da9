from __future__ import annotations

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from cases.models import AuditEvent, Image, Study
from cases.states import StudyStatus
from tests.dicom_factory import make_dicom, make_png

STUDIES = "/api/v1/studies/"


def _upload(client, *files: tuple[str, bytes], **fields):
    payload = {"files": [SimpleUploadedFile(name, data) for name, data in files], **fields}
    return client.post(STUDIES, payload, format="multipart")


# --- Reading studies ----------------------------------------------------------------------


def test_it_lists_only_the_callers_sites_studies(world, api, rad) -> None:
    body = api(rad).get(STUDIES).json()
    ids = {row["id"] for row in body["results"]}
    assert ids == {world.demo.awaiting.pk, world.demo.in_review.pk, world.demo.reported.pk}
    assert body["count"] == 3 and "next" in body


def test_it_filters_and_orders_studies(world, api, rad) -> None:
    client = api(rad)
    flagged = client.get(STUDIES, {"flagged": "true"}).json()["results"]
    assert [row["id"] for row in flagged] == [world.demo.awaiting.pk]
    reported = client.get(STUDIES, {"status": "reported"}).json()["results"]
    assert [row["id"] for row in reported] == [world.demo.reported.pk]
    by_patient = client.get(STUDIES, {"patient": world.demo.patient.pk, "ordering": "received_at"}).json()
    assert [row["id"] for row in by_patient["results"]] == sorted(row["id"] for row in by_patient["results"])
    assert client.get(STUDIES, {"site": "NORTH"}).status_code == 404  # not one of the radiologist's sites
    assert client.get(STUDIES, {"ordering": "patient__name"}).status_code == 400


def test_it_shows_a_study_with_its_images_unconfirmed_ai_results_and_reviews(world, api, rad) -> None:
    body = api(rad).get(f"{STUDIES}{world.demo.awaiting.pk}/").json()
    assert body["id"] == world.demo.awaiting.pk
    assert body["status"] == "awaiting_review" and body["priority"] == "routine"
    assert body["patient"]["name"] == "DOE^JANE"
    assert body["ai_result_confirmed"] is False and body["ai_result_review"] == "unconfirmed"
    assert "unconfirmed" in body["ai_notice"]
    [image] = body["images"]
    assert isinstance(image["id"], int) and image["ai_eligibility"] == "eligible"
    assert image["modality"] == "CR" and image["view_position"] == "AP"
    [prediction] = image["predictions"]
    assert prediction["probability"] == 0.91 and prediction["label"] == "pneumonia"
    assert prediction["model_version"]["name"] == "test-model"
    assert prediction["ai_result_confirmed"] is False
    assert {"outside_validated_use", "outside_validated_use_reason", "inference_ms", "status", "error"} <= set(
        prediction
    )
    assert body["reviews"] == []


def test_it_audits_every_view_of_patient_data(world, api, rad) -> None:
    client = api(rad)
    client.get(f"{STUDIES}{world.demo.awaiting.pk}/")
    client.get(f"/api/v1/patients/{world.demo.patient.pk}/")
    client.get(f"/api/v1/images/{world.demo.image.pk}/file")
    client.get(f"/api/v1/images/{world.demo.image.pk}/render.png")
    client.get(STUDIES)
    actions = set(AuditEvent.objects.filter(user=rad).values_list("action", flat=True))
    assert {"view_study", "view_patient", "download_image", "view_image", "list_studies"} <= actions


def test_it_hides_another_sites_study_behind_404(world, api, rad) -> None:
    response = api(rad).get(f"{STUDIES}{world.north.awaiting.pk}/")
    assert response.status_code == 404
    assert not AuditEvent.objects.filter(action="view_study").exists()


# --- Uploading --------------------------------------------------------------------------------


def test_it_stores_an_uploaded_dicom_and_reports_duplicates(demo_site, api, tech) -> None:
    data = make_dicom()
    first = _upload(api(tech), ("a.dcm", data))
    assert first.status_code == 201
    [outcome] = first.json()["files"]
    assert outcome["status"] == "stored" and isinstance(outcome["study_id"], int)
    assert first.json()["study_ids"] == [outcome["study_id"]]
    study = Study.objects.get(pk=outcome["study_id"])
    assert study.site == demo_site and study.uploaded_by == tech

    again = _upload(api(tech), ("a-again.dcm", data))
    assert again.status_code == 201
    assert again.json()["files"][0]["status"] == "duplicate"
    assert again.json()["files"][0]["study_id"] == study.pk
    assert again.json()["study_ids"] == []


def test_it_answers_400_with_the_same_body_when_every_file_is_refused(demo_site, api, tech) -> None:
    response = _upload(api(tech), ("notes.txt", b"not an image"), ("empty.dcm", b""))
    assert response.status_code == 400
    body = response.json()
    assert [f["status"] for f in body["files"]] == ["refused", "refused"]
    assert all(f["reason"] for f in body["files"]) and body["study_ids"] == []


def test_it_takes_patient_details_for_png(demo_site, api, tech) -> None:
    response = _upload(
        api(tech),
        ("chest.png", make_png()),
        patient_id="MRN-7",
        patient_name="ROE^RICHARD",
        sex="M",
        birth_date="2021-03-04",
        priority="stat",
    )
    assert response.status_code == 201, response.json()
    study = Study.objects.get(pk=response.json()["study_ids"][0])
    assert study.patient.patient_id == "MRN-7" and study.patient.name == "ROE^RICHARD"
    assert study.priority == "stat"


def test_it_refuses_png_without_a_patient_id(demo_site, api, tech) -> None:
    response = _upload(api(tech), ("chest.png", make_png()))
    assert response.status_code == 400
    assert "patient ID" in response.json()["files"][0]["reason"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("patient_id", "MRN-\u202e7"), ("patient_id", "MRN-7\n"), ("patient_name", "ROE\u200f^RICHARD")],
)
def test_it_refuses_patient_details_that_can_pass_for_another_patient(demo_site, api, tech, field, value) -> None:
    fields = {"patient_id": "MRN-7", "patient_name": "ROE^RICHARD"} | {field: value}
    response = _upload(api(tech), ("chest.png", make_png()), **fields)
    assert response.status_code == 400
    (reason,) = response.json()[field]
    assert reason.startswith("The patient ") and "can make it look like another patient's" in reason
    assert not Study.objects.exists()


def test_it_lets_clients_choose_only_among_their_own_sites(demo_site, north_site, api, tech) -> None:
    response = _upload(api(tech), ("a.dcm", make_dicom()), site="NORTH")
    assert response.status_code == 404
    assert response.json() == {"detail": "Unknown site, or not one of yours."}
    assert not Image.objects.exists()


def test_it_ignores_fields_clients_may_not_set(demo_site, api, tech, rad) -> None:
    response = _upload(api(tech), ("a.dcm", make_dicom()), status="reported", uploaded_by=rad.pk, site="DEMO")
    study = Study.objects.get(pk=response.json()["study_ids"][0])
    assert study.status != StudyStatus.REPORTED and study.uploaded_by == tech


def test_it_lets_an_admin_of_every_site_pick_one(demo_site, north_site, api, admin_user) -> None:
    assert _upload(api(admin_user), ("a.dcm", make_dicom())).status_code == 400  # which site?
    response = _upload(api(admin_user), ("a.dcm", make_dicom()), site=str(north_site.pk))
    assert response.status_code == 201
    assert Study.objects.get().site == north_site


@pytest.mark.parametrize(
    "url",
    [
        "/api/v1/studies/99999999999999999999999/",
        "/api/v1/studies/?patient=99999999999999999999999",
        "/api/v1/studies/?site=99999999999999999999999",
        "/api/v1/studies/?site=" + "9" * 5000,
        "/api/v1/audit/?user=99999999999999999999999",
        "/api/v1/studies/?page=99999999999999999999999",
    ],
)
def test_it_answers_ids_beyond_any_column_without_a_server_error(url: str, world, api, admin_user) -> None:
    assert api(admin_user).get(url).status_code in (200, 400, 404)


def test_it_shows_a_study_in_a_fixed_number_of_queries(world, api, rad, make_image, django_assert_max_num_queries):
    for _ in range(6):
        make_image(world.demo.awaiting)
    client = api(rad)
    with django_assert_max_num_queries(12):
        body = client.get(f"{STUDIES}{world.demo.awaiting.pk}/").json()
    assert len(body["images"]) == 7
