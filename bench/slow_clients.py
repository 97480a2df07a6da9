"""Slow clients: does the site keep answering others while many connections trickle?

    .venv/bin/python bench/slow_clients.py [--connections 32] [--seconds 20] [--mode headers|body|both]
    .venv/bin/python bench/slow_clients.py --url http://127.0.0.1:8000   # a running `make run`
    .venv/bin/python bench/slow_clients.py --web-only                     # make run's web server alone
    .venv/bin/python bench/slow_clients.py --behind-nginx                 # the compose deployment's front

By default it starts the site the way `make run` does (bench/e2e.py's ``Site``, on a private port,
database and media folder); ``--web-only`` starts only make run's web server (scripts/run.py's
``web_argv``) beside an embedded Redis, which is quicker; ``--behind-nginx`` starts compose.yaml's web
command (gunicorn) behind the ``nginx`` binary of this machine running docker/nginx.conf, its TLS
left out and its addresses moved to loopback. Loopback only.

Each slow connection sends ``GET /accounts/login/ HTTP/1.1`` and a Host header, then one more header
line every 2 s (``headers``), or a complete POST header announcing a body that it then sends one byte
every 2 s (``body``). While they are open, ``/health/`` is asked every 0.5 s (each probe on a new
connection, 5 s timeout) and the figures are printed: answered, timed out, median and worst latency.
Goal: with 32 such connections, every probe answers in under 1 s.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import ipaddress  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shlex  # noqa: E402
import socket  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import urllib.error  # noqa: E402
import urllib.request  # noqa: E402
from collections.abc import Callable, Iterator  # noqa: E402
from contextlib import contextmanager  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from urllib.parse import urlsplit  # noqa: E402

MAX_CONNECTIONS = 512
MAX_SECONDS = 300
GOAL_SECONDS = 1.0


@dataclass
class SlowClients:
    """``count`` connections to ``host:port`` that trickle a request and never finish it."""

    host: str
    port: int
    count: int
    mode: str = "headers"  # or "body"
    interval: float = 2.0
    sockets: list[socket.socket] = field(default_factory=list)
    dropped: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _opening(self) -> bytes:
        head = f"Host: {self.host}:{self.port}\r\nUser-Agent: pneumo-slow-client\r\n"
        if self.mode == "body":
            return (
                f"POST /accounts/login/ HTTP/1.1\r\n{head}Content-Type: application/x-www-form-urlencoded\r\n"
                "Content-Length: 100000\r\n\r\n"
            ).encode()
        return f"GET /accounts/login/ HTTP/1.1\r\n{head}".encode()

    def _piece(self, n: int) -> bytes:
        return b"a" if self.mode == "body" else f"X-Slow-{n}: {n}\r\n".encode()

    def open(self) -> SlowClients:
        for _ in range(self.count):
            sock = socket.create_connection((self.host, self.port), timeout=5)
            sock.sendall(self._opening())
            self.sockets.append(sock)
        self._thread = threading.Thread(target=self._trickle, name="slow-clients", daemon=True)
        self._thread.start()
        return self

    def _trickle(self) -> None:
        n = 0
        while not self._stop.wait(self.interval):
            n += 1
            for sock in list(self.sockets):
                try:
                    sock.sendall(self._piece(n))
                except OSError:  # the server closed it: that is allowed, and counted
                    self.sockets.remove(sock)
                    self.dropped += 1
                    sock.close()

    def close(self) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=self.interval + 1)
        for sock in self.sockets:
            sock.close()
        self.sockets.clear()


@dataclass(frozen=True)
class Probe:
    status: int | None  # None: no answer in time
    seconds: float


def health_probe(base: str, timeout: float = 5.0) -> Probe:
    started = time.monotonic()
    try:
        with urllib.request.urlopen(f"{base}/health/", timeout=timeout) as response:  # noqa: S310 - loopback
            response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError:
        status = None
    return Probe(status, time.monotonic() - started)


def probes_during(base: str, seconds: float, every: float = 0.5, timeout: float = 5.0) -> list[Probe]:
    results: list[Probe] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        results.append(health_probe(base, timeout))
        time.sleep(max(0.0, every - results[-1].seconds))
    return results


def summary(label: str, probes: list[Probe], clients: SlowClients | None) -> str:
    answered = [p.seconds for p in probes if p.status == 200]
    late = sum(1 for p in probes if p.status != 200)
    quick = sum(1 for s in answered if s < GOAL_SECONDS)
    line = f"{label:<28} probes {len(probes):>3}  answered 200: {len(answered):>3}  no answer/other: {late:>3}"
    if answered:
        line += f"  median {statistics.median(answered) * 1000:7.1f} ms  worst {max(answered) * 1000:7.1f} ms"
    line += f"  under {GOAL_SECONDS:.0f} s: {quick}/{len(probes)}"
    if clients is not None:
        line += f"  (slow connections still open: {len(clients.sockets)}, dropped by server: {clients.dropped})"
    return line


def _loopback(base: str) -> tuple[str, int]:
    parts = urlsplit(base)
    host = parts.hostname or ""
    if host != "localhost" and not ipaddress.ip_address(host).is_loopback:
        raise SystemExit("this probe only runs against a server on this machine (loopback)")
    return host, parts.port or 80


def _up(base: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while health_probe(base, timeout=1).status != 200:
        if time.monotonic() > deadline or process.poll() is not None:
            raise SystemExit(f"the server did not start: see {log}")
        time.sleep(0.2)


@contextmanager
def web_server(argv_for: Callable[[int], list[str]]) -> Iterator[tuple[str, Path]]:
    """A web server on a free loopback port, with an embedded Redis for /health/ and a private database."""
    from tests.processes import RedisServer, free_port

    redis_server = RedisServer().start()
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="pneumo-slow-"))
    env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE"}}
    env.update(
        DEBUG="1",
        PNEUMO_HTTPS="0",
        LOG_LEVEL="WARNING",
        REDIS_URL=redis_server.url,
        DATABASE_URL=f"sqlite:///{workdir / 'db.sqlite3'}",  # /health/ only asks SELECT 1
        MEDIA_ROOT=str(workdir / "media"),
    )
    log = workdir / "web.log"
    with log.open("ab") as out:
        web = subprocess.Popen(argv_for(port), cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _up(base, web, log)
        yield base, workdir
    finally:
        web.terminate()
        web.wait(timeout=20)
        redis_server.stop()


@contextmanager
def web_only() -> Iterator[str]:
    """make run's web server alone (scripts/run.py's web_argv)."""
    from scripts.run import web_argv

    with web_server(lambda port: web_argv(port=port)) as (base, _):
        yield base


def compose_web_argv(port: int) -> list[str]:
    """compose.yaml's web command, its gunicorn part, on a loopback port."""
    import yaml

    command = yaml.safe_load((ROOT / "docker/compose.yaml").read_text())["services"]["web"]["command"]
    gunicorn = shlex.split(shlex.split(command)[-1].split("exec ", 1)[1])
    bind = gunicorn.index("--bind") + 1
    gunicorn[bind] = f"127.0.0.1:{port}"
    return [str(Path(sys.executable).parent / "gunicorn"), *gunicorn[1:]]


def nginx_conf_for_loopback(upstream_port: int, ports: tuple[int, int], workdir: Path) -> str:
    """docker/nginx.conf with web on ``upstream_port`` and its two servers on loopback ``ports``, HTTP only."""
    conf = (ROOT / "docker/nginx.conf").read_text()
    conf = conf.replace("server web:8000;", f"server 127.0.0.1:{upstream_port};")
    conf = conf.replace("listen 80;", f"listen 127.0.0.1:{ports[0]};")
    conf = conf.replace("listen 443 ssl;", f"listen 127.0.0.1:{ports[1]};")
    kept = [line for line in conf.splitlines() if not re.match(r"\s*(ssl_|http2 |listen \[::\])", line)]
    temp = "".join(
        f"    {kind}_temp_path {workdir / kind};\n" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    return f"pid {workdir / 'nginx.pid'};\n" + "\n".join(kept).replace("http {\n", "http {\n" + temp, 1)


@contextmanager
def behind_nginx() -> Iterator[str]:
    import shutil

    from tests.processes import free_port

    nginx = shutil.which("nginx")
    if nginx is None:
        raise SystemExit("--behind-nginx needs the nginx binary (Debian: apt-get install nginx-light)")
    with web_server(compose_web_argv) as (upstream, workdir):
        workdir.chmod(0o755)  # nginx's worker processes run unprivileged
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (workdir / kind).mkdir(mode=0o777)
        port = free_port()
        conf = workdir / "nginx.conf"
        conf.write_text(nginx_conf_for_loopback(urlsplit(upstream).port, (free_port(), port), workdir))
        log = workdir / "nginx.log"
        with log.open("ab") as out:
            proxy = subprocess.Popen(
                [nginx, "-c", str(conf), "-g", "daemon off;"], stdout=out, stderr=subprocess.STDOUT
            )
        base = f"http://127.0.0.1:{port}"
        try:
            _up(base, proxy, log)
            yield base
        finally:
            proxy.terminate()
            proxy.wait(timeout=20)


@contextmanager
def whole_site():
    from bench.e2e import Site

    site = Site(Path(tempfile.mkdtemp(prefix="pneumo-slow-")), concurrency=1)
    try:
        yield site.base
    finally:
        site.stop()


def measure(base: str, connections: int, seconds: float, modes: list[str]) -> Iterator[str]:
    host, port = _loopback(base)
    if health_probe(base).status != 200:
        raise SystemExit(f"{base}/health/ does not answer 200")
    yield summary("no slow clients", probes_during(base, 3), None)
    for mode in modes:
        clients = SlowClients(host, port, connections, mode).open()
        try:
            time.sleep(1)  # every connection has sent its opening and holds whatever it holds
            yield summary(f"{connections} slow ({mode})", probes_during(base, seconds), clients)
        finally:
            clients.close()
        time.sleep(1)  # the server notices the closed connections before the next mode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="a running site on this machine (default: start one as make run does)")
    parser.add_argument("--web-only", action="store_true", help="start make run's web server alone")
    parser.add_argument("--behind-nginx", action="store_true", help="compose's web behind docker/nginx.conf")
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=20, help="probing time per mode")
    parser.add_argument("--mode", choices=["headers", "body", "both"], default="both")
    args = parser.parse_args()
    if not 1 <= args.connections <= MAX_CONNECTIONS or not 1 <= args.seconds <= MAX_SECONDS:
        raise SystemExit(f"--connections must be 1..{MAX_CONNECTIONS} and --seconds 1..{MAX_SECONDS}")
    modes = ["headers", "body"] if args.mode == "both" else [args.mode]
    if args.url:
        server = contextmanager(lambda: (yield args.url.rstrip("/")))()
    else:
        server = web_only() if args.web_only else behind_nginx() if args.behind_nginx else whole_site()
    with server as base:
        print(f"slow clients against {base}: one piece every 2 s; /health/ every 0.5 s, 5 s timeout", flush=True)
        for line in measure(base, args.connections, args.seconds, modes):
            print(line, flush=True)


if __name__ == "__main__":
    main()
