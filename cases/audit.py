"""Writing the audit trail: one call per action, from services and views alike."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest

from cases.models import AuditEvent, Site, User


def client_ip(request: HttpRequest | None) -> str | None:
    if request is None:
        return None
    return request.META.get("REMOTE_ADDR") or None


def audit_record(
    *,
    action: str,
    user: User | None = None,
    obj: Any = None,
    site: Site | None = None,
    request: HttpRequest | None = None,
    username: str = "",
    **detail: Any,
) -> AuditEvent:
    """Append one event. ``detail`` must carry ids and codes only, never patient data."""
    if user is not None and not user.is_authenticated:
        user = None
    return AuditEvent.objects.create(
        user=user,
        username=username or (user.username if user else ""),
        action=action,
        object_type=type(obj).__name__ if obj is not None else "",
        object_id=str(getattr(obj, "pk", "") or "") if obj is not None else "",
        site=site if site is not None else getattr(obj, "site", None),
        ip_address=client_ip(request),
        detail=detail,
    )
