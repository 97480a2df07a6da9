"""Run every image under a folder through the worker's scope decisions and count the outcomes."""

from __future__ import annotations

import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from inference.models import ModelVersion
from inference.registry import ModelFileMismatch, ModelNotReady
from inference.scope import OUTCOMES, ScopeReport, scope_report_make


class Command(BaseCommand):
    help = (
        "Every file under FOLDER that is a DICOM, PNG or JPEG by its content, decoded as uploads are: "
        "how many the metadata refuses (not_eligible) and how many the active model's scope checks find "
        "in_domain, outside_domain or not_chest_xray; lists the undecodable files."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("folder", type=Path)
        parser.add_argument(
            "--model", help="judge every file with this version (default: each routed as the site routes it)"
        )
        parser.add_argument("--json", type=Path, help="write the report here as JSON")

    def handle(self, *args, **options) -> None:
        folder: Path = options["folder"]
        if not folder.is_dir():
            raise CommandError(f"{folder} is not a folder")
        version = self._version(options["model"]) if options["model"] else None
        try:
            report = scope_report_make(root=folder, version=version)
        except (ModelNotReady, ModelFileMismatch) as exc:
            raise CommandError(str(exc)) from exc
        self._print(report, version)
        if options["json"]:
            options["json"].write_text(json.dumps(report.as_json(), indent=2))

    def _version(self, name: str) -> ModelVersion:
        version = ModelVersion.objects.filter(name=name).first()
        if version is None:
            raise CommandError(f"no model version {name!r}")
        return version

    def _print(self, report: ScopeReport, version: ModelVersion | None) -> None:
        data = report.as_json()
        self.stdout.write(f"model           {version.name if version else 'routed: ' + ', '.join(data['routed'])}")
        self.stdout.write(f"files examined  {data['n']}")
        for outcome in OUTCOMES:
            self.stdout.write(f"{outcome:<15} {data['counts'][outcome]}")
        self.stdout.write(f"undecodable     {data['undecodable']}")
        for row in data["undecodable_files"]:
            self.stdout.write(f"  {row['path']}: {row['reason']}")
