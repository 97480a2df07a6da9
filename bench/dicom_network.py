"""The DICOM network's speed: films in by C-STORE (DCMTK's storescu, one association), AI results out to a PACS.

    .venv/bin/python bench/dicom_network.py [--instances 100] [--size 2048] [--paced 10]

Starts a throw-away site the way `make run` starts it (bench/e2e.py's ``Site``:
waitress, a Celery worker and beat, the DICOM listener on a free port, Redis
(embedded, or ``REDIS_URL``'s), a private SQLite database and media folder,
the real model) and a private Orthanc (tests/dicom/conftest.py's, its own
configuration, ports and storage) named in ``PNEUMO_RESULT_DESTINATIONS``, so
every AI result SR and heatmap capture goes to it. The films are 12-bit
uncompressed CRs of ``--size`` pixels square built from the 16 packaged sample
images (tests/dicom_factory.py), each with its own study and instance UIDs.

Measures, on this machine:
- instances per second received: --instances sent by one storescu (one
  association), over storescu's whole run (association, C-STOREs, release);
- time to result: from the end of each C-STORE (its response, timestamped by
  storescu's own log) to its prediction's ``finished_at``, median and p95;
- objects per second sent to Orthanc, counted through its REST API: while the
  films arrive (first to last arrival), and the outbox alone (Orthanc emptied,
  every item resent at once, as the admin's Resend action does);
- for comparison, the same pictures under new UIDs through the upload path
  (bench/e2e.py's ``Site.upload``), sent back to back by one client as
  storescu sends them, from the end of each upload's response to its result;
- the CPU seconds per instance of the receiving service (the listener, or the
  web server, with their decoding children), during each burst;
- with --paced K, K instances of each path one at a time (each result awaited
  before the next is sent; one association per instance), the per-instance
  cost without a queue.

The outbox settles between the parts, so one path's sends never delay the
other's results; --upload-first sends the upload burst first (on a shared
machine the order and the load move the figures as much as the aim's margin).

The aim is that receiving adds at most 20 % to the upload path's time to result.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import argparse  # noqa: E402
import contextlib  # noqa: E402
import os  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import sqlite3  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import threading  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, replace  # noqa: E402
from datetime import UTC, datetime  # noqa: E402

from pydicom.uid import generate_uid  # noqa: E402

from bench.e2e import Site, fresh_copy, pct  # noqa: E402
from tests.dicom.conftest import ORTHANC_AE, Orthanc  # noqa: E402
from tests.dicom_factory import make_dicom  # noqa: E402
from tests.processes import free_port  # noqa: E402

LISTENER_AE = "PNEUMO"
CALLING_AE = "BENCHCR"  # mapped to no site: make run's PNEUMO_DICOM_DEFAULT_SITE (DEMO) receives it
AIM_RATIO = 1.2
WARM_UP = 2  # per path, not counted: the worker's first result and first C-STORE out load their libraries
# storescu's log lines with a UTC timestamp to the millisecond, so that each C-STORE's end is the client's own.
LOG_CONFIG = """\
log4cplus.rootLogger = INFO, console
log4cplus.appender.console = log4cplus::ConsoleAppender
log4cplus.appender.console.layout = log4cplus::PatternLayout
log4cplus.appender.console.layout.ConversionPattern = %d{%Y-%m-%d %H:%M:%S.%q} %m%n
"""
_LOG_LINE = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3}) (.*)$")


@dataclass(frozen=True)
class Sent:
    """One instance on its way: when its sending began and ended (client clock), and how it is found."""

    key: str  # SOPInstanceUID (DICOM path) or image id (upload path)
    started: float
    ended: float


# --- Films -------------------------------------------------------------------------------------


def films(count: int, size: int, folder: Path, tag: str) -> list[Path]:
    """``count`` 12-bit CRs of ``size`` pixels, the 16 sample pictures in turn, each its own patient and study."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(count):
        path = folder / f"{tag}-{i:04d}.dcm"
        path.write_bytes(
            make_dicom(
                i % 16,
                shape=(size, size),
                bits=12,
                patient_id=f"DNB-{tag}-{i:04d}",
                study_uid=generate_uid(),
                sop_uid=generate_uid(),
                accession_number=f"DNB{i:05d}",
            )
        )
        paths.append(path)
    return paths


def sop_uid_of(path: Path) -> str:
    from pydicom import dcmread

    return str(dcmread(path, stop_before_pixels=True, specific_tags=["SOPInstanceUID"]).SOPInstanceUID)


# --- storescu ----------------------------------------------------------------------------------


def storescu(port: int, paths: list[Path], log_config: Path) -> tuple[list[tuple[Path, float, float, str]], float]:
    """Send ``paths`` in one association; per file (path, request sent, response received, status), and wall time."""
    argv = ["storescu", "-lc", str(log_config), "-aet", CALLING_AE, "-aec", LISTENER_AE, "127.0.0.1", str(port)]
    started = time.monotonic()
    done = subprocess.run([*argv, *map(str, paths)], capture_output=True, text=True, timeout=3600, check=False)
    wall = time.monotonic() - started
    if done.returncode != 0:
        raise SystemExit(f"storescu failed ({done.returncode}):\n{(done.stdout + done.stderr)[-3000:]}")
    return _stores_parsed(done.stdout + done.stderr), wall


def _stores_parsed(log: str) -> list[tuple[Path, float, float, str]]:
    stores: list[tuple[Path, float, float, str]] = []
    current: Path | None = None
    request_at = 0.0
    for line in log.splitlines():
        match = _LOG_LINE.match(line)
        if not match:
            continue
        at = datetime.strptime(match[1], "%Y-%m-%d %H:%M:%S.%f").replace(tzinfo=UTC).timestamp()
        message = match[2]
        if message.startswith("Sending file: "):
            current = Path(message.removeprefix("Sending file: ").strip())
        elif message.startswith("Sending Store Request"):
            request_at = at
        elif message.startswith("Received Store Response") and current is not None:
            status = message.removeprefix("Received Store Response").strip(" ()")
            stores.append((current, request_at, at, status))
            current = None
    return stores


# --- The site's database -----------------------------------------------------------------------


def _utc(text: str) -> float:
    moment = datetime.fromisoformat(text)
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()


def _query(site: Site, sql: str, params: tuple = ()) -> list[tuple]:
    with sqlite3.connect(site.db, timeout=30) as connection:
        return connection.execute(sql, params).fetchall()


def results_by_uid(site: Site, uids: list[str], timeout: float) -> dict[str, float]:
    """Each instance's prediction finished_at (by SOPInstanceUID), once every one of them has finished."""
    sql = (
        "SELECT i.sop_instance_uid, MAX(p.finished_at) FROM cases_image i JOIN inference_prediction p "
        "ON p.image_id = i.id WHERE p.status IN ('succeeded', 'failed') GROUP BY i.sop_instance_uid"
    )
    return _results_wait(site, sql, set(uids), timeout)


def results_by_image(site: Site, image_ids: list[str], timeout: float) -> dict[str, float]:
    sql = (
        "SELECT CAST(image_id AS TEXT), MAX(finished_at) FROM inference_prediction "
        "WHERE status IN ('succeeded', 'failed') GROUP BY image_id"
    )
    return _results_wait(site, sql, set(image_ids), timeout)


def _results_wait(site: Site, sql: str, keys: set[str], timeout: float) -> dict[str, float]:
    deadline = time.monotonic() + timeout
    while True:
        found = {key: _utc(at) for key, at in _query(site, sql) if key in keys}
        if len(found) == len(keys):
            return found
        if time.monotonic() > deadline:
            raise SystemExit(f"only {len(found)} of {len(keys)} results after {timeout:.0f} s")
        time.sleep(0.25)


def _outbox_count(site: Site) -> int:
    return int(_query(site, "SELECT COUNT(*) FROM cases_outboxitem")[0][0])


def outbox_settled(site: Site, timeout: float) -> tuple[int, int]:
    """Wait until no outbox item is pending; returns (sent, failed)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        [(pending, sent, failed)] = _query(
            site,
            "SELECT COALESCE(SUM(state = 'pending'), 0), COALESCE(SUM(state = 'sent'), 0), "
            "COALESCE(SUM(state = 'failed'), 0) FROM cases_outboxitem",
        )
        if pending == 0:
            return sent, failed
        time.sleep(0.25)
    raise SystemExit(f"the outbox still had pending items after {timeout:.0f} s")


# --- CPU of the receiving side ----------------------------------------------------------------


def _parents() -> dict[int, int]:
    parents = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue  # it ended meanwhile
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    return parents


def service_pid(site: Site, marker: str) -> int:
    """The pid of make run's child whose command line holds ``marker`` (``dicom_listener``, ``run.py web``)."""
    for pid, parent in _parents().items():
        if parent == site.process.pid:
            with contextlib.suppress(OSError):
                if marker in Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode():
                    return pid
    raise SystemExit(f"no {marker} process under the site")


def tree_cpu(pid: int) -> float:
    """CPU seconds of a process and every descendant alive or reaped (decoding children, via their forkserver)."""
    parents = _parents()
    tree, grown = {pid}, True
    while grown:
        more = {child for child, parent in parents.items() if parent in tree} - tree
        tree |= more
        grown = bool(more)
    ticks = 0
    for member in tree:
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += sum(int(value) for value in fields[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


# --- Orthanc -----------------------------------------------------------------------------------


class Arrivals:
    """Orthanc's instance count, polled in a thread: when each count was first seen."""

    def __init__(self, orthanc: Orthanc) -> None:
        self.orthanc = orthanc
        self.seen: list[tuple[float, int]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def count(self) -> int:
        return int(self.orthanc.get("/statistics")["CountInstances"])

    def start(self) -> Arrivals:
        self.seen, self._stop = [], threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)
        self._thread.start()
        return self

    def _poll(self) -> None:
        while not self._stop.is_set():
            count = self.count()
            if not self.seen or count != self.seen[-1][1]:
                self.seen.append((time.time(), count))
            time.sleep(0.1)

    def wait(self, expected: int, timeout: float) -> tuple[float, float]:
        """(first arrival, arrival of the ``expected``-th object), client clock; stops polling."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not (self.seen and self.seen[-1][1] >= expected):
            time.sleep(0.1)
        self._stop.set()
        self._thread.join()
        if not self.seen or self.seen[-1][1] < expected:
            raise SystemExit(f"Orthanc has {self.count()} of {expected} objects after {timeout:.0f} s")
        first = next(at for at, count in self.seen if count > 0)
        last = next(at for at, count in self.seen if count >= expected)
        return first, last


def outbox_resend_all(site: Site) -> int:
    """Every outbox item sent again at once, through the service behind the admin's Resend action."""
    code = (
        "from cases.dicom.outbox import outbox_resend; from cases.models import OutboxItem;"
        "print(outbox_resend(items=OutboxItem.objects.all(), user=None))"
    )
    env = dict(site.env)
    env["REDIS_URL"] = env.get("REDIS_URL") or re.search(r"broker (redis://\S+)", site.output).group(1)
    done = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"resend failed:\n{done.stderr[-2000:]}")
    return int(done.stdout.strip().splitlines()[-1])


# --- The two paths -----------------------------------------------------------------------------


@dataclass(frozen=True)
class PathFigures:
    sent: list[Sent]
    results: dict[str, float]
    wall: float  # from the first byte sent to the last instance acknowledged
    cpu: float = 0.0  # CPU seconds of the receiving service (listener or web) and its children meanwhile

    def from_end(self) -> list[float]:
        return [self.results[s.key] - s.ended for s in self.sent]

    def from_start(self) -> list[float]:
        return [self.results[s.key] - s.started for s in self.sent]

    def rate(self) -> float:
        return len(self.sent) / self.wall

    def last_result(self) -> float:
        return max(self.results.values()) - min(s.started for s in self.sent)


def dicom_burst(site: Site, port: int, paths: list[Path], log_config: Path, timeout: float) -> PathFigures:
    stores, wall = storescu(port, paths, log_config)
    refused = [(path.name, status) for path, _, _, status in stores if status != "Success"]
    if refused or len(stores) != len(paths):
        raise SystemExit(f"{len(stores)} of {len(paths)} C-STOREs answered; not stored: {refused[:5]}")
    uids = {path: sop_uid_of(path) for path in paths}
    sent = [Sent(uids[path], started, ended) for path, started, ended, _ in stores]
    return PathFigures(sent, results_by_uid(site, list(uids.values()), timeout), wall)


def dicom_paced(site: Site, port: int, paths: list[Path], log_config: Path) -> PathFigures:
    sent, results, wall = [], {}, 0.0
    for path in paths:
        [(_, started, ended, status)], seconds = storescu(port, [path], log_config)
        if status != "Success":
            raise SystemExit(f"{path.name} not stored: {status}")
        uid = sop_uid_of(path)
        results.update(results_by_uid(site, [uid], timeout=120))
        sent.append(Sent(uid, started, ended))
        wall += seconds
    return PathFigures(sent, results, wall)


def upload_burst(site: Site, paths: list[Path], timeout: float) -> PathFigures:
    session = site.session("tech")
    payloads = [(path.name, fresh_copy(path.name, path.read_bytes())) for path in paths]
    sent = []
    for name, data in payloads:
        started = time.time()
        image_id = site.upload(session, name, data)
        sent.append(Sent(str(image_id), started, time.time()))
    wall = sent[-1].ended - sent[0].started
    return PathFigures(sent, results_by_image(site, [s.key for s in sent], timeout), wall)


def upload_paced(site: Site, paths: list[Path]) -> PathFigures:
    session = site.session("tech")
    sent, results = [], {}
    for path in paths:
        data = fresh_copy(path.name, path.read_bytes())
        started = time.time()
        image_id = str(site.upload(session, path.name, data))
        sent.append(Sent(image_id, started, time.time()))
        results.update(results_by_image(site, [image_id], timeout=120))
    return PathFigures(sent, results, sum(s.ended - s.started for s in sent))


# --- The run -----------------------------------------------------------------------------------


@dataclass
class Figures:
    dicom: PathFigures | None = None
    upload: PathFigures | None = None
    dicom_paced: PathFigures | None = None
    upload_paced: PathFigures | None = None
    objects_live: tuple[int, float] | None = None  # objects, seconds from first to last arrival
    objects_resent: tuple[int, float] | None = None
    outbox_failed: int = 0


def site_start(workdir: Path, orthanc: Orthanc, concurrency: int) -> tuple[Site, int]:
    """bench/e2e.py's site, with the DICOM listener on a free port and Orthanc as every result's destination."""
    port = free_port()
    for name in ("PNEUMO_DICOM_TLS_CERT_FILE", "PNEUMO_DICOM_TLS_KEY_FILE"):
        os.environ.pop(name, None)
    # Site copies this process's environment: the listener and the outbox read these.
    os.environ.update(
        PNEUMO_DICOM_AE=LISTENER_AE,
        PNEUMO_DICOM_BIND="127.0.0.1",
        PNEUMO_DICOM_PORT=str(port),
        PNEUMO_DICOM_DEFAULT_SITE="DEMO",
        PNEUMO_RESULT_DESTINATIONS=f"{ORTHANC_AE}@127.0.0.1:{orthanc.dicom_port}",
    )
    return Site(workdir, concurrency), port


def _measured(site: Site, marker: str, burst: Callable[[], PathFigures]) -> PathFigures:
    pid = service_pid(site, marker)
    before = tree_cpu(pid)
    figures = burst()
    return replace(figures, cpu=tree_cpu(pid) - before)


def _dicom_phase(
    site: Site, port: int, paths: list[Path], log_config: Path, arrivals: Arrivals, figures: Figures, timeout: float
) -> None:
    print(f"storescu: {len(paths)} instances in one association...", flush=True)
    arrivals.orthanc.clear()
    before = _outbox_count(site)
    arrivals.start()
    figures.dicom = _measured(site, "dicom_listener", lambda: dicom_burst(site, port, paths, log_config, timeout))
    figures.outbox_failed += outbox_settled(site, timeout)[1]
    expected = _outbox_count(site) - before
    first, last = arrivals.wait(expected, timeout=60)
    figures.objects_live = (expected, last - first)


def _upload_phase(site: Site, paths: list[Path], figures: Figures, timeout: float) -> None:
    print(f"upload path: the same {len(paths)} pictures under new UIDs, back to back...", flush=True)
    figures.upload = _measured(site, "run.py web", lambda: upload_burst(site, paths, timeout))
    figures.outbox_failed += outbox_settled(site, timeout)[1]  # its objects go to Orthanc too, as the films' do


def _resend_phase(site: Site, orthanc: Orthanc, arrivals: Arrivals, figures: Figures, timeout: float) -> None:
    total = _outbox_count(site)
    print(f"outbox alone: every one of the {total} items resent...", flush=True)
    orthanc.clear()
    arrivals.start()
    outbox_resend_all(site)
    first, last = arrivals.wait(total, timeout=timeout)
    figures.objects_resent = (total, last - first)
    outbox_settled(site, timeout)


def run(args: argparse.Namespace, workdir: Path) -> Figures:
    figures = Figures()
    log_config = workdir / "storescu-log.cfg"
    log_config.write_text(LOG_CONFIG)
    print(f"building {args.instances} + {WARM_UP} films of {args.size}x{args.size}, 12 bits...", flush=True)
    warm = films(WARM_UP, args.size, workdir / "films", "warm")
    burst = films(args.instances, args.size, workdir / "films", "burst")
    paced = films(args.paced, args.size, workdir / "films", "paced")
    orthanc = Orthanc(workdir / "orthanc")
    orthanc.directory.mkdir()
    orthanc.start()
    arrivals = Arrivals(orthanc)
    site, port = site_start(workdir, orthanc, args.concurrency)
    timeout = 120 + 10 * args.instances
    try:
        print("warming up both paths...", flush=True)
        dicom_burst(site, port, warm, log_config, timeout=120)
        upload_burst(site, warm, timeout=120)
        outbox_settled(site, timeout=120)
        phases = [lambda: _dicom_phase(site, port, burst, log_config, arrivals, figures, timeout)]
        if args.upload:
            phases.insert(0 if args.upload_first else 1, lambda: _upload_phase(site, burst, figures, timeout))
        for phase in phases:
            phase()
        _resend_phase(site, orthanc, arrivals, figures, timeout)
        if args.paced:
            print(f"paced: {args.paced} instances of each path, one at a time...", flush=True)
            figures.dicom_paced = dicom_paced(site, port, paced, log_config)
            outbox_settled(site, timeout)
            if args.upload:
                figures.upload_paced = upload_paced(site, paced)
    finally:
        site.stop()
        orthanc.stop()
    return figures


# --- The table ---------------------------------------------------------------------------------


def _seconds(values: list[float]) -> str:
    return f"{statistics.median(values):.2f} s / {pct(values, 95):.2f} s"


def _ratio_row(label: str, dicom: list[float], upload: list[float]) -> str:
    ratio = statistics.median(dicom) / statistics.median(upload)
    met = "yes" if ratio <= AIM_RATIO else "NO"
    return f"| {label}: DICOM / upload, median | {ratio:.2f} | <= {AIM_RATIO:.2f} | {met} |"


def table(figures: Figures) -> str:
    rows = ["| figure | measured | aim | met |", "|---|---|---|---|"]
    dicom, upload = figures.dicom, figures.upload
    rows.append(
        f"| instances/s received (storescu, one association, {len(dicom.sent)} instances) | {dicom.rate():.2f} | | |"
    )
    rows.append(f"| end of C-STORE to stored prediction, median / p95 | {_seconds(dicom.from_end())} | | |")
    rows.append(f"| start of C-STORE to stored prediction, median / p95 | {_seconds(dicom.from_start())} | | |")
    rows.append(f"| first C-STORE to last result (DICOM) | {dicom.last_result():.1f} s | | |")
    rows.append(
        f"| CPU of the listener (and its decoding children) per instance | {dicom.cpu / len(dicom.sent):.2f} s | | |"
    )
    objects, seconds = figures.objects_live
    rows.append(
        f"| objects/s arriving in Orthanc while the films arrive ({objects} objects, first to last arrival) "
        f"| {(objects - 1) / seconds:.2f} | | |"
    )
    objects, seconds = figures.objects_resent
    resent = f"objects/s sent to Orthanc, outbox alone ({objects} objects resent, first to last arrival)"
    rows.append(f"| {resent} | {(objects - 1) / seconds:.2f} | | |")
    if figures.outbox_failed:
        rows.append(f"| outbox items failed | {figures.outbox_failed} | 0 | NO |")
    if upload:
        rows.append(f"| uploads/s (one client, back to back, {len(upload.sent)} files) | {upload.rate():.2f} | | |")
        rows.append(f"| end of upload to stored prediction, median / p95 | {_seconds(upload.from_end())} | | |")
        rows.append(f"| start of upload to stored prediction, median / p95 | {_seconds(upload.from_start())} | | |")
        rows.append(f"| first upload to last result | {upload.last_result():.1f} s | | |")
        cpu = upload.cpu / len(upload.sent)
        rows.append(f"| CPU of the web server (and its decoding children) per upload | {cpu:.2f} s | | |")
        rows.append(_ratio_row("time to result from the start of sending", dicom.from_start(), upload.from_start()))
        ratio = dicom.last_result() / upload.last_result()
        met = "yes" if ratio <= AIM_RATIO else "NO"
        rows.append(f"| first to last result: DICOM / upload | {ratio:.2f} | <= {AIM_RATIO:.2f} | {met} |")
    if figures.dicom_paced:
        paced = figures.dicom_paced
        rows.append(
            f"| one at a time, start of C-STORE to result (own association each), median / p95 "
            f"(n={len(paced.sent)}) | {_seconds(paced.from_start())} | | |"
        )
    if figures.upload_paced:
        paced = figures.upload_paced
        rows.append(
            f"| one at a time, start of upload to result, median / p95 (n={len(paced.sent)}) "
            f"| {_seconds(paced.from_start())} | | |"
        )
        rows.append(_ratio_row("one at a time", figures.dicom_paced.from_start(), paced.from_start()))
    return "\n".join(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=100, help="instances sent in one association (default 100)")
    parser.add_argument("--size", type=int, default=2048, help="rows and columns of each film (default 2048)")
    parser.add_argument(
        "--paced", type=int, default=10, help="instances of each path sent one at a time, 0 for none (default 10)"
    )
    parser.add_argument("--concurrency", type=int, default=2, help="worker processes (default 2, as make run)")
    parser.add_argument("--no-upload", dest="upload", action="store_false", help="skip the upload path's figures")
    parser.add_argument(
        "--upload-first", action="store_true", help="send the upload burst before the DICOM one (order effects)"
    )
    args = parser.parse_args()
    for program in ("storescu", "/usr/sbin/Orthanc"):
        if shutil.which(program) is None:
            raise SystemExit(f"{program} is missing: scripts/ensure_test_tools.sh installs it")
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="pneumo-bench-dicom-") as workdir:
        figures = run(args, Path(workdir))
    print(
        f"\n{args.instances} instances of {args.size}x{args.size} 12-bit CR (uncompressed, about "
        f"{args.size * args.size * 2 / 1e6:.1f} MB each), {args.concurrency} worker processes, "
        f"{os.cpu_count()} cores, load {load:.1f} at the start\n"
    )
    print(table(figures))


if __name__ == "__main__":
    main()
