"""`make run`'s launcher: the whole site comes up on embedded defaults and Ctrl-C stops it all."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from pydicom.uid import generate_uid

from tests.dicom_factory import make_dicom
from tests.processes import free_port

ROOT = Path(__file__).resolve().parent.parent


def make_run_start(tmp_path: Path, port: int, **env_extra: str) -> subprocess.Popen:
    """``scripts/run.py`` as ``make run`` starts it, on embedded defaults and a private database and port."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"DJANGO_SETTINGS_MODULE", "REDIS_URL", "DATABASE_URL", "MEDIA_ROOT", "PNEUMO_TEST_SQLITE"}
    }
    env.update(
        PORT=str(port),
        PNEUMO_DEMO_PASSWORD="a-demo-password-1",
        DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
        MEDIA_ROOT=str(tmp_path / "media"),
        PYTHONUNBUFFERED="1",
        **{"PNEUMO_DICOM_PORT": str(free_port()), **env_extra},  # never 11112: another run may be listening there
    )
    return subprocess.Popen(
        [sys.executable, "scripts/run.py"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


pytestmark = pytest.mark.slow


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    status = Path(f"/proc/{pid}/stat")
    return status.exists() and status.read_text().split()[2] != "Z"


def _login(base: str, username: str, password: str) -> str:
    return _session(base, username, password)[1]


def _session(base: str, username: str, password: str) -> tuple[requests.Session, str]:
    session = requests.Session()
    session.get(f"{base}/accounts/login/", timeout=10)
    response = session.post(
        f"{base}/accounts/login/",
        timeout=10,
        headers={"Referer": base},
        data={"username": username, "password": password, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
    )
    return session, response.url.removeprefix(base)


def test_it_runs_the_whole_site_with_the_demo_set_and_stops_every_child_on_ctrl_c(tmp_path) -> None:
    port = free_port()
    launcher = make_run_start(tmp_path, port)
    output = []
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not any("Press Ctrl-C" in line for line in output):
            line = launcher.stdout.readline()
            assert line or launcher.poll() is None, "".join(output)
            output.append(line)
        text = "".join(output)
        base = f"http://127.0.0.1:{port}"
        assert f"running at {base}/" in text
        assert re.search(r"rad2\s+a-demo-password-1", text)
        assert requests.get(f"{base}/health/", timeout=5).json()["worker_ready"] is True
        assert _login(base, "tech", "a-demo-password-1") == "/upload/"
        assert _login(base, "rad", "a-demo-password-1") == "/worklist/"
        # The first look shows the workflow: the demo studies are read by the AI, some signed, before the URL.
        assert "demo studies: 17 stored" in text and "3 signed now" in text
        rad, _ = _session(base, "rad", "a-demo-password-1")
        worklist = rad.get(f"{base}/worklist/", timeout=10).text
        assert worklist.count('class="wl-row') == 11  # DEMO: 10 with AI results and the refused lateral view
        assert worklist.count('class="pnum"') == 10
        assert rad.get(f"{base}/favicon.ico", timeout=10).headers["Content-Type"] == "image/x-icon"
        children = [int(pid) for pid in re.findall(r"\(pid (\d+)\)", text)]
        assert len(children) == 5  # redis, worker, beat, web, dicom

        # A film sent by a modality to the DICOM listener reaches the worklist with its AI result.
        dicom_port = int(re.search(r"DICOM listener: AE PNEUMO on 127\.0\.0\.1:(\d+)", text)[1])
        film = tmp_path / "film.dcm"
        film.write_bytes(make_dicom(9, patient_id="SENT-BY-DICOM", study_uid=generate_uid(), sop_uid=generate_uid()))
        sent = subprocess.run(
            ["storescu", "-aet", "XRAY1", "-aec", "PNEUMO", "127.0.0.1", str(dicom_port), str(film)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert sent.returncode == 0, sent.stdout + sent.stderr
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            worklist = rad.get(f"{base}/worklist/", timeout=10).text
            if worklist.count('class="pnum"') == 11:
                break
            time.sleep(1)
        assert worklist.count('class="wl-row') == 12 and worklist.count('class="pnum"') == 11
    finally:
        launcher.send_signal(signal.SIGINT)
        launcher.wait(timeout=60)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(pid) for pid in children):
        time.sleep(0.2)
    assert not [pid for pid in children if _alive(pid)]


def test_it_stops_before_starting_anything_when_the_dicom_port_is_taken(tmp_path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        dicom_port = taken.getsockname()[1]
        launcher = make_run_start(tmp_path, free_port(), PNEUMO_DICOM_PORT=str(dicom_port))
        output, _ = launcher.communicate(timeout=60)

    assert launcher.returncode != 0
    assert f"127.0.0.1:{dicom_port}" in output and "PNEUMO_DICOM_PORT" in output
    assert "started" not in output
