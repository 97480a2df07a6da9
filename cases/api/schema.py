"""OpenAPI pieces drf-spectacular cannot infer: the token scheme, tags and operation ids."""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

from django.template.loader import get_template
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema

API_VERSION = "v1"
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
