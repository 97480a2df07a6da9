"""make run keeps the site up: a child that dies is restarted with a back-off, the others keep serving."""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from scripts.run import Supervisor
from tests.dicom_factory import make_dicom
from tests.processes import free_port
from tests.test_make_run import _alive, _session, make_run_start

ROOT = Path(__file__).resolve().parent.parent
SLEEPER = [sys.executable, "-c", "import time; time.sleep(120)"]


@pytest.fixture
def supervisor():
    supervisor = Supervisor()
    yield supervisor
    supervisor.stop(timeout=5)


def _kill(service) -> int:
    pid = service.process.pid
    os.kill(pid, signal.SIGKILL)
    service.process.wait(timeout=10)
    return pid


def test_it_restarts_a_dead_child_after_a_doubling_backoff_and_leaves_the_others_running(supervisor, capsys) -> None:
    dying = supervisor.start("worker", SLEEPER)
    other = supervisor.start("web", SLEEPER)
    web_pid = other.process.pid
    now = time.monotonic()
    delays = []
    for _ in range(7):
        pid = _kill(dying)
        supervisor.watch(now)
        line = capsys.readouterr().out.splitlines()[-1]
        assert line.startswith(f"[pneumo] worker (pid {pid}) exited with status -9 (SIGKILL); restarting it in ")
        delays.append(round(dying.restart_at - now))
        supervisor.watch(dying.restart_at - 0.01)
        assert dying.process.pid == pid  # not before its back-off is over
        now = dying.restart_at
        supervisor.watch(now)
        assert dying.process.pid != pid and dying.process.poll() is None
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    assert other.process.pid == web_pid and other.process.poll() is None

    # A child that stayed up a minute has recovered: its next restart waits 1 s again.
    _kill(dying)
    supervisor.watch(now + 61)
    assert round(dying.restart_at - (now + 61)) == 1


def test_it_kills_what_is_left_of_a_dead_childs_process_group_before_restarting_it(supervisor, tmp_path) -> None:
    orphan_file = tmp_path / "orphan.pid"
    # Like a Celery worker's pool processes: a child of the service, in its process group.
    service = supervisor.start("worker", ["sh", "-c", f"sleep 120 & echo $! > {orphan_file}; exec sleep 120"])
    deadline = time.monotonic() + 10
    while not orphan_file.exists() or not orphan_file.read_text().strip():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    orphan = int(orphan_file.read_text())
    _kill(service)
    assert _alive(orphan)
    supervisor.watch()
    deadline = time.monotonic() + 10
    while _alive(orphan) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not _alive(orphan)


def test_it_stops_every_child_and_restarts_none_once_stopped(supervisor) -> None:
    services = [supervisor.start(name, SLEEPER) for name in ("redis", "worker", "web")]
    _kill(services[1])
    supervisor.watch()  # the worker waits for its restart
    supervisor.stop(timeout=5)
    supervisor.watch(time.monotonic() + 60)
    assert all(service.process.poll() is not None for service in services)


def _health_watch(base: str, stop: threading.Event, seen: list) -> None:
    while not stop.is_set():
        started = time.monotonic()
        try:
            response = requests.get(f"{base}/health/", timeout=5)
            seen.append((response.status_code, time.monotonic() - started))
        except requests.RequestException as error:
            seen.append((type(error).__name__, time.monotonic() - started))
        stop.wait(0.3)


def _wait_output(launcher: subprocess.Popen, output: list[str], pattern: str, timeout: float) -> re.Match:
    """The first match of ``pattern`` in what the launcher prints from now on."""
    since = len(output)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        match = re.search(pattern, "".join(output[since:]), re.DOTALL)
        if match:
            return match
        line = launcher.stdout.readline()
        assert line or launcher.poll() is None, "".join(output)
        output.append(line)
    raise AssertionError(f"no {pattern!r} in:\n{''.join(output)}")


@pytest.mark.slow
def test_it_keeps_the_site_up_and_predicting_when_the_worker_and_redis_are_killed(tmp_path) -> None:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    db = tmp_path / "db.sqlite3"
    launcher = make_run_start(tmp_path, port, PNEUMO_DEMO_STUDIES="0", PNEUMO_WORKER_CONCURRENCY="1")
    output: list[str] = []
    stop, seen = threading.Event(), []
    try:
        _wait_output(launcher, output, r"Press Ctrl-C", timeout=240)
        pids = dict(re.findall(r"started (\w+) \(pid (\d+)\)", "".join(output)))
        watcher = threading.Thread(target=_health_watch, args=(base, stop, seen), daemon=True)
        watcher.start()

        # When the worker's main process is killed, then the embedded Redis
        os.kill(int(pids["worker"]), signal.SIGKILL)
        restart = rf"worker \(pid {pids['worker']}\) exited with status -9 \(SIGKILL\).*started worker \(pid (\d+)\)"
        worker = _wait_output(launcher, output, restart, 30).group(1)
        os.kill(int(pids["redis"]), signal.SIGKILL)
        restart = rf"redis \(pid {pids['redis']}\) exited with status -9 \(SIGKILL\).*started redis \(pid \d+\)"
        _wait_output(launcher, output, restart, 30)

        # Then the site reports a ready worker again and predicts a new upload
        deadline = time.monotonic() + 90
        while not requests.get(f"{base}/health/", timeout=5).json()["worker_ready"]:
            assert time.monotonic() < deadline, "".join(output)
            time.sleep(0.5)
        tech, _ = _session(base, "tech", "a-demo-password-1")
        answer = tech.post(
            f"{base}/upload/files/",
            headers={"X-CSRFToken": tech.cookies["csrftoken"], "Referer": base},
            files={"files": ("after.dcm", make_dicom(3))},
            data={"priority": "routine"},
            timeout=30,
        ).json()
        assert answer["files"][0]["status"] == "stored", answer
        image_id = answer["files"][0]["image_id"]
        deadline = time.monotonic() + 90
        with sqlite3.connect(db, timeout=30) as connection:
            while True:
                row = connection.execute("SELECT status FROM inference_prediction WHERE image_id = ?", (image_id,))
                status = (row.fetchone() or ("none",))[0]
                if status == "succeeded":
                    break
                assert time.monotonic() < deadline, f"prediction {status}:\n{''.join(output)}"
                time.sleep(0.5)
        assert int(worker) != int(pids["worker"]) and _alive(int(worker))
    finally:
        stop.set()
        launcher.send_signal(signal.SIGTERM)
        launcher.wait(timeout=60)
    # The web server answered every probe throughout; SIGTERM stopped every child, restarted ones too.
    assert seen and all(status == 200 for status, _ in seen), seen
    text = "".join(output) + launcher.stdout.read()
    children = [int(pid) for pid in re.findall(r"\(pid (\d+)\)", text)]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and any(_alive(pid) for pid in children):
        time.sleep(0.2)
    assert not [pid for pid in children if _alive(pid)]


def test_it_refuses_a_bad_setting_before_starting_any_service() -> None:
    env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE", "REDIS_URL"}}
    env.update(PORT="80OO", PNEUMO_WORKER_CONCURRENCY="2")
    result = subprocess.run(
        [sys.executable, "scripts/run.py"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert result.returncode != 0
    assert "configuration error: PORT must be an integer, not '80OO'" in result.stderr
    assert "started" not in result.stdout
