"""Model versions and predictions in Django admin: an edge of ``inference.registry``.

Every write (add, change, convert, activate, delete) calls the registry, which
holds the freeze rule and writes the audit events; the form shows the frozen
fields read-only once a version is active or has made predictions.
"""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from cases.admin import RecordAdmin
from inference import registry
from inference.models import ModelVersion, Prediction, SiteThreshold

# Written by the registry alone (conversion, parity gate, activation), never typed in.
MANAGED_FIELDS = (
    "is_active",
    "converted_path",
    "converted_sha256",
    "head_path",
    "head_sha256",
    "parity_max_diff",
    "parity_passed",
    "converted_at",
    "created_at",
)


class ModelVersionForm(forms.ModelForm):
    class Meta:
        model = ModelVersion
        fields = registry.EDITABLE_FIELDS


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    form = ModelVersionForm
    list_display = (
        "name",
        "version",
        "population",
        "is_active",
        "threshold",
        "parity_passed",
        "parity_max_diff",
        "created_at",
    )
    list_filter = ("population", "is_active", "parity_passed")
    search_fields = ("name", "sha256")
    actions = ["prepare", "activate"]

    def get_readonly_fields(self, request: HttpRequest, obj: ModelVersion | None = None) -> tuple[str, ...]:
        return MANAGED_FIELDS + registry.model_version_frozen_fields(obj)

    def has_delete_permission(self, request: HttpRequest, obj: ModelVersion | None = None) -> bool:
        allowed = super().has_delete_permission(request, obj)
        return allowed and not (obj is not None and registry.model_version_in_use(obj))

    def save_model(self, request: HttpRequest, obj: ModelVersion, form: forms.ModelForm, change: bool) -> None:
        fields = {name: form.cleaned_data[name] for name in form.changed_data}
        if change:
            saved = registry.model_version_update(version=obj, user=request.user, fields=fields, request=request)
        else:
            fields = {name: form.cleaned_data[name] for name in form.fields}
            saved = registry.model_version_create(user=request.user, fields=fields, request=request)
        obj.pk = saved.pk
        obj.refresh_from_db()

    def delete_model(self, request: HttpRequest, obj: ModelVersion) -> None:
        registry.model_version_delete(version=obj, user=request.user, request=request)

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        for version in queryset:
            try:
                registry.model_version_delete(version=version, user=request.user, request=request)
            except registry.ModelVersionLocked as exc:
                self.message_user(request, str(exc), messages.ERROR)

    @admin.action(description="Convert to LiteRT and run the parity gate")
    def prepare(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        for version in queryset:
            try:
                registry.model_version_prepare(version, user=request.user, request=request)
            except registry.ModelFileMismatch as exc:
                self.message_user(request, str(exc), messages.ERROR)
                continue
            level = messages.SUCCESS if version.parity_passed else messages.ERROR
            self.message_user(request, f"{version}: parity max diff {version.parity_max_diff:.2e}", level)

    @admin.action(description="Make the active model (new predictions use it)")
    def activate(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        if queryset.count() != 1:
            self.message_user(request, "Choose exactly one model version.", messages.ERROR)
            return
        try:
            registry.model_version_activate(version=queryset.get(), user=request.user, request=request)
        except registry.ModelNotReady as exc:
            self.message_user(request, str(exc), messages.ERROR)
            return
        self.message_user(request, "Activated. Earlier predictions keep pointing at the model that made them.")


@admin.register(Prediction)
class PredictionAdmin(admin.ModelAdmin):
    list_display = (
        "pk",
        "image",
        "model_version",
        "status",
        "probability",
        "label",
        "domain",
        "attempts",
        "outside_validated_use",
        "inference_ms",
        "worker_host",
        "finished_at",
    )
    # The domain beside the probability: a score outside the domain is muted everywhere it is shown.
    list_filter = ("status", "model_version", "label", "domain", "outside_validated_use")
    search_fields = ("image__sop_instance_uid", "input_sha256", "worker_host")
    list_select_related = ("image", "model_version")
    readonly_fields = [f.name for f in Prediction._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Prediction | None = None) -> bool:
        return False


@admin.register(SiteThreshold)
class SiteThresholdAdmin(RecordAdmin):
    """Read-only: a site threshold is set from the validation report page or the API, with its evidence checked."""

    list_display = ("site", "model_version", "threshold", "evidence_sufficient", "created_by", "created_at")
    list_filter = ("site", "model_version", "evidence_sufficient")
    list_select_related = ("site", "model_version", "created_by")
    readonly_fields = [f.name for f in SiteThreshold._meta.fields]
