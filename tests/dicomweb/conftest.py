"""DICOMweb fixtures: the API's token clients and its DEMO/NORTH world, reused."""

from __future__ import annotations

from tests.api.conftest import _fresh_throttles, api, model_version, world  # noqa: F401 - fixtures
