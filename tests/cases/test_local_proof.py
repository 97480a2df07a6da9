"""Issue 18 end to end: a site goes shadow, gathers signed readings, reads its own validation report, goes live
with a threshold its evidence backs, and is warned when the AI drifts below that evidence."""

from __future__ import annotations

import itertools
from datetime import timedelta

import numpy as np
import pytest
from django.core import mail
from django.urls import reverse
from rest_framework.test import APIClient

from cases.api.tokens import token_create
from cases.drift import drift_check
from cases.models import AuditEvent, DriftKind, Finding
from cases.validation_stats import wilson_interval
from inference.models import AiMode, Prediction
from inference.services import study_ai_refresh
from tests.cases.test_drift import FIRST, LAST, _readings, signed_readings

_serial = itertools.count(1)


def _client(user) -> APIClient:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {token_create(user=user)[0]}")
    return client


def _shadow_month(site, version, rad, readings: list[tuple[str, float]]) -> None:
    """Studies read blind over the 30 days before the drift window: (finding, the AI's stored probability)."""
    first = FIRST - timedelta(days=60)
    for day in range(30):
        signed_readings(site, version, rad, first + timedelta(days=day), readings[day::30], ai_mode=AiMode.SHADOW)


@pytest.mark.slow
def test_a_site_proves_the_ai_on_its_own_patients_then_is_warned_of_drift(
    demo_site, rad, admin_user, make_model_version, make_study, make_image, django_capture_on_commit_callbacks
) -> None:
    version = make_model_version(name="local-proof", threshold=0.5, is_active=True)
    admin_user.email = "admin@demo.example"
    admin_user.save()
    admin, reader = _client(admin_user), _client(rad)
    site_url = reverse("api:site-detail", kwargs={"code": "DEMO"})

    # 1. The site goes shadow.
    assert admin.patch(site_url, {"ai_mode": "shadow"}, format="json").json()["ai_mode"] == "shadow"

    # 2. A month of blind readings: 30 pneumonia (AI 0.45 to 0.95) and 80 normal (AI 0.05 to 0.40).
    scores = [(Finding.PNEUMONIA, float(p)) for p in np.linspace(0.45, 0.95, 30)]
    scores += [(Finding.NO_PNEUMONIA, float(p)) for p in np.linspace(0.05, 0.40, 80)]
    _shadow_month(demo_site, version, rad, scores)
    # Meanwhile a study waits, its stored result (0.48, under the model's 0.5) hidden from its readers.
    waiting = make_study(demo_site)
    Prediction.objects.create(
        image=make_image(waiting), model_version=version, preprocessing_version="test-v1", status="succeeded",
        probability=0.48, label="normal", threshold=0.5, threshold_source="model", ai_mode=AiMode.SHADOW,
    )  # fmt: skip
    study_ai_refresh(study_id=waiting.pk)
    shown = reader.get(reverse("api:study-detail", kwargs={"pk": waiting.pk})).json()
    assert shown["ai_probability"] is None and shown["ai_flagged"] is False
    assert all(image["predictions"] == [] for image in shown["images"])

    # 3. The admins read the site's own report: every reading blind, so unbiased.
    query = {"site": "DEMO", "model": "local-proof"}
    report = admin.get(reverse("api:validation"), query).json()
    assert (report["n"], report["positives"]) == (110, 30)
    assert [(g["group"], g["n"]) for g in report["by_mode"]] == [("shadow", 110)]
    assert report["auc"] == 1.0 and report["threshold"] == 0.5
    suggested = report["suggested_threshold"]
    assert 0.45 < suggested < 0.48  # the second-lowest positive: 29 of 30 caught (sensitivity >= 0.95)

    # 4. Its evidence backs a site threshold: no reason needed; the waiting study is judged at it at once.
    created = admin.post(reverse("api:site-threshold-list"), {**query, "threshold": suggested}, format="json")
    assert created.status_code == 201, created.json()
    evidence = created.json()["evidence"]
    assert created.json()["evidence_sufficient"] is True
    assert evidence["agreement"] == pytest.approx(109 / 110)
    assert evidence["agreement_ci"] == pytest.approx(wilson_interval(109, 110))

    # 5. The site goes live: the waiting study shows its stored result at once, flagged at the site threshold.
    with django_capture_on_commit_callbacks(execute=True):
        assert admin.patch(site_url, {"ai_mode": "live"}, format="json").status_code == 200
    live = reader.get(reverse("api:study-detail", kwargs={"pk": waiting.pk})).json()
    assert live["ai_probability"] == pytest.approx(0.48) and live["ai_flagged"] is True
    (prediction,) = live["images"][0]["predictions"]
    assert prediction["threshold"] == pytest.approx(suggested) and prediction["threshold_source"] == "site"
    assert [e.detail["mode"] for e in AuditEvent.objects.filter(action="site_ai_mode").order_by("pk")] == [
        "shadow",
        "live",
    ]

    # 6. Forty live days: full agreement, then 6 in 10 for the last seven, under the evidence's lower bound.
    for i in range(40):
        day = FIRST + timedelta(days=i)
        low = day > LAST - timedelta(days=7)
        _readings(demo_site, version, rad, day, agree=6 if low else 10, disagree=4 if low else 0)
    with django_capture_on_commit_callbacks(execute=True):
        assert drift_check(day=LAST - timedelta(days=1)) == []
        (alarm,) = drift_check(day=LAST)
    assert alarm.kind == DriftKind.AGREEMENT and alarm.site == demo_site and alarm.model_version == version
    assert alarm.figures["reference"] == pytest.approx(wilson_interval(109, 110)[0])
    assert len(mail.outbox) == 1 and "DEMO" in mail.outbox[0].subject
