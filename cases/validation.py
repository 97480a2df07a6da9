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

Two queries whatever the number of studies (a third when an image has two results by the version); the
figures come from ``cases.validation_stats``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, replace
from datetime import date, timedelta

import numpy as np
from django.db.models import CharField, Count, Exists, OuterRef, QuerySet, Value
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
class Groups:
    """Each study's group in one split, as an index into ``names``."""

    index: np.ndarray
    names: list[str]


@dataclass(frozen=True)
class StudyCases:
    """One entry per counted study: its finding (1, 0, or -1 for indeterminate), score, verdict and groups."""

    labels: np.ndarray
    scores: np.ndarray
    flagged: np.ndarray
    groups: dict[str, Groups]  # split name -> each study's group

    @classmethod
    def empty(cls) -> StudyCases:
        nothing = Groups(np.array([], dtype=np.int64), [])
        groups = {name: Groups(nothing.index, list(AGE_BANDS)) if name == "age_band" else nothing for name in SPLITS}
        return cls(np.array([], dtype=np.int8), np.array([]), np.array([], dtype=bool), groups)


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
    threshold: float | None = None,
) -> dict:
    """The report's figures (keys as issue 18 lists them); ``since`` and ``until`` bound the signing day.

    ``threshold``: every study judged at it instead of at the thresholds its results were flagged at (the
    evidence for a new site threshold, ``inference.thresholds``); the report names the threshold in force
    at the site otherwise.
    """
    cases = _study_cases(site, model_version, since, until)
    if threshold is not None:
        cases = replace(cases, flagged=cases.scores >= threshold)
    shown = threshold if threshold is not None else _threshold_in_force(site, model_version)
    everything = np.ones(len(cases.labels), dtype=bool)
    figures = _figures(cases, everything, shown, target_sensitivity)
    splits = {f"by_{name}": _split(cases, name, shown, target_sensitivity) for name in SPLITS}
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
    # NOT EXISTS rather than a LEFT JOIN on the reverse relation: PostgreSQL estimates the anti-join well.
    amended = Review.objects.filter(supersedes=OuterRef("pk"))
    reviews = Review.objects.filter(~Exists(amended), study__site=site)
    if since is not None:
        reviews = reviews.filter(signed_at__gte=day_start(since))
    if until is not None:
        reviews = reviews.filter(signed_at__lt=day_start(until + timedelta(days=1)))
    return reviews.order_by()


_PREDICTION_COLUMNS = (
    "pk",
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
PK, IMAGE, STUDY, PROBABILITY, THRESHOLD, DOMAIN, MANUFACTURER, MODEL_NAME, AGE, VIEW = range(len(_PREDICTION_COLUMNS))


def _study_cases(site: Site, version: ModelVersion, since: date | None, until: date | None) -> StudyCases:
    reviews = _latest_reviews(site, since, until)
    readings = {
        study_id: (_LABELS[finding], mode)
        for study_id, finding, mode in reviews.annotate(mode=REVIEW_MODE).values_list("study_id", "finding", "mode")
    }
    if not readings:
        return StudyCases.empty()
    predictions = Prediction.objects.filter(
        model_version=version, status=PredictionStatus.SUCCEEDED, probability__isnull=False, image__site=site
    )
    if since is not None or until is not None:
        # A subquery, not the ids: 100,000 of them would pass SQLite's limit on parameters. Without a period
        # the site's results are read whole and matched to the readings here, which is faster than a semi-join.
        predictions = predictions.filter(image__study__in=reviews.values("study_id"))
    rows = [row for row in predictions.values_list(*_PREDICTION_COLUMNS).order_by() if row[STUDY] in readings]
    current = _current_per_image(rows, predictions)
    if not current:
        return StudyCases.empty()
    return _cases_from(current, readings, version.threshold)


def _current_per_image(rows: list[tuple], predictions: QuerySet[Prediction]) -> list[tuple]:
    """Each image's newest succeeded result (``predictions_current_first``'s rule).

    An image rarely has two results by one version (a re-run with another preprocessing): only then a third
    query reads their times, so the large query needs no sort.
    """
    current: dict[int, tuple] = {}
    repeated: list[tuple] = []
    for row in rows:
        kept = current.setdefault(row[IMAGE], row)
        if kept is not row:
            repeated.append(row)
    if repeated:
        images = {row[IMAGE] for row in repeated}
        contenders = [row for row in rows if row[IMAGE] in images]
        # The images with two results, as a subquery: a site-wide re-run must not become a list of ids.
        twice = predictions.values("image").annotate(results=Count("pk")).filter(results__gt=1).values("image")
        newest = dict(
            predictions.filter(image__in=twice)
            .annotate(at=Coalesce("finished_at", "created_at"))
            .values_list("pk", "at")
            .order_by()
        )
        for row in sorted(contenders, key=lambda r: (newest[r[PK]], r[PK])):
            current[row[IMAGE]] = row
    return list(current.values())


def _cases_from(current: list[tuple], readings: dict[int, tuple[int, str]], version_threshold: float) -> StudyCases:
    """Per study: the highest of its images' results is the score and gives the groups; flagged if any is."""
    columns = list(zip(*current, strict=True))
    studies = np.array(columns[STUDY], dtype=np.int64)
    probability = np.array(columns[PROBABILITY], dtype=float)
    threshold = np.array(columns[THRESHOLD], dtype=float)  # None becomes NaN: the version's threshold then
    threshold = np.where(np.isnan(threshold), version_threshold, threshold)
    order = np.lexsort((-probability, studies))  # by study, its highest result first
    ordered = studies[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    top = order[starts]
    flagged = np.logical_or.reduceat((probability >= threshold)[order], starts)
    reading = [readings[study] for study in studies[top].tolist()]
    groups = {
        "device": _labelled(
            zip(_take(columns[MANUFACTURER], top), _take(columns[MODEL_NAME], top), strict=True), device_label
        ),
        "age_band": _age_bands(np.array(columns[AGE], dtype=float)[top]),
        "view": _labelled(_take(columns[VIEW], top), view_label),
        "domain": _labelled(_take(columns[DOMAIN], top), lambda domain: domain or NOT_CHECKED),
        "mode": _labelled((mode for _, mode in reading), lambda mode: mode or LIVE),
    }
    return StudyCases(
        labels=np.array([label for label, _ in reading], dtype=np.int8),
        scores=probability[top],
        flagged=flagged,
        groups=groups,
    )


def _take(column: tuple, index: np.ndarray) -> list:
    return [column[i] for i in index.tolist()]


def _labelled(values: Iterable, label: Callable) -> Groups:
    """Each value's group, labelled once per distinct value (a site has few devices, views, modes)."""
    codes: dict = {}
    index = [codes.setdefault(value, len(codes)) for value in values]
    names = [label(*value) if isinstance(value, tuple) else label(value) for value in codes]
    return _merged(np.array(index, dtype=np.int64), names)


def _merged(index: np.ndarray, names: list[str]) -> Groups:
    """Codes for the distinct labels (two values may share one, as blank and "unknown" do)."""
    distinct = sorted(set(names))
    recode = np.array([distinct.index(name) for name in names], dtype=np.int64)
    return Groups(recode[index] if len(index) else index, distinct)


def _age_bands(years: np.ndarray) -> Groups:
    index = np.digitize(np.nan_to_num(years, nan=0.0), [1, 6, 18, 65])
    index[np.isnan(years)] = len(AGE_BANDS) - 1
    return Groups(index.astype(np.int64), list(AGE_BANDS))


def view_label(view: str | None) -> str:
    return (view or "").strip().upper() or UNKNOWN


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


def _threshold_in_force(site: Site, version: ModelVersion) -> float:
    """The one place the report's threshold is chosen: the site's in force for the version, else the version's."""
    from inference.thresholds import threshold_in_force

    return threshold_in_force(site=site, version=version)[0]


def _figures(cases: StudyCases, chosen: np.ndarray, threshold: float, target_sensitivity: float) -> dict:
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
        "threshold": threshold,
        **figures,
    }


def _split(cases: StudyCases, name: str, threshold: float, target_sensitivity: float) -> list[dict]:
    """The figures per group: every age band (empty or not), else the groups present."""
    groups = cases.groups[name]
    return [
        {"group": group, **_figures(cases, groups.index == i, threshold, target_sensitivity)}
        for i, group in enumerate(groups.names)
    ]
