"""A muted AI result (outside the domain or the validated use) is shown, greyed, and never acts as a result.

Predictions are made directly with their domain outcome: no model runs here.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from django.utils.html import escape

from cases.imaging import ImageMetadata, assess_eligibility
from cases.imaging.eligibility import caveats_outside_use, use_caveats
from cases.models import Agreement, Finding, Priority, Review, Study
from cases.reviews import ReadingInput, review_sign
from cases.stats import dashboard_stats
from cases.worklist import lane_counts, worklist_alerts, worklist_for_user, worklist_row
from inference.display import (
    NO_RESULT_NOT_CHEST,
    NO_RESULT_OUTSIDE_USE,
    domain_label,
    prediction_counts,
    prediction_is_muted,
)
from inference.models import AiDomain, Prediction
from inference.services import study_ai_refresh
from tests.browser.studies import model_version_active, study_ready

MUTED_TEXT = "AI not validated for this image: it is unlike the images this model was validated on"
AGE_CAVEAT = "Patient is 58 years old, outside the validated ages of 1 to 5 years"

pytestmark = pytest.mark.django_db


def scoped(study: Study, *, domain: str | None, reason: str = "", **fields) -> Study:
    """The study after its predictions got ``domain`` (and a caveat ``reason``) and it followed them."""
    if domain == AiDomain.NOT_CHEST_XRAY:
        fields |= {"probability": None, "label": "", "heatmap": None}
    Prediction.objects.filter(image__study=study).update(
        domain=domain,
        domain_score=None if domain is None else 7.5,
        domain_limit=None if domain is None else 4.25,
        domain_reason="" if domain in (None, AiDomain.IN_DOMAIN) else "far from the validation images",
        outside_validated_use=bool(reason),
        outside_validated_use_reason=reason,
        **fields,
    )
    return study_ai_refresh(study_id=study.pk)


def muted_study(site, *, probability: float = 0.97, priority: str = Priority.ROUTINE, **kwargs) -> Study:
    return scoped(study_ready(site, probability=probability, priority=priority), **kwargs)


def _row(study: Study, user):
    (found,) = [s for s in worklist_for_user(user=user) if s.pk == study.pk]
    return worklist_row(found, now=timezone.now())


# --- The rule ------------------------------------------------------------------------------------


def test_it_tells_a_missing_tag_from_a_caveat_outside_validated_use() -> None:
    size = {"rows": 8, "columns": 8, "bits_allocated": 8, "bits_stored": 8}
    missing = assess_eligibility(ImageMetadata(kind="png", age_years=3, **size))
    chest = {"modality": "CR", "body_part": "CHEST", "view_position": "AP"}
    adult = assess_eligibility(ImageMetadata(kind="dicom", age_years=58, **chest, **size))
    # The paediatric version's ages put a 58-year-old outside its validated use: a caveat, not a note.
    caveats = use_caveats(58, "AP", min_age=1.0, max_age=5.0, views=("AP",))

    assert missing.status == "outside_validated_use"
    assert missing.caveat_kind == "missing_tag"
    assert adult.status == "eligible"
    assert caveats_outside_use("; ".join(caveats)) == caveats


@pytest.mark.parametrize(
    ("domain", "reason", "counts", "muted"),
    [
        (AiDomain.IN_DOMAIN, "", True, False),
        (AiDomain.IN_DOMAIN, "Body part is not recorded; View position is not recorded", True, False),
        (AiDomain.IN_DOMAIN, AGE_CAVEAT, False, True),
        (AiDomain.IN_DOMAIN, "Body part is not recorded; View PA is not the validated AP view", False, True),
        (AiDomain.OUTSIDE_DOMAIN, "", False, True),
        (AiDomain.NOT_CHEST_XRAY, "", False, False),
        (None, AGE_CAVEAT, True, False),  # made before the scope check: today's display
    ],
)
def test_it_counts_only_results_inside_the_domain_and_the_validated_use(
    demo_site, domain, reason, counts, muted
) -> None:
    study = muted_study(demo_site, domain=domain, reason=reason)
    prediction = Prediction.objects.get(image__study=study)

    assert prediction_counts(prediction) is counts
    assert prediction_is_muted(prediction) is muted
    assert (study.ai_probability is not None) is counts
    assert study.ai_flagged is counts


def test_it_keeps_a_muted_result_apart_from_the_studys_probability_and_flag(demo_site) -> None:
    study = muted_study(demo_site, probability=0.97, domain=AiDomain.OUTSIDE_DOMAIN)

    assert study.ai_probability is None and study.ai_flagged is False
    assert study.ai_muted_probability == pytest.approx(0.97)
    assert study.ai_domain == AiDomain.OUTSIDE_DOMAIN


def test_it_takes_a_studys_probability_from_its_in_domain_image_only(demo_site) -> None:
    study = study_ready(demo_site, probability=0.9, images=2)  # image 1 at 0.9, image 2 at 0.45
    first, second = Prediction.objects.filter(image__study=study).order_by("image_id")
    Prediction.objects.filter(pk=first.pk).update(domain=AiDomain.OUTSIDE_DOMAIN)
    Prediction.objects.filter(pk=second.pk).update(domain=AiDomain.IN_DOMAIN)

    study = study_ai_refresh(study_id=study.pk)

    assert study.ai_probability == pytest.approx(0.45) and study.ai_flagged is False
    assert study.ai_muted_probability == pytest.approx(0.9) and study.ai_domain == AiDomain.IN_DOMAIN


def test_it_names_an_unchecked_domain_not_checked() -> None:
    assert domain_label(None) == "not checked"
    assert domain_label(AiDomain.OUTSIDE_DOMAIN) == "Outside domain"


# --- Worklist, lanes and alerts ----------------------------------------------------------------------


def test_it_never_raises_a_muted_study_in_the_worklist(demo_site, rad) -> None:
    flagged = muted_study(demo_site, probability=0.6, domain=AiDomain.IN_DOMAIN)
    muted = muted_study(demo_site, probability=0.99, domain=AiDomain.OUTSIDE_DOMAIN)
    caveat = muted_study(demo_site, probability=0.98, domain=AiDomain.IN_DOMAIN, reason=AGE_CAVEAT)
    Study.objects.filter(pk=flagged.pk).update(received_at=timezone.now())  # the newest: only its flag lifts it

    order = [s.pk for s in worklist_for_user(user=rad)]

    assert order[0] == flagged.pk and set(order[1:]) == {muted.pk, caveat.pk}
    muted_row, caveat_row = _row(muted, rad), _row(caveat, rad)
    assert muted_row.ai_state == "muted" and muted_row.ai_note == MUTED_TEXT
    assert muted_row.muted_percent == 99 and muted_row.probability_percent is None
    assert muted_row.ai_domain == "outside_domain"
    assert caveat_row.ai_state == "muted" and caveat_row.ai_note == f"AI not validated for this image: {AGE_CAVEAT}"


def test_it_leaves_muted_studies_out_of_the_flagged_lane_counts(demo_site, rad) -> None:
    muted_study(demo_site, probability=0.9, priority=Priority.STAT, domain=AiDomain.IN_DOMAIN)
    muted_study(demo_site, probability=0.99, priority=Priority.STAT, domain=AiDomain.OUTSIDE_DOMAIN)

    counts = lane_counts(user=rad)

    assert counts["stat"] == 2 and counts["stat_flagged"] == 1 and counts["flagged"] == 1


def test_it_never_alerts_for_a_muted_stat_study(demo_site, rad) -> None:
    since = timezone.now() - timedelta(minutes=30)
    flagged = study_ready(demo_site, probability=0.9, priority=Priority.STAT, waited=timedelta(minutes=1))
    muted = study_ready(demo_site, probability=0.99, priority=Priority.STAT, waited=timedelta(minutes=1))
    for study, domain in ((flagged, AiDomain.IN_DOMAIN), (muted, AiDomain.OUTSIDE_DOMAIN)):
        Study.objects.filter(pk=study.pk).update(ai_completed_at=None, ai_flagged=False)
        scoped(study, domain=domain)

    assert [s.pk for s in worklist_alerts(user=rad, since=since)] == [flagged.pk]


def test_it_shows_a_not_chest_xray_row_as_no_result(demo_site, rad) -> None:
    study = muted_study(demo_site, domain=AiDomain.NOT_CHEST_XRAY)

    row = _row(study, rad)

    assert row.ai_state == "no_result" and row.ai_note == NO_RESULT_NOT_CHEST
    assert row.probability_percent is None and row.muted_percent is None


def test_it_shows_the_muted_worklist_row_greyed_with_its_domain(client, demo_site, rad) -> None:
    muted_study(demo_site, probability=0.99, domain=AiDomain.OUTSIDE_DOMAIN)
    client.force_login(rad)

    html = client.get("/worklist/").content.decode()

    assert 'data-ai-state="muted"' in html and 'data-ai-domain="outside_domain"' in html
    assert "AI not validated" in html and "pnum-muted" in html
    assert "is-flagged" not in html and 'class="badge flag"' not in html


# --- Study page and report ------------------------------------------------------------------------------


def test_it_shows_a_muted_result_greyed_without_a_flag_or_a_heatmap(client, demo_site, rad) -> None:
    study = muted_study(demo_site, probability=0.97, domain=AiDomain.OUTSIDE_DOMAIN)
    client.force_login(rad)

    html = client.get(f"/studies/{study.pk}/").content.decode()

    assert MUTED_TEXT in html and 'data-ai-shown="muted"' in html
    assert "ai-prob muted-prob" in html and "ai-prob hot" not in html
    assert "Pneumonia suspected" not in html
    assert 'data-heatmap-url=""' in html
    assert "Outside domain" in html and "distance 7.50, limit 4.25" in html


def test_it_shows_a_not_chest_xray_image_with_no_probability(client, demo_site, rad) -> None:
    study = muted_study(demo_site, domain=AiDomain.NOT_CHEST_XRAY)
    client.force_login(rad)

    page = client.get(f"/studies/{study.pk}/").content.decode()
    report = client.get(f"/studies/{study.pk}/report/").content.decode()

    for html in (page, report):
        assert NO_RESULT_NOT_CHEST in html
        assert "ai-prob" not in html and "Probability of pneumonia <strong" not in html


def test_it_shows_no_result_where_the_site_runs_no_ai_outside_validated_use(client, demo_site, rad) -> None:
    demo_site.ai_outside_validated_use = False
    demo_site.save()
    study = muted_study(demo_site, probability=0.97, domain=AiDomain.OUTSIDE_DOMAIN)
    client.force_login(rad)

    html = client.get(f"/studies/{study.pk}/").content.decode()

    assert escape(NO_RESULT_OUTSIDE_USE) in html and "ai-prob" not in html
    assert _row(study, rad).ai_state == "withheld" and _row(study, rad).muted_percent is None


def test_it_prints_a_muted_result_as_not_validated(client, demo_site, rad) -> None:
    study = muted_study(demo_site, probability=0.97, domain=AiDomain.OUTSIDE_DOMAIN)
    client.force_login(rad)

    html = client.get(f"/studies/{study.pk}/report/").content.decode()

    assert "not validated for this image: not counted, not flagged" in html
    assert MUTED_TEXT in html and "AI scope check: Outside domain" in html
    assert "flagged (at or above the threshold)" not in html
    assert "heat-layer" not in html


def test_it_shows_an_old_unchecked_result_as_today(client, demo_site, rad) -> None:
    study = muted_study(demo_site, probability=0.87, domain=None)
    client.force_login(rad)

    html = client.get(f"/studies/{study.pk}/").content.decode()

    assert "ai-prob hot" in html and "Not checked" in html
    assert _row(study, rad).ai_state == "flagged"


# --- Readings over a muted result ---------------------------------------------------------------------


def test_it_records_a_reading_over_a_muted_result_as_not_validated(demo_site, rad) -> None:
    study = muted_study(demo_site, probability=0.97, domain=AiDomain.OUTSIDE_DOMAIN)

    review = review_sign(study_id=study.pk, user=rad, reading=ReadingInput(finding=Finding.NO_PNEUMONIA))

    assert review.agreement == Agreement.NOT_VALIDATED and review.reason == ""
    assert review.ai_label == "" and review.ai_probability == pytest.approx(0.97)
    assert review.ai_domain == AiDomain.OUTSIDE_DOMAIN and review.model_version == model_version_active()


def test_it_asks_no_overrule_reason_over_a_muted_result(client, demo_site, rad) -> None:
    study = muted_study(demo_site, probability=0.97, domain=AiDomain.IN_DOMAIN, reason=AGE_CAVEAT)
    client.force_login(rad)

    page = client.get(f"/studies/{study.pk}/").content.decode()
    response = client.post(f"/studies/{study.pk}/sign/", {"finding": Finding.NO_PNEUMONIA, "report": "Clear."})

    assert 'data-ai-muted="1"' in page and "your finding is not compared with it" in page
    assert response.status_code == 302
    assert Review.objects.get(study=study).agreement == Agreement.NOT_VALIDATED


def test_it_leaves_readings_over_muted_results_out_of_the_agreement(demo_site, rad, client) -> None:
    counted = muted_study(demo_site, probability=0.9, domain=AiDomain.IN_DOMAIN)
    muted = muted_study(demo_site, probability=0.97, domain=AiDomain.OUTSIDE_DOMAIN)
    review_sign(study_id=counted.pk, user=rad, reading=ReadingInput(finding=Finding.PNEUMONIA))
    review_sign(study_id=muted.pk, user=rad, reading=ReadingInput(finding=Finding.NO_PNEUMONIA))

    stats = dashboard_stats(user=rad, days=7)
    client.force_login(rad)
    html = client.get("/dashboard/").content.decode()

    (agreement,) = stats["agreement"]
    assert agreement["n"] == 1 and agreement["confusion_matrix"] == {"tp": 1, "fp": 0, "fn": 0, "tn": 0}
    assert stats["reviews_not_validated"] == 1 and stats["reviews_without_ai"] == 0
    assert 'data-not-validated="1"' in html


# --- Outside the domain per day and site ------------------------------------------------------------------


def test_it_gives_the_share_of_images_outside_the_domain_per_day_and_site(demo_site, north_site, admin_user) -> None:
    today, yesterday = timezone.now(), timezone.now() - timedelta(days=1)
    for domain in (AiDomain.IN_DOMAIN, AiDomain.IN_DOMAIN, AiDomain.OUTSIDE_DOMAIN, AiDomain.NOT_CHEST_XRAY):
        muted_study(demo_site, domain=domain)
    muted_study(demo_site, domain=None)  # not checked: not counted
    Prediction.objects.filter(image__site=demo_site, domain__isnull=False).update(finished_at=today)
    old = muted_study(north_site, domain=AiDomain.OUTSIDE_DOMAIN)
    Prediction.objects.filter(image__study=old).update(finished_at=yesterday)
    muted_study(north_site, domain=AiDomain.IN_DOMAIN)
    Prediction.objects.filter(image__site=north_site).exclude(image__study=old).update(finished_at=yesterday)

    rows = dashboard_stats(user=admin_user, days=7)["outside_domain_by_day"]

    day, before = timezone.localdate(today).isoformat(), timezone.localdate(yesterday).isoformat()
    assert rows == [
        {"date": before, "site": "NORTH", "n": 2, "outside_domain": 1, "share": 0.5},
        {"date": day, "site": "DEMO", "n": 4, "outside_domain": 2, "share": 0.5},
    ]


def test_it_shows_the_outside_domain_share_on_the_dashboard(client, demo_site, rad) -> None:
    muted_study(demo_site, domain=AiDomain.OUTSIDE_DOMAIN)
    client.force_login(rad)

    html = client.get("/dashboard/").content.decode()

    assert "Images outside the AI's domain" in html
    assert 'data-site="DEMO"' in html and 'data-outside="1"' in html and "100%" in html
