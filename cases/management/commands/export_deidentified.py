"""Export a site's studies de-identified and labelled, for teaching, validation and retraining.

    python manage.py export_deidentified --site DEMO --signed --since 2026-01-01 --out /exports/demo-2026

Prints where each left-out or undeclared image is listed, and a summary.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from cases.export import ExportError, deidentified_export, studies_for_export
from cases.models import Site


class Command(BaseCommand):
    help = (
        "Write a site's images de-identified (PS3.15 Basic Profile, modified dates) "
        "under NORMAL/, PNEUMONIA/ and UNLABELLED/, with manifest.csv, excluded.csv and undeclared.csv."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--site", required=True, help="site code, e.g. DEMO")
        parser.add_argument(
            "--signed", action="store_true", help="only studies whose latest signed finding is pneumonia or not"
        )
        parser.add_argument("--since", type=date.fromisoformat, help="only studies received on or after YYYY-MM-DD")
        parser.add_argument("--out", required=True, type=Path, help="a new or empty folder")

    def handle(self, *args, **options) -> None:
        site = Site.objects.filter(code=options["site"]).first()
        if site is None:
            raise CommandError(f"No site with code {options['site']!r}")
        studies = studies_for_export(site=site, signed_only=options["signed"], since=options["since"])
        try:
            report = deidentified_export(studies=studies, out_dir=options["out"], signed_only=options["signed"])
        except ExportError as error:
            raise CommandError(str(error)) from None
        for row in report.excluded:
            self.stdout.write(f"left out   image {row.image_id} study {row.study_id}: {row.reason}")
        for row in report.undeclared:
            self.stdout.write(f"undeclared image {row.image_id} study {row.study_id}: {row.path}")
        self.stdout.write(
            f"summary: {report.studies} studies, {report.exported} images exported, "
            f"{len(report.excluded)} left out (excluded.csv), {len(report.undeclared)} undeclared (undeclared.csv) "
            f"in {report.out_dir}"
        )
