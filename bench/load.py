"""Load: many clients at once upload and poll studies through the whole site (gunicorn, Celery, Redis).

    .venv/bin/python bench/load.py [--studies 2000] [--clients 50] [--concurrency 2] [--timeout 1800]

Starts the site the way `make run` does, on a private port, database and media
folder (bench/e2e.py's ``Site``; loopback only). Each client is a thread with
its own ``requests.Session``, signed in as the demo technician: it uploads
small DICOMs (64x64, built once, then given new UIDs and a patient of their
own with pydicom) on the upload page, one file per request, and polls
/studies/status/ for its studies as the upload page does. Then it checks that
accepted uploads = stored images = files on disk under the site's media
folder, and that every study reached a prediction (polling the site's SQLite
database, as bench/e2e.py does), and prints throughput, upload latency
(median, p95) and errors.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import copy  # noqa: E402
import io  # noqa: E402
import itertools  # noqa: E402
import sqlite3  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections import Counter  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402

import numpy as np  # noqa: E402
import pydicom  # noqa: E402
import requests  # noqa: E402
from pydicom.uid import generate_uid  # noqa: E402

from bench.e2e import Site  # noqa: E402
from tests.dicom_factory import make_dicom  # noqa: E402

POLL_EVERY = 1.0  # seconds between a client's status polls, as the upload page
POLL_BATCH = 200  # ids per status request (the endpoint's limit)
REQUEST_TIMEOUT = 120.0
TERMINAL = ("succeeded", "failed")


class Studies:
    """Hands out study numbers to the clients until ``total`` are taken."""

    def __init__(self, total: int) -> None:
        self.total = total
        self._next = itertools.count()
        self._lock = threading.Lock()

    def take(self) -> int | None:
        with self._lock:
            number = next(self._next)
        return number if number < self.total else None


class Copier:
    """New UIDs and a patient of its own for the same 64x64 picture: a fresh study at pydicom's cost."""

    def __init__(self, base: pydicom.Dataset) -> None:
        self.ds = copy.deepcopy(base)

    def study(self, number: int) -> bytes:
        ds = self.ds
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
        ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
        ds.PatientID, ds.PatientName = f"LOAD-{number:06d}", f"Load^Patient{number}"
        out = io.BytesIO()
        ds.save_as(out, enforce_file_format=True)
        return out.getvalue()


@dataclass
class Client:
    name: str
    session: requests.Session
    copier: Copier
    latencies: list[float] = field(default_factory=list)
    outcomes: Counter = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)
    study_ids: set[int] = field(default_factory=set)
    image_ids: set[int] = field(default_factory=set)
    waiting: set[int] = field(default_factory=set)
    polls: int = 0
    last_poll: float = 0.0


def upload(site: Site, client: Client, number: int) -> None:
    data = client.copier.study(number)
    started = time.perf_counter()
    try:
        response = client.session.post(
            f"{site.base}/upload/files/",
            files={"files": (f"load-{number}.dcm", data, "application/dicom")},
            data={"priority": "routine"},
            timeout=REQUEST_TIMEOUT,
        )
    except requests.RequestException as exc:
        client.errors.append(f"upload {number}: {type(exc).__name__}")
        return
    client.latencies.append(time.perf_counter() - started)
    if response.status_code != 200:
        client.errors.append(f"upload {number}: HTTP {response.status_code}")
        return
    for outcome in response.json()["files"]:
        client.outcomes[outcome["status"]] += 1
        if outcome["status"] == "stored":
            client.study_ids.add(outcome["study_id"])
            client.image_ids.add(outcome["image_id"])
            client.waiting.add(outcome["study_id"])
        else:
            client.errors.append(f"upload {number}: {outcome['status']}: {outcome['reason']}")


def poll(site: Site, client: Client) -> None:
    """Ask for the client's studies still waiting for the AI, as an open upload page does."""
    client.last_poll = time.monotonic()
    waiting = sorted(client.waiting)
    for chunk in (waiting[i : i + POLL_BATCH] for i in range(0, len(waiting), POLL_BATCH)):
        try:
            response = client.session.get(
                f"{site.base}/studies/status/",
                params={"ids": ",".join(map(str, chunk))},
                headers={"X-Pneumo-Background": "1"},
                timeout=REQUEST_TIMEOUT,
            )
            response.raise_for_status()
        except requests.RequestException as exc:
            client.errors.append(f"poll: {type(exc).__name__}")
            return
        client.polls += 1
        for study in response.json()["studies"]:
            if study["ai_probability"] is not None or study["status"] not in ("received", "queued", "analyzing"):
                client.waiting.discard(study["id"])


def run_client(site: Site, client: Client, studies: Studies, deadline: float) -> None:
    while (number := studies.take()) is not None and time.monotonic() < deadline:
        upload(site, client, number)
        if time.monotonic() - client.last_poll > POLL_EVERY:
            poll(site, client)
    while client.waiting and time.monotonic() < deadline:
        time.sleep(max(0.0, POLL_EVERY - (time.monotonic() - client.last_poll)))
        poll(site, client)


def predictions_done(site: Site, image_ids: set[int], deadline: float) -> dict[str, int]:
    """Wait until every stored image has a finished prediction; their statuses."""
    with sqlite3.connect(site.db, timeout=30) as connection:
        while True:
            rows = dict(connection.execute("SELECT image_id, status FROM inference_prediction").fetchall())
            done = {image: rows.get(image) for image in image_ids}
            if all(status in TERMINAL for status in done.values()) or time.monotonic() > deadline:
                return dict(Counter(status or "missing" for status in done.values()))
            time.sleep(0.5)


def stored_images(site: Site) -> int:
    with sqlite3.connect(site.db, timeout=30) as connection:
        return connection.execute("SELECT COUNT(*) FROM cases_image").fetchone()[0]


def files_on_disk(media: Path) -> int:
    return sum(1 for path in media.rglob("*") if path.is_file())


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--studies", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--concurrency", type=int, default=2, help="Celery worker processes")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds for the whole run")
    args = parser.parse_args()
    base = pydicom.dcmread(io.BytesIO(make_dicom(8, shape=(64, 64))))
    with tempfile.TemporaryDirectory(prefix="pneumo-load-") as workdir:
        print(f"starting the site ({args.concurrency} worker processes)...", flush=True)
        site = Site(Path(workdir), args.concurrency)
        try:
            report = load(site, args, base, media=Path(workdir) / "media")
        finally:
            site.stop()
    print_report(args, report)
    if report["failed"]:
        sys.exit(1)


def load(site: Site, args: argparse.Namespace, base: pydicom.Dataset, *, media: Path) -> dict:
    clients = [Client(f"c{i}", site.session("tech"), Copier(base)) for i in range(args.clients)]
    print(f"{len(clients)} clients signed in; uploading {args.studies} studies...", flush=True)
    studies = Studies(args.studies)
    started = time.monotonic()
    deadline = started + args.timeout
    threads = [threading.Thread(target=run_client, args=(site, c, studies, deadline)) for c in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=max(1.0, deadline - time.monotonic()) + 60)
    seen_all = time.monotonic()
    image_ids = set().union(*(c.image_ids for c in clients))
    predictions = predictions_done(site, image_ids, deadline)
    finished = time.monotonic()
    latencies = [t for c in clients for t in c.latencies]
    outcomes = sum((c.outcomes for c in clients), Counter())
    errors = [e for c in clients for e in c.errors]
    accepted, stored, on_disk = outcomes["stored"], stored_images(site), files_on_disk(media)
    report = {
        "seconds": finished - started,
        "clients_seconds": seen_all - started,
        "latencies": latencies,
        "outcomes": outcomes,
        "errors": errors,
        "polls": sum(c.polls for c in clients),
        "unfinished_polls": sum(len(c.waiting) for c in clients),
        "accepted": accepted,
        "stored": stored,
        "on_disk": on_disk,
        "predictions": predictions,
        "alive": [t.name for t in threads if t.is_alive()],
    }
    report["failed"] = bool(
        errors
        or report["alive"]
        or not accepted == stored == on_disk == args.studies
        or predictions.get("succeeded", 0) != accepted
    )
    return report


def print_report(args: argparse.Namespace, r: dict) -> None:
    latencies = r["latencies"]
    print("\n| figure | value |\n|---|---|")
    print(f"| studies asked / clients / worker processes | {args.studies} / {args.clients} / {args.concurrency} |")
    print(f"| upload outcomes | {dict(r['outcomes'])} |")
    print(f"| accepted uploads = stored images = files on disk | {r['accepted']} = {r['stored']} = {r['on_disk']} |")
    print(f"| predictions of stored images | {r['predictions']} |")
    print(f"| throughput, uploads accepted per second | {r['accepted'] / r['clients_seconds']:.1f} |")
    print(f"| throughput, studies predicted per second (end to end) | {r['accepted'] / r['seconds']:.1f} |")
    print(
        f"| upload latency median / p95 / max | {statistics.median(latencies) if latencies else float('nan'):.3f}"
        f" s / {pct(latencies, 95):.3f} s / {max(latencies, default=float('nan')):.3f} s |"
    )
    print(f"| status polls (studies still waiting at the end) | {r['polls']} ({r['unfinished_polls']}) |")
    print(f"| wall time | {r['seconds']:.1f} s |")
    print(f"| errors | {len(r['errors'])} |")
    for error in r["errors"][:20]:
        print(f"  - {error}")
    if r["alive"]:
        print(f"  - clients still running at the deadline: {len(r['alive'])}")
    print("\nresult:", "FAILED" if r["failed"] else "ok")


if __name__ == "__main__":
    main()
