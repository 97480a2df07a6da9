"""The model registry: every write to a model version goes through this module.

Registering, changing, converting, activating and deleting a version, from
``prepare_models``, the admin and the API alike: the freeze rule (a version
that is active or has made predictions keeps the fields that give its results
their meaning) and the audit events live here and nowhere else.

Conversion and the parity gate need TensorFlow, imported only inside the
functions that convert; a worker importing this module never loads it.
Converted files are cached on disk by the source file's sha256, so
``prepare_models`` is idempotent and cheap after the first run.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from django.conf import settings
from django.db import transaction
from django.http import HttpRequest
from django.utils import timezone

from cases.audit import audit_record
from cases.models import AuditEvent, User
from inference import model_package, shipped_model
from inference.classifier import HEATMAP_SCALES, INPUT_SIZE, PREPROCESSING_VERSION, PREPROCESSINGS, preprocessing_get
from inference.domain import CHEST, VERSION, DomainCheck, domain_check_load
from inference.models import ModelVersion, Population

logger = logging.getLogger(__name__)

PACKAGED_MODEL_NAME = "pneumonia-xception-pkg-0.3.0"
PARITY_TOLERANCE = 1e-4
PACKAGED_INTENDED_USE = (
    "Pneumonia on paediatric chest X-rays (ages 1 to 5), anterior-posterior view, as in the Guangzhou Women and "
    "Children's Medical Center data set (Kermany et al., 2018) it was trained on. Not validated on adults, "
    "lateral views or other hospitals' equipment."
)


def shipped_models_dir() -> Path:
    """Trained versions shipped in the repository: ``models/<name>/{manifest.json,weights.npz}``."""
    return Path(settings.PNEUMO_SHIPPED_MODELS_DIR)


class ModelFileMismatch(RuntimeError):
    """A model file's sha256 differs from the one registered: it is refused."""


class ModelNotReady(RuntimeError):
    """A version without a conversion that passed the parity gate, or without scope checks, cannot be activated."""


class ModelVersionLocked(Exception):
    """The change would alter the meaning of stored predictions."""


# What a stored prediction's meaning rests on: once a version is active or has made
# predictions these never change (register a new version instead). Later fields that
# change what a result means belong here too.
FROZEN_ONCE_USED = (
    "name",
    "version",
    "source_path",
    "sha256",
    "threshold",
    "input_size",
    "preprocessing_version",
    "heatmap_scale",
    # The scope checks decide whether a result is shown at all, or muted.
    "domain_check_path",
    "domain_check_sha256",
    "chest_check_path",
    "chest_check_sha256",
    # Routing and muting rest on these: who the version is for, and the ages and views it was validated on.
    "population",
    "intended_min_age_years",
    "intended_max_age_years",
    "intended_views",
    "features_key",
)
# What a person may type in (the admin's form); the rest is written by the registry itself.
EDITABLE_FIELDS = (
    *FROZEN_ONCE_USED,
    "description",
    "intended_use",
)
# What a new checksum or file makes stale: the cached conversion and its parity result.
CONVERSION_FIELDS: dict[str, Any] = {
    "converted_path": "",
    "converted_sha256": "",
    "head_path": "",
    "head_sha256": "",
    "parity_max_diff": None,
    "parity_passed": False,
    "converted_at": None,
}


def model_version_in_use(version: ModelVersion) -> bool:
    return version.pk is not None and (version.is_active or version.predictions.exists())


def model_version_frozen_fields(version: ModelVersion | None) -> tuple[str, ...]:
    """The fields nobody may change on ``version`` now (none before it is active or has predictions)."""
    return FROZEN_ONCE_USED if version is not None and model_version_in_use(version) else ()


def model_version_check_change(version: ModelVersion, changed: dict[str, Any] | list[str]) -> None:
    frozen = sorted(set(model_version_frozen_fields(version)) & set(changed))
    if frozen:
        raise ModelVersionLocked(
            f"{', '.join(frozen)} cannot change on a version that is active or has made predictions; "
            "register a new version instead."
        )


def model_version_create(*, user: User, fields: dict[str, Any], request: HttpRequest | None = None) -> ModelVersion:
    """Register a version; it needs ``prepare_models`` (conversion and parity gate) before it can be active."""
    fields = dict(fields)
    activate = fields.pop("is_active", False)
    fields.setdefault("input_size", INPUT_SIZE)
    fields.setdefault("preprocessing_version", PREPROCESSING_VERSION)
    fields.setdefault("heatmap_scale", HEATMAP_SCALES.get(fields.get("sha256", ""), 1.0))
    with transaction.atomic():
        version = ModelVersion.objects.create(**fields)
        audit_record(action="model_create", user=user, obj=version, request=request, fields=sorted(fields))
        if activate:
            model_version_activate(version=version, user=user, request=request)
    return version


def model_version_update(
    *, version: ModelVersion, user: User, fields: dict[str, Any], request: HttpRequest | None = None
) -> ModelVersion:
    """Change a version's fields; ``is_active`` activates (parity gate) or deactivates it."""
    fields = dict(fields)
    activate = fields.pop("is_active", None)
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=version.pk)
        changed = {name: value for name, value in fields.items() if getattr(version, name) != value}
        model_version_check_change(version, changed)
        audited = sorted(changed)
        if {"source_path", "sha256"} & changed.keys():
            changed.update(CONVERSION_FIELDS)
        for name, value in changed.items():
            setattr(version, name, value)
        if changed:
            version.save(update_fields=list(changed))
            audit_record(action="model_update", user=user, obj=version, request=request, fields=audited)
        if activate and not version.is_active:
            version = model_version_activate(version=version, user=user, request=request)
        elif activate is False and version.is_active:
            version.is_active = False
            version.save(update_fields=["is_active"])
            audit_record(action="model_deactivate", user=user, obj=version, request=request)
    return version


def model_version_delete(*, version: ModelVersion, user: User, request: HttpRequest | None = None) -> None:
    """Delete a version nobody used; one that is active or made predictions is kept for its results."""
    with transaction.atomic():
        version = ModelVersion.objects.select_for_update().get(pk=version.pk)
        if model_version_in_use(version):
            raise ModelVersionLocked(f"{version.name} is active or has made predictions and is kept")
        audit_record(action="model_delete", user=user, obj=version, request=request, name=version.name)
        version.delete()


@dataclass(frozen=True)
class PreparedFiles:
    tflite_path: Path
    head_path: Path
    tflite_sha256: str
    head_sha256: str
    parity_max_diff: float


def resolve_path(path: str) -> Path:
    candidate = Path(path)
    return candidate if candidate.is_absolute() else Path(settings.BASE_DIR) / candidate


# Beside a shipped version's files (and in models/<packaged name>/ for the packaged model):
# the scope checks of inference.domain and the sha256 of each.
SCOPE_RECORD_NAME = "domain.json"
SCOPE_FIELDS = ("domain_check_path", "domain_check_sha256", "chest_check_path", "chest_check_sha256")


class ScopeChecks(NamedTuple):
    """A version's two scope checks: is it a chest X-ray at all, and is it like this version's images."""

    chest: DomainCheck
    version: DomainCheck


def _project_relative(path: Path) -> str:
    # Relative to the project when inside it, so that a moved clone keeps finding the files.
    try:
        return str(path.resolve().relative_to(Path(settings.BASE_DIR).resolve()))
    except ValueError:
        return str(path.resolve())


def _scope_files(model_dir: Path) -> dict[str, str] | None:
    """The scope fields a version's folder names in its ``domain.json``, each file checked; None without one."""
    record_path = model_dir / SCOPE_RECORD_NAME
    if not record_path.is_file():
        return None
    record = json.loads(record_path.read_text())
    fields = {}
    for prefix, key in (("domain_check", VERSION), ("chest_check", CHEST)):
        entry = record[key]
        path = model_dir / entry["file"]
        if not path.is_file() or model_package.sha256_file(path) != entry["sha256"]:
            raise ModelFileMismatch(f"{path} is missing or differs from the sha256 in {record_path}")
        fields[f"{prefix}_path"] = _project_relative(path)
        fields[f"{prefix}_sha256"] = entry["sha256"]
    return fields


def _scope_files_record(version: ModelVersion, model_dir: Path) -> ModelVersion:
    """Record the scope checks shipped for ``version`` (idempotent, also for rows registered before them).

    A file that moved is followed; a version in use keeps the checks its results were judged by.
    """
    fields = _scope_files(model_dir)
    if fields is None:
        return version
    changed = {name: value for name, value in fields.items() if getattr(version, name) != value}
    if not changed:
        return version
    replaced = [name for name in ("domain_check_sha256", "chest_check_sha256") if getattr(version, name)]
    if model_version_in_use(version) and set(replaced) & changed.keys():
        raise ModelFileMismatch(
            f"{version.name} is in use with other scope checks than {model_dir / SCOPE_RECORD_NAME} names; "
            "register a new version instead"
        )
    for name, value in changed.items():
        setattr(version, name, value)
    version.save(update_fields=list(changed))
    return version


def scope_checks_load(version: ModelVersion, *, read: Mapping[str, DomainCheck] | None = None) -> ScopeChecks:
    """Both scope checks of ``version``, each file matching its registered sha256 and fitted on its input.

    ``read``: checks this process already read from a file of that sha256 (the versions that share the
    frozen base share one chest check file, which a new worker process then reads once).
    """
    if not all(getattr(version, name) for name in SCOPE_FIELDS):
        raise ModelNotReady(
            f"{version.name} has no domain check and chest check: without them nobody can tell whether the model "
            "applies to an image (ship models/<name>/domain.json with its files and run prepare_models)"
        )
    read = read or {}
    chest = _scope_check(version, version.chest_check_path, version.chest_check_sha256, CHEST, read)
    own = _scope_check(version, version.domain_check_path, version.domain_check_sha256, VERSION, read)
    return ScopeChecks(chest=chest, version=own)


def _scope_check(
    version: ModelVersion, path: str, sha256: str, kind: str, read: Mapping[str, DomainCheck]
) -> DomainCheck:
    try:
        check = read.get(sha256) or domain_check_load(resolve_path(path), sha256=sha256)
    except (OSError, ValueError) as exc:
        raise ModelFileMismatch(f"{kind} check of {version.name}: {exc}") from exc
    if check.kind != kind or check.preprocessing_version != version.preprocessing_version:
        raise ModelFileMismatch(
            f"{path} is a {check.kind} check for {check.preprocessing_version}, not a {kind} check for "
            f"{version.name}'s {version.preprocessing_version}"
        )
    return check


def model_version_register_packaged() -> ModelVersion:
    """Register the model shipped in pneumonia-model-package (idempotent)."""
    path = model_package.packaged_model_path()
    sha = model_package.sha256_file(path)
    version, created = ModelVersion.objects.get_or_create(
        name=PACKAGED_MODEL_NAME,
        defaults={
            "version": model_package.DISTRIBUTION_VERSION,
            "description": "Keras Xception classifier from pneumonia-model-package 0.3.0 (val-acc 0.861).",
            "source_path": str(path),
            "sha256": sha,
            "threshold": 0.5,
            "input_size": INPUT_SIZE,
            "preprocessing_version": PREPROCESSING_VERSION,
            "heatmap_scale": HEATMAP_SCALES.get(sha, 1.0),
            "intended_use": PACKAGED_INTENDED_USE,
            "intended_min_age_years": 1.0,
            "intended_max_age_years": 5.0,
            "intended_views": ["AP"],
            "population": Population.PAEDIATRIC,
            "features_key": features_key(base_sha256=sha, preprocessing_version=PREPROCESSING_VERSION),
        },
    )
    if not created and version.source_path != str(path):
        # The virtual environment moved (a new clone, a container): same file, new place.
        version.source_path = str(path)
        version.save(update_fields=["source_path"])
    _features_key_record(version, features_key(base_sha256=sha, preprocessing_version=PREPROCESSING_VERSION))
    return _scope_files_record(version, shipped_models_dir() / PACKAGED_MODEL_NAME)


def shipped_model_dirs(root: Path | None = None) -> list[Path]:
    root = root or shipped_models_dir()
    return sorted(p.parent for p in root.glob(f"*/{shipped_model.MANIFEST_NAME}")) if root.is_dir() else []


def shipped_keras_path(model_dir: Path) -> tuple[Path, dict]:
    """The full ``.keras`` for a shipped version, rebuilt once and cached by the manifest and weights sha256.

    The rebuild is deterministic (see ``inference.shipped_model``), so the file's sha256, which the
    ModelVersion records, is the same whenever the cache is rebuilt with the same Keras.
    """
    base = model_package.packaged_model_path()
    try:
        manifest = shipped_model.shipped_verify(model_dir, base)
    except shipped_model.ShippedModelError as exc:
        raise ModelFileMismatch(str(exc)) from exc
    digest = hashlib.sha256(
        (model_dir / shipped_model.MANIFEST_NAME).read_bytes() + manifest["weights"]["sha256"].encode()
    ).hexdigest()[:16]
    out = Path(settings.PNEUMO_MODEL_DIR) / f"{manifest['name']}-{digest}.keras"
    if not out.is_file():
        # TensorFlow: only here.
        shipped_model.model_rebuild(base, model_dir / manifest["weights"]["file"], out, manifest["input_size"])
        logger.info("rebuilt %s from %s", out.name, model_dir)
    return out, manifest


def model_version_register_shipped(model_dir: Path) -> ModelVersion:
    """Register a trained version shipped under ``models/`` (idempotent); its threshold comes from the manifest."""
    path, manifest = shipped_keras_path(model_dir)
    sha = model_package.sha256_file(path)
    if manifest.get("rebuilt_keras_sha256") not in (None, sha):
        # Another Keras version serialises differently; the parity gate still checks the conversion.
        logger.warning(
            "%s rebuilt with sha256 %s, manifest recorded %s", manifest["name"], sha, manifest["rebuilt_keras_sha256"]
        )
    preprocessing = PREPROCESSINGS.get(manifest["preprocessing_version"])
    if preprocessing is None or preprocessing.size != manifest["input_size"]:
        raise ModelFileMismatch(
            f"{manifest['name']} needs preprocessing {manifest['preprocessing_version']}"
            f" at {manifest['input_size']} px, which this version of Pneumo does not know"
        )
    intended = manifest["intended_use"]
    figures = manifest["validation"]["served"]
    key = (
        ""
        if manifest.get("fine_tuned")
        else features_key(
            base_sha256=manifest["base"]["sha256"], preprocessing_version=manifest["preprocessing_version"]
        )
    )
    version, created = ModelVersion.objects.get_or_create(
        name=manifest["name"],
        defaults={
            "version": manifest["version"],
            "description": (
                f"{manifest['description']} Validation split ({figures['n_pneumonia']} pneumonia, "
                f"{figures['n_normal']} normal): AUC {figures['auc']}, sensitivity {figures['sensitivity']}, "
                f"specificity {figures['specificity']}, ECE {figures['ece']}. See docs/model-card.md."
            ),
            "source_path": str(path),
            "sha256": sha,
            "threshold": manifest["threshold"],
            "input_size": manifest["input_size"],
            "preprocessing_version": manifest["preprocessing_version"],
            "heatmap_scale": manifest["heatmap_scale"]["scale"],
            "intended_use": intended["text"],
            "intended_min_age_years": intended["min_age_years"],
            "intended_max_age_years": intended["max_age_years"],
            "intended_views": list(intended.get("views") or [intended["view"]]),
            "population": manifest.get("population", Population.PAEDIATRIC),
            # A head on the frozen base computes the base's feature map: the versions sharing it share one pass.
            "features_key": key,
        },
    )
    if not created and version.sha256 != sha:
        raise ModelFileMismatch(f"{version.name} rebuilt with sha256 {sha}, registered {version.sha256}")
    if not created and version.source_path != str(path):
        version.source_path = str(path)
        version.save(update_fields=["source_path"])
    _features_key_record(version, key)
    return _scope_files_record(version, model_dir)


def _features_key_record(version: ModelVersion, key: str) -> None:
    """Fill the key on rows registered before it existed: derived from the files, it is no one's choice."""
    if key and not version.features_key:
        version.features_key = key
        version.save(update_fields=["features_key"])


def source_verify(version: ModelVersion) -> Path:
    path = resolve_path(version.source_path)
    if not path.is_file():
        raise ModelFileMismatch(f"model file for {version.name} is missing: {path}")
    actual = model_package.sha256_file(path)
    if actual != version.sha256:
        raise ModelFileMismatch(f"model file for {version.name} has sha256 {actual}, registered {version.sha256}")
    return path


def _cache_dir(version: ModelVersion) -> Path:
    return Path(settings.PNEUMO_MODEL_DIR) / f"{version.sha256}-{version.preprocessing_version}"


def _cached(out: Path) -> PreparedFiles | None:
    record = out / "prepared.json"
    if not record.is_file():
        return None
    data = json.loads(record.read_text())
    tflite, head = out / data["tflite"], out / data["head"]
    if not (tflite.is_file() and head.is_file()):
        return None
    if model_package.sha256_file(tflite) != data["tflite_sha256"]:
        return None
    return PreparedFiles(tflite, head, data["tflite_sha256"], data["head_sha256"], data["parity_max_diff"])


def _convert(source: Path, out: Path, preprocessing_name: str) -> PreparedFiles:
    from inference import conversion  # TensorFlow: only here

    preprocessing = preprocessing_get(preprocessing_name)
    result = conversion.convert_to_litert(source, out)
    images = conversion.load_images([p for p, _ in model_package.packaged_sample_images()])
    diff = conversion.parity_check(source, result.tflite_path, result.head_path, images, preprocessing)
    prepared = PreparedFiles(
        result.tflite_path, result.head_path, result.tflite_sha256, model_package.sha256_file(result.head_path), diff
    )
    (out / "prepared.json").write_text(
        json.dumps(
            {
                "tflite": result.tflite_path.name,
                "head": result.head_path.name,
                "tflite_sha256": prepared.tflite_sha256,
                "head_sha256": prepared.head_sha256,
                "parity_max_diff": diff,
                "conversion_seconds": result.seconds,
            },
            indent=2,
        )
    )
    logger.info("converted %s in %.1f s, parity %.2e", source.name, result.seconds, diff)
    return prepared


def model_version_prepare(
    version: ModelVersion, *, user: User | None = None, request: HttpRequest | None = None
) -> ModelVersion:
    """Convert ``version`` to LiteRT (or reuse the cached conversion) and run the parity gate.

    Only the conversion's own fields change: what the version means (file, threshold) is untouched.
    """
    source = source_verify(version)
    out = _cache_dir(version)
    prepared = _cached(out) or _convert(source, out, version.preprocessing_version)
    version.converted_path = str(prepared.tflite_path)
    version.converted_sha256 = prepared.tflite_sha256
    version.head_path = str(prepared.head_path)
    version.head_sha256 = prepared.head_sha256
    version.parity_max_diff = prepared.parity_max_diff
    version.parity_passed = prepared.parity_max_diff <= PARITY_TOLERANCE
    version.converted_at = version.converted_at or timezone.now()
    version.save(update_fields=list(CONVERSION_FIELDS))
    if user is not None:
        audit_record(
            action="model_prepare", user=user, obj=version, request=request, parity_passed=version.parity_passed
        )
    return version


def model_version_servable(version: ModelVersion) -> str:
    """Why ``version`` cannot serve predictions (no conversion past the parity gate, no scope checks); "" if it can."""
    if not (version.parity_passed and version.converted_path):
        return f"{version.name} has no LiteRT conversion that passed the parity gate"
    try:
        scope_checks_load(version)
    except (ModelFileMismatch, ModelNotReady) as exc:
        return f"{version.name} cannot serve: {exc}"
    return ""


@transaction.atomic
def model_version_activate(
    *, version: ModelVersion, user: User | None = None, request: HttpRequest | None = None
) -> ModelVersion:
    if not (version.parity_passed and version.converted_path):
        raise ModelNotReady(f"{version.name} has no LiteRT conversion that passed the parity gate")
    try:
        scope_checks_load(version)
    except ModelFileMismatch as exc:
        raise ModelNotReady(f"{version.name} cannot be activated: {exc}") from exc
    # One active version per population: this one replaces its population's, and only that one.
    replaced = ModelVersion.objects.filter(is_active=True, population=version.population).exclude(pk=version.pk)
    replaced.update(is_active=False)
    version.is_active = True
    version.save(update_fields=["is_active"])
    audit_record(action="model_activate", user=user, obj=version, request=request)
    return version


def activation_chosen_by_person(version: ModelVersion) -> bool:
    return (
        AuditEvent.objects.filter(action="model_activate", object_type="ModelVersion", object_id=str(version.pk))
        .exclude(user=None, username="")  # a deleted admin's event keeps the username
        .exists()
    )


def models_prepare_all() -> list[ModelVersion]:
    """What ``prepare_models`` does: register the packaged and shipped models, convert every version, activate.

    The activation rule, per population: the last shipped trained version of that population that
    passed the parity gate and has its scope checks becomes active when the population has no
    active version, or when the packaged model is active and no person ever activated it (it was
    switched on automatically). A choice made by an admin is left alone.
    """
    packaged = model_version_register_packaged()
    shipped = [model_version_register_shipped(d) for d in shipped_model_dirs()]
    versions = [model_version_prepare(v) for v in ModelVersion.objects.order_by("pk")]
    ready = [v for v in (ModelVersion.objects.get(pk=s.pk) for s in shipped) if v.parity_passed and _has_scope(v)]
    for population in Population.values:
        candidates = [v for v in ready if v.population == population]
        if not candidates and population != packaged.population:
            continue
        preferred = candidates[-1] if candidates else ModelVersion.objects.get(pk=packaged.pk)
        active = active_model_versions().get(population)
        automatic = active is not None and active.pk == packaged.pk and not activation_chosen_by_person(active)
        if active is None or (automatic and preferred.pk != active.pk):
            model_version_activate(version=preferred)
    return list(ModelVersion.objects.filter(pk__in=[v.pk for v in versions]).order_by("pk"))


def _has_scope(version: ModelVersion) -> bool:
    return all(getattr(version, name) for name in SCOPE_FIELDS)


def features_key(*, base_sha256: str, preprocessing_version: str) -> str:
    """Names the feature map a frozen base computes at one preprocessing: equal keys, equal feature maps."""
    return f"{base_sha256}:{preprocessing_version}"


def active_model_versions() -> dict[str, ModelVersion]:
    """The active version of each population that has one (at most one each: a database constraint)."""
    return {v.population: v for v in ModelVersion.objects.filter(is_active=True).order_by("population")}


def grid_preprocessing() -> str | None:
    """The preprocessing whose input grid ingest keeps: the one the active versions share (the shipped choice).

    With several, the most used (ties: by population); the worker decodes the original for the others.
    """
    counts: dict[str, int] = {}
    for version in active_model_versions().values():
        counts[version.preprocessing_version] = counts.get(version.preprocessing_version, 0) + 1
    return max(counts, key=lambda name: counts[name]) if counts else None


INT8_DIR = "xception224-int8"
INT8_MANIFEST = "int8-manifest.json"


def int8_path() -> Path:
    record = json.loads((shipped_models_dir() / INT8_DIR / INT8_MANIFEST).read_text())
    return shipped_models_dir() / INT8_DIR / record["file"]


def int8_verdict(version: ModelVersion) -> str:
    """Whether ``version`` may serve the shipped int8 base, and why: "" when it may.

    The version's gates must have passed when measured on this version's head and float32
    conversion (``manage.py quantize_models``), and the int8 file must match its manifest's sha256.
    Until one passes, workers serve the float32 conversion.
    """
    record_path = shipped_models_dir() / INT8_DIR / INT8_MANIFEST
    if not record_path.is_file():
        return "no int8 conversion shipped"
    record = json.loads(record_path.read_text())
    # The gates first: hashing the 22 MB file costs a new worker process about 25 ms per version,
    # and only a version that would serve it needs the file checked.
    gates = record.get("gates", {}).get(version.name)
    if gates is None:
        return "its int8 gates were never measured"
    if gates.get("head_sha256") != version.head_sha256:
        return "its int8 gates were measured on another head"
    if not gates.get("passed"):
        return (
            f"int8 failed its gates (probability diff {gates['parity_probability_max_diff']:.3f} > "
            f"{gates['tolerances']['probability']}, heatmap cell diff {gates['parity_heatmap_cell_max_diff']:.3f}, "
            f"AUC diff {gates['validation_auc_diff']:.4f})"
        )
    if gates.get("float32_tflite_sha256") != version.converted_sha256:
        # Gates passed against another float32 conversion prove nothing about this one.
        return "its int8 gates were measured against another float32 conversion"
    file = record_path.parent / record["file"]
    if not file.is_file() or model_package.sha256_file(file) != record["sha256"]:
        return f"{file} is missing or differs from its manifest"
    return ""
