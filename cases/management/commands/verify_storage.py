from __future__ import annotations

import sys

from django.core.management.base import BaseCommand

from cases.integrity import storage_verify


class Command(BaseCommand):
    help = "Re-hash stored files; report missing, changed and orphaned files (exit 1 if any) and purged ones (apart)."

    def handle(self, *args, **options) -> None:
        report = storage_verify()
        for pk in report.missing:
            self.stdout.write(f"missing  image {pk}")
        for pk in report.changed:
            self.stdout.write(f"changed  image {pk}")
        for name in report.orphans:
            self.stdout.write(f"orphan   {name}")
        for pk in report.purged:
            self.stdout.write(f"purged   image {pk} (deleted by retention policy)")
        self.stdout.write(
            f"summary: {report.checked} checked, {len(report.missing)} missing, "
            f"{len(report.changed)} changed, {len(report.orphans)} orphaned, {len(report.purged)} purged"
        )
        if not report.clean:
            sys.exit(1)
