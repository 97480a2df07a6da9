"""Patients, studies, images, reviews and the audit trail.

Behaviour lives in ``services.py`` (writes) and ``selectors.py`` (reads); the
models only hold data, constraints and the study state machine's vocabulary.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.models import AbstractUser
from django.db import models

from cases.states import StudyStatus
from inference.models import AiDomain, AiLabel, AiMode


class Site(models.Model):
    name = models.CharField(max_length=200)
    code = models.SlugField(max_length=32, unique=True, help_text="Short unique code, e.g. DEMO")
    ai_outside_validated_use = models.BooleanField(
        default=True,
        help_text="Run the AI on images outside the model's validated use (adults, other views, "
        "missing tags). Their results always carry the flag and its reason.",
    )
    alert_webhook_url = models.URLField(
        blank=True, help_text="Optional: POSTed a JSON notice (no patient data) when a stat or urgent study is flagged."
    )
    retention_days = models.PositiveIntegerField(
        null=True,
        blank=True,
        help_text="Delete the image files of a reported study this many days after its latest signature "
        "(the study, its AI results, reports and audit trail stay). Empty: keep them forever.",
    )
    ai_mode = models.CharField(
        "AI mode",
        max_length=8,
        choices=AiMode.choices,
        default=AiMode.LIVE,
        help_text="Changed with the admin action or PATCH /api/v1/sites/{code}/ (audited, applied at once)",
    )
    # Paused, the AI's predictions are made but not queued (cases.operations); reading goes on.
    ai_paused = models.BooleanField(default=False, help_text="AI paused by an admin: nothing is queued until resumed")
    ai_paused_at = models.DateTimeField(null=True, blank=True)
    ai_paused_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["code"]

    def __str__(self) -> str:
        return f"{self.name} ({self.code})"


class User(AbstractUser):
    """Roles are the groups ``Technician`` and ``Radiologist``; admins are staff."""

    sites = models.ManyToManyField(Site, blank=True, related_name="users")
    display_name = models.CharField(max_length=150, blank=True, help_text='Shown on reports, e.g. "Dr A. Smith"')

    @property
    def is_technician(self) -> bool:
        return self._in_group("Technician")

    @property
    def is_radiologist(self) -> bool:
        return self._in_group("Radiologist")

    def _in_group(self, name: str) -> bool:
        cache = self.__dict__.setdefault("_group_names", None)
        if cache is None:
            cache = set(self.groups.values_list("name", flat=True))
            self.__dict__["_group_names"] = cache
        return name in cache

    @property
    def signature_name(self) -> str:
        return self.display_name or self.get_full_name() or self.username


class Sex(models.TextChoices):
    FEMALE = "F", "Female"
    MALE = "M", "Male"
    OTHER = "O", "Other"
    UNKNOWN = "", "Unknown"


class Patient(models.Model):
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="patients")
    patient_id = models.CharField("patient ID / MRN", max_length=64)
    name = models.CharField(max_length=200, blank=True)
    birth_date = models.DateField(null=True, blank=True)
    sex = models.CharField(max_length=1, choices=Sex.choices, blank=True)
    demographics_conflict = models.TextField(
        blank=True, help_text="Set when an upload disagreed with these demographics; an admin resolves it."
    )
    legal_hold = models.BooleanField(
        default=False, help_text="Keeps every image file of this patient whatever the site's retention policy"
    )
    legal_hold_reason = models.CharField(max_length=200, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["site", "patient_id"]
        constraints = [models.UniqueConstraint(fields=["site", "patient_id"], name="unique_patient_id_per_site")]

    def __str__(self) -> str:
        return f"{self.patient_id} {self.name}".strip()


class Priority(models.TextChoices):
    STAT = "stat", "Stat"
    URGENT = "urgent", "Urgent"
    ROUTINE = "routine", "Routine"


class Study(models.Model):
    # The site is the patient's, copied here so that UID uniqueness and every
    # access filter are one indexed column away.
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="studies")
    patient = models.ForeignKey(Patient, on_delete=models.PROTECT, related_name="studies")
    study_instance_uid = models.CharField("StudyInstanceUID", max_length=64)
    accession_number = models.CharField(max_length=64, blank=True)
    study_date = models.DateField(null=True, blank=True)
    description = models.CharField(max_length=200, blank=True)
    priority = models.CharField(max_length=8, choices=Priority.choices, default=Priority.ROUTINE)
    # Computed by the database so that the worklist orders lanes with an index.
    priority_rank = models.GeneratedField(
        expression=models.Case(
            models.When(priority="stat", then=models.Value(0)),
            models.When(priority="urgent", then=models.Value(1)),
            default=models.Value(2),
        ),
        output_field=models.PositiveSmallIntegerField(),
        db_persist=True,
    )
    status = models.CharField(max_length=16, choices=StudyStatus.choices, default=StudyStatus.RECEIVED)
    status_reason = models.TextField(blank=True)
    legal_hold = models.BooleanField(
        default=False, help_text="Keeps every image file of this study whatever the site's retention policy"
    )
    legal_hold_reason = models.CharField(max_length=200, blank=True)
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="uploaded_studies"
    )
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="claimed_studies"
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    claim_seen_at = models.DateTimeField(null=True, blank=True)
    # Denormalised from the active model's prediction so that the worklist can
    # sort 10,000 studies in SQL with a fixed number of queries.
    ai_probability = models.FloatField(null=True, blank=True)
    ai_flagged = models.BooleanField(default=False)
    # Both from inference.display's rule: a muted result never sets ai_probability or ai_flagged above.
    ai_muted_probability = models.FloatField(
        null=True, blank=True, help_text="The highest muted result (outside the domain or validated use): never counted"
    )
    ai_domain = models.CharField(
        max_length=16, choices=AiDomain.choices, null=True, blank=True, help_text="The domain of the result shown"
    )
    received_at = models.DateTimeField(auto_now_add=True)
    ai_completed_at = models.DateTimeField(null=True, blank=True)
    reported_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-received_at"]
        verbose_name_plural = "studies"
        constraints = [
            models.UniqueConstraint(fields=["site", "study_instance_uid"], name="unique_study_uid_per_site"),
        ]
        indexes = [
            models.Index(
                fields=["site", "status", "priority_rank", "-ai_flagged", "-ai_probability", "received_at"],
                name="study_worklist_idx",
            ),
            models.Index(fields=["status", "received_at"], name="study_status_idx"),
        ]

    def __str__(self) -> str:
        return f"Study {self.pk} ({self.get_priority_display()}, {self.get_status_display()})"


class Eligibility(models.TextChoices):
    ELIGIBLE = "eligible", "Eligible"
    OUTSIDE_VALIDATED_USE = "outside_validated_use", "Outside validated use"
    NOT_ELIGIBLE = "not_eligible", "Not eligible"


class AgeSource(models.TextChoices):
    DICOM_AGE = "dicom_age", "DICOM PatientAge"
    DICOM_BIRTH_DATE = "dicom_birth_date", "DICOM birth and study dates"
    UPLOAD_FORM = "upload_form", "entered at upload"
    UNKNOWN = "unknown", "unknown"


class FileState(models.TextChoices):
    OK = "ok", "Verified"
    CHANGED = "changed", "Changed on disk"
    MISSING = "missing", "Missing"
    PURGED = "purged", "Deleted by retention policy"


class Image(models.Model):
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="images")
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="images")
    sop_instance_uid = models.CharField("SOPInstanceUID", max_length=64)
    series_instance_uid = models.CharField("SeriesInstanceUID", max_length=64, blank=True)
    sop_class_uid = models.CharField(max_length=64, blank=True)
    kind = models.CharField(max_length=8, help_text="dicom, png or jpeg")
    modality = models.CharField(max_length=16, blank=True)
    view_position = models.CharField(max_length=16, blank=True)
    body_part = models.CharField(max_length=64, blank=True)
    # The X-ray unit, from DICOM (blank for PNG/JPEG): the validation report splits its figures by device.
    manufacturer = models.CharField(max_length=64, blank=True)
    manufacturer_model_name = models.CharField(max_length=64, blank=True)
    file = models.FileField(upload_to="studies/%Y/%m/", max_length=255)
    original_filename = models.CharField(max_length=255, blank=True)
    sha256 = models.CharField(max_length=64)
    size_bytes = models.BigIntegerField(default=0)
    rows = models.PositiveIntegerField(default=0)
    columns = models.PositiveIntegerField(default=0)
    bits_stored = models.PositiveSmallIntegerField(default=8)
    number_of_frames = models.PositiveIntegerField(default=1)
    photometric_interpretation = models.CharField(max_length=32, blank=True)
    transfer_syntax = models.CharField(max_length=64, blank=True)
    pixel_spacing = models.CharField(max_length=64, blank=True)
    window_center = models.FloatField(null=True, blank=True)
    window_width = models.FloatField(null=True, blank=True)
    patient_age_years = models.FloatField(null=True, blank=True)
    patient_age_source = models.CharField(max_length=16, choices=AgeSource.choices, default=AgeSource.UNKNOWN)
    # Why the age is unknown ("PatientAge '12X' is not a valid age"), shown beside "age unknown".
    patient_age_reason = models.CharField(max_length=200, blank=True)
    ai_eligibility = models.CharField(max_length=24, choices=Eligibility.choices)
    ai_eligibility_reason = models.TextField(blank=True)
    file_state = models.CharField(max_length=8, choices=FileState.choices, default=FileState.OK)
    purged_at = models.DateTimeField(null=True, blank=True, editable=False, help_text="When retention deleted the file")
    # The 8-bit image already reduced to the model's input grid at ingest (a
    # ~15 kB PNG), so the worker need not decode the original again; workers
    # fall back to the original when the preprocessing version differs.
    model_input = models.BinaryField(null=True, blank=True, editable=False)
    model_input_version = models.CharField(max_length=64, blank=True, editable=False)
    uploaded_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    # Set for an image received by the DICOM listener: who sent it (results go back as DICOM only for these).
    source_ae_title = models.CharField("calling AE title", max_length=16, blank=True)
    source_address = models.CharField("peer address", max_length=64, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["study", "created_at", "pk"]
        constraints = [
            models.UniqueConstraint(fields=["site", "sop_instance_uid"], name="unique_sop_uid_per_site"),
        ]

    def __str__(self) -> str:
        return f"Image {self.pk} of study {self.study_id}"


class Finding(models.TextChoices):
    PNEUMONIA = "pneumonia", "Pneumonia"
    NO_PNEUMONIA = "no_pneumonia", "No pneumonia"
    INDETERMINATE = "indeterminate", "Indeterminate"


class Agreement(models.TextChoices):
    AGREE = "agree", "Agrees with AI"
    DISAGREE = "disagree", "Overrules AI"
    NO_AI = "no_ai", "No AI result"
    INDETERMINATE = "indeterminate", "Indeterminate finding"
    NOT_VALIDATED = "not_validated", "AI not validated for this image"


class OverruleReason(models.TextChoices):
    FALSE_POSITIVE = "false_positive", "AI false positive"
    FALSE_NEGATIVE = "false_negative", "AI false negative"
    IMAGE_QUALITY = "image_quality", "Image quality"
    OUTSIDE_SCOPE = "outside_scope", "Outside the AI's scope"
    OTHER = "other", "Other"


class Review(models.Model):
    """A signed reading. Signed reviews are frozen; an amendment is a new version."""

    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="reviews")
    radiologist = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="reviews")
    finding = models.CharField(max_length=16, choices=Finding.choices)
    ai_label = models.CharField(
        max_length=16, choices=AiLabel.choices, blank=True, help_text="The AI label at signing time"
    )
    ai_probability = models.FloatField(null=True, blank=True)
    ai_domain = models.CharField(max_length=16, choices=AiDomain.choices, null=True, blank=True)
    model_version = models.ForeignKey(
        "inference.ModelVersion", null=True, blank=True, on_delete=models.PROTECT, related_name="reviews"
    )
    agreement = models.CharField(max_length=16, choices=Agreement.choices)
    reason = models.CharField(max_length=16, choices=OverruleReason.choices, blank=True)
    # The site's AI mode at signing: a shadow reading was made without seeing the AI (blank: before modes, live).
    ai_mode = models.CharField("AI mode at signing", max_length=8, choices=AiMode.choices, blank=True)
    report_text = models.TextField(blank=True)
    version = models.PositiveIntegerField(default=1)
    amendment_reason = models.TextField(blank=True)
    supersedes = models.OneToOneField(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="superseded_by"
    )
    signed_at = models.DateTimeField()

    class Meta:
        ordering = ["study", "version"]
        constraints = [models.UniqueConstraint(fields=["study", "version"], name="unique_review_version")]

    def __str__(self) -> str:
        return f"Review v{self.version} of study {self.study_id}: {self.get_finding_display()}"


class AuditEvent(models.Model):
    """Append-only: the app never updates or deletes a row (and PostgreSQL refuses to)."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL)
    username = models.CharField(max_length=150, blank=True)
    action = models.CharField(max_length=48, db_index=True)
    object_type = models.CharField(max_length=48, blank=True)
    object_id = models.CharField(max_length=64, blank=True)
    site = models.ForeignKey(Site, null=True, blank=True, on_delete=models.SET_NULL)
    ip_address = models.GenericIPAddressField(null=True, blank=True)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        who = self.username or "-"
        return f"{self.created_at:%Y-%m-%d %H:%M:%S} {who} {self.action} {self.object_type} {self.object_id}"

    def save(self, *args, **kwargs) -> None:
        if self.pk is not None and not self._state.adding:
            raise PermissionError("Audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("Audit events are append-only")


class ApiToken(models.Model):
    """An API token: only its sha256 is stored; it expires."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="api_tokens")
    key_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=8, help_text="First characters, to tell tokens apart")
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(db_index=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    credentials_fingerprint = models.CharField(
        max_length=64,
        blank=True,
        help_text="Keyed hash of the user's password hash when the token was made: a new password ends the token",
    )

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.user})"


# --- The DICOM network: who may send us images, where results go ---------------------------------


class DicomPeer(models.Model):
    """A modality or PACS allowed to send images to the DICOM listener, and the site its images belong to."""

    ae_title = models.CharField(
        "calling AE title", max_length=16, unique=True, help_text="As the sender calls itself (case-sensitive)"
    )
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="dicom_peers")
    description = models.CharField(max_length=200, blank=True, help_text='e.g. "X-ray room 2"')
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["ae_title"]
        verbose_name = "DICOM peer (sender)"

    def __str__(self) -> str:
        return f"{self.ae_title} -> {self.site.code}"


class ResultObject(models.TextChoices):
    AI_SR = "ai_sr", "AI result SR"
    SECONDARY_CAPTURE = "secondary_capture", "Secondary capture with heatmap"
    REPORT_SR = "report_sr", "Signed report SR"


class ResultDestination(models.Model):
    """A DICOM node (usually the PACS) that receives Pneumo's result objects by C-STORE."""

    ae_title = models.CharField("called AE title", max_length=16)
    host = models.CharField(max_length=255)
    port = models.PositiveIntegerField()
    description = models.CharField(max_length=200, blank=True)
    active = models.BooleanField(default=True, help_text="Inactive: nothing new is queued for it")
    send_ai_sr = models.BooleanField("AI result SR", default=True)
    send_secondary_capture = models.BooleanField("secondary capture", default=True)
    send_report_sr = models.BooleanField("signed report SR", default=True)
    all_sites = models.BooleanField(default=False, help_text="Receives the results of every site")
    sites = models.ManyToManyField(Site, blank=True, related_name="result_destinations")
    from_settings = models.BooleanField(
        default=False, editable=False, help_text="Registered from PNEUMO_RESULT_DESTINATIONS"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["ae_title", "host", "port"]
        constraints = [
            models.UniqueConstraint(fields=["ae_title", "host", "port"], name="unique_result_destination"),
        ]

    def __str__(self) -> str:
        return f"{self.ae_title}@{self.host}:{self.port}"


class OutboxState(models.TextChoices):
    PENDING = "pending", "Pending"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


class OutboxItem(models.Model):
    """One result object to send to one destination, retried with backoff until sent or given up."""

    destination = models.ForeignKey(ResultDestination, on_delete=models.PROTECT, related_name="outbox")
    kind = models.CharField(max_length=20, choices=ResultObject.choices)
    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="+")
    study = models.ForeignKey(Study, on_delete=models.CASCADE, related_name="outbox")
    image = models.ForeignKey(Image, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    prediction = models.ForeignKey(
        "inference.Prediction", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    review = models.ForeignKey(Review, null=True, blank=True, on_delete=models.CASCADE, related_name="+")
    sop_instance_uid = models.CharField("SOPInstanceUID", max_length=64)
    sop_class_uid = models.CharField(max_length=64, blank=True)
    file = models.FileField(upload_to="outbox/%Y/%m/", max_length=255)
    state = models.CharField(max_length=8, choices=OutboxState.choices, default=OutboxState.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField()
    lease_until = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    # When the current retry window began (queued, or resent): retries stop PNEUMO_RESULT_RETRY_HOURS after it.
    retry_from = models.DateTimeField()
    sent_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        verbose_name = "outbox item"
        constraints = [
            models.UniqueConstraint(fields=["destination", "sop_instance_uid"], name="unique_outbox_object"),
            models.UniqueConstraint(
                fields=["destination", "kind", "prediction"], name="unique_outbox_prediction_object"
            ),
            models.UniqueConstraint(fields=["destination", "kind", "review"], name="unique_outbox_review_object"),
        ]
        indexes = [models.Index(fields=["state", "next_attempt_at"], name="outbox_due_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of study {self.study_id} to {self.destination_id} ({self.state})"


# --- Drift: alarms when the AI's figures at a site move away from its reference (cases.drift) -----------


class DriftKind(models.TextChoices):
    AGREEMENT = "agreement", "Agreement with radiologists"
    OUTSIDE_DOMAIN = "outside_domain", "Images outside the domain"


class DriftAlarm(models.Model):
    """One episode of drift for a site and model version; open until an admin acknowledges it."""

    site = models.ForeignKey(Site, on_delete=models.PROTECT, related_name="drift_alarms")
    model_version = models.ForeignKey("inference.ModelVersion", on_delete=models.PROTECT, related_name="drift_alarms")
    kind = models.CharField(max_length=16, choices=DriftKind.choices)
    opened_at = models.DateTimeField(auto_now_add=True)
    day = models.DateField(help_text="The day whose figures raised the alarm")
    figures = models.JSONField(default=dict, help_text="The figures behind the alarm, ids and counts only")
    acknowledged_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    acknowledged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-opened_at", "-pk"]
        constraints = [
            # One alarm per episode: two checks at once cannot both open one.
            models.UniqueConstraint(
                fields=["site", "model_version", "kind"],
                condition=models.Q(acknowledged_at__isnull=True),
                name="one_open_drift_alarm",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} drift at {self.site_id} on {self.day}"
