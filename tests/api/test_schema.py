"""The published OpenAPI schema: generated without warnings, true to the API under generated requests,
and browsable in Swagger UI under the site's Content Security Policy."""

from __future__ import annotations

import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import schemathesis
from django.core.management import call_command
from django.core.signals import request_finished, request_started
from django.core.wsgi import get_wsgi_application
from django.db import close_old_connections
from drf_spectacular.drainage import GENERATOR_STATS
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from schemathesis import checks

from cases.api.tokens import token_create
from tests.api.conftest import World

MAX_EXAMPLES = int(os.environ.get("PNEUMO_SCHEMATHESIS_EXAMPLES", "20"))
CHECKS = [
    checks.not_a_server_error,
    checks.status_code_conformance,
    checks.content_type_conformance,
    checks.response_schema_conformance,
]
# Reading and signing are a radiologist's; everything else runs as an admin, who sees every site.
RADIOLOGIST_PATHS = re.compile(r"/studies/\{id\}/(claim|release|review|amend|predictions)/$")


def test_it_generates_the_schema_without_warnings(tmp_path: Path) -> None:
    GENERATOR_STATS.reset()
    out = tmp_path / "schema.yaml"
    call_command("spectacular", "--validate", "--fail-on-warn", "--file", str(out))
    text = out.read_text()
    assert "/api/v1/studies/{id}/review/:" in text and "tokenAuth" in text


def test_it_serves_the_schema_and_a_swagger_ui_without_inline_scripts(client) -> None:
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert schema.status_code == 200 and schema.json()["openapi"].startswith("3.")
    page = client.get("/api/docs/")
    assert page.status_code == 200
    html = page.content.decode()
    assert re.findall(r"<script>", html) == []  # every script is a file
    script_src = re.search(r'<script src="([^"]*\?[^"]*script=[^"]*)"', html).group(1).replace("&amp;", "&")
    script = client.get(script_src)
    assert script.status_code == 200 and script["Content-Type"].startswith("application/javascript")
    assert "/static/drf_spectacular_sidecar/" in html  # no CDN
    assert "script-src 'self'" in page["Content-Security-Policy"]


def _object_ids(world: World) -> dict[str, int]:
    return {
        "/api/v1/patients/{id}/": world.demo.patient.pk,
        "/api/v1/models/{id}/": world.version.pk,
        "/api/v1/studies/{id}/claim/": world.demo.awaiting.pk,
        "/api/v1/studies/{id}/review/": world.demo.awaiting.pk,
        "/api/v1/studies/{id}/release/": world.demo.in_review.pk,
        "/api/v1/studies/{id}/amend/": world.demo.reported.pk,
    }


@pytest.fixture
def wsgi_app():
    """Django's WSGI application, kept from closing the test's database connection after each request."""
    request_started.disconnect(close_old_connections)
    request_finished.disconnect(close_old_connections)
    try:
        yield get_wsgi_application()
    finally:
        request_started.connect(close_old_connections)
        request_finished.connect(close_old_connections)


def _auth_headers(operation, tokens: dict[str, str], admin_user) -> Callable[[], dict[str, str]]:
    if operation.method == "delete":  # revoking the token in use: a token of its own each time
        return lambda: {"Authorization": f"Token {token_create(user=admin_user)[0]}"}
    token = tokens["rad" if RADIOLOGIST_PATHS.search(operation.path) else "admin"]
    return lambda: {"Authorization": f"Token {token}"}


def _fuzz(strategy, headers: Callable[[], dict[str, str]]) -> tuple[int, str]:
    """Send ``MAX_EXAMPLES`` generated requests; returns how many were sent and the failure, if any."""
    sent = 0

    @given(case=strategy)
    @hypothesis_settings(
        max_examples=MAX_EXAMPLES,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],  # no shrinking: report what was found, quickly
        suppress_health_check=list(HealthCheck),
    )
    def send(case) -> None:
        nonlocal sent
        sent += 1
        case.validate_response(case.call(headers=headers()), checks=CHECKS)

    try:
        send()
    except (Exception, BaseExceptionGroup) as error:
        return sent, str(error)[:2000]
    return sent, ""


def test_it_conforms_to_its_schema_under_generated_requests(world, admin_user, rad, wsgi_app) -> None:
    # Given the live schema, tokens, and objects for the operations that take an id
    schema = schemathesis.openapi.from_wsgi("/api/schema/", wsgi_app)
    ids = _object_ids(world)
    tokens = {"admin": token_create(user=admin_user)[0], "rad": token_create(user=rad)[0]}
    operations = [result.ok() for result in schema.get_all_operations()]
    failures: dict[str, str] = {}
    started, calls = time.monotonic(), 0

    # When each operation receives generated requests
    for operation in operations:
        path = operation.path
        object_id = ids.get(path, world.demo.image.pk if path.startswith("/api/v1/images/") else world.demo.awaiting.pk)
        strategy = operation.as_strategy(path_parameters={"id": object_id} if "{id}" in path else None)
        headers = _auth_headers(operation, tokens, admin_user)
        sent, failure = _fuzz(strategy, headers)
        calls += sent
        if failure:
            failures[operation.label] = failure

    # Then no response was a server error or strayed from the schema
    print(f"\nschemathesis: {len(operations)} operations, {calls} calls, {time.monotonic() - started:.1f} s")
    assert len(operations) >= 25
    assert not failures, "\n\n".join(f"{label}:\n{error}" for label, error in failures.items())


@pytest.mark.browser
def test_it_shows_swagger_ui_under_the_content_security_policy(live_server) -> None:
    chromium = shutil.which("chromium") or "/usr/bin/chromium"
    if not Path(chromium).exists():
        if os.environ.get("CI") == "true":
            pytest.fail("Chromium is required under CI (scripts/ensure_test_tools.sh installs it)")
        pytest.skip("Chromium is not installed")
    from playwright.sync_api import sync_playwright

    messages: list[str] = []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.on("console", lambda message: messages.append(f"{message.type}: {message.text}"))
            page.goto(f"{live_server.url}/api/docs/")
            page.wait_for_selector(".swagger-ui .info .title", timeout=20_000)
            title = page.inner_text(".swagger-ui .info .title")
            operations = page.locator(".opblock").count()
        finally:
            browser.close()
    assert "Pneumo API" in title and operations >= 20
    assert not [m for m in messages if "Content Security Policy" in m or m.startswith("error")], messages
