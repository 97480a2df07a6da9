from __future__ import annotations

import pytest

from cases.models import Study
from cases.services import study_transition
from cases.states import AI_PENDING, TRANSITIONS, IllegalTransition, StudyStatus, can_transition, status_after_ai

S = StudyStatus


def test_it_knows_every_status() -> None:
    assert set(TRANSITIONS) == set(StudyStatus.values)
    assert set(StudyStatus.values) == {
        "received",
        "queued",
        "analyzing",
        "awaiting_review",
        "in_review",
        "reported",
    }


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.RECEIVED, S.QUEUED),
        (S.QUEUED, S.ANALYZING),
        (S.ANALYZING, S.AWAITING_REVIEW),
        (S.AWAITING_REVIEW, S.IN_REVIEW),
        (S.IN_REVIEW, S.REPORTED),
        (S.IN_REVIEW, S.AWAITING_REVIEW),
        (S.RECEIVED, S.AWAITING_REVIEW),
    ],
)
def test_it_allows_the_workflow(current: str, target: str) -> None:
    assert can_transition(current, target)


@pytest.mark.parametrize(
    ("current", "target"),
    [
        (S.RECEIVED, S.REPORTED),
        (S.QUEUED, S.REPORTED),
        (S.AWAITING_REVIEW, S.REPORTED),
        (S.REPORTED, S.QUEUED),
        (S.REPORTED, S.IN_REVIEW),
        (S.REPORTED, S.AWAITING_REVIEW),
        (S.RECEIVED, S.IN_REVIEW),
    ],
)
def test_it_refuses_illegal_transitions(current: str, target: str) -> None:
    assert not can_transition(current, target)


@pytest.mark.parametrize(
    ("running", "pending", "target"),
    [
        (True, True, S.ANALYZING),
        (True, False, S.ANALYZING),
        (False, True, S.QUEUED),
        (False, False, S.AWAITING_REVIEW),
    ],
)
@pytest.mark.parametrize("current", sorted(AI_PENDING | {S.AWAITING_REVIEW}))
def test_it_lets_the_ai_move_a_study_until_a_radiologist_has_it(
    current: str, running: bool, pending: bool, target: str
) -> None:
    moved = status_after_ai(current, running=running, pending=pending)

    assert moved == target
    assert moved == current or can_transition(current, moved)


@pytest.mark.parametrize("current", [S.IN_REVIEW, S.REPORTED])
@pytest.mark.parametrize(("running", "pending"), [(True, False), (False, True), (False, False)])
def test_it_never_lets_the_ai_move_a_study_in_review_or_reported(current: str, running: bool, pending: bool) -> None:
    assert status_after_ai(current, running=running, pending=pending) == current


def test_it_refuses_an_illegal_transition_on_a_study(demo_site, make_study) -> None:
    study = make_study(demo_site)
    with pytest.raises(IllegalTransition):
        study_transition(study=study, target=S.REPORTED)
    study.refresh_from_db()
    assert study.status == S.RECEIVED


def test_it_moves_a_study_and_stamps_the_report_time(demo_site, make_study) -> None:
    study = make_study(demo_site, status=S.IN_REVIEW)
    assert study_transition(study=study, target=S.REPORTED)
    study.refresh_from_db()
    assert study.status == S.REPORTED and study.reported_at is not None


def test_it_treats_staying_put_as_no_change(demo_site, make_study) -> None:
    study = make_study(demo_site, status=S.QUEUED)
    assert study_transition(study=study, target=S.QUEUED) is False


def test_it_computes_the_priority_lane_in_the_database(demo_site, make_study) -> None:
    make_study(demo_site, priority="routine")
    make_study(demo_site, priority="stat")
    make_study(demo_site, priority="urgent")
    assert list(Study.objects.order_by("priority_rank").values_list("priority", flat=True)) == [
        "stat",
        "urgent",
        "routine",
    ]
