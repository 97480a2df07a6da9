"""DEBUG's technical error page (what `make run` shows) names no password of a connection string."""

from __future__ import annotations

import pytest
from django.test import Client

from cases import selectors

DATABASE_URL = "postgres://pneumo:Db-Pw-Quokka7@db.internal:5432/pneumo"
BROKER_URL = "redis://:Broker-Pw-Wombat3@redis.internal:6379/0"
PASSWORDS = ("Db-Pw-Quokka7", "Broker-Pw-Wombat3")


@pytest.mark.django_db
def test_it_shows_no_connection_password_on_the_debug_error_page(settings, admin_user, monkeypatch) -> None:
    # Given DEBUG, and settings whose connection strings carry passwords
    settings.DEBUG = True
    settings.DATABASE_URL = DATABASE_URL
    settings.REDIS_URL = settings.CELERY_BROKER_URL = BROKER_URL

    def boom(*, user):
        broker = BROKER_URL  # a variable of the failing code holds one too
        raise RuntimeError(f"the broker went away for {user} ({len(broker)})")

    monkeypatch.setattr(selectors, "sites_for_user", boom)
    client = Client(raise_request_exception=False)
    client.force_login(admin_user)

    # When a request fails, with a header that names a connection string as well
    response = client.get("/api/v1/sites/", HTTP_X_UPSTREAM=DATABASE_URL)

    # Then the technical page lists the settings and the variables, without the passwords
    page = response.content.decode()
    assert response.status_code == 500
    assert "DATABASE_URL" in page and "CELERY_BROKER_URL" in page and "the broker went away" in page
    assert "broker" in page and "HTTP_X_UPSTREAM" in page
    assert [password for password in PASSWORDS if password in page] == []
