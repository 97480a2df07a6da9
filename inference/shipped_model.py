"""Rebuild a full ``.keras`` model from the packaged base and a shipped ``weights.npz``.

A shipped version stores only what training changed (the head, and block 14's separable
convolutions when fine-tuned) as float16; everything else is the packaged model, whose
sha256 the manifest pins. The rebuilt file is byte-for-byte deterministic (fixed zip
timestamps, no save date), so its sha256 is stable across rebuilds and can be registered.
TensorFlow/Keras is imported inside the functions only.
"""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from inference.model_package import sha256_file

MANIFEST_NAME = "manifest.json"
BASE_LAYER = "xception"
FIXED_ZIP_TIME = (1980, 1, 1, 0, 0, 0)


class ShippedModelError(RuntimeError):
    """A shipped model does not match its manifest or its base."""


def manifest_read(model_dir: Path) -> dict:
    return json.loads((model_dir / MANIFEST_NAME).read_text())


def shipped_verify(model_dir: Path, base_path: Path) -> dict:
    """The manifest, after checking the base's and the weights' sha256 against it."""
    manifest = manifest_read(model_dir)
    base_sha = sha256_file(base_path)
    if base_sha != manifest["base"]["sha256"]:
        raise ShippedModelError(f"{model_dir.name} needs base sha256 {manifest['base']['sha256']}, found {base_sha}")
    weights = model_dir / manifest["weights"]["file"]
    if not weights.is_file() or sha256_file(weights) != manifest["weights"]["sha256"]:
        raise ShippedModelError(f"{weights} is missing or differs from its manifest")
    return manifest


def weights_apply(model, weights_path: Path) -> None:
    """Set each ``"<layer>/<i>"`` array into the layer of that name (inside the base for block 14)."""
    base = model.get_layer(BASE_LAYER)
    with np.load(weights_path) as data:
        arrays: dict[str, dict[int, np.ndarray]] = {}
        for key in data.files:
            layer_name, index = key.rsplit("/", 1)
            arrays.setdefault(layer_name, {})[int(index)] = data[key].astype(np.float32)
    for layer_name, by_index in arrays.items():
        names = {layer.name for layer in model.layers}
        layer = model.get_layer(layer_name) if layer_name in names else base.get_layer(layer_name)
        current = layer.get_weights()
        if sorted(by_index) != list(range(len(current))):
            raise ShippedModelError(f"{layer_name}: expected {len(current)} arrays, got {sorted(by_index)}")
        for i, w in by_index.items():
            if w.shape != current[i].shape:
                raise ShippedModelError(f"{layer_name}/{i}: shape {w.shape}, expected {current[i].shape}")
        layer.set_weights([by_index[i] for i in range(len(current))])


def _normalise_keras_zip(raw: bytes) -> bytes:
    """Same archive with fixed timestamps and no ``date_saved``: identical weights give identical bytes."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(raw)) as source, zipfile.ZipFile(out, "w") as target:
        for info in source.infolist():
            data = source.read(info.filename)
            if info.filename == "metadata.json":
                metadata = json.loads(data)
                metadata.pop("date_saved", None)
                data = json.dumps(metadata, sort_keys=True).encode()
            fixed = zipfile.ZipInfo(info.filename, date_time=FIXED_ZIP_TIME)
            fixed.compress_type = info.compress_type
            fixed.external_attr = 0o644 << 16
            target.writestr(fixed, data)
    return out.getvalue()


def model_rebuild(base_path: Path, weights_path: Path, out_path: Path, input_size: int = 150) -> Path:
    """Write the full model (packaged base at ``input_size`` + shipped weights) to ``out_path``, deterministically."""
    import tempfile

    from inference.conversion import load_keras_model, model_at_size

    model = model_at_size(load_keras_model(base_path), input_size)
    weights_apply(model, weights_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        raw_path = Path(tmp) / "model.keras"
        model.save(raw_path)
        data = _normalise_keras_zip(raw_path.read_bytes())
    # Per-process name: two processes preparing at once each write their own, then replace atomically.
    partial = out_path.with_name(f"{out_path.name}.{os.getpid()}.partial")
    partial.write_bytes(data)
    partial.replace(out_path)
    return out_path
