from __future__ import annotations

from django.contrib import admin

from inference.models import ModelVersion, Prediction


@admin.register(ModelVersion)
class ModelVersionAdmin(admin.ModelAdmin):
    list_display = ("name", "version", "is_active", "threshold", "parity_passed", "parity_max_diff", "created_at")
    list_filter = ("is_active", "parity_passed")
    search_fields = ("name", "sha256")
    readonly_fields = (
        "converted_path",
        "converted_sha256",
        "head_path",
        "head_sha256",
        "parity_max_diff",
        "parity_passed",
        "converted_at",
        "created_at",
    )


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

    def has_add_permission(self, request) -> bool:
        return False
