"""Who may open what, for every HTML page, download and admin page: generated from the URL resolver.

Every route outside ``/api/`` (and outside the admin's own plumbing) becomes
cells: anonymous, technician, radiologist and admin of site DEMO, against an
object of DEMO and of NORTH (routes without an object have one column). A new
route fails ``test_it_has_an_expectation_for_every_route`` until ``PAGES`` (or,
for a newly registered admin model, ``ADMIN_MODELS``) says what each role gets.
Another site's object is 404 for everyone but admins, who see every site. Every
POST without a CSRF token is refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pytest
from axes.models import AccessAttempt, AccessFailureLog, AccessLog
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import URLPattern, URLResolver, get_resolver
from django.utils import timezone

from cases.api.tokens import token_create
from cases.audit import audit_record
from cases.models import (
    ApiToken,
    AuditEvent,
    DicomPeer,
    DriftAlarm,
    DriftKind,
    OutboxItem,
    ResultDestination,
    ResultObject,
    Review,
    User,
)
from inference.models import ModelVersion, SiteThreshold
from tests.api.conftest import SiteWorld, site_world

pytestmark = pytest.mark.django_db

ROLES = ("anon", "tech", "rad", "admin")
SITES = ("DEMO", "NORTH")
# The admin's own plumbing: no object of ours behind these routes.
ADMIN_INTERNAL = {"index", "login", "logout", "password_change", "password_change_done", "autocomplete", "jsi18n"}
ADMIN_INTERNAL_ROUTES = {"admin/r/<path:content_type_id>/<path:object_id>/", "admin/(?P<url>.*)$"}
ADMIN_INTERNAL_ROUTES |= {"admin/^(?P<app_label>auth|axes|cases|inference)/$"}
# Routes the lead is adding (see the report of issue 6): their rows wait here until the URL exists.
PENDING: set[tuple[str, str]] = set()


@dataclass(frozen=True)
class Route:
    key: str  # the route's name; admin model routes: "<app>_<model>_<page>"
    path: str  # e.g. "studies/{}/sign/"
    has_object: bool
    admin_model: str = ""  # "<app>_<model>" for admin model routes


def _walk(patterns: list, prefix: str = "") -> list[tuple[str, URLPattern]]:
    found = []
    for pattern in patterns:
        route = prefix + str(pattern.pattern)
        if isinstance(pattern, URLResolver):
            found += _walk(pattern.url_patterns, route)
        else:
            found.append((route, pattern))
    return found


_ADMIN_MODEL_ROUTE = re.compile(r"^admin/(\w+)/(\w+)/(?:<[^>]+>/)?(\w*)/?$")


def _admin_route(route: str, pattern: URLPattern) -> Route | None:
    if pattern.name in ADMIN_INTERNAL or route in ADMIN_INTERNAL_ROUTES:
        return None
    match = _ADMIN_MODEL_ROUTE.match(route.replace("<path:object_id>", "<id>"))
    assert match, f"an admin route this test does not understand: {route}"
    app, model, page = match.groups()
    if pattern.name == "auth_user_password_change":
        page = "password"
    page = page or ("redirect" if "<" in route else "changelist")
    return Route(f"{app}_{model}_{page}", _template(route), "<" in route, f"{app}_{model}")


def _template(route: str) -> str:
    return re.sub(r"<[^>]+>", "{}", route)


def html_routes() -> list[Route]:
    """Every route outside the API, with the admin's model pages and without its plumbing."""
    routes = []
    for route, pattern in _walk(get_resolver().url_patterns):
        if route.startswith(("api/", "dicomweb/")):  # APIs: tests/api/test_access_matrix.py
            continue
        if route.startswith("admin/"):
            found = _admin_route(route, pattern)
            if found:
                routes.append(found)
            continue
        assert pattern.name, f"an unnamed route: {route}"
        routes.append(Route(pattern.name, "/" + _template(route), "pk" in pattern.pattern.converters))
    return sorted(routes, key=lambda r: r.key)


# --- Expectations ----------------------------------------------------------------------------------------

ANY_SIGNED_IN = {"anon": 302, "tech": 200, "rad": 200, "admin": 200}
READERS = {"anon": 302, "tech": 403, "rad": 200, "admin": 200}
ADMINS_ONLY = {"anon": 302, "tech": 403, "rad": 403, "admin": 200}
# What each role gets on DEMO's object (or on the route, when it has none). Pages answer HTML (or redirect)
# whatever a client accepts: a refused action is the page again with the refusal's status code.
PAGES: dict[tuple[str, str], dict[str, int]] = {
    ("home", "get"): {"anon": 302, "tech": 302, "rad": 302, "admin": 302},
    ("login", "get"): {"anon": 200, "tech": 302, "rad": 302, "admin": 302},
    ("logout", "post"): {"anon": 302, "tech": 302, "rad": 302, "admin": 302},
    # Single sign-on is off unless PNEUMO_OIDC_ISSUER is set (tests/cases/test_sso.py turns it on).
    ("sso_login", "get"): {"anon": 404, "tech": 404, "rad": 404, "admin": 404},
    ("sso_callback", "get"): {"anon": 404, "tech": 404, "rad": 404, "admin": 404},
    # The second factor: users without one are sent to enrol; admins here are verified (tests/conftest.py).
    ("otp_verify", "get"): {"anon": 302, "tech": 302, "rad": 302, "admin": 200},
    ("otp_enrol", "get"): {"anon": 302, "tech": 200, "rad": 200, "admin": 200},
    ("health", "get"): {"anon": 200, "tech": 200, "rad": 200, "admin": 200},
    ("favicon", "get"): {"anon": 301, "tech": 301, "rad": 301, "admin": 301},
    ("metrics", "get"): {"anon": 404, "tech": 404, "rad": 404, "admin": 200},
    ("upload", "get"): {"anon": 302, "tech": 200, "rad": 403, "admin": 200},
    ("upload_files", "post"): {"anon": 302, "tech": 400, "rad": 403, "admin": 400},  # no file sent
    ("studies", "get"): ANY_SIGNED_IN,
    ("study_statuses", "get"): ANY_SIGNED_IN,
    ("worklist", "get"): READERS,
    ("worklist", "post"): {"anon": 302, "tech": 403, "rad": 302, "admin": 302},
    ("worklist_rows", "get"): READERS,
    ("worklist_version", "get"): READERS,
    ("dashboard", "get"): READERS,
    ("audit_export_csv", "get"): {"anon": 302, "tech": 403, "rad": 403, "admin": 200},
    # Without a site and model the page offers the choice.
    ("validation", "get"): {"anon": 302, "tech": 403, "rad": 403, "admin": 200},
    # Posted without a site, model or threshold: refused as a bad request, after the role check.
    ("validation_threshold_set", "post"): {"anon": 302, "tech": 403, "rad": 403, "admin": 400},
    ("operations", "get"): ADMINS_ONLY,
    # Posted without a prediction or a site: refused as a bad request, after the role check.
    ("operations_prediction_retry", "post"): {"anon": 302, "tech": 403, "rad": 403, "admin": 400},
    ("operations_prediction_cancel", "post"): {"anon": 302, "tech": 403, "rad": 403, "admin": 400},
    ("operations_site_pause", "post"): {"anon": 302, "tech": 403, "rad": 403, "admin": 400},
    ("operations_site_resume", "post"): {"anon": 302, "tech": 403, "rad": 403, "admin": 400},
    ("operations_study_timeline", "get"): ADMINS_ONLY,
    # The study awaiting review: opening it changes nothing; its page then claims it with a POST (radiologists).
    ("study_detail", "get"): ANY_SIGNED_IN,
    ("study_claim", "post"): {"anon": 302, "tech": 403, "rad": 200, "admin": 403},
    ("study_report", "get"): ANY_SIGNED_IN,
    # Touching a claim one does not hold is a conflict for everyone.
    ("study_claim_touch", "post"): {"anon": 302, "tech": 409, "rad": 409, "admin": 409},
    # The study is claimed by a colleague: only an admin may release it (and is sent to the worklist).
    ("study_release", "post"): {"anon": 302, "tech": 403, "rad": 409, "admin": 302},
    # Only radiologists sign (and are sent back to the study); an admin who is not one is refused.
    ("study_sign", "post"): {"anon": 302, "tech": 403, "rad": 302, "admin": 403},
    ("study_amend", "post"): {"anon": 302, "tech": 403, "rad": 302, "admin": 403},
    ("image_file", "get"): ANY_SIGNED_IN,
    ("image_pixels", "get"): ANY_SIGNED_IN,
    ("image_render", "get"): ANY_SIGNED_IN,
    ("image_heatmap", "get"): ANY_SIGNED_IN,
}
BODIES = {
    ("study_sign", "post"): {"finding": "pneumonia"},
    ("study_amend", "post"): {"finding": "pneumonia", "amendment_reason": "Second look", "amends_version": "1"},
    ("worklist", "post"): {"priority": "stat"},
}


@dataclass(frozen=True)
class AdminModel:
    """An admin model page's object, and the pages refused even to a superuser."""

    target: Callable[[World, str], object]
    sited: bool = True
    refused: frozenset[str] = field(default_factory=frozenset)


NOT_ADDED = frozenset({"add"})
APPEND_ONLY = frozenset({"add", "delete"})
ADMIN_MODELS: dict[str, AdminModel] = {
    "auth_group": AdminModel(lambda w, s: w.group, sited=False),
    "axes_accessattempt": AdminModel(lambda w, s: w.attempt, sited=False, refused=NOT_ADDED),
    "axes_accesslog": AdminModel(lambda w, s: w.access_log, sited=False, refused=NOT_ADDED),
    "axes_accessfailurelog": AdminModel(lambda w, s: w.failure_log, sited=False, refused=NOT_ADDED),
    "cases_site": AdminModel(lambda w, s: w.site(s).site),
    # A token is read-only in the admin: listed, viewed and revoked (its delete), never added.
    "cases_apitoken": AdminModel(lambda w, s: w.token, sited=False, refused=NOT_ADDED),
    "cases_user": AdminModel(lambda w, s: w.user(s)),
    "cases_patient": AdminModel(lambda w, s: w.site(s).patient),
    "cases_study": AdminModel(lambda w, s: w.site(s).awaiting),
    "cases_image": AdminModel(lambda w, s: w.site(s).image, refused=NOT_ADDED),
    "cases_review": AdminModel(lambda w, s: w.review(s), refused=APPEND_ONLY),
    "cases_auditevent": AdminModel(lambda w, s: w.event(s), refused=APPEND_ONLY),
    # The world's version is active: frozen by the registry, so not even a superuser deletes it.
    "inference_modelversion": AdminModel(lambda w, s: w.version, sited=False, refused=frozenset({"delete"})),
    "inference_prediction": AdminModel(lambda w, s: w.site(s).prediction, refused=NOT_ADDED),
    "cases_dicompeer": AdminModel(lambda w, s: w.peer, sited=False),
    "cases_resultdestination": AdminModel(lambda w, s: w.destination, sited=False),
    # The outbox is a record of what left Pneumo: never added or deleted by hand, only resent.
    "cases_outboxitem": AdminModel(lambda w, s: w.outbox_item, sited=False, refused=APPEND_ONLY),
    # A drift alarm is opened by the daily check and acknowledged by an action, never added or deleted by hand.
    "cases_driftalarm": AdminModel(lambda w, s: w.drift_alarm, sited=False, refused=APPEND_ONLY),
    # A site threshold is set from the validation report (its evidence checked), never by hand in the admin.
    "inference_sitethreshold": AdminModel(lambda w, s: w.site_threshold, sited=False, refused=APPEND_ONLY),
}
ADMIN_PAGES = ("changelist", "add", "change", "history", "delete", "redirect", "password")


def expected_status(route: Route, method: str, role: str, site: str) -> int:
    if route.admin_model:
        return _admin_status(route, role)
    demo = PAGES[(route.key, method)][role]
    if site != "NORTH" or role in ("anon", "admin"):
        return demo
    return 404


def _admin_status(route: Route, role: str) -> int:
    page = route.key.removeprefix(route.admin_model + "_")
    if role != "admin" or page == "redirect":
        return 302  # to the admin's sign-in page, or from the old change URL to the new one
    return 403 if page in ADMIN_MODELS[route.admin_model].refused else 200


# --- The world ---------------------------------------------------------------------------------------------


@dataclass
class World:
    demo: SiteWorld
    north: SiteWorld
    version: ModelVersion
    users: dict[str, User]
    group: Group
    attempt: AccessAttempt
    access_log: AccessLog
    failure_log: AccessFailureLog
    token: ApiToken
    peer: DicomPeer
    destination: ResultDestination
    outbox_item: OutboxItem
    drift_alarm: DriftAlarm
    site_threshold: SiteThreshold

    def site(self, code: str) -> SiteWorld:
        return self.demo if code == "DEMO" else self.north

    def user(self, code: str) -> User:
        return self.users[code]

    def review(self, code: str) -> Review:
        return self.site(code).reported.reviews.get()

    def event(self, code: str) -> AuditEvent:
        return AuditEvent.objects.filter(site=self.site(code).site).order_by("pk").first()


@pytest.fixture
def world(demo_site, north_site, rad, colleague_rad, north_rad, make_patient, make_study, make_image) -> World:
    version = ModelVersion.objects.create(
        name="test-model",
        version="1",
        source_path="/models/test.keras",
        sha256="a" * 64,
        converted_path="/models/test.tflite",
        parity_passed=True,
        preprocessing_version="test-v1",
        is_active=True,
    )
    builders = {"make_patient": make_patient, "make_study": make_study, "make_image": make_image}
    demo = site_world(demo_site, reader=rad, colleague=colleague_rad, version=version, **builders)
    north = site_world(north_site, reader=north_rad, colleague=north_rad, version=version, **builders)
    for place in (demo, north):
        audit_record(action="view_study", obj=place.awaiting)
    destination = ResultDestination.objects.create(ae_title="PACS", host="127.0.0.1", port=104)
    axes = {"user_agent": "pytest", "ip_address": "10.0.0.1", "username": "rad", "http_accept": "*/*"}
    axes |= {"path_info": "/accounts/login/"}
    return World(
        demo=demo,
        north=north,
        version=version,
        users={"DEMO": colleague_rad, "NORTH": north_rad},
        group=Group.objects.get_or_create(name="Radiologist")[0],
        attempt=AccessAttempt.objects.create(**axes, get_data="", post_data="", failures_since_start=1),
        access_log=AccessLog.objects.create(**axes),
        failure_log=AccessFailureLog.objects.create(**axes),
        token=token_create(user=rad)[1],
        peer=DicomPeer.objects.create(ae_title="XRAY2", site=demo_site),
        destination=destination,
        outbox_item=OutboxItem.objects.create(
            destination=destination,
            kind=ResultObject.AI_SR,
            site=demo_site,
            study=demo.awaiting,
            sop_instance_uid="1.2.826.0.1.3680043.11.999",
            file="outbox/test.dcm",
            next_attempt_at=timezone.now(),
            retry_from=timezone.now(),
        ),
        drift_alarm=DriftAlarm.objects.create(
            site=demo_site, model_version=version, kind=DriftKind.AGREEMENT, day=timezone.localdate(), figures={}
        ),
        site_threshold=SiteThreshold.objects.create(
            site=demo_site, model_version=version, threshold=0.4, evidence={}, evidence_sufficient=False
        ),
    )


@pytest.fixture
def clients(tech, rad, admin_user) -> dict[str, Client]:
    admin_user.is_superuser = True  # as demo_data makes the admin
    admin_user.save()
    signed_in = {"anon": Client()}
    for role, user in (("tech", tech), ("rad", rad), ("admin", admin_user)):
        signed_in[role] = Client()
        signed_in[role].force_login(user)
    return signed_in


# --- The matrix ------------------------------------------------------------------------------------------------

ROUTES = html_routes()
OPERATIONS = [
    (route, method)
    for route in ROUTES
    for method in (["get"] if route.admin_model else sorted(m for (k, m) in PAGES if k == route.key) or ["get"])
]


def _url(route: Route, world: World, site: str) -> str:
    if not route.has_object:
        return route.path if route.path.startswith("/") else "/" + route.path
    target = _target(route, world, site)
    return "/" + route.path.lstrip("/").format(target.pk)


def _target(route: Route, world: World, site: str) -> object:
    if route.admin_model:
        return ADMIN_MODELS[route.admin_model].target(world, site)
    place = world.site(site)
    if route.key.startswith("image_"):
        return place.image
    return {"study_release": place.in_review, "study_amend": place.reported}.get(route.key, place.awaiting)


def _sites(route: Route) -> tuple[str, ...]:
    if not route.has_object:
        return ("-",)
    if route.admin_model and not ADMIN_MODELS[route.admin_model].sited:
        return ("-",)
    return SITES


@pytest.mark.parametrize("summary", [f"{len(OPERATIONS)}-operations-{len(ROUTES)}-routes"])
def test_it_has_an_expectation_for_every_route(summary: str) -> None:
    print(f"\nHTML access matrix: {summary}")
    pages = {(r.key, m) for r, m in OPERATIONS if not r.admin_model}
    missing = sorted(key for key in pages if key not in PAGES)
    assert not missing, f"routes without a row in PAGES: {missing}"
    stale = sorted(PAGES.keys() - pages - PENDING)
    assert not stale, f"rows of PAGES for routes that no longer exist: {stale}"
    models = {r.admin_model for r in ROUTES if r.admin_model}
    assert models == ADMIN_MODELS.keys(), f"admin models without (or with a stale) row: {models ^ ADMIN_MODELS.keys()}"
    pages_seen = {r.key.removeprefix(r.admin_model + "_") for r in ROUTES if r.admin_model}
    assert pages_seen <= set(ADMIN_PAGES), pages_seen - set(ADMIN_PAGES)


@pytest.mark.parametrize(("route", "method"), OPERATIONS, ids=[f"{r.key}-{m.upper()}" for r, m in OPERATIONS])
def test_it_answers_each_role_as_the_matrix_says(route: Route, method: str, world: World, clients) -> None:
    # Given the route's object at each site, and a client of each role of DEMO (admins last: they change state)
    answers, wanted = {}, {}
    for site in _sites(route):
        for role in ROLES:
            url = _url(route, world, site)
            body = BODIES.get((route.key, method), {})

            # When the role calls the route
            response = getattr(clients[role], method)(url, body, HTTP_ACCEPT="application/json, text/html")

            answers[(role, site)] = response.status_code
            wanted[(role, site)] = expected_status(route, method, role, site)

    # Then every cell answers as the matrix says
    wrong = {cell: (answers[cell], wanted[cell]) for cell in answers if answers[cell] != wanted[cell]}
    assert not wrong, f"{route.key} {method.upper()}: (role, site): (got, expected) {wrong}"


def test_it_sends_no_one_but_the_site_to_another_sites_object(world: World, clients) -> None:
    """The NORTH column in one place: every object route of ours is a 404 to DEMO's non-admins."""
    for route, method in OPERATIONS:
        if route.admin_model or not route.has_object:
            continue
        for role in ("tech", "rad"):
            response = getattr(clients[role], method)(_url(route, world, "NORTH"), BODIES.get((route.key, method), {}))
            assert response.status_code == 404, (route.key, role)
            assert b"DOE" not in response.content.upper()


# --- CSRF ---------------------------------------------------------------------------------------------------


@pytest.fixture
def everyone(admin_user) -> User:
    """A superuser who is also a technician and a radiologist: no role check stands before the CSRF check."""
    admin_user.is_superuser = True
    admin_user.save()
    admin_user.groups.add(Group.objects.get_or_create(name="Technician")[0])
    admin_user.groups.add(Group.objects.get_or_create(name="Radiologist")[0])
    return admin_user


def test_it_refuses_every_post_without_a_csrf_token(world: World, everyone: User) -> None:
    # Given a signed-in client whose requests must carry a CSRF token
    client = Client(enforce_csrf_checks=True)
    client.force_login(everyone)
    refused, answered = [], {}

    # When it POSTs to every page, admin form and download without one
    for route in ROUTES:
        for site in _sites(route)[:1]:
            response = client.post(_url(route, world, site), BODIES.get((route.key, "post"), {}))
            answered[route.key] = response.status_code
            if response.status_code == 403 and b"CSRF" in response.content:
                refused.append(route.key)

    # Then each one is refused by the CSRF check, and nothing changed
    assert sorted(refused) == sorted(r.key for r in ROUTES), {k: v for k, v in answered.items() if k not in refused}
    assert not Review.objects.filter(version=2).exists() and world.demo.awaiting.reviews.count() == 0


def test_it_refuses_a_sign_in_without_a_csrf_token(tech) -> None:
    client = Client(enforce_csrf_checks=True)
    response = client.post("/accounts/login/", {"username": "tech", "password": "correct-horse-battery"})
    assert response.status_code == 403 and "_auth_user_id" not in client.session


def test_it_accepts_the_same_post_with_its_token(world: World, rad) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(rad)
    client.get(f"/studies/{world.demo.awaiting.pk}/")
    token = client.cookies["csrftoken"].value
    url = f"/studies/{world.demo.awaiting.pk}/sign/"
    assert client.post(url, {"finding": "pneumonia"}).status_code == 403
    response = client.post(url, {"finding": "pneumonia"}, HTTP_X_CSRFTOKEN=token)
    assert response.status_code == 302 and world.demo.awaiting.reviews.count() == 1


def test_it_refuses_session_api_writes_without_a_csrf_token(world: World, rad) -> None:
    """The API takes a session too (the browser's): then DRF asks for the token as the pages do."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(rad)
    claim = client.post(f"/api/v1/studies/{world.demo.awaiting.pk}/claim/")
    assert claim.status_code == 403 and "CSRF" in claim.json()["detail"]
    world.demo.awaiting.refresh_from_db()
    assert world.demo.awaiting.claimed_by is None


# --- Downloads behind nginx ------------------------------------------------------------------------------------


def test_it_hands_downloads_to_nginx_when_the_sendfile_header_is_set(world: World, settings, clients) -> None:
    settings.PNEUMO_SENDFILE_HEADER = "X-Accel-Redirect"
    image = world.demo.image

    response = clients["tech"].get(f"/images/{image.pk}/file")

    assert response.status_code == 200 and response.content == b""
    assert response["X-Accel-Redirect"] == f"/protected-media/{image.file.name}"
    assert response["Content-Disposition"] == f'attachment; filename="image-{image.pk}.dcm"'
    assert response["X-Content-Type-Options"] == "nosniff" and response["Cache-Control"] == "private, no-store"
    assert clients["tech"].get(f"/images/{world.north.image.pk}/file").status_code == 404
    assert AuditEvent.objects.filter(action="download_image").count() == 1
