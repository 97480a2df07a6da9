from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from cases.backup import BackupError, backup_restore


class Command(BaseCommand):
    help = (
        "Restore a backup written by `backup` into an empty database (a new SQLite file, or an empty "
        "PostgreSQL database) and empty storage; refuses, changing nothing, a non-empty target, a damaged "
        "backup or one made by a newer release."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("directory", type=Path)

    def handle(self, *args, directory: Path, **options) -> None:
        try:
            report = backup_restore(source=directory)
        except BackupError as error:
            raise CommandError(str(error)) from error
        for name in report.missing:
            self.stderr.write(f"missing when the backup was made (not restored): {name}")
        self.stdout.write(f"restored: {directory} ({report.files} files); run verify_storage to check them")
