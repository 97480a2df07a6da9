"""The study state machine: its values and every legal transition, in one place."""

from __future__ import annotations

from django.db import models


class StudyStatus(models.TextChoices):
    RECEIVED = "received", "Received"
    QUEUED = "queued", "Queued for AI"
    ANALYZING = "analyzing", "AI analysing"
    AWAITING_REVIEW = "awaiting_review", "Awaiting review"
    IN_REVIEW = "in_review", "In review"
    REPORTED = "reported", "Reported"
    FAILED = "failed", "Failed"


S = StudyStatus

TRANSITIONS: dict[str, frozenset[str]] = {
    S.RECEIVED: frozenset({S.QUEUED, S.AWAITING_REVIEW, S.FAILED}),
    # A new image or a re-run of the AI sends a study back to the queue.
    S.QUEUED: frozenset({S.ANALYZING, S.AWAITING_REVIEW, S.FAILED}),
    S.ANALYZING: frozenset({S.QUEUED, S.AWAITING_REVIEW, S.FAILED}),
    S.AWAITING_REVIEW: frozenset({S.QUEUED, S.ANALYZING, S.IN_REVIEW}),
    S.IN_REVIEW: frozenset({S.AWAITING_REVIEW, S.REPORTED}),
    # Amendments add review versions; a reported study stays reported.
    S.REPORTED: frozenset(),
    S.FAILED: frozenset({S.QUEUED, S.AWAITING_REVIEW}),
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
