"""The admins' second factor: TOTP with recovery codes (django-otp), on the pages, the admin site and the API.

Admins log in here through the login page with their password, as people do, so nothing is verified for
them (tests/conftest.py verifies the second factor only for ``force_login``).
"""

from __future__ import annotations

import re

import pytest
from axes.models import AccessAttempt
from django.test import Client
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from cases.models import AuditEvent, User
from cases.otp.services import recovery_codes_new
from tests.conftest import totp_code

PASSWORD = "correct-horse-battery"
TOKEN_URL = "/api/v1/auth/token/"


def _password_login(client: Client, user: User) -> None:
    response = client.post("/accounts/login/", {"username": user.username, "password": PASSWORD})
    assert response.status_code == 302, response.content[:300]


@pytest.fixture
def enrolled_admin(admin_user) -> TOTPDevice:
    return TOTPDevice.objects.create(user=admin_user, name="phone", confirmed=True)


def _verify(client: Client, code: str):
    return client.post("/accounts/otp/verify/", {"otp": code, "next": "/admin/"})


# --- Pages -----------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_keeps_an_admin_with_a_password_alone_out_of_the_admin_and_the_audit_export(client, enrolled_admin) -> None:
    _password_login(client, enrolled_admin.user)

    for url in ("/admin/", "/admin/cases/user/", "/audit/export.csv", "/studies/"):
        response = client.get(url)
        assert response.status_code == 302, url
        assert response["Location"].startswith("/accounts/otp/verify/?next="), url
    assert client.get("/api/v1/studies/").json()["otp_required"] is True


@pytest.mark.django_db
def test_it_lets_an_admin_in_with_a_valid_totp_code(client, enrolled_admin) -> None:
    _password_login(client, enrolled_admin.user)

    response = _verify(client, totp_code(enrolled_admin))

    assert response.status_code == 302 and response["Location"] == "/admin/"
    assert client.get("/admin/").status_code == 200
    assert client.get("/audit/export.csv").status_code == 200
    assert AuditEvent.objects.filter(action="otp_verified", user=enrolled_admin.user).exists()


@pytest.mark.django_db
def test_it_counts_wrong_codes_towards_the_lockout(client, enrolled_admin, settings) -> None:
    settings.AXES_FAILURE_LIMIT = 3
    _password_login(client, enrolled_admin.user)

    assert _verify(client, "000000").status_code == 400
    assert _verify(client, "111111").status_code == 400
    locked = _verify(client, "222222")

    assert locked.status_code == 429
    assert AccessAttempt.objects.get(username="admin").failures_since_start == 3
    assert AuditEvent.objects.filter(action="login_failed", username="admin").count() == 3
    assert client.get("/admin/").status_code == 302  # still not verified


@pytest.mark.django_db
def test_it_enrols_an_admin_with_a_qr_code_then_shows_recovery_codes_once(client, admin_user) -> None:
    _password_login(client, admin_user)
    assert client.get("/admin/")["Location"].startswith("/accounts/otp/enrol/")

    page = client.get("/accounts/otp/enrol/?next=/admin/").content.decode()
    assert 'src="data:image/svg+xml;base64,' in page
    secret = re.search(r'<code id="otp-secret">([A-Z2-7]+)</code>', page).group(1)
    device = TOTPDevice.objects.get(user=admin_user, confirmed=False)
    assert secret and client.get("/accounts/otp/enrol/").content.decode().count(secret) == 1  # same key on reload

    done = client.post("/accounts/otp/enrol/", {"otp": totp_code(device), "next": "/admin/"})

    assert done.status_code == 200
    assert len(re.findall(r"<li><code>[0-9a-f]{10}</code></li>", done.content.decode())) == 10
    assert client.get("/admin/").status_code == 200
    assert AuditEvent.objects.filter(action="otp_enrolled", user=admin_user).exists()


@pytest.mark.django_db
def test_it_refuses_a_wrong_code_at_enrolment(client, admin_user) -> None:
    _password_login(client, admin_user)

    response = client.post("/accounts/otp/enrol/", {"otp": "123456"})

    assert response.status_code == 400
    assert not TOTPDevice.objects.filter(user=admin_user, confirmed=True).exists()


@pytest.mark.django_db
def test_it_accepts_a_recovery_code_once(client, enrolled_admin) -> None:
    code = recovery_codes_new(user=enrolled_admin.user)[0]
    _password_login(client, enrolled_admin.user)

    assert _verify(client, code).status_code == 302
    assert client.get("/admin/").status_code == 200

    again = Client()
    _password_login(again, enrolled_admin.user)
    assert _verify(again, code).status_code == 400


@pytest.mark.django_db
def test_it_leaves_the_second_factor_optional_for_other_users(client, tech) -> None:
    _password_login(client, tech)
    assert client.get("/upload/").status_code == 200

    TOTPDevice.objects.create(user=tech, name="phone", confirmed=True)  # once enrolled, it is asked for
    assert client.get("/upload/")["Location"].startswith("/accounts/otp/verify/")


# --- The token endpoint -------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_asks_an_admin_for_the_second_factor_on_the_token_endpoint(client, enrolled_admin) -> None:
    credentials = {"username": "admin", "password": PASSWORD}

    without = client.post(TOKEN_URL, credentials, content_type="application/json")
    wrong = client.post(TOKEN_URL, {**credentials, "otp": "000000"}, content_type="application/json")

    assert without.status_code == 401 and without.json()["otp_required"] is True
    assert wrong.status_code == 401 and wrong.json()["otp_required"] is True
    assert AccessAttempt.objects.get(username="admin").failures_since_start == 1  # the wrong code, not the missing one
    # django-otp throttles a device for a second after a wrong code.
    TOTPDevice.objects.filter(pk=enrolled_admin.pk).update(
        throttling_failure_count=0, throttling_failure_timestamp=None
    )
    ok = client.post(TOKEN_URL, {**credentials, "otp": totp_code(enrolled_admin)}, content_type="application/json")
    assert ok.status_code == 200 and ok.json()["token"]


@pytest.mark.django_db
def test_it_takes_a_recovery_code_on_the_token_endpoint_once(client, enrolled_admin) -> None:
    code = recovery_codes_new(user=enrolled_admin.user)[0]
    credentials = {"username": "admin", "password": PASSWORD, "otp": code}

    assert client.post(TOKEN_URL, credentials, content_type="application/json").status_code == 200
    assert client.post(TOKEN_URL, credentials, content_type="application/json").status_code == 401


@pytest.mark.django_db
def test_it_gives_other_users_a_token_without_a_second_factor(client, tech) -> None:
    response = client.post(TOKEN_URL, {"username": "tech", "password": PASSWORD}, content_type="application/json")
    assert response.status_code == 200


# --- Reset by another admin ------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_resets_from_the_user_admin_with_an_audited_action(client, enrolled_admin) -> None:
    recovery_codes_new(user=enrolled_admin.user)
    other = User.objects.create_user(username="admin2", password=PASSWORD, is_staff=True, is_superuser=True)
    client.force_login(other)
    form = {"action": "second_factor_reset_action", "_selected_action": [enrolled_admin.user.pk, other.pk]}

    response = client.post("/admin/cases/user/", form)

    assert response.status_code == 302
    assert not TOTPDevice.objects.filter(user=enrolled_admin.user).exists()
    assert not StaticDevice.objects.filter(user=enrolled_admin.user).exists()  # the recovery codes too
    assert TOTPDevice.objects.filter(user=other).exists()  # one's own needs another admin
    assert AuditEvent.objects.filter(action="otp_reset", object_id=str(enrolled_admin.user.pk), user=other).count() == 1
    assert not AuditEvent.objects.filter(action="otp_reset", object_id=str(other.pk)).exists()


@pytest.mark.django_db
def test_it_refuses_a_reset_to_a_non_admin(client, enrolled_admin, tech) -> None:
    client.force_login(tech)
    form = {"action": "second_factor_reset_action", "_selected_action": [enrolled_admin.user.pk]}

    assert client.post("/admin/cases/user/", form).status_code == 302  # to the login page

    assert TOTPDevice.objects.filter(user=enrolled_admin.user).exists()
    assert not AuditEvent.objects.filter(action="otp_reset").exists()


# --- The demo ---------------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_enrols_the_demo_admin_and_prints_a_key_and_code_that_work(client) -> None:
    from io import StringIO

    from django.core.management import call_command

    def run() -> list[str]:
        out = StringIO()
        call_command("demo_data", stdout=out)
        line = next(line for line in out.getvalue().splitlines() if line.startswith("totp admin "))
        return line.split()[2:]

    secret, code = run()
    assert run()[0] == secret  # kept across runs: an authenticator app set up once keeps working
    admin = User.objects.get(username="admin")
    device = TOTPDevice.objects.get(user=admin)
    assert device.confirmed and len(code) == 6

    admin.set_password("a-demo-password-1")
    admin.save()
    assert (
        client.post(
            TOKEN_URL,
            {"username": "admin", "password": "a-demo-password-1", "otp": totp_code(device)},
            content_type="application/json",
        ).status_code
        == 200
    )
