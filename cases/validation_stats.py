"""Figures of a local validation: AUC with DeLong's interval, Wilson intervals, operating points, calibration.

Pure NumPy (no Django), so the figures can be checked against published worked examples and benchmarked
alone. ``labels`` are 1 for the reference standard's positives (the radiologist's "pneumonia") and 0 for its
negatives; ``scores`` the AI's probabilities; ``predicted`` the AI's verdict at the threshold in force. A figure
that cannot be computed (no cases, one class only) is None, never a guess.

A report asks for the same figures on many subsets (every device, age band, view...): ``ScoredCases`` sorts
the cases by score once, and a subset taken in that order is still sorted, so its midranks, suggested
threshold and specificity there come from runs of equal scores and binary searches without another sort.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

Z95 = 1.96
CALIBRATION_BINS = 10
Interval = list[float] | None


# --- Intervals ---------------------------------------------------------------------------------


def wilson_interval(successes: int, n: int, *, z: float = Z95) -> Interval:
    """Wilson's score interval for a proportion (Newcombe 1998, method 3), or None when n = 0."""
    if n <= 0:
        return None
    p = successes / n
    z2 = z * z
    centre = p + z2 / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    denominator = 1 + z2 / n
    return [max(0.0, (centre - spread) / denominator), min(1.0, (centre + spread) / denominator)]


def _proportion(successes: int, n: int) -> tuple[float | None, Interval]:
    return (successes / n if n else None), wilson_interval(successes, n)


# --- Agreement ------------------------------------------------------------------------------


def cohen_kappa(both_positive: int, ai_only: int, radiologist_only: int, both_negative: int) -> float | None:
    """Cohen's kappa of the AI against the radiologist (the dashboard's and drift's).

    None without cases, or when chance agreement is certain (one label only).
    """
    n = both_positive + ai_only + radiologist_only + both_negative
    if not n:
        return None
    observed = (both_positive + both_negative) / n
    ai_positive, radiologist_positive = both_positive + ai_only, both_positive + radiologist_only
    chance = (ai_positive * radiologist_positive + (n - ai_positive) * (n - radiologist_positive)) / (n * n)
    if chance >= 1.0:
        return None
    return (observed - chance) / (1.0 - chance)


# --- AUC (DeLong) ------------------------------------------------------------------------------


def midranks_of_sorted(values: np.ndarray) -> np.ndarray:
    """Ranks from 1 of ascending ``values``, ties sharing their mean rank (scipy's ``rankdata``), in O(n)."""
    n = len(values)
    starts = np.flatnonzero(np.r_[True, values[1:] != values[:-1]])
    ends = np.r_[starts[1:], n]  # each run of equal values holds ranks starts + 1 .. ends
    return np.repeat((starts + ends + 1) / 2, ends - starts)


def delong_auc(positives: np.ndarray, negatives: np.ndarray) -> tuple[float | None, float | None]:
    """The AUC and DeLong's variance estimate, by Sun & Xu's (2014) midrank algorithm in O(n log n).

    Ties count one half (midranks). The AUC is None without both classes; the variance needs at least two of
    each, as its structural components' sample variances do.
    """
    scores = np.concatenate([np.asarray(positives, dtype=float), np.asarray(negatives, dtype=float)])
    labels = np.r_[np.ones(len(positives), dtype=np.int8), np.zeros(len(negatives), dtype=np.int8)]
    order = np.argsort(scores, kind="stable")
    return _delong_sorted(scores[order], labels[order] == 1)


def _delong_sorted(scores: np.ndarray, positive: np.ndarray) -> tuple[float | None, float | None]:
    """``delong_auc`` of cases in ascending score order, ``positive`` marking the positives."""
    m = int(np.count_nonzero(positive))
    n = len(scores) - m
    if m == 0 or n == 0:
        return None, None
    tz = midranks_of_sorted(scores)  # midranks in the pooled sample
    tz_positives, tz_negatives = tz[positive], tz[~positive]
    # Half-integers: their sum is exact whatever the order, so the AUC does not depend on it.
    auc = float(tz_positives.sum() / (m * n) - (m + 1) / (2 * n))
    if m < 2 or n < 2:
        return auc, None
    v10 = (tz_positives - midranks_of_sorted(scores[positive])) / n  # each positive's share of negatives below
    v01 = 1.0 - (tz_negatives - midranks_of_sorted(scores[~positive])) / m  # each negative's of positives above
    return auc, float(np.var(v10, ddof=1) / m + np.var(v01, ddof=1) / n)


def _interval(auc: float | None, variance: float | None, z: float) -> tuple[float | None, Interval]:
    if auc is None or variance is None:
        return auc, None
    half = z * math.sqrt(variance)
    return auc, [max(0.0, auc - half), min(1.0, auc + half)]


def auc_with_interval(labels: np.ndarray, scores: np.ndarray, *, z: float = Z95) -> tuple[float | None, Interval]:
    """The AUC and its DeLong 95 % interval (normal approximation, clipped to [0, 1])."""
    return _interval(*delong_auc(scores[labels == 1], scores[labels == 0]), z)


# --- Operating points --------------------------------------------------------------------------


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray) -> list[list[int]]:
    """``[[tn, fp], [fn, tp]]``, rows the reference, columns the AI (as ``evaluate_model`` reports it)."""
    positive = labels == 1
    tp = int(np.count_nonzero(positive & predicted))
    fn = int(np.count_nonzero(positive)) - tp
    fp = int(np.count_nonzero((labels == 0) & predicted))
    tn = int(np.count_nonzero(labels == 0)) - fp
    return [[tn, fp], [fn, tp]]


def operating_point(labels: np.ndarray, predicted: np.ndarray) -> dict:
    """Sensitivity, specificity, PPV and NPV with Wilson intervals, and the confusion matrix behind them."""
    (tn, fp), (fn, tp) = confusion_matrix(labels, predicted)
    figures: dict = {"confusion_matrix": [[tn, fp], [fn, tp]]}
    for name, hits, total in (
        ("sensitivity", tp, tp + fn),
        ("specificity", tn, tn + fp),
        ("ppv", tp, tp + fp),
        ("npv", tn, tn + fn),
    ):
        figures[name], figures[f"{name}_ci"] = _proportion(hits, total)
    return figures


def threshold_for_sensitivity(
    labels: np.ndarray, scores: np.ndarray, target: float
) -> tuple[float | None, float | None]:
    """The highest threshold (``score >= threshold`` is positive) whose sensitivity reaches ``target``, and the
    specificity there. The threshold is one of the positives' scores; None without positives, and the
    specificity None without negatives."""
    return _threshold_sorted(np.sort(scores[labels == 1]), np.sort(scores[labels == 0]), target)


def _threshold_sorted(positives: np.ndarray, negatives: np.ndarray, target: float) -> tuple[float | None, float | None]:
    """``threshold_for_sensitivity`` from each class's scores in ascending order."""
    m = len(positives)
    if not m:
        return None, None
    needed = min(max(math.ceil(target * m - 1e-9), 1), m)
    threshold = float(positives[m - needed])  # the needed-th highest: that many positives reach it
    below = int(np.searchsorted(negatives, threshold, side="left"))
    return threshold, (below / len(negatives) if len(negatives) else None)


def calibration(labels: np.ndarray, scores: np.ndarray, *, bins: int = CALIBRATION_BINS) -> list[dict]:
    """Equal-width bins over [0, 1] (the last one closed): cases, mean probability and observed positive share."""
    index = np.clip((scores * bins).astype(int), 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    sums = np.bincount(index, weights=scores, minlength=bins)
    hits = np.bincount(index, weights=labels.astype(float), minlength=bins)
    return [
        {
            "low": round(i / bins, 10),
            "high": round((i + 1) / bins, 10),
            "n": int(counts[i]),
            "mean_probability": float(sums[i] / counts[i]) if counts[i] else None,
            "observed": float(hits[i] / counts[i]) if counts[i] else None,
        }
        for i in range(bins)
    ]


# --- Everything at once ------------------------------------------------------------------------


class ScoredCases:
    """A set of cases sorted by score once, whose figures (or any subset's) then need no further sort."""

    def __init__(
        self,
        labels: Sequence[int] | np.ndarray,
        scores: Sequence[float] | np.ndarray,
        predicted: Sequence[bool] | np.ndarray,
    ) -> None:
        scores = np.asarray(scores, dtype=float)
        self._order = np.argsort(scores, kind="stable")
        self._labels = np.asarray(labels, dtype=np.int8)[self._order]
        self._scores = scores[self._order]
        self._predicted = np.asarray(predicted, dtype=bool)[self._order]

    def __len__(self) -> int:
        return len(self._scores)

    def figures(self, chosen: np.ndarray | None = None, *, target_sensitivity: float) -> dict:
        """Every figure of the report for the chosen cases (a mask in the order given), else all of them."""
        y, p, flagged = self._labels, self._scores, self._predicted
        if chosen is not None:
            kept = np.asarray(chosen, dtype=bool)[self._order]  # still in ascending score order
            y, p, flagged = y[kept], p[kept], flagged[kept]
        positive = y == 1
        n, positives = len(y), int(np.count_nonzero(positive))
        auc, auc_ci = _interval(*_delong_sorted(p, positive), Z95)
        suggested, suggested_specificity = _threshold_sorted(p[positive], p[~positive], target_sensitivity)
        return {
            "n": n,
            "positives": positives,
            "prevalence": positives / n if n else None,
            "auc": auc,
            "auc_ci": auc_ci,
            **operating_point(y, flagged),
            "suggested_threshold": suggested,
            "suggested_specificity": suggested_specificity,
            "calibration": calibration(y, p),
        }


def validation_figures(
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    predicted: Sequence[bool] | np.ndarray,
    *,
    target_sensitivity: float,
) -> dict:
    """Every figure of the report for one set of cases (indeterminate findings already left out)."""
    return ScoredCases(labels, scores, predicted).figures(target_sensitivity=target_sensitivity)
