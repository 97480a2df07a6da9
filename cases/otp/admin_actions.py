"""The User admin's "Reset second factor" action, beside its service (as inference.admin_actions)."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from cases.models import User
from cases.otp.services import second_factor_reset


@admin.action(description="Reset the second factor (the users enrol again at their next login)")
def second_factor_reset_action(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[User]) -> None:
    # Another admin's decision: one's own reset would let a stolen password replace the phone.
    others = [user for user in queryset if user.pk != request.user.pk]
    for user in others:
        second_factor_reset(user=user, by=request.user, request=request)
    if len(others) < queryset.count():
        modeladmin.message_user(request, "Your own second factor needs another admin to reset it.", messages.WARNING)
    modeladmin.message_user(request, f"Second factor reset for {len(others)} user(s).")
