"""The API's shapes: read serializers for output, input serializers that only validate.

No serializer here saves a model: views hand validated data to a service. So a
client can never set who signed, a study's status or site, or any field that
no input serializer declares.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from django.http import QueryDict
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from cases.ai_modes import study_ai_shadowed
from cases.identifiers import IdentifierValidator
from cases.models import (
    Agreement,
    AuditEvent,
    Finding,
    Image,
    OverruleReason,
    Patient,
    Priority,
    Review,
    Sex,
    Site,
    Study,
)
from cases.selectors import MAX_ID, latest_review, user_is_admin
from cases.states import StudyStatus
from inference.display import prediction_is_muted, study_is_muted
from inference.models import AiDomain, AiLabel, AiMode, ModelVersion, Prediction

AI_NOTICE = "Decision support only: AI results are unconfirmed until a radiologist signs the study."
UNCONFIRMED = "unconfirmed"
AI_REVIEW_CHOICES = [(UNCONFIRMED, "Not yet signed"), *Agreement.choices]


def ai_review_of(study: Study) -> str:
    """``unconfirmed`` until signed, then the signed reading's agreement with the AI."""
    review = latest_review(study=study) if study.status == StudyStatus.REPORTED else None
    return review.agreement if review is not None else UNCONFIRMED


class JsonTypes:
    """For a JSON body: each field takes the JSON type the schema gives it, as the schema says.

    DRF would read 12 as the text "12", "true" or 1 as true and "0.5" as a number; a client that
    sends the wrong type gets a field error instead of a guess. Forms and query strings, all text,
    are left to DRF.
    """

    TYPES = (
        (serializers.BooleanField, (bool,), "true or false"),
        (serializers.CharField, (str,), "text"),
        (serializers.IntegerField, (int,), "a whole number"),
        (serializers.FloatField, (int, float), "a number"),
    )

    def to_internal_value(self, data: Any) -> Any:
        if isinstance(data, Mapping) and not isinstance(data, QueryDict):
            errors = {
                name: [f"Give {expected}."]
                for name, field in self.fields.items()
                if name in data and data[name] is not None and not field.read_only
                for expected in [_json_type_refusal(field, data[name])]
                if expected
            }
            if errors:
                raise serializers.ValidationError(errors)
        return super().to_internal_value(data)


def _json_type_refusal(field: serializers.Field, value: Any) -> str:
    for field_class, types, expected in JsonTypes.TYPES:
        if isinstance(field, field_class):
            wrong = not isinstance(value, types) or (bool not in types and isinstance(value, bool))
            return expected if wrong else ""
    return ""


# --- Sites and patients ---------------------------------------------------------------


class SiteSerializer(serializers.ModelSerializer):
    class Meta:
        model = Site
        fields = ["id", "code", "name", "ai_mode", "ai_outside_validated_use", "ai_paused"]
        read_only_fields = fields


class SiteChangeSerializer(JsonTypes, serializers.Serializer):
    ai_mode = serializers.ChoiceField(
        choices=AiMode.choices,
        help_text="live: readers see the AI; shadow: predictions are stored but nobody but an admin sees them "
        "before signing; off: no predictions. Applied at once to the site's unsigned studies",
    )


class PatientSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = Patient
        fields = ["id", "patient_id", "name", "birth_date", "sex"]
        read_only_fields = fields


class PatientStudySerializer(serializers.ModelSerializer):
    class Meta:
        model = Study
        fields = ["id", "status", "priority", "study_date", "description", "received_at", "reported_at"]
        read_only_fields = fields


class PatientSerializer(serializers.ModelSerializer):
    site = serializers.SlugRelatedField(slug_field="code", read_only=True)

    class Meta:
        model = Patient
        fields = [
            "id",
            "site",
            "patient_id",
            "name",
            "birth_date",
            "sex",
            "demographics_conflict",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class PatientDetailSerializer(PatientSerializer):
    studies = PatientStudySerializer(many=True, read_only=True)

    class Meta(PatientSerializer.Meta):
        fields = [*PatientSerializer.Meta.fields, "studies"]


class PatientFilterSerializer(serializers.Serializer):
    """GET filters: nothing that identifies a patient, since query strings reach access logs."""

    site = serializers.CharField(required=False, help_text="Site code or id")
    demographics_conflict = serializers.BooleanField(
        required=False, allow_null=True, default=None, help_text="Only patients whose uploads disagreed"
    )
    ordering = serializers.ChoiceField(
        choices=["patient_id", "-patient_id", "created_at", "-created_at"], required=False, default="patient_id"
    )


class PatientSearchSerializer(JsonTypes, serializers.Serializer):
    query = serializers.CharField(
        max_length=200, help_text="A patient ID (exact or its start) or words of the name, in any order"
    )
    site = serializers.CharField(required=False, help_text="Site code or id")


# --- Predictions, images, reviews, studies -------------------------------------------------


class ModelVersionSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = ModelVersion
        fields = ["id", "name", "version", "population", "threshold"]
        read_only_fields = fields


class PredictionSerializer(serializers.ModelSerializer):
    model_version = ModelVersionSummarySerializer(read_only=True)
    label = serializers.ChoiceField(choices=AiLabel.choices, allow_blank=True, read_only=True)
    domain = serializers.ChoiceField(
        choices=AiDomain.choices,
        allow_null=True,
        read_only=True,
        help_text="Whether the model applies to the image, from its pixels; null: not checked (made before the check)."
        " outside_domain: the probability is muted (never a flag); not_chest_xray: no probability or label",
    )
    ai_muted = serializers.SerializerMethodField(
        help_text="True when the result does not count (outside the domain or the validated use): never a flag"
    )
    ai_result_confirmed = serializers.SerializerMethodField(
        help_text="False until a radiologist signed the study and agreed with the AI"
    )
    ai_result_review = serializers.SerializerMethodField()

    class Meta:
        model = Prediction
        fields = [
            "id",
            "image_id",
            "model_version",
            "preprocessing_version",
            "status",
            "probability",
            "label",
            "threshold",
            "threshold_source",
            "ai_mode",
            "routing",
            "routing_reason",
            "outside_validated_use",
            "outside_validated_use_reason",
            "domain",
            "domain_score",
            "domain_limit",
            "domain_reason",
            "ai_muted",
            "error",
            "attempts",
            "queue_wait_ms",
            "decode_ms",
            "preprocess_ms",
            "inference_ms",
            "heatmap_ms",
            "created_at",
            "queued_at",
            "started_at",
            "finished_at",
            "ai_result_confirmed",
            "ai_result_review",
        ]
        read_only_fields = fields

    def get_ai_muted(self, prediction: Prediction) -> bool:
        return prediction_is_muted(prediction)

    def get_ai_result_confirmed(self, prediction: Prediction) -> bool:
        return ai_review_of(prediction.image.study) == Agreement.AGREE

    @extend_schema_field(serializers.ChoiceField(choices=AI_REVIEW_CHOICES))
    def get_ai_result_review(self, prediction: Prediction) -> str:
        return ai_review_of(prediction.image.study)


class ImageSerializer(serializers.ModelSerializer):
    predictions = serializers.SerializerMethodField()

    class Meta:
        model = Image
        fields = [
            "id",
            "kind",
            "modality",
            "view_position",
            "body_part",
            "rows",
            "columns",
            "bits_stored",
            "number_of_frames",
            "photometric_interpretation",
            "pixel_spacing",
            "patient_age_years",
            "patient_age_source",
            "patient_age_reason",
            "ai_eligibility",
            "ai_eligibility_reason",
            "file_state",
            "created_at",
            "predictions",
        ]
        read_only_fields = fields

    @extend_schema_field(PredictionSerializer(many=True))
    def get_predictions(self, image: Image) -> list[dict]:
        predictions = sorted(image.predictions.all(), key=lambda p: (not p.model_version.is_active, -p.pk))
        for prediction in predictions:
            prediction.image = image  # the study is already loaded on the image
        return PredictionSerializer(predictions, many=True, context=self.context).data


class ReviewSerializer(serializers.ModelSerializer):
    reason = serializers.ChoiceField(choices=OverruleReason.choices, allow_blank=True, read_only=True)
    ai_label = serializers.ChoiceField(choices=AiLabel.choices, allow_blank=True, read_only=True)
    ai_domain = serializers.ChoiceField(choices=AiDomain.choices, allow_null=True, read_only=True)
    radiologist = serializers.CharField(source="radiologist.signature_name", read_only=True)
    model_version = ModelVersionSummarySerializer(read_only=True, allow_null=True)
    report = serializers.CharField(source="report_text", read_only=True)
    supersedes = serializers.PrimaryKeyRelatedField(read_only=True, allow_null=True)

    class Meta:
        model = Review
        fields = [
            "id",
            "study_id",
            "version",
            "finding",
            "agreement",
            "reason",
            "report",
            "radiologist",
            "ai_label",
            "ai_probability",
            "ai_domain",
            "ai_mode",
            "model_version",
            "amendment_reason",
            "supersedes",
            "signed_at",
        ]
        read_only_fields = fields


class StudySerializer(serializers.ModelSerializer):
    site = serializers.SlugRelatedField(slug_field="code", read_only=True)
    patient = PatientSummarySerializer(read_only=True)
    claimed_by = serializers.SerializerMethodField()
    image_count = serializers.SerializerMethodField()
    finding = serializers.SerializerMethodField(help_text="The signed finding (latest version); null until signed")
    ai_result_confirmed = serializers.SerializerMethodField(
        help_text="False until a radiologist signed the study and agreed with the AI"
    )
    ai_result_review = serializers.SerializerMethodField(
        help_text="'unconfirmed' until signed, then the signed reading's agreement with the AI"
    )
    ai_notice = serializers.SerializerMethodField()
    ai_domain = serializers.ChoiceField(
        choices=AiDomain.choices,
        allow_null=True,
        read_only=True,
        help_text="The domain of the AI result the study shows; null: not checked, or no result",
    )
    ai_muted = serializers.SerializerMethodField(
        help_text="True when the study's only AI results are muted: ai_probability is then null, never a flag"
    )
    ai_completed_at = serializers.SerializerMethodField(
        help_text="When the AI finished with the study; null until then, and in shadow mode until signed"
    )

    class Meta:
        model = Study
        fields = [
            "id",
            "site",
            "patient",
            "status",
            "status_reason",
            "priority",
            "study_date",
            "description",
            "accession_number",
            "study_instance_uid",
            "received_at",
            "ai_completed_at",
            "reported_at",
            "ai_probability",
            "ai_flagged",
            "ai_domain",
            "ai_muted",
            "ai_result_confirmed",
            "ai_result_review",
            "ai_notice",
            "finding",
            "claimed_by",
            "image_count",
        ]
        read_only_fields = fields

    def get_claimed_by(self, study: Study) -> str | None:
        return study.claimed_by.signature_name if study.claimed_by_id else None

    def get_image_count(self, study: Study) -> int:
        count = getattr(study, "image_count", None)
        return count if count is not None else study.images.count()

    @extend_schema_field(serializers.ChoiceField(choices=Finding.choices, allow_null=True))
    def get_finding(self, study: Study) -> str | None:
        review = latest_review(study=study) if study.status == StudyStatus.REPORTED else None
        return review.finding if review else None

    def get_ai_result_confirmed(self, study: Study) -> bool:
        return ai_review_of(study) == Agreement.AGREE

    @extend_schema_field(serializers.ChoiceField(choices=AI_REVIEW_CHOICES))
    def get_ai_result_review(self, study: Study) -> str:
        return ai_review_of(study)

    def get_ai_notice(self, study: Study) -> str:
        return AI_NOTICE

    def get_ai_muted(self, study: Study) -> bool:
        return study_is_muted(study)

    @extend_schema_field(serializers.DateTimeField(allow_null=True))
    def get_ai_completed_at(self, study: Study) -> str | None:
        # That the AI has run is itself a trace of it, which shadow mode keeps from everyone until signing.
        if study.ai_completed_at is None or study_ai_shadowed(study):
            return None
        return serializers.DateTimeField().to_representation(study.ai_completed_at)


class WorklistStudySerializer(StudySerializer):
    ai_outside_validated_use = serializers.BooleanField(source="ai_outside_use", read_only=True)
    ai_outside_validated_use_reason = serializers.CharField(
        source="ai_outside_use_reason", read_only=True, allow_null=True
    )

    class Meta(StudySerializer.Meta):
        fields = [*StudySerializer.Meta.fields, "ai_outside_validated_use", "ai_outside_validated_use_reason"]


class WorklistFilterSerializer(serializers.Serializer):
    """GET filters: no patient search here, since query strings reach access logs."""

    status = serializers.MultipleChoiceField(
        choices=[StudyStatus.AWAITING_REVIEW, StudyStatus.IN_REVIEW], required=False
    )
    priority = serializers.MultipleChoiceField(choices=Priority.choices, required=False)
    site = serializers.CharField(required=False, help_text="Site code or id")
    flagged = serializers.BooleanField(required=False, allow_null=True, default=None, help_text="AI flagged")
    date_from = serializers.DateField(required=False, help_text="Study date (or day received) on or after")
    date_to = serializers.DateField(required=False, help_text="Study date (or day received) on or before")


class StudyDetailSerializer(StudySerializer):
    images = ImageSerializer(many=True, read_only=True)
    reviews = ReviewSerializer(many=True, read_only=True)

    class Meta(StudySerializer.Meta):
        fields = [*StudySerializer.Meta.fields, "images", "reviews"]


class StudyFilterSerializer(serializers.Serializer):
    ORDERINGS = {
        "received_at": ("received_at", "pk"),
        "-received_at": ("-received_at", "-pk"),
        "priority": ("priority_rank", "received_at", "pk"),
        "-priority": ("-priority_rank", "-received_at", "-pk"),
        "ai_probability": ("ai_probability", "pk"),
        "-ai_probability": ("-ai_probability", "-pk"),
        "study_date": ("study_date", "pk"),
        "-study_date": ("-study_date", "-pk"),
        "reported_at": ("reported_at", "pk"),
        "-reported_at": ("-reported_at", "-pk"),
    }

    status = serializers.ChoiceField(choices=StudyStatus.choices, required=False)
    priority = serializers.ChoiceField(choices=Priority.choices, required=False)
    site = serializers.CharField(required=False, help_text="Site code or id")
    patient = serializers.IntegerField(required=False, min_value=1, max_value=MAX_ID, help_text="The patient's API id")
    study_instance_uid = serializers.CharField(required=False, max_length=64, help_text="The DICOM StudyInstanceUID")
    flagged = serializers.BooleanField(required=False, allow_null=True, default=None, help_text="AI flagged")
    received_from = serializers.DateField(required=False, help_text="Received on or after this date")
    received_to = serializers.DateField(required=False, help_text="Received on or before this date")
    ordering = serializers.ChoiceField(choices=list(ORDERINGS), required=False, default="-received_at")


@extend_schema_field({"type": "array", "items": {"type": "string", "format": "binary"}, "minItems": 1})
class FilesField(serializers.ListField):
    """Files of a multipart upload: drf-spectacular would describe them as text (URLs)."""


class UploadSerializer(serializers.Serializer):
    # A form field left empty is the same as one not sent (allow_blank), as DRF reads multipart forms.
    files = FilesField(
        child=serializers.FileField(allow_empty_file=True, use_url=False),
        min_length=1,
        help_text="DICOM files, zip files of them, or PNG/JPEG (these need patient_id)",
    )
    site = serializers.CharField(
        required=False, allow_blank=True, help_text="Site code or id; optional when you have one site"
    )
    priority = serializers.ChoiceField(choices=Priority.choices, default=Priority.ROUTINE)
    batch = serializers.CharField(
        max_length=64,
        required=False,
        allow_blank=True,
        default="",
        help_text="Files sent in several requests with the same batch become one study per patient (PNG/JPEG)",
    )
    # Not trimmed here: a leading or trailing newline is refused as the schema's pattern says (ingest trims spaces).
    patient_id = serializers.CharField(
        max_length=64,
        required=False,
        allow_blank=True,
        default="",
        trim_whitespace=False,
        validators=[IdentifierValidator("patient ID")],
    )
    patient_name = serializers.CharField(
        max_length=200,
        required=False,
        allow_blank=True,
        default="",
        trim_whitespace=False,
        validators=[IdentifierValidator("patient name")],
    )
    birth_date = serializers.DateField(required=False, allow_null=True, default=None)
    age_years = serializers.FloatField(
        required=False,
        allow_null=True,
        default=None,
        min_value=0,
        max_value=130,
        help_text="The patient's age in years, when the birth date is not known; it wins over birth_date",
    )
    sex = serializers.ChoiceField(choices=Sex.choices, required=False, default="")
    study_description = serializers.CharField(max_length=200, required=False, allow_blank=True, default="")


class FileOutcomeSerializer(serializers.Serializer):
    name = serializers.CharField()
    status = serializers.ChoiceField(choices=["stored", "duplicate", "refused", "skipped"])
    reason = serializers.CharField(allow_blank=True)
    study_id = serializers.IntegerField(allow_null=True)
    image_id = serializers.IntegerField(allow_null=True)


class UploadResultSerializer(serializers.Serializer):
    files = FileOutcomeSerializer(many=True)
    study_ids = serializers.ListField(child=serializers.IntegerField(), help_text="Studies that received new images")


class PredictionsRequestSerializer(JsonTypes, serializers.Serializer):
    model = serializers.CharField(
        required=False,
        max_length=100,
        help_text="Admins only: run every image again with this model version (its name); "
        "404 for an unknown name, 409 when it is not prepared. Without it each image is routed to the model "
        "made for its patient",
    )


class StudyPredictionsSerializer(serializers.Serializer):
    study_id = serializers.IntegerField()
    predictions = PredictionSerializer(many=True)


class ReadingSerializer(JsonTypes, serializers.Serializer):
    finding = serializers.ChoiceField(choices=Finding.choices)
    reason = serializers.ChoiceField(
        choices=OverruleReason.choices,
        required=False,
        allow_blank=True,
        default="",
        help_text="Required when the finding overrules the AI",
    )
    report = serializers.CharField(required=False, allow_blank=True, default="", max_length=20000)


class AmendmentSerializer(ReadingSerializer):
    amendment_reason = serializers.CharField(max_length=2000)
    amends_version = serializers.IntegerField(
        min_value=1,
        help_text="The version this amends: the current one. If another version was signed meanwhile, "
        "the amendment is refused with 409 and the current_version",
    )


# --- Heatmaps ------------------------------------------------------------------------------


class ColourMapSerializer(serializers.Serializer):
    stops = serializers.ListField(
        child=serializers.ListField(child=serializers.JSONField()),
        help_text="[position in 0..1, [r, g, b]] pairs",
    )
    alpha = serializers.DictField(child=serializers.FloatField())


class HeatmapSerializer(serializers.Serializer):
    prediction_id = serializers.IntegerField()
    image_id = serializers.IntegerField()
    rows = serializers.IntegerField()
    columns = serializers.IntegerField()
    values = serializers.ListField(child=serializers.ListField(child=serializers.FloatField()))
    min = serializers.FloatField()
    max = serializers.FloatField()
    interpolation = serializers.CharField()
    scale_note = serializers.CharField()
    heatmap_scale = serializers.FloatField()
    model_version = serializers.CharField()
    colour_map = ColourMapSerializer()
    ai_result_confirmed = serializers.BooleanField()
    ai_notice = serializers.CharField()


class RenderParamsSerializer(serializers.Serializer):
    # Stored values are at most 16-bit, or Hounsfield units after rescaling: wider windows mean nothing.
    max_size = serializers.IntegerField(required=False, min_value=16, max_value=4096, help_text="Longest side")
    center = serializers.FloatField(
        required=False, min_value=-100_000, max_value=100_000, help_text="Window centre (default: the image's own)"
    )
    width = serializers.FloatField(required=False, min_value=1, max_value=200_000, help_text="Window width")


class HeatmapParamsSerializer(serializers.Serializer):
    size = serializers.IntegerField(required=False, min_value=16, max_value=2048, help_text="Longest side")


# --- Models, stats, audit ----------------------------------------------------------------


class ModelVersionSerializer(JsonTypes, serializers.ModelSerializer):
    # Declared so that the one-active-model constraint is not checked here: activating one
    # deactivates the other (model_version_activate), behind the parity gate.
    is_active = serializers.BooleanField(required=False, default=False)
    intended_views = serializers.ListField(
        child=serializers.CharField(max_length=16), required=False, help_text='Validated views, e.g. ["AP", "PA"]'
    )
    sha256 = serializers.RegexField(
        r"^[0-9a-fA-F]{64}\Z",
        label="weights file sha256",
        error_messages={"invalid": "Give the file's sha256 as 64 hexadecimal characters."},
    )

    class Meta:
        model = ModelVersion
        fields = [
            "id",
            "name",
            "version",
            "description",
            "source_path",
            "sha256",
            "threshold",
            "is_active",
            "intended_use",
            "population",
            "intended_min_age_years",
            "intended_max_age_years",
            "intended_views",
            "input_size",
            "preprocessing_version",
            "converted_sha256",
            "parity_max_diff",
            "parity_passed",
            "created_at",
            "converted_at",
        ]
        read_only_fields = [
            "input_size",
            "preprocessing_version",
            "converted_sha256",
            "parity_max_diff",
            "parity_passed",
            "created_at",
            "converted_at",
        ]
        extra_kwargs = {"threshold": {"min_value": 0.0, "max_value": 1.0}}
        # Not DRF's check of one active version per population: activating one replaces its
        # population's active version (model_version_activate), behind the parity gate.
        validators: list = []

    def validate_sha256(self, value: str) -> str:
        return value.lower()


class ModelVersionReadSerializer(ModelVersionSerializer):
    """A model version as the API shows it: where its files lie on the server is for admins only."""

    source_path = serializers.CharField(read_only=True, help_text="The Keras file on the server (admins only)")
    is_active = serializers.BooleanField(read_only=True)
    sha256 = serializers.CharField(read_only=True, label="weights file sha256")

    class Meta(ModelVersionSerializer.Meta):
        read_only_fields = ModelVersionSerializer.Meta.fields
        admin_only_fields = ["source_path"]  # ApiAutoSchema leaves them out of the schema's required fields

    def to_representation(self, instance: ModelVersion) -> dict:
        data = super().to_representation(instance)
        request = self.context.get("request")
        if request is None or not user_is_admin(user=request.user):
            for name in self.Meta.admin_only_fields:
                data.pop(name)
        return data


class ConfusionMatrixSerializer(serializers.Serializer):
    tp = serializers.IntegerField()
    fp = serializers.IntegerField()
    fn = serializers.IntegerField()
    tn = serializers.IntegerField()


class AgreementSerializer(serializers.Serializer):
    model_version = serializers.CharField()
    model_version_id = serializers.IntegerField()
    is_active = serializers.BooleanField()
    threshold = serializers.FloatField()
    n = serializers.IntegerField(help_text="Signed readings with an AI result, indeterminate ones excluded")
    agreed = serializers.IntegerField()
    overruled = serializers.IntegerField()
    indeterminate = serializers.IntegerField()
    confusion_matrix = ConfusionMatrixSerializer(help_text="The radiologist's finding is the reference")
    sensitivity = serializers.FloatField(allow_null=True)
    specificity = serializers.FloatField(allow_null=True)
    ppv = serializers.FloatField(allow_null=True)
    npv = serializers.FloatField(allow_null=True)
    kappa = serializers.FloatField(allow_null=True)
    overrule_reasons = serializers.DictField(child=serializers.IntegerField())


class OutsideDomainDaySerializer(serializers.Serializer):
    date = serializers.DateField()
    site = serializers.CharField(help_text="Site code")
    n = serializers.IntegerField(help_text="Images whose scope was checked that day")
    outside_domain = serializers.IntegerField(help_text="Those outside the domain or not a chest X-ray")
    share = serializers.FloatField()


class DayCountSerializer(serializers.Serializer):
    date = serializers.DateField()
    count = serializers.IntegerField()


class QueueSerializer(serializers.Serializer):
    ai_pending = serializers.IntegerField()
    received = serializers.IntegerField()
    queued = serializers.IntegerField()
    analyzing = serializers.IntegerField()
    awaiting_review = serializers.IntegerField()
    in_review = serializers.IntegerField()
    broker = serializers.IntegerField(
        allow_null=True, help_text="Messages waiting for a worker; null when Redis is down"
    )


class DurationSerializer(serializers.Serializer):
    median_s = serializers.FloatField(allow_null=True)
    p90_s = serializers.FloatField(allow_null=True)
    n = serializers.IntegerField()


class TurnaroundSerializer(serializers.Serializer):
    upload_to_ai = DurationSerializer()
    ai_to_signature = DurationSerializer()


class StatsSerializer(serializers.Serializer):
    days = serializers.IntegerField()
    since = serializers.DateField()
    received_per_day = DayCountSerializer(many=True)
    reported_per_day = DayCountSerializer(many=True)
    queue_length = QueueSerializer()
    turnaround = TurnaroundSerializer()
    agreement = AgreementSerializer(many=True)
    reviews_without_ai = serializers.IntegerField()
    reviews_not_validated = serializers.IntegerField(
        help_text="Signed readings over a muted AI result (not_validated): left out of the agreement"
    )
    outside_domain_by_day = OutsideDomainDaySerializer(many=True)


class StatsParamsSerializer(serializers.Serializer):
    days = serializers.IntegerField(required=False, min_value=1, max_value=366, default=30)


class AuditEventSerializer(serializers.ModelSerializer):
    site = serializers.SlugRelatedField(slug_field="code", read_only=True, allow_null=True)

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "created_at",
            "user",
            "username",
            "action",
            "object_type",
            "object_id",
            "site",
            "ip_address",
            "detail",
        ]
        read_only_fields = fields


class AuditFilterSerializer(serializers.Serializer):
    action = serializers.CharField(required=False, max_length=48)
    user = serializers.CharField(required=False, max_length=150, help_text="Username or user id")
    site = serializers.CharField(required=False, max_length=32, help_text="Site code or id")
    date_from = serializers.DateField(required=False, help_text="On or after this date")
    date_to = serializers.DateField(required=False, help_text="On or before this date")


class TokenRequestSerializer(JsonTypes, serializers.Serializer):
    username = serializers.CharField(max_length=150)
    password = serializers.CharField(max_length=4096, trim_whitespace=False, style={"input_type": "password"})
    otp = serializers.CharField(
        required=False, max_length=32, help_text="Admins: the TOTP code from the authenticator app, or a recovery code"
    )


class OtpRequiredSerializer(serializers.Serializer):
    detail = serializers.CharField()
    otp_required = serializers.BooleanField(help_text='Send the second factor as "otp" with the credentials')


class TokenSerializer(serializers.Serializer):
    token = serializers.CharField(help_text="Send as 'Authorization: Token <token>'")
    expires = serializers.DateTimeField()


class DetailSerializer(serializers.Serializer):
    detail = serializers.CharField()


class PatientSearchResultSerializer(serializers.Serializer):
    results = PatientSerializer(many=True)
    truncated = serializers.BooleanField(help_text="More patients matched: refine the query")
