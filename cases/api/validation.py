"""``GET /api/v1/validation/``: a site's local validation report for one model version (admins only).

The role is checked before the query is read (DRF's permission check runs first), so anyone but an admin
gets 403 whatever they ask; an unknown site or model is 404; the report answers from n = 0 with nulls (an
empty period, ``until`` before ``since``, included: the schema cannot forbid it, so it is no error).
"""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from cases.api.permissions import IsAdmin
from cases.api.views import ApiView, _query, responses
from cases.audit import audit_record
from cases.validation import validation_model, validation_report, validation_site


class ValidationParamsSerializer(serializers.Serializer):
    site = serializers.CharField(max_length=32, help_text="The site's code")
    model = serializers.CharField(max_length=100, help_text="The model version's name")
    since = serializers.DateField(required=False, help_text="First signing day counted (inclusive)")
    until = serializers.DateField(required=False, help_text="Last signing day counted (inclusive)")
    target_sensitivity = serializers.FloatField(
        required=False, default=0.95, min_value=0.0, max_value=1.0, help_text="For the suggested threshold"
    )


def _interval() -> serializers.ListField:
    return serializers.ListField(
        child=serializers.FloatField(), min_length=2, max_length=2, allow_null=True, help_text="[low, high] (95 %)"
    )


def _share() -> serializers.FloatField:
    return serializers.FloatField(allow_null=True)


class CalibrationBinSerializer(serializers.Serializer):
    low = serializers.FloatField()
    high = serializers.FloatField()
    n = serializers.IntegerField()
    mean_probability = _share()
    observed = serializers.FloatField(allow_null=True, help_text="Share of positive findings in the bin")


class ValidationFiguresSerializer(serializers.Serializer):
    n = serializers.IntegerField(help_text="Studies with a pneumonia or no-pneumonia finding and an AI result")
    positives = serializers.IntegerField()
    prevalence = _share()
    indeterminate = serializers.IntegerField(help_text="Indeterminate findings, counted apart")
    confusion_matrix = serializers.ListField(
        child=serializers.ListField(child=serializers.IntegerField(), min_length=2, max_length=2),
        min_length=2,
        max_length=2,
        help_text="[[tn, fp], [fn, tp]]: rows the radiologist's finding, columns the AI's",
    )
    auc = _share()
    auc_ci = _interval()
    threshold = serializers.FloatField(
        help_text="The threshold in force at the site: its own once set (POST /api/v1/site-thresholds/), else the "
        "version's"
    )
    sensitivity = _share()
    sensitivity_ci = _interval()
    specificity = _share()
    specificity_ci = _interval()
    ppv = _share()
    ppv_ci = _interval()
    npv = _share()
    npv_ci = _interval()
    suggested_threshold = serializers.FloatField(allow_null=True, help_text="Highest reaching the target sensitivity")
    suggested_specificity = _share()
    calibration = CalibrationBinSerializer(many=True)


class ValidationGroupSerializer(ValidationFiguresSerializer):
    group = serializers.CharField()


class ValidationModeGroupSerializer(ValidationGroupSerializer):
    readers_saw_ai = serializers.BooleanField(help_text="Live readings were made seeing the AI: biased upwards")


class ValidationReportSerializer(ValidationFiguresSerializer):
    caveat = serializers.CharField(help_text="How to read the comparison (live readers saw the AI)")
    site = serializers.CharField()
    model = serializers.CharField()
    since = serializers.DateField(allow_null=True)
    until = serializers.DateField(allow_null=True)
    by_device = ValidationGroupSerializer(many=True)
    by_age_band = ValidationGroupSerializer(many=True)
    by_view = ValidationGroupSerializer(many=True)
    by_domain = ValidationGroupSerializer(many=True)
    by_mode = ValidationModeGroupSerializer(many=True)


class ValidationReportView(ApiView):
    permission_classes = [IsAuthenticated, IsAdmin]

    @extend_schema(
        parameters=[ValidationParamsSerializer],
        responses=responses({200: ValidationReportSerializer}, 400, 403, 404),
        summary="A site's local validation report for one model version, from its signed readings (admins)",
        description="Live readings were made seeing the AI's result: their agreement with it is biased upwards.",
    )
    def get(self, request: Request) -> Response:
        params = _query(request, ValidationParamsSerializer)
        site = validation_site(user=request.user, code=params["site"])
        version = validation_model(name=params["model"])
        report = validation_report(
            site=site,
            model_version=version,
            since=params.get("since"),
            until=params.get("until"),
            target_sensitivity=params["target_sensitivity"],
        )
        audit_record(
            action="view_validation_report", user=request.user, site=site, request=request,
            model_version_id=version.pk, n=report["n"],
        )  # fmt: skip
        return Response(report)
