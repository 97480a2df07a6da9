"""Locate the files shipped in ``pneumonia-model-package`` without importing it.

The package's own modules import TensorFlow, pandas and loguru at import time
and pin versions that clash with ours, so it is installed with ``--no-deps``
and only its data files are read, through the installed distribution's RECORD.
No Django here: workers, benchmarks and tests use this module alone.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from importlib import metadata
from pathlib import Path

DISTRIBUTION = "pneumonia-model-package"
DISTRIBUTION_VERSION = "0.3.0"
MODEL_SUFFIX = ".keras"
SAMPLE_DIR = "datasets/pneumonia-data/val/"


class ModelPackageMissing(RuntimeError):
    pass


def _files() -> list[metadata.PackagePath]:
    try:
        files = metadata.files(DISTRIBUTION)
    except metadata.PackageNotFoundError as exc:
        raise ModelPackageMissing(
            f"{DISTRIBUTION} is not installed: run 'pip install --no-deps -r requirements-model.txt'"
        ) from exc
    return list(files or [])


@lru_cache(maxsize=1)
def packaged_model_path() -> Path:
    """The trained ``.keras`` file inside the installed distribution."""
    candidates = [f for f in _files() if str(f).endswith(MODEL_SUFFIX)]
    if len(candidates) != 1:
        raise ModelPackageMissing(f"expected one {MODEL_SUFFIX} file in {DISTRIBUTION}")
    return Path(candidates[0].locate()).resolve()


def packaged_sample_images() -> list[tuple[Path, str]]:
    """The 16 labelled validation images, as ``(path, label)``, sorted by name."""
    samples = []
    for f in _files():
        name = str(f)
        if SAMPLE_DIR not in name or not name.lower().endswith((".jpeg", ".jpg", ".png")):
            continue
        label = "NORMAL" if Path(name).name.upper().startswith("NORMAL") else "PNEUMONIA"
        samples.append((Path(f.locate()).resolve(), label))
    return sorted(samples, key=lambda item: item[0].name)


def sha256_file(path: Path, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(chunk_size):
            digest.update(chunk)
    return digest.hexdigest()
