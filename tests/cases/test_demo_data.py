from __future__ import annotations

from io import StringIO

import pytest
from axes.models import AccessAttempt
from django.core.management import call_command

from cases.models import Site, User


def _run(settings, password: str = "") -> dict[str, str]:
    settings.PNEUMO_DEMO_PASSWORD = password
    out = StringIO()
    call_command("demo_data", stdout=out)
    return {line.split()[1]: line.split()[2] for line in out.getvalue().splitlines() if line.startswith("login ")}


@pytest.mark.django_db
def test_it_creates_the_demo_sites_and_users(settings) -> None:
    logins = _run(settings)
    assert set(logins) == {"admin", "tech", "rad", "rad2"}
    assert set(Site.objects.values_list("code", flat=True)) == {"DEMO", "NORTH"}
    assert User.objects.get(username="tech").is_technician
    assert User.objects.get(username="rad").is_radiologist
    assert User.objects.get(username="admin").is_staff
    assert list(User.objects.get(username="rad2").sites.values_list("code", flat=True)) == ["NORTH"]
    assert list(User.objects.get(username="rad").sites.values_list("code", flat=True)) == ["DEMO"]


@pytest.mark.django_db
def test_it_is_idempotent(settings) -> None:
    _run(settings)
    _run(settings)
    assert Site.objects.count() == 2
    assert User.objects.count() == 4
    assert User.objects.get(username="tech").groups.count() == 1


@pytest.mark.django_db
def test_it_resets_passwords_to_the_configured_one(settings) -> None:
    _run(settings)
    user = User.objects.get(username="rad")
    user.set_password("something-else-entirely")
    user.save()
    _run(settings, password="demo-password-123")
    assert User.objects.get(username="rad").check_password("demo-password-123")


@pytest.mark.django_db
def test_it_generates_and_prints_working_passwords_when_none_is_configured(settings) -> None:
    first = _run(settings)
    second = _run(settings)
    assert User.objects.get(username="tech").check_password(second["tech"])
    assert first["tech"] != second["tech"]


@pytest.mark.django_db
def test_it_clears_login_lockouts(settings) -> None:
    _run(settings)
    AccessAttempt.objects.create(
        username="tech",
        ip_address="127.0.0.1",
        failures_since_start=9,
        user_agent="x",
        get_data="",
        post_data="",
        http_accept="",
        path_info="/",
    )
    _run(settings, password="demo-password-123")
    assert not AccessAttempt.objects.filter(username="tech").exists()
