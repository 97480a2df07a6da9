"""Drift figures and alarm rules (no Django): a day's agreement with radiologists and its outside-domain share.

The AI's label is its probability against the threshold recorded on its prediction; the radiologist's is the
finding of the study's latest signed reading, "indeterminate" left out. A day counts for agreement only with
``min_daily`` such studies: a day of three readings says nothing. The service (``cases.drift``) reads the
rows; everything here is arithmetic on counts, so it can be checked by hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date

from cases.validation_stats import cohen_kappa, wilson_interval

AGREEMENT_RUN_DAYS = 7
BASELINE_DAYS = 30
OUTSIDE_MIN_IMAGES = 20
OUTSIDE_RATIO = 2.0
OUTSIDE_MIN_RISE = 0.05


@dataclass(frozen=True)
class DayFigures:
    """One site x model x day. ``both_positive``...: the AI's label against the radiologist's, per study."""

    day: date
    both_positive: int = 0  # AI positive, radiologist pneumonia
    ai_only: int = 0  # AI positive, radiologist no pneumonia
    radiologist_only: int = 0  # AI negative, radiologist pneumonia
    both_negative: int = 0
    images: int = 0  # images with a result finished that day
    outside: int = 0  # of them, outside the domain or not a chest X-ray
    scored: int = 0  # of them, with a probability that counts (inference.display): not muted
    probability_sum: float = 0.0  # of those
    positives: int = 0  # of those, at or above their threshold

    @property
    def signed(self) -> int:
        return self.both_positive + self.ai_only + self.radiologist_only + self.both_negative

    @property
    def agreement(self) -> float | None:
        return percent_agreement(self.both_positive, self.ai_only, self.radiologist_only, self.both_negative)

    @property
    def kappa(self) -> float | None:
        return cohen_kappa(self.both_positive, self.ai_only, self.radiologist_only, self.both_negative)

    @property
    def outside_share(self) -> float | None:
        return self.outside / self.images if self.images else None

    @property
    def mean_probability(self) -> float | None:
        return self.probability_sum / self.scored if self.scored else None

    @property
    def positive_share(self) -> float | None:
        return self.positives / self.scored if self.scored else None

    def as_dict(self) -> dict:
        return {
            "day": self.day.isoformat(),
            "signed": self.signed,
            "agreement": self.agreement,
            "kappa": self.kappa,
            "images": self.images,
            "outside_share": self.outside_share,
            "mean_probability": self.mean_probability,
            "positive_share": self.positive_share,
        }


def percent_agreement(both_positive: int, ai_only: int, radiologist_only: int, both_negative: int) -> float | None:
    n = both_positive + ai_only + radiologist_only + both_negative
    return (both_positive + both_negative) / n if n else None


def agreement_lower_bound(agreeing: int, n: int) -> float | None:
    """The reference: Wilson's 95 % lower bound of the percent agreement behind a threshold."""
    interval = wilson_interval(agreeing, n)
    return interval[0] if interval else None


def shipped_agreement_lower_bound(served: dict) -> float | None:
    """The reference from a version's shipped validation (manifest ``validation.served``).

    The manifest keeps sensitivity and specificity with the class sizes, so the agreeing cases are rebuilt:
    true positives = sensitivity x n_pneumonia, true negatives = specificity x n_normal (rounded to whole cases).
    """
    try:
        n_pneumonia, n_normal = int(served["n_pneumonia"]), int(served["n_normal"])
        agreeing = round(float(served["sensitivity"]) * n_pneumonia) + round(float(served["specificity"]) * n_normal)
    except (KeyError, TypeError, ValueError):
        return None
    return agreement_lower_bound(agreeing, n_pneumonia + n_normal)


@dataclass(frozen=True)
class AlarmFinding:
    """An alarm to open: its first day of the episode and the figures that the e-mail and the admin show."""

    episode_start: date
    figures: dict


def agreement_alarm(
    days: Sequence[DayFigures], *, reference: float | None, min_daily: int, run: int = AGREEMENT_RUN_DAYS
) -> AlarmFinding | None:
    """Agreement below ``reference`` on each of the last ``run`` counted days, the last of them ``days[-1]``.

    ``days`` are in date order, the checked day last. Days with fewer than ``min_daily`` signed studies are
    skipped: they neither break a run nor extend it. The episode starts at the first day of the whole run of
    low days, so an alarm acknowledged mid-episode is not raised again until agreement has recovered.
    """
    if reference is None or not days or days[-1].signed < min_daily:
        return None
    counted = [d for d in days if d.signed >= min_daily]
    low = 0
    for d in reversed(counted):
        if d.agreement is None or d.agreement >= reference:
            break
        low += 1
    if low < run:
        return None
    streak = counted[-low:]
    return AlarmFinding(
        episode_start=streak[0].day,
        figures={"reference": reference, "min_daily": min_daily, "days": [d.as_dict() for d in streak[-run:]]},
    )


def outside_domain_alarm(today: DayFigures, baseline: Sequence[DayFigures]) -> AlarmFinding | None:
    """Today's outside-domain share at least twice the baseline's and 5 points above it, with 20 images."""
    images = sum(d.images for d in baseline)
    if today.images < OUTSIDE_MIN_IMAGES or not images:
        return None
    base = sum(d.outside for d in baseline) / images
    share = today.outside / today.images
    if share < OUTSIDE_RATIO * base or share < base + OUTSIDE_MIN_RISE:
        return None
    return AlarmFinding(
        episode_start=today.day,
        figures={"baseline_share": base, "baseline_images": images, "today": today.as_dict()},
    )
