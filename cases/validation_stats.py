"""Figures of a local validation: AUC with DeLong's interval, Wilson intervals, operating points, calibration.

Pure NumPy/SciPy (no Django), so the figures can be checked against published worked examples and benchmarked
alone. ``labels`` are 1 for the reference standard's positives (the radiologist's "pneumonia") and 0 for its
negatives; ``scores`` the AI's probabilities; ``predicted`` the AI's verdict at the threshold in force. A figure
that cannot be computed (no cases, one class only) is None, never a guess.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import rankdata

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


# --- AUC (DeLong) ------------------------------------------------------------------------------


def delong_auc(positives: np.ndarray, negatives: np.ndarray) -> tuple[float | None, float | None]:
    """The AUC and DeLong's variance estimate, by Sun & Xu's (2014) midrank algorithm in O(n log n).

    Ties count one half (midranks). The AUC is None without both classes; the variance needs at least two of
    each, as its structural components' sample variances do.
    """
    m, n = len(positives), len(negatives)
    if m == 0 or n == 0:
        return None, None
    tz = rankdata(np.concatenate([positives, negatives]))  # midranks in the pooled sample
    tx, ty = rankdata(positives), rankdata(negatives)
    auc = float(tz[:m].sum() / (m * n) - (m + 1) / (2 * n))
    if m < 2 or n < 2:
        return auc, None
    v10 = (tz[:m] - tx) / n  # each positive's share of negatives below it
    v01 = 1.0 - (tz[m:] - ty) / m  # each negative's share of positives above it
    return auc, float(np.var(v10, ddof=1) / m + np.var(v01, ddof=1) / n)


def auc_with_interval(labels: np.ndarray, scores: np.ndarray, *, z: float = Z95) -> tuple[float | None, Interval]:
    """The AUC and its DeLong 95 % interval (normal approximation, clipped to [0, 1])."""
    auc, variance = delong_auc(scores[labels == 1], scores[labels == 0])
    if auc is None or variance is None:
        return auc, None
    half = z * math.sqrt(variance)
    return auc, [max(0.0, auc - half), min(1.0, auc + half)]


# --- Operating points --------------------------------------------------------------------------


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray) -> list[list[int]]:
    """``[[tn, fp], [fn, tp]]``, rows the reference, columns the AI (as ``evaluate_model`` reports it)."""
    tp = int(np.sum((labels == 1) & predicted))
    fn = int(np.sum((labels == 1) & ~predicted))
    fp = int(np.sum((labels == 0) & predicted))
    tn = int(np.sum((labels == 0) & ~predicted))
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
    positives = np.sort(scores[labels == 1])[::-1]
    if not len(positives):
        return None, None
    needed = min(max(math.ceil(target * len(positives) - 1e-9), 1), len(positives))
    threshold = float(positives[needed - 1])
    negatives = scores[labels == 0]
    specificity = float(np.mean(negatives < threshold)) if len(negatives) else None
    return threshold, specificity


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


def validation_figures(
    labels: Sequence[int] | np.ndarray,
    scores: Sequence[float] | np.ndarray,
    predicted: Sequence[bool] | np.ndarray,
    *,
    target_sensitivity: float,
) -> dict:
    """Every figure of the report for one set of cases (indeterminate findings already left out)."""
    y = np.asarray(labels, dtype=np.int8)
    p = np.asarray(scores, dtype=float)
    flagged = np.asarray(predicted, dtype=bool)
    n, positives = len(y), int(y.sum())
    auc, auc_ci = auc_with_interval(y, p)
    suggested, suggested_specificity = threshold_for_sensitivity(y, p, target_sensitivity)
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
