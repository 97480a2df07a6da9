"""A limit on the size of a whole request, answered before its body is read.

Django reads at most Content-Length bytes of a body (none without one, so a
chunked body without it is never read), and the multipart parser reads the
body only when a view asks for ``request.POST`` or ``request.FILES``. This
middleware comes first, so a request declaring more than
``PNEUMO_MAX_REQUEST_BYTES`` gets its 413 before any other middleware (CSRF
reads the form) has touched a byte of it.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

_PAGE = (
    '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>Request too large</title></head>'
    "<body><h1>Request too large</h1><p>{message}</p></body></html>"
)


def declared_length(request: HttpRequest) -> int | None:
    try:
        return int(request.META.get("CONTENT_LENGTH") or "")
    except ValueError:
        return None  # Django reads no body from a request without a valid Content-Length


def too_large_message(length: int) -> str:
    limit_mb, file_mb = settings.PNEUMO_MAX_REQUEST_BYTES >> 20, settings.PNEUMO_MAX_UPLOAD_BYTES >> 20
    return (
        f"The request is {math.ceil(length / 2**20)} MB, over the {limit_mb} MB limit for one request: "
        f"send fewer files at a time (each file may be up to {file_mb} MB). Nothing was stored."
    )


def wants_json(request: HttpRequest) -> bool:
    # DICOMweb clients send no JSON Accept with STOW-RS, yet read their errors as JSON like the API's.
    return request.path.startswith(("/api/", "/dicomweb/")) or "application/json" in request.headers.get("Accept", "")


class RequestSizeLimitMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        length = declared_length(request)
        if length is not None and length > settings.PNEUMO_MAX_REQUEST_BYTES:
            return self._refusal(request, too_large_message(length))
        return self.get_response(request)

    def _refusal(self, request: HttpRequest, message: str) -> HttpResponse:
        if wants_json(request):
            return JsonResponse({"detail": message}, status=413)
        return HttpResponse(_PAGE.format(message=message), status=413, content_type="text/html; charset=utf-8")
