"""The published OpenAPI schema: generated without warnings, saying what the server does (Schemathesis
holds it to that in test_schemathesis.py), and browsable in Swagger UI under the site's Content Security Policy."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest
from django.core.management import call_command
from drf_spectacular.drainage import GENERATOR_STATS


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


def test_it_answers_a_path_id_that_is_not_a_number_with_the_documented_json_404(world, api, rad) -> None:
    client = api(rad)
    for url in ("/api/v1/studies/null,null/", "/api/v1/images/abc/render.png", "/api/v1/models/1.5/"):
        response = client.get(url)
        assert (response.status_code, response["Content-Type"]) == (404, "application/json"), url
        assert response.json() == {"detail": "Not found."}
    claim = client.post("/api/v1/studies/x/claim/")
    assert claim.status_code == 404 and claim.json() == {"detail": "Not found."}
    assert api(None).get("/api/v1/studies/x/").status_code == 401  # signing in comes first, as everywhere
    slashless = client.get("/api/v1/studies")
    assert slashless.status_code == 404 and "/api/v1/studies/" in slashless.json()["detail"]


def test_it_refuses_a_page_size_that_is_not_a_whole_number_from_one(world, api, rad) -> None:
    client = api(rad)
    for value in ("null", "0", "-5", "1.5"):
        response = client.get("/api/v1/studies/", {"page_size": value})
        assert response.status_code == 400 and "page_size" in response.json(), value
    assert len(client.get("/api/v1/studies/", {"page_size": "2"}).json()["results"]) == 2
    assert client.get("/api/v1/studies/", {"page_size": "9" * 40}).status_code == 200  # the maximum
    assert client.get("/api/v1/studies/", {"page_size": ""}).json()["count"] == 3  # empty is absent


def test_it_reads_an_empty_query_parameter_as_absent_as_the_schema_says(world, api, rad) -> None:
    client = api(rad)
    assert client.get("/api/v1/studies/", {"site": "", "status": ""}).json()["count"] == 3
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()
    site = next(p for p in schema["paths"]["/api/v1/studies/"]["get"]["parameters"] if p["name"] == "site")
    assert site["allowEmptyValue"] is True and site["schema"]["minLength"] == 1


def test_it_answers_a_site_not_yours_with_a_documented_404(world, api, rad) -> None:
    client = api(rad)
    for response in (
        client.get("/api/v1/studies/", {"site": "NORTH"}),
        client.get("/api/v1/worklist/", {"site": "NOWHERE"}),
        client.post("/api/v1/patients/search/", {"query": "doe", "site": "NORTH"}, format="json"),
    ):
        assert response.status_code == 404 and response.json() == {"detail": "Unknown site, or not one of yours."}


def test_it_publishes_the_rules_drf_applies_to_text(client) -> None:
    schema = client.get("/api/schema/", HTTP_ACCEPT="application/vnd.oai.openapi+json").json()["components"]["schemas"]
    username = schema["TokenRequest"]["properties"]["username"]
    assert username["minLength"] == 1 and re.search(username["pattern"], "admin")
    assert not re.search(username["pattern"], "   ") and not re.search(username["pattern"], "ad\x00min")
    assert schema["Amendment"]["properties"]["amendment_reason"]["minLength"] == 1
    assert schema["PatientSearch"]["properties"]["query"]["minLength"] == 1
    files = schema["Upload"]["properties"]["files"]
    assert files["minItems"] == 1 and files["items"]["format"] == "binary"
    name = schema["ModelVersion"]["properties"]["name"]["pattern"]
    assert re.search(name, "pneumonia-xception-pkg-0.3.0") and not re.search(name, "../x")
    assert "source_path" not in schema["ModelVersionRead"]["required"]  # shown to admins only


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
