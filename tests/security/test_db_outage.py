"""PostgreSQL unreachable for a few seconds in the middle of a prediction: the task retries and finishes.

The worker reaches the database through a small TCP proxy started by the test
on a loopback port; the proxy cuts every connection and refuses new ones for a
while, then lets them through again. The machine's PostgreSQL server itself is
never touched.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest
from django.db import connection

from cases.ingest import IncomingFile, studies_ingest
from cases.models import Study
from inference.models import Prediction
from tests.dicom_factory import make_dicom
from tests.inference.test_worker import wait_for
from tests.processes import WorkerProcess, free_port, worker_env

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.skipif(
        connection.vendor != "postgresql",
        reason="cuts a PostgreSQL connection under a worker: needs PostgreSQL (CI runs it), not SQLite's file",
    ),
]
OUTAGE_SECONDS = 3.0
SLOW_SECONDS = 2.0  # the prediction sleeps this long mid-inference, holding an idle database connection


class FlakyProxy:
    """TCP on 127.0.0.1 to the database; ``outage()`` cuts every connection and refuses new ones."""

    def __init__(self, upstream: str | tuple[str, int]) -> None:
        self.upstream = upstream  # (host, port), or a unix socket path
        self.port = free_port()
        self.connections = 0
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> FlakyProxy:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(64)
        listener.settimeout(0.2)
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), name="flaky-proxy", daemon=True).start()
        return self

    def outage(self) -> None:
        """Stop listening (new connections are refused) and cut every open connection."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        with self._lock:
            open_now, self._open = list(self._open), set()
        for sock in open_now:
            _close(sock)

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self._connect(client)

    def _connect(self, client: socket.socket) -> None:
        try:
            if isinstance(self.upstream, str):
                server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
                server.connect(self.upstream)
            else:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
        except OSError:
            _close(client)
            return
        client.settimeout(None)
        with self._lock:
            self._open |= {client, server}
            self.connections += 1
        for source, target in ((client, server), (server, client)):
            threading.Thread(target=self._pump, args=(source, target), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                target.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, target):
                _close(sock)
            with self._lock:
                self._open -= {source, target}


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()


def _upstream() -> str | tuple[str, int]:
    db = connection.settings_dict
    host, port = db["HOST"] or "127.0.0.1", int(db["PORT"] or 5432)
    return f"{host}/.s.PGSQL.{port}" if host.startswith("/") else (host, port)


def _through(url: str, address: str) -> str:
    """The database URL with its host and port replaced by the proxy's."""
    parts = urlsplit(url)
    credentials = parts.netloc.rsplit("@", 1)[0] + "@" if "@" in parts.netloc else ""
    return urlunsplit(parts._replace(netloc=credentials + address))


@pytest.fixture
def proxied_worker(active_model, tmp_path):
    proxy = FlakyProxy(_upstream()).start()
    flag = tmp_path / "slow"
    env = worker_env(PNEUMO_TEST_SLOW_FLAG=str(flag), PNEUMO_TEST_SLOW_SECONDS=str(SLOW_SECONDS))
    env["DATABASE_URL"] = _through(env["DATABASE_URL"], proxy.address)
    worker = WorkerProcess(hostname="db-outage@%h", env=env, app="tests.fault_app").start()
    try:
        worker.wait_ready()
        yield worker, proxy, flag
    finally:
        worker.stop()
        proxy.outage()


def test_it_retries_a_prediction_through_a_database_outage_and_finishes_it_once(
    proxied_worker, demo_site, tech
) -> None:
    worker, proxy, flag = proxied_worker

    # Given a prediction in the middle of inference, its worker holding a database connection
    flag.write_text("slow")
    report = studies_ingest(files=[IncomingFile("chest.dcm", make_dicom(8))], site=demo_site, user=tech)
    study = Study.objects.get(pk=report.study_ids[0])
    started = Path(str(flag) + ".started")
    wait_for(started.exists, timeout=30, what="the prediction to start")
    flag.unlink()  # the attempt after the outage runs at full speed

    # When the database becomes unreachable for a few seconds, then comes back
    proxy.outage()
    time.sleep(OUTAGE_SECONDS)
    proxy.start()

    # Then the task retried until it could write, and the one prediction succeeded
    wait_for(
        lambda: Prediction.objects.filter(status="succeeded").exists(),
        timeout=60,
        what="the prediction to finish after the outage",
    )
    prediction = Prediction.objects.get()
    assert prediction.status == "succeeded" and prediction.probability is not None
    assert prediction.attempts == 2  # the interrupted attempt, and the one after the outage
    assert "database unavailable, retrying" in worker.log()
    assert proxy.connections >= 2  # the worker's database went through the proxy, before and after the outage
    study.refresh_from_db()
    assert study.status == "awaiting_review" and study.ai_probability == pytest.approx(prediction.probability)
