"""Bulk import from files, folders and zip files (a PACS export, a CD).

Prints one line per file and a summary; exits 0 when nothing was refused and 1
when something was. Bad input never crashes it: any other status is a bug.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from cases.ingest import FileOutcome, IncomingFile, studies_ingest
from cases.models import Priority, Site


def _walk(paths: list[str]) -> Iterator[tuple[str, Path]]:
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            for root, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    yield str(Path(root, name)), Path(root, name)
        else:
            yield raw, path


class Command(BaseCommand):
    help = "Import DICOM, PNG and JPEG files, folders and zip files into a site."

    def add_arguments(self, parser) -> None:
        parser.add_argument("paths", nargs="+")
        parser.add_argument("--site", required=True, help="site code, e.g. DEMO")
        parser.add_argument("--priority", default=Priority.ROUTINE, choices=Priority.values)

    def handle(self, *args, **options) -> None:
        site = Site.objects.filter(code=options["site"]).first()
        if site is None:
            raise CommandError(f"No site with code {options['site']!r}")
        counts = {"stored": 0, "duplicate": 0, "refused": 0, "skipped": 0}
        for name, path in _walk(options["paths"]):
            for outcome in self._import_one(name, path, site, options["priority"]):
                counts[outcome.status] += 1
                reason = f": {outcome.reason}" if outcome.reason else ""
                study = f" (study {outcome.study_id})" if outcome.study_id else ""
                self.stdout.write(f"{outcome.status:<9} {outcome.name}{study}{reason}")
        self.stdout.write(
            f"summary: {counts['stored']} stored, {counts['duplicate']} duplicate, {counts['refused']} refused, "
            f"{counts['skipped']} skipped"
        )
        if counts["refused"]:
            sys.exit(1)

    def _import_one(self, name: str, path: Path, site: Site, priority: str) -> list[FileOutcome]:
        # Read when ingest reaches it, within the size limit: a huge file is refused, not loaded.
        incoming = IncomingFile.from_path(name, path)
        return studies_ingest(files=[incoming], site=site, user=None, priority=priority).files
