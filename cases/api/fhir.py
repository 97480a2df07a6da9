"""``GET /api/v1/studies/{id}/fhir/``: the study as a FHIR R4 Bundle (``application/fhir+json``).

Access and audit as for the study's JSON: ``study_for_user`` (another site's
study is a 404), then one audit event per read.
"""

from __future__ import annotations

from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from cases import selectors
from cases.api.views import ApiView, _json_errors
from cases.audit import audit_record
from cases.fhir import study_bundle
from inference.selectors import predictions_current_by_image

FHIR_JSON = "application/fhir+json"


class FhirJsonRenderer(JSONRenderer):
    media_type = FHIR_JSON
    format = "fhir"


class StudyFhirView(ApiView):
    # FHIR's own media type first, so that a client asking for nothing in particular gets it.
    renderer_classes = [FhirJsonRenderer, JSONRenderer]

    def handle_exception(self, exc: Exception) -> Response:
        # Errors are the API's JSON errors, as documented, whatever the Bundle's media type.
        response = super().handle_exception(exc)
        self.request.accepted_renderer = JSONRenderer()
        self.request.accepted_media_type = JSONRenderer.media_type
        return response

    @extend_schema(
        responses={(200, FHIR_JSON): OpenApiTypes.OBJECT, **_json_errors(404)},
        summary="The study as a FHIR R4 Bundle: Patient, ImagingStudy, Device, AI Observations, DiagnosticReport",
        description="DiagnosticReport.status is registered while there is neither an AI result nor a signature, "
        "preliminary while unconfirmed, final once signed and amended after an amendment. A muted AI result is "
        "never a finding: its Observation says it is not validated for the image.",
    )
    def get(self, request: Request, pk: int) -> Response:
        study = selectors.study_for_user(user=request.user, pk=pk)
        bundle = study_bundle(
            study=study,
            images=list(study.images.order_by("created_at", "pk")),
            predictions=predictions_current_by_image(study=study, user=request.user),
            reviews=list(selectors.reviews_for_study(study=study)),
        )
        audit_record(action="view_study_fhir", user=request.user, obj=study, request=request)
        return Response(bundle, content_type=FHIR_JSON)
