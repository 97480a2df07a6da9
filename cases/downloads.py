"""Handing stored files to the client after an access check (pages and API alike).

Behind nginx, ``PNEUMO_SENDFILE_HEADER=X-Accel-Redirect`` lets the web server
send the bytes from an internal location; otherwise Django streams them.
Either way the file is an attachment with nosniff, never rendered inline.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from django.conf import settings
from django.core.files.storage import default_storage
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseGone

from cases import selectors
from cases.audit import audit_record
from cases.models import Image
from cases.retention import retention_notice

CONTENT_TYPES = {"dicom": "application/dicom", "png": "image/png", "jpeg": "image/jpeg"}


def download_name(image: Image) -> str:
    ext = PurePosixPath(image.file.name).suffix or ".bin"
    return f"image-{image.pk}{ext}"  # no patient data in file names


def purged_response(image: Image) -> HttpResponse | None:
    """410 Gone, saying when, for an image whose file the retention policy deleted; None for any other."""
    notice = retention_notice(image)
    if not notice:
        return None
    response = HttpResponseGone(notice, content_type="text/plain; charset=utf-8")
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    return response


def file_response(image: Image) -> HttpResponse:
    if (gone := purged_response(image)) is not None:
        return gone
    content_type = CONTENT_TYPES.get(image.kind, "application/octet-stream")
    if settings.PNEUMO_SENDFILE_HEADER:
        response = HttpResponse(content_type=content_type)
        response[settings.PNEUMO_SENDFILE_HEADER] = settings.PNEUMO_SENDFILE_PREFIX + image.file.name
    else:
        if not default_storage.exists(image.file.name):
            raise Http404("The stored file is missing")
        response = FileResponse(default_storage.open(image.file.name, "rb"), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{download_name(image)}"'
    response["X-Content-Type-Options"] = "nosniff"
    response["Cache-Control"] = "private, no-store"
    return response


def image_download(*, request: HttpRequest, pk: int) -> HttpResponse:
    """The user's original file (404 if not theirs), the download audited."""
    image = selectors.image_for_user(user=request.user, pk=pk)
    audit_record(action="download_image", user=request.user, obj=image, request=request)
    return file_response(image)
