"""Who may do what, for every API and DICOMweb operation: generated from the URL resolver.

Every route and method under ``/api/v1/`` (checked against the schema) and
under ``/dicomweb/`` becomes cells: anonymous, technician,
radiologist and admin of site DEMO, against an object of DEMO and of NORTH
(routes without an object have one column). A new endpoint fails
``test_it_has_an_expectation_for_every_operation`` until a row of ``EXPECTED``
says what each role gets. Other sites' objects are 404 for everyone but admins,
who see every site. DICOMweb routes name their object by UIDs (study,
series, instance) and have their own table, ``DICOMWEB_EXPECTED``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse
from drf_spectacular.generators import SchemaGenerator

from tests.api.conftest import PASSWORD, World, dicom_bytes

URLCONF = "pneumo.urls"
PREFIX = "api/v1/"
METHODS = ("get", "post", "put", "patch", "delete")
ROLES = ("anon", "tech", "rad", "admin")


@dataclass(frozen=True)
class Operation:
    name: str  # the route's name in the "api" namespace
    method: str
    path: str  # e.g. "api/v1/studies/{}/claim/"
    has_object: bool


def _walk(patterns: list, prefix: str = "") -> list[tuple[str, URLPattern]]:
    found = []
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            found += _walk(pattern.url_patterns, route)
        else:
            found.append((route, pattern))
    return found


def api_operations(prefix: str = PREFIX, object_key: str = "pk") -> list[Operation]:
    """Every (route, method) the URL resolver serves under /api/v1/ (or another prefix)."""
    operations = []
    for route, pattern in _walk(get_resolver(URLCONF).url_patterns):
        if not route.startswith(prefix) or (prefix != PREFIX and pattern.name is None):
            continue  # DICOMweb's unnamed last route is its JSON 404 for every other path
        view_class = pattern.callback.view_class
        path = re.sub(r"<[^>]+>", "{}", route)
        # A site is named by its code, every other object by its id.
        has_object = bool({object_key, "code"} & pattern.pattern.converters.keys())
        operations += [Operation(pattern.name, m, path, has_object) for m in METHODS if hasattr(view_class, m)]
    return sorted(operations, key=lambda o: (o.path, o.method))


def schema_operations() -> set[tuple[str, str]]:
    schema = SchemaGenerator(urlconf=URLCONF).get_schema(request=None, public=True)
    return {
        (re.sub(r"\{[^}]+\}", "{}", path).lstrip("/"), method)
        for path, item in schema["paths"].items()
        if path.startswith("/" + PREFIX)
        for method in item
    }


OK = {"anon": 401, "tech": 200, "rad": 200, "admin": 200}
ADMIN_ONLY = {"anon": 401, "tech": 403, "rad": 403, "admin": 200}
READERS = {"anon": 401, "tech": 403, "rad": 200, "admin": 200}
# What each role gets on DEMO's object (or on the route, when it has none).
EXPECTED: dict[tuple[str, str], dict[str, int]] = {
    # An admin's password alone gets no token: 401 asking for "otp" (tests/cases/test_otp.py).
    ("token", "post"): {"anon": 200, "tech": 200, "rad": 200, "admin": 401},
    ("token", "delete"): {"anon": 401, "tech": 204, "rad": 204, "admin": 204},
    ("site-list", "get"): OK,
    ("site-detail", "get"): OK,
    # Setting a site's AI mode (live, shadow, off): admins only, audited (tests/cases/test_ai_modes.py).
    ("site-detail", "patch"): ADMIN_ONLY,
    ("patient-list", "get"): OK,
    ("patient-search", "post"): OK,
    ("patient-detail", "get"): OK,
    ("study-list", "get"): OK,
    ("study-list", "post"): {"anon": 401, "tech": 201, "rad": 403, "admin": 201},
    ("study-detail", "get"): OK,
    ("study-fhir", "get"): OK,
    ("study-predictions", "post"): READERS,
    # Only radiologists read and sign; an admin who is not one gets 403 (and sees every site).
    ("study-claim", "post"): {"anon": 401, "tech": 403, "rad": 200, "admin": 403},
    # The study is claimed by a colleague: the radiologist is refused, an admin may release it.
    ("study-release", "post"): {"anon": 401, "tech": 403, "rad": 409, "admin": 200},
    ("study-review", "post"): {"anon": 401, "tech": 403, "rad": 201, "admin": 403},
    ("study-amend", "post"): {"anon": 401, "tech": 403, "rad": 201, "admin": 403},
    ("image-file", "get"): OK,
    ("image-render", "get"): OK,
    ("image-heatmap-png", "get"): OK,
    ("image-heatmap-json", "get"): OK,
    ("worklist", "get"): READERS,
    ("model-list", "get"): OK,
    ("model-list", "post"): {**ADMIN_ONLY, "admin": 201},
    ("model-detail", "get"): OK,
    ("model-detail", "patch"): ADMIN_ONLY,
    # The figures include AI-vs-radiologist agreement: not for technicians, as on the dashboard page.
    ("stats", "get"): READERS,
    ("audit-list", "get"): ADMIN_ONLY,
    # Admins only, checked before the query: the matrix asks with none, so an admin is told what is missing.
    ("validation", "get"): {**ADMIN_ONLY, "admin": 400},
    # Admins only, checked before the body or query; the matrix sends no body, so an admin is told what is missing.
    ("site-threshold-list", "get"): ADMIN_ONLY,
    ("site-threshold-list", "post"): {**ADMIN_ONLY, "admin": 400},
}
# Routes whose object belongs to no site (every user sees the same model versions).
SITELESS_OBJECTS = {"model-detail"}

DICOMWEB_PREFIX = "dicomweb/"
# DICOMweb: the same roles and sites; a route's object is the DEMO (or NORTH) awaiting study, its image's series or
# the image itself. Storing (STOW-RS) is an upload: technicians and admins.
DICOMWEB_EXPECTED: dict[tuple[str, str], dict[str, int]] = {
    ("studies", "get"): OK,
    ("studies", "post"): {"anon": 401, "tech": 200, "rad": 403, "admin": 200},
    ("study", "get"): OK,
    ("series", "get"): OK,
    ("series-retrieve", "get"): OK,
    ("instances", "get"): OK,
    ("instance", "get"): OK,
    ("instance-metadata", "get"): OK,
    ("instance-rendered", "get"): OK,
}


def expected_status(operation: Operation, role: str, site: str, table: dict | None = None) -> int:
    demo = (EXPECTED if table is None else table)[(operation.name, operation.method)]
    if site != "NORTH" or role in ("anon", "admin"):
        return demo[role]
    return 404


@dataclass(frozen=True)
class Cell:
    operation: Operation
    role: str
    site: str  # DEMO, NORTH, or "-" for routes without a site's object

    def __str__(self) -> str:
        return f"{self.operation.name}-{self.operation.method.upper()}-{self.role}-{self.site}"


def _sites(operation: Operation) -> tuple[str, ...]:
    return ("DEMO", "NORTH") if operation.has_object and operation.name not in SITELESS_OBJECTS else ("-",)


OPERATIONS = api_operations()
CELLS = [Cell(op, role, site) for op in OPERATIONS for site in _sites(op) for role in ROLES]
SUMMARY = f"{len(OPERATIONS)}-operations-{len({o.path for o in OPERATIONS})}-routes-{len(CELLS)}-cells"
DICOMWEB_OPERATIONS = api_operations(DICOMWEB_PREFIX, object_key="study")
DICOMWEB_CELLS = [Cell(op, role, site) for op in DICOMWEB_OPERATIONS for site in _sites(op) for role in ROLES]


# --- Requests -------------------------------------------------------------------------------


def _target(cell: Cell, world: World) -> object | None:
    name = cell.operation.name
    if name == "model-detail":
        return world.version
    if not cell.operation.has_object:
        return None
    place = world.site("NORTH" if cell.site == "NORTH" else "DEMO")
    if name == "site-detail":
        return place.image.site
    if name.startswith("image-"):
        return place.image
    return {
        "patient-detail": place.patient,
        "study-detail": place.awaiting,
        "study-fhir": place.awaiting,
        "study-predictions": place.awaiting,
        "study-claim": place.awaiting,
        "study-review": place.awaiting,
        "study-release": place.in_review,
        "study-amend": place.reported,
    }[name]


def _body(cell: Cell, username: str) -> tuple[dict | None, str]:
    bodies = {
        ("token", "post"): {"username": username, "password": PASSWORD},
        ("patient-search", "post"): {"query": "doe"},
        ("study-review", "post"): {"finding": "pneumonia"},
        ("study-amend", "post"): {"finding": "pneumonia", "amendment_reason": "Second look", "amends_version": 1},
        ("model-list", "post"): {"name": "new-model", "version": "2", "source_path": "/m/x.keras", "sha256": "b" * 64},
        ("model-detail", "patch"): {"description": "Recalibrated"},
        ("site-detail", "patch"): {"ai_mode": "shadow"},
    }
    if (cell.operation.name, cell.operation.method) == ("study-list", "post"):
        from django.core.files.uploadedfile import SimpleUploadedFile

        return {"files": [SimpleUploadedFile("chest.dcm", dicom_bytes())], "site": "DEMO"}, "multipart"
    return bodies.get((cell.operation.name, cell.operation.method)), "json"


# --- Tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize("summary", [SUMMARY])
def test_it_has_an_expectation_for_every_operation(summary: str) -> None:
    print(f"\nAPI access matrix: {summary}")
    missing = sorted({(o.name, o.method) for o in OPERATIONS} - EXPECTED.keys())
    assert not missing, f"operations without a row in EXPECTED: {missing}"
    stale = sorted(EXPECTED.keys() - {(o.name, o.method) for o in OPERATIONS})
    assert not stale, f"rows of EXPECTED for operations that no longer exist: {stale}"


def test_it_matches_the_schema_to_the_url_resolver() -> None:
    resolved = {(o.path, o.method) for o in OPERATIONS}
    assert resolved == schema_operations()
    assert len(resolved) == len(EXPECTED)


@pytest.mark.parametrize("cell", CELLS, ids=str)
def test_it_answers_each_role_as_the_matrix_says(
    cell: Cell, world: World, api, tech, rad, admin_user, settings
) -> None:
    # Given a user of DEMO in the cell's role, and the route's object at the cell's site
    assert (cell.operation.name, cell.operation.method) in EXPECTED, f"{cell} has no expectation: add it to EXPECTED"
    user = {"anon": None, "tech": tech, "rad": rad, "admin": admin_user}[cell.role]
    target = _target(cell, world)
    key = {"code": target.code} if cell.operation.name == "site-detail" else {"pk": getattr(target, "pk", None)}
    url = reverse(f"api:{cell.operation.name}", kwargs=key if target is not None else None)
    body, fmt = _body(cell, user.username if user else "tech")

    # When the user calls the operation
    response = getattr(api(user), cell.operation.method)(url, body, format=fmt)

    # Then the status is the matrix's, and errors are JSON with a detail
    expected = expected_status(cell.operation, cell.role, cell.site)
    assert response.status_code == expected, (cell, getattr(response, "data", response.content[:200]))
    if expected in (401, 403, 404):
        assert "detail" in response.json()


# --- DICOMweb --------------------------------------------------------------------------------------


def test_it_has_an_expectation_for_every_dicomweb_operation() -> None:
    print(f"\nDICOMweb access matrix: {len(DICOMWEB_OPERATIONS)} operations, {len(DICOMWEB_CELLS)} cells")
    assert {(o.name, o.method) for o in DICOMWEB_OPERATIONS} == DICOMWEB_EXPECTED.keys()


def _dicomweb_kwargs(cell: Cell, world: World) -> dict[str, str]:
    if not cell.operation.has_object:
        return {}
    image = world.site(cell.site).image
    uids = {"study": image.study.study_instance_uid, "series": image.series_instance_uid,
            "instance": image.sop_instance_uid}  # fmt: skip
    return dict(list(uids.items())[: cell.operation.path.count("{}")])  # the route's UIDs, study first


STOW_BOUNDARY = "matrix-boundary"


def _stow_body() -> bytes:
    return (
        f"--{STOW_BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
        + dicom_bytes()
        + f"\r\n--{STOW_BOUNDARY}--\r\n".encode()
    )


@pytest.mark.parametrize("cell", DICOMWEB_CELLS, ids=str)
def test_it_answers_each_role_on_dicomweb_as_the_matrix_says(
    cell: Cell, world: World, api, tech, rad, admin_user
) -> None:
    # Given a user of DEMO in the cell's role, and DICOM images (with a series) at DEMO and NORTH
    from cases.models import Image

    for place in (world.demo, world.north):
        Image.objects.filter(pk=place.image.pk).update(series_instance_uid=f"1.2.826.0.1.3680043.12.{place.image.pk}")
        place.image.refresh_from_db()
    user = {"anon": None, "tech": tech, "rad": rad, "admin": admin_user}[cell.role]
    url = reverse(f"dicomweb:{cell.operation.name}", kwargs=_dicomweb_kwargs(cell, world))

    # When the user calls the operation (STOW-RS: one instance for DEMO)
    client = api(user)
    if cell.operation.method == "post":
        content_type = f'multipart/related; type="application/dicom"; boundary={STOW_BOUNDARY}'
        response = client.post(f"{url}?site=DEMO", _stow_body(), content_type=content_type)
    else:
        response = client.get(url)

    # Then the status is the matrix's, and errors are JSON with a detail
    expected = expected_status(cell.operation, cell.role, cell.site, DICOMWEB_EXPECTED)
    assert response.status_code == expected, (
        cell,
        response.get("Content-Type"),
        getattr(response, "content", b"")[:200],
    )
    if expected in (401, 403, 404):
        assert "detail" in response.json()
