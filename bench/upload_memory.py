"""What hostile uploads cost a web worker: its memory (RSS) around big requests, and the time zips take.

    .venv/bin/python bench/upload_memory.py [--parts memory,zips] [--root CHECKOUT]

Starts the site's WSGI app under gunicorn (one worker, 4 threads, as each of
``make run``'s former workers and the compose deployment's) on a throwaway
SQLite database, with an API token of a technician, and measures:

- memory: the worker's resident memory before each request, its peak while
  the request runs (sampled every 20 ms) and after it, for the issue's eight
  files of 190 MiB in one request, four of them (under the request limit),
  one file just over the per-file limit, and a request declaring just over
  the request limit; bodies are streamed from a repeated block, never held
  whole by the client, and the client stops sending once the server answers;
- zips: how long the issue's 1.1 MB zip of 15 (and 45) central entries
  sharing one 190 MiB deflate stream takes to be answered, and a zip of
  1,500 one-byte members.

``--root`` runs the server from another checkout (e.g. ``git archive`` of an
older commit) with this virtualenv, to compare before and after.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import select  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
import uuid  # noqa: E402
from collections.abc import Iterator  # noqa: E402

from tests.processes import free_port  # noqa: E402
from tests.zip_factory import overlapping_bomb, plain_zip  # noqa: E402

MIB = 2**20
BLOCK = os.urandom(MIB)  # not an image: each file is refused once read
SETUP = """
from cases.api.tokens import token_create
from cases.models import Site, User
from django.contrib.auth.models import Group
site = Site.objects.create(code="BENCH", name="Bench")
user = User.objects.create_user(username="tech", password="bench-password-123")
user.sites.set([site])
user.groups.add(Group.objects.get_or_create(name="Technician")[0])
print("TOKEN=" + token_create(user=user)[0])
"""


class Server:
    def __init__(self, root: Path, workdir: Path) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE", "DATABASE_URL"}}
        env.update(
            DATABASE_URL=f"sqlite:///{workdir / 'bench.sqlite3'}",
            MEDIA_ROOT=str(workdir / "media"),
            DEBUG="0",
            SECRET_KEY="bench-" + "k" * 50,
            ALLOWED_HOSTS="127.0.0.1,localhost",
            PNEUMO_HTTPS="0",
            LOG_LEVEL="WARNING",
            PNEUMO_API_UPLOAD_RATE="1000/min",
            TMPDIR=str(workdir),  # spooled uploads land here, not in memory
        )
        python = sys.executable
        subprocess.run([python, "manage.py", "migrate", "-v", "0"], cwd=root, env=env, check=True)
        out = subprocess.run(
            [python, "manage.py", "shell", "-c", SETUP], cwd=root, env=env, check=True, capture_output=True, text=True
        ).stdout
        self.token = next(line[6:] for line in out.splitlines() if line.startswith("TOKEN="))
        gunicorn = str(Path(python).parent / "gunicorn")
        args = [gunicorn, "pneumo.wsgi", "--bind", f"127.0.0.1:{self.port}", "--workers", "1", "--threads", "4"]
        args += ["--worker-class", "gthread", "--timeout", "600"]
        self.process = subprocess.Popen(args, cwd=root, env=env, stderr=subprocess.DEVNULL)
        self.worker = self._worker_pid()

    def _worker_pid(self) -> int:
        deadline = time.monotonic() + 60
        children = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children")
        while time.monotonic() < deadline:
            pids = children.read_text().split() if children.exists() else []
            if pids and self._answers():
                return int(pids[0])
            time.sleep(0.2)
        raise SystemExit("gunicorn did not start")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def rss_mb(self) -> float:
        for line in Path(f"/proc/{self.worker}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(30)


def multipart(files: list[tuple[str, int]], boundary: str) -> tuple[int, Iterator[bytes]]:
    """The body's length and its chunks, each file ``size`` bytes of the repeated block."""
    heads = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="{name}"\r\n'
        f"Content-Type: application/octet-stream\r\n\r\n".encode()
        for name, _ in files
    ]
    site = f'--{boundary}\r\nContent-Disposition: form-data; name="site"\r\n\r\nBENCH\r\n'.encode()
    tail = f"--{boundary}--\r\n".encode()
    length = len(site) + len(tail) + sum(len(h) + size + 2 for h, (_, size) in zip(heads, files, strict=True))

    def chunks() -> Iterator[bytes]:
        yield site
        for head, (_, size) in zip(heads, files, strict=True):
            yield head
            for start in range(0, size, MIB):
                yield BLOCK[: min(MIB, size - start)]
            yield b"\r\n"
        yield tail

    return length, chunks()


def post(server: Server, length: int, chunks: Iterator[bytes]) -> tuple[int, str, float]:
    """Stream a body to the upload API; stop sending once an answer arrives. (status, detail, seconds)."""
    boundary_head = (
        f"POST /api/v1/studies/ HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Token {server.token}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\nContent-Length: {length}\r\n"
        "Connection: close\r\n\r\n"
    ).encode()
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", server.port), timeout=600) as sock:
        sock.sendall(boundary_head)
        try:
            for chunk in chunks:
                if select.select([sock], [], [], 0)[0]:
                    break  # answered early: a real client stops sending too
                sock.sendall(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = _read_answer(sock)
    elapsed = time.monotonic() - started
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split()[1]) if head else 0
    return status, _detail(body), elapsed


BOUNDARY = uuid.uuid4().hex


def _read_answer(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except (ConnectionResetError, TimeoutError):
        pass
    return data


def _detail(body: bytes) -> str:
    text = body.decode(errors="replace")
    start = text.find("{")
    try:
        parsed = json.loads(text[start : text.rfind("}") + 1])
    except ValueError:
        return text.strip()[:80]
    if "files" in parsed:
        reasons = {f["reason"][:60] for f in parsed["files"]}
        return f"{len(parsed['files'])} line(s): {'; '.join(sorted(reasons))}"
    return str(parsed.get("detail", ""))[:100]


class Sampler:
    """The worker's peak RSS while a request runs."""

    def __init__(self, server: Server) -> None:
        self.server, self.peak, self._stop = server, 0.0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.server.rss_mb())
            time.sleep(0.02)


def bench_memory(server: Server) -> None:
    request_limit, file_limit = 1000 * MIB, 200 * MIB
    cases = {
        "8 x 190 MiB in one request": [(f"f{n}.bin", 190 * MIB) for n in range(8)],
        "4 x 190 MiB in one request": [(f"g{n}.bin", 190 * MIB) for n in range(4)],
        "1 file just over 200 MiB": [("h.bin", file_limit + MIB)],
        "body just over 1000 MiB": [("i.bin", request_limit - 100)],
    }
    print(f"{'request':30} {'status':>6} {'seconds':>8} {'RSS before':>11} {'peak':>8} {'after':>8}  answer")
    for label, files in cases.items():
        length, chunks = multipart(files, BOUNDARY)
        time.sleep(1)
        before = server.rss_mb()
        with Sampler(server) as sampler:
            status, detail, elapsed = post(server, length, chunks)
            time.sleep(1)
        after = server.rss_mb()
        print(
            f"{label:30} {status:>6} {elapsed:8.1f} {before:9.0f}MB {sampler.peak:6.0f}MB {after:6.0f}MB  {detail[:90]}"
        )


def bench_zips(server: Server) -> None:
    zips = {
        "15 entries on one 190 MiB stream": overlapping_bomb(15, 190),
        "45 entries on one 190 MiB stream": overlapping_bomb(45, 190),
        "1,500 one-byte members": plain_zip(*[(f"IM{n:05d}", b"x") for n in range(1500)]),
    }
    print(f"{'zip':34} {'MB':>5} {'status':>6} {'seconds':>8} {'peak RSS':>9}  answer")
    for label, data in zips.items():
        length, chunks = multipart_bytes(data)
        with Sampler(server) as sampler:
            status, detail, elapsed = post(server, length, chunks)
        print(f"{label:34} {len(data) / MIB:5.1f} {status:>6} {elapsed:8.2f} {sampler.peak:7.0f}MB  {detail[:80]}")


def multipart_bytes(data: bytes) -> tuple[int, Iterator[bytes]]:
    head = (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="site"\r\n\r\nBENCH\r\n'
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="files"; filename="export.zip"\r\n'
        "Content-Type: application/zip\r\n\r\n"
    ).encode()
    body = head + data + f"\r\n--{BOUNDARY}--\r\n".encode()
    return len(body), iter([body[i : i + MIB] for i in range(0, len(body), MIB)])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--parts", default="memory,zips")
    parser.add_argument("--root", type=Path, default=ROOT, help="checkout to serve (default: this one)")
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    with tempfile.TemporaryDirectory(prefix="pneumo-upload-bench-") as workdir:
        server = Server(args.root.resolve(), Path(workdir))
        try:
            print(f"root={args.root} cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f} worker pid={server.worker}")
            if "zips" in parts:
                bench_zips(server)
            if "memory" in parts:
                bench_memory(server)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
