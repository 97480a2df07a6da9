from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from cases.api.tokens import token_hash
from cases.models import ApiToken, AuditEvent
from tests.api.conftest import PASSWORD

TOKEN_URL = "/api/v1/auth/token/"


def _sign_in(username: str, password: str = PASSWORD, client: APIClient | None = None):
    return (client or APIClient()).post(TOKEN_URL, {"username": username, "password": password}, format="json")


def test_it_issues_a_token_that_authenticates(tech) -> None:
    response = _sign_in("tech")
    assert response.status_code == 200
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {response.json()['token']}")
    assert client.get("/api/v1/sites/").status_code == 200


def test_it_stores_only_the_tokens_hash_and_an_expiry(tech, settings) -> None:
    settings.PNEUMO_API_TOKEN_HOURS = 2
    body = _sign_in("tech").json()
    token = ApiToken.objects.get()
    assert token.key_hash == token_hash(body["token"])
    assert body["token"] not in (token.key_hash, token.prefix)
    assert abs(token.expires_at - (timezone.now() + timedelta(hours=2))) < timedelta(minutes=1)


def test_it_refuses_an_expired_token(tech) -> None:
    key = _sign_in("tech").json()["token"]
    ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    response = client.get("/api/v1/sites/")
    assert response.status_code == 401
    assert response["WWW-Authenticate"] == "Token"


def test_it_refuses_a_token_of_a_deactivated_user(tech) -> None:
    key = _sign_in("tech").json()["token"]
    tech.is_active = False
    tech.save()
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.get("/api/v1/sites/").status_code == 401


def test_it_revokes_the_token_in_use(tech) -> None:
    key = _sign_in("tech").json()["token"]
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    assert client.delete(TOKEN_URL).status_code == 204
    assert not ApiToken.objects.exists()
    assert client.get("/api/v1/sites/").status_code == 401


def test_it_answers_unknown_users_and_wrong_passwords_alike(tech) -> None:
    unknown = _sign_in("nobody", "whatever-password")
    wrong = _sign_in("tech", "wrong-password")
    assert unknown.status_code == wrong.status_code == 400
    assert unknown.json() == wrong.json() == {"detail": "Invalid username or password."}


def test_it_audits_sign_ins_and_failures(tech) -> None:
    _sign_in("tech", "wrong-password")
    _sign_in("tech")
    actions = list(AuditEvent.objects.order_by("pk").values_list("action", "username"))
    assert ("login_failed", "tech") in actions
    assert ("api_token_create", "tech") in actions
    assert ("login", "tech") in actions


def test_it_locks_a_username_out_after_five_failures(tech) -> None:
    for _ in range(4):
        assert _sign_in("tech", "wrong-password").status_code == 400
    assert _sign_in("tech", "wrong-password").status_code == 429  # the fifth failure locks
    locked = _sign_in("tech")  # even the right password, now
    assert locked.status_code == 429
    assert "try again later" in locked.json()["detail"]
    assert not ApiToken.objects.exists()


def test_it_throttles_sign_ins_per_address(tech, settings) -> None:
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_token": "2/min"}}
    assert _sign_in("tech").status_code == 200
    assert _sign_in("tech").status_code == 200
    throttled = _sign_in("tech")
    assert throttled.status_code == 429
    assert "detail" in throttled.json()


def test_it_throttles_uploads_per_user(tech, settings, api) -> None:
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_upload": "1/min"}}
    client = api(tech)
    assert client.post("/api/v1/studies/", {"site": "DEMO"}, format="multipart").status_code == 400
    assert client.post("/api/v1/studies/", {"site": "DEMO"}, format="multipart").status_code == 429
    assert client.get("/api/v1/studies/").status_code == 200  # reading is not an upload


@pytest.mark.parametrize("header", ["Token", "Token a b", "Token \u00e9t\u00e9", "Token not-a-token"])
def test_it_refuses_malformed_or_unknown_tokens(header: str, db) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    response = client.get("/api/v1/sites/")
    assert response.status_code == 401
    assert "detail" in response.json()


def test_it_still_accepts_the_browser_session(client, tech) -> None:
    client.force_login(tech)
    assert client.get("/api/v1/sites/").status_code == 200


def test_it_signs_in_with_a_stale_token_in_the_header(tech) -> None:
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION="Token expired-long-ago")
    assert _sign_in("tech", client=client).status_code == 200


def test_it_revokes_nothing_for_a_browser_session(client, tech) -> None:
    client.force_login(tech)
    response = client.delete(TOKEN_URL)
    assert response.status_code == 400 and "Authorization" in response.json()["detail"]


def test_it_clears_a_users_expired_tokens_when_issuing_one(tech) -> None:
    _sign_in("tech")
    ApiToken.objects.update(expires_at=timezone.now() - timedelta(seconds=1))
    _sign_in("tech")
    assert ApiToken.objects.count() == 1 and ApiToken.objects.get().expires_at > timezone.now()


def test_it_does_not_let_a_forged_forwarded_for_escape_the_throttle(tech, settings) -> None:
    settings.REST_FRAMEWORK = {**settings.REST_FRAMEWORK, "DEFAULT_THROTTLE_RATES": {"api_token": "1/min"}}
    client = APIClient()
    assert _sign_in("tech", client=client).status_code == 200
    client.credentials(HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert _sign_in("tech", client=client).status_code == 429
