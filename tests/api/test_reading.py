from __future__ import annotations

from cases.models import Review, Study
from cases.states import StudyStatus
from cases.worklist import worklist_for_user
from inference.models import Prediction

STUDIES = "/api/v1/studies/"


def _url(study: Study, action: str) -> str:
    return f"{STUDIES}{study.pk}/{action}/"


def test_it_signs_a_reading_and_labels_the_ai_result_confirmed(world, api, rad) -> None:
    client = api(rad)
    study = world.demo.awaiting
    assert client.post(_url(study, "claim")).json()["status"] == "in_review"

    response = client.post(
        _url(study, "review"), {"finding": "pneumonia", "report": "Right lower lobe."}, format="json"
    )

    assert response.status_code == 201
    review = response.json()
    assert review["agreement"] == "agree" and review["radiologist"] == rad.signature_name
    assert review["version"] == 1 and review["report"] == "Right lower lobe."
    detail = client.get(f"{STUDIES}{study.pk}/").json()
    assert detail["status"] == "reported" and detail["finding"] == "pneumonia"
    assert detail["ai_result_confirmed"] is True and detail["ai_result_review"] == "agree"
    assert detail["images"][0]["predictions"][0]["ai_result_confirmed"] is True


def test_it_requires_a_reason_to_overrule_the_ai(world, api, rad) -> None:
    response = api(rad).post(_url(world.demo.awaiting, "review"), {"finding": "no_pneumonia"}, format="json")
    assert response.status_code == 400
    assert "reason" in response.json()
    signed = api(rad).post(
        _url(world.demo.awaiting, "review"), {"finding": "no_pneumonia", "reason": "false_positive"}, format="json"
    )
    assert signed.status_code == 201 and signed.json()["agreement"] == "disagree"
    detail = api(rad).get(f"{STUDIES}{world.demo.awaiting.pk}/").json()
    assert detail["ai_result_confirmed"] is False and detail["ai_result_review"] == "disagree"


def test_it_refuses_a_finding_that_is_not_one_of_the_choices(world, api, rad) -> None:
    response = api(rad).post(_url(world.demo.awaiting, "review"), {"finding": "maybe"}, format="json")
    assert response.status_code == 400 and "finding" in response.json()


def test_it_refuses_to_sign_a_study_a_colleague_is_reading(world, api, rad) -> None:
    response = api(rad).post(_url(world.demo.in_review, "review"), {"finding": "pneumonia"}, format="json")
    assert response.status_code == 409
    assert "In review by" in response.json()["detail"]


def test_it_cannot_be_told_who_signed(world, api, rad, colleague_rad) -> None:
    api(rad).post(
        _url(world.demo.awaiting, "review"),
        {"finding": "pneumonia", "radiologist": colleague_rad.pk, "agreement": "disagree", "version": 7},
        format="json",
    )
    review = Review.objects.get(study=world.demo.awaiting)
    assert (review.radiologist, review.agreement, review.version) == (rad, "agree", 1)


def test_it_amends_a_signed_report_as_a_new_version(world, api, rad) -> None:
    client = api(rad)
    missing = client.post(_url(world.demo.reported, "amend"), {"finding": "pneumonia"}, format="json")
    assert missing.status_code == 400 and {"amendment_reason", "amends_version"} <= missing.json().keys()
    response = client.post(
        _url(world.demo.reported, "amend"),
        {"finding": "pneumonia", "amendment_reason": "Missed opacity", "amends_version": 1},
        format="json",
    )
    assert response.status_code == 201
    assert response.json()["version"] == 2 and response.json()["amendment_reason"] == "Missed opacity"
    reviews = client.get(f"{STUDIES}{world.demo.reported.pk}/").json()["reviews"]
    assert [r["version"] for r in reviews] == [1, 2]


def test_it_refuses_an_amendment_of_a_version_no_longer_current(world, api, rad, colleague_rad) -> None:
    # Given a signed report that a colleague amended to version 2
    url = _url(world.demo.reported, "amend")
    body = {"finding": "no_pneumonia", "reason": "false_positive", "amendment_reason": "Second look"}
    assert api(colleague_rad).post(url, body | {"amends_version": 1}, format="json").status_code == 201

    # When a reader who saw version 1 amends it
    late = api(rad).post(url, body | {"amends_version": 1}, format="json")

    # Then the amendment is refused with the version now current, and nothing is added
    assert late.status_code == 409 and late.json()["current_version"] == 2
    assert "now at version 2" in late.json()["detail"]
    assert Review.objects.filter(study=world.demo.reported).count() == 2
    assert api(rad).post(url, body | {"amends_version": 2}, format="json").json()["version"] == 3


def test_it_names_the_current_version_when_refusing_a_second_signature(world, api, rad) -> None:
    refused = api(rad).post(_url(world.demo.reported, "review"), {"finding": "pneumonia"}, format="json")
    assert refused.status_code == 409 and refused.json()["current_version"] == 1


def test_it_lets_the_reader_release_a_claim(world, api, rad) -> None:
    client = api(rad)
    client.post(_url(world.demo.awaiting, "claim"))
    response = client.post(_url(world.demo.awaiting, "release"))
    assert response.status_code == 200 and response.json()["status"] == "awaiting_review"


def test_it_lists_the_worklist_in_the_pages_order(world, api, rad, make_study, demo_site) -> None:
    make_study(demo_site, status=StudyStatus.AWAITING_REVIEW, priority="stat")
    make_study(demo_site, status=StudyStatus.AWAITING_REVIEW, ai_probability=0.2)
    body = api(rad).get("/api/v1/worklist/").json()
    assert [row["id"] for row in body["results"]] == [s.pk for s in worklist_for_user(user=rad)]
    assert all(isinstance(row["id"], int) for row in body["results"])
    assert body["results"][0]["priority"] == "stat"
    flagged = api(rad).get("/api/v1/worklist/", {"flagged": "true"}).json()["results"]
    assert [row["id"] for row in flagged] == [world.demo.awaiting.pk]


def test_it_requests_predictions_for_the_active_model(world, api, rad, make_image) -> None:
    extra = make_image(world.demo.awaiting)
    failed = world.demo.prediction
    failed.status, failed.error = "failed", "boom"
    failed.save()

    response = api(rad).post(_url(world.demo.awaiting, "predictions"))

    assert response.status_code == 200
    predictions = {p["image_id"]: p for p in response.json()["predictions"]}
    assert set(predictions) == {world.demo.image.pk, extra.pk}
    assert predictions[world.demo.image.pk]["status"] == "pending"  # requeued
    assert Prediction.objects.filter(image=extra).count() == 1


def test_it_answers_409_when_no_model_is_active(world, api, rad) -> None:
    world.version.is_active = False
    world.version.save()
    response = api(rad).post(_url(world.demo.awaiting, "predictions"))
    assert response.status_code == 409


def test_it_serves_the_heatmap_labelled_unconfirmed(world, api, rad) -> None:
    client = api(rad)
    grid = client.get(f"/api/v1/images/{world.demo.image.pk}/heatmap.json").json()
    assert grid["values"] == [[0.0, 0.5], [0.25, 1.0]] and grid["ai_result_confirmed"] is False
    png = client.get(f"/api/v1/images/{world.demo.image.pk}/heatmap.png", {"size": 64})
    assert png.status_code == 200 and png["Content-Type"] == "image/png"
    assert png.content.startswith(b"\x89PNG") and "unconfirmed" in png["X-Pneumo-AI-Result"]


def test_it_renders_and_downloads_images(world, api, rad) -> None:
    client = api(rad)
    render = client.get(f"/api/v1/images/{world.demo.image.pk}/render.png", {"max_size": 64, "width": 100})
    assert render.status_code == 200 and render.content.startswith(b"\x89PNG")
    download = client.get(f"/api/v1/images/{world.demo.image.pk}/file", HTTP_ACCEPT="application/dicom")
    assert download.status_code == 200
    assert download["Content-Disposition"].startswith("attachment")
    assert b"DICM" in b"".join(download.streaming_content)[:200]


def test_it_answers_json_errors_to_clients_asking_for_images(world, api, rad) -> None:
    response = api(rad).get(f"/api/v1/images/{world.north.image.pk}/render.png", HTTP_ACCEPT="image/png")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/json" and "detail" in response.json()


def test_it_answers_404_for_an_image_without_a_heatmap(world, api, rad) -> None:
    Prediction.objects.all().delete()
    response = api(rad).get(f"/api/v1/images/{world.demo.image.pk}/heatmap.json")
    assert response.status_code == 404 and "heatmap" in response.json()["detail"]
