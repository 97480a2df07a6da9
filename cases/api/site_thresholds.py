"""``/api/v1/site-thresholds/``: a site's own threshold for one model version, backed by its local evidence (admins).

As for the validation report, the role is checked before the body or query is read: anyone but an admin gets
403 whatever they send; an unknown site or model is 404. ``POST`` answers 201 with the threshold and its
evidence, or 400 naming the shortfall when too few signed studies or positives back it and no reason is
given (``inference.thresholds``).
"""

from __future__ import annotations

from django.db.models import Exists, OuterRef, Q, QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from cases.api.permissions import IsAdmin
from cases.api.serializers import JsonTypes
from cases.api.views import ApiView, _query, _validated, page_responses, responses
from cases.validation import validation_model, validation_site
from inference.models import SiteThreshold
from inference.thresholds import SiteThresholdRefused, site_threshold_set


class SiteThresholdRequestSerializer(JsonTypes, serializers.Serializer):
    site = serializers.CharField(max_length=32, help_text="The site's code")
    model = serializers.CharField(max_length=100, help_text="The model version's name")
    threshold = serializers.FloatField(help_text="Probability at or above which this site's results are flagged")
    reason = serializers.CharField(
        required=False,
        allow_blank=True,
        default="",
        max_length=2000,
        help_text="Why; required when fewer signed studies or positives back it than the site-threshold minimums",
    )
    since = serializers.DateField(required=False, help_text="First signing day of the evidence (default: all)")
    until = serializers.DateField(required=False, help_text="Last signing day of the evidence (default: all)")


class SiteThresholdFilterSerializer(serializers.Serializer):
    site = serializers.CharField(required=False, max_length=32, help_text="The site's code")
    model = serializers.CharField(required=False, max_length=100, help_text="The model version's name")


class SiteThresholdSerializer(serializers.ModelSerializer):
    site = serializers.CharField(source="site.code", read_only=True)
    model = serializers.CharField(source="model_version.name", read_only=True)
    created_by = serializers.CharField(source="created_by.username", read_only=True, allow_null=True)
    in_force = serializers.BooleanField(read_only=True, help_text="The newest of its site and model: in force")

    class Meta:
        model = SiteThreshold
        fields = [
            "id",
            "site",
            "model",
            "threshold",
            "reason",
            "evidence_sufficient",
            "evidence",
            "created_by",
            "created_at",
            "in_force",
        ]
        read_only_fields = fields


def _with_in_force(rows: QuerySet[SiteThreshold]) -> QuerySet[SiteThreshold]:
    newer = SiteThreshold.objects.filter(site=OuterRef("site"), model_version=OuterRef("model_version")).filter(
        Q(created_at__gt=OuterRef("created_at")) | Q(created_at=OuterRef("created_at"), pk__gt=OuterRef("pk"))
    )
    return rows.annotate(in_force=~Exists(newer))


class SiteThresholdListView(ApiView):
    permission_classes = [IsAuthenticated, IsAdmin]

    @extend_schema(
        parameters=[SiteThresholdFilterSerializer],
        responses=page_responses(SiteThresholdSerializer, 400, 403, 404),
        summary="Site thresholds, newest first, each with its evidence and whether it is in force (admins)",
    )
    def get(self, request: Request) -> Response:
        params = _query(request, SiteThresholdFilterSerializer)
        rows = SiteThreshold.objects.select_related("site", "model_version", "created_by")
        if params.get("site"):
            rows = rows.filter(site=validation_site(user=request.user, code=params["site"]))
        if params.get("model"):
            rows = rows.filter(model_version=validation_model(name=params["model"]))
        return self.paginated(_with_in_force(rows).order_by("-created_at", "-pk"), SiteThresholdSerializer)

    @extend_schema(
        request=SiteThresholdRequestSerializer,
        responses=responses({201: SiteThresholdSerializer}, 400, 403, 404),
        summary="Set a site's threshold for a model version from its local validation (admins; audited)",
        description="Its evidence is the validation report's figures at the new threshold over the period. 400 "
        "names the shortfall when fewer than PNEUMO_SITE_THRESHOLD_MIN_STUDIES signed studies or "
        "PNEUMO_SITE_THRESHOLD_MIN_POSITIVES positives back it and no reason is given. Unsigned studies of the "
        "site are judged at it at once (audited); signed ones keep the threshold they were read at.",
    )
    def post(self, request: Request) -> Response:
        data = _validated(SiteThresholdRequestSerializer, request.data)
        site = validation_site(user=request.user, code=data["site"])
        version = validation_model(name=data["model"])
        try:
            row = site_threshold_set(
                site=site,
                version=version,
                threshold=data["threshold"],
                reason=data["reason"],
                user=request.user,
                request=request,
                since=data.get("since"),
                until=data.get("until"),
            )
        except SiteThresholdRefused as error:
            raise ValidationError({"threshold": [str(error)]}) from error
        row.in_force = True  # just made: the newest of its site and model
        return Response(SiteThresholdSerializer(row).data, status=201)
