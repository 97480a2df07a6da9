"""The radiologists' worklist (selectors): what is waiting to be read, most urgent first.

Order: stat, urgent, routine lanes (``priority_rank``); within a lane the
AI-flagged studies by probability, highest first, then everything else by
how long it has waited. A page costs the same few queries at any size: the
study, its patient, site and reader come by join, and the outside-validated-use
note of the active model's predictions by a correlated subquery.

A muted AI result (``inference.display``) never flags, ranks or alerts: the
study's ``ai_probability`` and ``ai_flagged`` come from results that count
only, so the order, the lane counts and the alerts follow from them; a row
shows a muted result greyed, with why.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.db.models import (
    Case,
    Count,
    DateField,
    Exists,
    F,
    FloatField,
    Max,
    OuterRef,
    Q,
    QuerySet,
    Subquery,
    When,
)
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from cases.ai_modes import shadowed_studies_q
from cases.models import Patient, Priority, Study, User
from cases.selectors import studies_for_user
from cases.states import REVIEWABLE, StudyStatus
from inference.display import HIDDEN, MUTED, NO_RESULT, NONE, RESULT, WITHHELD, AiShown, domain_label, study_shown
from inference.models import Prediction

PAGE_SIZES = (10, 25, 50, 100)
DEFAULT_PAGE_SIZE = 50
MAX_SEARCH_TERMS = 5
# An alert is about a study that became flagged while the page was open, not an old one.
MAX_ALERT_LOOKBACK = timedelta(hours=1)


@dataclass(frozen=True)
class WorklistFilters:
    statuses: tuple[str, ...] = ()
    site_ids: tuple[int, ...] = ()
    priorities: tuple[str, ...] = ()
    flagged: bool | None = None
    date_from: date | None = None
    date_to: date | None = None
    search: str = ""

    @property
    def active(self) -> bool:
        return self != WorklistFilters()


def worklist_filters_from(fields: Mapping[str, Any]) -> WorklistFilters:
    """The worklist page's form and the API's query, read alike.

    ``status`` and ``priority`` are a value or a collection of them; ``site`` is a
    site id the caller already checked is the user's; an empty value filters nothing.
    """
    return WorklistFilters(
        statuses=_values(fields.get("status")),
        site_ids=_values(fields.get("site")),
        priorities=_values(fields.get("priority")),
        flagged=fields.get("flagged"),
        date_from=fields.get("date_from"),
        date_to=fields.get("date_to"),
        search=fields.get("search") or "",
    )


def _values(value: Any) -> tuple:
    if value is None or value == "":
        return ()
    if isinstance(value, str | int):
        return (value,)
    return tuple(sorted(value))


def _outside_use_predictions() -> QuerySet[Prediction]:
    # A shadowed study's predictions leave no trace on its row (cases.ai_modes).
    return Prediction.objects.filter(
        image__study=OuterRef("pk"), model_version__is_active=True, outside_validated_use=True
    ).exclude(shadowed_studies_q("image__study__"))


def _reviewable(user: User) -> QuerySet[Study]:
    return studies_for_user(user=user).filter(status__in=REVIEWABLE)


def worklist_for_user(*, user: User, filters: WorklistFilters | None = None) -> QuerySet[Study]:
    """Studies to read at the user's sites, in reading order, with every column of a row."""
    reasons = _outside_use_predictions().exclude(outside_validated_use_reason="").order_by("pk")
    studies = _reviewable(user).annotate(
        ai_outside_use=Exists(_outside_use_predictions()),
        ai_outside_use_reason=Subquery(reasons.values("outside_validated_use_reason")[:1]),
        flagged_probability=Case(When(ai_flagged=True, then=F("ai_probability")), output_field=FloatField()),
    )
    studies = _filtered(studies, filters or WorklistFilters())
    return studies.order_by(
        "priority_rank", "-ai_flagged", F("flagged_probability").desc(nulls_last=True), "received_at", "pk"
    )


def _filtered(studies: QuerySet[Study], filters: WorklistFilters) -> QuerySet[Study]:
    if filters.statuses:
        studies = studies.filter(status__in=filters.statuses)
    if filters.site_ids:
        studies = studies.filter(site_id__in=filters.site_ids)
    if filters.priorities:
        studies = studies.filter(priority__in=filters.priorities)
    if filters.flagged is not None:
        studies = studies.filter(ai_flagged=filters.flagged)
    if filters.date_from or filters.date_to:
        # PNG and JPEG uploads may have no study date: the day it arrived stands in.
        day = Coalesce("study_date", TruncDate("received_at"), output_field=DateField())
        studies = studies.annotate(worklist_day=day)
        if filters.date_from:
            studies = studies.filter(worklist_day__gte=filters.date_from)
        if filters.date_to:
            studies = studies.filter(worklist_day__lte=filters.date_to)
    return _searched(studies, filters.search)


def _searched(studies: QuerySet[Study], search: str) -> QuerySet[Study]:
    # Every word must match the patient ID, the name or the accession number, so
    # "doe john" finds "DOE^JOHN" and "John Doe" alike.
    for term in search.replace("^", " ").split()[:MAX_SEARCH_TERMS]:
        studies = studies.filter(
            Q(patient__patient_id__icontains=term)
            | Q(patient__name__icontains=term)
            | Q(accession_number__icontains=term)
        )
    return studies


def lane_counts(*, user: User) -> dict:
    """Studies to read per priority lane, with how many are AI-flagged and in review, in one query."""
    lanes = {p: Count("pk", filter=Q(priority=p)) for p in Priority.values}
    flagged = {f"{p}_flagged": Count("pk", filter=Q(priority=p, ai_flagged=True)) for p in Priority.values}
    counts = _reviewable(user).aggregate(
        **lanes,
        **flagged,
        total=Count("pk"),
        flagged=Count("pk", filter=Q(ai_flagged=True)),
        in_review=Count("pk", filter=Q(status=StudyStatus.IN_REVIEW)),
    )
    return {key: int(value or 0) for key, value in counts.items()}


def worklist_alerts(*, user: User, since: datetime) -> QuerySet[Study]:
    """Stat and urgent studies the AI flagged since ``since``, at the sites the user reads for."""
    since = max(since, timezone.now() - MAX_ALERT_LOOKBACK)
    return (
        studies_for_user(user=user)
        .filter(
            site__in=user.sites.all(),
            status=StudyStatus.AWAITING_REVIEW,
            priority__in=(Priority.STAT, Priority.URGENT),
            ai_flagged=True,
            ai_completed_at__gt=since,
        )
        .order_by("priority_rank", "-ai_probability", "pk")[:10]
    )


# --- What a row shows -------------------------------------------------------------------


def age_in_years(patient: Patient, on: date) -> int | None:
    born = patient.birth_date
    if born is None or born > on:
        return None
    return on.year - born.year - ((on.month, on.day) < (born.month, born.day))


@dataclass(frozen=True)
class WorklistRow:
    study: Study
    age_years: int | None
    waiting_seconds: int
    ai_state: str  # flagged | not_flagged | muted | withheld | no_result | no_ai | hidden (shadow mode)
    ai_note: str

    @property
    def waiting(self) -> str:
        return waiting_text(self.waiting_seconds)

    @property
    def probability_percent(self) -> int | None:
        p = self.study.ai_probability
        return None if p is None else round(p * 100)

    @property
    def muted_percent(self) -> int | None:
        """A muted result's probability, shown greyed; None unless the row shows one."""
        p = self.study.ai_muted_probability
        return None if p is None or self.ai_state != MUTED else round(p * 100)

    @property
    def ai_domain(self) -> str | None:
        return self.study.ai_domain

    @property
    def domain_label(self) -> str:
        return domain_label(self.study.ai_domain)


def rows_fingerprint(rows: list[WorklistRow]) -> str:
    """Changes whenever anything a row shows changes, its waiting time included."""
    shown = [
        (
            r.study.pk,
            r.study.status,
            r.study.claimed_by_id,
            r.study.ai_probability,
            r.study.ai_flagged,
            r.study.ai_muted_probability,
            r.study.ai_domain,
            r.ai_state,
            r.study.priority,
            r.study.updated_at.isoformat(),
            r.waiting,
            r.ai_note,
        )
        for r in rows
    ]
    return hashlib.sha256(repr(shown).encode()).hexdigest()[:20]


def _outside_use_note(study: Study) -> str:
    if not getattr(study, "ai_outside_use", False):
        return ""
    return getattr(study, "ai_outside_use_reason", "") or "Outside the model's validated use."


def _ai_state(study: Study, shown: AiShown) -> tuple[str, str]:
    if shown.kind == RESULT:
        return ("flagged" if study.ai_flagged else "not_flagged"), _outside_use_note(study)
    if shown.kind == HIDDEN:
        return HIDDEN, ""
    if shown.kind == NONE:
        return "no_ai", study.status_reason or "No AI result."
    return {MUTED: "muted", WITHHELD: "withheld", NO_RESULT: "no_result"}[shown.kind], shown.message


def worklist_row(study: Study, *, now: datetime) -> WorklistRow:
    state, note = _ai_state(study, study_shown(study, caveat=getattr(study, "ai_outside_use_reason", "") or ""))
    on = study.study_date or timezone.localdate(study.received_at)
    waited = max(int((now - study.received_at).total_seconds()), 0)
    return WorklistRow(study, age_in_years(study.patient, on), waited, state, note)


def waiting_text(seconds: int) -> str:
    """Compact, as PACS worklists show it: 45s, 12m, 3h 05m, 2d 4h."""
    if seconds < 60:
        return f"{seconds}s"
    minutes = seconds // 60
    if minutes < 60:
        return f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours}h"


def worklist_change_token(*, user: User) -> str:
    """Changes whenever a study at the user's sites changes (status, AI result, claim, priority)."""
    agg = studies_for_user(user=user).order_by().aggregate(latest=Max("updated_at"), n=Count("pk"))
    latest = agg["latest"].isoformat() if agg["latest"] else "-"
    return f"{latest}/{agg['n']}"
