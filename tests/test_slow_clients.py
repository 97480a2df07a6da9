"""make run's web server keeps answering while many clients trickle their requests."""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import pytest
import requests

from bench.slow_clients import SlowClients, health_probe
from scripts.run import web_argv
from tests.processes import free_port

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow  # starts the real web server


@pytest.fixture
def web(tmp_path):
    """The web server exactly as make run starts it, on the run's Redis and a private database."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE", "PNEUMO_TEST_SQLITE"}}
    env.update(
        DEBUG="1",
        PNEUMO_HTTPS="0",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",  # /health/ asks SELECT 1 only
        MEDIA_ROOT=str(tmp_path / "media"),
        PYTHONUNBUFFERED="1",
    )
    log = tmp_path / "web.log"
    with log.open("ab") as out:
        process = subprocess.Popen(web_argv(port=port), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while health_probe(base, timeout=1).status != 200:
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.2)
        yield base, port, log
    finally:
        process.terminate()
        process.wait(timeout=20)


@pytest.mark.parametrize("mode", ["headers", "body"])
def test_it_answers_health_checks_while_32_clients_trickle_their_requests(web, mode: str) -> None:
    base, port, _ = web
    clients = SlowClients("127.0.0.1", port, 32, mode).open()
    try:
        time.sleep(1)  # each has sent its request line (or its whole header) and trickles on
        probes = [health_probe(base, timeout=5) for _ in range(5)]
        still_open = len(clients.sockets)
    finally:
        clients.close()
    assert [p.status for p in probes] == [200] * 5, probes
    assert still_open == 32  # they were all there, holding what they could


def test_it_logs_each_request_without_its_query_string(web) -> None:
    base, _, log = web
    assert health_probe(base, timeout=5).status == 200
    assert requests.get(f"{base}/accounts/login/", params={"next": "/worklist/?q=SMITH"}, timeout=5).ok
    time.sleep(0.5)
    text = log.read_text()
    assert '"GET /health/" 200' in text and '"GET /accounts/login/" 200' in text
    assert "SMITH" not in text


def test_it_refuses_a_request_declared_over_the_limit_before_reading_its_body(web) -> None:
    import socket

    from django.conf import settings

    _, port, _ = web
    declared = settings.PNEUMO_MAX_REQUEST_BYTES + 1
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            f"POST /upload/files/ HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {declared}\r\n"
            "Content-Type: multipart/form-data; boundary=x\r\n\r\n".encode()
        )
        answer = sock.recv(200)  # no body was sent: only a refusal from the header can come back
    assert answer.startswith(b"HTTP/1.1 413"), answer
