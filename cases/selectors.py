"""Reads, and the one place that decides who may see and do what.

Every HTML view, API endpoint, download and the navigation go through these
functions, so a user of one site never sees another site's patients anywhere:
an object of another site is simply not found (404), never forbidden (403).
What a role may do is a ``user_can_*`` (or ``user_is_admin``) selector here,
never an inline check of groups or ``is_staff`` at an edge.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime, time
from typing import Any

from django.db.models import Count, Exists, OuterRef, Prefetch, Q, QuerySet
from django.shortcuts import get_object_or_404
from django.utils import timezone

from cases.models import AuditEvent, Image, Patient, Review, Site, Study, User

UPLOAD_SITE_REQUIRED = "Choose the site these studies belong to."
MAX_ID = 2**63 - 1  # the largest id a database column holds


# --- Roles: what a user may do ---------------------------------------------------------------


def user_is_admin(*, user: User) -> bool:
    """Admins are staff: they see every site, the audit trail and Django admin."""
    return bool(user.is_authenticated and user.is_staff)


def user_can_upload(*, user: User) -> bool:
    return user.is_authenticated and (user.is_staff or user.is_technician)


def user_can_review(*, user: User) -> bool:
    """Only radiologists sign; admins too when they are also radiologists."""
    return user.is_authenticated and user.is_radiologist


def user_can_read_worklist(*, user: User) -> bool:
    """Radiologists and admins: the worklist and its work (releasing claims, asking the AI again)."""
    return user.is_authenticated and (user.is_radiologist or user.is_staff)


def user_can_see_stats(*, user: User) -> bool:
    """Radiologists and admins; not technicians, since the figures include AI-vs-radiologist agreement."""
    return user.is_authenticated and (user.is_radiologist or user.is_staff)


def user_role_label(*, user: User) -> str:
    """The role shown beside the user's name."""
    if not user.is_authenticated:
        return ""
    if user.is_radiologist:
        return "Radiologist"
    if user.is_technician:
        return "Technician"
    return "Admin" if user.is_staff else ""


def user_home_url_name(*, user: User) -> str:
    if user.is_radiologist:
        return "worklist"
    if user.is_technician:
        return "upload"
    if user.is_staff:
        return "dashboard"
    return "studies"


# --- Objects: what a user may see ------------------------------------------------------------


def sites_for_user(*, user: User) -> QuerySet[Site]:
    if not user.is_authenticated or not user.is_active:
        return Site.objects.none()
    if user_is_admin(user=user):
        return Site.objects.all()
    return user.sites.all()


def site_for_user(*, user: User, value: str) -> Site | None:
    """One of the user's sites by code (any case) or id; None for any other (callers answer 404, never a hint)."""
    pk = as_id(value)
    lookup = Q(code__iexact=value) | (Q(pk=pk) if pk is not None else Q(pk__in=[]))
    return sites_for_user(user=user).filter(lookup).first()


def upload_site_for_user(*, user: User, chosen: Site | None) -> Site | None:
    """Where an upload goes: the site chosen, else the user's only site; None when they must choose."""
    if chosen is not None:
        return chosen
    sites = list(sites_for_user(user=user)[:2])
    return sites[0] if len(sites) == 1 else None


def _site_ids(user: User) -> list[int] | None:
    """``None`` means every site (admins)."""
    if user.is_active and user_is_admin(user=user):
        return None
    return list(sites_for_user(user=user).values_list("pk", flat=True))


def patients_for_user(*, user: User) -> QuerySet[Patient]:
    site_ids = _site_ids(user)
    qs = Patient.objects.select_related("site")
    return qs if site_ids is None else qs.filter(site_id__in=site_ids)


def patient_for_user(*, user: User, pk: int) -> Patient:
    return get_object_or_404(patients_for_user(user=user), pk=pk)


def studies_for_user(*, user: User) -> QuerySet[Study]:
    site_ids = _site_ids(user)
    qs = Study.objects.select_related("site", "patient", "claimed_by", "uploaded_by")
    return qs if site_ids is None else qs.filter(site_id__in=site_ids)


def study_for_user(*, user: User, pk: int) -> Study:
    return get_object_or_404(studies_for_user(user=user), pk=pk)


def images_for_user(*, user: User) -> QuerySet[Image]:
    site_ids = _site_ids(user)
    qs = Image.objects.select_related("study", "site")
    return qs if site_ids is None else qs.filter(site_id__in=site_ids)


def image_for_user(*, user: User, pk: int) -> Image:
    return get_object_or_404(images_for_user(user=user), pk=pk)


def reviews_current() -> QuerySet[Review]:
    """Each study's current signed version: none superseded by an amendment (stats, drift, validation)."""
    # NOT EXISTS rather than a LEFT JOIN on the reverse relation: PostgreSQL estimates the anti-join well.
    return Review.objects.filter(~Exists(Review.objects.filter(supersedes=OuterRef("pk"))))


def latest_review(*, study: Study) -> Review | None:
    """The study's newest signed version: from the ``reviews_desc`` prefetch of a list (newest first) if made."""
    prefetched = getattr(study, "reviews_desc", None)
    if prefetched is not None:
        return prefetched[0] if prefetched else None
    return study.reviews.order_by("-version").first()


def reviews_for_study(*, study: Study) -> QuerySet[Review]:
    return study.reviews.select_related("radiologist", "model_version").order_by("version")


def audit_events_for_user(*, user: User) -> QuerySet[AuditEvent]:
    if not user_is_admin(user=user):
        return AuditEvent.objects.none()
    return AuditEvent.objects.select_related("user", "site")


def audit_events_filtered(*, user: User, filters: Mapping[str, Any]) -> QuerySet[AuditEvent]:
    """The events an admin may read, narrowed by action, user and site (each by name or id) and days.

    The API's audit list and the CSV export take the same filters.
    """
    events = audit_events_for_user(user=user)
    if filters.get("action"):
        events = events.filter(action=filters["action"])
    for name, text_field in (("user", "username"), ("site", "site__code__iexact")):
        if value := filters.get(name):
            pk = as_id(value)
            by_id = Q(**{f"{name}_id": pk}) if pk is not None else Q(pk__in=[])
            events = events.filter(Q(**{text_field: value}) | by_id)
    if filters.get("date_from"):
        events = events.filter(created_at__gte=day_start(filters["date_from"]))
    if filters.get("date_to"):
        events = events.filter(created_at__lte=day_end(filters["date_to"]))
    return events


def as_id(value: str) -> int | None:
    """``value`` as a database id, or None when it is not one (nor could be: ids are 64-bit)."""
    if not (value.isascii() and value.isdigit() and len(value) <= len(str(MAX_ID))):
        return None
    return int(value) if int(value) <= MAX_ID else None


def day_start(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.min))


def day_end(day: date) -> datetime:
    return timezone.make_aware(datetime.combine(day, time.max))


def study_rows_for_user(*, user: User) -> QuerySet[Study]:
    """Studies for lists, newest first, with what the rows show in a fixed number of queries."""
    return (
        studies_for_user(user=user)
        .prefetch_related(Prefetch("reviews", queryset=Review.objects.order_by("-version"), to_attr="reviews_desc"))
        .annotate(image_count=Count("images"))
        .order_by("-received_at", "-pk")
    )


def study_status_json(*, study: Study) -> dict:
    latest = study.reviews_desc[0] if getattr(study, "reviews_desc", None) else None
    return {
        "id": study.pk,
        "status": study.status,
        "status_display": study.get_status_display(),
        "status_reason": study.status_reason,
        "ai_probability": study.ai_probability,
        "ai_flagged": study.ai_flagged,
        "finding": latest.get_finding_display() if latest else None,
        "claimed_by": study.claimed_by.signature_name if study.claimed_by else None,
    }
