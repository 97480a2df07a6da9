"""The API's view of the scope check: domain fields on predictions, muted studies, the outside-domain share."""

from __future__ import annotations

import pytest
from django.utils import timezone

from cases.models import Agreement, Finding
from cases.reviews import ReadingInput, review_sign
from inference.models import AiDomain, Prediction
from inference.services import study_ai_refresh

STUDIES = "/api/v1/studies/"


def _scoped(world, domain: str, **fields) -> None:
    if domain == AiDomain.NOT_CHEST_XRAY:
        fields |= {"probability": None, "label": "", "heatmap": None}
    Prediction.objects.filter(pk=world.demo.prediction.pk).update(
        domain=domain, domain_score=6.5, domain_limit=4.0, domain_reason="far from the validation images", **fields
    )
    study_ai_refresh(study_id=world.demo.awaiting.pk)


def test_it_gives_a_muted_study_no_probability_and_no_flag(world, api, rad) -> None:
    _scoped(world, AiDomain.OUTSIDE_DOMAIN)

    body = api(rad).get(f"{STUDIES}{world.demo.awaiting.pk}/").json()

    assert body["ai_probability"] is None and body["ai_flagged"] is False
    assert body["ai_domain"] == "outside_domain" and body["ai_muted"] is True
    [prediction] = body["images"][0]["predictions"]
    assert prediction["probability"] == 0.91 and prediction["ai_muted"] is True
    assert (prediction["domain"], prediction["domain_score"], prediction["domain_limit"]) == (
        "outside_domain",
        6.5,
        4.0,
    )
    assert prediction["domain_reason"] == "far from the validation images"


def test_it_gives_no_probability_or_label_for_an_image_that_is_no_chest_xray(world, api, rad) -> None:
    _scoped(world, AiDomain.NOT_CHEST_XRAY)

    body = api(rad).get(f"{STUDIES}{world.demo.awaiting.pk}/").json()

    [prediction] = body["images"][0]["predictions"]
    assert prediction["probability"] is None and prediction["label"] == "" and prediction["domain"] == "not_chest_xray"
    assert body["ai_probability"] is None and body["ai_flagged"] is False and body["ai_muted"] is False


def test_it_says_not_checked_as_null_for_older_predictions(world, api, rad) -> None:
    body = api(rad).get(f"{STUDIES}{world.demo.awaiting.pk}/").json()

    [prediction] = body["images"][0]["predictions"]
    assert prediction["domain"] is None and prediction["domain_score"] is None and prediction["ai_muted"] is False
    assert body["ai_probability"] == 0.91 and body["ai_domain"] is None


def test_it_gives_worklist_and_study_list_rows_their_domain(world, api, rad) -> None:
    _scoped(world, AiDomain.OUTSIDE_DOMAIN)
    client = api(rad)

    worklist = {row["id"]: row for row in client.get("/api/v1/worklist/").json()["results"]}
    studies = {row["id"]: row for row in client.get(STUDIES).json()["results"]}

    for rows in (worklist, studies):
        row = rows[world.demo.awaiting.pk]
        assert row["ai_domain"] == "outside_domain" and row["ai_muted"] is True and row["ai_flagged"] is False
    assert client.get(STUDIES, {"flagged": "true"}).json()["results"] == []


def test_it_keeps_the_muted_probability_and_domain_on_the_review(world, api, rad) -> None:
    _scoped(world, AiDomain.OUTSIDE_DOMAIN)
    review_sign(study_id=world.demo.awaiting.pk, user=rad, reading=ReadingInput(finding=Finding.PNEUMONIA))

    body = api(rad).get(f"{STUDIES}{world.demo.awaiting.pk}/").json()

    [review] = body["reviews"]
    assert review["agreement"] == Agreement.NOT_VALIDATED and review["reason"] == ""
    assert review["ai_probability"] == 0.91 and review["ai_domain"] == "outside_domain"
    assert body["ai_result_review"] == "not_validated" and body["ai_result_confirmed"] is False


@pytest.mark.parametrize("domain", [AiDomain.IN_DOMAIN, AiDomain.OUTSIDE_DOMAIN])
def test_it_gives_the_outside_domain_share_per_day_and_site_in_the_stats(world, api, admin_user, domain) -> None:
    _scoped(world, domain)

    body = api(admin_user).get("/api/v1/stats/", {"days": 7}).json()

    today = timezone.localdate().isoformat()
    outside = int(domain == AiDomain.OUTSIDE_DOMAIN)
    assert body["outside_domain_by_day"] == [
        {"date": today, "site": "DEMO", "n": 1, "outside_domain": outside, "share": float(outside)}
    ]
    assert body["reviews_not_validated"] == 0


def test_it_serves_no_heatmap_of_a_result_the_scope_check_mutes(world, api, rad) -> None:
    image = world.demo.image.pk
    client = api(rad)
    assert client.get(f"/api/v1/images/{image}/heatmap.json").status_code == 200  # before: a result that counts
    _scoped(world, AiDomain.OUTSIDE_DOMAIN)

    assert client.get(f"/api/v1/images/{image}/heatmap.json").status_code == 404
    assert client.get(f"/api/v1/images/{image}/heatmap.png").status_code == 404
