"""Drift alarms (service): each site x model's daily figures from the database, and the alarms they open.

``drift_check(day=...)`` reads a window of days ending at ``day`` in a fixed number of queries whatever the
volume, hands the counts to ``cases.drift_stats`` for the rules, and opens at most one alarm per site, model
and kind: while one is open (not acknowledged) nothing new of that kind is raised for that site and model,
and an episode already alarmed is not raised again after its acknowledgement. A new alarm is audited,
e-mailed to the site's admins (or ``ADMINS``) and sent to the site's webhook, ids and figures only.

Agreement is counted on the signing day of each study's latest reading; the outside-domain share, mean
probability and share of positives on the day each image's result finished.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import replace
from datetime import date, timedelta
from functools import cache, lru_cache
from pathlib import Path

from django.conf import settings
from django.core.mail import send_mail
from django.db import IntegrityError, transaction
from django.db.models import Count, Q, QuerySet
from django.db.models.functions import Coalesce, TruncDate
from django.urls import reverse
from django.utils import timezone

from cases import drift_stats
from cases.audit import audit_record
from cases.models import DriftAlarm, DriftKind, Finding, Review, Site, User
from cases.notices import site_notice_queue
from cases.selectors import day_start, reviews_current, sites_for_user
from inference.display import result_is_muted
from inference.models import AiDomain, ModelVersion, Prediction, PredictionStatus

logger = logging.getLogger(__name__)

DRIFT_ALARM = "drift_alarm"
# Enough days for the 30-day baseline and for 7 counted days among quieter ones.
WINDOW_DAYS = 60
OUTSIDE = (AiDomain.OUTSIDE_DOMAIN, AiDomain.NOT_CHEST_XRAY)
Key = tuple[int, int]  # (site id, model version id)


def drift_check(*, day: date | None = None, references: Mapping[Key, float] | None = None) -> list[DriftAlarm]:
    """Open the alarms that ``day`` (default: yesterday, the last whole day) calls for; returns them.

    ``references``: the agreement lower bound from the evidence behind a site's threshold, per (site, model)
    (default: the thresholds in force, ``inference.thresholds``); without one, the version's shipped
    validation figures give it.
    """
    from inference.thresholds import site_threshold_references

    references = site_threshold_references() if references is None else references
    day = day or timezone.localdate() - timedelta(days=1)
    start = day - timedelta(days=WINDOW_DAYS - 1)
    figures = drift_daily_figures(start=start, until=day)
    if not figures:
        return []
    versions = ModelVersion.objects.in_bulk({model_id for _, model_id in figures})
    sites = Site.objects.in_bulk({site_id for site_id, _ in figures})
    taken = _alarmed(start)
    opened = []
    for (site_id, model_id), days in sorted(figures.items()):
        series = [
            days.get(start + timedelta(days=i), drift_stats.DayFigures(start + timedelta(days=i)))
            for i in range(WINDOW_DAYS)
        ]
        version = versions[model_id]
        reference = (references or {}).get((site_id, model_id), shipped_reference(version.name))
        findings = {
            DriftKind.AGREEMENT: drift_stats.agreement_alarm(
                series, reference=reference, min_daily=settings.PNEUMO_DRIFT_MIN_DAILY
            ),
            DriftKind.OUTSIDE_DOMAIN: drift_stats.outside_domain_alarm(
                series[-1], series[-1 - drift_stats.BASELINE_DAYS : -1]
            ),
        }
        for kind, finding in findings.items():
            if finding is None or _already(taken, site_id, model_id, kind, finding.episode_start):
                continue
            alarm = _open(sites[site_id], version, kind, day, finding)
            if alarm is not None:
                opened.append(alarm)
    return opened


def drift_daily_figures(*, start: date, until: date) -> dict[Key, dict[date, drift_stats.DayFigures]]:
    """Per (site, model) and day in [start, until]: the agreement table and the image figures. Three queries."""
    out: dict[Key, dict[date, drift_stats.DayFigures]] = defaultdict(dict)
    for (key, day), counts in _agreement_counts(start, until).items():
        out[key][day] = drift_stats.DayFigures(day, *counts)
    for (key, day), figures in _image_figures(start, until).items():
        out[key][day] = replace(out[key].get(day, drift_stats.DayFigures(day)), **figures)
    return out


def _latest_readings(start: date, until: date) -> QuerySet[Review]:
    return (
        reviews_current()
        .filter(
            finding__in=(Finding.PNEUMONIA, Finding.NO_PNEUMONIA),
            signed_at__gte=day_start(start),
            signed_at__lt=day_start(until + timedelta(days=1)),
        )
        .order_by()
    )


def _agreement_counts(start: date, until: date) -> dict[tuple[Key, date], list[int]]:
    """[both positive, AI only, radiologist only, both negative] per (site, model) and signing day."""
    readings = {
        study_id: (finding == Finding.PNEUMONIA, timezone.localtime(signed_at).date())
        for study_id, finding, signed_at in _latest_readings(start, until).values_list(
            "study_id", "finding", "signed_at"
        )
    }
    if not readings:
        return {}
    rows = (
        Prediction.objects.filter(
            status=PredictionStatus.SUCCEEDED,
            probability__isnull=False,
            image__study__in=_latest_readings(start, until).values("study_id"),
        )
        # Oldest first, so that each image keeps its newest result by each version.
        .order_by("image_id", "model_version_id", Coalesce("finished_at", "created_at"), "pk")
        .values_list("image_id", "model_version_id", "image__study_id", "image__site_id", *_JUDGED)
    )
    current = {(row[0], row[1]): row[2:] for row in rows}
    # A study is positive for a version when any of its images' current results that count reaches its
    # threshold; a muted result (inference.display) is no AI label to agree with, as on the dashboard.
    flagged: dict[tuple[int, int, int], bool] = {}
    for (_, model_id), (study_id, site_id, *judged) in current.items():
        probability, threshold, *scope = judged
        if _muted(*scope):
            continue
        key = (site_id, model_id, study_id)
        flagged[key] = flagged.get(key, False) or probability >= threshold
    counts: dict[tuple[Key, date], list[int]] = defaultdict(lambda: [0, 0, 0, 0])
    for (site_id, model_id, study_id), ai_positive in flagged.items():
        radiologist_positive, day = readings[study_id]
        cell = 2 * (not ai_positive) + (not radiologist_positive)
        counts[((site_id, model_id), day)][cell] += 1
    return counts


# What judges a result: its probability and threshold, then its scope (inference.display.result_is_muted).
_JUDGED = (
    "probability",
    Coalesce("threshold", "model_version__threshold"),
    "domain",
    "outside_validated_use",
    "outside_validated_use_reason",
)


# ``result_is_muted``, judged once per distinct scope (a site has a handful of them).
_muted = lru_cache(maxsize=4096)(result_is_muted)


def _image_figures(start: date, until: date) -> dict[tuple[Key, date], dict]:
    """Per (site, model) and finishing day: images with a result (no chest X-ray included), those outside the
    domain, and the mean probability and positives of the results that count."""
    rows = Prediction.objects.filter(
        status=PredictionStatus.SUCCEEDED,
        finished_at__gte=day_start(start),
        finished_at__lt=day_start(until + timedelta(days=1)),
    ).values_list("image__site_id", "model_version_id", TruncDate("finished_at"), *_JUDGED)
    figures: dict[tuple[Key, date], dict] = defaultdict(
        lambda: {"images": 0, "outside": 0, "scored": 0, "probability_sum": 0.0, "positives": 0}
    )
    for site_id, model_id, day, probability, threshold, domain, outside, reason in rows:
        day_figures = figures[((site_id, model_id), day)]
        day_figures["images"] += 1
        day_figures["outside"] += domain in OUTSIDE
        if probability is not None and not _muted(domain, outside, reason):
            day_figures["scored"] += 1
            day_figures["probability_sum"] += probability
            day_figures["positives"] += probability >= threshold
    return figures


@cache
def _manifest_reference(path: Path) -> float | None:
    try:
        served = json.loads(path.read_text())["validation"]["served"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return drift_stats.shipped_agreement_lower_bound(served)


def shipped_reference(name: str) -> float | None:
    """The Wilson lower bound of agreement in a version's shipped validation; None for an unshipped version."""
    return _manifest_reference(Path(settings.PNEUMO_SHIPPED_MODELS_DIR) / name / "manifest.json")


# --- Opening, telling, acknowledging -----------------------------------------------------------


def _alarmed(start: date) -> list[DriftAlarm]:
    return list(DriftAlarm.objects.filter(Q(acknowledged_at__isnull=True) | Q(day__gte=start)).order_by())


def _already(alarms: list[DriftAlarm], site_id: int, model_id: int, kind: str, episode_start: date) -> bool:
    return any(
        a.site_id == site_id
        and a.model_version_id == model_id
        and a.kind == kind
        and (a.acknowledged_at is None or a.day >= episode_start)
        for a in alarms
    )


def _open(
    site: Site, version: ModelVersion, kind: str, day: date, finding: drift_stats.AlarmFinding
) -> DriftAlarm | None:
    try:
        with transaction.atomic():
            alarm = DriftAlarm.objects.create(
                site=site, model_version=version, kind=kind, day=day, figures=finding.figures
            )
            audit_record(action="drift_alarm_open", obj=alarm, site=site, kind=kind, model=version.name)
            site_notice_queue(site=site, event=DRIFT_ALARM, payload=_notice(alarm))
            transaction.on_commit(lambda: _mail(alarm))
    except IntegrityError:  # another check opened it first: the unique open alarm holds
        return None
    return alarm


def _notice(alarm: DriftAlarm) -> dict:
    return {
        "alarm_id": alarm.pk,
        "kind": alarm.kind,
        "model": alarm.model_version.name,
        "day": alarm.day.isoformat(),
        "link": reverse("admin:cases_driftalarm_change", args=[alarm.pk]),
    }


def drift_alarm_recipients(*, site: Site) -> list[str]:
    """The site's admins' addresses, or ``ADMINS`` when none of them has one."""
    emails = (
        User.objects.filter(is_staff=True, is_active=True, sites=site).exclude(email="").values_list("email", flat=True)
    )
    return sorted(set(emails)) or [email for _, email in settings.ADMINS]


def _mail(alarm: DriftAlarm) -> None:
    recipients = drift_alarm_recipients(site=alarm.site)
    if not recipients:
        logger.warning("drift alarm %s: no admin address to e-mail", alarm.pk)
        return
    what = "agreement with radiologists" if alarm.kind == DriftKind.AGREEMENT else "outside-domain share"
    body = (
        f"Pneumo raised a drift alarm ({what}) for model {alarm.model_version.name} at site {alarm.site.code} "
        f"on {alarm.day.isoformat()}.\n\nFigures: {json.dumps(alarm.figures, indent=1, sort_keys=True)}\n\n"
        f"Acknowledge it in the admin: {reverse('admin:cases_driftalarm_change', args=[alarm.pk])}\n"
    )
    try:
        send_mail(f"[Pneumo] Drift alarm: {what}, {alarm.site.code}", body, None, recipients)
    except Exception as exc:  # noqa: BLE001 - the alarm stays open on the dashboard, admin and /metrics
        logger.warning("drift alarm %s not e-mailed (%s)", alarm.pk, type(exc).__name__)


def drift_alarm_acknowledge(*, alarm_id: int, user: User, request=None) -> bool:
    """Acknowledge an open alarm (audited); False when it was already acknowledged."""
    now = timezone.now()
    done = DriftAlarm.objects.filter(pk=alarm_id, acknowledged_at__isnull=True).update(
        acknowledged_at=now, acknowledged_by=user
    )
    if done:
        alarm = DriftAlarm.objects.select_related("model_version").get(pk=alarm_id)
        audit_record(
            action="drift_alarm_acknowledge",
            user=user,
            obj=alarm,
            request=request,
            kind=alarm.kind,
            model=alarm.model_version.name,
        )
    return bool(done)


# --- Reads -------------------------------------------------------------------------------------


def drift_alarms_open_for_user(*, user: User) -> QuerySet[DriftAlarm]:
    return (
        DriftAlarm.objects.filter(acknowledged_at__isnull=True, site__in=sites_for_user(user=user))
        .select_related("site", "model_version")
        .order_by("-opened_at")
    )


def drift_alarms_open_counts() -> list[tuple[str, str, str, int]]:
    """(site code, model name, kind, open alarms) for /metrics."""
    rows = (
        DriftAlarm.objects.filter(acknowledged_at__isnull=True)
        .values_list("site__code", "model_version__name", "kind")
        .annotate(n=Count("pk"))
        .order_by("site__code", "model_version__name", "kind")
    )
    return list(rows)
