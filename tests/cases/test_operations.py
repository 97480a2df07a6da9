"""The admins' operations console: the prediction queue, retry and cancel, pausing a site, timelines, sources."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from cases.models import AuditEvent, Image, OutboxItem, ResultDestination, ResultObject, Site, Study
from cases.operations import (
    prediction_cancel,
    site_ai_pause,
    site_ai_resume,
    sources_last_received,
    study_timeline,
)
from cases.reviews import ReadingInput, review_sign, study_claim
from cases.states import StudyStatus
from inference.models import Prediction, PredictionStatus
from inference.services import (
    prediction_claim,
    predictions_request,
    predictions_sweep,
    study_ai_refresh,
)

pytestmark = pytest.mark.django_db
P = PredictionStatus


@pytest.fixture
def version(make_model_version):
    return make_model_version(is_active=True)


@pytest.fixture
def make_requested(demo_site, make_study, make_image, version, django_capture_on_commit_callbacks):
    """A study of one eligible image whose prediction was requested; its publishing callback is not run."""

    def make(site: Site = demo_site) -> Study:
        study = make_study(site)
        make_image(study, patient_age_years=3.0, view_position="AP", body_part="CHEST")
        with django_capture_on_commit_callbacks(execute=False):
            predictions_request(study=study)
        return study

    return make


def _prediction(study: Study) -> Prediction:
    return Prediction.objects.get(image__study=study)


def _admin_client(admin_user) -> Client:
    client = Client()
    client.force_login(admin_user)
    return client


def test_it_shows_the_queue_to_admins_only(make_requested, admin_user, rad, tech) -> None:
    study = make_requested()
    failed = _prediction(study)
    Prediction.objects.filter(pk=failed.pk).update(status=P.FAILED, error="decoder exploded")

    page = _admin_client(admin_user).get(reverse("operations"))

    assert page.status_code == 200
    assert b"decoder exploded" in page.content and b"Retry" in page.content
    for user in (rad, tech):
        client = Client()
        client.force_login(user)
        assert client.get(reverse("operations")).status_code == 403
        refused = client.post(reverse("operations_prediction_retry"), {"prediction": failed.pk})
        assert refused.status_code == 403
    assert Prediction.objects.get(pk=failed.pk).status == P.FAILED


def test_it_retries_a_failed_prediction(make_requested, admin_user, django_capture_on_commit_callbacks) -> None:
    study = make_requested()
    prediction = _prediction(study)
    Prediction.objects.filter(pk=prediction.pk).update(status=P.FAILED, attempts=3, error="boom", queued_at=None)
    study_ai_refresh(study_id=study.pk)

    with django_capture_on_commit_callbacks(execute=False) as callbacks:
        answer = _admin_client(admin_user).post(reverse("operations_prediction_retry"), {"prediction": prediction.pk})

    assert answer.status_code == 302
    prediction.refresh_from_db()
    assert (prediction.status, prediction.attempts, prediction.error) == (P.PENDING, 0, "")
    assert len(callbacks) == 1  # queued once committed
    assert Study.objects.get(pk=study.pk).status == StudyStatus.QUEUED
    event = AuditEvent.objects.get(action="prediction_retry")
    assert (event.username, event.object_id) == (admin_user.username, str(prediction.pk))


def test_it_refuses_to_retry_what_did_not_fail(make_requested, admin_user) -> None:
    prediction = _prediction(make_requested())

    answer = _admin_client(admin_user).post(reverse("operations_prediction_retry"), {"prediction": prediction.pk})

    assert answer.status_code == 409
    assert not AuditEvent.objects.filter(action="prediction_retry").exists()


def test_a_cancelled_prediction_sends_its_study_to_the_readers(make_requested, admin_user) -> None:
    study = make_requested()
    prediction = _prediction(study)
    assert Study.objects.get(pk=study.pk).status == StudyStatus.QUEUED

    answer = _admin_client(admin_user).post(reverse("operations_prediction_cancel"), {"prediction": prediction.pk})

    assert answer.status_code == 302
    prediction.refresh_from_db()
    assert prediction.status == P.CANCELLED
    study.refresh_from_db()
    assert study.status == StudyStatus.AWAITING_REVIEW
    assert "AI cancelled by an admin" in study.status_reason
    assert AuditEvent.objects.filter(action="prediction_cancel", object_id=str(prediction.pk)).count() == 1
    # The worker never takes it, and the sweeper does not send it again.
    assert prediction_claim(prediction_id=prediction.pk, task_id="t-1") is None
    assert Prediction.objects.get(pk=prediction.pk).status == P.CANCELLED


def test_a_running_prediction_cancelled_keeps_no_result(make_requested, admin_user) -> None:
    study = make_requested()
    prediction = prediction_claim(prediction_id=_prediction(study).pk, task_id="t-1")
    assert prediction is not None and prediction.status == P.RUNNING

    prediction_cancel(prediction_id=prediction.pk, user=admin_user)

    # Its worker's next claim (its own retry) finds nothing to take.
    assert prediction_claim(prediction_id=prediction.pk, task_id="t-1") is None
    assert Study.objects.get(pk=study.pk).status == StudyStatus.AWAITING_REVIEW


def test_a_paused_site_queues_nothing_and_its_readers_still_sign(
    demo_site, make_requested, admin_user, rad, django_capture_on_commit_callbacks
) -> None:
    site_ai_pause(site=demo_site, user=admin_user)

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        study = make_requested()
    # Old enough that the sweeper would publish it at a running site.
    Prediction.objects.filter(image__study=study).update(created_at=timezone.now() - timedelta(minutes=10))
    swept = predictions_sweep()

    assert callbacks == [] and swept == 0  # nothing published, by the request nor by the sweeper
    prediction = _prediction(study)
    assert (prediction.status, prediction.queued_at) == (P.PENDING, None)
    study.refresh_from_db()
    assert study.status == StudyStatus.AWAITING_REVIEW
    assert "AI paused at this site" in study.status_reason
    # Reading goes on.
    study_claim(study_id=study.pk, user=rad)
    review = review_sign(study_id=study.pk, user=rad, reading=ReadingInput("no_pneumonia"))
    assert review.study.status == StudyStatus.REPORTED
    assert AuditEvent.objects.filter(action="site_ai_pause", username=admin_user.username).count() == 1


def test_the_worklist_says_the_ai_is_paused(demo_site, make_requested, admin_user, rad) -> None:
    site_ai_pause(site=demo_site, user=admin_user)
    make_requested()
    client = Client()
    client.force_login(rad)

    page = client.get(reverse("worklist"))

    assert page.status_code == 200
    assert b"AI paused at this site" in page.content


def test_resume_queues_what_waited_oldest_first(
    demo_site, make_requested, admin_user, django_capture_on_commit_callbacks
) -> None:
    site_ai_pause(site=demo_site, user=admin_user)
    studies = [make_requested() for _ in range(3)]
    waited = [_prediction(s) for s in studies]
    # The oldest is made last in pk order: resume goes by age, not by id.
    Prediction.objects.filter(pk=waited[2].pk).update(created_at=timezone.now() - timedelta(hours=1))

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        queued = site_ai_resume(site=demo_site, user=admin_user)

    assert queued == [waited[2].pk, waited[0].pk, waited[1].pk]
    assert len(callbacks) == 1  # one publishing pass, on commit, over the real broker
    stamps = {p.pk: p.queued_at for p in Prediction.objects.filter(pk__in=queued)}
    assert all(stamps.values())
    assert stamps[waited[2].pk] <= stamps[waited[0].pk] <= stamps[waited[1].pk]
    assert {Study.objects.get(pk=s.pk).status for s in studies} == {StudyStatus.QUEUED}
    assert not Site.objects.get(pk=demo_site.pk).ai_paused
    assert AuditEvent.objects.get(action="site_ai_resume").detail["queued"] == 3


def test_the_pause_buttons_are_audited(demo_site, admin_user) -> None:
    client = _admin_client(admin_user)

    assert client.post(reverse("operations_site_pause"), {"site": demo_site.pk}).status_code == 302
    assert Site.objects.get(pk=demo_site.pk).ai_paused
    assert b"Resume AI" in client.get(reverse("operations")).content
    assert client.post(reverse("operations_site_resume"), {"site": demo_site.pk}).status_code == 302
    assert not Site.objects.get(pk=demo_site.pk).ai_paused
    sites = AuditEvent.objects.filter(action__startswith="site_ai_").order_by("pk")
    assert [(e.action, e.username) for e in sites] == [("site_ai_pause", "admin"), ("site_ai_resume", "admin")]


def test_the_timeline_lists_each_step(make_requested, admin_user, rad) -> None:
    study = make_requested()
    prediction = _prediction(study)
    now = timezone.now()
    Prediction.objects.filter(pk=prediction.pk).update(
        queued_at=now, status=P.SUCCEEDED, finished_at=now, probability=0.2
    )
    study_ai_refresh(study_id=study.pk)
    study_claim(study_id=study.pk, user=rad)
    review_sign(study_id=study.pk, user=rad, reading=ReadingInput("no_pneumonia"))
    destination = ResultDestination.objects.create(ae_title="PACS", host="127.0.0.1", port=104)
    OutboxItem.objects.create(
        destination=destination, kind=ResultObject.AI_SR, site=study.site, study=study,
        sop_instance_uid="1.2.826.0.1.3680043.11.77", file="outbox/x.dcm",
        next_attempt_at=now, retry_from=now, sent_at=timezone.now(),
    )  # fmt: skip

    steps = [s.step for s in study_timeline(study=study)]
    page = _admin_client(admin_user).get(reverse("operations_study_timeline", args=[study.pk]))

    assert steps == ["received", "queued", "predicted", "claimed", "signed", "sent"]
    assert page.status_code == 200
    for step in steps:
        assert f'data-step="{step}"'.encode() in page.content


def _sent(site: Site, make_study, make_image, *, at, ae: str = "", user=None) -> Image:
    image = make_image(make_study(site), source_ae_title=ae, uploaded_by=user)
    Image.objects.filter(pk=image.pk).update(created_at=at)
    return image


def test_a_daily_source_that_goes_silent_raises_the_alarm(demo_site, make_study, make_image, tech, settings) -> None:
    settings.PNEUMO_SOURCE_SILENCE_HOURS = 24
    now = timezone.now()
    for days_ago in (1.5, 2.5, 3.5):  # each of the 3 days before the last 24 hours
        _sent(demo_site, make_study, make_image, at=now - timedelta(days=days_ago), ae="XRAY1")
    _sent(demo_site, make_study, make_image, at=now - timedelta(days=2.5), ae="RARE")  # one day only
    for days_ago in (0.1, 1.5, 2.5, 3.5):  # daily, and today too
        _sent(demo_site, make_study, make_image, at=now - timedelta(days=days_ago), user=tech)

    sources = {s.name: s for s in sources_last_received(now=now)}

    assert sources["XRAY1"].silent and sources["XRAY1"].via == "DICOM"
    assert not sources["RARE"].silent
    assert not sources[tech.username].silent and sources[tech.username].via == "upload"
    assert (
        sources[tech.username].last_received == Image.objects.filter(uploaded_by=tech).latest("created_at").created_at
    )
    # A 48-hour window: XRAY1 sent within it (36 hours ago), so it is not silent.
    settings.PNEUMO_SOURCE_SILENCE_HOURS = 48
    assert not {s.name: s for s in sources_last_received(now=now)}["XRAY1"].silent


def test_the_reading_page_says_why_an_image_has_no_result(demo_site, make_requested, admin_user, rad) -> None:
    paused = make_requested()
    cancelled = make_requested()
    prediction_cancel(prediction_id=_prediction(cancelled).pk, user=admin_user)
    site_ai_pause(site=demo_site, user=admin_user)
    client = Client()
    client.force_login(rad)

    assert b"cancelled by an admin" in client.get(reverse("study_detail", args=[cancelled.pk])).content
    assert b"AI paused at this site" in client.get(reverse("study_detail", args=[paused.pk])).content


def test_the_console_shows_a_silent_source(demo_site, make_study, make_image, admin_user) -> None:
    now = timezone.now()
    for days_ago in (1.5, 2.5, 3.5):
        _sent(demo_site, make_study, make_image, at=now - timedelta(days=days_ago), ae="XRAY1")

    page = _admin_client(admin_user).get(reverse("operations"))

    assert b"XRAY1" in page.content and b"Silent" in page.content
