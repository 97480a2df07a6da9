"""A simulated month of shadow mode at one site, read by the real models, then its local validation report.

    .venv/bin/python bench/local_validation_month.py ../shared/data [--paediatric 300] [--days 30] [--json out.json]

Builds a throw-away site (SQLite in a temporary folder) with both shipped versions active and the site in shadow
mode, sends it a month of studies as a modality would (DICOM built from real films: the adult version's own
validation split of ``nih-adult-512`` with the manifest's ages, sexes and views, and a sample of the paediatric
version's validation split of ``kermany-224/train`` as 1 to 5-year-olds), runs each prediction through the worker's
code path in this process (ingest, routing, the served LiteRT models, the scope checks), signs each study as a
radiologist blind to the AI with the data set's label as the finding, and prints each version's validation report
at the site. Then it sets each version's site threshold at the report's suggestion (the evidence checked as the
API checks it) and switches the site to live.

Read the figures for what they are: these films are the versions' own validation splits, on which their
thresholds were chosen, and the labels are the data sets' (report-mined for the adults), not a local reader's.
The point is the workflow a hospital follows, end to end on real pixels; its own month gives its own figures.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(REPO_ROOT)

import argparse  # noqa: E402
import csv  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import random  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from datetime import datetime, timedelta  # noqa: E402
from datetime import time as clock  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image as PilImage  # noqa: E402

DEVICES = [("ACME", "RX-1"), ("Kodak", "DR 7500"), ("Fujifilm", "FDR D-EVO")]
ADULT, PAEDIATRIC = "pneumo-xception224-adult-v1", "pneumo-xception224-cal-v2"


def configure() -> str:
    folder = tempfile.mkdtemp(prefix="pneumo-month-")
    os.environ.setdefault("DEBUG", "1")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pneumo.settings")
    os.environ["DATABASE_URL"] = f"sqlite:///{folder}/month.sqlite3"
    os.environ["MEDIA_ROOT"] = f"{folder}/media"
    return folder


def films(data: Path, paediatric: int, seed: int) -> list[dict]:
    """The films of the month: (path, finding, age, sex, view), shuffled over its days."""
    rng = random.Random(seed)
    adult_rows = {row["path"]: row for row in csv.DictReader((data / "nih-adult-512" / "manifest.csv").open())}
    chosen = []
    for version, folder in ((ADULT, data / "nih-adult-512"), (PAEDIATRIC, data / "kermany-224" / "train")):
        manifest = json.loads((REPO_ROOT / "models" / version / "manifest.json").read_text())
        paths = manifest["split"]["validation_paths"]
        if version == PAEDIATRIC:
            paths = rng.sample(paths, min(paediatric, len(paths)))
        for path in paths:
            row = adult_rows.get(path, {})
            chosen.append(
                {
                    "path": folder / path,
                    "pneumonia": path.startswith("PNEUMONIA"),
                    "age": float(row["age"]) if row else rng.uniform(1, 5.9),
                    "sex": row.get("sex") or rng.choice("FM"),
                    "view": row.get("view") or "AP",
                    "device": rng.choice(DEVICES),
                }
            )
    rng.shuffle(chosen)
    return chosen


def dicom_of(film: dict, index: int) -> bytes:
    from tests.dicom_factory import make_dicom

    with PilImage.open(film["path"]) as picture:
        pixels = np.asarray(picture.convert("L"))
    years = int(film["age"])
    return make_dicom(
        pixels,
        shape=pixels.shape,
        patient_id=f"MONTH{index:05d}",
        patient_name=f"MONTH^{index:05d}",
        sex=film["sex"],
        patient_age=f"{years:03d}Y",
        view=film["view"],
        accession_number=f"M{index:06d}",
        extra={"Manufacturer": film["device"][0], "ManufacturerModelName": film["device"][1]},
    )


def month(site, rad, chosen: list[dict], days: int) -> dict:
    """Ingest, predict and sign each film; returns counts and timings."""
    from django.utils import timezone

    from cases.ingest import IncomingFile, studies_ingest
    from cases.models import Finding, Review
    from cases.reviews import ReadingInput, review_sign
    from inference.models import Prediction
    from inference.services import prediction_run

    first = timezone.localdate() - timedelta(days=days)
    started = time.perf_counter()
    for index, film in enumerate(chosen):
        report = studies_ingest(files=[IncomingFile(f"film{index}.dcm", dicom_of(film, index))], site=site, user=None)
        (study_id,) = report.study_ids
        for prediction_id in Prediction.objects.filter(image__study_id=study_id).values_list("pk", flat=True):
            prediction_run(prediction_id=prediction_id)
        finding = Finding.PNEUMONIA if film["pneumonia"] else Finding.NO_PNEUMONIA
        review = review_sign(study_id=study_id, user=rad, reading=ReadingInput(finding=finding))
        day = first + timedelta(days=index % days)
        signed = timezone.make_aware(datetime.combine(day, clock(15)))
        Review.objects.filter(pk=review.pk).update(signed_at=signed)
    return {"studies": len(chosen), "seconds": round(time.perf_counter() - started, 1)}


def _pct(value) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _ci(values) -> str:
    return "-" if not values else f"[{_pct(values[0])}, {_pct(values[1])}]"


def summary(report: dict) -> list[str]:
    lines = [
        f"{report['model']} at {report['site']}: n {report['n']} ({report['positives']} pneumonia), "
        f"indeterminate {report['indeterminate']}, threshold in force {report['threshold']:.4f}",
        f"  AUC {report['auc']:.4f} {_ci(report['auc_ci'])} (DeLong); confusion [[tn, fp], [fn, tp]] "
        f"{report['confusion_matrix']}",
        f"  sensitivity {_pct(report['sensitivity'])} % {_ci(report['sensitivity_ci'])}, specificity "
        f"{_pct(report['specificity'])} % {_ci(report['specificity_ci'])}, PPV {_pct(report['ppv'])} %, "
        f"NPV {_pct(report['npv'])} % (Wilson 95 %)",
        f"  suggested threshold for sensitivity 0.95: {report['suggested_threshold']}, specificity there "
        f"{_pct(report['suggested_specificity'])} %",
    ]
    for split in ("by_view", "by_age_band", "by_device", "by_domain", "by_mode"):
        groups = ", ".join(
            f"{g['group']} n={g['n']} AUC={'-' if g['auc'] is None else round(g['auc'], 3)} "
            f"sens={_pct(g['sensitivity'])} spec={_pct(g['specificity'])}"
            for g in report[split]
            if g["n"]
        )
        lines.append(f"  {split}: {groups}")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("data", type=Path, help="the shared data folder (with nih-adult-512 and kermany-224)")
    parser.add_argument("--paediatric", type=int, default=300, help="films from the paediatric validation split")
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the reports and thresholds here")
    args = parser.parse_args()
    folder = configure()
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    call_command("prepare_models", verbosity=0)
    from django.contrib.auth.models import Group

    from cases.ai_modes import site_ai_mode_set
    from cases.models import Site, User
    from cases.validation import validation_report
    from inference.models import ModelVersion
    from inference.thresholds import SiteThresholdRefused, site_threshold_set

    site = Site.objects.create(code="PILOT", name="Pilot hospital")
    admin = User.objects.create_user("month-admin", is_staff=True)
    rad = User.objects.create_user("month-rad")
    rad.groups.add(Group.objects.get_or_create(name="Radiologist")[0])
    rad.sites.add(site)
    site = site_ai_mode_set(site=site, mode="shadow", user=admin)
    print(f"site PILOT in {site.ai_mode} mode; database in {folder}")

    chosen = films(args.data, args.paediatric, args.seed)
    done = month(site, rad, chosen, args.days)
    print(f"{done['studies']} studies ingested, predicted and signed blind in {done['seconds']} s")

    out: dict = {"month": done, "reports": {}, "thresholds": {}}
    for name in (ADULT, PAEDIATRIC):
        version = ModelVersion.objects.get(name=name)
        started = time.perf_counter()
        report = validation_report(site=site, model_version=version)
        took = time.perf_counter() - started
        print("\n".join(summary(report)) + f"\n  (report in {1000 * took:.0f} ms)")
        out["reports"][name] = report
        try:
            chosen_threshold = site_threshold_set(
                site=site, version=version, threshold=report["suggested_threshold"], reason="", user=admin
            )
        except SiteThresholdRefused as refused:
            print(f"  site threshold refused: {refused}")
            continue
        evidence = chosen_threshold.evidence
        print(
            f"  site threshold set at {chosen_threshold.threshold:.4f} (evidence sufficient: "
            f"{chosen_threshold.evidence_sufficient}; agreement {_pct(evidence['agreement'])} % "
            f"{_ci(evidence['agreement_ci'])})"
        )
        out["thresholds"][name] = {"threshold": chosen_threshold.threshold, "agreement_ci": evidence["agreement_ci"]}
    site = site_ai_mode_set(site=site, mode="live", user=admin)
    print(f"site PILOT now {site.ai_mode}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2, default=str))


if __name__ == "__main__":
    main()
