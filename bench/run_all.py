"""`make bench`: every benchmark in bench/, one report, also written to docs/benchmarks.md.

Each script prints its own figures beside their goals; this runner adds the
machine (CPU model, cores, thread settings) and collects them. Ratios are
measured against baselines taken in the same run: these machines are shared
and noisy, and absolute times are for the machine named at the top.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = [
    ("Ingest: decode and model input", ["bench/ingest.py", "--runs", "15"]),
    ("Inference: served LiteRT path against the Keras baseline", ["bench/inference.py", "--runs", "50"]),
    (
        "Inference: the shipped trained model (224 px)",
        ["bench/inference.py", "--runs", "50", "--shipped", "models/pneumo-xception224-cal-v2"],
    ),
    ("Worklist with 10,000 studies", ["bench/worklist.py", "--requests", "50"]),
    ("End to end through the running site (web server, Celery, Redis)", ["bench/e2e.py", "--runs", "50"]),
    (
        "DICOM network: storescu in, results out to Orthanc, against the upload path",
        ["bench/dicom_network.py", "--instances", "100", "--size", "2048"],
    ),
    ("Slow clients against make run's web server", ["bench/slow_clients.py", "--web-only", "--seconds", "15"]),
    ("Uploads: memory after refusals, zip bombs", ["bench/upload_memory.py"]),
    ("Local validation report, 100,000 signed studies", ["bench/validation.py", "--studies", "100000", "--runs", "5"]),
]
THREAD_VARIABLES = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "PNEUMO_INFERENCE_THREADS",
    "PNEUMO_WORKER_CONCURRENCY",
)


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def header() -> str:
    threads = ", ".join(f"{name}={os.environ.get(name, 'unset')}" for name in THREAD_VARIABLES)
    return (
        f"# Pneumo benchmarks\n\nMeasured {datetime.now(UTC):%Y-%m-%d %H:%M} UTC with `make bench`.\n\n"
        f"- CPU: {cpu_model()}, {os.cpu_count()} cores\n- Python {platform.python_version()}\n"
        f"- Thread settings: {threads}\n"
    )


def run(title: str, argv: list[str]) -> str:
    print(f"\n## {title}\n", flush=True)
    started = time.monotonic()
    result = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True)
    lines = [line for line in result.stdout.splitlines() if "XNNPACK" not in line]
    output = "\n".join(lines).strip()
    print(output, flush=True)
    status = "" if result.returncode == 0 else f"\n(exited {result.returncode}: {result.stderr.strip()[-800:]})"
    return f"\n## {title}\n\n`{' '.join(argv)}` ({time.monotonic() - started:.0f} s)\n\n```\n{output}\n```{status}\n"


def main() -> None:
    report = header()
    print(report, flush=True)
    for title, argv in SCRIPTS:
        report += run(title, argv)
    out = ROOT / "docs" / "benchmarks.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text(report)
    print(f"\nwritten to {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
