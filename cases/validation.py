"""The local validation report (selector): one model version's AI results against a site's signed readings.

The reference standard is the latest signed version of each study's review (an amendment replaces what it
amends), signed in the period; findings "pneumonia" and "no pneumonia" are the two classes and "indeterminate"
is counted apart. A study counts when that version has a result on at least one of its images: each image's
current result by the version (the newest that succeeded, as ``predictions_current_first`` chooses), the
study's score the highest of them, and the study positive when any image's probability reaches the threshold
recorded on its prediction (or the version's, for results made before thresholds were recorded). The image
that gives the score gives the study its device, age band, view and domain for the splits; the reading gives
its mode, the site's AI mode when it was signed (blank, before modes were recorded: live).

Live readings were made seeing the AI: their agreement with it is biased upwards. Only shadow mode's readings
are unbiased, and the report says so and splits by mode so the two can be told apart.

One query whatever the number of studies (each result joined to its study's reading; a second when an image
has two results by the version), no model instances: plain rows become NumPy columns, the strings are coded
once per distinct combination, and ``cases.validation_stats`` sorts the studies by score once for every split.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from datetime import date, timedelta
from operator import itemgetter

import numpy as np
from django.db import connection
from django.db.models import Count, QuerySet
from django.db.models.functions import Coalesce
from django.http import Http404

from cases.models import Finding, Review, Site, User
from cases.selectors import day_start, reviews_current, site_for_user
from cases.validation_stats import ScoredCases
from inference.display import result_is_muted
from inference.models import AiDomain, AiMode, ModelVersion, Prediction, PredictionStatus

LIVE = AiMode.LIVE.value
UNKNOWN = "unknown"
NOT_CHECKED = "not_checked"
OUTSIDE_VALIDATED_USE = "outside_validated_use"  # a result muted by a caveat (age, view), in the split by scope
AGE_BANDS = ("<1", "1-5", "6-17", "18-64", "65+", UNKNOWN)
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
    counts: np.ndarray  # its AI counts (inference.display): False when all its results are muted

    @classmethod
    def empty(cls) -> StudyCases:
        nothing = Groups(np.array([], dtype=np.int64), [])
        groups = {name: Groups(nothing.index, list(AGE_BANDS)) if name == "age_band" else nothing for name in SPLITS}
        none = np.array([], dtype=bool)
        return cls(np.array([], dtype=np.int8), np.array([]), none, groups, none)


def validation_site(*, user: User, code: str) -> Site:
    """The site by code (any case) among the user's; 404 otherwise (pages and API alike)."""
    site = site_for_user(user=user, value=code)
    if site is None:
        raise Http404("Unknown site.")
    return site


def validation_model(*, name: str) -> ModelVersion:
    version = ModelVersion.objects.filter(name=name).first()
    if version is None:
        raise Http404("Unknown model version.")
    return version


def report_threshold(site: Site, version: ModelVersion) -> float:
    """The threshold the report states as in force for the site and version: the one place it is chosen.

    The site's own once one is set (``inference.thresholds``), else the version's; one query. The verdicts
    stay each result's own recorded threshold (the one its readers were shown).
    """
    from inference.thresholds import threshold_in_force

    return threshold_in_force(site=site, version=version)[0]


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

    With ``threshold``, the verdicts are every study's score against it (the figures a candidate threshold
    would have had); without, each result's recorded threshold, and the report states the one in force.
    """
    cases = _study_cases(site, model_version, since, until)
    if threshold is None:
        threshold, flagged = report_threshold(site, model_version), cases.flagged
    else:
        flagged = cases.scores >= threshold  # the study's highest result reaches it: one of its results does
    decided = cases.labels != INDETERMINATE
    scored = ScoredCases(cases.labels[decided], cases.scores[decided], flagged[decided])
    # Muted results count nowhere but in the split by scope outcome (inference.display).
    counted = cases.counts[decided]

    def figures(chosen: np.ndarray | None, indeterminate: int) -> dict:
        found = scored.figures(chosen, target_sensitivity=target_sensitivity)
        return {
            "n": found.pop("n"),
            "positives": found.pop("positives"),
            "prevalence": found.pop("prevalence"),
            "indeterminate": indeterminate,
            "threshold": threshold,
            **found,
        }

    splits = {}
    for name in SPLITS:
        groups = cases.groups[name]
        every = name == "domain"
        index = groups.index[decided]
        undecided = groups.index[~decided & (True if every else cases.counts)]
        indeterminate = np.bincount(undecided, minlength=len(groups.names))
        splits[f"by_{name}"] = [
            {"group": group, **figures((index == i) & (True if every else counted), int(indeterminate[i]))}
            for i, group in enumerate(groups.names)
        ]
    for group in splits["by_mode"]:
        group["readers_saw_ai"] = group["group"] == LIVE
    return {
        "site": site.code,
        "model": model_version.name,
        "since": since.isoformat() if since else None,
        "until": until.isoformat() if until else None,
        **figures(counted, int(np.count_nonzero(~decided & cases.counts))),
        **splits,
        "caveat": LIVE_READINGS_NOTE,
    }


# --- Reading the rows ----------------------------------------------------------------------------


def _latest_reviews(site: Site, since: date | None, until: date | None) -> QuerySet[Review]:
    """Each study's current signed version (not superseded by an amendment), signed in the period."""
    reviews = reviews_current().filter(study__site=site)
    if since is not None:
        reviews = reviews.filter(signed_at__gte=day_start(since))
    if until is not None:
        reviews = reviews.filter(signed_at__lt=day_start(until + timedelta(days=1)))
    return reviews.order_by()


_IMAGE = "study__images__"
_RESULT = "study__images__predictions__"
# One row per result by the version on an image of a study whose latest reading counts.
_COLUMNS = (
    "study_id",
    "finding",
    "ai_mode",
    _IMAGE + "id",
    _RESULT + "id",
    _RESULT + "probability",
    _RESULT + "threshold",
    _RESULT + "domain",
    _IMAGE + "manufacturer",
    _IMAGE + "manufacturer_model_name",
    _IMAGE + "view_position",
    _IMAGE + "patient_age_years",
    _RESULT + "outside_validated_use",
    _RESULT + "outside_validated_use_reason",
)
(STUDY, FINDING, MODE, IMAGE, PK, PROBABILITY, THRESHOLD, DOMAIN, MANUFACTURER, MODEL_NAME, VIEW, AGE, OUTSIDE,
 REASON) = range(len(_COLUMNS))  # fmt: skip
# The text columns, coded together: a site has few distinct combinations of them.
_TEXT = itemgetter(FINDING, MODE, MANUFACTURER, MODEL_NAME, VIEW, DOMAIN)
_SCOPE = itemgetter(DOMAIN, OUTSIDE, REASON)


def _results(version: ModelVersion) -> dict:
    """The conditions on a result: by the version, succeeded, with a probability."""
    return {"model_version": version, "status": PredictionStatus.SUCCEEDED, "probability__isnull": False}


def _study_cases(site: Site, version: ModelVersion, since: date | None, until: date | None) -> StudyCases:
    reviews = _latest_reviews(site, since, until)
    # In one filter() call, so that every condition is on the same joined result (and values() reuses it).
    conditions = {_RESULT + key: value for key, value in _results(version).items()}
    rows = list(reviews.filter(**conditions, **{_IMAGE + "site": site}).values_list(*_COLUMNS))
    if not rows:
        return StudyCases.empty()
    image, pk = _filled_column(rows, IMAGE, np.int64), _filled_column(rows, PK, np.int64)
    kept = _current_per_image(image, pk, site, version, reviews, period=since is not None or until is not None)
    if kept is not None:
        rows = list(itertools.compress(rows, kept.tolist()))
        image = image[kept]
    return _cases_from(rows, image, version.threshold)


def _column(rows: list[tuple], position: int, dtype: type) -> np.ndarray:
    """One column of the rows as an array (None becomes NaN in a float column)."""
    return np.array(list(map(itemgetter(position), rows)), dtype=dtype)


def _filled_column(rows: list[tuple], position: int, dtype: type) -> np.ndarray:
    """``_column`` of a column without None, read straight into the array."""
    return np.fromiter(map(itemgetter(position), rows), dtype=dtype, count=len(rows))


# Re-run images' results are listed by id up to this many (or the database's limit on parameters, SQLite's
# 999, less a margin for the query's others); more are found through a subquery.
REPEATED_IDS_MAX = 10_000


def _current_per_image(
    image: np.ndarray, pk: np.ndarray, site: Site, version: ModelVersion, reviews: QuerySet, *, period: bool
) -> np.ndarray | None:
    """Which rows are their image's newest succeeded result (``predictions_current_first``'s rule); None: all.

    An image rarely has two results by one version (a re-run with another preprocessing): only then a second
    query has the database order their results newest first (their times are never read: converting 100,000
    time stamps would cost more than the report), so the large query needs no sort.
    """
    ordered = np.sort(image)
    repeated = np.unique(ordered[1:][ordered[1:] == ordered[:-1]])
    if not len(repeated):
        return None
    contenders = np.isin(image, repeated)
    predictions = Prediction.objects.filter(**_results(version), image__site=site)
    listed = min(connection.features.max_query_params or REPEATED_IDS_MAX, REPEATED_IDS_MAX) - 10
    if np.count_nonzero(contenders) <= listed:
        predictions = predictions.filter(pk__in=pk[contenders].tolist())
    else:
        if period:
            # A subquery, not the ids: 100,000 of them would pass SQLite's limit on parameters.
            predictions = predictions.filter(image__study__in=reviews.values("study_id"))
        # The images with two results, as a subquery: a site-wide re-run must not become a list of ids.
        twice = predictions.values("image").annotate(results=Count("pk")).filter(results__gt=1).values("image")
        predictions = predictions.filter(image__in=twice)
    newest_first = predictions.order_by("image", Coalesce("finished_at", "created_at").desc(), "-pk")
    current = {}  # image -> its current result
    for result_image, result in newest_first.values_list("image", "pk"):
        current.setdefault(result_image, result)
    return ~contenders | np.isin(pk, list(current.values()))


def _muted_rows(rows: list[tuple]) -> np.ndarray:
    """Which results ``inference.display`` mutes, judged once per distinct (domain, outside use, reason)."""
    scopes = list(map(_SCOPE, rows))
    muted = {scope: result_is_muted(*scope) for scope in dict.fromkeys(scopes)}
    return np.fromiter(map(muted.__getitem__, scopes), dtype=bool, count=len(scopes))


def _cases_from(rows: list[tuple], image: np.ndarray, version_threshold: float) -> StudyCases:
    """Per study, as its readers were shown it (``inference.display.predictions_summary``): the highest of its
    results that count is the score and gives the groups, flagged if any of them reaches its threshold.

    A study whose results are all muted keeps its highest muted one, judged at its threshold as if it counted:
    it is left out of every figure but the split by scope outcome, which shows how the model fares there.
    """
    studies = _filled_column(rows, STUDY, np.int64)
    probability = _filled_column(rows, PROBABILITY, float)
    threshold = _column(rows, THRESHOLD, float)  # NaN where none was recorded: the version's threshold then
    threshold = np.where(np.isnan(threshold), version_threshold, threshold)
    muted = _muted_rows(rows)
    # By study, its highest counted result first, else its highest muted one (ties: first image).
    order = np.lexsort((image, -probability, muted, studies))
    ordered = studies[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    top = order[starts]
    reaches = probability >= threshold
    counts = ~muted[top]
    flagged = np.where(counts, np.logical_or.reduceat((reaches & ~muted)[order], starts), reaches[top])
    tops = [rows[row] for row in top.tolist()]  # each study's row of its highest result
    # Each study's text as a code for its combination of finding, mode, device, view and scope outcome.
    texts = [(*_TEXT(row), bool(muted_top) and row[DOMAIN] != AiDomain.OUTSIDE_DOMAIN)
             for row, muted_top in zip(tops, muted[top].tolist(), strict=True)]  # fmt: skip
    combinations = {text: code for code, text in enumerate(dict.fromkeys(texts))}
    code = np.fromiter(map(combinations.__getitem__, texts), dtype=np.int64, count=len(texts))
    keys = list(combinations)
    groups = {
        "device": _grouped(code, [device_label(k[2], k[3]) for k in keys]),
        "age_band": _age_bands(_column(tops, AGE, float)),
        "view": _grouped(code, [view_label(k[4]) for k in keys]),
        "domain": _grouped(code, [OUTSIDE_VALIDATED_USE if k[6] else k[5] or NOT_CHECKED for k in keys]),
        "mode": _grouped(code, [k[1] or LIVE for k in keys]),
    }
    labels = np.array([_LABELS[k[0]] for k in keys], dtype=np.int8)
    return StudyCases(labels=labels[code], scores=probability[top], flagged=flagged, groups=groups, counts=counts)


def _grouped(code: np.ndarray, names: list[str]) -> Groups:
    """Each study's group from its combination's ``names`` (two combinations often share one), sorted by name."""
    distinct = sorted(set(names))
    recode = np.array([distinct.index(name) for name in names], dtype=np.int64)
    return Groups(recode[code], distinct)


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
