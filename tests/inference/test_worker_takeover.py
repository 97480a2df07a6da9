"""A restarted worker takes back at once what its dead predecessor of the same name was running."""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from inference.models import Prediction
from inference.services import predictions_reclaim
from tests.dicom_factory import make_dicom
from tests.inference.test_worker import finished, upload, wait_for
from tests.processes import WorkerProcess, worker_env

HOST = "worker1@pneumo-takeover"


@pytest.fixture
def running(make_study, make_image, make_model_version, demo_site):
    """Predictions left RUNNING with a live lease (as a killed worker leaves them)."""
    version = make_model_version()
    lease = timezone.now() + timedelta(seconds=120)

    def make(host: str, started_seconds_ago: float) -> Prediction:
        image = make_image(make_study(demo_site))
        return Prediction.objects.create(
            image=image,
            model_version=version,
            preprocessing_version=version.preprocessing_version,
            status="running",
            attempts=1,
            lease_until=lease,
            lease_owner="task-of-the-dead-worker",
            worker_host=host,
            started_at=timezone.now() - timedelta(seconds=started_seconds_ago),
        )

    return make


@pytest.mark.django_db
def test_it_requeues_only_what_an_earlier_process_of_the_same_worker_left_running(running) -> None:
    mine = running(HOST, started_seconds_ago=30)
    another_workers = running("worker2@pneumo-takeover", started_seconds_ago=30)
    since_restart = running(HOST, started_seconds_ago=0)  # claimed by the new process itself

    assert predictions_reclaim(hostname=HOST, started_before=timezone.now() - timedelta(seconds=10)) == 1

    mine.refresh_from_db()
    assert mine.status == "pending" and mine.lease_until is None and mine.lease_owner == ""
    assert mine.queued_at is not None and mine.attempts == 1  # published again; the attempt still counts
    for untouched in (another_workers, since_restart):
        untouched.refresh_from_db()
        assert untouched.status == "running" and untouched.lease_owner == "task-of-the-dead-worker"


@pytest.mark.django_db
def test_it_fails_a_taken_back_prediction_that_reached_the_attempt_cap(running, settings) -> None:
    poison = running(HOST, started_seconds_ago=30)
    Prediction.objects.filter(pk=poison.pk).update(attempts=settings.PNEUMO_TASK_MAX_ATTEMPTS)

    assert predictions_reclaim(hostname=HOST, started_before=timezone.now()) == 0

    poison.refresh_from_db()
    assert poison.status == "failed" and poison.error


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_it_finishes_a_prediction_at_once_when_its_killed_worker_restarts_under_its_name(
    active_model, demo_site, tech, tmp_path
) -> None:
    # Given a worker killed (its whole process group) while it ran a prediction, lease 120 s
    flag = tmp_path / "slow"
    env = worker_env(PNEUMO_TEST_SLOW_FLAG=str(flag), PNEUMO_TEST_SLOW_SECONDS="60")
    worker = WorkerProcess(hostname=HOST, env=env, app="tests.fault_app").start().wait_ready()
    try:
        flag.write_text("slow")
        study = upload(demo_site, tech, make_dicom(14))
        wait_for(Path(str(flag) + ".started").exists, what="the task to start")
    finally:
        worker.kill()
    flag.unlink()
    assert Prediction.objects.get().status == "running"

    # When the same worker starts again
    restarted = WorkerProcess(hostname=HOST, env=env, app="tests.fault_app").start()
    started = time.monotonic()
    try:
        restarted.wait_ready()
        # Then it takes the prediction back within seconds, not once the 120 s lease and a sweep are over
        wait_for(lambda: finished(study), timeout=30, what="the prediction on the restarted worker")
    finally:
        restarted.stop()
    assert time.monotonic() - started < 60
    prediction = Prediction.objects.get()
    assert prediction.status == "succeeded" and prediction.attempts == 2 and prediction.worker_host == HOST
    assert "takes back 1 predictions" in restarted.log()
