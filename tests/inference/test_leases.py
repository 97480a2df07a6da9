"""The prediction task's lease, run in this process: who may take a prediction, and when it ends.

The task runs eagerly (``apply``), the way a worker runs a message, with the
real model; the slow tests in ``test_worker.py`` cover the same with a worker
process that is killed.
"""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from cases.ingest import IncomingFile, studies_ingest
from cases.models import Study
from inference.models import Prediction
from inference.services import prediction_claim
from inference.tasks import prediction_run_task
from pneumo.celery import acks_late_task
from tests.dicom_factory import make_dicom


@pytest.fixture
def pending(active_model, demo_site, tech) -> Prediction:
    """A stored upload's prediction, pending; its message is never published (no commit in this test)."""
    studies_ingest(files=[IncomingFile("chest.dcm", make_dicom(8))], site=demo_site, user=tech)
    return Prediction.objects.get()


def _run(prediction: Prediction, task_id: str = "message-2") -> str:
    return prediction_run_task.apply(kwargs={"prediction_id": prediction.pk}, task_id=task_id).get()


def _lease_expired(prediction: Prediction, attempts: int) -> None:
    Prediction.objects.filter(pk=prediction.pk).update(
        status="running", attempts=attempts, lease_owner="message-1", lease_until=timezone.now() - timedelta(seconds=1)
    )


def test_it_runs_a_message_that_names_its_prediction(pending) -> None:
    assert prediction_run_task.apply(kwargs={"prediction_id": pending.pk}).get() == "succeeded"
    pending.refresh_from_db()
    assert pending.status == "succeeded" and pending.attempts == 1 and pending.probability is not None


def test_it_still_runs_a_message_of_the_previous_release_that_passes_the_id_by_position(pending) -> None:
    assert prediction_run_task.apply(args=[pending.pk]).get() == "succeeded"
    pending.refresh_from_db()
    assert pending.status == "succeeded" and pending.attempts == 1


def test_it_refuses_to_queue_a_positional_id() -> None:
    with pytest.raises(TypeError):
        prediction_run_task.delay(7)


def test_it_refuses_to_declare_a_task_with_a_positional_parameter() -> None:
    with pytest.raises(TypeError, match="keyword-only"):
        acks_late_task(name="tests.positional")(lambda prediction_id: None)


def test_it_declares_every_task_acks_late_with_the_settings_time_limits(settings) -> None:
    from pneumo.celery import app

    app.loader.import_default_modules()  # what a worker imports: every app's tasks
    ours = [task for name, task in app.tasks.items() if name.split(".")[0] in {"cases", "inference"}]
    assert {"inference.tasks.prediction_run", "inference.tasks.predictions_sweep", "cases.tasks.claims_expire"} <= {
        task.name for task in ours
    }
    for task in ours:
        assert task.acks_late and task.reject_on_worker_lost, task.name
        assert task.soft_time_limit == settings.PNEUMO_TASK_SOFT_TIME_LIMIT, task.name
        assert task.time_limit == settings.PNEUMO_TASK_TIME_LIMIT, task.name


def test_it_does_nothing_with_a_second_message_while_the_lease_is_live(pending) -> None:
    assert prediction_claim(prediction_id=pending.pk, task_id="message-1") is not None
    assert _run(pending, task_id="message-2") == "running"
    pending.refresh_from_db()
    assert pending.status == "running" and pending.attempts == 1 and pending.lease_owner == "message-1"
    assert pending.probability is None


def test_it_takes_over_a_prediction_whose_lease_expired(pending) -> None:
    _lease_expired(pending, attempts=1)
    assert _run(pending, task_id="message-2") == "succeeded"
    pending.refresh_from_db()
    assert pending.status == "succeeded" and pending.attempts == 2 and pending.lease_until is None


def test_it_fails_a_prediction_at_the_attempt_cap_and_the_study_awaits_review_with_the_reason(
    pending, settings
) -> None:
    _lease_expired(pending, attempts=settings.PNEUMO_TASK_MAX_ATTEMPTS)
    assert _run(pending) == "failed"
    pending.refresh_from_db()
    assert pending.status == "failed" and pending.attempts == settings.PNEUMO_TASK_MAX_ATTEMPTS
    assert "repeatedly" in pending.error and pending.probability is None
    study = Study.objects.get()
    assert study.status == "awaiting_review" and "the AI failed" in study.status_reason
