"""Routing at request time, and an admin's re-run with a named version (service, API and admin action)."""

from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from cases.api.tokens import token_create
from cases.models import AuditEvent
from inference.models import Population, Prediction, PredictionStatus, Routing
from inference.services import predictions_request


@pytest.fixture
def versions(make_model_version):
    child = make_model_version(
        name="paed-test",
        population=Population.PAEDIATRIC,
        is_active=True,
        intended_min_age_years=1.0,
        intended_max_age_years=5.0,
        intended_views=["AP"],
        threshold=0.7,
    )
    adult = make_model_version(
        name="adult-test",
        population=Population.ADULT,
        is_active=True,
        intended_min_age_years=18.0,
        intended_max_age_years=85.0,
        intended_views=["AP", "PA"],
        threshold=0.4,
    )
    return child, adult


@pytest.fixture
def study(demo_site, make_study, make_image):
    study = make_study(demo_site)
    make_image(study, patient_age_years=3.0, view_position="AP", body_part="CHEST")
    make_image(study, patient_age_years=58.0, view_position="PA", body_part="CHEST")
    make_image(
        study,
        patient_age_years=None,
        ai_eligibility="outside_validated_use",
        ai_eligibility_reason="Patient age is unknown",
    )
    return study


def _by_age(study) -> dict:
    return {p.image.patient_age_years: p for p in Prediction.objects.filter(image__study=study)}


def test_it_routes_each_image_of_a_study_when_the_ai_is_requested(versions, study, django_capture_on_commit_callbacks):
    child, adult = versions

    predictions_request(study=study)

    found = _by_age(study)
    assert (found[3.0].model_version, found[3.0].routing) == (child, Routing.AGE)
    assert (found[58.0].model_version, found[58.0].routing) == (adult, Routing.AGE)
    assert found[58.0].routing_reason == "age 58 years: adult model"
    assert not found[58.0].outside_validated_use  # PA at 58 is inside the adult version's validated use
    assert found[None].routing == Routing.DOMAIN  # the worker chooses among both
    # Asked again, nothing is routed twice.
    predictions_request(study=study)
    assert Prediction.objects.filter(image__study=study).count() == 3


def test_a_version_inactive_for_a_population_routes_to_the_other_with_a_caveat(versions, study) -> None:
    child, adult = versions
    adult.is_active = False
    adult.save()

    predictions_request(study=study)

    routed = _by_age(study)[58.0]
    assert routed.model_version == child
    assert routed.outside_validated_use and "outside the validated ages of 1 to 5 years" in (
        routed.outside_validated_use_reason
    )


def test_an_admin_reruns_every_image_with_a_named_version(versions, study, admin_user) -> None:
    child, _ = versions
    predictions_request(study=study)
    Prediction.objects.filter(image__study=study).update(status=PredictionStatus.SUCCEEDED, probability=0.2)

    rerun = predictions_request(study=study, version=child, user=admin_user)

    assert {p.model_version for p in rerun} == {child}
    assert {p.routing for p in rerun} == {Routing.REQUESTED}
    assert {p.status for p in rerun} == {PredictionStatus.PENDING}
    assert AuditEvent.objects.filter(action="predictions_rerun", object_id=str(study.pk)).exists()


def _api(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_create(user=user)[0]}")
    return client


def test_the_api_lets_only_admins_name_a_prepared_version(versions, study, admin_user, rad, make_model_version):
    url = f"/api/v1/studies/{study.pk}/predictions/"
    unprepared = make_model_version(name="unprepared", parity_passed=False, converted_path="")

    assert _api(rad).post(url, {"model": "paed-test"}, format="json").status_code == 403
    assert _api(admin_user).post(url, {"model": "nope"}, format="json").status_code == 404
    assert _api(admin_user).post(url, {"model": unprepared.name}, format="json").status_code == 409
    response = _api(admin_user).post(url, {"model": "adult-test"}, format="json")
    assert response.status_code == 200, response.content
    assert {p["model_version"]["name"] for p in response.json()["predictions"]} == {"adult-test"}
    assert {p["model_version"]["population"] for p in response.json()["predictions"]} == {"adult"}
    assert {p["routing"] for p in response.json()["predictions"]} == {"requested"}
    # Without a name each image is routed to its patient's version.
    routed = _api(rad).post(url, format="json").json()["predictions"]
    assert {p["routing"] for p in routed} == {"requested"}  # already run: the request covers the existing ones


def test_the_admin_action_asks_for_a_version_then_reruns(client, versions, study, admin_user) -> None:
    child, _ = versions
    admin_user.is_superuser = True
    admin_user.save()
    client.force_login(admin_user)
    url = reverse("admin:cases_study_changelist")
    form = {"action": "run_again_with_version", "_selected_action": [study.pk]}

    page = client.post(url, form)
    assert page.status_code == 200 and b"Run again" in page.content

    done = client.post(url, {**form, "apply": "1", "model_version": child.pk})
    assert done.status_code == 302
    assert set(Prediction.objects.filter(image__study=study).values_list("model_version", flat=True)) == {child.pk}


def test_an_image_the_retention_policy_deleted_is_not_run_again(versions, study, admin_user) -> None:
    from cases.models import FileState

    child, _ = versions
    study.images.update(file_state=FileState.PURGED)

    assert predictions_request(study=study, version=child, user=admin_user) == []
