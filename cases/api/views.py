"""The JSON API's views: validate input, call one selector or service, shape the output.

Every object comes through a ``*_for_user`` selector, so another site's object
is 404 before any role check; roles are checked per action after that. Every
read of patient data writes an audit event.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.contrib.auth import authenticate
from django.contrib.auth.signals import user_logged_in
from django.db import transaction
from django.db.models import Count, Prefetch, Q, QuerySet, prefetch_related_objects
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from django.urls import resolve
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import status
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import APIException, NotFound, PermissionDenied, ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.pagination import PageNumberPagination
from rest_framework.parsers import JSONParser, MultiPartParser
from rest_framework.permissions import AllowAny, IsAuthenticated
from rest_framework.renderers import BaseRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response

from cases import selectors
from cases.api import serializers as s
from cases.api.authentication import ExpiringTokenAuthentication
from cases.api.metadata import ApiMetadata
from cases.api.permissions import CanReadWorklist, CanSeeStats, CanUpload, IsAdmin, ReadOrAdminWrites
from cases.api.schema import ApiAutoSchema
from cases.api.throttles import ApiUserThrottle, TokenThrottle, UploadThrottle
from cases.api.tokens import token_create, token_revoke
from cases.audit import audit_record
from cases.downloads import image_download
from cases.edges import (
    drawn,
    heatmap_viewed,
    image_viewed,
    png_response,
    review_error_status,
    upload_ingest,
    upload_result,
)
from cases.models import Agreement, ApiToken, Image, Review, Site, Study, User
from cases.otp.services import second_factor_required, second_factor_verify
from cases.pictures import heatmap_grid, heatmap_overlay_png, render_image_png
from cases.reviews import ReadingInput, ReviewError, review_amend, review_sign, study_claim, study_release
from inference.models import ModelVersion
from inference.registry import ModelVersionLocked, model_version_create, model_version_update

# --- Plumbing --------------------------------------------------------------------------------


class ApiPagination(PageNumberPagination):
    page_size = 50
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_page_size(self, request: Request) -> int:
        # DRF quietly falls back to the default on a page_size it cannot read: refuse it instead.
        # Empty is absent, as for every optional query parameter; above the maximum gives the maximum.
        value = request.query_params.get(self.page_size_query_param, "")
        if not value:
            return self.page_size
        digits = value.lstrip("0") if value.isascii() and value.isdigit() else ""
        if not digits:
            raise ValidationError({self.page_size_query_param: [f"A whole number from 1 to {self.max_page_size}."]})
        return self.max_page_size if len(digits) > 3 else min(int(digits), self.max_page_size)

    def get_schema_operation_parameters(self, view: Any) -> list[dict[str, Any]]:
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            parameter["schema"]["minimum"] = 1
            if parameter["name"] == self.page_size_query_param:
                parameter["description"] = (
                    f"Results per page: {self.page_size} unless given, at most {self.max_page_size}."
                )
        return parameters


class AnyMediaRenderer(BaseRenderer):
    """Lets a client ask for ``image/png`` or ``application/dicom``; views return those bytes themselves."""

    media_type = "*/*"
    format = "bin"

    def render(self, data: Any, accepted_media_type: str | None = None, renderer_context: Any = None) -> bytes:
        return data if isinstance(data, bytes) else b""


class ApiView(GenericAPIView):
    schema = ApiAutoSchema()
    metadata_class = ApiMetadata
    authentication_classes = [ExpiringTokenAuthentication, SessionAuthentication]
    permission_classes = [IsAuthenticated]
    throttle_classes = [ApiUserThrottle]
    parser_classes = [JSONParser]
    renderer_classes = [JSONRenderer]
    pagination_class = ApiPagination

    def paginated(self, rows: Iterable[Any], serializer_class: type, *, audit: str = "") -> Response:
        page = self.paginate_queryset(rows)
        if audit:
            audit_record(
                action=audit,
                user=self.request.user,
                request=self.request,
                count=len(page),
                page=self.paginator.page.number,
            )
        return self.get_paginated_response(
            serializer_class(page, many=True, context=self.get_serializer_context()).data
        )


class BinaryView(ApiView):
    renderer_classes = [JSONRenderer, AnyMediaRenderer]

    def finalize_response(self, request: Request, response: Any, *args: Any, **kwargs: Any) -> Any:
        # Errors are JSON whatever the client asked for (the bytes themselves bypass renderers).
        if isinstance(response, Response):
            request.accepted_renderer, request.accepted_media_type = JSONRenderer(), "application/json"
        return super().finalize_response(request, response, *args, **kwargs)


class NotFoundView(ApiView):
    """Every other path under /api/ (an id that is not a number, a typo): a JSON 404, never Django's HTML page.

    It authenticates first, as every API view does, so that an anonymous client gets 401 whatever the path.
    """

    schema = None  # not an operation of the API

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        path = request.path
        if not path.endswith("/") and resolve(path + "/").url_name is not None:
            raise NotFound(f"Not found: the API's paths end with a slash ({path}/).")
        raise NotFound()


class Conflict(APIException):
    status_code = status.HTTP_409_CONFLICT
    default_detail = "The object's state does not allow this now."
    default_code = "conflict"


def _require(view: ApiView, request: Request, permission_class: type) -> None:
    """A role check made after the object lookup, so that another site's object stays a 404."""
    permission = permission_class()
    if not permission.has_permission(request, view):
        raise PermissionDenied(permission.message)


def _query(request: Request, serializer_class: type) -> dict[str, Any]:
    serializer = serializer_class(data=request.query_params)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


UNKNOWN_SITE = "Unknown site, or not one of yours."


def _site_for(user: User, value: str) -> Site:
    """One of the user's sites by code or id; any other is 404, like another site's object, and never a hint."""
    site = selectors.site_for_user(user=user, value=value)
    if site is None:
        raise NotFound(UNKNOWN_SITE)
    return site


DETAIL = OpenApiResponse(s.DetailSerializer, description="What went wrong")
FIELD_ERRORS = OpenApiResponse(OpenApiTypes.OBJECT, description="Field errors: {field: [messages]}, or detail")
ERRORS = {
    400: FIELD_ERRORS,
    401: OpenApiResponse(s.DetailSerializer, description="Not signed in"),
    403: OpenApiResponse(s.DetailSerializer, description="Your role may not do this"),
    404: OpenApiResponse(
        s.DetailSerializer, description="Not found (or another site's, or a site not yours), or a page out of range"
    ),
    409: OpenApiResponse(s.DetailSerializer, description="The object's state does not allow this now"),
    429: OpenApiResponse(s.DetailSerializer, description="Too many requests"),
}


UPLOAD_REFUSED = OpenApiResponse(
    {"anyOf": [{"$ref": "#/components/schemas/UploadResult"}, {"type": "object", "additionalProperties": {}}]},
    description="Every file was refused (the same body as 201), or field errors",
)
REQUEST_TOO_LARGE = OpenApiResponse(
    s.DetailSerializer, description="The request is larger than PNEUMO_MAX_REQUEST_BYTES (refused before it is read)"
)


def responses(ok: dict, *codes: int) -> dict:
    return {**ok, **{code: ERRORS[code] for code in (401, 429, *codes)}}


def page_responses(serializer: type, *codes: int) -> dict:
    """A paginated list: a page number out of range is 404, a page_size that is not a number 400."""
    return {200: serializer(many=True), **{code: ERRORS[code] for code in (400, 401, 404, 429, *codes)}}


def _json_errors(*codes: int) -> dict:
    return {(code, "application/json"): ERRORS[code] for code in (401, 429, *codes)}


# --- Authentication --------------------------------------------------------------------------------


class TokenView(ApiView):
    """Sign in for a token (POST, with username and password), or revoke the token in use (DELETE)."""

    throttle_classes = [TokenThrottle]

    def get_authenticators(self) -> list:
        # Signing in takes credentials only: a stale token or a session must not get in the way.
        if self.request is not None and self.request.method == "POST":
            return []
        return super().get_authenticators()

    def get_permissions(self) -> list:
        return [AllowAny()] if self.request.method == "POST" else [IsAuthenticated()]

    @extend_schema(
        request=s.TokenRequestSerializer,
        auth=[],
        responses={200: s.TokenSerializer, 400: FIELD_ERRORS, 401: s.OtpRequiredSerializer, 429: ERRORS[429]},
        summary="Get a token",
        description=(
            "Lockout after repeated failures (per username and address). Admins also send their second factor"
            ' as "otp" (a TOTP or recovery code); without a valid one the answer is 401 with "otp_required".'
        ),
    )
    def post(self, request: Request) -> Response:
        data = _validated(s.TokenRequestSerializer, request.data)
        user = authenticate(request=request, username=data["username"], password=data["password"])
        if getattr(request, "axes_locked_out", False):
            return Response({"detail": "Too many failed sign-ins: try again later."}, status=429)
        if user is None:
            return Response({"detail": "Invalid username or password."}, status=400)
        refused = _second_factor_refusal(request, user=user, otp=data.get("otp", ""))
        if refused is not None:
            return refused
        key, token = token_create(user=user, request=request)
        user_logged_in.send(sender=type(user), request=request, user=user)
        return Response({"token": key, "expires": token.expires_at})

    @extend_schema(
        request=None,
        responses={204: None, 400: DETAIL, 401: ERRORS[401], 429: ERRORS[429]},
        summary="Revoke the token in use",
    )
    def delete(self, request: Request) -> Response:
        if not isinstance(request.auth, ApiToken):
            return Response({"detail": "Send the token to revoke in the Authorization header."}, status=400)
        token_revoke(token=request.auth, request=request)
        return Response(status=status.HTTP_204_NO_CONTENT)


def _second_factor_refusal(request: Request, *, user: Any, otp: str) -> Response | None:
    """Admins (and users who enrolled) send their TOTP or a recovery code; a wrong one counts towards the lockout."""
    if not second_factor_required(user=user):
        return None
    if otp and second_factor_verify(request=request, user=user, token=otp) is not None:
        return None
    if getattr(request, "axes_locked_out", False):
        return Response({"detail": "Too many failed sign-ins: try again later."}, status=429)
    detail = "Invalid second-factor code." if otp else 'This account needs its second factor: send "otp".'
    return Response({"detail": detail, "otp_required": True}, status=401)


def _validated(serializer_class: type, data: Any, **kwargs: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data, **kwargs)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


# --- Sites and patients ------------------------------------------------------------------------------


class SiteListView(ApiView):
    @extend_schema(responses=page_responses(s.SiteSerializer), summary="Your sites")
    def get(self, request: Request) -> Response:
        return self.paginated(selectors.sites_for_user(user=request.user).order_by("code"), s.SiteSerializer)


class SiteDetailView(ApiView):
    @extend_schema(responses=responses({200: s.SiteSerializer}, 404), summary="One of your sites")
    def get(self, request: Request, code: str) -> Response:
        return Response(s.SiteSerializer(_site_for(request.user, code)).data)

    @extend_schema(
        request=s.SiteChangeSerializer,
        responses=responses({200: s.SiteSerializer}, 400, 403, 404),
        summary="Set a site's AI mode (admins; audited)",
        description="shadow: predictions run and are stored, but until a study is signed nobody but an admin sees "
        "any trace of them (pages, API, DICOMweb, FHIR, worklist, alerts, result destinations). Switching to live "
        "shows the stored results of unsigned studies at once; off: studies are never predicted.",
    )
    def patch(self, request: Request, code: str) -> Response:
        from cases.ai_modes import site_ai_mode_set

        site = _site_for(request.user, code)  # another site's is 404 before anything else, as for every object
        _require(self, request, IsAdmin)
        data = _validated(s.SiteChangeSerializer, request.data)
        site = site_ai_mode_set(site=site, mode=data["ai_mode"], user=request.user, request=request)
        return Response(s.SiteSerializer(site).data)


class PatientListView(ApiView):
    @extend_schema(
        parameters=[s.PatientFilterSerializer],
        responses=page_responses(s.PatientSerializer, 400),
        summary="Patients of your sites (search by ID or name with POST /patients/search/)",
    )
    def get(self, request: Request) -> Response:
        filters = _query(request, s.PatientFilterSerializer)
        patients = selectors.patients_for_user(user=request.user)
        if filters.get("site"):
            patients = patients.filter(site=_site_for(request.user, filters["site"]))
        if filters["demographics_conflict"] is not None:
            patients = (
                patients.exclude(demographics_conflict="")
                if filters["demographics_conflict"]
                else (patients.filter(demographics_conflict=""))
            )
        patients = patients.order_by(filters["ordering"], "pk")
        return self.paginated(patients, s.PatientSerializer, audit="list_patients")


class PatientSearchView(ApiView):
    LIMIT = 50

    @extend_schema(
        request=s.PatientSearchSerializer,
        responses=responses({200: s.PatientSearchResultSerializer}, 400, 404),
        summary="Find patients by ID or name (in the body, so they never reach access logs)",
    )
    def post(self, request: Request) -> Response:
        data = _validated(s.PatientSearchSerializer, request.data)
        patients = selectors.patients_for_user(user=request.user)
        if data.get("site"):
            patients = patients.filter(site=_site_for(request.user, data["site"]))
        rows = list(patients.filter(_patient_match(data["query"])).order_by("patient_id", "pk")[: self.LIMIT + 1])
        audit_record(action="search_patients", user=request.user, request=request, count=len(rows[: self.LIMIT]))
        return Response(
            {
                "results": s.PatientSerializer(rows[: self.LIMIT], many=True).data,
                "truncated": len(rows) > self.LIMIT,
            }
        )


def _patient_match(query: str) -> Q:
    query = query.strip()
    words = [w for w in query.replace("^", " ").replace(",", " ").split() if w]
    by_name = Q()
    for word in words:
        by_name &= Q(name__icontains=word)
    return Q(patient_id__iexact=query) | Q(patient_id__istartswith=query) | (by_name if words else Q(pk__in=[]))


class PatientDetailView(ApiView):
    @extend_schema(responses=responses({200: s.PatientDetailSerializer}, 404), summary="One patient and their studies")
    def get(self, request: Request, pk: int) -> Response:
        patient = selectors.patient_for_user(user=request.user, pk=pk)
        prefetch_related_objects([patient], Prefetch("studies", queryset=Study.objects.order_by("-received_at", "-pk")))
        audit_record(action="view_patient", user=request.user, obj=patient, request=request)
        return Response(s.PatientDetailSerializer(patient).data)


# --- Studies -------------------------------------------------------------------------------------------


def _studies_filtered(studies: QuerySet[Study], user: User, filters: dict[str, Any]) -> QuerySet[Study]:
    exact = {name: filters[name] for name in ("status", "priority") if filters.get(name)}
    if filters.get("patient"):
        exact["patient_id"] = filters["patient"]
    if filters.get("study_instance_uid"):
        exact["study_instance_uid"] = filters["study_instance_uid"]
    if filters.get("site"):
        exact["site"] = _site_for(user, filters["site"])
    if filters.get("flagged") is not None:
        exact["ai_flagged"] = filters["flagged"]
    if filters.get("received_from"):
        exact["received_at__gte"] = selectors.day_start(filters["received_from"])
    if filters.get("received_to"):
        exact["received_at__lte"] = selectors.day_end(filters["received_to"])
    return studies.filter(**exact).order_by(*s.StudyFilterSerializer.ORDERINGS[filters["ordering"]])


def _study_detail(user: User, pk: int) -> Study:
    """The study with its images, their predictions (those ``user`` may see) and its reviews, in fixed queries."""
    from inference.selectors import predictions_for_user

    study = selectors.study_for_user(user=user, pk=pk)
    predictions = predictions_for_user(user=user, study=study).select_related("model_version")
    prefetch_related_objects(
        [study],
        Prefetch(
            "images",
            queryset=Image.objects.order_by("created_at", "pk").prefetch_related(
                Prefetch("predictions", queryset=predictions)
            ),
        ),
        Prefetch("reviews", queryset=Review.objects.select_related("radiologist", "model_version").order_by("version")),
        Prefetch("reviews", queryset=Review.objects.order_by("-version"), to_attr="reviews_desc"),
    )
    return study


class StudyListView(ApiView):
    def get_permissions(self) -> list:
        return [IsAuthenticated(), CanUpload()] if self.request.method == "POST" else [IsAuthenticated()]

    def get_throttles(self) -> list:
        return [*super().get_throttles(), UploadThrottle()]

    def get_parsers(self) -> list:
        # Uploads are multipart; GET has no body.
        return [MultiPartParser()]

    @extend_schema(
        parameters=[s.StudyFilterSerializer],
        responses=page_responses(s.StudySerializer, 400),
        summary="Studies of your sites",
    )
    def get(self, request: Request) -> Response:
        filters = _query(request, s.StudyFilterSerializer)
        studies = _studies_filtered(selectors.study_rows_for_user(user=request.user), request.user, filters)
        return self.paginated(studies, s.StudySerializer, audit="list_studies")

    @extend_schema(
        request={"multipart/form-data": s.UploadSerializer},
        responses=responses({201: s.UploadResultSerializer, 400: UPLOAD_REFUSED, 413: REQUEST_TOO_LARGE}, 403, 404),
        summary="Upload studies (technicians and admins)",
        description="The same decoding and checks as the upload page. 201 when at least one file was stored or "
        "was a duplicate (its study_id is the existing study); 400 when every file was refused or skipped; 413 when "
        "the request is larger than the limit for one request.",
    )
    def post(self, request: Request) -> Response:
        data = _validated(s.UploadSerializer, request.data)
        site = _upload_site(request.user, data.get("site", ""))
        report = upload_ingest(request=request._request, files=data["files"], fields=data, site=site)
        return Response(upload_result(report), status=201 if report.accepted else 400)


def _upload_site(user: User, value: str) -> Site:
    site = selectors.upload_site_for_user(user=user, chosen=_site_for(user, value) if value else None)
    if site is None:
        raise ValidationError({"site": [selectors.UPLOAD_SITE_REQUIRED]})
    return site


class StudyDetailView(ApiView):
    @extend_schema(
        responses=responses({200: s.StudyDetailSerializer}, 404),
        summary="One study: images, AI results (unconfirmed until signed) and signed reviews",
    )
    def get(self, request: Request, pk: int) -> Response:
        study = _study_detail(request.user, pk)
        audit_record(action="view_study", user=request.user, obj=study, request=request)
        return Response(s.StudyDetailSerializer(study).data)


class StudyPredictionsView(ApiView):
    @extend_schema(
        request=s.PredictionsRequestSerializer,
        responses=responses({200: s.StudyPredictionsSerializer}, 400, 403, 404, 409),
        summary="Run the AI on the study's images: each routed to its patient's model (re-queues failed results); "
        "admins may name a model to run every image again with it",
    )
    def post(self, request: Request, pk: int) -> Response:
        from inference.registry import active_model_versions
        from inference.services import predictions_request

        study = selectors.study_for_user(user=request.user, pk=pk)
        _require(self, request, CanReadWorklist)
        body = s.PredictionsRequestSerializer(data=request.data or {})
        body.is_valid(raise_exception=True)
        version = None
        if body.validated_data.get("model"):
            version = _requested_version(request, body.validated_data["model"])
            if isinstance(version, Response):
                return version
        elif not active_model_versions():
            return Response({"detail": "No AI model is active."}, status=409)
        with transaction.atomic():
            requested = predictions_request(study=study, retry_failed=True, version=version, user=request.user)
            audit_record(
                action="request_predictions",
                user=request.user,
                obj=study,
                request=request,
                **({"model": version.name} if version else {}),
            )
        from inference.selectors import predictions_for_user

        predictions = list(
            predictions_for_user(user=request.user, study=study)
            .filter(pk__in=[p.pk for p in requested])
            .select_related("model_version", "image")
            .order_by("image_id", "pk")
        )
        for prediction in predictions:
            prediction.image.study = study
        return Response({"study_id": study.pk, "predictions": s.PredictionSerializer(predictions, many=True).data})


def _requested_version(request: Request, name: str) -> ModelVersion | Response:
    """The version an admin named for a re-run: 403 for others, 404 unknown, 409 not prepared."""
    from inference.registry import model_version_servable

    if not selectors.user_is_admin(user=request.user):
        return Response({"detail": "Only an admin may choose the model."}, status=403)
    version = ModelVersion.objects.filter(name=name).first()
    if version is None:
        return Response({"detail": f"No model version is named {name!r}."}, status=404)
    problem = model_version_servable(version)
    if problem:
        return Response({"detail": problem}, status=409)
    return version


# --- Reading and signing ---------------------------------------------------------------------------------


def _review_error_response(error: ReviewError) -> Response:
    body = {error.field: [error.message]} if error.field else {"detail": error.message}
    if error.current_version is not None:
        body["current_version"] = error.current_version
    return Response(body, status=review_error_status(error))


class _ReadingView(ApiView):
    def reading_call(
        self, request: Request, pk: int, action: Callable[[], Study | Review], role: type | None = None
    ) -> Response:
        selectors.study_for_user(user=request.user, pk=pk)  # another site's study: 404 before any role check
        if role is not None:
            _require(self, request, role)
        try:
            result = action()
        except ReviewError as error:
            return _review_error_response(error)
        if isinstance(result, Review):
            return Response(s.ReviewSerializer(result).data, status=201)
        return Response(s.StudySerializer(selectors.study_rows_for_user(user=request.user).get(pk=pk)).data)


class StudyClaimView(_ReadingView):
    @extend_schema(
        request=None,
        responses=responses({200: s.StudySerializer}, 403, 404, 409),
        summary="Claim a study for reading (radiologists)",
    )
    def post(self, request: Request, pk: int) -> Response:
        return self.reading_call(request, pk, lambda: study_claim(study_id=pk, user=request.user, request=request))


class StudyReleaseView(_ReadingView):
    @extend_schema(
        request=None,
        responses=responses({200: s.StudySerializer}, 403, 404, 409),
        summary="Give a claimed study back to the worklist (its reader, or an admin)",
    )
    def post(self, request: Request, pk: int) -> Response:
        return self.reading_call(
            request, pk, lambda: study_release(study_id=pk, user=request.user, request=request), role=CanReadWorklist
        )


class StudyReviewView(_ReadingView):
    @extend_schema(
        request=s.ReadingSerializer,
        responses=responses({201: s.ReviewSerializer}, 400, 403, 404, 409),
        summary="Sign the final finding (radiologists)",
        description="The server derives agreement with the AI; a reason is required when the finding "
        "overrules it. The study becomes reported.",
    )
    def post(self, request: Request, pk: int) -> Response:
        data = _validated(s.ReadingSerializer, request.data)
        reading = ReadingInput(finding=data["finding"], reason=data["reason"], report=data["report"])
        return self.reading_call(
            request, pk, lambda: review_sign(study_id=pk, user=request.user, reading=reading, request=request)
        )


class StudyAmendView(_ReadingView):
    @extend_schema(
        request=s.AmendmentSerializer,
        responses=responses({201: s.ReviewSerializer}, 400, 403, 404, 409),
        summary="Amend a signed report: a new signed version (radiologists)",
    )
    def post(self, request: Request, pk: int) -> Response:
        data = _validated(s.AmendmentSerializer, request.data)
        reading = ReadingInput(finding=data["finding"], reason=data["reason"], report=data["report"])
        return self.reading_call(
            request,
            pk,
            lambda: review_amend(
                study_id=pk,
                user=request.user,
                reading=reading,
                amendment_reason=data["amendment_reason"],
                amends_version=data["amends_version"],
                request=request,
            ),
        )


# --- Images ----------------------------------------------------------------------------------------------


class ImageFileView(BinaryView):
    @extend_schema(
        responses={
            (200, "application/dicom"): OpenApiTypes.BINARY,
            (200, "image/png"): OpenApiTypes.BINARY,
            (200, "image/jpeg"): OpenApiTypes.BINARY,
            **_json_errors(404),
        },
        summary="Download the original file (attachment)",
    )
    def get(self, request: Request, pk: int) -> HttpResponse:
        return image_download(request=request, pk=pk)


class ImageRenderView(BinaryView):
    @extend_schema(
        parameters=[s.RenderParamsSerializer],
        responses={(200, "image/png"): OpenApiTypes.BINARY, **_json_errors(400, 404)},
        summary="The image as an 8-bit PNG under a window",
    )
    def get(self, request: Request, pk: int) -> HttpResponse:
        params = _query(request, s.RenderParamsSerializer)
        image = image_viewed(request=request, pk=pk, rendering="render")
        return png_response(drawn(lambda: render_image_png(image, **params)))


class ImageHeatmapPngView(BinaryView):
    @extend_schema(
        parameters=[s.HeatmapParamsSerializer],
        responses={(200, "image/png"): OpenApiTypes.BINARY, **_json_errors(400, 404)},
        summary="The AI heatmap as a transparent PNG overlay (unconfirmed until signed)",
    )
    def get(self, request: Request, pk: int) -> HttpResponse:
        params = _query(request, s.HeatmapParamsSerializer)
        prediction = heatmap_viewed(request=request, pk=pk, rendering="png")
        return png_response(drawn(lambda: heatmap_overlay_png(prediction, size=params.get("size"))), unconfirmed=True)


class ImageHeatmapJsonView(ApiView):
    @extend_schema(
        responses=responses({200: s.HeatmapSerializer}, 404),
        summary="The AI heatmap grid and colour map (unconfirmed until signed)",
    )
    def get(self, request: Request, pk: int) -> Response:
        prediction = heatmap_viewed(request=request, pk=pk, rendering="json")
        grid = drawn(lambda: heatmap_grid(prediction))
        confirmed = s.ai_review_of(prediction.image.study) == Agreement.AGREE
        return Response({**grid, "ai_result_confirmed": confirmed, "ai_notice": s.AI_NOTICE})


# --- Worklist, models, stats, audit ---------------------------------------------------------------------------


class WorklistView(ApiView):
    permission_classes = [IsAuthenticated, CanReadWorklist]

    @extend_schema(
        parameters=[s.WorklistFilterSerializer],
        responses=page_responses(s.WorklistStudySerializer, 400, 403),
        summary="The reading worklist, in the worklist page's order (radiologists and admins)",
    )
    def get(self, request: Request) -> Response:
        from cases.worklist import worklist_filters_from, worklist_for_user

        params = _query(request, s.WorklistFilterSerializer)
        site = _site_for(request.user, params["site"]).pk if params.get("site") else None
        filters = worklist_filters_from({**params, "site": site})
        page = self.paginate_queryset(worklist_for_user(user=request.user, filters=filters))
        _image_counts_attach(page)
        audit_record(action="view_worklist", user=request.user, request=request, count=len(page))
        return self.get_paginated_response(s.WorklistStudySerializer(page, many=True).data)


def _image_counts_attach(studies: list[Study]) -> None:
    rows = Image.objects.filter(study__in=studies).values("study_id").annotate(n=Count("pk")).order_by()
    counts = {row["study_id"]: row["n"] for row in rows}
    for study in studies:
        study.image_count = counts.get(study.pk, 0)


class ModelVersionListView(ApiView):
    permission_classes = [IsAuthenticated, ReadOrAdminWrites]

    @extend_schema(
        responses=page_responses(s.ModelVersionReadSerializer),
        summary="Model versions",
        description="source_path (where the model file lies on the server) is shown to admins only.",
    )
    def get(self, request: Request) -> Response:
        from inference.selectors import model_versions

        return self.paginated(model_versions(), s.ModelVersionReadSerializer)

    @extend_schema(
        request=s.ModelVersionSerializer,
        responses=responses({201: s.ModelVersionReadSerializer}, 400, 403, 409),
        summary="Register a model version (admins)",
        description="409 when the name is taken, or for is_active: activation is refused until prepare_models "
        "converted the version, it passed the parity gate and it has its scope checks (chest and domain).",
    )
    def post(self, request: Request) -> Response:
        from inference.registry import ModelNotReady

        data = _model_version_fields(request)
        try:
            version = model_version_create(user=request.user, fields=data, request=request)
        except ModelNotReady as error:
            raise Conflict(str(error)) from error
        return Response(_model_version_shown(request, version), status=201)


def _model_version_fields(request: Request, version: ModelVersion | None = None) -> dict[str, Any]:
    """The validated fields of a create (or of a change of ``version``); a name already taken is a conflict."""
    serializer = s.ModelVersionSerializer(data=request.data, instance=version, partial=version is not None)
    if serializer.is_valid():
        return serializer.validated_data
    if [error.code for error in serializer.errors.get("name", [])] == ["unique"]:
        raise Conflict(serializer.errors["name"][0])
    raise ValidationError(serializer.errors)


class ModelVersionDetailView(ApiView):
    permission_classes = [IsAuthenticated, ReadOrAdminWrites]

    @extend_schema(
        responses=responses({200: s.ModelVersionReadSerializer}, 404),
        summary="One model version",
        description="source_path (where the model file lies on the server) is shown to admins only.",
    )
    def get(self, request: Request, pk: int) -> Response:
        return Response(_model_version_shown(request, _model_version(pk)))

    @extend_schema(
        request=s.ModelVersionSerializer(partial=True),
        responses=responses({200: s.ModelVersionReadSerializer}, 400, 403, 404, 409),
        summary="Change or (de)activate a model version (admins)",
        description="409 when the name is taken, when the version is in use and kept, or for is_active: "
        "activation is refused until prepare_models converted the version, it passed the parity gate "
        "and it has its scope checks (chest and domain).",
    )
    def patch(self, request: Request, pk: int) -> Response:
        from inference.registry import ModelNotReady

        version = _model_version(pk)
        data = _model_version_fields(request, version)
        try:
            version = model_version_update(version=version, user=request.user, fields=data, request=request)
        except (ModelNotReady, ModelVersionLocked) as error:
            raise Conflict(str(error)) from error
        return Response(_model_version_shown(request, version))


def _model_version_shown(request: Request, version: ModelVersion) -> dict[str, Any]:
    return s.ModelVersionReadSerializer(version, context={"request": request}).data


def _model_version(pk: int) -> ModelVersion:
    from inference.selectors import model_versions

    return get_object_or_404(model_versions(), pk=pk)


class StatsView(ApiView):
    permission_classes = [IsAuthenticated, CanSeeStats]

    @extend_schema(
        parameters=[s.StatsParamsSerializer],
        responses=responses({200: s.StatsSerializer}, 400, 403),
        summary="Dashboard figures for your sites, including AI-vs-radiologist agreement (radiologists and admins)",
    )
    def get(self, request: Request) -> Response:
        from cases.stats import dashboard_stats

        params = _query(request, s.StatsParamsSerializer)
        return Response(s.StatsSerializer(dashboard_stats(user=request.user, days=params["days"])).data)


class AuditListView(ApiView):
    permission_classes = [IsAuthenticated, IsAdmin]

    @extend_schema(
        parameters=[s.AuditFilterSerializer],
        responses=page_responses(s.AuditEventSerializer, 400, 403),
        summary="The audit trail",
    )
    def get(self, request: Request) -> Response:
        filters = _query(request, s.AuditFilterSerializer)
        events = selectors.audit_events_filtered(user=request.user, filters=filters)
        return self.paginated(events.order_by("-created_at", "-pk"), s.AuditEventSerializer)
