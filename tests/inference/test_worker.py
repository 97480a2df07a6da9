"""The queue with a real Redis and a real Celery worker process, started by the tests."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from django.core.files.storage import default_storage
from django.db import transaction

from cases.ingest import IncomingFile, studies_ingest
from cases.models import Image, Study
from inference.models import Prediction
from inference.services import predictions_enqueue, predictions_sweep
from tests.dicom_factory import make_dicom
from tests.processes import WorkerProcess, worker_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def wait_for(condition: Callable[[], bool], timeout: float = 60, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def upload(site, user, *datas: bytes) -> Study:
    report = studies_ingest(files=[IncomingFile(f"f{i}.dcm", d) for i, d in enumerate(datas)], site=site, user=user)
    assert report.study_ids, report.files
    return Study.objects.get(pk=report.study_ids[0])


def finished(study: Study) -> bool:
    study.refresh_from_db()
    return study.status == "awaiting_review"


def test_it_predicts_an_uploaded_study_without_any_manual_step(celery_worker, demo_site, tech) -> None:
    study = upload(demo_site, tech, make_dicom(8))
    wait_for(lambda: finished(study), what="the study to await review")
    prediction = Prediction.objects.get()
    assert prediction.status == "succeeded" and prediction.attempts == 1
    assert 0.0 <= prediction.probability <= 1.0 and prediction.label in {"pneumonia", "normal"}
    cells = {150: 5, 224: 7}[prediction.model_version.input_size]  # Xception's feature map
    assert len(prediction.heatmap) == cells and all(len(row) == cells for row in prediction.heatmap)
    assert all(0.0 <= v <= 1.0 for row in prediction.heatmap for v in row)
    assert prediction.inference_ms > 0 and prediction.worker_host.startswith("test-")
    assert prediction.model_version.is_active and prediction.input_sha256
    assert study.ai_probability == pytest.approx(prediction.probability)


def test_it_writes_nothing_new_on_a_duplicate_delivery(celery_worker, demo_site, tech) -> None:
    study = upload(demo_site, tech, make_dicom(9))
    wait_for(lambda: finished(study), what="the first result")
    before = Prediction.objects.values().get()
    predictions_enqueue(prediction_ids=[before["id"]])
    predictions_enqueue(prediction_ids=[before["id"]])
    time.sleep(2)
    after = Prediction.objects.values().get()
    assert after["attempts"] == before["attempts"] == 1
    assert after["finished_at"] == before["finished_at"] and after["probability"] == before["probability"]


def test_it_fails_a_poison_input_after_the_attempt_cap_and_keeps_the_study_readable(
    celery_worker, demo_site, tech, settings
) -> None:
    with transaction.atomic():  # the messages go out on commit, after the file broke
        study = upload(demo_site, tech, make_dicom(10, study_uid="1.2.3.777"), make_dicom(11, study_uid="1.2.3.777"))
        poisoned = study.images.first()
        with default_storage.open(poisoned.file.name, "wb") as handle:
            handle.write(b"DICM" + b"\x00" * 40)
        Image.objects.filter(pk=poisoned.pk).update(model_input=b"\x89PNG broken")
    wait_for(lambda: finished(study), timeout=90, what="the poison input to fail")
    prediction = Prediction.objects.get(image=poisoned)
    assert prediction.status == "failed" and prediction.attempts == settings.PNEUMO_TASK_MAX_ATTEMPTS
    assert prediction.error
    assert study.status == "awaiting_review" and study.images.count() == 2
    healthy = Prediction.objects.exclude(image=poisoned).get()
    assert healthy.status == "succeeded"  # the queue kept flowing


@pytest.fixture
def slow_worker(transactional_db, active_model, tmp_path):
    flag = tmp_path / "slow"
    env = worker_env(PNEUMO_TEST_SLOW_FLAG=str(flag), PNEUMO_TEST_SLOW_SECONDS="30", PNEUMO_TASK_LEASE_SECONDS="4")
    worker = WorkerProcess(hostname="killable@%h", env=env, app="tests.fault_app").start()
    worker.wait_ready()
    yield worker, flag
    worker.stop()


def test_it_finishes_a_prediction_whose_worker_child_was_killed(slow_worker, demo_site, tech) -> None:
    worker, flag = slow_worker
    flag.write_text("slow")
    study = upload(demo_site, tech, make_dicom(12))
    started = Path(str(flag) + ".started")
    wait_for(started.exists, what="the task to start")
    child = int(started.read_text())
    flag.unlink()
    worker_log_before = len(worker.log())
    os.kill(child, signal.SIGKILL)
    wait_for(lambda: finished(study), what="the prediction after the kill")
    prediction = Prediction.objects.get()
    assert prediction.status == "succeeded" and prediction.attempts == 2
    assert "WorkerLostError" in worker.log()[worker_log_before:]


def test_it_finishes_a_prediction_whose_whole_worker_died_once_the_sweeper_runs(
    slow_worker, demo_site, tech, active_model
) -> None:
    worker, flag = slow_worker
    flag.write_text("slow")
    study = upload(demo_site, tech, make_dicom(13))
    wait_for(Path(str(flag) + ".started").exists, what="the task to start")
    worker.kill(signal.SIGKILL)
    flag.unlink()
    replacement = WorkerProcess(hostname="replacement@%h", env=worker.env).start().wait_ready()
    try:
        wait_for(
            lambda: Prediction.objects.get().lease_until is None or predictions_sweep() > 0,
            timeout=30,
            what="the lease to expire and the sweeper to re-queue",
        )
        wait_for(lambda: finished(study), what="the prediction on the replacement worker")
    finally:
        replacement.stop()
    prediction = Prediction.objects.get()
    assert prediction.status == "succeeded" and prediction.attempts == 2
    assert prediction.worker_host.startswith("replacement")
