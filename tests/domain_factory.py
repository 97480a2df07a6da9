"""Scope check files for model versions that tests register but never run.

A real version carries checks fitted on its own images (``models/<name>/``);
a test version only needs files that pass the registry's checks: one
component, a limit no image reaches.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from inference.domain import CHEST, FEATURE_CHANNELS, VERSION, DomainCheck, domain_check_save


def domain_check_make(*, kind: str, preprocessing_version: str, limit: float = 1e9) -> DomainCheck:
    return DomainCheck(
        kind=kind,
        preprocessing_version=preprocessing_version,
        limit=limit,
        mean=np.zeros(FEATURE_CHANNELS, dtype=np.float32),
        components=np.eye(1, FEATURE_CHANNELS, dtype=np.float32),
        eigenvalues=np.ones(1, dtype=np.float32),
        residual_variance=1.0,
    )


def scope_fields(folder: Path, preprocessing_version: str) -> dict[str, str]:
    """The ModelVersion fields naming a chest and a domain check for ``preprocessing_version``, saved in ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    fields = {}
    for prefix, kind in (("domain_check", VERSION), ("chest_check", CHEST)):
        path = folder / f"{preprocessing_version}-{kind}.npz"
        sha256 = domain_check_save(domain_check_make(kind=kind, preprocessing_version=preprocessing_version), path)
        fields |= {f"{prefix}_path": str(path), f"{prefix}_sha256": sha256}
    return fields
