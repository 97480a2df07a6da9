"""OPTIONS on every route of the API answers its metadata (or 405), never a server error."""

from __future__ import annotations

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from tests.api.conftest import World


def _named_routes(patterns: list, namespace: str = "") -> list[tuple[str, URLPattern]]:
    found = []
    for pattern in patterns:
        if isinstance(pattern, URLResolver):
            found += _named_routes(pattern.url_patterns, pattern.namespace or namespace)
        elif pattern.name:
            found.append((f"{namespace}:{pattern.name}" if namespace else pattern.name, pattern))
    return found


def api_routes() -> list[tuple[str, URLPattern]]:
    return [(name, pattern) for name, pattern in _named_routes(get_resolver().url_patterns) if name.startswith("api:")]


def _url(name: str, pattern: URLPattern, world: World) -> str:
    if "code" in pattern.pattern.converters:  # a site, named by its code
        return reverse(name, kwargs={"code": world.demo.image.site.code})
    if "pk" not in pattern.pattern.converters:
        return reverse(name)
    pk = world.demo.image.pk if name.startswith("api:image-") else world.demo.awaiting.pk
    if name.startswith("api:patient-"):
        pk = world.demo.patient.pk
    elif name.startswith("api:model-"):
        pk = world.version.pk
    return reverse(name, kwargs={"pk": pk})


def test_it_walks_every_route_of_the_api() -> None:
    names = {name for name, _ in api_routes()}
    assert {"api:token", "api:patient-search", "api:study-list", "api:study-amend", "api:schema"} <= names
    assert len(names) >= 23


@pytest.mark.parametrize("name", [name for name, _ in api_routes()])
def test_it_answers_options_with_metadata_on(name: str, world, api, admin_user) -> None:
    pattern = dict(api_routes())[name]
    url = _url(name, pattern, world)

    signed_in = api(admin_user).options(url)
    anonymous = api(None).options(url)

    assert signed_in.status_code in (200, 405), signed_in.content[:500]
    if signed_in.status_code == 200:
        assert "OPTIONS" in signed_in["Allow"]
        if signed_in["Content-Type"].startswith("application/json"):  # the schema's views answer in YAML
            body = signed_in.json()
            assert body["name"] and "renders" in body
    assert anonymous.status_code in (200, 401, 405), anonymous.content[:500]


def test_it_answers_options_on_an_unknown_api_path_with_a_json_404(db, api, admin_user) -> None:
    response = api(admin_user).options("/api/v1/studies/not-a-number/claim/")
    assert response.status_code == 404 and response.json() == {"detail": "Not found."}
