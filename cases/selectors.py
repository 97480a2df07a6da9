"""Reads, and the one place that decides who may see what.

Every HTML view, API endpoint and download goes through these functions, so a
user of one site never sees another site's patients anywhere: an object of
another site is simply not found (404), never forbidden (403).
"""

from __future__ import annotations

from django.db.models import Count, Prefetch, QuerySet
from django.shortcuts import get_object_or_404

from cases.models import AuditEvent, Image, Patient, Review, Site, Study, User


def sites_for_user(*, user: User) -> QuerySet[Site]:
    if not user.is_authenticated or not user.is_active:
        return Site.objects.none()
    if user.is_staff:
        return Site.objects.all()
    return user.sites.all()


def _site_ids(user: User) -> list[int] | None:
    """``None`` means every site (admins)."""
    if user.is_authenticated and user.is_active and user.is_staff:
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


def reviews_for_study(*, study: Study) -> QuerySet[Review]:
    return study.reviews.select_related("radiologist", "model_version").order_by("version")


def audit_events_for_user(*, user: User) -> QuerySet[AuditEvent]:
    if not (user.is_authenticated and user.is_staff):
        return AuditEvent.objects.none()
    return AuditEvent.objects.select_related("user", "site")


def user_can_upload(*, user: User) -> bool:
    return user.is_authenticated and (user.is_staff or user.is_technician)


def user_can_review(*, user: User) -> bool:
    """Only radiologists sign; admins too when they are also radiologists."""
    return user.is_authenticated and user.is_radiologist


def user_home_url_name(*, user: User) -> str:
    if user.is_radiologist:
        return "worklist"
    if user.is_technician:
        return "upload"
    if user.is_staff:
        return "dashboard"
    return "studies"


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
