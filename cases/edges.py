"""What the pages and the API do alike at their edges, written once.

Both call these helpers, so an upload, a refused reading action, a picture of
an image and the audit event of looking at it answer the same way whichever
door a request came through. A DRF request will do where only its user and
address are read; an upload is handed the Django request underneath.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict
from typing import Any, TypeVar

from django.core.files.uploadedfile import UploadedFile
from django.http import Http404, HttpRequest, HttpResponse

from cases import selectors
from cases.audit import audit_record
from cases.ingest import IncomingFile, IngestReport, ManualPatient, studies_ingest
from cases.models import Image, Site, User
from cases.pictures import RenderUnavailable
from cases.reviews import ReviewError
from inference.models import Prediction
from inference.selectors import prediction_with_heatmap

T = TypeVar("T")

REVIEW_ERROR_STATUS = {"invalid": 400, "forbidden": 403, "conflict": 409}
UNCONFIRMED_HEADER = "unconfirmed until a radiologist signs"


# --- Uploads -------------------------------------------------------------------------------------


def manual_patient_from(fields: Mapping[str, Any], *, user: User) -> ManualPatient:
    """What was typed for PNG and JPEG files; a batch name is the user's own (two users never share one)."""
    batch = fields.get("batch") or ""
    return ManualPatient(
        patient_id=fields.get("patient_id") or "",
        name=fields.get("patient_name") or "",
        birth_date=fields.get("birth_date"),
        age_years=fields.get("age_years"),
        sex=fields.get("sex") or "",
        study_description=fields.get("study_description") or "",
        batch_key=f"{user.pk}:{batch}" if batch else "",
    )


def upload_ingest(
    *, request: HttpRequest, files: Iterable[UploadedFile], fields: Mapping[str, Any], site: Site
) -> IngestReport:
    """Store the files of one upload request (the page's or the API's) with the fields sent beside them.

    The files stay where Django spooled them until their turn: one is read at a time, and released after.
    """
    return studies_ingest(
        files=(IncomingFile.from_upload(f) for f in files),
        site=site,
        user=request.user,
        priority=fields["priority"],
        manual=manual_patient_from(fields, user=request.user),
        request=request,
    )


def upload_result(report: IngestReport) -> dict:
    """One line per file (stored, duplicate, refused or skipped, and why) and the studies that received images."""
    return {"files": [asdict(f) for f in report.files], "study_ids": report.study_ids}


# --- Reading ----------------------------------------------------------------------------------


def review_error_status(error: ReviewError) -> int:
    return REVIEW_ERROR_STATUS.get(error.code, 400)


# --- Images and their pictures ------------------------------------------------------------------


def no_store(response: HttpResponse) -> HttpResponse:
    """Patient data: never kept by the browser or a proxy."""
    response["Cache-Control"] = "private, no-store"
    return response


def png_response(data: bytes, *, unconfirmed: bool = False) -> HttpResponse:
    response = HttpResponse(data, content_type="image/png")
    response["X-Content-Type-Options"] = "nosniff"
    if unconfirmed:
        response["X-Pneumo-AI-Result"] = UNCONFIRMED_HEADER
    return no_store(response)


def drawn(draw: Callable[[], T]) -> T:
    """What ``draw`` makes of a stored image; 404 when the image cannot be drawn."""
    try:
        return draw()
    except RenderUnavailable as error:
        raise Http404(str(error) or "This image cannot be drawn.") from error


def image_viewed(*, request: HttpRequest, pk: int, rendering: str) -> Image:
    """The user's image (404 if not theirs), its viewing audited."""
    image = selectors.image_for_user(user=request.user, pk=pk)
    audit_record(action="view_image", user=request.user, obj=image, request=request, rendering=rendering)
    return image


def heatmap_viewed(*, request: HttpRequest, pk: int, rendering: str) -> Prediction:
    """The current prediction of the user's image with its heatmap (404 without one), its viewing audited."""
    image = selectors.image_for_user(user=request.user, pk=pk)
    prediction = prediction_with_heatmap(image=image, user=request.user)
    audit_record(action="view_heatmap", user=request.user, obj=image, request=request, rendering=rendering)
    return prediction
