from __future__ import annotations

from django.conf import settings
from django.core.management.base import BaseCommand

from cases.services import demo_data_ensure


class Command(BaseCommand):
    help = "Create the demo sites (DEMO, NORTH) and users (admin, tech, rad, rad2); reset their passwords."

    def handle(self, *args, **options) -> None:
        logins = demo_data_ensure(password=settings.PNEUMO_DEMO_PASSWORD)
        for username, password in logins.items():
            self.stdout.write(f"login {username} {password}")
