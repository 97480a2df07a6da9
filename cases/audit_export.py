"""The audit trail as CSV, for admins: a download of filtered events and an admin action on selected ones.

Wired by ``pneumo/urls.py`` (``audit/export.csv``) and ``AuditEventAdmin.actions``.
A cell that a spreadsheet would run as a formula (starting with ``=``, ``+``,
``-``, ``@``, a tab or a carriage return) is prefixed with an apostrophe: the
username of a failed login is typed by anyone. Every export is itself audited.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator
from datetime import UTC

from django import forms
from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.utils import timezone
from django.views.decorators.http import require_GET

from cases import selectors
from cases.audit import audit_record
from cases.models import AuditEvent

COLUMNS = ("created_at", "username", "user_id", "action", "object_type", "object_id", "site", "ip_address", "detail")
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
_CHUNK = 2000


class AuditExportFilters(forms.Form):
    action = forms.CharField(required=False, max_length=48)
    user = forms.CharField(required=False, max_length=150, help_text="Username or user id")
    site = forms.CharField(required=False, max_length=32, help_text="Site code or id")
    date_from = forms.DateField(required=False, help_text="On or after this day (YYYY-MM-DD)")
    date_to = forms.DateField(required=False, help_text="On or before this day (YYYY-MM-DD)")


def _safe_cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_START) else text


def _cells(event: AuditEvent) -> list[str]:
    values = (
        event.created_at.astimezone(UTC).isoformat(),
        event.username,
        event.user_id,
        event.action,
        event.object_type,
        event.object_id,
        event.site.code if event.site_id else "",
        event.ip_address,
        json.dumps(event.detail, sort_keys=True, default=str),
    )
    return [_safe_cell(value) for value in values]


class _Echo:
    """A file-like object whose write returns the line, so csv.writer can feed a stream."""

    def write(self, value: str) -> str:
        return value


def _csv_lines(events: Iterable[AuditEvent]) -> Iterator[str]:
    writer = csv.writer(_Echo())
    yield writer.writerow(COLUMNS)
    for event in events:
        yield writer.writerow(_cells(event))


def _rows(queryset: QuerySet[AuditEvent]) -> Iterator[AuditEvent]:
    return queryset.select_related("site").order_by("created_at", "pk").iterator(chunk_size=_CHUNK)


def audit_events_csv(queryset: QuerySet[AuditEvent]) -> str:
    """The events as one CSV text, oldest first."""
    return "".join(_csv_lines(_rows(queryset)))


def _download(queryset: QuerySet[AuditEvent], request: HttpRequest, filters: dict) -> StreamingHttpResponse:
    audit_record(
        action="audit_export",
        user=request.user,
        request=request,
        count=queryset.count(),
        filters={key: str(value) for key, value in filters.items() if value},
    )
    response = StreamingHttpResponse(_csv_lines(_rows(queryset)), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="audit-{timezone.now():%Y%m%d-%H%M%S}.csv"'
    response["Cache-Control"] = "private, no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response


@login_required
@require_GET
def audit_export_csv(request: HttpRequest) -> HttpResponse:
    """``GET ?action=&user=&site=&date_from=&date_to=``: the matching events as a CSV download (admins)."""
    if not selectors.user_is_admin(user=request.user):
        raise PermissionDenied("Only admins export the audit trail.")
    form = AuditExportFilters(request.GET)
    if not form.is_valid():
        return JsonResponse({"detail": "Invalid filters", "errors": form.errors}, status=400)
    events = selectors.audit_events_filtered(user=request.user, filters=form.cleaned_data)
    return _download(events, request, form.cleaned_data)


@admin.action(description="Export the selected events as CSV")
def audit_export_action(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[AuditEvent]):
    """For ``AuditEventAdmin.actions``: the changelist's selection (its filters applied) as a CSV download."""
    return _download(queryset, request, {"selected": queryset.count()})
