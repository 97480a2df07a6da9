"""Single sign-on end to end: a real OpenID provider (npm ``oidc-provider``, tests/oidc/provider.mjs run by
Node.js), Pneumo's live server, and a real HTTP client that follows the redirects and fills in the
provider's login form. Nothing of the protocol is mocked.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin, urlsplit

import pytest
import requests
from django.contrib.auth.models import Group

from cases.models import AuditEvent, Site, User
from cases.oidc.models import OidcIdentity
from cases.oidc.services import INACTIVE, NO_ROLE, SsoRefused, sso_lockout_name, sso_user_sync
from cases.oidc.views import WRONG_STATE
from tests.processes import free_port

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

OIDC_DIR = Path(__file__).resolve().parents[1] / "oidc"
CLIENT_SECRET = "pneumo-test-secret"  # the test provider's client, tests/oidc/provider.mjs
ACCOUNTS = {
    "terry": {"roles": ["technician"], "sites": ["DEMO"], "name": "Terry Tech"},
    "rae": {"roles": ["radiologist"], "sites": ["DEMO"], "name": "Dr Rae"},
    "ada": {"roles": ["admin"], "sites": ["DEMO"], "amr": ["pwd", "otp"]},
    "nobody": {"roles": [], "sites": ["DEMO"]},
}


def _node_modules() -> None:
    if shutil.which("node") is None:
        reason = "SSO TESTS NOT RUN: Node.js is missing (apt-get install nodejs npm)"
        if os.environ.get("CI") == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    if not (OIDC_DIR / "node_modules" / "oidc-provider").exists():
        # From npm's cache when it has the locked versions; else from the registry (never at run time of Pneumo).
        done = subprocess.run(["npm", "ci", "--offline", "--no-audit", "--no-fund"], cwd=OIDC_DIR, check=False)
        if done.returncode != 0:
            subprocess.run(["npm", "ci", "--no-audit", "--no-fund"], cwd=OIDC_DIR, check=True)


@dataclass
class OidcProvider:
    issuer: str
    accounts_file: Path
    process: subprocess.Popen

    def accounts_set(self, accounts: dict) -> None:
        self.accounts_file.write_text(json.dumps(accounts))

    def account_set(self, account_id: str, **claims: object) -> None:
        accounts = json.loads(self.accounts_file.read_text())
        accounts[account_id] = {**accounts.get(account_id, {}), **claims}
        self.accounts_set(accounts)


def _provider_start(tmp: Path, base_url: str, **env: str) -> OidcProvider:
    _node_modules()
    port = free_port()
    accounts_file = tmp / f"accounts-{port}.json"
    accounts_file.write_text(json.dumps(ACCOUNTS))
    process = subprocess.Popen(
        ["node", "provider.mjs"],
        cwd=OIDC_DIR,
        env={
            **os.environ,
            "PORT": str(port),
            "ACCOUNTS_FILE": str(accounts_file),
            "REDIRECT_URI": f"{base_url}/accounts/sso/callback/",
            "POST_LOGOUT_REDIRECT_URI": f"{base_url}/accounts/login/",
            **env,
        },
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    issuer = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{issuer}/.well-known/openid-configuration", timeout=1).ok:
                return OidcProvider(issuer=issuer, accounts_file=accounts_file, process=process)
        except requests.ConnectionError:
            time.sleep(0.1)
        if process.poll() is not None:
            break
    process.kill()
    pytest.fail(f"the OpenID provider did not start: {process.stdout.read() if process.stdout else ''}")


@pytest.fixture(scope="session")
def oidc_provider(live_server, tmp_path_factory) -> Iterator[OidcProvider]:
    """One provider for the session; tests change its accounts' claims through its accounts file."""
    provider = _provider_start(tmp_path_factory.mktemp("oidc"), live_server.url)
    yield provider
    provider.process.kill()
    provider.process.wait()


@pytest.fixture
def sso(settings, oidc_provider, db) -> OidcProvider:
    """SSO on, against the session's provider, with the DEMO and NORTH sites and the role groups."""
    settings.PNEUMO_OIDC_ISSUER = oidc_provider.issuer
    settings.PNEUMO_OIDC_CLIENT_ID = "pneumo"
    settings.PNEUMO_OIDC_CLIENT_SECRET = CLIENT_SECRET
    settings.PNEUMO_OIDC_PROVIDER_NAME = "Test IdP"
    for name in ("Technician", "Radiologist"):
        Group.objects.get_or_create(name=name)
    Site.objects.get_or_create(code="DEMO", defaults={"name": "Demo General"})
    Site.objects.get_or_create(code="NORTH", defaults={"name": "North Clinic"})
    oidc_provider.accounts_set(ACCOUNTS)
    return oidc_provider


def _provider_login(session: requests.Session, response: requests.Response, account: str) -> requests.Response:
    """Fill in the provider's login form; the redirects then lead back through Pneumo's callback."""
    assert "Test identity provider" in response.text, response.text[:500]
    action = re.search(r'<form method="post" action="([^"]+)"', response.text).group(1)
    return session.post(urljoin(response.url, action), data={"login": account}, timeout=10)


@pytest.fixture
def sign_in(live_server, sso) -> Callable[..., requests.Response]:
    def sign_in(account: str, session: requests.Session | None = None) -> requests.Response:
        session = session or requests.Session()
        started = session.get(f"{live_server.url}/accounts/sso/login/", timeout=10)
        return _provider_login(session, started, account)

    return sign_in


def _path(response: requests.Response) -> str:
    return urlsplit(response.url).path


def _user(account: str) -> User:
    return OidcIdentity.objects.select_related("user").get(subject=account).user


# --- Signing in ----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("account", "home", "staff", "group"),
    [
        ("terry", "/upload/", False, "Technician"),
        ("rae", "/worklist/", False, "Radiologist"),
        ("ada", "/accounts/otp/enrol/", True, None),  # an admin, whose provider's amr does not count here
    ],
)
def test_it_signs_each_role_in_with_the_role_and_sites_from_the_claims(sign_in, account, home, staff, group) -> None:
    response = sign_in(account)

    assert response.status_code == 200 and _path(response) == home
    user = _user(account)
    assert user.is_active and user.is_staff is staff
    assert list(user.groups.values_list("name", flat=True)) == ([group] if group else [])
    assert list(user.sites.values_list("code", flat=True)) == ["DEMO"]
    assert not user.has_usable_password()
    assert AuditEvent.objects.filter(action="login", user=user).exists()


def test_it_takes_the_providers_second_factor_for_an_admin_when_its_amr_counts(sign_in, settings, live_server) -> None:
    settings.PNEUMO_OIDC_MFA_AMR = ["mfa", "otp", "hwk"]
    session = requests.Session()
    sign_in("ada", session)

    assert _path(session.get(f"{live_server.url}/admin/", timeout=10)) == "/admin/"

    settings.PNEUMO_OIDC_MFA_AMR = []
    other = requests.Session()
    sign_in("ada", other)
    assert _path(other.get(f"{live_server.url}/admin/", timeout=10)) == "/accounts/otp/enrol/"


def test_it_shows_the_provider_button_on_the_login_page_only_when_sso_is_on(live_server, sso, settings) -> None:
    assert "Sign in with Test IdP" in requests.get(f"{live_server.url}/accounts/login/", timeout=10).text
    settings.PNEUMO_OIDC_ISSUER = ""
    assert "Sign in with" not in requests.get(f"{live_server.url}/accounts/login/", timeout=10).text
    assert requests.get(f"{live_server.url}/accounts/sso/login/", timeout=10).status_code == 404


def test_it_links_by_subject_and_never_takes_over_a_local_account_of_the_same_name(sign_in) -> None:
    local = User.objects.create_user(username="rae", password="correct-horse-battery")

    sign_in("rae")
    sign_in("rae")

    linked = _user("rae")
    assert linked.pk != local.pk and linked.username.startswith("rae-")
    assert User.objects.filter(username__startswith="rae").count() == 2


def test_it_applies_a_change_of_role_and_site_on_the_next_login(sign_in, sso) -> None:
    sign_in("rae")
    first = _user("rae")
    sso.account_set("rae", roles=["technician"], sites=["NORTH"])

    response = sign_in("rae")

    user = _user("rae")
    assert user.pk == first.pk
    assert list(user.groups.values_list("name", flat=True)) == ["Technician"]
    assert list(user.sites.values_list("code", flat=True)) == ["NORTH"]
    assert _path(response) == "/upload/"
    assert AuditEvent.objects.filter(action="user_roles_changed", user=user).count() == 2


# --- Refusals --------------------------------------------------------------------------------------------


def test_it_refuses_claims_without_a_role_with_a_clear_page(sign_in) -> None:
    response = sign_in("nobody")

    assert response.status_code == 403
    assert NO_ROLE in response.text
    assert not OidcIdentity.objects.exists()
    assert AuditEvent.objects.filter(action="login_failed", username="nobody").exists()


def test_it_deactivates_a_user_whose_claims_no_longer_give_a_role(sign_in, sso, live_server) -> None:
    session = requests.Session()
    sign_in("rae", session)
    sso.account_set("rae", roles=["guest"])

    response = sign_in("rae")

    assert response.status_code == 403 and NO_ROLE in response.text
    user = _user("rae")
    assert not user.is_active
    assert AuditEvent.objects.filter(action="user_deactivated", user=user).exists()
    # The session opened before is no longer good either.
    assert _path(session.get(f"{live_server.url}/studies/", timeout=10)) == "/accounts/login/"


def test_it_keeps_a_deactivated_user_out_even_when_the_provider_still_gives_a_role(sign_in) -> None:
    sign_in("terry")
    User.objects.filter(pk=_user("terry").pk).update(is_active=False)

    response = sign_in("terry")

    assert response.status_code == 403 and INACTIVE in response.text


def test_it_sends_a_wrong_state_back_to_the_login_page(live_server, sso) -> None:
    session = requests.Session()
    started = session.get(f"{live_server.url}/accounts/sso/login/", timeout=10)
    assert "Test identity provider" in started.text

    response = session.get(f"{live_server.url}/accounts/sso/callback/?state=forged&code=whatever", timeout=10)

    assert response.status_code == 200 and _path(response) == "/accounts/login/"
    assert WRONG_STATE in response.text.replace("&#x27;", "'")
    assert AuditEvent.objects.filter(action="login_failed", username="(single sign-on)").exists()
    assert not OidcIdentity.objects.exists()


def test_it_refuses_a_replayed_callback(sign_in, live_server) -> None:
    session = requests.Session()
    response = sign_in("rae", session)
    callback = next(r for r in response.history if urlsplit(r.url).path == "/accounts/sso/callback/")
    session.post(f"{live_server.url}/accounts/logout/", timeout=10)  # no CSRF token: refused, still signed in

    replay = requests.get(callback.url, timeout=10)

    assert _path(replay) == "/accounts/login/" and WRONG_STATE in replay.text.replace("&#x27;", "'")


def test_it_sends_an_expired_id_token_back_to_the_login_page(live_server, sso, settings, tmp_path) -> None:
    # A provider whose clock is ten minutes behind, issuing ID tokens for a minute: each one has expired
    # nine minutes before Pneumo reads it, well past the 60 s leeway.
    stale = _provider_start(tmp_path, live_server.url, CLOCK_SKEW="-600", ID_TOKEN_TTL="60")
    try:
        settings.PNEUMO_OIDC_ISSUER = stale.issuer
        session = requests.Session()
        response = _provider_login(session, session.get(f"{live_server.url}/accounts/sso/login/", timeout=10), "rae")
    finally:
        stale.process.kill()
        stale.process.wait()

    assert response.status_code == 200 and _path(response) == "/accounts/login/"
    assert "Your sign-in with the identity provider has expired" in response.text
    assert not OidcIdentity.objects.exists()


def test_it_locks_out_after_repeated_refusals(sign_in, settings) -> None:
    settings.AXES_FAILURE_LIMIT = 2
    assert sign_in("nobody").status_code == 403

    locked = sign_in("nobody")  # the failure that reaches the limit is answered by the lockout

    assert locked.status_code == 429 and "Too many failed log-ins" in locked.text
    assert sign_in("nobody").status_code == 429
    assert sign_in("rae").status_code == 200  # per username and address, as for passwords


# --- Logout and local passwords ---------------------------------------------------------------------------------


def test_it_logs_out_of_pneumo_and_of_the_provider(sign_in, live_server) -> None:
    session = requests.Session()
    page = sign_in("rae", session)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)

    confirm = session.post(f"{live_server.url}/accounts/logout/", data={"csrfmiddlewaretoken": token}, timeout=10)

    assert urlsplit(confirm.url).path == "/session/end"  # the provider asks to confirm its own logout
    assert _path(session.get(f"{live_server.url}/studies/", timeout=10)) == "/accounts/login/"
    form = re.search(r'<form[^>]*action="([^"]+)"', confirm.text).group(1)
    fields = dict(re.findall(r'<input[^>]*name="([^"]+)"[^>]*value="([^"]*)"', confirm.text))
    done = session.post(urljoin(confirm.url, form), data={**fields, "logout": "yes"}, timeout=10)
    assert _path(done) == "/accounts/login/"
    # The provider forgot the person: signing in again asks for the login form, not straight back to Pneumo.
    again = session.get(f"{live_server.url}/accounts/sso/login/", timeout=10)
    assert "Test identity provider" in again.text


def test_it_keeps_local_passwords_for_admins_only_when_told_to(client, settings, tech, admin_user) -> None:
    settings.PNEUMO_LOCAL_LOGIN = "admins"

    refused = client.post("/accounts/login/", {"username": "tech", "password": "correct-horse-battery"})
    token = client.post(
        "/api/v1/auth/token/",
        {"username": "tech", "password": "correct-horse-battery"},
        content_type="application/json",
    )

    assert refused.status_code == 200 and b"Only administrators log in with a password" in refused.content
    assert token.status_code == 400
    admin = client.post("/accounts/login/", {"username": "admin", "password": "correct-horse-battery"})
    assert admin.status_code == 302


def test_refusals_and_the_lockout_check_count_under_one_name_without_a_preferred_username() -> None:
    # A provider that sends no preferred_username: a first sign-in is refused and checked under the same name
    claims = {"sub": "c0ffee", "email": "j.doe@hospital.example", "roles": []}
    with pytest.raises(SsoRefused) as refused:
        sso_user_sync(issuer="https://idp.example", claims=claims)

    assert sso_lockout_name(issuer="https://idp.example", claims=claims) == refused.value.username == "j.doe"
