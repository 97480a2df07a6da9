"""The study state machine: its values, every legal transition, and how the AI's progress moves a study.

A study whose AI failed (or could not run) does not get a state of its own: it
waits for a radiologist like any other, ``status_reason`` saying why it has no
AI result.
"""

from __future__ import annotations

from django.db import models


class StudyStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    QUEUED = "queued", "Queued for AI"
    ANALYZING = "analyzing", "AI analysing"
    AWAITING_REVIEW = "awaiting_review", "Awaiting review"
    IN_REVIEW = "in_review", "In review"
    REPORTED = "reported", "Reported"


S = StudyStatus

TRANSITIONS: dict[str, frozenset[str]] = {
    # The AI may move a study on from any state before review (see status_after_ai).
    S.RECEIVED: frozenset({S.QUEUED, S.ANALYZING, S.AWAITING_REVIEW}),
    # A new image or a re-run of the AI sends a study back to the queue.
    S.QUEUED: frozenset({S.ANALYZING, S.AWAITING_REVIEW}),
    S.ANALYZING: frozenset({S.QUEUED, S.AWAITING_REVIEW}),
    S.AWAITING_REVIEW: frozenset({S.QUEUED, S.ANALYZING, S.IN_REVIEW}),
    S.IN_REVIEW: frozenset({S.AWAITING_REVIEW, S.REPORTED}),
    # Amendments add review versions; a reported study stays reported.
    S.REPORTED: frozenset(),
}

REVIEWABLE = frozenset({S.AWAITING_REVIEW, S.IN_REVIEW})
AI_PENDING = frozenset({S.RECEIVED, S.QUEUED, S.ANALYZING})


class IllegalTransition(ValueError):
    def __init__(self, current: str, target: str) -> None:
        super().__init__(f"A study cannot go from {current!r} to {target!r}")
        self.current = current
        self.target = target


def can_transition(current: str, target: str) -> bool:
    return target in TRANSITIONS.get(current, frozenset())


def check_transition(current: str, target: str) -> None:
    if not can_transition(current, target):
        raise IllegalTransition(current, target)


def status_after_ai(current: str, *, running: bool, pending: bool) -> str:
    """The status the AI's predictions give a study at ``current``.

    Analysing while one of them runs, queued while one waits, awaiting review
    once none is left, whether they succeeded, failed or could not run. The AI
    moves a study only while it has not reached a radiologist's hands: one in
    review or reported stays where it is (a re-run shows its new result there).
    """
    if current not in AI_PENDING | {S.AWAITING_REVIEW}:
        return current
    if running:
        return S.ANALYZING
    return S.QUEUED if pending else S.AWAITING_REVIEW
