"""End-to-end speed of the whole site, started the way `make run` starts it (waitress, Celery, Redis).

    .venv/bin/python bench/e2e.py [--runs 50] [--load-studies 120] [--parts cold,throughput]

Measures, on this machine:
- upload to stored result, server side: from the upload request leaving the
  client (loopback, so its arrival) to the prediction's commit time in the
  database, per file type, median and 95th percentile over --runs uploads;
- sustained studies per second through the whole app against decode +
  preprocessing + served inference alone on the same files, in this process;
- /health/ and the worklist page's latency while the workers are saturated;
- cold start: a new worker process's first result, from its exec (median of
  --cold-runs new worker commands: one start is at the mercy of the machine's load).
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import signal  # noqa: E402
import sqlite3  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402
from datetime import datetime  # noqa: E402

import numpy as np  # noqa: E402
import pydicom  # noqa: E402
import requests  # noqa: E402
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, generate_uid  # noqa: E402

from tests.dicom_factory import make_dicom, make_png  # noqa: E402
from tests.processes import free_port  # noqa: E402

PASSWORD = "bench-password-123"  # noqa: S105 - a throwaway site of the bench's own
GOALS = {  # file type: (median s, p95 s)
    "jpeg-baseline-1024": (0.5, 1.5),
    "uncompressed-12bit-2500x2048": (0.5, 1.5),
    "png-1024": (0.5, 1.5),
    "j2k-12bit-2500x2048": (1.0, None),
}


def files() -> dict[str, tuple[str, bytes]]:
    return {
        "jpeg-baseline-1024": ("a.dcm", make_dicom(8, shape=(1024, 1024), transfer_syntax=JPEGBaseline8Bit)),
        "uncompressed-12bit-2500x2048": ("b.dcm", make_dicom(9, shape=(2500, 2048), bits=12)),
        "png-1024": ("c.png", make_png(10, shape=(1024, 1024))),
        "j2k-12bit-2500x2048": ("d.dcm", make_dicom(11, shape=(2500, 2048), bits=12, transfer_syntax=JPEG2000Lossless)),
    }


def fresh_copy(name: str, data: bytes) -> bytes:
    """The same pixels under new UIDs (or, for a PNG, one changed byte of metadata), so it is no duplicate."""
    if name.endswith(".png"):
        return _png_with_text(data)
    ds = pydicom.dcmread(io.BytesIO(data))
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    out = io.BytesIO()
    ds.save_as(out, enforce_file_format=True)
    return out.getvalue()


def _png_with_text(data: bytes) -> bytes:
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("bench", generate_uid())
    out = io.BytesIO()
    with Image.open(io.BytesIO(data)) as image:
        image.save(out, format="PNG", pnginfo=info, compress_level=1)
    return out.getvalue()


class Site:
    """The site as `make run` starts it, on a private port, database and media folder."""

    def __init__(self, workdir: Path, concurrency: int) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.db = workdir / "bench.sqlite3"
        env = {k: v for k, v in os.environ.items() if k not in {"DJANGO_SETTINGS_MODULE", "DATABASE_URL"}}
        env.update(
            PORT=str(self.port),
            PNEUMO_DEMO_PASSWORD=PASSWORD,
            DATABASE_URL=f"sqlite:///{self.db}",
            MEDIA_ROOT=str(workdir / "media"),
            PNEUMO_WORKER_CONCURRENCY=str(concurrency),
            PYTHONUNBUFFERED="1",
            DEBUG="0",
            SECRET_KEY="bench-" + "k" * 50,
            ALLOWED_HOSTS="127.0.0.1,localhost",
            PNEUMO_HTTPS="0",
            LOG_LEVEL="WARNING",
            PNEUMO_DEMO_STUDIES="0",  # the bench's own uploads only
        )
        self.env = env
        self.process = subprocess.Popen(
            [sys.executable, "scripts/run.py"],
            cwd=ROOT,
            env=env,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.output = ""
        while "Press Ctrl-C" not in self.output:
            line = self.process.stdout.readline()
            if not line and self.process.poll() is not None:
                raise SystemExit(f"the site did not start:\n{self.output}")
            self.output += line
        threading.Thread(target=self.process.stdout.read, daemon=True).start()

    def stop(self) -> None:
        self.process.send_signal(signal.SIGINT)
        self.process.wait(timeout=60)

    def session(self, username: str) -> requests.Session:
        session = requests.Session()
        session.get(f"{self.base}/accounts/login/")
        session.post(
            f"{self.base}/accounts/login/",
            headers={"Referer": self.base},
            data={"username": username, "password": PASSWORD, "csrfmiddlewaretoken": session.cookies["csrftoken"]},
        )
        session.headers.update({"X-CSRFToken": session.cookies["csrftoken"], "Referer": self.base})
        return session

    def upload(self, session: requests.Session, name: str, data: bytes, priority: str = "routine") -> int:
        form = {"priority": priority, "patient_id": "BENCH-PNG", "patient_name": "Bench Png"}
        response = session.post(f"{self.base}/upload/files/", files={"files": (name, data)}, data=form)
        body = response.json()
        if body["files"][0]["status"] != "stored":
            raise SystemExit(f"upload refused: {body}")
        return body["files"][0]["image_id"]

    def finished_at(self, image_id: int, timeout: float = 60) -> float:
        deadline = time.monotonic() + timeout
        with sqlite3.connect(self.db, timeout=30) as connection:
            while time.monotonic() < deadline:
                row = connection.execute(
                    "SELECT finished_at, status FROM inference_prediction WHERE image_id = ?", (image_id,)
                ).fetchone()
                if row and row[1] in ("succeeded", "failed"):
                    return datetime.fromisoformat(row[0]).timestamp()
                time.sleep(0.01)
        raise SystemExit(f"no result for image {image_id}")


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def bench_latency(site: Site, runs: int) -> list[tuple[str, float, float, tuple]]:
    session = site.session("tech")
    rows = []
    for kind, (name, data) in files().items():
        copies = [fresh_copy(name, data) for _ in range(runs + 3)]
        samples = []
        for i, copy in enumerate(copies):
            sent = time.time()
            image_id = site.upload(session, name, copy)
            elapsed = site.finished_at(image_id) - sent
            if i >= 3:  # warm-up
                samples.append(elapsed)
        rows.append((kind, statistics.median(samples), pct(samples, 95), GOALS[kind]))
        print(f"  {kind:<30} median {rows[-1][1]:.3f} s  p95 {rows[-1][2]:.3f} s", flush=True)
    return rows


def standalone_rate(payloads: list[tuple[str, bytes]], database_url: str) -> float:
    """Decode + preprocessing + served inference alone, one process per core at once, studies per second.

    Each process loads its share and its models, then waits for the others: without that start line
    the first ran its share with the machine to itself (decoding uses every core) before the last had
    read its own, and the rate counted the machine twice.
    """
    code = (
        "import sys,time,pickle; sys.path.insert(0,'.');"
        "from bench.e2e import _standalone; print(*_standalone(pickle.load(sys.stdin.buffer), sys.stdin.buffer))"
    )
    import pickle

    cores = os.cpu_count() or 1
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env["DATABASE_URL"] = database_url  # the site's, so that "alone" runs the version the site serves
    procs = [
        subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        for _ in range(cores)
    ]
    share = [payloads[i::cores] for i in range(cores)]
    for proc, part in zip(procs, share, strict=True):
        proc.stdin.write(pickle.dumps(part))
        proc.stdin.flush()
    for proc in procs:  # each says it is ready: share read, models loaded, first image done
        while proc.stdout.readline().strip() != b"ready":
            pass
    for proc in procs:
        proc.stdin.write(b"go\n")
        proc.stdin.close()
    spans = [tuple(map(float, proc.stdout.read().decode().strip().splitlines()[-1].split())) for proc in procs]
    return len(payloads) / (max(end for _, end in spans) - min(start for start, _ in spans))


def _standalone(payloads: list[tuple[str, bytes]], start_line) -> tuple[float, float]:
    """The share's (start, end) wall-clock times, after a warm-up and the parent's start line."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pneumo.settings")
    os.environ.setdefault("DEBUG", "1")
    django.setup()
    from cases.imaging import decode
    from inference.registry import active_model_versions
    from inference.routing import route_image
    from inference.scope import image_scope_routed

    # The versions the running site serves (its database), each image routed as the worker routes it.
    actives = active_model_versions()

    def run(name: str, data: bytes) -> None:
        decoded = decode(data, filename=name, max_bytes=2**28, max_pixels=60_000_000)
        image_scope_routed(decoded.model_image, route=route_image(decoded.metadata.age_years, actives))

    run(*payloads[0])  # the models loaded, as a running worker has them
    print("ready", flush=True)
    start_line.readline()
    started = time.time()
    for name, data in payloads:
        run(name, data)
    return started, time.time()


def bench_throughput(site: Site, studies: int) -> tuple[float, float, dict]:
    kinds = list(files().values())
    payloads = [(kinds[i % 2][0], fresh_copy(*kinds[i % 2])) for i in range(studies)]  # JPEG and 12-bit mixes
    sessions = [site.session("tech") for _ in range(4)]
    during: dict[str, list[float]] = {"health": [], "worklist": []}
    stop = threading.Event()
    rad = site.session("rad")

    def probe() -> None:
        while not stop.is_set():
            for key, url, client in (("health", "/health/", requests), ("worklist", "/worklist/", rad)):
                t0 = time.perf_counter()
                client.get(site.base + url)
                during[key].append(time.perf_counter() - t0)
            time.sleep(0.05)

    started = time.time()
    with ThreadPoolExecutor(4) as pool:
        ids = list(pool.map(lambda item: site.upload(sessions[item[0] % 4], *item[1]), enumerate(payloads)))
    prober = threading.Thread(target=probe)
    prober.start()  # the workers are saturated from here until the queue drains
    last = max(site.finished_at(i, timeout=600) for i in ids)
    stop.set()
    prober.join()
    app_rate = studies / (last - started)
    alone = standalone_rate(payloads, site.env["DATABASE_URL"])
    return app_rate, alone, during


def bench_cold_start(site: Site) -> float:
    """A new worker process (celery worker command) returns its first result: seconds from exec."""
    session = site.session("tech")
    env = dict(site.env)
    env["REDIS_URL"] = env.get("REDIS_URL") or re.search(r"broker (redis://\S+)", site.output).group(1)
    queue = "cold-start"
    env["PNEUMO_QUEUE"] = queue
    name, data = files()["jpeg-baseline-1024"]
    # Publish to a queue nobody consumes yet, then start a worker on it.
    code = (
        "import django,os,sys; sys.path.insert(0,'.'); os.environ.setdefault('DJANGO_SETTINGS_MODULE',"
        "'pneumo.settings'); django.setup(); from inference.services import predictions_enqueue;"
        "predictions_enqueue(prediction_ids=[int(sys.argv[1])])"
    )
    image_id = site.upload(session, name, fresh_copy(name, data))
    site.finished_at(image_id)
    with sqlite3.connect(site.db) as connection:
        connection.execute(
            "UPDATE inference_prediction SET status='pending', attempts=0, finished_at=NULL, "
            "lease_until=NULL WHERE image_id=?",
            (image_id,),
        )
        prediction_id = connection.execute(
            "SELECT id FROM inference_prediction WHERE image_id=?", (image_id,)
        ).fetchone()[0]
    subprocess.run([sys.executable, "-c", code, str(prediction_id)], cwd=ROOT, env=env, check=True)
    started = time.time()
    worker = subprocess.Popen(
        [
            str(Path(sys.executable).parent / "celery"),
            "-A",
            "pneumo",
            "worker",
            "-Q",
            queue,
            "--concurrency",
            "1",
            "--without-mingle",
            "--without-gossip",
            "--without-heartbeat",
            "--hostname",
            "cold@%h",
            "--loglevel",
            "WARNING",
        ],
        cwd=ROOT,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        return site.finished_at(image_id) - started
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.wait(timeout=30)


def bench_pool_child_start() -> float:
    """What a Celery prefork child pays: fork from a warm parent, load the model, first result (seconds)."""
    code = r"""
import os, sys, time, django
sys.path.insert(0, ".")
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pneumo.settings")
django.setup()
import inference.tasks  # what the Celery main process has imported before it forks
from inference import runtime
from inference.registry import active_model_versions
from tests.dicom_factory import make_dicom
from cases.imaging import decode
image = decode(make_dicom(8, shape=(1024, 1024)), filename="x.dcm", max_bytes=2**28, max_pixels=6e7).model_image
version = active_model_versions()["paediatric"]
read, write = os.pipe()
started = time.perf_counter()
pid = os.fork()
if pid == 0:
    runtime.classifier_for(version).predict(image)
    os.write(write, str(time.perf_counter() - started).encode())
    os._exit(0)
os.waitpid(pid, 0)
print(os.read(read, 64).decode())
"""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"}
    env.setdefault("DEBUG", "1")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


PARTS = ("latency", "throughput", "cold", "child")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--load-studies", type=int, default=120)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument(
        "--cold-runs",
        type=int,
        default=3,
        help="new worker commands started for the cold-start figure, which is their median (default: 3)",
    )
    parser.add_argument(
        "--parts",
        default=",".join(PARTS),
        help=f"comma-separated parts to measure, of {', '.join(PARTS)} (default: all)",
    )
    args = parser.parse_args()
    parts = set(args.parts.split(","))
    if parts - set(PARTS):
        parser.error(f"unknown parts: {', '.join(sorted(parts - set(PARTS)))}")
    latency, throughput, cold, child = [], None, None, None
    with tempfile.TemporaryDirectory(prefix="pneumo-bench-") as workdir:
        site = Site(Path(workdir), args.concurrency)
        try:
            if "latency" in parts:
                print("upload to stored result (server side):", flush=True)
                latency = bench_latency(site, args.runs)
            if "throughput" in parts:
                print("throughput and responsiveness under load:", flush=True)
                throughput = bench_throughput(site, args.load_studies)
            if "cold" in parts:
                colds = [bench_cold_start(site) for _ in range(args.cold_runs)]
                cold = statistics.median(colds)
                print("cold starts:", ", ".join(f"{value:.2f} s" for value in colds), flush=True)
            if "child" in parts:
                child = bench_pool_child_start()
        finally:
            site.stop()
    print("\n| figure | measured | goal | met |\n|---|---|---|---|")
    _print_latency(latency)
    if throughput:
        _print_throughput(*throughput, concurrency=args.concurrency)
    if child is not None:
        print(
            f"| cold start: new pool process (fork, model load, first result) | {child:.2f} s | < 1 s | "
            f"{'yes' if child < 1 else 'NO'} |"
        )
    if cold is not None:
        print(
            f"| cold start: whole new `celery worker` command to first result (median) | {cold:.2f} s | < 1 s | "
            f"{'yes' if cold < 1 else 'NO'} |"
        )


def _print_latency(latency: list[tuple[str, float, float, tuple]]) -> None:
    for kind, median, p95, (goal_median, goal_p95) in latency:
        print(
            f"| upload to result, {kind}, median | {median:.3f} s | <= {goal_median} s | "
            f"{'yes' if median <= goal_median else 'NO'} |"
        )
        if goal_p95:
            print(
                f"| upload to result, {kind}, p95 | {p95:.3f} s | <= {goal_p95} s | "
                f"{'yes' if p95 <= goal_p95 else 'NO'} |"
            )


def _print_throughput(app_rate: float, alone: float, during: dict, *, concurrency: int) -> None:
    ratio = app_rate / alone
    print(f"| studies/s through the app ({concurrency} worker processes) | {app_rate:.2f} | | |")
    print(f"| studies/s decode+preprocess+inference alone ({os.cpu_count()} processes) | {alone:.2f} | | |")
    print(f"| pipeline ratio | {ratio:.2f} | >= 0.5 | {'yes' if ratio >= 0.5 else 'NO'} |")
    for key, goal in (("health", 0.020), ("worklist", 0.150)):
        values = during[key]
        p95 = pct(values, 95) if values else float("nan")
        print(
            f"| /{key}/ p95 while workers are saturated (n={len(values)}) | {p95 * 1000:.1f} ms | "
            f"<= {goal * 1000:.0f} ms | {'yes' if p95 <= goal else 'NO'} |"
        )


if __name__ == "__main__":
    main()
