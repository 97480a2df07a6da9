"""Admin actions on studies that belong to the AI: "Run again with version..." (an edge of ``inference.services``)."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db import transaction
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template.response import TemplateResponse

from inference.models import ModelVersion
from inference.registry import model_version_servable
from inference.services import predictions_request


class RunAgainForm(forms.Form):
    model_version = forms.ModelChoiceField(
        queryset=ModelVersion.objects.filter(parity_passed=True).order_by("population", "name"),
        label="Model version",
        help_text="Every eligible image of the chosen studies runs again with this version; "
        "its result becomes the current one when it is ready.",
    )


@admin.action(description="Run again with version...")
def run_again_with_version(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet):
    """First the choice of a version (an intermediate page), then the re-run of each study (audited)."""
    if "apply" not in request.POST:
        form = RunAgainForm()
    else:
        form = RunAgainForm(request.POST)
        if form.is_valid():
            version = form.cleaned_data["model_version"]
            problem = model_version_servable(version)
            if problem:
                modeladmin.message_user(request, problem, messages.ERROR)
                return None
            count = 0
            for study in queryset.select_related("site"):
                with transaction.atomic():
                    count += len(predictions_request(study=study, version=version, user=request.user))
            modeladmin.message_user(request, f"{count} image(s) queued to run again with {version.name}.")
            return None
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": "Run again with version",
        "form": form,
        "queryset": queryset,
        "action": "run_again_with_version",
        "opts": modeladmin.model._meta,
        "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
    }
    return TemplateResponse(request, "admin/inference/run_again_with_version.html", context)
