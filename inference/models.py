"""Model versions and the predictions they made."""

from __future__ import annotations

from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

THRESHOLD_HELP = (
    "Probability at or above which the AI flags pneumonia. The packaged model keeps 0.5, the default of its "
    "training objective: its own training code used the data set's test split to pick checkpoints, so no "
    "held-out data was left for choosing a threshold. A calibrated model version brings its own."
)


# A slug with dots, since the registry names versions like "pneumonia-xception-pkg-0.3.0".
MODEL_NAME_VALIDATOR = RegexValidator(
    r"^[a-zA-Z0-9][-a-zA-Z0-9_.]*\Z",
    "A letter or digit, then letters, digits, hyphens, underscores or dots, e.g. pneumonia-xception-1.2.0.",
)


class Population(models.TextChoices):
    """Whom a version is made for; each image is routed to the active version of its patient's population."""

    PAEDIATRIC = "paediatric", "Paediatric"
    ADULT = "adult", "Adult"


class ModelVersion(models.Model):
    name = models.CharField(max_length=100, unique=True, validators=[MODEL_NAME_VALIDATOR])
    version = models.CharField(max_length=32)
    description = models.TextField(blank=True)
    source_path = models.CharField(
        max_length=500, help_text="The Keras .keras file (absolute, or relative to the project)"
    )
    sha256 = models.CharField("weights file sha256", max_length=64)
    converted_path = models.CharField(max_length=500, blank=True, help_text="The LiteRT conversion workers load")
    converted_sha256 = models.CharField(max_length=64, blank=True)
    head_path = models.CharField(max_length=500, blank=True, help_text="Dense-head weights for Grad-CAM")
    head_sha256 = models.CharField(max_length=64, blank=True)
    parity_max_diff = models.FloatField(null=True, blank=True, help_text="Largest |LiteRT - Keras| probability")
    parity_passed = models.BooleanField(default=False)
    threshold = models.FloatField(default=0.5, help_text=THRESHOLD_HELP)
    input_size = models.PositiveSmallIntegerField(default=150)
    preprocessing_version = models.CharField(max_length=64)
    heatmap_scale = models.FloatField(default=1.0, help_text="Fixed Grad-CAM scale, measured on training images")
    domain_check_path = models.CharField(
        max_length=500, blank=True, help_text="Is an image like this version's validation images (inference.domain)"
    )
    domain_check_sha256 = models.CharField(max_length=64, blank=True)
    chest_check_path = models.CharField(
        max_length=500, blank=True, help_text="Is an image a chest X-ray at all, on this version's input"
    )
    chest_check_sha256 = models.CharField(max_length=64, blank=True)
    intended_use = models.TextField(blank=True)
    intended_min_age_years = models.FloatField(null=True, blank=True)
    intended_max_age_years = models.FloatField(null=True, blank=True)
    intended_views = models.JSONField(default=list, blank=True, help_text='Validated views, e.g. ["AP", "PA"]')
    population = models.CharField(max_length=16, choices=Population.choices, default=Population.PAEDIATRIC)
    features_key = models.CharField(
        max_length=200,
        blank=True,
        help_text="Versions with the same key compute the same feature map (same frozen base and preprocessing): "
        "one forward pass serves them all",
    )
    is_active = models.BooleanField(default=False)
    created_at = models.DateTimeField(auto_now_add=True)
    converted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-is_active", "name"]
        constraints = [
            models.UniqueConstraint(
                fields=["population"], condition=models.Q(is_active=True), name="one_active_model_per_population"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} {self.version}"


class AiLabel(models.TextChoices):
    """The AI's verdict on an image or study: its probability against the model version's threshold."""

    PNEUMONIA = "pneumonia", "Pneumonia suspected"
    NORMAL = "normal", "Normal"

    @classmethod
    def of(cls, probability: float, threshold: float) -> AiLabel:
        return cls.PNEUMONIA if probability >= threshold else cls.NORMAL


class AiDomain(models.TextChoices):
    """Whether the model applies to an image, from its pixels (``inference.domain``); null: not checked."""

    IN_DOMAIN = "in_domain", "In domain"
    OUTSIDE_DOMAIN = "outside_domain", "Outside domain"
    NOT_CHEST_XRAY = "not_chest_xray", "Not a chest X-ray"


class Routing(models.TextChoices):
    """How a prediction's version was chosen (``inference.routing``)."""

    AGE = "age", "By the patient's age"
    DOMAIN = "domain", "By the image (age unknown)"
    REQUESTED = "requested", "Requested by an admin"


class AiMode(models.TextChoices):
    """How a site uses the AI (``cases.ai_modes``): live, silently in shadow, or not at all."""

    LIVE = "live", "Live: readers see the AI"
    # Predictions are made and stored, but nobody but an admin sees a trace of them before the study is signed.
    SHADOW = "shadow", "Shadow: hidden from readers until signed"
    OFF = "off", "Off: no predictions"


class ThresholdSource(models.TextChoices):
    MODEL = "model", "The model version's own"
    SITE = "site", "The site's, backed by its local validation"


class PredictionStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    # An admin stopped it (operations console): done, never claimed again, its study read without AI.
    CANCELLED = "cancelled", "Cancelled"


class Prediction(models.Model):
    image = models.ForeignKey("cases.Image", on_delete=models.CASCADE, related_name="predictions")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="predictions")
    preprocessing_version = models.CharField(max_length=64)
    status = models.CharField(max_length=10, choices=PredictionStatus.choices, default=PredictionStatus.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    lease_until = models.DateTimeField(null=True, blank=True)
    lease_owner = models.CharField(max_length=64, blank=True, help_text="Celery task id holding the lease")
    probability = models.FloatField(null=True, blank=True)
    label = models.CharField(max_length=16, choices=AiLabel.choices, blank=True)
    threshold = models.FloatField(null=True, blank=True, help_text="The threshold applied to this result")
    # Where that threshold came from (inference.thresholds); blank on older rows: the model's.
    threshold_source = models.CharField(max_length=8, choices=ThresholdSource.choices, blank=True)
    # The site's AI mode when the prediction was requested (blank: before modes, live).
    ai_mode = models.CharField("AI mode", max_length=8, choices=AiMode.choices, blank=True)
    heatmap = models.JSONField(null=True, blank=True, help_text="Grad-CAM grid, rows of values in [0, 1]")
    input_sha256 = models.CharField(max_length=64, blank=True)
    # Blank on predictions made before routing existed (one active version).
    routing = models.CharField(max_length=16, choices=Routing.choices, blank=True)
    routing_reason = models.CharField(max_length=200, blank=True)
    outside_validated_use = models.BooleanField(default=False)
    outside_validated_use_reason = models.TextField(blank=True)
    # Null on predictions made before the scope check existed: "not checked".
    domain = models.CharField(max_length=16, choices=AiDomain.choices, null=True, blank=True)
    domain_score = models.FloatField(null=True, blank=True, help_text="The deciding check's distance")
    domain_limit = models.FloatField(null=True, blank=True, help_text="That check's limit: above it is outside")
    domain_reason = models.TextField(blank=True)
    queue_wait_ms = models.FloatField(null=True, blank=True)
    decode_ms = models.FloatField(null=True, blank=True)
    preprocess_ms = models.FloatField(null=True, blank=True)
    inference_ms = models.FloatField(null=True, blank=True)
    heatmap_ms = models.FloatField(null=True, blank=True)
    worker_host = models.CharField(max_length=200, blank=True)
    error = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["image", "model_version", "preprocessing_version"], name="one_prediction_per_model_input"
            ),
        ]
        indexes = [models.Index(fields=["status", "lease_until"], name="prediction_sweep_idx")]

    def __str__(self) -> str:
        return f"Prediction {self.pk} ({self.status}) of image {self.image_id}"


class SiteThreshold(models.Model):
    """A threshold one site uses for one model version, with the local evidence that backed it.

    Rows are never changed: the newest of a site and version is in force (``inference.thresholds``).
    """

    site = models.ForeignKey("cases.Site", on_delete=models.PROTECT, related_name="thresholds")
    model_version = models.ForeignKey(ModelVersion, on_delete=models.PROTECT, related_name="site_thresholds")
    threshold = models.FloatField()
    reason = models.TextField(blank=True, help_text="Why, and required when the evidence falls short")
    evidence = models.JSONField(help_text="The validation report's figures that backed it, at the time")
    evidence_sufficient = models.BooleanField(help_text="Enough signed studies and positives backed it")
    created_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, on_delete=models.SET_NULL, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [models.Index(fields=["site", "model_version", "-created_at"], name="site_threshold_in_force_idx")]

    def __str__(self) -> str:
        return f"{self.threshold:.4f} for {self.model_version} at {self.site}"
