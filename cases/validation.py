"""The local validation report (selector): one model version's AI results against a site's signed readings.

The reference standard is the latest signed version of each study's review (an amendment replaces what it
amends), signed in the period; findings "pneumonia" and "no pneumonia" are the two classes and "indeterminate"
is counted apart. A study counts when that version has a result on at least one of its images: each image's
current result by the version (the newest that succeeded, as ``predictions_current_first`` chooses), the
study's score the highest of them, and the study positive when any image's probability reaches the threshold
recorded on its prediction (or the version's, for results made before thresholds were recorded). The image
that gives the score gives the study its device, age band, view and domain for the splits.

Live readings were made seeing the AI: their agreement with it is biased upwards. Only shadow mode's readings
are unbiased, and the report splits by mode so the two can be told apart.

Two queries whatever the number of studies; the figures come from ``cases.validation_stats``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, timedelta

import numpy as np
from django.db.models import CharField, QuerySet, Value
from django.db.models.functions import Coalesce
from django.http import Http404

from cases.models import Finding, Review, Site, User
from cases.selectors import day_start, sites_for_user
from cases.validation_stats import validation_figures
from inference.models import ModelVersion, Prediction, PredictionStatus

LIVE = "live"
UNKNOWN = "unknown"
NOT_CHECKED = "not_checked"
AGE_BANDS = ("<1", "1-5", "6-17", "18-64", "65+", UNKNOWN)
# The AI mode a reading was made under. Every reading is live until shadow mode records the mode on each
# signed review; then this becomes F("ai_mode") and the split by mode follows.
REVIEW_MODE = Value(LIVE, output_field=CharField())
LIVE_READINGS_NOTE = (
    "Live readings were made seeing the AI's result, which biases agreement upwards; "
    "only shadow-mode readings are an unbiased comparison."
)


POSITIVE, NEGATIVE, INDETERMINATE = 1, 0, -1
_LABELS = {Finding.PNEUMONIA: POSITIVE, Finding.NO_PNEUMONIA: NEGATIVE, Finding.INDETERMINATE: INDETERMINATE}
SPLITS = ("device", "age_band", "view", "domain", "mode")


@dataclass(frozen=True)
class StudyCases:
    """One entry per counted study: its finding (1, 0, or -1 for indeterminate), score, verdict and groups."""

    labels: np.ndarray
    scores: np.ndarray
    flagged: np.ndarray
    groups: dict[str, np.ndarray]  # split name -> each study's group (object array of str)

    @classmethod
    def empty(cls) -> StudyCases:
        nothing = np.array([], dtype=object)
        return cls(np.array([], dtype=np.int8), np.array([]), np.array([], dtype=bool), dict.fromkeys(SPLITS, nothing))


def validation_site(*, user: User, code: str) -> Site:
    """The site by code (any case) among the user's; 404 otherwise (pages and API alike)."""
    site = sites_for_user(user=user).filter(code__iexact=code).first()
    if site is None:
        raise Http404("Unknown site.")
    return site


def validation_model(*, name: str) -> ModelVersion:
    version = ModelVersion.objects.filter(name=name).first()
    if version is None:
        raise Http404("Unknown model version.")
    return version


def validation_report(
    *,
    site: Site,
    model_version: ModelVersion,
    since: date | None = None,
    until: date | None = None,
    target_sensitivity: float = 0.95,
) -> dict:
    """The report's figures (keys as issue 18 lists them); ``since`` and ``until`` bound the signing day."""
    cases = _study_cases(site, model_version, since, until)
    everything = np.ones(len(cases.labels), dtype=bool)
    figures = _figures(cases, everything, model_version, target_sensitivity)
    splits = {
        f"by_{name}": _split(
            cases, name, model_version, target_sensitivity, order=AGE_BANDS if name == "age_band" else ()
        )
        for name in SPLITS
    }
    return {
        "site": site.code,
        "model": model_version.name,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        **figures,
        **splits,
    }


# --- Reading the rows ----------------------------------------------------------------------------


def _latest_reviews(site: Site, since: date | None, until: date | None) -> QuerySet[Review]:
    """Each study's current signed version (not superseded by an amendment), signed in the period."""
    reviews = Review.objects.filter(study__site=site, superseded_by__isnull=True)
    if since is not None:
        reviews = reviews.filter(signed_at__gte=day_start(since))
    if until is not None:
        reviews = reviews.filter(signed_at__lt=day_start(until + timedelta(days=1)))
    return reviews.order_by()


_PREDICTION_COLUMNS = (
    "image_id",
    "image__study_id",
    "probability",
    "threshold",
    "domain",
    "image__manufacturer",
    "image__manufacturer_model_name",
    "image__patient_age_years",
    "image__view_position",
)


def _study_cases(site: Site, version: ModelVersion, since: date | None, until: date | None) -> StudyCases:
    reviews = _latest_reviews(site, since, until)
    readings = {
        study_id: (_LABELS[finding], mode)
        for study_id, finding, mode in reviews.annotate(mode=REVIEW_MODE).values_list("study_id", "finding", "mode")
    }
    if not readings:
        return StudyCases.empty()
    rows = (
        Prediction.objects.filter(
            model_version=version,
            status=PredictionStatus.SUCCEEDED,
            probability__isnull=False,
            image__site=site,
            # A subquery, not the ids: 100,000 of them would pass SQLite's limit on parameters.
            image__study__in=reviews.values("study_id"),
        )
        # Oldest first, so that each image keeps its newest result: predictions_current_first's rule.
        .order_by("image_id", Coalesce("finished_at", "created_at"), "pk")
        .values_list(*_PREDICTION_COLUMNS)
    )
    current = list({row[0]: row for row in rows}.values())
    if not current:
        return StudyCases.empty()
    return _cases_from(current, readings, version.threshold)


def _cases_from(current: list[tuple], readings: dict[int, tuple[int, str]], version_threshold: float) -> StudyCases:
    """Per study: the highest of its images' results is the score and gives the groups; flagged if any is."""
    studies = np.fromiter((row[1] for row in current), dtype=np.int64, count=len(current))
    probability = np.fromiter((row[2] for row in current), dtype=float, count=len(current))
    threshold = np.fromiter(
        (version_threshold if row[3] is None else row[3] for row in current), dtype=float, count=len(current)
    )
    order = np.lexsort((-probability, studies))  # by study, its highest result first
    ordered = studies[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    top = order[starts]
    flagged = np.logical_or.reduceat((probability >= threshold)[order], starts)
    tops = [current[i] for i in top]
    reading = [readings[row[1]] for row in tops]
    groups = {
        "device": [device_label(row[5], row[6]) for row in tops],
        "age_band": [age_band(row[7]) for row in tops],
        "view": [(row[8] or "").strip().upper() or UNKNOWN for row in tops],
        "domain": [row[4] or NOT_CHECKED for row in tops],
        "mode": [mode or LIVE for _, mode in reading],
    }
    return StudyCases(
        labels=np.fromiter((label for label, _ in reading), dtype=np.int8, count=len(tops)),
        scores=probability[top],
        flagged=flagged,
        groups={name: _objects(values) for name, values in groups.items()},
    )


def _objects(values: list[str]) -> np.ndarray:
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


def device_label(manufacturer: str, model_name: str) -> str:
    return " ".join(part.strip() for part in (manufacturer, model_name) if part and part.strip()) or UNKNOWN


def age_band(years: float | None) -> str:
    if years is None:
        return UNKNOWN
    for upper, band in ((1, "<1"), (6, "1-5"), (18, "6-17"), (65, "18-64")):
        if years < upper:
            return band
    return "65+"


# --- Figures -------------------------------------------------------------------------------------


def _figures(cases: StudyCases, chosen: np.ndarray, version: ModelVersion, target_sensitivity: float) -> dict:
    labels = cases.labels[chosen]
    decided = labels != INDETERMINATE
    figures = validation_figures(
        labels[decided],
        cases.scores[chosen][decided],
        cases.flagged[chosen][decided],
        target_sensitivity=target_sensitivity,
    )
    return {
        "n": figures.pop("n"),
        "positives": figures.pop("positives"),
        "prevalence": figures.pop("prevalence"),
        "indeterminate": int(np.sum(~decided)),
        "threshold": version.threshold,
        **figures,
    }


def _split(
    cases: StudyCases, name: str, version: ModelVersion, target_sensitivity: float, *, order: tuple[str, ...] = ()
) -> list[dict]:
    """The figures per group: fixed groups in ``order`` (all of them, empty or not), else those present."""
    present, index = np.unique(cases.groups[name], return_inverse=True)
    position = {group: i for i, group in enumerate(present)}
    names = list(order) or [str(group) for group in present]
    return [
        {"group": group, **_figures(cases, index == position.get(group, -1), version, target_sensitivity)}
        for group in names
    ]
