"""Shadow mode on every route: until a study is signed nobody but an admin sees a trace of its AI; then everyone does.

The world is one stat study at DEMO whose stored prediction succeeded and
flagged it (probability 0.8765, a heatmap, model "umbra-7"), whose AI result
SR and heatmap capture went to a PACS while DEMO was live, and whose site
then went to shadow. Every GET route of the API resolver (and the POSTs that
answer with AI results), every DICOMweb GET route and every HTML page is
called as a technician, a radiologist and an admin of DEMO: the first two
must find none of the result's distinctive values, labels, objects or
heatmaps; the admin sees the prediction. Once a radiologist signs, the
comparison with the stored result is shown and counted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import timedelta
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from cases.ai_modes import site_ai_mode_set
from cases.dicom.outbox import outbox_queue_for_prediction
from cases.ingest import IncomingFile, studies_ingest
from cases.models import Image, OutboxItem, ResultDestination, Review, Site, Study, User
from cases.states import StudyStatus
from inference.models import AiMode, ModelVersion, Prediction, PredictionStatus
from inference.services import study_ai_refresh
from tests.api.test_access_matrix import DICOMWEB_PREFIX, api_operations
from tests.dicom_factory import make_dicom
from tests.security.test_html_access import PAGES, html_routes

pytestmark = pytest.mark.django_db

PROBABILITY = 0.8765
MODEL = "umbra-7"
HEAT = 0.4321
# How the shadowed result would read if it leaked: its number (JSON, percent, rounded), its model, its heatmap,
# and the labels a flagged result carries on pages (worklist badge and class, studies badge, reading hint).
VALUE_NEEDLES = ("0.8765", "87.65", "87.6%", "88%", "0.4321")
LABEL_NEEDLES = (
    "Pneumonia suspected",
    "AI flag",
    "AI suggests",
    "is-flagged",
    "badge flag",
    "AI result, not confirmed",
)
# Every user sees the registry of model versions; its name there is no trace of this study's result.
REGISTRY_ROUTES = {"model-list", "model-detail"}
# POSTs that answer with a study or its AI results (the others are tested on their own: signing below).
READS_BY_POST = {("study-predictions", "post"), ("patient-search", "post"), ("study-claim", "post")}
HEATMAP_ROUTES = {"image-heatmap-png", "image-heatmap-json", "image_heatmap"}


@dataclass
class ShadowWorld:
    site: Site
    study: Study
    image: Image
    version: ModelVersion
    ai_objects: list[tuple[str, str]]  # (series, SOP instance) UIDs of the AI result SR and heatmap capture

    def needles(self, *, registry: bool = False) -> tuple[str, ...]:
        uids = tuple(uid for pair in self.ai_objects for uid in pair)
        return VALUE_NEEDLES + LABEL_NEEDLES + uids + (() if registry else (MODEL,))


def _uids_of(item: OutboxItem) -> tuple[str, str]:
    from pydicom import dcmread

    with item.file.open("rb") as handle:
        return str(dcmread(handle, stop_before_pixels=True).SeriesInstanceUID), item.sop_instance_uid


def result_stored(prediction: Prediction, *, probability: float = PROBABILITY) -> Prediction:
    """The worker's result as ``inference.services._prediction_store`` writes it, then the study follows it."""
    Prediction.objects.filter(pk=prediction.pk).update(
        status=PredictionStatus.SUCCEEDED,
        probability=probability,
        label="pneumonia" if probability >= 0.5 else "normal",
        threshold=0.5,
        heatmap=[[0.0, HEAT], [0.25, 1.0]],
        domain="in_domain",
        finished_at=timezone.now(),
        inference_ms=613.0,
    )
    study_ai_refresh(study_id=prediction.image.study_id)
    return Prediction.objects.select_related("image__study__site", "model_version").get(pk=prediction.pk)


@pytest.fixture
def shadow(demo_site, admin_user, make_model_version) -> ShadowWorld:
    version = make_model_version(name=MODEL, version="4.2", threshold=0.5, is_active=True)
    ResultDestination.objects.create(ae_title="PACS", host="127.0.0.1", port=9, all_sites=True)
    report = studies_ingest(
        files=[IncomingFile("chest.dcm", make_dicom(8, patient_id="SHADOW-1"))], site=demo_site, user=None,
        priority="stat",
    )  # fmt: skip
    study = Study.objects.get(pk=report.study_ids[0])
    prediction = result_stored(study.images.get().predictions.get())
    items = outbox_queue_for_prediction(prediction)
    assert sorted(i.kind for i in items) == ["ai_sr", "secondary_capture"]  # sent while DEMO was live
    site_ai_mode_set(site=demo_site, mode=AiMode.SHADOW, user=admin_user)
    study.refresh_from_db()
    assert study.status == StudyStatus.AWAITING_REVIEW
    return ShadowWorld(demo_site, study, study.images.get(), version, [_uids_of(item) for item in items])


@pytest.fixture
def users(tech, rad, admin_user) -> dict[str, User]:
    return {"tech": tech, "rad": rad, "admin": admin_user}


# --- Finding traces ----------------------------------------------------------------------------------------


def _found(text: str, needles: tuple[str, ...]) -> list[str]:
    return [needle for needle in needles if needle in text]


def json_traces(data: Any, path: str = "") -> list[str]:
    """Where a JSON answer carries an AI result: a probability, a flag, a prediction, an AI Observation or Device."""
    traces = []
    if isinstance(data, dict):
        for key, value in data.items():
            here = f"{path}.{key}"
            shown = {
                "ai_probability": value is not None,
                "probability": value is not None,
                "ai_domain": value is not None,
                "ai_completed_at": value is not None,
                "ai_flagged": value is not False,
                "label": bool(value),
                "predictions": bool(value),
                "resourceType": value in ("Observation", "Device"),
            }
            if shown.get(key):
                traces.append(f"{here}={value!r}")
            else:
                traces += json_traces(value, here)
    elif isinstance(data, list):
        for n, value in enumerate(data):
            traces += json_traces(value, f"{path}[{n}]")
    return traces


def _text(response) -> str:
    content = b"".join(response.streaming_content) if response.streaming else response.content
    return content.decode("utf-8", "replace")


def _json(response, text: str) -> Any:
    if "json" not in response.get("Content-Type", ""):
        return None
    return json.loads(text) if text else None


# --- The API ----------------------------------------------------------------------------------------------


def _api_url(name: str, path: str, world: ShadowWorld) -> str:
    if "{}" not in path:
        return "/" + path
    targets = {"site-": world.site.code, "image-": world.image.pk, "model-": world.version.pk,
               "patient-": world.study.patient_id, "study-": world.study.pk}  # fmt: skip
    target = next((value for prefix, value in targets.items() if name.startswith(prefix)), None)
    assert target is not None, f"a new object route {name}: say which object of the shadow world it shows"
    return "/" + path.format(target)


def api_reads(world: ShadowWorld) -> list[tuple[str, str, str]]:
    """(route name, method, url) of every API read: each GET route, and the POSTs that answer with results."""
    reads = []
    for op in api_operations():
        if op.method == "get" or (op.name, op.method) in READS_BY_POST:
            reads.append((op.name, op.method, _api_url(op.name, op.path, world)))
    reads += [
        ("study-list", "get", "/api/v1/studies/?ordering=-ai_probability"),
        ("study-list", "get", "/api/v1/studies/?flagged=true"),
        ("worklist", "get", "/api/v1/worklist/?flagged=true"),
    ]
    return reads


API_BODIES = {"patient-search": {"query": "SHADOW-1"}}


def _api_answers(world: ShadowWorld, api, user: User) -> dict[str, Any]:
    client, answers = api(user), {}
    for name, method, url in api_reads(world):
        response = getattr(client, method)(url, API_BODIES.get(name), format="json")
        text = _text(response)
        answers[f"{method.upper()} {url}"] = (name, response.status_code, text, _json(response, text))
    return answers


@pytest.mark.parametrize("role", ["tech", "rad"])
def test_it_shows_readers_no_trace_of_a_shadowed_result_on_any_api_route(shadow: ShadowWorld, api, users, role) -> None:
    # When a reader calls every API read
    answers = _api_answers(shadow, api, users[role])

    # Then none answers with the result, its model, its heatmap or its flag
    leaks = {}
    for call, (name, status, text, data) in answers.items():
        found = _found(text, shadow.needles(registry=name in REGISTRY_ROUTES)) + json_traces(data)
        if name in HEATMAP_ROUTES and status != 404:
            found.append(f"heatmap answered {status}")
        if found:
            leaks[call] = found
    assert not leaks, leaks
    # And the routes that show the study did answer (a 404 everywhere would hide nothing)
    detail = answers[f"GET /api/v1/studies/{shadow.study.pk}/"]
    assert detail[1] == 200 and [i["predictions"] for i in detail[3]["images"]] == [[]]
    fhir = answers[f"GET /api/v1/studies/{shadow.study.pk}/fhir/"][3]
    assert [e["resource"]["status"] for e in fhir["entry"] if e["resource"]["resourceType"] == "DiagnosticReport"] == [
        "registered"  # "preliminary" would say that an AI result exists
    ]
    # Nor do the dashboard's figures count it: not even that the AI has run
    if role == "rad":
        stats = answers["GET /api/v1/stats/"][3]
        assert stats["turnaround"]["upload_to_ai"]["n"] == 0 and stats["outside_domain_by_day"] == []


def test_it_shows_an_admin_the_shadowed_prediction(shadow: ShadowWorld, api, users) -> None:
    answers = _api_answers(shadow, api, users["admin"])

    _, status, _, data = answers[f"GET /api/v1/studies/{shadow.study.pk}/"]
    [prediction] = data["images"][0]["predictions"]
    assert status == 200 and prediction["probability"] == PROBABILITY and prediction["model_version"]["name"] == MODEL
    assert data["ai_probability"] is None  # the study's summary stays empty for everyone: nothing orders by it
    assert answers[f"GET /api/v1/images/{shadow.image.pk}/heatmap.json"][1] == 200
    assert answers[f"GET /api/v1/images/{shadow.image.pk}/heatmap.png"][1] == 200
    fhir = answers[f"GET /api/v1/studies/{shadow.study.pk}/fhir/"][3]
    [observation] = [e["resource"] for e in fhir["entry"] if e["resource"]["resourceType"] == "Observation"]
    assert observation["valueQuantity"]["value"] == PROBABILITY
    assert "0.8765" in answers[f"POST /api/v1/studies/{shadow.study.pk}/predictions/"][2]


# --- DICOMweb ----------------------------------------------------------------------------------------------


def dicomweb_reads(world: ShadowWorld) -> list[tuple[str, str]]:
    """(route name, url) of every DICOMweb GET route, on the study's image and on each of its AI objects."""
    image = world.image
    objects = [(image.series_instance_uid, image.sop_instance_uid)]
    objects += world.ai_objects
    reads = [
        ("studies", reverse("dicomweb:studies")),
        ("studies", reverse("dicomweb:studies") + "?ModalitiesInStudy=SR"),
    ]
    for op in api_operations(DICOMWEB_PREFIX, object_key="study"):
        if op.method != "get" or not op.has_object:
            continue
        for series, instance in objects:
            uids = {"study": world.study.study_instance_uid, "series": series, "instance": instance}
            reads.append(
                (op.name, reverse(f"dicomweb:{op.name}", kwargs=dict(list(uids.items())[: op.path.count("{}")])))
            )
    return list(dict.fromkeys(reads))


@pytest.mark.parametrize("role", ["tech", "rad"])
def test_it_lists_and_serves_readers_no_ai_object_of_a_shadowed_study_on_dicomweb(
    shadow: ShadowWorld, api, users, role
) -> None:
    client = api(users[role])
    leaks, answered = {}, {}
    for _, url in dicomweb_reads(shadow):
        response = client.get(url)
        answered[url] = response.status_code
        found = _found(_text(response), shadow.needles())
        if found:
            leaks[url] = found
    assert not leaks, leaks

    # The study and its image are there; its AI series and objects are not
    study_uid = shadow.study.study_instance_uid
    [found] = client.get(reverse("dicomweb:studies"), {"StudyInstanceUID": study_uid}).json()
    assert found["00080061"]["Value"] == ["CR"] and found["00201208"]["Value"] == [1]
    assert client.get(reverse("dicomweb:studies"), {"ModalitiesInStudy": "SR"}).json() == []
    served = {url: status for url, status in answered.items() if any(u in url for _, u in shadow.ai_objects)}
    assert served and set(served.values()) == {404}, served
    for series_uid, _ in shadow.ai_objects:
        series = reverse("dicomweb:series-retrieve", kwargs={"study": study_uid, "series": series_uid})
        assert answered[series] == 404
    assert answered[reverse("dicomweb:study", kwargs={"study": study_uid})] == 200


# --- HTML pages --------------------------------------------------------------------------------------------


def html_reads(world: ShadowWorld) -> list[tuple[str, str]]:
    """(route key, url) of every page GET outside the admin, on the shadowed study or its image."""
    since = (timezone.now() - timedelta(hours=1)).isoformat()
    queries = {"study_statuses": {"ids": world.study.pk}, "worklist_rows": {"since": since}}
    reads = []
    for route in html_routes():
        methods = {m for (key, m) in PAGES if key == route.key} or {"get"}
        if route.admin_model or "get" not in methods:
            continue
        target = world.image if route.key.startswith("image_") else world.study
        url = route.path.format(target.pk) if route.has_object else route.path
        query = queries.get(route.key)
        reads.append((route.key, url + (f"?{urlencode(query)}" if query else "")))
    return reads


def _html_answers(world: ShadowWorld, user: User) -> dict[str, tuple[str, int, str]]:
    client = Client()
    client.force_login(user)
    answers = {}
    for key, url in html_reads(world):
        response = client.get(url, HTTP_ACCEPT="text/html")
        answers[key] = (url, response.status_code, _text(response))
    return answers


@pytest.mark.parametrize("role", ["tech", "rad"])
def test_it_shows_readers_no_trace_of_a_shadowed_result_on_any_page(shadow: ShadowWorld, users, role) -> None:
    answers = _html_answers(shadow, users[role])

    leaks = {}
    for key, (url, status, text) in answers.items():
        found = _found(text, shadow.needles())
        if key in HEATMAP_ROUTES and status != 404:
            found.append(f"heatmap answered {status}")
        if key == "study_statuses":
            found += json_traces(json.loads(text))
        if found:
            leaks[url] = found
    assert not leaks, leaks
    # The pages that show the study did show it: the study page, the report, the studies list, the poll
    for key in ("study_detail", "study_report", "studies"):
        assert answers[key][1] == 200 and "SHADOW-1" in answers[key][2], key
    [status] = json.loads(answers["study_statuses"][2])["studies"]
    assert status["id"] == shadow.study.pk and status["status"] == StudyStatus.AWAITING_REVIEW
    if role == "rad":
        assert answers["worklist"][1] == 200 and "SHADOW-1" in answers["worklist"][2]
        assert 'data-ai-label=""' in answers["study_detail"][2]  # the reading form compares with nothing


def test_it_shows_an_admin_the_shadowed_result_on_the_study_page(shadow: ShadowWorld, users) -> None:
    answers = _html_answers(shadow, users["admin"])

    _, status, page = answers["study_detail"]
    assert status == 200 and "88%" in page and MODEL in page and "Pneumonia suspected" in page
    assert "Shadow mode at DEMO" in page
    assert answers["image_heatmap"][1] == 200


# --- Signing -------------------------------------------------------------------------------------------------


def test_it_compares_the_blind_reading_when_signed_and_then_shows_and_counts_it(
    shadow: ShadowWorld, api, users
) -> None:
    rad = users["rad"]
    client = api(rad)
    url = f"/api/v1/studies/{shadow.study.pk}/"

    # When the radiologist signs a finding the AI disagrees with, without a reason
    signed = client.post(f"{url}review/", {"finding": "no_pneumonia"}, format="json")

    # Then the signature is taken, compared with the stored result, and recorded as made in shadow mode
    assert signed.status_code == 201, signed.content
    review = Review.objects.get(study=shadow.study)
    assert (review.agreement, review.reason, review.ai_mode) == ("disagree", "", AiMode.SHADOW)
    assert (review.ai_label, review.ai_probability, review.model_version) == ("pneumonia", PROBABILITY, shadow.version)

    # And the result is now shown: the study's summary, its predictions, heatmap, FHIR Observation and pages
    detail = client.get(url).json()
    assert (detail["ai_probability"], detail["ai_flagged"], detail["ai_result_review"]) == (
        PROBABILITY,
        True,
        "disagree",
    )
    assert detail["images"][0]["predictions"][0]["probability"] == PROBABILITY
    assert client.get(f"/api/v1/images/{shadow.image.pk}/heatmap.json").status_code == 200
    fhir = client.get(f"{url}fhir/").json()
    assert "Observation" in {e["resource"]["resourceType"] for e in fhir["entry"]}
    page = Client()
    page.force_login(rad)
    assert "88%" in page.get(f"/studies/{shadow.study.pk}/").content.decode()
    dicomweb = client.get(reverse("dicomweb:studies"), {"ModalitiesInStudy": "SR"}).json()
    assert [s["0020000D"]["Value"] for s in dicomweb] == [[shadow.study.study_instance_uid]]

    # And counted: the dashboard's figures hold one overruled result of the model
    stats = client.get("/api/v1/stats/").json()
    [figures] = stats["agreement"]
    assert figures["model_version_id"] == shadow.version.pk
    assert (figures["n"], figures["overruled"], figures["confusion_matrix"]["fp"]) == (1, 1, 1)
    assert stats["reviews_without_ai"] == 0
