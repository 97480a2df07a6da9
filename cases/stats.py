"""Dashboard figures (selectors): throughput, queue, turnaround and AI-radiologist agreement.

Everything is restricted to the user's sites (admins: all). Agreement uses the
latest signed version of each study's review, signed in the period, with the
radiologist's finding as the reference: an "indeterminate" finding is left out
of the confusion matrix and counted on its own, and a reading over a muted AI
result (``not_validated``: the AI did not apply to the image) is left out of the
agreement altogether and counted apart. The share of images outside the domain,
per day and site, is an early sign that a site sends images the model was not
made for.
"""

from __future__ import annotations

import math
from collections import Counter
from datetime import date, datetime, time, timedelta

from django.db.models import Count, Q, QuerySet
from django.db.models.functions import TruncDate
from django.utils import timezone

from cases.ai_modes import shadowed_studies_q
from cases.models import Agreement, Finding, OverruleReason, Review, Study, User
from cases.selectors import reviews_current, studies_for_user, user_is_admin
from cases.states import StudyStatus
from cases.validation_stats import cohen_kappa
from inference.broker import queue_length
from inference.models import AiDomain, AiLabel, ModelVersion, Prediction, PredictionStatus

MAX_DAYS = 366
S = StudyStatus


def dashboard_stats(*, user: User, days: int = 30) -> dict:
    days = min(max(int(days), 1), MAX_DAYS)
    first_day = timezone.localdate() - timedelta(days=days - 1)
    since = timezone.make_aware(datetime.combine(first_day, time.min))
    studies = studies_for_user(user=user)
    shown = _ai_shown(studies, user)
    return {
        "days": days,
        "since": first_day.isoformat(),
        "received_per_day": _per_day(studies, "received_at", first_day, days),
        "reported_per_day": _per_day(studies, "reported_at", first_day, days),
        "queue_length": _queue(studies),
        "turnaround": {
            # That the AI has run on a shadowed study is a trace of it too (cases.ai_modes).
            "upload_to_ai": _durations(shown.filter(ai_completed_at__gte=since), "received_at", "ai_completed_at"),
            "ai_to_signature": _durations(studies.filter(reported_at__gte=since), "ai_completed_at", "reported_at"),
        },
        **_agreement_all(studies, since),
        "outside_domain_by_day": outside_domain_by_day(shown, since),
    }


def _ai_shown(studies: QuerySet[Study], user: User) -> QuerySet[Study]:
    """The studies whose AI results ``user`` may count: a shadowed study's only once signed, but for admins."""
    return studies if user_is_admin(user=user) else studies.exclude(shadowed_studies_q())


# --- Throughput and queue ---------------------------------------------------------------


def _per_day(studies: QuerySet[Study], field: str, first_day: date, days: int) -> list[dict]:
    since = timezone.make_aware(datetime.combine(first_day, time.min))
    rows = (
        studies.filter(**{f"{field}__gte": since})
        .annotate(day=TruncDate(field))
        .values("day")
        .annotate(n=Count("pk"))
        .order_by()
    )
    counts = {row["day"]: row["n"] for row in rows}
    series = (first_day + timedelta(days=i) for i in range(days))
    return [{"date": day.isoformat(), "count": counts.get(day, 0)} for day in series]


def _queue(studies: QuerySet[Study]) -> dict:
    counted = [s.value for s in (S.RECEIVED, S.QUEUED, S.ANALYZING, S.AWAITING_REVIEW, S.IN_REVIEW)]
    rows = studies.filter(status__in=counted).values("status").annotate(n=Count("pk")).order_by()
    by_status = dict.fromkeys(counted, 0) | {row["status"]: row["n"] for row in rows}
    return {
        "ai_pending": by_status[S.RECEIVED] + by_status[S.QUEUED] + by_status[S.ANALYZING],
        **by_status,
        "broker": queue_length(),  # messages waiting for a worker, all sites; None when Redis is down
    }


# --- Turnaround -------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float | None:
    """Linear interpolation between closest ranks (NumPy's default), ``q`` in [0, 100]."""
    if not values:
        return None
    ordered = sorted(values)
    rank = (len(ordered) - 1) * q / 100
    low, high = math.floor(rank), math.ceil(rank)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def _durations(studies: QuerySet[Study], start: str, end: str) -> dict:
    pairs = studies.exclude(**{f"{start}__isnull": True}).values_list(start, end)
    seconds = [max((b - a).total_seconds(), 0.0) for a, b in pairs if a is not None and b is not None]
    return {"median_s": percentile(seconds, 50), "p90_s": percentile(seconds, 90), "n": len(seconds)}


# --- Agreement --------------------------------------------------------------------------


def latest_reviews(studies: QuerySet[Study], since: datetime) -> QuerySet[Review]:
    """Each study's current signed version (not superseded by an amendment), signed since ``since``."""
    return reviews_current().filter(study__in=studies.values("pk"), signed_at__gte=since)


def _agreement_all(studies: QuerySet[Study], since: datetime) -> dict:
    rows = list(
        latest_reviews(studies, since)
        .values("model_version_id", "ai_label", "finding", "reason", "agreement")
        .annotate(n=Count("pk"))
        .order_by()
    )
    not_validated = [r for r in rows if r["agreement"] == Agreement.NOT_VALIDATED]
    rows = [r for r in rows if r["agreement"] != Agreement.NOT_VALIDATED]
    with_ai = [r for r in rows if r["model_version_id"] is not None and r["ai_label"]]
    versions = ModelVersion.objects.in_bulk({r["model_version_id"] for r in with_ai})
    per_version = [
        agreement_figures(version, [r for r in with_ai if r["model_version_id"] == version.pk])
        for version in sorted(versions.values(), key=lambda v: (not v.is_active, v.name))
    ]
    no_ai = sum(r["n"] for r in rows) - sum(r["n"] for r in with_ai)
    return {
        "agreement": per_version,
        "reviews_without_ai": no_ai,
        "reviews_not_validated": sum(r["n"] for r in not_validated),
    }


def agreement_figures(version: ModelVersion, rows: list[dict]) -> dict:
    """Figures for one model version from ``(ai_label, finding, reason, n)`` rows."""
    cells: Counter[str] = Counter()
    reasons: Counter[str] = Counter(dict.fromkeys(OverruleReason.values, 0))
    for row in rows:
        cell = _cell(row["ai_label"], row["finding"])
        cells[cell] += row["n"]
        if cell in ("fp", "fn"):
            reasons[row["reason"] or OverruleReason.OTHER] += row["n"]
    tp, fp, fn, tn = (cells[c] for c in ("tp", "fp", "fn", "tn"))
    return {
        "model_version": str(version),
        "model_version_id": version.pk,
        "is_active": version.is_active,
        "threshold": version.threshold,
        "n": tp + fp + fn + tn,  # indeterminate findings are counted apart
        "agreed": tp + tn,
        "overruled": fp + fn,
        "indeterminate": cells["indeterminate"],
        "confusion_matrix": {"tp": tp, "fp": fp, "fn": fn, "tn": tn},
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "ppv": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
        "kappa": cohen_kappa(tp, fp, fn, tn),
        "overrule_reasons": dict(reasons),
    }


def _cell(ai_label: str, finding: str) -> str:
    if finding == Finding.INDETERMINATE:
        return "indeterminate"
    ai_positive, rad_positive = ai_label == AiLabel.PNEUMONIA, finding == Finding.PNEUMONIA
    if ai_positive:
        return "tp" if rad_positive else "fp"
    return "fn" if rad_positive else "tn"


def _ratio(numerator: int, denominator: int) -> float | None:
    return numerator / denominator if denominator else None


# --- Scope: images outside the domain ----------------------------------------------------


def outside_domain_by_day(studies: QuerySet[Study], since: datetime) -> list[dict]:
    """Per day (the AI's finishing day) and site: images checked, those outside the domain, and their share.

    An image counts once a day whatever the number of model versions that read it; it is outside when a
    check found it unlike the version's validation images or no chest X-ray at all. Days and sites
    without a checked image are left out; images predicted before the check existed are not counted.
    """
    checked = Prediction.objects.filter(
        image__study__in=studies.values("pk"),
        status=PredictionStatus.SUCCEEDED,
        domain__isnull=False,
        finished_at__gte=since,
    )
    rows = (
        checked.annotate(day=TruncDate("finished_at"))
        .values("day", "image__site__code")
        .annotate(
            n=Count("image", distinct=True),
            outside=Count("image", distinct=True, filter=~Q(domain=AiDomain.IN_DOMAIN)),
        )
        .order_by("day", "image__site__code")
    )
    return [
        {
            "date": row["day"].isoformat(),
            "site": row["image__site__code"],
            "n": row["n"],
            "outside_domain": row["outside"],
            "share": row["outside"] / row["n"],
        }
        for row in rows
    ]


# --- Charts (presentation data for the inline SVG) --------------------------------------


def daily_chart(received: list[dict], reported: list[dict], *, height: int = 120, bar: int = 8) -> dict:
    """Bar geometry for received and reported studies per day, in SVG user units."""
    peak = max([d["count"] for d in received + reported] + [1])
    step = bar * 2 + 6
    days = []
    for i, (r, s) in enumerate(zip(received, reported, strict=True)):
        x = i * step
        hr, hs = round(height * r["count"] / peak), round(height * s["count"] / peak)
        days.append(
            {
                "date": r["date"],
                "received": r["count"],
                "reported": s["count"],
                "label": r["date"][5:],
                "x_received": x,
                "x_reported": x + bar,
                "y_received": height - hr,
                "y_reported": height - hs,
                "h_received": hr,
                "h_reported": hs,
                "show_label": (len(received) - 1 - i) % 7 == 0,
            }
        )
    return {"days": days, "width": max(len(days) * step, step), "height": height, "bar": bar, "peak": peak}
