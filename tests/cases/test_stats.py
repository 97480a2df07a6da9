"""Dashboard figures, checked against hand-made reviews with known answers."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from cases import stats
from cases.models import Review, Study
from cases.states import StudyStatus
from cases.stats import daily_chart, dashboard_stats, percentile
from cases.validation_stats import cohen_kappa
from inference.models import ModelVersion
from tests.browser.studies import model_version_active

S = StudyStatus


@pytest.fixture(autouse=True)
def no_broker(monkeypatch) -> None:
    monkeypatch.setattr(stats, "queue_length", lambda: 7)


@pytest.fixture
def signed(demo_site, make_study, rad):
    """``signed(ai_label, finding, n, ...)``: n reported studies, each with one signed review."""

    def make(ai_label: str, finding: str, n: int = 1, *, reason: str = "", version=None, site=None, **fields):
        version = version if version is not None else (model_version_active() if ai_label else None)
        agreement = (
            "no_ai"
            if not ai_label
            else "indeterminate"
            if finding == "indeterminate"
            else "agree"
            if (finding == "pneumonia") == (ai_label == "pneumonia")
            else "disagree"
        )
        reviews = []
        for _ in range(n):
            study = make_study(site or demo_site, status=S.REPORTED, reported_at=timezone.now())
            reviews.append(
                Review.objects.create(
                    study=study,
                    radiologist=rad,
                    finding=finding,
                    ai_label=ai_label,
                    model_version=version,
                    agreement=agreement,
                    reason=reason if agreement == "disagree" else "",
                    signed_at=fields.get("signed_at", timezone.now()),
                )
            )
        return reviews

    return make


def _only_version(figures: dict) -> dict:
    (agreement,) = figures["agreement"]
    return agreement


def test_it_computes_agreement_on_a_known_table(signed, rad) -> None:
    # Given 20 TP, 5 FP, 10 FN, 15 TN: po = 0.7, pe = (25*30 + 25*20) / 50**2 = 0.5, so kappa = 0.4.
    signed("pneumonia", "pneumonia", 20)
    signed("pneumonia", "no_pneumonia", 5, reason="false_positive")
    signed("normal", "pneumonia", 10, reason="false_negative")
    signed("normal", "no_pneumonia", 15)
    figures = _only_version(dashboard_stats(user=rad))
    assert figures["confusion_matrix"] == {"tp": 20, "fp": 5, "fn": 10, "tn": 15}
    assert (figures["n"], figures["agreed"], figures["overruled"], figures["indeterminate"]) == (50, 35, 15, 0)
    assert figures["sensitivity"] == pytest.approx(20 / 30)
    assert figures["specificity"] == pytest.approx(15 / 20)
    assert figures["ppv"] == pytest.approx(20 / 25)
    assert figures["npv"] == pytest.approx(15 / 25)
    assert figures["kappa"] == pytest.approx(0.4)
    assert figures["overrule_reasons"] == {
        "false_positive": 5,
        "false_negative": 10,
        "image_quality": 0,
        "outside_scope": 0,
        "other": 0,
    }


def test_it_counts_indeterminate_findings_apart(signed, rad) -> None:
    signed("pneumonia", "pneumonia", 3)
    signed("pneumonia", "indeterminate", 2)
    figures = _only_version(dashboard_stats(user=rad))
    assert (figures["n"], figures["indeterminate"], figures["confusion_matrix"]["tp"]) == (3, 2, 3)
    assert figures["specificity"] is None and figures["kappa"] is None  # one class only: undefined


def test_it_uses_the_latest_signed_version_of_each_study(signed, rad) -> None:
    (first,) = signed("pneumonia", "pneumonia")
    Review.objects.create(
        study=first.study,
        radiologist=rad,
        finding="no_pneumonia",
        ai_label="pneumonia",
        model_version=first.model_version,
        agreement="disagree",
        reason="image_quality",
        version=2,
        supersedes=first,
        amendment_reason="Second look",
        signed_at=timezone.now(),
    )
    figures = _only_version(dashboard_stats(user=rad))
    assert figures["confusion_matrix"] == {"tp": 0, "fp": 1, "fn": 0, "tn": 0}
    assert figures["overrule_reasons"]["image_quality"] == 1


def test_it_separates_model_versions_and_readings_without_ai(signed, rad) -> None:
    older = ModelVersion.objects.create(
        name="older", version="0.9", source_path="x", sha256="c" * 64, preprocessing_version="p", threshold=0.4
    )
    signed("pneumonia", "pneumonia", 2)
    signed("normal", "pneumonia", 1, reason="other", version=older)
    signed("", "pneumonia", 4)
    figures = dashboard_stats(user=rad)
    assert [(a["model_version"], a["n"], a["is_active"]) for a in figures["agreement"]] == [
        ("pneumonia-test-model 1.0", 2, True),
        ("older 0.9", 1, False),
    ]
    assert figures["reviews_without_ai"] == 4


def test_it_leaves_out_readings_signed_before_the_period(signed, rad) -> None:
    signed("pneumonia", "pneumonia", 1, signed_at=timezone.now() - timedelta(days=40))
    signed("pneumonia", "pneumonia", 2)
    assert _only_version(dashboard_stats(user=rad, days=30))["n"] == 2
    assert _only_version(dashboard_stats(user=rad, days=60))["n"] == 3


def test_it_restricts_figures_to_the_users_sites(signed, rad, admin_user, north_site) -> None:
    signed("pneumonia", "pneumonia", 2)
    signed("pneumonia", "no_pneumonia", 3, reason="other", site=north_site)
    assert _only_version(dashboard_stats(user=rad))["n"] == 2
    assert _only_version(dashboard_stats(user=admin_user))["n"] == 5


def test_it_counts_studies_received_and_reported_per_day(demo_site, make_study, rad) -> None:
    today = timezone.localdate()
    now = timezone.now()
    for days_ago, reported in ((0, True), (0, False), (2, True), (20, False), (45, True)):
        study = make_study(demo_site)
        at = now - timedelta(days=days_ago)
        Study.objects.filter(pk=study.pk).update(received_at=at, reported_at=at if reported else None)
    figures = dashboard_stats(user=rad, days=14)
    received = {d["date"]: d["count"] for d in figures["received_per_day"]}
    reported = {d["date"]: d["count"] for d in figures["reported_per_day"]}
    assert len(received) == len(reported) == 14
    assert figures["received_per_day"][-1]["date"] == today.isoformat()
    assert received[today.isoformat()] == 2 and reported[today.isoformat()] == 1
    assert received[(today - timedelta(days=2)).isoformat()] == 1
    assert sum(received.values()) == 3 and sum(reported.values()) == 2


def test_it_measures_turnaround_median_and_90th_percentile(demo_site, make_study, rad) -> None:
    now = timezone.now()
    for minutes_to_ai, minutes_to_sign in ((1, 10), (2, 20), (3, 30), (4, 40), (10, None)):
        study = make_study(demo_site)
        received = now - timedelta(hours=2)
        ai_done = received + timedelta(minutes=minutes_to_ai)
        signed = ai_done + timedelta(minutes=minutes_to_sign) if minutes_to_sign else None
        Study.objects.filter(pk=study.pk).update(received_at=received, ai_completed_at=ai_done, reported_at=signed)
    turnaround = dashboard_stats(user=rad)["turnaround"]
    assert turnaround["upload_to_ai"] == {"median_s": 180.0, "p90_s": pytest.approx(456.0), "n": 5}
    assert turnaround["ai_to_signature"] == {"median_s": 1500.0, "p90_s": pytest.approx(2220.0), "n": 4}


def test_it_reports_the_queue_now(demo_site, make_study, rad) -> None:
    for status in (S.RECEIVED, S.QUEUED, S.QUEUED, S.ANALYZING, S.AWAITING_REVIEW, S.IN_REVIEW, S.REPORTED):
        make_study(demo_site, status=status)
    assert dashboard_stats(user=rad)["queue_length"] == {
        "ai_pending": 4,
        "received": 1,
        "queued": 2,
        "analyzing": 1,
        "awaiting_review": 1,
        "in_review": 1,
        "broker": 7,
    }


def test_it_computes_percentiles_like_numpy() -> None:
    assert percentile([], 50) is None
    assert percentile([5.0], 90) == 5.0
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    assert percentile([10.0, 20.0, 30.0, 40.0, 50.0], 90) == pytest.approx(46.0)


def test_it_computes_kappa_at_the_edges() -> None:
    assert cohen_kappa(0, 0, 0, 0) is None
    assert cohen_kappa(10, 0, 0, 10) == 1.0
    assert cohen_kappa(0, 10, 10, 0) == -1.0


def test_it_lays_out_the_daily_chart() -> None:
    received = [{"date": f"2024-01-{d:02d}", "count": c} for d, c in ((1, 4), (2, 0), (3, 2))]
    reported = [{"date": r["date"], "count": 1} for r in received]
    chart = daily_chart(received, reported, height=100)
    assert [d["h_received"] for d in chart["days"]] == [100, 0, 50]
    assert [d["y_reported"] for d in chart["days"]] == [75, 75, 75]
    assert chart["peak"] == 4


def test_it_shows_the_figures_on_the_dashboard(client, signed, rad) -> None:
    signed("pneumonia", "no_pneumonia", 2, reason="false_positive")
    client.force_login(rad)
    page = client.get("/dashboard/")
    assert b'data-metric="overruled">2<' in page.content
    assert b'data-reason="false_positive">2<' in page.content
    assert client.get("/dashboard/", {"days": "14"}).context["stats"]["days"] == 14
