"""Production configuration, headers, lockout, idle logoff and log scrubbing."""

from __future__ import annotations

import logging
import os
import secrets
import subprocess
import sys

import pytest
from django.conf import settings as django_settings
from django.urls import reverse

from cases.log_scrubbing import ScrubPatientDataFilter, scrub
from cases.middleware import SESSION_KEY


def test_it_passes_the_deploy_check_with_only_the_three_production_variables() -> None:
    env = {
        "PATH": os.environ["PATH"],
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "pneumo.example.org",
    }
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=django_settings.BASE_DIR,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_it_sends_the_security_headers(client, db) -> None:
    response = client.get(reverse("login"))
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
    assert response["X-Frame-Options"] == "DENY"
    assert response["X-Content-Type-Options"] == "nosniff"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["Cross-Origin-Opener-Policy"] == "same-origin"


def test_it_issues_a_new_session_key_at_login(client, tech) -> None:
    client.get(reverse("login"))
    client.cookies["sessionid"] = "attacker-chosen"
    client.post(reverse("login"), {"username": "tech", "password": "correct-horse-battery"})
    assert client.cookies["sessionid"].value != "attacker-chosen"


def test_it_locks_a_user_out_after_five_failures_from_one_address(client, tech) -> None:
    for _ in range(5):
        client.post(reverse("login"), {"username": "tech", "password": "wrong-password-x"})
    response = client.post(reverse("login"), {"username": "tech", "password": "correct-horse-battery"})
    assert response.status_code in (403, 429) and b"Too many failed" in response.content
    assert "_auth_user_id" not in client.session


def test_it_does_not_lock_out_the_same_user_from_another_address(client, tech) -> None:
    for _ in range(5):
        client.post(reverse("login"), {"username": "tech", "password": "wrong-password-x"}, REMOTE_ADDR="10.9.9.9")
    response = client.post(
        reverse("login"), {"username": "tech", "password": "correct-horse-battery"}, REMOTE_ADDR="10.9.9.10"
    )
    assert response.status_code == 302


def test_it_logs_out_after_the_idle_time(client, tech, settings) -> None:
    client.force_login(tech)
    assert client.get(reverse("studies")).status_code == 200
    session = client.session
    session[SESSION_KEY] -= settings.PNEUMO_IDLE_LOGOUT_SECONDS + 1
    session.save()
    response = client.get(reverse("studies"))
    assert response.status_code == 302 and "idle=1" in response["Location"]


def test_it_does_not_count_background_refreshes_as_activity(client, tech, settings) -> None:
    client.force_login(tech)
    client.get(reverse("studies"))
    session = client.session
    session[SESSION_KEY] -= settings.PNEUMO_IDLE_LOGOUT_SECONDS - 5
    session.save()
    stamp = client.session[SESSION_KEY]
    assert client.get(reverse("study_statuses"), HTTP_X_PNEUMO_BACKGROUND="1").status_code == 200
    assert client.session[SESSION_KEY] == stamp


@pytest.mark.parametrize(
    "line",
    [
        '127.0.0.1 "GET /worklist/?q=Doe%5EJane" 200',
        "upload for patient_name=Jane Doe&patient_id=MRN123",
        "DICOM name DOE^JANE^M arrived",
    ],
)
def test_it_scrubs_patient_data_from_log_lines(line: str) -> None:
    cleaned = scrub(line)
    assert "Jane" not in cleaned and "JANE" not in cleaned and "MRN123" not in cleaned


def test_it_scrubs_log_records_through_the_filter() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "patient %s", ("patient_id=MRN555",), None)
    ScrubPatientDataFilter().filter(record)
    assert "MRN555" not in record.getMessage()
