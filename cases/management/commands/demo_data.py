from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from cases.demo import (
    DEMO_STUDIES,
    demo_admin_totp_ensure,
    demo_predictions_wait,
    demo_reviews_sign,
    demo_studies_ensure,
    demo_users_ensure,
)


class Command(BaseCommand):
    help = (
        "Create the demo sites (DEMO, NORTH) and users (admin, tech, rad, rad2); reset their passwords. "
        "With --studies, also load the demo studies (unless PNEUMO_DEMO_STUDIES=0), wait for the worker's "
        "AI results and sign a few."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--studies", action="store_true", help="also load, predict and sign the demo studies")
        parser.add_argument(
            "--wait",
            type=float,
            default=120.0,
            help="seconds to wait for the worker's AI results before signing (default 120)",
        )

    def handle(self, *args, **options) -> None:
        logins = demo_users_ensure(password=settings.PNEUMO_DEMO_PASSWORD)
        for username, password in logins.items():
            self.stdout.write(f"login {username} {password}")
        secret, code = demo_admin_totp_ensure()
        self.stdout.write(f"totp admin {secret} {code}")
        if not options["studies"]:
            return
        if not settings.PNEUMO_DEMO_STUDIES:
            self.stdout.write("demo studies skipped (PNEUMO_DEMO_STUDIES=0)")
            return
        self._studies(wait=options["wait"])

    def _studies(self, *, wait: float) -> None:
        report = demo_studies_ensure()
        if report is not None:
            refused = [f"{f.name}: {f.reason}" for f in report.files if f.status == "refused"]
            stored = len(report.files) - len(refused)
            self.stdout.write(f"demo studies: {stored} stored" + "".join(f"\n  refused {r}" for r in refused))
        if not demo_predictions_wait(timeout=wait):
            self.stdout.write(f"demo studies: the AI is still at work after {wait:g} s; some are not signed yet")
        signed = demo_reviews_sign()
        self.stdout.write(f"demo studies: {len(DEMO_STUDIES)} in all, {len(signed)} signed now")
