"""A password change or a deactivation ends a user's API tokens, and admins see and revoke tokens.

Before, after an admin changed a user's password the user's old API token
still worked, and the admin's password change left no audit event.
"""

from __future__ import annotations

import pytest
from django.urls import reverse
from rest_framework.test import APIClient

from cases.models import ApiToken, AuditEvent
from tests.api.conftest import PASSWORD

NEW_PASSWORD = "a-new-and-long-passphrase-42"


@pytest.fixture
def superuser(admin_user):
    admin_user.is_superuser = True
    admin_user.save()
    return admin_user


def _token(username: str) -> str:
    response = APIClient().post("/api/v1/auth/token/", {"username": username, "password": PASSWORD}, format="json")
    assert response.status_code == 200
    return response.json()["token"]


def _works(key: str) -> bool:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client.get("/api/v1/sites/").status_code == 200


def test_it_ends_every_token_when_an_admin_changes_the_password(client, superuser, tech) -> None:
    keys = [_token("tech"), _token("tech")]
    client.force_login(superuser)
    url = reverse("admin:auth_user_password_change", args=[tech.pk])
    response = client.post(url, {"password1": NEW_PASSWORD, "password2": NEW_PASSWORD, "usable_password": "true"})
    assert response.status_code == 302
    assert not any(_works(key) for key in keys)
    assert not ApiToken.objects.filter(user=tech).exists()
    change = AuditEvent.objects.get(action="password_change")
    assert change.user == superuser and change.object_type == "User" and change.object_id == str(tech.pk)
    assert NEW_PASSWORD not in str(change.detail) and "password1" not in str(change.detail)
    revoked = AuditEvent.objects.get(action="api_tokens_revoke_all")
    assert revoked.detail == {"count": 2, "reason": "password_changed"} and revoked.user == superuser


def test_it_ends_a_token_when_the_password_changes_by_any_other_path(tech) -> None:
    key = _token("tech")
    tech.set_password(NEW_PASSWORD)  # as `manage.py changepassword` or a shell would
    tech.save()
    assert not _works(key)
    assert not ApiToken.objects.exists()
    assert AuditEvent.objects.filter(action="api_token_revoke", detail__reason="password_changed").exists()


def test_it_keeps_a_token_when_other_details_change(tech) -> None:
    key = _token("tech")
    tech.display_name = "Tech One"
    tech.save()
    assert _works(key)


def test_it_deletes_the_tokens_of_a_user_an_admin_deactivates(client, superuser, tech) -> None:
    key = _token("tech")
    client.force_login(superuser)
    page = client.get(reverse("admin:cases_user_change", args=[tech.pk]))
    form = page.context["adminform"].form
    data = {name: form.initial.get(name) for name in form.fields if form.initial.get(name) is not None}
    data.update(
        {
            "is_active": "",
            "groups": [g.pk for g in tech.groups.all()],
            "sites": [s.pk for s in tech.sites.all()],
            "date_joined_0": tech.date_joined.strftime("%Y-%m-%d"),
            "date_joined_1": tech.date_joined.strftime("%H:%M:%S"),
            "api_tokens-TOTAL_FORMS": "1",
            "api_tokens-INITIAL_FORMS": "1",
            "api_tokens-0-id": ApiToken.objects.get().pk,
            "api_tokens-0-user": tech.pk,
        }
    )
    data.pop("last_login", None)
    data.pop("password", None)
    response = client.post(reverse("admin:cases_user_change", args=[tech.pk]), data)
    assert response.status_code == 302, response.context["adminform"].form.errors
    tech.refresh_from_db()
    assert not tech.is_active and not ApiToken.objects.exists()
    tech.is_active = True  # reactivated later: the old token stays dead
    tech.save()
    assert not _works(key)
    assert AuditEvent.objects.filter(action="api_tokens_revoke_all", detail__reason="deactivated").exists()


def test_it_lets_admins_list_and_revoke_a_users_tokens(client, superuser, tech, rad) -> None:
    tech_key, rad_key = _token("tech"), _token("rad")
    client.force_login(superuser)
    listing = client.get(reverse("admin:cases_apitoken_changelist"), {"user__id__exact": tech.pk})
    assert listing.status_code == 200 and ApiToken.objects.get(user=tech).prefix in listing.content.decode()
    assert tech_key not in listing.content.decode()
    token = ApiToken.objects.get(user=tech)
    response = client.post(
        reverse("admin:cases_apitoken_changelist"), {"action": "revoke", "_selected_action": [token.pk]}
    )
    assert response.status_code == 302
    assert not _works(tech_key) and _works(rad_key)
    event = AuditEvent.objects.get(action="api_token_revoke")
    assert event.user == superuser and event.detail["owner_id"] == tech.pk
    assert event.detail["reason"] == "revoked_by_admin"


def test_it_shows_a_users_tokens_on_the_user_page(client, superuser, tech) -> None:
    _token("tech")
    client.force_login(superuser)
    page = client.get(reverse("admin:cases_user_change", args=[tech.pk])).content.decode()
    assert ApiToken.objects.get().prefix in page
