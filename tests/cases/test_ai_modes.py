"""A site's AI mode (cases.ai_modes): live, shadow (hidden from everyone but admins until signed) or off.

The rule and its service, and what shadow mode keeps from the worklist's
order, filters and alerts, the webhook and the result destinations; how a
switch shows or hides stored results at once; and that off predicts nothing.
Every route's answers are walked in tests/api/test_shadow_matrix.py.
"""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from cases.ai_modes import (
    AI_OFF_REASON,
    AiModeError,
    shadowed_studies_q,
    site_ai_mode_set,
    study_ai_hidden_from,
    study_ai_shadowed,
)
from cases.dicom.outbox import outbox_queue_for_prediction
from cases.ingest import IncomingFile, studies_ingest
from cases.models import AuditEvent, OutboxItem, ResultDestination, Review, Site, Study
from cases.states import StudyStatus
from cases.worklist import lane_counts, worklist_alerts, worklist_filters_from, worklist_for_user
from inference.models import AiMode, Prediction, PredictionStatus
from inference.services import predictions_request, study_ai_refresh
from tests.api import conftest as api_fixtures
from tests.cases import test_notices
from tests.dicom_factory import make_dicom

pytestmark = pytest.mark.django_db

# Fixtures of the API's tests (token clients, fresh throttles) and of the notices' (a webhook receiver, eager tasks)
api, _fresh_throttles = api_fixtures.api, api_fixtures._fresh_throttles
receiver, eager_tasks = test_notices.receiver, test_notices.eager_tasks

PROBABILITY = 0.8765
_counter = itertools.count(1)


@pytest.fixture
def version(make_model_version):
    return make_model_version(name="umbra-7", threshold=0.5, is_active=True)


@pytest.fixture
def stored(version, make_study, make_image):
    """``stored(site, probability)``: a study at ``site`` whose AI result is stored as the worker stores it."""

    def make(site: Site, probability: float | None = PROBABILITY, **fields) -> Study:
        study = make_study(site, priority=fields.pop("priority", "stat"))
        image = make_image(study)
        if probability is not None:
            Prediction.objects.create(
                image=image, model_version=version, preprocessing_version=version.preprocessing_version,
                status=PredictionStatus.SUCCEEDED, probability=probability, threshold=0.5,
                label="pneumonia" if probability >= 0.5 else "normal", domain="in_domain",
                heatmap=[[0.0, 1.0]], finished_at=timezone.now(), **fields,
            )  # fmt: skip
        study_ai_refresh(study_id=study.pk)
        study.refresh_from_db()
        return study

    return make


def _mode(site: Site, mode: str, user) -> Site:
    return site_ai_mode_set(site=site, mode=mode, user=user)


# --- The rule ----------------------------------------------------------------------------------------------


def test_it_shadows_a_study_of_a_shadow_site_until_it_is_signed(demo_site, make_study, tech, rad, admin_user) -> None:
    studies = {
        (mode, status): make_study(
            Site.objects.create(code=f"S{next(_counter)}", name="s", ai_mode=mode), status=status
        )
        for mode in AiMode.values
        for status in (StudyStatus.QUEUED, StudyStatus.AWAITING_REVIEW, StudyStatus.IN_REVIEW, StudyStatus.REPORTED)
    }

    shadowed = {key for key, study in studies.items() if study_ai_shadowed(study)}

    assert shadowed == {(AiMode.SHADOW, s) for s in ("queued", "awaiting_review", "in_review")}
    assert set(Study.objects.filter(shadowed_studies_q())) == {studies[key] for key in shadowed}
    study = studies[(AiMode.SHADOW, StudyStatus.AWAITING_REVIEW)]
    assert [study_ai_hidden_from(user=u, study=study) for u in (tech, rad, admin_user)] == [True, True, False]
    # The system itself (signing compares the blind reading with the stored result) is no reader
    assert study_ai_hidden_from(user=None, study=study) is False
    assert not study_ai_hidden_from(user=rad, study=studies[(AiMode.SHADOW, StudyStatus.REPORTED)])


# --- The service -------------------------------------------------------------------------------------------


def test_it_hides_and_shows_unsigned_results_at_once_and_audits_each_switch(demo_site, admin_user, stored) -> None:
    # Given a flagged unsigned study and a signed one at a live site
    unsigned = stored(demo_site)
    signed = stored(demo_site, probability=0.7)
    Study.objects.filter(pk=signed.pk).update(status=StudyStatus.REPORTED)
    assert (unsigned.ai_probability, unsigned.ai_flagged) == (PROBABILITY, True)

    # When an admin switches the site to shadow
    _mode(demo_site, AiMode.SHADOW, admin_user)

    # Then the unsigned study's summary is empty at once, with no AI reason; the signed one keeps its result
    unsigned.refresh_from_db()
    assert (unsigned.ai_probability, unsigned.ai_flagged, unsigned.ai_domain, unsigned.status_reason) == (
        None, False, None, "",
    )  # fmt: skip
    assert unsigned.status == StudyStatus.AWAITING_REVIEW
    assert Study.objects.get(pk=signed.pk).ai_probability == 0.7
    event = AuditEvent.objects.get(action="site_ai_mode")
    assert (event.user, event.site, event.detail) == (admin_user, demo_site, {"mode": "shadow", "was": "live"})

    # And back to live, the stored result shows again at once
    _mode(demo_site, AiMode.LIVE, admin_user)
    unsigned.refresh_from_db()
    assert (unsigned.ai_probability, unsigned.ai_flagged) == (PROBABILITY, True)
    assert AuditEvent.objects.filter(action="site_ai_mode").count() == 2


def test_it_refuses_an_unknown_mode_and_records_nothing_for_the_same_mode(demo_site, admin_user) -> None:
    with pytest.raises(AiModeError, match="live, shadow, off"):
        _mode(demo_site, "dark", admin_user)
    _mode(demo_site, AiMode.LIVE, admin_user)
    assert not AuditEvent.objects.filter(action="site_ai_mode").exists()


# --- What shadow mode keeps from the worklist ------------------------------------------------------------------


@pytest.fixture
def reading_list(demo_site, rad, admin_user, version, stored, make_image) -> dict[str, Study]:
    """Stat studies a radiologist reads: one shadowed at DEMO (flagged by its stored result, with a second image
    outside the validated use; received first) and, at the live site EAST, two flagged results and one without AI."""
    east = Site.objects.create(code="EAST", name="East")
    rad.sites.add(east)
    _mode(demo_site, AiMode.SHADOW, admin_user)
    shadowed = stored(demo_site)
    Prediction.objects.create(
        image=make_image(shadowed), model_version=version, preprocessing_version=version.preprocessing_version,
        status=PredictionStatus.SUCCEEDED, probability=0.3, threshold=0.5, label="normal",
        outside_validated_use=True, outside_validated_use_reason="Adult patient", finished_at=timezone.now(),
    )  # fmt: skip
    study_ai_refresh(study_id=shadowed.pk)
    studies = {
        "shadow": shadowed,
        "no_ai": stored(east, probability=None),
        "high": stored(east, probability=0.95),
        "low": stored(east, probability=0.6),
    }
    start = timezone.now() - timedelta(hours=1)
    for n, study in enumerate(studies.values()):
        Study.objects.filter(pk=study.pk).update(received_at=start + timedelta(minutes=n))
    return studies


def _ids(studies) -> list[int]:
    return [study.pk for study in studies]


def _sorts_as_no_ai(ids: list[int], studies: dict[str, Study]) -> bool:
    """The shadowed study sits where a study without AI sits, against each study that has a result."""
    at = {name: ids.index(study.pk) for name, study in studies.items()}
    return all((at["shadow"] < at[r]) == (at["no_ai"] < at[r]) for r in ("high", "low"))


def test_it_orders_filters_and_alerts_the_worklist_as_if_a_shadowed_study_had_no_ai(reading_list, rad, api) -> None:
    s = reading_list
    flagged = worklist_filters_from({"flagged": True})

    # The worklist: flagged live results first, then the shadowed study in the order it came
    assert _ids(worklist_for_user(user=rad)) == _ids([s["high"], s["low"], s["shadow"], s["no_ai"]])
    assert _ids(worklist_for_user(user=rad, filters=flagged)) == _ids([s["high"], s["low"]])
    assert lane_counts(user=rad)["flagged"] == 2 and lane_counts(user=rad)["stat_flagged"] == 2
    since = timezone.now() - timedelta(hours=2)
    assert _ids(worklist_alerts(user=rad, since=since)) == _ids([s["high"], s["low"]])

    # The API's worklist and study list alike
    client = api(rad)
    rows = client.get("/api/v1/worklist/").json()["results"]
    assert [r["id"] for r in rows] == _ids([s["high"], s["low"], s["shadow"], s["no_ai"]])
    shadow_row = next(r for r in rows if r["id"] == s["shadow"].pk)
    assert (shadow_row["ai_outside_validated_use"], shadow_row["ai_outside_validated_use_reason"]) == (False, None)
    assert [r["id"] for r in client.get("/api/v1/worklist/?flagged=true").json()["results"]] == _ids(
        [s["high"], s["low"]]
    )
    listed = client.get("/api/v1/studies/?flagged=true").json()["results"]
    assert {r["id"] for r in listed} == {s["high"].pk, s["low"].pk}
    for ordering in ("ai_probability", "-ai_probability"):
        ids = [r["id"] for r in client.get(f"/api/v1/studies/?ordering={ordering}").json()["results"]]
        assert _sorts_as_no_ai(ids, s), (ordering, ids)

    # The worklist page's rows, poll and alerts
    page = Client()
    page.force_login(rad)
    poll = page.get(reverse("worklist_rows"), {"since": since.isoformat()}).json()
    assert poll["ids"] == _ids([s["high"], s["low"], s["shadow"], s["no_ai"]])
    assert [a["id"] for a in poll["alerts"]] == _ids([s["high"], s["low"]])
    assert poll["html"].count("AI flag</span>") == 2 and "Adult patient" not in poll["html"]


# --- Alerts and result destinations ----------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "notices", "objects"), [(AiMode.LIVE, 1, 2), (AiMode.SHADOW, 0, 0)])
def test_it_alerts_nobody_and_sends_nothing_for_a_shadowed_result(
    demo_site, admin_user, version, receiver, eager_tasks, django_capture_on_commit_callbacks, mode, notices, objects
) -> None:
    # Given a site with an alert webhook and a PACS for its results, in the mode
    Site.objects.filter(pk=demo_site.pk).update(alert_webhook_url=receiver.url)
    ResultDestination.objects.create(ae_title="PACS", host="127.0.0.1", port=9, all_sites=True)
    demo_site.refresh_from_db()
    _mode(demo_site, mode, admin_user)
    report = studies_ingest(files=[IncomingFile("a.dcm", make_dicom(8))], site=demo_site, user=None, priority="stat")
    prediction = Prediction.objects.get(image__study_id=report.study_ids[0])
    assert prediction.ai_mode == mode  # the mode in force is recorded when the prediction is made

    # When the worker stores a flagged result (the study follows it, its objects are built for the PACS)
    with django_capture_on_commit_callbacks(execute=True):
        Prediction.objects.filter(pk=prediction.pk).update(
            status=PredictionStatus.SUCCEEDED, probability=PROBABILITY, label="pneumonia", threshold=0.5,
            domain="in_domain", heatmap=[[0.0, 1.0], [0.5, 0.2]], finished_at=timezone.now(),
        )  # fmt: skip
        study_ai_refresh(study_id=prediction.image.study_id)
    queued = outbox_queue_for_prediction(Prediction.objects.select_related("image__study__site").get(pk=prediction.pk))

    # Then a live site is alerted and sent its objects; a shadow site neither
    assert len(receiver.bodies()) == notices
    assert (len(queued), OutboxItem.objects.count()) == (objects, objects)


def test_it_sends_the_stored_results_of_unsigned_studies_when_the_site_leaves_shadow(
    demo_site, admin_user, version, django_capture_on_commit_callbacks
) -> None:
    # Given a shadow site with a PACS, an unsigned study with a stored result and a signed one
    ResultDestination.objects.create(ae_title="PACS", host="127.0.0.1", port=9, all_sites=True)
    _mode(demo_site, AiMode.SHADOW, admin_user)
    ids = []
    for n in (8, 9):
        report = studies_ingest(files=[IncomingFile(f"{n}.dcm", make_dicom(n))], site=demo_site, user=None)
        ids += report.study_ids
    for prediction in Prediction.objects.filter(image__study_id__in=ids):
        Prediction.objects.filter(pk=prediction.pk).update(
            status=PredictionStatus.SUCCEEDED, probability=PROBABILITY, label="pneumonia", threshold=0.5,
            heatmap=[[0.0, 1.0]], finished_at=timezone.now(),
        )  # fmt: skip
        study_ai_refresh(study_id=prediction.image.study_id)
        assert outbox_queue_for_prediction(prediction) == []
    Study.objects.filter(pk=ids[1]).update(status=StudyStatus.REPORTED)

    # When an admin switches it to live
    with django_capture_on_commit_callbacks() as callbacks:
        _mode(demo_site, AiMode.LIVE, admin_user)
    assert not OutboxItem.objects.exists()  # only once the switch is committed
    for callback in callbacks:
        callback()

    # Then the unsigned study's AI result SR and heatmap capture are queued; the signed study's are not
    assert sorted(OutboxItem.objects.values_list("study_id", "kind")) == [
        (ids[0], "ai_sr"), (ids[0], "secondary_capture"),
    ]  # fmt: skip


# --- Switching through the API and the admin -------------------------------------------------------------------


def test_it_lets_only_admins_set_a_sites_mode(demo_site, north_site, tech, rad, admin_user, api) -> None:
    url = "/api/v1/sites/DEMO/"
    for user in (tech, rad):
        assert api(user).patch(url, {"ai_mode": "shadow"}, format="json").status_code == 403
    assert api(rad).patch("/api/v1/sites/NORTH/", {"ai_mode": "shadow"}, format="json").status_code == 404
    refused = api(admin_user).patch(url, {"ai_mode": "dark"}, format="json")
    assert refused.status_code == 400 and "ai_mode" in refused.json()
    assert api(admin_user).patch(url, {"ai_mode": 1}, format="json").status_code == 400
    assert Site.objects.get(pk=demo_site.pk).ai_mode == AiMode.LIVE
    assert not AuditEvent.objects.filter(action="site_ai_mode").exists()
    assert api(tech).get(url).json()["ai_mode"] == "live"


def test_it_shows_a_stored_result_at_once_when_an_admin_patches_the_site_live(
    demo_site, admin_user, rad, api, stored
) -> None:
    # Given a shadowed study with a stored flagged result
    _mode(demo_site, AiMode.SHADOW, admin_user)
    study = stored(demo_site)
    reader = api(rad)
    url = f"/api/v1/studies/{study.pk}/"
    assert reader.get(url).json()["ai_probability"] is None

    # When an admin patches the site live
    response = api(admin_user).patch("/api/v1/sites/DEMO/", {"ai_mode": "live"}, format="json")

    # Then the reader sees the result at once, and the switch is audited
    assert response.status_code == 200 and response.json()["ai_mode"] == "live"
    shown = reader.get(url).json()
    assert (shown["ai_probability"], shown["ai_flagged"]) == (PROBABILITY, True)
    assert [p["probability"] for p in shown["images"][0]["predictions"]] == [PROBABILITY]
    event = AuditEvent.objects.get(action="site_ai_mode", detail__mode="live")
    assert (event.user, event.detail["was"]) == (admin_user, "shadow")

    # And switched to shadow again, it is hidden again
    assert api(admin_user).patch("/api/v1/sites/DEMO/", {"ai_mode": "shadow"}, format="json").status_code == 200
    hidden = reader.get(url).json()
    assert (hidden["ai_probability"], hidden["ai_flagged"], hidden["images"][0]["predictions"]) == (None, False, [])


def test_it_changes_the_mode_through_the_service_from_the_admins_change_form(
    demo_site, admin_user, stored, client
) -> None:
    admin_user.is_superuser = True
    admin_user.save()
    study = stored(demo_site)
    client.force_login(admin_user)
    form = {"name": demo_site.name, "code": "DEMO", "ai_outside_validated_use": "on", "alert_webhook_url": "",
            "retention_days": "", "ai_mode": "shadow"}  # fmt: skip

    response = client.post(reverse("admin:cases_site_change", args=[demo_site.pk]), form)

    assert response.status_code == 302
    assert Site.objects.get(pk=demo_site.pk).ai_mode == AiMode.SHADOW
    event = AuditEvent.objects.get(action="site_ai_mode")
    assert (event.user, event.detail) == (admin_user, {"mode": "shadow", "was": "live"})
    assert Study.objects.get(pk=study.pk).ai_probability is None  # its unsigned studies followed at once


# --- Signing ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "status"), [(AiMode.SHADOW, 302), (AiMode.LIVE, 400)])
def test_it_asks_a_blind_reading_for_no_overrule_reason(
    demo_site, admin_user, rad, version, stored, mode, status
) -> None:
    _mode(demo_site, mode, admin_user)
    study = stored(demo_site)
    client = Client()
    client.force_login(rad)

    response = client.post(reverse("study_sign", args=[study.pk]), {"finding": "no_pneumonia"})

    assert response.status_code == status
    if mode == AiMode.SHADOW:
        review = Review.objects.get(study=study)
        assert (review.agreement, review.reason, review.ai_mode, review.ai_probability) == (
            "disagree", "", "shadow", PROBABILITY,
        )  # fmt: skip
        assert review.model_version == version  # compared with the stored result, so counted per version
        assert Study.objects.get(pk=study.pk).ai_probability == PROBABILITY  # shown once signed
    else:
        assert "give a reason" in response.content.decode() and not Review.objects.exists()


# --- Uploads: the technician's lines and studies page, and the off mode ------------------------------------------


@pytest.mark.parametrize("mode", [AiMode.LIVE, AiMode.SHADOW])
def test_it_shows_a_technician_no_trace_of_a_shadowed_result_after_an_upload(
    demo_site, admin_user, tech, version, mode
) -> None:
    _mode(demo_site, mode, admin_user)
    client = Client()
    client.force_login(tech)

    # When a technician uploads a study and its result is stored
    upload = client.post(
        reverse("upload_files"), {"files": [SimpleUploadedFile("a.dcm", make_dicom(8))], "priority": "stat"}
    )
    [line] = upload.json()["files"]
    study_id = line["study_id"]
    waiting = client.get(reverse("study_statuses"), {"ids": study_id}).json()["studies"][0]["status"]
    prediction = Prediction.objects.get(image__study_id=study_id)
    Prediction.objects.filter(pk=prediction.pk).update(
        status=PredictionStatus.SUCCEEDED, probability=PROBABILITY, label="pneumonia", threshold=0.5,
        finished_at=timezone.now(),
    )  # fmt: skip
    study_ai_refresh(study_id=study_id)

    # Then a live site shows the result on the poll and the studies page; a shadow site nothing, not even a wait
    [polled] = client.get(reverse("study_statuses"), {"ids": study_id}).json()["studies"]
    listing = client.get(reverse("studies")).content.decode()
    assert set(line) == {"name", "status", "reason", "study_id", "image_id"} and line["status"] == "stored"
    if mode == AiMode.LIVE:
        assert waiting == StudyStatus.QUEUED
        assert (polled["ai_probability"], polled["ai_flagged"]) == (PROBABILITY, True) and "0.88" in listing
    else:
        assert waiting == StudyStatus.AWAITING_REVIEW
        assert (polled["ai_probability"], polled["ai_flagged"], polled["status_reason"]) == (None, False, "")
        assert "0.88" not in listing and "flagged" not in listing


@pytest.mark.parametrize("mode", [AiMode.LIVE, AiMode.OFF])
def test_it_never_predicts_a_study_of_a_site_with_the_ai_off(demo_site, admin_user, tech, version, api, mode) -> None:
    _mode(demo_site, mode, admin_user)

    response = api(tech).post(
        "/api/v1/studies/", {"files": [SimpleUploadedFile("a.dcm", make_dicom())], "site": "DEMO"}, format="multipart"
    )

    assert response.status_code == 201
    study = Study.objects.get(pk=response.json()["study_ids"][0])
    if mode == AiMode.LIVE:
        assert Prediction.objects.filter(image__study=study).count() == 1
    else:
        assert not Prediction.objects.exists()
        assert (study.status, study.status_reason) == (StudyStatus.AWAITING_REVIEW, AI_OFF_REASON)
        # Nor when asked again, or with a version named (an admin's re-run)
        assert predictions_request(study=study, retry_failed=True) == []
        assert predictions_request(study=study, version=version, user=admin_user) == []
        assert not Prediction.objects.exists()
