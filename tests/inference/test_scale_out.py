"""Two workers with different host names share the broker and the database."""

from __future__ import annotations

import pytest

from cases.ingest import IncomingFile, studies_ingest
from inference.models import Prediction
from tests.dicom_factory import make_dicom
from tests.inference.test_worker import wait_for
from tests.processes import WorkerProcess, worker_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
STUDIES = 100


def test_it_spreads_100_studies_over_two_workers_with_one_prediction_each(active_model, demo_site, tech) -> None:
    workers = [WorkerProcess(hostname=f"scale{i}@host{i}", env=worker_env()).start() for i in (1, 2)]
    try:
        for worker in workers:
            worker.wait_ready()
        for i in range(STUDIES):
            data = make_dicom(i % 16, shape=(64, 64), study_uid=f"1.2.826.0.1.99.{i}", sop_uid=f"1.2.826.0.1.98.{i}")
            studies_ingest(files=[IncomingFile(f"{i}.dcm", data)], site=demo_site, user=tech)
        wait_for(
            lambda: Prediction.objects.filter(status="succeeded").count() == STUDIES,
            timeout=240,
            what="every study's prediction",
        )
    finally:
        for worker in workers:
            worker.stop()
    assert Prediction.objects.count() == STUDIES
    assert set(Prediction.objects.values_list("attempts", flat=True)) == {1}
    hosts = {host.split("@")[0] for host in Prediction.objects.values_list("worker_host", flat=True)}
    assert hosts == {"scale1", "scale2"}
