from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from cases.backup import BackupError, backup_write


class Command(BaseCommand):
    help = (
        "Write a consistent backup into DIR (new or empty): the database, the stored files it references and "
        "manifest.json with their sha256; encrypted when PNEUMO_BACKUP_KEY_FILE is set."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("directory", type=Path)

    def handle(self, *args, directory: Path, **options) -> None:
        try:
            report = backup_write(target=directory)
        except BackupError as error:
            raise CommandError(str(error)) from error
        for name in report.missing:
            self.stderr.write(f"missing before the backup (not in it): {name}")
        self.stdout.write(
            f"backup: {directory} ({report.files} files, {report.bytes} bytes"
            f"{', encrypted' if report.encrypted else ''})"
        )
