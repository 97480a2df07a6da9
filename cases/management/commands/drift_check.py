from __future__ import annotations

from datetime import date

from django.core.management.base import BaseCommand, CommandError

from cases.drift import drift_check


class Command(BaseCommand):
    help = (
        "Check each site and model's daily agreement with radiologists and outside-domain share, opening drift "
        "alarms where the rules call for one (default: yesterday, as the daily beat task does)."
    )

    def add_arguments(self, parser) -> None:
        parser.add_argument("--day", help="The day to check, YYYY-MM-DD (default: yesterday)")

    def handle(self, *args, day: str | None, **options) -> None:
        try:
            checked = date.fromisoformat(day) if day else None
        except ValueError:
            raise CommandError(f"--day must be a date as YYYY-MM-DD, not {day!r}") from None
        alarms = drift_check(day=checked)
        for alarm in alarms:
            self.stdout.write(f"opened: {alarm.kind} alarm for {alarm.model_version.name} at {alarm.site.code}")
        self.stdout.write(f"total: {len(alarms)} opened")
