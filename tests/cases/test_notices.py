"""Notices to a site's alert webhook: a JSON POST without patient data when the AI flags a stat or urgent study."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from cases.models import AuditEvent, Site, Study
from cases.notices import site_notice_queue, site_notice_send_task
from inference.models import ModelVersion, Prediction, PredictionStatus
from inference.services import study_ai_refresh

pytestmark = pytest.mark.django_db


@dataclass
class Receiver:
    """A real HTTP server on 127.0.0.1 that answers the scripted statuses in turn, then 200."""

    url: str
    script: list[int] = field(default_factory=list)
    received: list[dict] = field(default_factory=list)

    def bodies(self) -> list[dict]:
        return [json.loads(r["body"]) for r in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    box: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            got = box[0]
            got.received.append({"path": self.path, "content_type": self.headers["Content-Type"], "body": body})
            self.send_response(got.script.pop(0) if got.script else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    box.append(Receiver(url=f"http://127.0.0.1:{server.server_port}/hooks/pneumo"))
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield box[0]
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def eager_tasks() -> Iterator[None]:
    """Tasks run in this process when queued, their retries at once (countdowns are skipped)."""
    from pneumo.celery import app

    # Not propagating: an eager retry travels as an exception that apply() turns into the next attempt.
    saved = app.conf.task_always_eager
    app.conf.task_always_eager = True
    try:
        yield
    finally:
        app.conf.task_always_eager = saved


@pytest.fixture
def version(db) -> ModelVersion:
    return ModelVersion.objects.create(
        name="notice-test",
        version="1",
        source_path="m.keras",
        sha256="a" * 64,
        preprocessing_version="p",
        is_active=True,
    )


@pytest.fixture
def alerting_site(demo_site, receiver: Receiver) -> Site:
    demo_site.alert_webhook_url = receiver.url
    demo_site.save()
    return demo_site


@pytest.fixture
def ai_result(version, make_patient, make_study, make_image):
    """A study at ``site`` whose prediction just succeeded with ``probability``, before the study follows it."""

    def make(site: Site, *, priority: str, probability: float) -> Study:
        patient = make_patient(site, patient_id="MRN-4471", name="Doe^Jane", birth_date="2021-03-04")
        study = make_study(
            site, patient, priority=priority, status="analyzing", accession_number="ACC-99", study_instance_uid="1.2.3"
        )
        Prediction.objects.create(
            image=make_image(study),
            model_version=version,
            preprocessing_version="p",
            status=PredictionStatus.SUCCEEDED,
            probability=probability,
        )
        return study

    return make


def test_it_posts_a_notice_when_the_ai_flags_a_stat_study(
    alerting_site, receiver, ai_result, eager_tasks, django_capture_on_commit_callbacks
) -> None:
    study = ai_result(alerting_site, priority="stat", probability=0.93)

    with django_capture_on_commit_callbacks(execute=True):
        study_ai_refresh(study_id=study.pk)

    (notice,) = receiver.bodies()
    assert receiver.received[0]["path"] == "/hooks/pneumo"
    assert receiver.received[0]["content_type"] == "application/json"
    assert notice["event"] == "study_flagged" and notice["site"] == "DEMO"
    assert (notice["study_id"], notice["priority"], notice["link"]) == (study.pk, "stat", f"/studies/{study.pk}/")
    assert notice["occurred_at"].startswith(str(study.received_at.year))


def test_it_retries_a_notice_the_receiver_failed_with_500(
    alerting_site, receiver, ai_result, eager_tasks, django_capture_on_commit_callbacks
) -> None:
    receiver.script = [500, 503]
    study = ai_result(alerting_site, priority="urgent", probability=0.8)

    with django_capture_on_commit_callbacks(execute=True):
        study_ai_refresh(study_id=study.pk)

    bodies = receiver.bodies()
    assert len(bodies) == 3 and bodies[0] == bodies[1] == bodies[2]
    sent = AuditEvent.objects.get(action="site_notice")
    assert sent.site == alerting_site and sent.detail == {
        "event": "study_flagged",
        "outcome": "sent",
        "http_status": 200,
    }


def test_it_puts_no_patient_data_in_a_notice(
    alerting_site, receiver, ai_result, eager_tasks, django_capture_on_commit_callbacks
) -> None:
    study = ai_result(alerting_site, priority="stat", probability=0.99)

    with django_capture_on_commit_callbacks(execute=True):
        study_ai_refresh(study_id=study.pk)

    raw = receiver.received[0]["body"].decode()
    for phi in ("MRN-4471", "Doe", "Jane", "2021-03-04", "2021", "ACC-99", "1.2.3"):
        assert phi not in raw
    assert set(json.loads(raw)) == {"event", "site", "occurred_at", "study_id", "priority", "link"}


@pytest.mark.parametrize(("priority", "probability"), [("routine", 0.97), ("stat", 0.2)])
def test_it_sends_nothing_for_a_routine_or_unflagged_study(
    alerting_site, receiver, ai_result, eager_tasks, django_capture_on_commit_callbacks, priority, probability
) -> None:
    study = ai_result(alerting_site, priority=priority, probability=probability)

    with django_capture_on_commit_callbacks(execute=True):
        study_ai_refresh(study_id=study.pk)

    assert receiver.received == []


@pytest.mark.parametrize(
    ("domain", "reason"),
    [
        ("outside_domain", ""),
        ("in_domain", "Patient is 58 years old, outside the validated ages of 1 to 5 years"),
        ("not_chest_xray", ""),
    ],
)
def test_it_sends_nothing_for_a_stat_study_whose_result_is_muted(
    alerting_site, receiver, ai_result, eager_tasks, django_capture_on_commit_callbacks, domain, reason
) -> None:
    study = ai_result(alerting_site, priority="stat", probability=0.99)
    Prediction.objects.filter(image__study=study).update(
        domain=domain, outside_validated_use=bool(reason), outside_validated_use_reason=reason
    )

    with django_capture_on_commit_callbacks(execute=True):
        study = study_ai_refresh(study_id=study.pk)

    assert study.ai_flagged is False and receiver.received == []


def test_it_sends_one_notice_for_a_study_that_stays_flagged(
    alerting_site, receiver, ai_result, eager_tasks, django_capture_on_commit_callbacks
) -> None:
    study = ai_result(alerting_site, priority="stat", probability=0.9)

    with django_capture_on_commit_callbacks(execute=True):
        study_ai_refresh(study_id=study.pk)
        study_ai_refresh(study_id=study.pk)

    assert len(receiver.received) == 1


def test_it_queues_nothing_for_a_site_without_a_webhook(demo_site, django_capture_on_commit_callbacks) -> None:
    with django_capture_on_commit_callbacks() as callbacks:
        queued = site_notice_queue(site=demo_site, event="model_drift", payload={"model_version_id": 3})

    assert queued is False and callbacks == []


def test_it_refuses_a_payload_that_names_patient_data(alerting_site) -> None:
    for payload in ({"patient_id": "MRN-1"}, {"patient_name": "Doe^Jane"}, {"birth_date": "2021"}, {"study": {}}):
        with pytest.raises(ValueError, match="ids and codes only"):
            site_notice_queue(site=alerting_site, event="study_flagged", payload=payload)


def test_it_gives_up_on_a_receiver_that_refuses_the_notice(alerting_site, receiver) -> None:
    receiver.script = [404]

    result = site_notice_send_task.apply(kwargs={"site_id": alerting_site.pk, "event": "model_drift", "payload": {}})

    assert result.get() == "given_up" and len(receiver.received) == 1
    gave_up = AuditEvent.objects.get(action="site_notice")
    assert gave_up.detail == {"event": "model_drift", "outcome": "given_up", "why": "HTTP 404"}


def test_it_gives_up_after_the_last_retry(alerting_site, receiver) -> None:
    from cases.notices import MAX_RETRIES

    receiver.script = [500] * (MAX_RETRIES + 1)

    result = site_notice_send_task.apply(kwargs={"site_id": alerting_site.pk, "event": "model_drift", "payload": {}})

    assert result.get() == "given_up" and len(receiver.received) == MAX_RETRIES + 1


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_it_delivers_a_notice_from_a_real_worker_after_a_500(celery_worker, demo_site, tech, receiver) -> None:
    import time

    from cases.ingest import IncomingFile, studies_ingest
    from tests.dicom_factory import make_dicom

    demo_site.alert_webhook_url = receiver.url
    demo_site.save()
    receiver.script = [500]
    ModelVersion.objects.filter(is_active=True).update(threshold=0.0)  # whatever the image, the AI flags it

    report = studies_ingest(
        files=[IncomingFile("chest.dcm", make_dicom(8))], site=demo_site, user=tech, priority="stat"
    )

    deadline = time.monotonic() + 90
    while len(receiver.received) < 2 and time.monotonic() < deadline:
        time.sleep(0.2)
    bodies = receiver.bodies()
    assert len(bodies) == 2 and bodies[0] == bodies[1], celery_worker.log()[-3000:]
    assert (bodies[0]["event"], bodies[0]["study_id"], bodies[0]["priority"]) == (
        "study_flagged",
        report.study_ids[0],
        "stat",
    )


def test_it_does_not_follow_a_redirect_with_the_notice(alerting_site, receiver) -> None:
    receiver.script = [307]

    result = site_notice_send_task.apply(kwargs={"site_id": alerting_site.pk, "event": "model_drift", "payload": {}})

    assert result.get() == "given_up" and len(receiver.received) == 1
