from __future__ import annotations

from django.core.management.base import BaseCommand

from inference.services import predictions_sweep


class Command(BaseCommand):
    help = "Re-queue predictions left pending or running past their lease (what Celery beat runs)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--pending-after", type=int, default=300, help="seconds a queued message may wait")

    def handle(self, *args, **options) -> None:
        sent = predictions_sweep(pending_after_seconds=options["pending_after"])
        self.stdout.write(f"re-queued {sent} prediction(s)")
