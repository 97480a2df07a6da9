"""``GET /api/v1/validation/``: admins only whatever the query, 404 for an unknown site or model, 200 from n = 0."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from cases.models import AuditEvent, Review
from inference.models import Prediction

URL = "/api/v1/validation/"
QUERIES = [
    "",
    "?site=DEMO&model=val-model",
    "?site=NOPE&model=nope",
    "?site=DEMO&model=val-model&since=not-a-date",
    "?target_sensitivity=7",
]


@pytest.fixture
def version(make_model_version):
    return make_model_version(name="val-model", threshold=0.5)


@pytest.mark.parametrize("query", QUERIES)
@pytest.mark.parametrize("role", ["tech", "rad"])
def test_it_refuses_everyone_but_admins_whatever_the_query(api, tech, rad, version, role: str, query: str) -> None:
    user = {"tech": tech, "rad": rad}[role]
    response = api(user).get(URL + query)
    assert response.status_code == 403
    assert "detail" in response.json()


def test_it_asks_anonymous_callers_to_sign_in(api, version) -> None:
    assert api(None).get(URL + "?site=DEMO&model=val-model").status_code == 401


@pytest.mark.parametrize("query", ["?site=NOPE&model=val-model", "?site=DEMO&model=no-such-model"])
def test_it_answers_404_for_an_unknown_site_or_model(api, admin_user, version, query: str) -> None:
    response = api(admin_user).get(URL + query)
    assert response.status_code == 404
    assert "detail" in response.json()


@pytest.mark.parametrize(
    "query", ["?site=DEMO", "?site=DEMO&model=val-model&target_sensitivity=2", "?site=DEMO&model=val-model&since=x"]
)
def test_it_answers_400_for_a_bad_query(api, admin_user, version, query: str) -> None:
    assert api(admin_user).get(URL + query).status_code == 400


def test_it_answers_an_empty_period_with_nothing_counted(api, admin_user, demo_site, version) -> None:
    response = api(admin_user).get(URL + "?site=DEMO&model=val-model&since=2026-02-01&until=2026-01-01")
    assert response.status_code == 200 and response.json()["n"] == 0


def test_it_answers_200_with_nulls_from_no_readings(api, admin_user, demo_site, version) -> None:
    response = api(admin_user).get(URL + "?site=demo&model=val-model&since=2026-01-01&until=2026-01-31")

    assert response.status_code == 200
    body = response.json()
    assert (body["site"], body["model"], body["since"], body["until"]) == (
        "DEMO",
        "val-model",
        "2026-01-01",
        "2026-01-31",
    )
    assert body["n"] == 0 and body["confusion_matrix"] == [[0, 0], [0, 0]]
    for key in ("auc", "auc_ci", "sensitivity", "sensitivity_ci", "specificity_ci", "ppv", "npv_ci", "prevalence"):
        assert body[key] is None, key
    assert len(body["calibration"]) == 10
    for split in ("by_device", "by_age_band", "by_view", "by_domain", "by_mode"):
        assert isinstance(body[split], list), split


def test_it_reports_signed_readings_with_splits_and_audits_the_view(
    api, admin_user, demo_site, rad, make_study, make_image, version
) -> None:
    # Given four signed studies read by the version at DEMO, one on an ACME unit
    for finding, probability, manufacturer in [
        ("pneumonia", 0.9, "ACME"),
        ("pneumonia", 0.4, ""),
        ("no_pneumonia", 0.3, ""),
        ("no_pneumonia", 0.6, ""),
    ]:
        study = make_study(demo_site)
        image = make_image(study, manufacturer=manufacturer, patient_age_years=30, view_position="PA")
        Prediction.objects.create(
            image=image, model_version=version, preprocessing_version=version.preprocessing_version,
            status="succeeded", probability=probability, threshold=0.5, finished_at=timezone.now(),
        )  # fmt: skip
        Review.objects.create(
            study=study, radiologist=rad, finding=finding, agreement="agree",
            signed_at=timezone.now() - timedelta(hours=1),
        )  # fmt: skip

    # When an admin asks for the report
    response = api(admin_user).get(URL + "?site=DEMO&model=val-model&target_sensitivity=0.5")

    # Then the figures are the four readings', split, and the view is audited
    assert response.status_code == 200
    body = response.json()
    assert (body["n"], body["positives"], body["confusion_matrix"]) == (4, 2, [[1, 1], [1, 1]])
    assert body["auc"] == pytest.approx(0.75)
    assert body["sensitivity"] == 0.5 and len(body["sensitivity_ci"]) == 2
    assert body["suggested_threshold"] == pytest.approx(0.9) and body["suggested_specificity"] == 1.0
    assert {g["group"]: g["n"] for g in body["by_device"]} == {"ACME": 1, "unknown": 3}
    assert [(g["group"], g["n"]) for g in body["by_mode"]] == [("live", 4)]
    assert {g["group"]: g["n"] for g in body["by_age_band"]}["18-64"] == 4
    event = AuditEvent.objects.get(action="view_validation_report")
    assert (event.user, event.site, event.detail["n"]) == (admin_user, demo_site, 4)
