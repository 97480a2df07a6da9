"""Registering and changing model versions from the API (services).

Activation goes through ``inference.registry.model_version_activate``, which
refuses a version without a LiteRT conversion that passed the parity gate.
A version that has made predictions is frozen (file, checksum, threshold):
changing them would silently rewrite what earlier results meant, so an admin
registers a new version instead.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from cases.audit import audit_record
from cases.models import User
from inference.models import ModelVersion

FROZEN_ONCE_USED = ("source_path", "sha256", "threshold", "version")
# What a new checksum or file makes stale: the cached conversion and its parity result.
CONVERSION_FIELDS = {
    "converted_path": "",
    "converted_sha256": "",
    "head_path": "",
    "head_sha256": "",
    "parity_max_diff": None,
    "parity_passed": False,
    "converted_at": None,
}


class ModelVersionLocked(Exception):
    """The change would alter the meaning of stored predictions."""


def model_version_create(*, user: User, fields: dict[str, Any]) -> ModelVersion:
    """Register a version; it needs ``prepare_models`` (conversion and parity gate) before it can be active."""
    from inference.classifier import HEATMAP_SCALES, INPUT_SIZE, PREPROCESSING_VERSION
    from inference.registry import model_version_activate

    fields = dict(fields)
    activate = fields.pop("is_active", False)
    with transaction.atomic():
        version = ModelVersion.objects.create(
            input_size=INPUT_SIZE,
            preprocessing_version=PREPROCESSING_VERSION,
            heatmap_scale=HEATMAP_SCALES.get(fields.get("sha256", ""), 1.0),
            **fields,
        )
        audit_record(action="model_create", user=user, obj=version)
        if activate:
            model_version_activate(version=version, user=user)
    return version


def model_version_update(*, version: ModelVersion, user: User, fields: dict[str, Any]) -> ModelVersion:
    """Change a version's fields; ``is_active`` activates (parity gate) or deactivates it."""
    from inference.registry import model_version_activate

    fields = dict(fields)
    activate = fields.pop("is_active", None)
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=version.pk)
        changed = {name: value for name, value in fields.items() if getattr(version, name) != value}
        _check_not_frozen(version, changed)
        if {"source_path", "sha256"} & changed.keys():
            changed.update(CONVERSION_FIELDS)
        for name, value in changed.items():
            setattr(version, name, value)
        if changed:
            version.save(update_fields=list(changed))
            audit_record(action="model_update", user=user, obj=version, fields=sorted(fields))
        if activate and not version.is_active:
            version = model_version_activate(version=version, user=user)
        elif activate is False and version.is_active:
            version.is_active = False
            version.save(update_fields=["is_active"])
            audit_record(action="model_deactivate", user=user, obj=version)
    return version


def _check_not_frozen(version: ModelVersion, changed: dict[str, Any]) -> None:
    frozen = sorted(set(FROZEN_ONCE_USED) & changed.keys())
    if not frozen:
        return
    if version.is_active or version.predictions.exists():
        raise ModelVersionLocked(
            f"{', '.join(frozen)} cannot change on a version that is active or has made predictions; "
            "register a new version instead."
        )
