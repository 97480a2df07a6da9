from __future__ import annotations

from django.core.management.base import BaseCommand

from cases.retention import image_purge, images_due_for_retention


class Command(BaseCommand):
    help = (
        "Delete the image files of reported studies past their site's retention period "
        "(the study, its results, reports and audit trail stay); --dry-run only lists them."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--dry-run", action="store_true", help="List the files that are due; delete nothing")

    def handle(self, *args, dry_run: bool, **options) -> None:
        purged = 0
        for item in images_due_for_retention():
            if dry_run or image_purge(image_id=item.image_id):
                self.stdout.write(item.line())
                purged += 1
        self.stdout.write(f"total: {purged} {'due' if dry_run else 'purged'}")
