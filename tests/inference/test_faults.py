"""Faults with the tests' own Redis and a real worker: nothing lost, nothing duplicated."""

from __future__ import annotations

import time

import pytest

from cases.ingest import IncomingFile, studies_ingest
from cases.models import Image, Study
from inference.models import Prediction
from inference.services import predictions_sweep
from tests.dicom_factory import make_dicom
from tests.inference.test_worker import wait_for
from tests.processes import RedisServer, WorkerProcess, broker_at, worker_env

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def own_redis():
    server = RedisServer().start()
    yield server
    server.stop()


def test_it_stores_uploads_while_redis_is_down_and_predicts_them_once_it_is_back(
    own_redis, active_model, demo_site, tech
) -> None:
    worker = WorkerProcess(hostname="faulty@%h", env=worker_env(REDIS_URL=own_redis.url)).start().wait_ready()
    try:
        with broker_at(own_redis.url):
            own_redis.stop()
            timings = []
            for i in range(3):
                started = time.monotonic()
                report = studies_ingest(files=[IncomingFile(f"{i}.dcm", make_dicom(i))], site=demo_site, user=tech)
                timings.append(time.monotonic() - started)
                assert report.files[0].status == "stored"
            assert max(timings) < 5, timings  # publishing gave up quickly
            assert Image.objects.count() == 3
            assert set(Prediction.objects.values_list("status", flat=True)) == {"pending"}
            assert not Prediction.objects.filter(queued_at__isnull=False).exists()

            own_redis.start()  # back, empty: the messages were never sent
            time.sleep(2.5)  # the sweeper leaves brand-new predictions alone for 2 s
            assert predictions_sweep() == 3
            wait_for(
                lambda: Prediction.objects.filter(status="succeeded").count() == 3,
                timeout=90,
                what="the predictions after Redis came back",
            )
    finally:
        worker.stop()
    assert Prediction.objects.count() == 3 and set(Prediction.objects.values_list("attempts", flat=True)) == {1}
    assert set(Study.objects.values_list("status", flat=True)) == {"awaiting_review"}
