from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from inference.models import ModelVersion, Prediction
from inference.registry import ModelFileMismatch, ModelNotReady, model_version_activate, model_version_prepare


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("name", "version", "is_active", "threshold", "parity_passed", "parity_max_diff", "created_at")
    list_filter = ("is_active", "parity_passed")
    search_fields = ("name", "sha256")
    readonly_fields = (
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
    actions = ["prepare", "activate"]

    @admin.action(description="Convert to LiteRT and run the parity gate")
    def prepare(self, request: HttpRequest, queryset: QuerySet[ModelVersion]) -> None:
        for version in queryset:
            try:
                model_version_prepare(version)
            except ModelFileMismatch as exc:
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
            model_version_activate(version=queryset.get(), user=request.user)
        except ModelNotReady as exc:
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
        "attempts",
        "outside_validated_use",
        "inference_ms",
        "worker_host",
        "finished_at",
    )
    list_filter = ("status", "model_version", "label", "outside_validated_use")
    search_fields = ("image__sop_instance_uid", "input_sha256", "worker_host")
    list_select_related = ("image", "model_version")
    readonly_fields = [f.name for f in Prediction._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Prediction | None = None) -> bool:
        return False
