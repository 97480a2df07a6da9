"""Which threshold a site's results are judged at: the version's own, or the site's once its evidence backs one.

The newest ``SiteThreshold`` of a site and version is in force; a version that
has none at a site (a newly activated one, say) uses its own threshold there.
Each prediction records the threshold applied and its source.
"""

from __future__ import annotations

from datetime import date
from typing import TYPE_CHECKING

from django.conf import settings
from django.db import transaction
from django.db.models import Case, Value, When

from cases.audit import audit_record
from cases.states import StudyStatus
from inference.models import AiLabel, ModelVersion, Prediction, PredictionStatus, SiteThreshold, ThresholdSource

if TYPE_CHECKING:
    from django.http import HttpRequest

    from cases.models import Site, User


def site_threshold_in_force(*, site: Site, version: ModelVersion) -> SiteThreshold | None:
    rows = SiteThreshold.objects.filter(site=site, model_version=version).select_related("created_by")
    return rows.order_by("-created_at", "-pk").first()


def threshold_in_force(*, site: Site, version: ModelVersion) -> tuple[float, str]:
    """(threshold, source) for results of ``version`` at ``site``."""
    chosen = site_threshold_in_force(site=site, version=version)
    if chosen is not None:
        return chosen.threshold, ThresholdSource.SITE
    return version.threshold, ThresholdSource.MODEL


# --- Setting one -----------------------------------------------------------------------------------


class SiteThresholdRefused(ValueError):
    """A threshold out of range, or too little evidence and no reason given."""


def evidence_shortfall(*, n: int, positives: int) -> str:
    """What the local evidence lacks for a site threshold, or "" when it is enough."""
    wanted = (
        (n, settings.PNEUMO_SITE_THRESHOLD_MIN_STUDIES, "signed studies"),
        (positives, settings.PNEUMO_SITE_THRESHOLD_MIN_POSITIVES, "positives (signed pneumonia)"),
    )
    short = [f"{have} {what} (at least {need} needed)" for have, need, what in wanted if have < need]
    return ("Too little local evidence: " + " and ".join(short) + ".") if short else ""


def _evidence(report: dict, threshold: float) -> dict:
    """What backed the threshold: the report's figures at it, the agreement with its Wilson interval."""
    from cases.validation_stats import wilson_interval

    (tn, fp), (fn, tp) = report["confusion_matrix"]
    decided = tn + fp + fn + tp
    return {
        "threshold": threshold,
        "agreement": (tp + tn) / decided if decided else None,
        "agreement_ci": wilson_interval(tp + tn, decided),
        "report": report,
    }


def site_threshold_set(
    *,
    site: Site,
    version: ModelVersion,
    threshold: float,
    reason: str,
    user: User,
    request: HttpRequest | None = None,
    since: date | None = None,
    until: date | None = None,
) -> SiteThreshold:
    """Set ``site``'s threshold for ``version`` from its local validation report, and re-flag unsigned studies.

    Refused without a reason when fewer than ``PNEUMO_SITE_THRESHOLD_MIN_STUDIES`` signed studies or
    ``PNEUMO_SITE_THRESHOLD_MIN_POSITIVES`` positives back it. Audited, like the re-flagging; signed studies
    keep the threshold they were read at.
    """
    from cases.validation import validation_report

    if not 0.0 < threshold < 1.0:
        raise SiteThresholdRefused("A threshold is a probability strictly between 0 and 1.")
    report = validation_report(site=site, model_version=version, since=since, until=until, threshold=threshold)
    shortfall = evidence_shortfall(n=report["n"], positives=report["positives"])
    if shortfall and not reason.strip():
        raise SiteThresholdRefused(shortfall + " Give a reason to set it anyway.")
    with transaction.atomic():
        chosen = SiteThreshold.objects.create(
            site=site,
            model_version=version,
            threshold=threshold,
            reason=reason.strip(),
            evidence=_evidence(report, threshold),
            evidence_sufficient=not shortfall,
            created_by=user,
        )
        reflagged = _unsigned_reflag(site, version, threshold)
        audit_record(
            action="site_threshold_set",
            user=user,
            obj=chosen,
            site=site,
            request=request,
            model=version.name,
            threshold=threshold,
            n=report["n"],
            positives=report["positives"],
            sufficient=not shortfall,
            reflagged_studies=len(reflagged),
        )
    return chosen


def _unsigned_reflag(site: Site, version: ModelVersion, threshold: float) -> list[int]:
    """Judge the site's unsigned results of ``version`` at ``threshold`` now; returns the studies refreshed."""
    from inference.services import study_ai_refresh

    results = (
        Prediction.objects.filter(image__site=site, model_version=version, status=PredictionStatus.SUCCEEDED)
        .exclude(image__study__status=StudyStatus.REPORTED)
        .exclude(probability__isnull=True)
    )
    study_ids = sorted(set(results.values_list("image__study_id", flat=True)))
    label = Case(When(probability__gte=threshold, then=Value(AiLabel.PNEUMONIA)), default=Value(AiLabel.NORMAL))
    results.update(threshold=threshold, threshold_source=ThresholdSource.SITE, label=label)
    for study_id in study_ids:
        study_ai_refresh(study_id=study_id)
    return study_ids


def site_threshold_references() -> dict[tuple[int, int], float]:
    """Per (site id, version id): the agreement lower bound in the evidence of the threshold in force (drift)."""
    references: dict[tuple[int, int], float] = {}
    seen: set[tuple[int, int]] = set()
    for row in SiteThreshold.objects.order_by("site_id", "model_version_id", "-created_at", "-pk"):
        key = (row.site_id, row.model_version_id)
        if key in seen:
            continue  # an older threshold: no longer in force
        seen.add(key)
        interval = (row.evidence or {}).get("agreement_ci")
        if interval:
            references[key] = float(interval[0])
    return references
