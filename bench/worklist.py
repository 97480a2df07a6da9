"""Benchmark the radiologists' worklist on 10,000 studies: server time and query count per page.

    .venv/bin/python bench/worklist.py [--studies 10000] [--requests 60] [--json out.json]

Without ``DATABASE_URL`` it builds a throwaway SQLite file in a temporary folder;
with it (e.g. PostgreSQL) it creates and afterwards drops Django's test database
next to the configured one, so real data is never touched. Times are measured
through Django's test Client, so they include middleware, the session, templates
and the audit write, but no network.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(REPO_ROOT)

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import statistics  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import timedelta  # noqa: E402

WARMUP_REQUESTS = 5
BATCH = 2000


def configure() -> tuple[str, bool]:
    """Point Django at a throwaway database; returns (description, uses_test_database)."""
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pneumo.settings")
    if os.environ.get("DATABASE_URL"):
        return "DATABASE_URL (Django's test database)", True
    folder = tempfile.mkdtemp(prefix="pneumo-bench-")
    os.environ["DATABASE_URL"] = f"sqlite:///{folder}/worklist.sqlite3"
    return f"SQLite file in {folder}", False


def populate(n_studies: int, seed: int = 7) -> dict:
    """Two sites; ``n_studies`` studies of which about 60 % wait to be read; one image and prediction each."""
    from django.contrib.auth.models import Group
    from django.utils import timezone

    from cases.models import Image, Patient, Priority, Site, Study, User
    from cases.states import StudyStatus as S
    from inference.models import ModelVersion, Prediction, PredictionStatus

    rng = random.Random(seed)
    demo, north = Site.objects.create(code="DEMO", name="Demo"), Site.objects.create(code="NORTH", name="North")
    version = ModelVersion.objects.create(
        name="bench-model", version="1", source_path="x", sha256="0" * 64, preprocessing_version="p", is_active=True
    )
    rad = User.objects.create_user("bench-rad")  # no password: the bench logs in with force_login
    rad.sites.set([demo])
    rad.groups.add(Group.objects.get_or_create(name="Radiologist")[0])
    now = timezone.now()
    surnames = ["SMITH", "JONES", "GARCIA", "CHEN", "NGUYEN", "MÜLLER", "ROSSI", "KOWALSKI", "OKAFOR", "SATO"]
    patients = Patient.objects.bulk_create(
        Patient(site=demo if i % 5 else north, patient_id=f"MRN{i:06d}", name=f"{rng.choice(surnames)}^P{i}")
        for i in range(n_studies // 2)
    )
    statuses = [S.AWAITING_REVIEW] * 55 + [S.IN_REVIEW] * 5 + [S.REPORTED] * 30 + [S.QUEUED] * 5 + [S.ANALYZING] * 5
    priorities = [Priority.ROUTINE] * 80 + [Priority.URGENT] * 15 + [Priority.STAT] * 5
    studies = []
    for i in range(n_studies):
        patient = patients[i % len(patients)]
        status = rng.choice(statuses)
        probability = None if rng.random() < 0.05 or status in (S.QUEUED, S.ANALYZING) else rng.random()
        studies.append(
            Study(
                site=patient.site,
                patient=patient,
                study_instance_uid=f"2.25.{i}",
                accession_number=f"A{i:07d}",
                study_date=(now - timedelta(days=rng.randint(0, 60))).date(),
                priority=rng.choice(priorities),
                status=status,
                ai_probability=probability,
                ai_flagged=probability is not None and probability >= 0.5,
                claimed_by=rad if status == S.IN_REVIEW else None,
                claim_seen_at=now if status == S.IN_REVIEW else None,
                status_reason="" if probability is not None else "No AI result: no image is eligible for the AI.",
            )
        )
    for start in range(0, len(studies), BATCH):
        Study.objects.bulk_create(studies[start : start + BATCH])
    studies = list(Study.objects.order_by("pk"))
    received = [Study(pk=s.pk, received_at=now - timedelta(minutes=rng.randint(1, 60 * 24 * 30))) for s in studies]
    Study.objects.bulk_update(received, ["received_at"], batch_size=BATCH)
    images = Image.objects.bulk_create(
        (
            Image(
                study=s,
                site_id=s.site_id,
                sop_instance_uid=f"2.25.9{s.pk}",
                kind="dicom",
                file=f"bench/{s.pk}.dcm",
                sha256="0" * 64,
                ai_eligibility="eligible",
            )
            for s in studies
        ),
        batch_size=BATCH,
    )
    Prediction.objects.bulk_create(
        (
            Prediction(
                image=img,
                model_version=version,
                preprocessing_version="p",
                status=PredictionStatus.SUCCEEDED,
                probability=0.5,
                outside_validated_use=i % 10 == 0,
                outside_validated_use_reason="Adult patient (34 years)" if i % 10 == 0 else "",
            )
            for i, img in enumerate(images)
        ),
        batch_size=BATCH,
    )
    return {
        "user": rad,
        "studies": len(studies),
        "to_read": Study.objects.filter(site=demo, status__in=(S.AWAITING_REVIEW, S.IN_REVIEW)).count(),
    }


def wire_urls() -> None:
    """Serve the reading pages even before ``cases/urls.py`` includes them."""
    from django.conf import settings
    from django.urls import Resolver404, clear_url_caches, resolve

    from cases import views_reading

    try:
        wired = resolve("/worklist/").func is views_reading.worklist
    except Resolver404:
        wired = False
    if not wired:
        settings.ROOT_URLCONF = "tests.browser.urls"
        clear_url_caches()


def measure(client, method: str, url: str, runs: int, **extra) -> dict:
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    call = getattr(client, method)
    for _ in range(WARMUP_REQUESTS):
        assert call(url, **extra).status_code == 200, url
    samples, queries = [], set()
    for _ in range(runs):
        with CaptureQueriesContext(connection) as captured:
            start = time.perf_counter()
            response = call(url, **extra)
            samples.append((time.perf_counter() - start) * 1000)
        assert response.status_code == 200, url
        queries.add(len(captured))
    samples.sort()
    return {
        "median_ms": round(statistics.median(samples), 2),
        "p95_ms": round(samples[min(len(samples) - 1, int(0.95 * len(samples)))], 2),
        "queries": sorted(queries),
        "runs": runs,
    }


def run(args: argparse.Namespace, where: str) -> dict:
    from django.test import Client

    from cases.worklist import DEFAULT_PAGE_SIZE

    started = time.perf_counter()
    data = populate(args.studies)
    print(
        f"{data['studies']} studies ({data['to_read']} to read at the radiologist's site) in {where}, "
        f"built in {time.perf_counter() - started:.1f} s"
    )
    wire_urls()
    client = Client()
    client.force_login(data["user"])
    background = {"HTTP_X_PNEUMO_BACKGROUND": "1"}
    results = {}
    for per_page in (DEFAULT_PAGE_SIZE, 100):
        client.post("/worklist/", {"per_page": str(per_page)})
        results[f"worklist page 1, {per_page}/page"] = measure(client, "get", "/worklist/", args.requests)
        results[f"worklist page 20, {per_page}/page"] = measure(client, "get", "/worklist/?page=20", args.requests)
        results[f"rows JSON (poll), {per_page}/page"] = measure(
            client, "get", "/worklist/rows/", args.requests, **background
        )
    client.post("/worklist/", {"per_page": str(DEFAULT_PAGE_SIZE), "search": "smith", "priority": "urgent"})
    results["worklist searched 'smith' + urgent"] = measure(client, "get", "/worklist/", args.requests)
    return {"database": where, "studies": data["studies"], "to_read": data["to_read"], "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=60, help="timed requests per case, after warm-up (>= 50)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    where, test_database = configure()

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    # Not setup_test_environment(): its template instrumentation would be timed too.
    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    if test_database:
        old_name = connection.creation.create_test_db(verbosity=0, autoclobber=True)
    else:
        call_command("migrate", verbosity=0)
    try:
        report = run(args, where)
    finally:
        if test_database:
            connection.creation.destroy_test_db(old_name, verbosity=0)
    width = max(len(k) for k in report["results"])
    print(f"{'case':<{width}}  median ms    p95 ms  queries")
    for case, r in report["results"].items():
        print(f"{case:<{width}}  {r['median_ms']:>9.2f} {r['p95_ms']:>9.2f}  {','.join(map(str, r['queries']))}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
