from __future__ import annotations

import pytest
from django.urls import reverse

from cases.models import AuditEvent


def test_it_answers_health_with_the_state_of_each_part(client, db) -> None:
    response = client.get("/health/")
    assert response.status_code == 200
    body = response.json()
    assert body["database"] is True and set(body) >= {"broker", "workers", "worker_ready"}


def test_it_reports_503_when_the_database_is_down(client, monkeypatch) -> None:
    monkeypatch.setattr("cases.views._database_ok", lambda: False)
    assert client.get("/health/").status_code == 503


@pytest.mark.parametrize(("who", "page"), [("tech", "upload"), ("rad", "worklist"), ("admin_user", "otp_enrol")])
def test_it_logs_each_role_in_over_the_form_and_lands_on_its_page(request, client, who, page) -> None:
    # An admin's password alone never reaches an admin's page: first the second factor (here, enrolling one).
    user = request.getfixturevalue(who)
    response = client.post(
        reverse("login"), {"username": user.username, "password": "correct-horse-battery"}, follow=True
    )
    assert response.redirect_chain[-1][0].split("?")[0] == reverse(page)
    assert AuditEvent.objects.filter(action="login", user=user).count() == 1


def test_it_gives_the_same_message_for_unknown_users_and_wrong_passwords(client, tech) -> None:
    wrong = client.post(reverse("login"), {"username": "tech", "password": "nope-nope-nope"})
    unknown = client.post(reverse("login"), {"username": "nobody", "password": "nope-nope-nope"})
    assert wrong.status_code == unknown.status_code == 200
    assert b"didn't match" in wrong.content and b"didn't match" in unknown.content
    assert AuditEvent.objects.filter(action="login_failed").count() == 2


def test_it_sends_anonymous_users_to_the_login_page(client, db) -> None:
    response = client.get("/")
    assert response.status_code == 302 and response["Location"].startswith(reverse("login"))


def test_it_shows_navigation_by_role(client, tech, rad) -> None:
    client.force_login(tech)
    page = client.get(reverse("studies")).content.decode()
    assert 'href="/upload/"' in page and 'href="/worklist/"' not in page
    client.force_login(rad)
    page = client.get(reverse("studies")).content.decode()
    assert 'href="/worklist/"' in page and 'href="/upload/"' not in page


def test_it_exposes_prometheus_metrics_to_the_scraper_and_admins_only(client, settings, admin_user, rad) -> None:
    settings.PNEUMO_METRICS_TOKEN = "scrape-secret"
    assert client.get("/metrics").status_code == 404
    response = client.get("/metrics", HTTP_AUTHORIZATION="Bearer scrape-secret")
    body = response.content.decode()
    assert response.status_code == 200
    for name in (
        "pneumo_queue_length",
        'pneumo_predictions{status="failed"}',
        "pneumo_workers_alive",
        'pneumo_prediction_latency_seconds{quantile="0.5"}',
        'pneumo_studies{status="reported"}',
    ):
        assert name in body
    client.force_login(rad)
    assert client.get("/metrics").status_code == 404
    client.force_login(admin_user)
    assert client.get("/metrics").status_code == 200
