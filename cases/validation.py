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

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import date, timedelta

from django.db.models import CharField, QuerySet, Value
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


@dataclass(frozen=True)
class StudyResult:
    finding: str
    score: float
    flagged: bool
    device: str
    age_band: str
    view: str
    domain: str
    mode: str


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
    results = _study_results(site, model_version, since, until)
    figures = _figures(results, model_version, target_sensitivity)
    splits = {
        "by_device": _split(results, lambda r: r.device, model_version, target_sensitivity),
        "by_age_band": _split(results, lambda r: r.age_band, model_version, target_sensitivity, order=AGE_BANDS),
        "by_view": _split(results, lambda r: r.view, model_version, target_sensitivity),
        "by_domain": _split(results, lambda r: r.domain, model_version, target_sensitivity),
        "by_mode": _split(results, lambda r: r.mode, model_version, target_sensitivity),
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
    "pk",
    "image_id",
    "image__study_id",
    "probability",
    "threshold",
    "domain",
    "finished_at",
    "created_at",
    "image__manufacturer",
    "image__manufacturer_model_name",
    "image__patient_age_years",
    "image__view_position",
)


def _study_results(site: Site, version: ModelVersion, since: date | None, until: date | None) -> list[StudyResult]:
    reviews = _latest_reviews(site, since, until)
    rows = reviews.annotate(mode=REVIEW_MODE).values_list("study_id", "finding", "mode")
    readings = {study_id: (finding, mode) for study_id, finding, mode in rows}
    if not readings:
        return []
    rows = (
        Prediction.objects.filter(
            model_version=version,
            status=PredictionStatus.SUCCEEDED,
            probability__isnull=False,
            image__site=site,
            # A subquery, not the ids: 100,000 of them would pass SQLite's limit on parameters.
            image__study__in=reviews.values("study_id"),
        )
        .values_list(*_PREDICTION_COLUMNS)
        .order_by()
    )
    by_study: dict[int, list[tuple]] = defaultdict(list)
    for row in _current_per_image(rows):
        by_study[row[2]].append(row)
    return [_study_result(readings[study_id], images, version.threshold) for study_id, images in by_study.items()]


def _current_per_image(rows: Iterable[tuple]) -> Iterable[tuple]:
    """Each image's newest succeeded result, the rule of ``inference.selectors.predictions_current_first``."""
    current: dict[int, tuple] = {}
    for row in rows:
        key = (row[6] or row[7], row[0])
        kept = current.get(row[1])
        if kept is None or key > (kept[6] or kept[7], kept[0]):
            current[row[1]] = row
    return current.values()


def _study_result(reading: tuple[str, str], images: list[tuple], version_threshold: float) -> StudyResult:
    finding, mode = reading
    top = max(images, key=lambda row: row[3])
    flagged = any(row[3] >= (row[4] if row[4] is not None else version_threshold) for row in images)
    return StudyResult(
        finding=finding,
        score=top[3],
        flagged=flagged,
        device=device_label(top[8], top[9]),
        age_band=age_band(top[10]),
        view=(top[11] or "").strip().upper() or UNKNOWN,
        domain=top[5] or NOT_CHECKED,
        mode=mode or LIVE,
    )


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


def _figures(results: list[StudyResult], version: ModelVersion, target_sensitivity: float) -> dict:
    decided = [r for r in results if r.finding != Finding.INDETERMINATE]
    figures = validation_figures(
        [1 if r.finding == Finding.PNEUMONIA else 0 for r in decided],
        [r.score for r in decided],
        [r.flagged for r in decided],
        target_sensitivity=target_sensitivity,
    )
    return {
        "n": figures.pop("n"),
        "positives": figures.pop("positives"),
        "prevalence": figures.pop("prevalence"),
        "indeterminate": len(results) - len(decided),
        "threshold": version.threshold,
        **figures,
    }


def _split(
    results: list[StudyResult],
    group_of: Callable[[StudyResult], str],
    version: ModelVersion,
    target_sensitivity: float,
    *,
    order: tuple[str, ...] = (),
) -> list[dict]:
    """The figures per group: fixed groups in ``order`` (all of them, empty or not), else those present."""
    groups: dict[str, list[StudyResult]] = defaultdict(list)
    for result in results:
        groups[group_of(result)].append(result)
    names = list(order) or sorted(groups)
    return [{"group": name, **_figures(groups.get(name, []), version, target_sensitivity)} for name in names]
