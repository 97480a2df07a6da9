"""OpenAPI pieces drf-spectacular cannot infer: the token scheme, tags, operation ids, and what DRF refuses.

Schemathesis (tests/api/test_schemathesis.py) holds the schema to what the
server does: a value the schema allows is accepted and one it forbids is
refused. So the schema states the rules DRF applies without drf-spectacular
saying so: a text field refuses NUL characters, and blank text (after trimming
whitespace) unless it allows blank; an empty optional query parameter counts
as absent.
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

from django.template.loader import get_template
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.views import SpectacularSwaggerSplitView
from rest_framework import serializers

API_VERSION = "v1"
NO_NUL = r"^[^\u0000]*$"
NOT_BLANK = r"^[^\u0000]*[^\s\u0000][^\u0000]*$"  # what is left once DRF trimmed whitespace
SWAGGER_TEMPLATE = "drf_spectacular/swagger_ui.html"


def swagger_style_hash() -> str:
    """The CSP source allowing the Swagger UI page's one inline ``<style>`` block, or "" if it has none.

    The page's scripts are files (SpectacularSwaggerSplitView serves the init
    script separately), so ``script-src 'self'`` holds; only this small style
    needs a hash. Computed from the installed template, so an upgrade cannot
    leave a stale hash behind.
    """
    match = re.search(r"<style>(.*?)</style>", get_template(SWAGGER_TEMPLATE).template.source, re.DOTALL)
    if match is None:
        return ""
    digest = base64.b64encode(hashlib.sha256(match.group(1).encode()).digest()).decode()
    return f"'sha256-{digest}'"


class SwaggerPage(SpectacularSwaggerSplitView):
    """The Swagger UI page. Its HTML renderer has no template for OPTIONS' metadata (a 500): 405 instead."""

    http_method_names = ["get", "head"]


class ApiAutoSchema(AutoSchema):
    """Tags by resource (``studies``, ``images``...) rather than by the version segment."""

    def _resource_path(self) -> list[str]:
        tokens = self._tokenize_path()
        return tokens[1:] if tokens[:1] == [API_VERSION] else tokens

    def get_tags(self) -> list[str]:
        return self._resource_path()[:1]

    def get_operation_id(self) -> str:
        # "v1_images_heatmap.json_retrieve" -> "images_heatmap_json_retrieve"
        return super().get_operation_id().removeprefix(f"{API_VERSION}_").replace(".", "_")

    def _get_format_parameters(self) -> list[dict[str, Any]]:
        return []  # binary endpoints answer in one format; ?format= is not part of the contract

    def _get_parameters(self) -> list[dict[str, Any]]:
        parameters = super()._get_parameters()
        for parameter in parameters:
            # DRF reads "?site=" as no site at all (a list parameter excepted: it gets one empty value).
            optional_query = parameter["in"] == "query" and not parameter.get("required")
            if optional_query and parameter["schema"].get("type") != "array":
                parameter["allowEmptyValue"] = True
        return parameters

    def _map_basic_serializer(self, serializer: Any, direction: str) -> dict[str, Any]:
        mapped = super()._map_basic_serializer(serializer, direction)
        # Fields some users are not shown (ModelVersionReadSerializer's paths): present or absent.
        hidden = getattr(getattr(serializer, "Meta", None), "admin_only_fields", [])
        if hidden and "required" in mapped:
            mapped["required"] = [name for name in mapped["required"] if name not in hidden]
        return mapped

    def _get_serializer_field_meta(self, field: Any, direction: str) -> dict[str, Any]:
        meta = super()._get_serializer_field_meta(field, direction)
        if _is_text_input(field) and not field.allow_blank:
            meta["minLength"] = 1
        return meta

    def _insert_field_validators(self, field: Any, schema: dict[str, Any]) -> None:
        super()._insert_field_validators(field, schema)
        if _is_text_input(field) and "pattern" not in schema:
            schema["pattern"] = NOT_BLANK if field.trim_whitespace and not field.allow_blank else NO_NUL


def _is_text_input(field: Any) -> bool:
    return isinstance(field, serializers.CharField) and not field.read_only


class ExpiringTokenScheme(OpenApiAuthenticationExtension):
    target_class = "cases.api.authentication.ExpiringTokenAuthentication"
    name = "tokenAuth"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "apiKey",
            "in": "header",
            "name": "Authorization",
            "description": "Token from POST /api/v1/auth/token/, sent as `Authorization: Token <token>`. "
            "It expires (PNEUMO_API_TOKEN_HOURS, default 8).",
        }
