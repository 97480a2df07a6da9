"""What an OPTIONS request answers: the view's name, description and media types.

DRF's SimpleMetadata also describes a view's ``serializer_class``; the API's
views have none (each method validates with its own input serializer, and the
published schema at /api/schema/ describes them all), which made DRF fail
with an AssertionError, a 500, on every view that accepts POST.
"""

from __future__ import annotations

from typing import Any

from rest_framework.metadata import SimpleMetadata
from rest_framework.request import Request
from rest_framework.views import APIView


class ApiMetadata(SimpleMetadata):
    def determine_actions(self, request: Request, view: APIView) -> dict[str, Any]:
        if getattr(view, "serializer_class", None) is None:
            return {}
        return super().determine_actions(request, view)
