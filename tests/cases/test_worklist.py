"""The worklist: what is waiting, in which order, filtered how, at what cost."""

from __future__ import annotations

from datetime import date, timedelta

import pytest
from django.utils import timezone

from cases.models import Priority, Study
from cases.states import StudyStatus
from cases.worklist import (
    WorklistFilters,
    age_in_years,
    lane_counts,
    waiting_text,
    worklist_alerts,
    worklist_filters_from,
    worklist_for_user,
    worklist_row,
)
from inference.models import ModelVersion, Prediction, PredictionStatus
from tests.browser.studies import model_version_active

S = StudyStatus


@pytest.fixture
def waiting(demo_site, make_study):
    """``waiting(priority, probability, minutes, **fields)``: a study awaiting review for that long."""
    version = model_version_active()

    def make(priority: str = Priority.ROUTINE, probability: float | None = None, minutes: int = 10, **fields) -> Study:
        fields.setdefault("status", S.AWAITING_REVIEW)
        flagged = probability is not None and probability >= version.threshold
        study = make_study(demo_site, priority=priority, ai_probability=probability, ai_flagged=flagged, **fields)
        Study.objects.filter(pk=study.pk).update(received_at=timezone.now() - timedelta(minutes=minutes))
        study.refresh_from_db()
        return study

    return make


def _ids(studies) -> list[int]:
    return [s.pk for s in studies]


# --- Order and content ---------------------------------------------------------------------


def test_it_orders_lanes_then_flagged_by_probability_then_longest_waiting(waiting, rad) -> None:
    routine_old_unflagged = waiting(Priority.ROUTINE, 0.30, minutes=300)
    routine_flagged_low = waiting(Priority.ROUTINE, 0.60, minutes=5)
    routine_flagged_high = waiting(Priority.ROUTINE, 0.95, minutes=1)
    routine_no_ai_older = waiting(Priority.ROUTINE, None, minutes=400)
    routine_unflagged_newer = waiting(Priority.ROUTINE, 0.45, minutes=20)
    urgent = waiting(Priority.URGENT, 0.10, minutes=2)
    stat = waiting(Priority.STAT, None, minutes=1)

    assert _ids(worklist_for_user(user=rad)) == _ids(
        [
            stat,
            urgent,
            routine_flagged_high,
            routine_flagged_low,
            routine_no_ai_older,
            routine_old_unflagged,
            routine_unflagged_newer,
        ]
    )


def test_it_lists_only_studies_to_read_at_the_users_sites(waiting, rad, north_site, make_study) -> None:
    to_read = waiting(status=S.AWAITING_REVIEW)
    in_review = waiting(status=S.IN_REVIEW)
    for status in (S.RECEIVED, S.QUEUED, S.ANALYZING, S.REPORTED):
        waiting(status=status)
    make_study(north_site, status=S.AWAITING_REVIEW)
    assert set(_ids(worklist_for_user(user=rad))) == {to_read.pk, in_review.pk}


def test_it_shows_admins_every_site(waiting, admin_user, north_site, make_study) -> None:
    ours = waiting()
    theirs = make_study(north_site, status=S.AWAITING_REVIEW)
    assert set(_ids(worklist_for_user(user=admin_user))) == {ours.pk, theirs.pk}


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        (WorklistFilters(statuses=(S.IN_REVIEW,)), {"claimed"}),
        (WorklistFilters(priorities=(Priority.STAT,)), {"stat"}),
        (WorklistFilters(flagged=True), {"stat", "old"}),
        (WorklistFilters(flagged=False), {"claimed", "routine"}),
        (WorklistFilters(date_from=date(2024, 3, 1)), {"stat", "claimed", "routine"}),
        (WorklistFilters(date_to=date(2024, 2, 1)), {"old"}),
        (WorklistFilters(date_from=date(2024, 3, 1), date_to=date(2024, 3, 1)), {"stat"}),
    ],
)
def test_it_filters(waiting, rad, filters, expected) -> None:
    studies = {
        "stat": waiting(Priority.STAT, 0.9, study_date=date(2024, 3, 1)),
        "claimed": waiting(Priority.URGENT, 0.2, status=S.IN_REVIEW, study_date=date(2024, 3, 2)),
        "routine": waiting(Priority.ROUTINE, None, study_date=date(2024, 3, 3)),
        "old": waiting(Priority.ROUTINE, 0.7, study_date=date(2024, 1, 15)),
    }
    found = set(_ids(worklist_for_user(user=rad, filters=filters)))
    assert found == {studies[name].pk for name in expected}


def test_it_takes_one_value_or_several_for_each_filter() -> None:
    one = worklist_filters_from({"status": S.IN_REVIEW, "site": 3, "flagged": False, "priority": ""})
    assert one == WorklistFilters(statuses=(S.IN_REVIEW,), site_ids=(3,), flagged=False)
    several = worklist_filters_from({"priority": {Priority.URGENT, Priority.STAT}, "site": None, "search": " "})
    assert several == WorklistFilters(priorities=(Priority.STAT, Priority.URGENT), search=" ")
    assert worklist_filters_from({}) == WorklistFilters()


def test_it_filters_the_page_and_the_api_alike(client, rad, waiting, demo_site) -> None:
    wanted = waiting(Priority.STAT, 0.9, study_date=date(2024, 3, 1))
    waiting(Priority.STAT, 0.2, study_date=date(2024, 3, 1))
    waiting(Priority.ROUTINE, 0.9, study_date=date(2024, 3, 1))
    waiting(Priority.STAT, 0.9, study_date=date(2024, 2, 1))
    client.force_login(rad)
    form = {"status": S.AWAITING_REVIEW, "priority": "stat", "flagged": "yes", "site": demo_site.pk}
    client.post("/worklist/", {**form, "date_from": "2024-03-01"})
    page = [row.study.pk for row in client.get("/worklist/").context["rows"]]
    query = {**form, "flagged": "true", "site": "DEMO", "date_from": "2024-03-01"}
    api = client.get("/api/v1/worklist/", query).json()["results"]
    assert page == [study["id"] for study in api] == [wanted.pk]


def test_it_filters_undated_studies_by_the_day_they_arrived(waiting, rad) -> None:
    undated = waiting(study_date=None)
    today = timezone.localdate()
    assert _ids(worklist_for_user(user=rad, filters=WorklistFilters(date_from=today))) == [undated.pk]
    assert _ids(worklist_for_user(user=rad, filters=WorklistFilters(date_to=today - timedelta(days=1)))) == []


def test_it_filters_by_site_only_within_the_users_sites(waiting, rad, north_site, make_study) -> None:
    theirs = make_study(north_site, status=S.AWAITING_REVIEW)
    assert _ids(worklist_for_user(user=rad, filters=WorklistFilters(site_ids=(north_site.pk,)))) == []
    assert theirs.pk not in _ids(worklist_for_user(user=rad))


@pytest.mark.parametrize("search", ["MRN-77", "mrn-77", "lovelace", "ada LOVELACE", "Lovelace Ada", "ACC-9", "lov"])
def test_it_searches_patient_id_name_and_accession(waiting, rad, make_patient, demo_site, search) -> None:
    patient = make_patient(demo_site, patient_id="MRN-77", name="LOVELACE^ADA")
    wanted = waiting(patient=patient, accession_number="ACC-9")
    waiting(accession_number="ACC-1")
    found = _ids(worklist_for_user(user=rad, filters=WorklistFilters(search=search)))
    assert found == [wanted.pk]


def test_it_counts_each_lane(waiting, rad, north_site, make_study) -> None:
    waiting(Priority.STAT, 0.9)
    waiting(Priority.STAT, 0.1, status=S.IN_REVIEW)
    waiting(Priority.URGENT, 0.8)
    waiting(Priority.ROUTINE, None)
    waiting(Priority.ROUTINE, status=S.REPORTED)
    make_study(north_site, status=S.AWAITING_REVIEW, priority=Priority.STAT)
    assert lane_counts(user=rad) == {
        "stat": 2,
        "urgent": 1,
        "routine": 1,
        "stat_flagged": 1,
        "urgent_flagged": 1,
        "routine_flagged": 0,
        "total": 4,
        "flagged": 2,
        "in_review": 1,
    }


def test_it_notes_results_outside_validated_use_from_the_active_model_only(waiting, rad, make_image) -> None:
    active = model_version_active()
    retired = ModelVersion.objects.create(
        name="retired", version="0.1", source_path="x", sha256="b" * 64, preprocessing_version="p"
    )
    outside, inside, retired_only = waiting(probability=0.8), waiting(probability=0.8), waiting(probability=0.8)
    for study, version, reason in (
        (outside, active, "Patient is 40 years old; the model is validated for ages 1 to 5."),
        (inside, active, ""),
        (retired_only, retired, "Lateral view."),
    ):
        Prediction.objects.create(
            image=make_image(study),
            model_version=version,
            preprocessing_version="p",
            status=PredictionStatus.SUCCEEDED,
            probability=0.8,
            outside_validated_use=bool(reason),
            outside_validated_use_reason=reason,
        )
    rows = {s.pk: worklist_row(s, now=timezone.now()) for s in worklist_for_user(user=rad)}
    assert rows[outside.pk].ai_note == "Patient is 40 years old; the model is validated for ages 1 to 5."
    assert rows[inside.pk].ai_note == rows[retired_only.pk].ai_note == ""


def test_it_shows_the_no_ai_reason(waiting, rad) -> None:
    waiting(probability=None, status_reason="No AI result: the AI failed on this study's images.")
    (row,) = [worklist_row(s, now=timezone.now()) for s in worklist_for_user(user=rad)]
    assert (row.ai_state, row.ai_note) == ("no_ai", "No AI result: the AI failed on this study's images.")


def test_it_gives_age_at_the_study_date(demo_site, make_patient) -> None:
    patient = make_patient(demo_site, birth_date=date(2020, 6, 15))
    assert age_in_years(patient, date(2024, 6, 14)) == 3
    assert age_in_years(patient, date(2024, 6, 15)) == 4
    assert age_in_years(make_patient(demo_site), date(2024, 1, 1)) is None


@pytest.mark.parametrize(
    ("seconds", "text"), [(42, "42s"), (600, "10m"), (3 * 3600 + 300, "3h 05m"), (2 * 86400 + 4 * 3600, "2d 4h")]
)
def test_it_writes_waiting_times_compactly(seconds, text) -> None:
    assert waiting_text(seconds) == text


# --- Alerts ------------------------------------------------------------------------------------


def test_it_alerts_on_stat_and_urgent_studies_flagged_since_the_last_look(waiting, rad, admin_user) -> None:
    since = timezone.now()
    before = waiting(Priority.STAT, 0.9)
    Study.objects.filter(pk=before.pk).update(ai_completed_at=since - timedelta(seconds=5))
    fresh_stat, fresh_urgent, fresh_routine, fresh_unflagged = (
        waiting(Priority.STAT, 0.9),
        waiting(Priority.URGENT, 0.8),
        waiting(Priority.ROUTINE, 0.9),
        waiting(Priority.STAT, 0.1),
    )
    later = since + timedelta(seconds=1)
    Study.objects.filter(pk__in=[fresh_stat.pk, fresh_urgent.pk, fresh_routine.pk, fresh_unflagged.pk]).update(
        ai_completed_at=later
    )
    assert _ids(worklist_alerts(user=rad, since=since)) == [fresh_stat.pk, fresh_urgent.pk]
    assert _ids(worklist_alerts(user=rad, since=later)) == []


# --- Pages: fixed query count, search kept out of URLs, live rows ------------------------------


@pytest.mark.parametrize("per_page", [10, 100])
def test_it_serves_a_page_in_a_fixed_number_of_queries(
    client, rad, waiting, make_image, django_assert_num_queries, per_page
) -> None:
    version = model_version_active()
    for i in range(110):
        study = waiting(
            [Priority.STAT, Priority.URGENT, Priority.ROUTINE][i % 3],
            (i % 10) / 10,
            minutes=i,
            status=S.IN_REVIEW if i % 7 == 0 else S.AWAITING_REVIEW,
            claimed_by=rad if i % 7 == 0 else None,
        )
        Prediction.objects.create(
            image=make_image(study),
            model_version=version,
            preprocessing_version="p",
            status=PredictionStatus.SUCCEEDED,
            probability=0.5,
            outside_validated_use=i % 2 == 0,
            outside_validated_use_reason="Adult" if i % 2 else "",
        )
    client.force_login(rad)
    client.post("/worklist/", {"per_page": str(per_page)})
    # session, user, groups, sites (filter form), site ids, count, page, active model, lane site ids, lane counts,
    # change token (site ids, aggregate), audit insert: the same at any page size.
    # +1: whether this reader enrolled a second factor (cases/otp/middleware.py asks on every request).
    with django_assert_num_queries(14):
        response = client.get("/worklist/")
    assert response.status_code == 200
    assert len(response.context["rows"]) == per_page


def test_it_keeps_the_search_out_of_every_url(client, rad, waiting, make_patient, demo_site) -> None:
    wanted = waiting(patient=make_patient(demo_site, patient_id="MRN-55", name="HOPPER^GRACE"))
    other = waiting()
    client.force_login(rad)
    response = client.post("/worklist/", {"search": "hopper"})
    assert response.status_code == 302
    assert response["Location"] == "/worklist/"
    page = client.get("/worklist/")
    shown = [row.study.pk for row in page.context["rows"]]
    assert shown == [wanted.pk]
    assert other.pk not in shown
    assert b"hopper" not in page.content.split(b"<form")[0]  # not in the page's links or title
    rows = client.get("/worklist/rows/", HTTP_X_PNEUMO_BACKGROUND="1").json()
    assert rows["ids"] == [wanted.pk]
    client.post("/worklist/", {"clear": "1"})
    assert len(client.get("/worklist/").context["rows"]) == 2


def test_it_refreshes_rows_counts_and_alerts_as_json(client, rad, waiting) -> None:
    since = timezone.now() - timedelta(seconds=1)
    flagged = waiting(Priority.STAT, 0.93)
    Study.objects.filter(pk=flagged.pk).update(ai_completed_at=timezone.now())
    client.force_login(rad)
    body = client.get("/worklist/rows/", {"since": since.isoformat()}, HTTP_X_PNEUMO_BACKGROUND="1").json()
    assert body["ids"] == [flagged.pk]
    assert body["lanes"]["stat"] == 1
    assert [a["id"] for a in body["alerts"]] == [flagged.pk]
    assert f'data-study-id="{flagged.pk}"' in body["html"]
    later = client.get("/worklist/rows/", {"since": body["now"]}, HTTP_X_PNEUMO_BACKGROUND="1").json()
    assert later["alerts"] == []


def test_it_raises_alerts_for_radiologists_only(client, admin_user, waiting) -> None:
    flagged = waiting(Priority.STAT, 0.93)
    Study.objects.filter(pk=flagged.pk).update(ai_completed_at=timezone.now())
    client.force_login(admin_user)
    since = (timezone.now() - timedelta(minutes=1)).isoformat()
    body = client.get("/worklist/rows/", {"since": since}).json()
    assert body["ids"] == [flagged.pk]
    assert body["alerts"] == []


def test_it_leaves_polls_out_of_the_idle_timer(client, rad) -> None:
    client.force_login(rad)
    client.get("/worklist/rows/", HTTP_X_PNEUMO_BACKGROUND="1")
    assert "pneumo_last_activity" not in client.session


def test_it_skips_rendering_rows_that_did_not_change(client, rad, waiting) -> None:
    study = waiting(Priority.URGENT, 0.4)
    client.force_login(rad)
    first = client.get("/worklist/rows/", HTTP_X_PNEUMO_BACKGROUND="1").json()
    same = client.get("/worklist/rows/", {"fp": first["fp"]}, HTTP_X_PNEUMO_BACKGROUND="1").json()
    assert first["html"] and same["html"] is None and same["fp"] == first["fp"]
    Study.objects.filter(pk=study.pk).update(status=S.IN_REVIEW, claimed_by=rad, updated_at=timezone.now())
    changed = client.get("/worklist/rows/", {"fp": first["fp"]}, HTTP_X_PNEUMO_BACKGROUND="1").json()
    assert changed["fp"] != first["fp"] and "In review" in changed["html"]


def test_it_changes_the_version_token_when_a_study_at_the_site_changes(
    client, waiting, rad, north_site, make_study
) -> None:
    study = waiting(Priority.STAT, 0.2)
    client.force_login(rad)
    url = "/worklist/version/"
    first = client.get(url, HTTP_X_PNEUMO_BACKGROUND="1").json()["version"]
    assert client.get(url, HTTP_X_PNEUMO_BACKGROUND="1").json()["version"] == first
    make_study(north_site)  # another site's study changes nothing here
    assert client.get(url, HTTP_X_PNEUMO_BACKGROUND="1").json()["version"] == first
    study.ai_probability = 0.99
    study.save()
    assert client.get(url, HTTP_X_PNEUMO_BACKGROUND="1").json()["version"] != first


def test_it_answers_the_version_check_with_a_handful_of_queries(
    client, waiting, rad, django_assert_max_num_queries
) -> None:
    client.force_login(rad)
    client.get("/worklist/version/", HTTP_X_PNEUMO_BACKGROUND="1")
    # session, user, groups, sites, the aggregate, and whether the reader enrolled a second factor
    with django_assert_max_num_queries(6):
        client.get("/worklist/version/", HTTP_X_PNEUMO_BACKGROUND="1")
