"""Site thresholds: refused without evidence unless a reason is given, re-flagging unsigned studies, never signed
ones, recorded on each result, and the reference that drift alarms compare agreement with."""

from __future__ import annotations

import pytest
from django.urls import reverse
from django.utils import timezone

from cases.models import AuditEvent, Review, Study
from cases.states import StudyStatus
from cases.validation import validation_report
from cases.validation_stats import wilson_interval
from inference.models import Prediction, SiteThreshold
from inference.services import study_ai_refresh
from inference.thresholds import (
    SiteThresholdRefused,
    site_threshold_references,
    site_threshold_set,
    threshold_in_force,
)


@pytest.fixture
def api():
    """``api(user)``: a REST client sending a fresh token of ``user``."""
    from rest_framework.test import APIClient

    from cases.api.tokens import token_create

    def client_for(user) -> APIClient:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Token {token_create(user=user)[0]}")
        return client

    return client_for


@pytest.fixture
def version(make_model_version):
    return make_model_version(name="thr-model", threshold=0.5, is_active=True)


@pytest.fixture
def signed(demo_site, rad, make_study, make_image, version):
    """A signed study at DEMO with one result by ``version``."""

    def build(finding: str, probability: float, *, site=None) -> Study:
        study = make_study(site or demo_site, status=StudyStatus.REPORTED)
        _result(make_image(study), version, probability)
        agreement = "agree" if (finding == "pneumonia") == (probability >= 0.5) else "disagree"
        Review.objects.create(
            study=study, radiologist=rad, finding=finding, agreement=agreement, signed_at=timezone.now()
        )
        return study

    return build


def _result(image, version, probability: float, *, threshold: float | None = None) -> Prediction:
    threshold = version.threshold if threshold is None else threshold
    return Prediction.objects.create(
        image=image,
        model_version=version,
        preprocessing_version=version.preprocessing_version,
        status="succeeded",
        probability=probability,
        label="pneumonia" if probability >= threshold else "normal",
        threshold=threshold,
        threshold_source="model",
        finished_at=timezone.now(),
    )


def _readings(signed, n_positive: int, n_negative: int) -> None:
    # Positives score 0.35 to 0.9, negatives 0.05 to 0.45: at 0.3 every positive is caught.
    for i in range(n_positive):
        signed("pneumonia", 0.35 + 0.55 * i / max(n_positive - 1, 1))
    for i in range(n_negative):
        signed("no_pneumonia", 0.05 + 0.4 * i / max(n_negative - 1, 1))


# --- Refusal and override --------------------------------------------------------------------------------


def test_it_refuses_a_threshold_with_too_little_evidence_and_no_reason(demo_site, version, signed, admin_user):
    _readings(signed, 3, 4)

    with pytest.raises(SiteThresholdRefused) as refused:
        site_threshold_set(site=demo_site, version=version, threshold=0.3, reason="  ", user=admin_user)

    message = str(refused.value)
    assert "7 signed studies (at least 100 needed)" in message
    assert "3 positives (signed pneumonia) (at least 20 needed)" in message
    assert not SiteThreshold.objects.exists()
    assert threshold_in_force(site=demo_site, version=version) == (0.5, "model")


def test_it_accepts_the_same_threshold_with_a_reason_and_records_the_shortfall(demo_site, version, signed, admin_user):
    _readings(signed, 3, 4)

    row = site_threshold_set(
        site=demo_site, version=version, threshold=0.3, reason="Pilot agreed by the committee", user=admin_user
    )

    assert row.evidence_sufficient is False and row.reason == "Pilot agreed by the committee"
    report = row.evidence["report"]
    assert (report["n"], report["positives"], report["threshold"]) == (7, 3, 0.3)
    assert report["confusion_matrix"] == [[2, 2], [0, 3]]  # at 0.3: negatives 0.317 and 0.45 are flagged
    assert row.evidence["agreement"] == pytest.approx(5 / 7)
    assert row.evidence["agreement_ci"] == pytest.approx(wilson_interval(5, 7))
    assert threshold_in_force(site=demo_site, version=version) == (0.3, "site")
    event = AuditEvent.objects.get(action="site_threshold_set")
    assert event.user == admin_user and event.site == demo_site
    assert event.detail["sufficient"] is False and event.detail["n"] == 7


def test_it_needs_no_reason_once_the_evidence_reaches_the_minimums(demo_site, version, signed, admin_user, settings):
    settings.PNEUMO_SITE_THRESHOLD_MIN_STUDIES = 10
    settings.PNEUMO_SITE_THRESHOLD_MIN_POSITIVES = 4
    _readings(signed, 4, 6)

    row = site_threshold_set(site=demo_site, version=version, threshold=0.3, reason="", user=admin_user)

    assert row.evidence_sufficient is True
    assert row.evidence["report"]["sensitivity"] == 1.0


@pytest.mark.parametrize("threshold", [0.0, 1.0, -0.2, 1.5])
def test_it_refuses_a_threshold_that_is_not_a_probability(demo_site, version, admin_user, threshold):
    with pytest.raises(SiteThresholdRefused, match="between 0 and 1"):
        site_threshold_set(site=demo_site, version=version, threshold=threshold, reason="why", user=admin_user)


# --- Re-flagging ----------------------------------------------------------------------------------------


def test_it_re_flags_unsigned_studies_at_once_and_never_signed_ones(
    demo_site, north_site, version, signed, admin_user, make_study, make_image
):
    waiting = make_study(demo_site, status=StudyStatus.AWAITING_REVIEW)
    waiting_result = _result(make_image(waiting), version, 0.4)
    study_ai_refresh(study_id=waiting.pk)
    elsewhere = make_study(north_site, status=StudyStatus.AWAITING_REVIEW)
    _result(make_image(elsewhere), version, 0.4)
    study_ai_refresh(study_id=elsewhere.pk)
    read = signed("pneumonia", 0.4)
    waiting.refresh_from_db()
    assert waiting.ai_flagged is False

    site_threshold_set(site=demo_site, version=version, threshold=0.35, reason="Local pilot", user=admin_user)

    waiting.refresh_from_db()
    waiting_result.refresh_from_db()
    assert waiting.ai_flagged is True and waiting.ai_probability == pytest.approx(0.4)
    assert (waiting_result.threshold, waiting_result.threshold_source, waiting_result.label) == (
        0.35,
        "site",
        "pneumonia",
    )
    signed_result = Prediction.objects.get(image__study=read)
    assert (signed_result.threshold, signed_result.threshold_source, signed_result.label) == (0.5, "model", "normal")
    elsewhere.refresh_from_db()
    assert elsewhere.ai_flagged is False  # another site keeps the model's threshold
    assert AuditEvent.objects.get(action="site_threshold_set").detail["reflagged_studies"] == 1


def test_a_newly_activated_version_uses_its_own_threshold_until_a_site_threshold_backs_it(
    demo_site, version, make_model_version, admin_user
):
    site_threshold_set(site=demo_site, version=version, threshold=0.3, reason="Pilot", user=admin_user)
    version.is_active = False
    version.save()
    newer = make_model_version(name="thr-model-2", threshold=0.62, is_active=True)

    assert threshold_in_force(site=demo_site, version=newer) == (0.62, "model")
    assert threshold_in_force(site=demo_site, version=version) == (0.3, "site")


def test_the_newest_threshold_is_in_force_and_gives_the_drift_reference(demo_site, version, signed, admin_user):
    _readings(signed, 3, 4)
    site_threshold_set(site=demo_site, version=version, threshold=0.3, reason="First", user=admin_user)
    newest = site_threshold_set(site=demo_site, version=version, threshold=0.4, reason="Second", user=admin_user)

    assert threshold_in_force(site=demo_site, version=version) == (0.4, "site")
    assert validation_report(site=demo_site, model_version=version)["threshold"] == 0.4  # the report states it
    low = newest.evidence["agreement_ci"][0]
    assert site_threshold_references() == {(demo_site.pk, version.pk): pytest.approx(low)}


# --- The API and the report page ----------------------------------------------------------------------


def test_the_api_answers_400_naming_the_shortfall_and_201_with_a_reason(demo_site, version, signed, admin_user, api):
    _readings(signed, 2, 2)
    url = reverse("api:site-threshold-list")
    body = {"site": "DEMO", "model": version.name, "threshold": 0.3}

    refused = api(admin_user).post(url, body, format="json")
    assert refused.status_code == 400
    assert "4 signed studies (at least 100 needed)" in refused.json()["threshold"][0]

    created = api(admin_user).post(url, {**body, "reason": "Committee decision 2026-11"}, format="json")
    assert created.status_code == 201, created.json()
    data = created.json()
    assert data["site"] == "DEMO" and data["model"] == version.name and data["threshold"] == 0.3
    assert data["evidence_sufficient"] is False and data["in_force"] is True
    assert data["evidence"]["report"]["n"] == 4

    listed = api(admin_user).get(url, {"site": "DEMO"}).json()
    assert [row["threshold"] for row in listed["results"]] == [0.3]


def test_the_api_refuses_others_before_reading_and_404s_unknown_names(version, rad, admin_user, api):
    url = reverse("api:site-threshold-list")
    assert api(rad).post(url, {"site": "NOPE"}, format="json").status_code == 403
    body = {"site": "DEMO", "model": "no-such-model", "threshold": 0.3, "reason": "x"}
    assert api(admin_user).post(url, body, format="json").status_code == 404
    assert api(admin_user).post(url, {**body, "site": "NOPE", "model": version.name}, format="json").status_code == 404
    wrong_type = {**body, "model": version.name, "threshold": "0.3"}
    assert api(admin_user).post(url, wrong_type, format="json").status_code == 400


def test_the_report_page_sets_the_threshold_and_shows_it(client, demo_site, version, signed, admin_user, rad):
    _readings(signed, 2, 2)
    url = reverse("validation_threshold_set")
    form = {"site": "DEMO", "model": version.name, "threshold": "0.3"}

    client.force_login(rad)
    assert client.post(url, {**form, "reason": "x"}).status_code == 403

    client.force_login(admin_user)
    refused = client.post(url, form, follow=True)
    assert "Too little local evidence" in refused.content.decode()
    assert not SiteThreshold.objects.exists()

    accepted = client.post(url, {**form, "reason": "Pilot"}, follow=True)
    page = accepted.content.decode()
    assert accepted.status_code == 200
    assert "DEMO now flags thr-model" in page and 'data-metric="site_threshold">0.300<' in page
    assert SiteThreshold.objects.get().created_by == admin_user


def test_the_worker_judges_a_new_result_at_the_site_threshold_and_records_its_source(
    active_model, demo_site, north_site, tech, admin_user
):
    from cases.ingest import IncomingFile, studies_ingest
    from inference.services import prediction_run
    from tests.dicom_factory import make_dicom

    site_threshold_set(site=demo_site, version=active_model, threshold=0.0001, reason="Pilot", user=admin_user)

    def run(site) -> Prediction:
        studies_ingest(files=[IncomingFile("chest.dcm", make_dicom(8))], site=site, user=admin_user)
        prediction = Prediction.objects.latest("pk")
        assert prediction_run(prediction_id=prediction.pk).ran
        prediction.refresh_from_db()
        return prediction

    here, there = run(demo_site), run(north_site)

    assert (here.threshold, here.threshold_source) == (0.0001, "site")
    assert here.label == "pneumonia"  # any probability of an in-domain film reaches 0.0001
    assert (there.threshold, there.threshold_source) == (active_model.threshold, "model")
