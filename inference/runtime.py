"""The classifier and scope checks each worker process holds: loaded once, after the fork.

Workers load only converted LiteRT files and scope check files, each checked
against the sha256 in the registry. Hashing is remembered per (path, size, mtime) in a small file
beside the model, so a new worker process starts in milliseconds.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Protocol

import numpy as np
from django.conf import settings

from inference.classifier import ClassifierOutput, Head, HeadSpec, LiteRTClassifier, preprocessing_get
from inference.model_package import sha256_file
from inference.models import ModelVersion
from inference.registry import (
    ModelFileMismatch,
    ScopeChecks,
    int8_path,
    int8_verdict,
    resolve_path,
    scope_checks_load,
)

logger = logging.getLogger(__name__)


class Classifier(Protocol):
    def predict(self, image: np.ndarray, *, heatmap: bool = True) -> ClassifierOutput: ...

    def predict_heads(
        self, image: np.ndarray, *, heads: list[HeadSpec], heatmap: bool = True
    ) -> list[ClassifierOutput]: ...


_loaded: dict[tuple[int, str], Classifier] = {}
_scope_loaded: dict[tuple[int, str, str], ScopeChecks] = {}
_heads_loaded: dict[tuple[int, str], HeadSpec] = {}


def _stat_key(path: Path) -> str:
    stat = path.stat()
    return f"{path}:{stat.st_size}:{stat.st_mtime_ns}"


def verified_sha256(path: Path) -> str:
    """sha256 of ``path``, re-hashed only when its size or mtime changed."""
    memo = path.with_name(path.name + ".sha256.json")
    key = _stat_key(path)
    try:
        data = json.loads(memo.read_text())
        if data.get("key") == key:
            return data["sha256"]
    except (OSError, ValueError):
        pass
    digest = sha256_file(path)
    try:
        memo.write_text(json.dumps({"key": key, "sha256": digest}))
    except OSError:
        logger.info("could not cache the hash of %s", path)
    return digest


def _verify(path: Path, expected: str, what: str) -> Path:
    if not path.is_file():
        raise ModelFileMismatch(f"{what} is missing: {path}")
    if verified_sha256(path) != expected:
        raise ModelFileMismatch(f"{what} does not match its registered sha256: {path}")
    return path


def classifier_load(version: ModelVersion) -> Classifier:
    tflite = _verify(resolve_path(version.converted_path), version.converted_sha256, "converted model")
    head = _verify(resolve_path(version.head_path), version.head_sha256, "model head")
    if version.features_key and not int8_verdict(version):
        # The int8 base passed this version's gates: its features, this version's float head in NumPy.
        from inference.features_model import FeatureMapModel, SharedBaseClassifier

        model = FeatureMapModel(int8_path(), num_threads=settings.PNEUMO_INFERENCE_THREADS)
        spec = HeadSpec(Head.load(head), version.heatmap_scale)
        return SharedBaseClassifier(model, spec, preprocessing_get(version.preprocessing_version)).load()
    return LiteRTClassifier(
        tflite,
        head,
        heatmap_scale=version.heatmap_scale,
        num_threads=settings.PNEUMO_INFERENCE_THREADS,
        preprocessing=version.preprocessing_version,
    ).load()


def classifier_for(version: ModelVersion) -> Classifier:
    key = (version.pk, version.converted_sha256)
    if key not in _loaded:
        _loaded[key] = classifier_load(version)
    return _loaded[key]


def scope_checks_for(version: ModelVersion) -> ScopeChecks:
    """The version's chest and domain checks, read and verified once per process (a few ms)."""
    key = (version.pk, version.chest_check_sha256, version.domain_check_sha256)
    if key not in _scope_loaded:
        _scope_loaded[key] = scope_checks_load(version)
    return _scope_loaded[key]


def head_for(version: ModelVersion) -> HeadSpec:
    """The version's dense head and display scale, for a pass of another version with the same feature map."""
    key = (version.pk, version.head_sha256)
    if key not in _heads_loaded:
        head = _verify(resolve_path(version.head_path), version.head_sha256, "model head")
        _heads_loaded[key] = HeadSpec(Head.load(head), version.heatmap_scale)
    return _heads_loaded[key]


def versions_preload(versions: list[ModelVersion]) -> None:
    """Load what serving ``versions`` needs: one interpreter per feature map, every head and scope check."""
    served: set[str] = set()
    for version in versions:
        key = version.features_key or f"own:{version.pk}"
        if key not in served:
            classifier_for(version)
            served.add(key)
        head_for(version)
        scope_checks_for(version)
