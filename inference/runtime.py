"""The classifier and scope checks each worker process holds: loaded once, after the fork.

Workers load only converted LiteRT files and scope check files, each checked
against the sha256 in the registry. Hashing is remembered per (path, size, mtime) in a small file
beside the model, so a new worker process starts in milliseconds.

A process holds one interpreter per feature map: versions that share the frozen base and
preprocessing (``features_key``) and are served the same way (int8 or float32) share the
interpreter of the first one loaded, each with its own head.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Protocol

import numpy as np
from django.conf import settings

from inference.classifier import ClassifierOutput, Head, HeadSpec, LiteRTClassifier, preprocessing_get
from inference.domain import DomainCheck
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
# What computes a feature map in this process (see _base_of): the key in _loaded of the classifier that does.
_bases: dict[str, tuple[int, str]] = {}
_scope_loaded: dict[tuple[int, str, str], ScopeChecks] = {}
_checks_read: dict[str, DomainCheck] = {}  # by the file's sha256
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


def _serves_int8(version: ModelVersion) -> bool:
    return bool(version.features_key) and not int8_verdict(version)


def classifier_load(version: ModelVersion, *, int8: bool | None = None) -> Classifier:
    """``version``'s own classifier, on an interpreter of its own; ``int8``: whether it serves the int8 base."""
    tflite = _verify(resolve_path(version.converted_path), version.converted_sha256, "converted model")
    head = _verify(resolve_path(version.head_path), version.head_sha256, "model head")
    if _serves_int8(version) if int8 is None else int8:
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


class HeadOnSharedBase:
    """A version's classifier on the interpreter another version loaded for the same feature map.

    Its result is its own head on that pass, as ``inference.scope.image_scopes`` computes it for an
    image routed by its pixels: a second interpreter of the same base would cost a worker process
    another model load (about 0.1 s before its first result) and its memory, for the same features.
    """

    def __init__(self, base: Classifier, own: HeadSpec) -> None:
        self.base = base
        self.own = own

    def predict(self, image: np.ndarray, *, heatmap: bool = True) -> ClassifierOutput:
        return self.predict_heads(image, heads=[], heatmap=heatmap)[0]

    def predict_heads(
        self, image: np.ndarray, *, heads: list[HeadSpec], heatmap: bool = True
    ) -> list[ClassifierOutput]:
        return self.base.predict_heads(image, heads=[self.own, *heads], heatmap=heatmap)[1:]


def _base_of(version: ModelVersion, *, int8: bool) -> str:
    """What computes ``version``'s feature map: a base other versions share, or its own conversion."""
    if not version.features_key:
        return f"own:{version.pk}:{version.converted_sha256}"
    return f"{'int8' if int8 else 'float32'}:{version.features_key}"


def classifier_for(version: ModelVersion) -> Classifier:
    key = (version.pk, version.converted_sha256)
    if key not in _loaded:
        int8 = _serves_int8(version)
        base = _base_of(version, int8=int8)
        shared = _bases.get(base)
        if shared is not None and shared != key and shared in _loaded:
            _loaded[key] = HeadOnSharedBase(_loaded[shared], head_for(version))
        else:
            _loaded[key] = classifier_load(version, int8=int8)
            _bases[base] = key
    return _loaded[key]


def scope_checks_for(version: ModelVersion) -> ScopeChecks:
    """The version's chest and domain checks, read and verified once per process (a file versions share, once)."""
    key = (version.pk, version.chest_check_sha256, version.domain_check_sha256)
    if key not in _scope_loaded:
        checks = _scope_loaded[key] = scope_checks_load(version, read=_checks_read)
        _checks_read[version.chest_check_sha256] = checks.chest
        _checks_read[version.domain_check_sha256] = checks.version
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
    for version in versions:
        classifier_for(version)
        head_for(version)
        scope_checks_for(version)
