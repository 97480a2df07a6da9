"""DICOMweb's views (PS3.18): STOW-RS, QIDO-RS and WADO-RS, each a thin edge over ingest and the selectors.

Authentication, throttles and access are the API's: ``Authorization: Token``
(or a browser session), a user sees their sites' studies only (admins every
site), another site's study is 404 and a role check comes after the lookup.
Every search and retrieval is audited as the API's reads are; stored instances
are audited by ingest. ``?site=CODE`` narrows any route to one of the user's
sites (a StudyInstanceUID is unique per site, so an admin may see one twice).
Errors are JSON (``{"detail": ...}``) whatever the client accepts.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from django.conf import settings
from django.core.files.storage import default_storage
from django.http import HttpResponse, StreamingHttpResponse
from django.urls import reverse
from rest_framework.authentication import SessionAuthentication
from rest_framework.exceptions import APIException, NotAcceptable, NotFound, ParseError, PermissionDenied
from rest_framework.negotiation import BaseContentNegotiation
from rest_framework.parsers import BaseParser, DataAndFiles
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.views import APIView

from cases.api.authentication import ExpiringTokenAuthentication
from cases.api.permissions import CanUpload
from cases.api.throttles import ApiUserThrottle, UploadThrottle
from cases.api.views import _site_for, _upload_site  # the API's site rules, not a second copy
from cases.audit import audit_record
from cases.dicomweb import instances as found
from cases.dicomweb import (
    multipart,
    outbox_source,  # noqa: F401 - registers result objects as instances of their study
    qido,
    transcode,
)
from cases.dicomweb.json_model import CANNOT_UNDERSTAND, FailedRef, StoredRef, header_uids, metadata_json, stow_response
from cases.edges import drawn, no_store, png_response
from cases.ingest import DUPLICATE, STORED, IncomingFile, studies_ingest
from cases.middleware_limits import declared_length
from cases.models import Image, Site
from cases.pictures import render_image_png

logger = logging.getLogger(__name__)

DICOM_JSON = "application/dicom+json"
DICOM = "application/dicom"
HEAD_BYTES = 16 * 1024  # enough of a part's header to name it in a failure


class UnreadBody(BaseParser):
    """STOW-RS reads its body itself, part by part; asked for form data (CSRF checks of a session), DRF gets none."""

    media_type = "*/*"

    def parse(self, stream: Any, media_type: str | None = None, parser_context: Any = None) -> DataAndFiles:
        return DataAndFiles({}, {})


class JsonErrors(BaseContentNegotiation):
    """Views answer DICOM media types themselves; DRF only ever renders errors, as JSON."""

    def select_parser(self, request: Request, parsers: list) -> BaseParser:
        return UnreadBody()

    def select_renderer(self, request: Request, renderers: list, format_suffix: str | None = None) -> tuple:
        return JSONRenderer(), JSONRenderer.media_type


class UnsupportedMediaType(APIException):
    status_code = 415
    default_detail = 'Send multipart/related; type="application/dicom".'


class LengthRequired(APIException):
    status_code = 411
    default_detail = "Send the body with a Content-Length."


class DicomwebView(APIView):
    schema = None  # DICOMweb is specified by PS3.18 (and its conformance), not by the API's OpenAPI document
    authentication_classes = [ExpiringTokenAuthentication, SessionAuthentication]
    permission_classes = [IsAuthenticated]
    throttle_classes = [ApiUserThrottle]
    content_negotiation_class = JsonErrors
    renderer_classes = [JSONRenderer]
    parser_classes: list = []

    def site(self) -> Site | None:
        code = self.request.query_params.get("site", "")
        return _site_for(self.request.user, code) if code else None

    def url(self, *, study: str, series: str = "", instance: str = "") -> str:
        if instance:
            name, kwargs = "dicomweb:instance", {"study": study, "series": series, "instance": instance}
        elif series:
            name, kwargs = "dicomweb:series-retrieve", {"study": study, "series": series}
        else:
            name, kwargs = "dicomweb:study", {"study": study}
        return self.request.build_absolute_uri(reverse(name, kwargs=kwargs))

    def studies(self, study: str) -> list:
        studies = found.studies_by_uid(user=self.request.user, study_uid=study, site=self.site())
        if not studies:
            raise NotFound("No such study, or not one of your sites'.")
        return studies

    def instance(self, study: str, series: str, instance: str) -> found.Instance:
        match = found.instance_for_user(
            user=self.request.user, study_uid=study, series_uid=series, sop_uid=instance, site=self.site()
        )
        if match is None:
            raise NotFound("No such instance, or not one of your sites'.")
        return match

    def searched(self, rows: list[dict], *, level: str) -> HttpResponse:
        _accepts(self.request, (DICOM_JSON, "application/json"))
        audit_record(action="dicomweb_search", user=self.request.user, request=self.request, level=level,
                     count=len(rows))  # fmt: skip
        return _dicom_json(rows)


def _dicom_json(body: Any, status: int = 200) -> HttpResponse:
    return no_store(HttpResponse(json.dumps(body), status=status, content_type=DICOM_JSON))


def _accepts(request: Request, media_types: tuple[str, ...]) -> None:
    """406 unless the Accept header (absent: anything) allows one of ``media_types``."""
    accept = request.headers.get("Accept", "")
    allowed = {"*/*", *media_types, *(f"{t.split('/')[0]}/*" for t in media_types)}
    if not accept.strip() or any(multipart.media_type_of(i.strip())[0] in allowed for i in accept.split(",")):
        return
    raise NotAcceptable(f"This resource is sent as {', '.join(media_types)}.")


def _query(request: Request) -> dict[str, list[str]]:
    try:
        return qido.query_values({k: request.query_params.getlist(k) for k in request.query_params if k != "site"})
    except qido.QueryError as error:
        raise ParseError(str(error)) from error


# --- QIDO-RS and STOW-RS --------------------------------------------------------------------------


class StudiesView(DicomwebView):
    def get_throttles(self) -> list:
        return (
            [*super().get_throttles(), UploadThrottle()] if self.request.method == "POST" else super().get_throttles()
        )

    def get(self, request: Request) -> HttpResponse:
        """QIDO-RS Search for Studies."""
        try:
            filters = qido.study_filters(_query(request))
        except qido.QueryError as error:
            raise ParseError(str(error)) from error
        filters = found.StudyFilters(**{**filters.__dict__, "site": self.site()})
        studies = found.studies_dicomweb(user=request.user, filters=filters)
        by_study: dict[int, list] = {s.pk: [] for s in studies}
        for instance in found.instances_of(studies):
            by_study[instance.study.pk].append(instance)
        return self.searched([qido.study_json(s, by_study[s.pk], self.url) for s in studies], level="study")

    def post(self, request: Request) -> HttpResponse:
        """STOW-RS Store Instances: each part through ingest, as an upload."""
        boundary = _stow_boundary(request)
        if not CanUpload().has_permission(request, self):
            raise PermissionDenied(CanUpload.message)
        site = _upload_site(request.user, request.query_params.get("site", ""))
        parts = _StowParts(
            multipart.iter_parts(request._request, boundary, part_limit=settings.PNEUMO_MAX_UPLOAD_BYTES)
        )
        report = studies_ingest(files=parts.incoming(), site=site, user=request.user, request=request._request)
        return self.stow_answer(parts, report.files)

    def stow_answer(self, parts: _StowParts, outcomes: list) -> HttpResponse:
        by_name = {o.name: o for o in outcomes}
        images = Image.objects.select_related("study").in_bulk(
            [o.image_id for o in outcomes if o.status in (STORED, DUPLICATE) and o.image_id]
        )
        stored, failed = [], list(parts.failed)
        for name, head in parts.ingested:
            outcome = by_name.get(name)
            image = images.get(outcome.image_id) if outcome and outcome.status in (STORED, DUPLICATE) else None
            if image is None:
                failed.append(FailedRef(*header_uids(head), reason=CANNOT_UNDERSTAND))
                logger.info("STOW-RS part refused: %s", outcome.reason if outcome else "no outcome")
                continue
            url = self.url(study=image.study.study_instance_uid, series=image.series_instance_uid,
                           instance=image.sop_instance_uid) if image.series_instance_uid else ""  # fmt: skip
            stored.append((image, StoredRef(image.sop_class_uid, image.sop_instance_uid, url)))
        if parts.malformed and not parts.ingested and not parts.failed:
            raise ParseError(parts.malformed)
        if parts.malformed:  # the parts before the break were stored: say so, and that the rest failed
            failed.append(FailedRef("", "", reason=CANNOT_UNDERSTAND))
        if not stored and not failed:
            raise ParseError("The body holds no instance.")
        study_uids = {image.study.study_instance_uid for image, _ in stored}
        retrieve = self.url(study=study_uids.pop()) if len(study_uids) == 1 else ""
        body = stow_response(stored=[ref for _, ref in stored], failed=failed, retrieve_url=retrieve)
        return _dicom_json(body, status=409 if not stored else 202 if failed else 200)


def _stow_boundary(request: Request) -> str:
    media_type, params = multipart.media_type_of(request.META.get("CONTENT_TYPE", ""))
    if media_type != "multipart/related" or params.get("type", "").lower() != DICOM:
        raise UnsupportedMediaType()
    # Django reads no body without a Content-Length (waitress and nginx de-chunk first; runserver does not).
    if not declared_length(request._request) and request.META.get("HTTP_TRANSFER_ENCODING"):
        raise LengthRequired()
    return params.get("boundary", "")


class _StowParts:
    """The request's parts handed to ingest one at a time; what was refused before ingest, and each part's head."""

    def __init__(self, parts: Iterator[multipart.Part]) -> None:
        self.parts = parts
        self.failed: list[FailedRef] = []
        self.ingested: list[tuple[str, bytes]] = []
        self.malformed = ""

    def incoming(self) -> Iterator[IncomingFile]:
        try:
            yield from self._incoming()
        except multipart.MultipartError as error:
            logger.info("STOW-RS body malformed: %s", error)
            self.malformed = str(error)

    def _incoming(self) -> Iterator[IncomingFile]:
        for number, part in enumerate(self.parts, start=1):
            head = part.file.read(HEAD_BYTES)
            part.file.seek(0)
            refusal = _part_refusal(part, head, number)
            if refusal:
                part.file.close()
                logger.info("STOW-RS part %d refused before ingest: %s", number, refusal)
                self.failed.append(FailedRef(*header_uids(head), reason=CANNOT_UNDERSTAND))
                continue
            name = f"stow-part-{number}.dcm"
            self.ingested.append((name, head))
            yield IncomingFile(name, opener=lambda file=part.file: file)


def _part_refusal(part: multipart.Part, head: bytes, number: int) -> str:
    if number > settings.DATA_UPLOAD_MAX_NUMBER_FILES:
        return f"more than {settings.DATA_UPLOAD_MAX_NUMBER_FILES} parts"
    if part.too_large:
        return "larger than PNEUMO_MAX_UPLOAD_BYTES"
    if part.media_type not in (DICOM, "application/octet-stream") and part.headers.get("content-type"):
        return f"a part of type {part.media_type}"
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive, not a DICOM instance"
    return ""


class SeriesSearchView(DicomwebView):
    def get(self, request: Request, study: str) -> HttpResponse:
        """QIDO-RS Search for Series of a study."""
        series = found.series_of(found.instances_of(self.studies(study)))
        matches = _matching(qido.series_matching, series, _query(request))
        return self.searched([qido.series_json(s, self.url) for s in matches], level="series")


class InstanceSearchView(DicomwebView):
    def get(self, request: Request, study: str, series: str) -> HttpResponse:
        """QIDO-RS Search for Instances of a series."""
        instances = [i for i in found.instances_of(self.studies(study)) if i.series_uid == series]
        if not instances:
            raise NotFound("No such series, or not one of your sites'.")
        matches = _matching(qido.instances_matching, instances, _query(request))
        return self.searched([qido.instance_json(i, self.url) for i in matches], level="instance")


def _matching(select: Any, rows: list, values: dict[str, list[str]]) -> list:
    try:
        return select(rows, values)
    except qido.QueryError as error:
        raise ParseError(str(error)) from error


# --- WADO-RS ------------------------------------------------------------------------------------------


def wanted_syntaxes(accept: str) -> list[str]:
    """The transfer syntaxes an Accept header allows for DICOM, best first; Explicit VR Little Endian by default."""
    if not accept.strip():
        return [transcode.DEFAULT]
    ranked = []
    for position, item in enumerate(accept.split(",")):
        media_type, params = multipart.media_type_of(item.strip())
        part_type = params.get("type", DICOM).lower()
        if media_type in ("*/*", "multipart/*", DICOM) or (media_type == "multipart/related" and part_type == DICOM):
            ranked.append((-_quality(params), position, params.get("transfer-syntax", transcode.DEFAULT)))
    return [syntax for *_, syntax in sorted(ranked)]


def _quality(params: dict[str, str]) -> float:
    try:
        return float(params.get("q", "1"))
    except ValueError:
        return 0.0


def _syntax_for(instance: found.Instance, wanted: list[str]) -> str:
    for syntax in wanted:
        if transcode.producible(instance.transfer_syntax, syntax):
            return syntax
    raise NotAcceptable(
        f"This instance is stored as {instance.transfer_syntax or 'an unknown syntax'}; it can be sent as that, "
        f"as {' or '.join(sorted(transcode.WRITABLE))}, or with transfer-syntax=*."
    )


def _part(instance: found.Instance, syntax: str) -> tuple[str, Iterable[bytes]]:
    if syntax == transcode.ANY and instance.image is not None:
        return _part_type(instance.transfer_syntax), _stored_chunks(instance.image)
    data = transcode.in_syntax(instance.read(), syntax)
    return _part_type(instance.transfer_syntax if syntax == transcode.ANY else syntax), [data]


def _part_type(syntax: str) -> str:
    return f"{DICOM}; transfer-syntax={syntax}" if syntax else DICOM


def _stored_chunks(image: Image) -> Iterator[bytes]:
    with default_storage.open(image.file.name, "rb") as handle:
        while chunk := handle.read(256 * 1024):
            yield chunk


def _retrieved(request: Request, chosen: list[tuple[found.Instance, str]]) -> StreamingHttpResponse:
    for instance, syntax in chosen:
        _retrieve_audit(request, instance, syntax)
    boundary = multipart.new_boundary()
    body = multipart.encode_parts((_part(i, s) for i, s in chosen), boundary)
    response = StreamingHttpResponse(body, content_type=f'multipart/related; type="{DICOM}"; boundary={boundary}')
    response["X-Content-Type-Options"] = "nosniff"
    return no_store(response)


def _retrieve_audit(request: Request, instance: found.Instance, syntax: str) -> None:
    if instance.image is not None:
        audit_record(action="download_image", user=request.user, obj=instance.image, request=request,
                     via="dicomweb", transfer_syntax=syntax)  # fmt: skip
    else:
        audit_record(action="download_result_object", user=request.user, obj=instance.study, request=request,
                     via="dicomweb", sop_instance_uid=instance.sop_uid)  # fmt: skip


class RetrieveView(DicomwebView):
    def get(self, request: Request, study: str, series: str = "", instance: str = "") -> StreamingHttpResponse:
        """WADO-RS Retrieve Study, Series or Instance: multipart/related; type="application/dicom"."""
        if instance:
            matches = [self.instance(study, series, instance)]
        else:
            matches = [i for i in found.instances_of(self.studies(study)) if not series or i.series_uid == series]
            if not matches:
                raise NotFound("No such series, or not one of your sites'.")
        wanted = wanted_syntaxes(request.headers.get("Accept", ""))
        chosen = [(match, _syntax_for(match, wanted)) for match in matches]
        if instance:
            _decodable(chosen[0])
        return _retrieved(request, chosen)


def _decodable(chosen: tuple[found.Instance, str]) -> None:
    """A single instance is transcoded before the answer starts, so that a file that cannot be is a 406, not a cut."""
    instance, syntax = chosen
    if syntax == transcode.ANY or syntax == instance.transfer_syntax:
        return
    try:
        transcode.in_syntax(instance.read(), syntax)
    except Exception as error:  # a decoder refusing a stored file: tell the client which syntax works
        logger.warning("WADO-RS cannot write an instance as %s (%s)", syntax, type(error).__name__)
        raise NotAcceptable(f"This instance cannot be sent as {syntax}; ask for transfer-syntax=*.") from error


class MetadataView(DicomwebView):
    def get(self, request: Request, study: str, series: str, instance: str) -> HttpResponse:
        """WADO-RS Retrieve Instance Metadata: its header as DICOM JSON, pixel data left out."""
        _accepts(request, (DICOM_JSON, "application/json"))
        match = self.instance(study, series, instance)
        body = [metadata_json(match.read())]
        _view_audit(request, match, "dicomweb-metadata")
        return _dicom_json(body)


class RenderedView(DicomwebView):
    def get(self, request: Request, study: str, series: str, instance: str) -> HttpResponse:
        """WADO-RS Retrieve Rendered Instance: a PNG drawn under the image's own window, as the viewer draws it."""
        _accepts(request, ("image/png",))
        match = self.instance(study, series, instance)
        if match.image is None:
            raise NotFound("Pneumo draws the images it received; retrieve this object itself.")
        png = drawn(lambda: render_image_png(match.image))
        _view_audit(request, match, "dicomweb-rendered")
        return png_response(png)


def _view_audit(request: Request, instance: found.Instance, rendering: str) -> None:
    if instance.image is not None:
        audit_record(action="view_image", user=request.user, obj=instance.image, request=request, rendering=rendering)
    else:
        audit_record(action="view_result_object", user=request.user, obj=instance.study, request=request,
                     rendering=rendering, sop_instance_uid=instance.sop_uid)  # fmt: skip


class NotFoundView(DicomwebView):
    """Any other path under /dicomweb/: authenticated first (anonymous is 401), then a JSON 404."""

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        super().initial(request, *args, **kwargs)
        raise NotFound("DICOMweb here serves /studies, its series and instances, /metadata and /rendered.")
