from __future__ import annotations

from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django_otp.plugins.otp_static.models import StaticDevice
from django_otp.plugins.otp_totp.models import TOTPDevice

from cases import services
from cases.ai_modes import site_ai_mode_set
from cases.api.tokens import token_revoke, tokens_revoke_all
from cases.audit import audit_record
from cases.audit_export import audit_export_action
from cases.identifiers import IdentifierValidator
from cases.models import (
    ApiToken,
    AuditEvent,
    DicomPeer,
    DriftAlarm,
    Image,
    OutboxItem,
    Patient,
    ResultDestination,
    Review,
    Site,
    Study,
    User,
)
from cases.otp.admin_actions import second_factor_reset_action
from cases.retention import legal_hold_recorded
from inference.admin_actions import run_again_with_version

# A hold set, lifted or re-worded is its own audit event, beside the admin change.
_LEGAL_HOLD_FIELDS = {"legal_hold", "legal_hold_reason"}


class AuditedAdmin(admin.ModelAdmin):
    """Every admin change leaves an audit event (ids and field names only)."""

    def save_model(self, request: HttpRequest, obj, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        audit_record(
            action="admin_change" if change else "admin_add",
            user=request.user,
            obj=obj,
            site=obj if isinstance(obj, Site) else getattr(obj, "site", None),
            request=request,
            fields=list(form.changed_data),
        )

    def delete_model(self, request: HttpRequest, obj) -> None:
        audit_record(action="admin_delete", user=request.user, obj=obj, request=request)
        super().delete_model(request, obj)

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        for obj in queryset:
            self.delete_model(request, obj)


class RecordAdmin(admin.ModelAdmin):
    """A record of what happened (a signature, an audit event, what left Pneumo, an alarm): never added or deleted
    by hand, so neither is the bulk delete action offered; changed only where ``changeable`` (its own actions)."""

    changeable = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return self.changeable and super().has_change_permission(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Site)
class SiteAdmin(AuditedAdmin):
    list_display = ("code", "name", "ai_mode", "ai_outside_validated_use", "retention_days", "created_at")
    search_fields = ("code", "name")
    list_filter = ("ai_mode", "ai_outside_validated_use")
    # Paused and resumed only from the operations console, which queues what waited (cases.operations).
    readonly_fields = ("ai_paused", "ai_paused_at", "ai_paused_by")

    def save_model(self, request: HttpRequest, obj: Site, form, change: bool) -> None:
        # A changed AI mode goes through its service (audited; the site's unsigned studies follow at once).
        mode = obj.ai_mode
        if change and "ai_mode" in form.changed_data:
            obj.ai_mode = form.initial["ai_mode"]
        super().save_model(request, obj, form, change)
        if obj.ai_mode != mode:
            site_ai_mode_set(site=obj, mode=mode, user=request.user, request=request)


class ApiTokenInline(admin.TabularInline):
    """A user's live API tokens, read-only; revoke them from the API tokens page."""

    model = ApiToken
    extra = 0
    can_delete = False
    fields = ("prefix", "created_at", "expires_at", "last_used_at")
    readonly_fields = fields
    show_change_link = True

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(ApiToken)
class ApiTokenAdmin(admin.ModelAdmin):
    """Admins list and revoke API tokens (only a prefix is shown: the key itself is never stored)."""

    list_display = ("prefix", "user", "created_at", "expires_at", "last_used_at")
    list_filter = ("user",)
    search_fields = ("prefix", "user__username")
    list_select_related = ("user",)
    fields = ("user", "prefix", "created_at", "expires_at", "last_used_at")
    readonly_fields = fields
    actions = ["revoke"]

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)  # "revoke" says what it does, and audits it
        return actions

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return False

    def has_view_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return request.user.is_staff

    def has_delete_permission(self, request: HttpRequest, obj: ApiToken | None = None) -> bool:
        return request.user.is_staff

    def delete_model(self, request: HttpRequest, obj: ApiToken) -> None:
        token_revoke(token=obj, request=request, by=request.user, reason="revoked_by_admin")

    @admin.action(description="Revoke the selected tokens")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ApiToken]) -> None:
        tokens = list(queryset.select_related("user"))
        for token in tokens:
            token_revoke(token=token, request=request, by=request.user, reason="revoked_by_admin")
        self.message_user(request, f"Revoked {len(tokens)} token(s).")


# django-otp's own device admins would delete devices unaudited: the audited reset below replaces them.
admin.site.unregister(TOTPDevice)
admin.site.unregister(StaticDevice)


@admin.register(User)
class UserAdmin(AuditedAdmin, DjangoUserAdmin):
    list_display = ("username", "display_name", "role", "site_codes", "is_staff", "is_active", "last_login")
    actions = [second_factor_reset_action]
    list_filter = ("groups", "sites", "is_staff", "is_active")
    search_fields = ("username", "display_name", "first_name", "last_name", "email")
    filter_horizontal = ("groups", "user_permissions", "sites")
    fieldsets = (
        *DjangoUserAdmin.fieldsets,
        ("Pneumo role and sites", {"fields": ("display_name", "sites")}),
    )
    add_fieldsets = (
        *DjangoUserAdmin.add_fieldsets,
        ("Pneumo role and sites", {"fields": ("display_name", "groups", "sites", "is_staff")}),
    )

    def get_queryset(self, request: HttpRequest):
        return super().get_queryset(request).prefetch_related("groups", "sites")

    def get_inlines(self, request: HttpRequest, obj: User | None = None) -> list:
        return [ApiTokenInline] if obj is not None else []

    def save_model(self, request: HttpRequest, obj: User, form, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if change and "is_active" in form.changed_data and not obj.is_active:
            tokens_revoke_all(user=obj, reason="deactivated", by=request.user, request=request)

    def user_change_password(self, request: HttpRequest, id: str, form_url: str = "") -> HttpResponse:
        response = super().user_change_password(request, id, form_url)
        if request.method == "POST" and response.status_code == 302:
            # Which account, by whom; never the password. Its API tokens end with it.
            user = User.objects.get(pk=id)
            audit_record(action="password_change", user=request.user, obj=user, request=request)
            tokens_revoke_all(user=user, reason="password_changed", by=request.user, request=request)
        return response

    @admin.display(description="Role")
    def role(self, obj: User) -> str:
        roles = [g.name for g in obj.groups.all()] + (["Admin"] if obj.is_staff else [])
        return ", ".join(roles) or "-"

    @admin.display(description="Sites")
    def site_codes(self, obj: User) -> str:
        return ", ".join(s.code for s in obj.sites.all()) or "-"


class PatientAdminForm(forms.ModelForm):
    class Meta:
        model = Patient
        fields = [
            "site",
            "patient_id",
            "name",
            "birth_date",
            "sex",
            "demographics_conflict",
            "legal_hold",
            "legal_hold_reason",
        ]

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # The same rule as every upload door: an admin cannot type an ID that passes for another patient's.
        for name, label in (("patient_id", "patient ID"), ("name", "patient name")):
            self.fields[name].validators.append(IdentifierValidator(label))


@admin.register(Patient)
class PatientAdmin(AuditedAdmin):
    form = PatientAdminForm
    list_display = ("patient_id", "name", "birth_date", "sex", "site", "has_conflict", "legal_hold", "created_at")
    list_filter = ("site", "sex", "legal_hold")
    search_fields = ("patient_id", "name")
    list_select_related = ("site",)

    def save_model(self, request: HttpRequest, obj: Patient, form, change: bool) -> None:
        if not change:
            super().save_model(request, obj, form, change)
            if obj.legal_hold:
                legal_hold_recorded(obj=obj, user=request.user, request=request)
            return None
        if "demographics_conflict" not in form.changed_data:
            obj.demographics_conflict = ""  # the admin reviewed the demographics: resolved
        services.patient_correct(
            patient=obj, changed_fields=list(form.changed_data), user=request.user, request=request
        )
        if _LEGAL_HOLD_FIELDS & set(form.changed_data):
            legal_hold_recorded(obj=obj, user=request.user, request=request)
        return None

    @admin.display(boolean=True, description="Conflict")
    def has_conflict(self, obj: Patient) -> bool:
        return bool(obj.demographics_conflict)


class ImageInline(admin.TabularInline):
    model = Image
    extra = 0
    can_delete = False
    fields = ("sop_instance_uid", "modality", "view_position", "body_part", "ai_eligibility", "file_state")
    readonly_fields = fields
    show_change_link = True


class StudyAdminForm(forms.ModelForm):
    class Meta:
        model = Study
        fields = [
            "patient",
            "site",
            "study_instance_uid",
            "accession_number",
            "study_date",
            "description",
            "priority",
            "legal_hold",
            "legal_hold_reason",
        ]

    def clean(self) -> dict:
        data = super().clean()
        patient = data.get("patient")
        if patient is not None and self.instance.pk and patient.site_id != self.instance.site_id:
            raise forms.ValidationError("A study can only move to a patient of its own site.")
        return data


@admin.register(Study)
class StudyAdmin(admin.ModelAdmin):
    """Admins correct a study's patient or priority and delete studies uploaded in error."""

    # Each action is written beside its service (inference.admin_actions, cases.export).
    actions = [run_again_with_version, "export_deidentified"]

    @admin.action(description="Export de-identified (a zip of DICOM files, manifest.csv, excluded.csv)")
    def export_deidentified(self, request: HttpRequest, queryset):
        # Imported when an admin exports: pydicom costs every process that loads the admin (the worker too) 0.4 s.
        from cases.export import export_deidentified_action

        return export_deidentified_action(self, request, queryset)

    list_display = ("pk", "patient", "site", "priority", "status", "ai_probability", "ai_flagged", "received_at")
    list_filter = ("status", "priority", "site", "ai_flagged", "legal_hold")
    search_fields = ("patient__patient_id", "patient__name", "accession_number", "study_instance_uid")
    list_select_related = ("patient", "site")
    readonly_fields = (
        "status",
        "ai_probability",
        "ai_flagged",
        "claimed_by",
        "claimed_at",
        "received_at",
        "ai_completed_at",
        "reported_at",
        "uploaded_by",
    )
    raw_id_fields = ("patient",)
    inlines = [ImageInline]
    date_hierarchy = "received_at"
    form = StudyAdminForm

    def save_model(self, request: HttpRequest, obj: Study, form, change: bool) -> None:
        if change and "patient" in form.changed_data:
            services.study_move(study=obj, patient=obj.patient, user=request.user, request=request)
        super().save_model(request, obj, form, change)
        audit_record(action="admin_change", user=request.user, obj=obj, request=request, fields=list(form.changed_data))
        if _LEGAL_HOLD_FIELDS & set(form.changed_data):
            legal_hold_recorded(obj=obj, user=request.user, request=request)

    def delete_model(self, request: HttpRequest, obj: Study) -> None:
        services.study_delete(study=obj, user=request.user, request=request)

    def delete_queryset(self, request: HttpRequest, queryset) -> None:
        for study in queryset:
            services.study_delete(study=study, user=request.user, request=request)


@admin.register(Image)
class ImageAdmin(admin.ModelAdmin):
    list_display = (
        "pk",
        "study",
        "modality",
        "view_position",
        "body_part",
        "ai_eligibility",
        "file_state",
        "created_at",
    )
    list_filter = ("ai_eligibility", "modality", "file_state", "site")
    search_fields = ("sop_instance_uid", "series_instance_uid", "sha256")
    list_select_related = ("study",)
    readonly_fields = [f.name for f in Image._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Review)
class ReviewAdmin(RecordAdmin):
    """Signed reviews are frozen: amendments are made from the study page."""

    list_display = ("study", "version", "radiologist", "finding", "ai_label", "agreement", "reason", "signed_at")
    list_filter = ("finding", "agreement", "reason", "model_version")
    search_fields = ("study__patient__patient_id",)
    list_select_related = ("study", "radiologist")


@admin.register(AuditEvent)
class AuditEventAdmin(RecordAdmin):
    actions = [audit_export_action]
    list_display = ("created_at", "username", "action", "object_type", "object_id", "site", "ip_address")
    list_filter = ("action", "site", "object_type")
    search_fields = ("username", "object_id", "action")
    date_hierarchy = "created_at"


# --- The DICOM network -------------------------------------------------------------------------


@admin.register(DicomPeer)
class DicomPeerAdmin(AuditedAdmin):
    """Who may send images to the DICOM listener; read at each association, so a change needs no restart."""

    list_display = ("ae_title", "site", "description", "created_at")
    list_filter = ("site",)
    search_fields = ("ae_title", "description")


@admin.register(ResultDestination)
class ResultDestinationAdmin(AuditedAdmin):
    list_display = (
        "ae_title",
        "host",
        "port",
        "active",
        "send_ai_sr",
        "send_secondary_capture",
        "send_report_sr",
        "all_sites",
        "from_settings",
    )
    list_filter = ("active", "all_sites", "from_settings")
    filter_horizontal = ("sites",)
    readonly_fields = ("from_settings", "created_at")


@admin.register(OutboxItem)
class OutboxItemAdmin(RecordAdmin):
    """Each result object per destination: pending, sent, or failed with the reason; resend from here."""

    changeable = True  # its fields are read-only; "resend" is its action
    list_display = ("pk", "kind", "state", "destination", "study", "attempts", "next_attempt_at", "sent_at", "error")
    list_filter = ("state", "kind", "destination")
    list_select_related = ("destination", "study")
    search_fields = ("sop_instance_uid",)
    readonly_fields = [f.name for f in OutboxItem._meta.concrete_fields]
    actions = ["resend"]

    @admin.display(description="last error")
    def error(self, obj: OutboxItem) -> str:
        return obj.last_error[:120]

    @admin.action(description="Resend the selected objects")
    def resend(self, request: HttpRequest, queryset: QuerySet[OutboxItem]) -> None:
        from cases.dicom.outbox import outbox_resend

        count = outbox_resend(items=queryset, user=request.user, request=request)
        self.message_user(request, f"{count} object(s) queued to be sent again.")


@admin.register(DriftAlarm)
class DriftAlarmAdmin(RecordAdmin):
    """Drift alarms (cases.drift): opened by the daily check, acknowledged here (audited), never added by hand."""

    changeable = True  # its fields are read-only; "acknowledge" is its action
    list_display = ("pk", "kind", "site", "model_version", "day", "opened_at", "acknowledged_by", "acknowledged_at")
    list_filter = ("kind", ("acknowledged_at", admin.EmptyFieldListFilter), "site", "model_version")
    list_select_related = ("site", "model_version", "acknowledged_by")
    readonly_fields = [f.name for f in DriftAlarm._meta.concrete_fields]
    actions = ["acknowledge"]

    @admin.action(description="Acknowledge the selected alarms")
    def acknowledge(self, request: HttpRequest, queryset: QuerySet[DriftAlarm]) -> None:
        from cases.drift import drift_alarm_acknowledge

        done = sum(
            drift_alarm_acknowledge(alarm_id=pk, user=request.user, request=request)
            for pk in queryset.values_list("pk", flat=True)
        )
        self.message_user(request, f"Acknowledged {done} alarm(s).")
