"""A frozen broker (Redis stopped with SIGSTOP: connections open, no answers) never stalls an upload."""

from __future__ import annotations

import os
import signal
import time

import pytest

from cases.ingest import IncomingFile, studies_ingest
from inference.models import Prediction
from tests.dicom_factory import make_dicom
from tests.processes import RedisServer, broker_at

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def own_redis():
    server = RedisServer().start()
    yield server
    if server.process is not None:
        os.kill(server.process.pid, signal.SIGCONT)
    server.stop()


def _upload(n: int, site, user) -> float:
    started = time.monotonic()
    report = studies_ingest(files=[IncomingFile(f"{n}.dcm", make_dicom(n))], site=site, user=user)
    assert report.files[0].status == "stored"
    return time.monotonic() - started


def test_it_stores_uploads_quickly_while_the_broker_is_frozen(own_redis, active_model, demo_site, tech) -> None:
    with broker_at(own_redis.url):
        warm = _upload(0, demo_site, tech)  # the publishing connection is open and pooled
        os.kill(own_redis.process.pid, signal.SIGSTOP)
        frozen = [_upload(n, demo_site, tech) for n in (1, 2)]
        os.kill(own_redis.process.pid, signal.SIGCONT)
    print(f"upload with a live broker {warm:.2f} s; with a frozen one {frozen[0]:.2f} s, {frozen[1]:.2f} s")
    # "About a second" for the broker; the rest of an upload is decoding and storing.
    assert max(frozen) < warm + 2.5, frozen
    unsent = Prediction.objects.filter(queued_at__isnull=True, status="pending").count()
    assert unsent == 2  # left to the sweeper, not lost
