"""Benchmark the local validation report on 100,000 signed studies: time and query count.

    .venv/bin/python bench/validation.py [--studies 100000] [--runs 5] [--json out.json]
    DATABASE_URL=postgres://postgres@127.0.0.1:5432/test .venv/bin/python bench/validation.py

Without ``DATABASE_URL`` it builds a throwaway SQLite file in a temporary folder; with it (PostgreSQL) it creates
a database of its own next to the configured one (``bench_validation_<pid>``) and drops it afterwards, so real
data is never touched. A simulated month at one site: a tenth of the studies with two images, five X-ray units
and PNG uploads, children and adults, AP and PA, a few outside the domain, 3 % indeterminate findings, 5 %
amended readings, 1 % of the images re-run (an older result that must not count), 30 % of the studies read
in shadow mode (the rest live, some from before modes were recorded); another site and another version are
there to be left out. The report is timed as the selector alone and as the API request (test Client:
middleware, permission, audit write and JSON, no network).
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

BATCH = 5000
DEVICES = [
    ("ACME", "RX-1"),
    ("ACME", "RX-2"),
    ("Kodak", "DR 7500"),
    ("Fujifilm", "FDR D-EVO"),
    ("GE", "Optima"),
    ("", ""),
]


def configure() -> tuple[str, bool]:
    """Point Django at a throwaway database; returns (description, uses a PostgreSQL database of its own)."""
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pneumo.settings")
    if os.environ.get("DATABASE_URL"):
        return "PostgreSQL (DATABASE_URL), a database of its own", True
    folder = tempfile.mkdtemp(prefix="pneumo-bench-")
    os.environ["DATABASE_URL"] = f"sqlite:///{folder}/validation.sqlite3"
    return f"SQLite file in {folder}", False


def _bulk(model, rows: list) -> list:
    created = []
    for start in range(0, len(rows), BATCH):
        created += model.objects.bulk_create(rows[start : start + BATCH])
    return created


def populate(n_studies: int, seed: int = 11) -> dict:
    from django.utils import timezone

    from cases.models import Image, Patient, Review, Site, Study, User
    from cases.states import StudyStatus
    from inference.models import AiDomain, ModelVersion, Prediction, PredictionStatus

    rng = random.Random(seed)
    demo, north = Site.objects.create(code="DEMO", name="Demo"), Site.objects.create(code="NORTH", name="North")
    version, other = (
        ModelVersion.objects.create(
            name=name, version="1", source_path="x", sha256=f"{i:064x}", preprocessing_version="p"
        )
        for i, name in enumerate(("bench-model", "other-model"))
    )
    rad = User.objects.create_user("bench-rad")
    admin = User.objects.create_user("bench-admin", is_staff=True)
    now = timezone.now()
    patients = _bulk(
        Patient, [Patient(site=north if i % 20 == 0 else demo, patient_id=f"MRN{i:07d}") for i in range(n_studies // 4)]
    )
    studies = _bulk(
        Study,
        [
            Study(site=p.site, patient=p, study_instance_uid=f"2.25.{i}", status=StudyStatus.REPORTED)
            for i, p in ((i, patients[i % len(patients)]) for i in range(n_studies))
        ],
    )
    images, truths, modes = [], {}, {}
    for study in studies:
        truths[study.pk] = rng.random() < 0.3
        # The site's AI mode when the study was read: blank on readings from before modes were recorded.
        modes[study.pk] = "shadow" if rng.random() < 0.3 else rng.choice(["live", "live", ""])
        device = rng.choice(DEVICES)
        age = None if rng.random() < 0.05 else rng.choice([rng.uniform(0, 17.9), rng.uniform(18, 95)])
        for _ in range(2 if rng.random() < 0.1 else 1):
            images.append(
                Image(
                    study=study,
                    site_id=study.site_id,
                    sop_instance_uid=f"2.25.9{len(images)}",
                    kind="dicom" if device[0] else "png",
                    file=f"bench/{len(images)}",
                    sha256="0" * 64,
                    ai_eligibility="eligible",
                    manufacturer=device[0],
                    manufacturer_model_name=device[1],
                    patient_age_years=age,
                    view_position=rng.choice(["PA", "AP", ""]),
                )
            )
    images = _bulk(Image, images)
    predictions = []
    for image in images:
        sick = truths[image.study_id]
        probability = min(max(rng.betavariate(4, 2) if sick else rng.betavariate(2, 4), 0.0), 1.0)
        domain = AiDomain.OUTSIDE_DOMAIN if rng.random() < 0.04 else AiDomain.IN_DOMAIN
        for model in (version, other) if rng.random() < 0.2 else (version,):
            predictions.append(
                Prediction(
                    image=image,
                    model_version=model,
                    preprocessing_version="p",
                    status=PredictionStatus.SUCCEEDED,
                    probability=probability,
                    threshold=0.5,
                    domain=domain,
                    ai_mode=modes[image.study_id],
                    finished_at=now,
                )
            )
        if rng.random() < 0.01:  # re-run with a newer preprocessing: the older result must not count
            predictions.append(
                Prediction(
                    image=image,
                    model_version=version,
                    preprocessing_version="p-old",
                    status=PredictionStatus.SUCCEEDED,
                    probability=rng.random(),
                    threshold=0.5,
                    domain=domain,
                    ai_mode=modes[image.study_id],
                    finished_at=now - timedelta(days=40),
                )
            )
    _bulk(Prediction, predictions)
    reviews = []
    for study in studies:
        roll = rng.random()
        finding = "indeterminate" if roll < 0.03 else "pneumonia" if truths[study.pk] else "no_pneumonia"
        signed = now - timedelta(minutes=rng.randint(1, 60 * 24 * 30))
        reviews.append(
            Review(
                study=study,
                radiologist=rad,
                finding=finding,
                agreement="agree",
                ai_mode=modes[study.pk],
                signed_at=signed,
            )
        )
    reviews = _bulk(Review, reviews)
    amendments = [
        Review(
            study_id=r.study_id,
            radiologist=rad,
            finding=r.finding,
            agreement="agree",
            version=2,
            supersedes=r,
            amendment_reason="Second look",
            ai_mode=r.ai_mode,
            signed_at=r.signed_at + timedelta(hours=1),
        )
        for r in reviews
        if rng.random() < 0.05
    ]
    _bulk(Review, amendments)
    return {"site": demo, "version": version, "admin": admin, "studies": len(studies), "images": len(images)}


def _timed(call, runs: int) -> dict:
    from django.db import connection, reset_queries
    from django.test.utils import CaptureQueriesContext

    call()  # warm-up
    samples, queries = [], set()
    for _ in range(runs):
        # Filling the database logged more queries than the log keeps (9,000), which would count as none.
        reset_queries()
        with CaptureQueriesContext(connection) as captured:
            start = time.perf_counter()
            result = call()
            samples.append((time.perf_counter() - start) * 1000)
        queries.add(len(captured))
    return {
        "median_ms": round(statistics.median(samples), 1),
        "max_ms": round(max(samples), 1),
        "queries": sorted(queries),
        "runs": runs,
        "result": result,
    }


def _admin_login(client, admin) -> None:
    """A signed-in admin's session with its second factor verified, as after the verification page."""
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    client.force_login(admin)
    device = TOTPDevice.objects.create(user=admin, name="bench", confirmed=True)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()


def run(args: argparse.Namespace, where: str) -> dict:
    from django.db import connection
    from django.test import Client

    from cases.validation import validation_report

    started = time.perf_counter()
    data = populate(args.studies)
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("ANALYZE")  # as autovacuum would have by now on a live database
    built_s = time.perf_counter() - started
    print(f"{data['studies']} signed studies, {data['images']} images, in {where}; built in {built_s:.1f} s")
    selector = _timed(lambda: validation_report(site=data["site"], model_version=data["version"]), args.runs)
    print(f"validation_report (selector): median {selector['median_ms']} ms, queries {selector['queries']}")
    client = Client()
    _admin_login(client, data["admin"])
    url = f"/api/v1/validation/?site=DEMO&model={data['version'].name}"
    request = _timed(lambda: client.get(url), args.runs)
    assert request["result"].status_code == 200, request["result"].content[:300]
    report = selector.pop("result")
    request.pop("result")
    summary = {k: report[k] for k in ("n", "positives", "indeterminate", "auc", "auc_ci", "sensitivity")}
    summary["by_mode"] = {g["group"]: {"n": g["n"], "auc": g["auc"]} for g in report["by_mode"]}
    return {
        "database": where,
        "studies": data["studies"],
        "built_s": round(built_s, 1),
        "results": {"validation_report (selector)": selector, "GET /api/v1/validation/": request},
        "report": summary,
    }


def _own_postgres_database() -> tuple[str, str]:
    """Create ``bench_validation_<pid>`` beside the configured database; returns (its name, the old name)."""
    from django.db import connection

    name = f"bench_validation_{os.getpid()}"
    with connection.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    old = connection.settings_dict["NAME"]
    connection.close()
    connection.settings_dict["NAME"] = name
    return name, old


def _drop_postgres_database(name: str, old: str) -> None:
    from django.db import connection

    connection.close()
    connection.settings_dict["NAME"] = old
    with connection.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--studies", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5, help="timed calls per case, after one warm-up")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args()
    where, postgres = configure()

    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    settings.ALLOWED_HOSTS = [*settings.ALLOWED_HOSTS, "testserver"]
    own = _own_postgres_database() if postgres else None
    try:
        call_command("migrate", verbosity=0)
        report = run(args, where)
    finally:
        if own:
            _drop_postgres_database(*own)
    width = max(len(k) for k in report["results"])
    print(f"{'case':<{width}}  median ms    max ms  queries")
    for case, r in report["results"].items():
        print(f"{case:<{width}}  {r['median_ms']:>9.1f} {r['max_ms']:>9.1f}  {','.join(map(str, r['queries']))}")
    print("report:", json.dumps(report["report"]))
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
