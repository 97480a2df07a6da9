"""Full-integer (int8) LiteRT conversion of the shared Xception base, and its gate figures (the TensorFlow side).

Imported only by ``manage.py quantize_models``, tests and benchmarks; workers serve the result with
``inference.features_model.FeatureMapModel`` and never import this module.

Only the base is quantised: every shipped version that keeps the packaged base frozen (its weights
touch only ``dense`` and ``dense_1``) shares one file, and its float head computes the logits and
Grad-CAM in NumPy from the dequantised feature map, exactly as it does from the float32 one.

The representative (calibration) set is drawn from each version's TRAINING split only: the images
of its ``data.folder`` minus its manifest's ``validation_paths`` and ``excluded_packaged_samples``,
sorted, evenly spaced (deterministic). Validation images are never used for calibration.

What was tried (v2's head, the 16 packaged images, max |p_int8 - p_float32| and max heatmap-cell
difference; forward pass at batch 1, one thread, ms int8 / float32 on this 2-core machine, 2026-12-01):

=====================================================  ======  =======  ====================
variant                                                 prob    cell     time
=====================================================  ======  =======  ====================
full int8, per-channel weights, 16 calibration images   0.216   0.109    56 / 115 (0.49x)
full int8, per-channel weights, 200 calibration images  0.307   0.132    58 / 121 (0.48x)
shipped: full int8, 200 + 100 adult calibration images  0.355   0.166    see bench/inference.py
int16x8 activations, 16 calibration images              0.033   0.064    6716 / 285 (23.6x)
full int8, block 14 kept float32 (selective)            0.116   0.109    144 / 321 (0.45x, busy)
dynamic range (int8 weights, float activations)         0.077   0.137    170 / 408 (0.42x, busy)
=====================================================  ======  =======  ====================

The quantisation debugger finds no outlier layer (every op's RMSE / scale is 0.13 to 0.36, the
rounding noise of one step is 0.29): the error builds up over Xception's 36 separable convolutions,
and the calibrated heads turn small feature shifts into large probability shifts. int16x8 has no
XNNPACK kernels. So no variant meets the 0.02 probability gate; ``quantize_models`` ships plain full
int8 (the fastest) and records the failed gates, and float32 stays served. On v2's validation split the
ranking survives (AUC 0.9943 float32, 0.9933 int8: within 0.003), the single probabilities do not
(median difference 0.0002, maximum 0.49); the adult version fails all three gates (its heatmap scale
is five times smaller, so its cells move five times more).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from inference.classifier import BICUBIC_224, Preprocessing, preprocess
from inference.model_package import packaged_model_path, sha256_file

if TYPE_CHECKING:
    import keras

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BASE_LAYER = "xception"
LABELS = ("NORMAL", "PNEUMONIA")
IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
# Layers a version may have retrained and still share the frozen base.
HEAD_LAYERS = frozenset({"dense", "dense_1"})
INT8_DIR_NAME = "xception224-int8"
INT8_FILE_NAME = "base-int8.tflite"
# Not manifest.json: the registry takes every models/*/manifest.json for a shipped version.
INT8_MANIFEST_NAME = "int8-manifest.json"
ADULT_FIXTURES = Path("tests/fixtures/adult")


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    label: int  # 0 NORMAL, 1 PNEUMONIA


@dataclass(frozen=True)
class VersionSplit:
    """A shipped version's images under the data folder, as its manifest split them."""

    name: str
    folder: Path
    train: list[LabelledImage]
    validation: list[LabelledImage]


@dataclass(frozen=True)
class QuantizationSettings:
    """How the converter was set up; recorded in the int8 manifest."""

    activations: str = "int8"  # or "int16x8" (no XNNPACK kernels: slow)
    per_channel_weights: bool = True
    float_layers: tuple[str, ...] = ()  # node-name fragments kept in float32 (selective quantisation)

    def describe(self) -> dict:
        return {
            "optimizations": ["DEFAULT"],
            "activations": self.activations,
            "weights": "int8 per-channel" if self.per_channel_weights else "int8 per-tensor",
            "inference_input_type": "float32",
            "inference_output_type": "float32",
            "float_layers": list(self.float_layers),
        }


@dataclass(frozen=True)
class Int8Conversion:
    tflite_path: Path
    sha256: str
    bytes: int
    seconds: float
    settings: dict = field(default_factory=dict)


# --- the base-only model ------------------------------------------------------------------------


def base_model(size: int = BICUBIC_224.size, keras_path: Path | None = None) -> keras.Model:
    """The packaged model's ``xception`` layer at ``size`` px: image -> ``HxWx2048`` feature map."""
    import keras

    from inference.conversion import load_keras_model, model_at_size

    model = model_at_size(load_keras_model(keras_path or packaged_model_path()), size)
    inputs = keras.Input(shape=(size, size, 3), name="image")
    feature_map = model.get_layer(BASE_LAYER)(inputs)
    if isinstance(feature_map, (list, tuple)):  # the saved base declares a one-element output list
        (feature_map,) = feature_map
    return keras.Model(inputs, feature_map, name="xception_features")


# --- splits and the representative set -----------------------------------------------------------


def version_split(manifest: dict, data_root: Path) -> VersionSplit:
    """Training and validation images of a shipped version, from its manifest and the data folder."""
    folder = data_root / manifest["data"]["folder"]
    split = manifest["split"]
    held_out = set(split["validation_paths"]) | set(manifest["data"].get("excluded_packaged_samples", []))
    limit = split.get("limit_per_class")
    train, validation = [], []
    for label, name in enumerate(LABELS):
        paths = sorted(p for p in (folder / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        for path in paths[:limit] if limit else paths:
            relative = f"{name}/{path.name}"
            if relative in split["validation_paths"]:
                validation.append(LabelledImage(path, label))
            elif relative not in held_out:
                train.append(LabelledImage(path, label))
    # The data folder must be the one the version was trained on, or "validation" means nothing
    # (and a training filter, such as the adult ages and views, must have left the same images).
    _check_digest(validation, split.get("validation_sha256_digest"), f"{manifest['name']} validation")
    _check_digest(train, split.get("train_sha256_digest"), f"{manifest['name']} training")
    return VersionSplit(manifest["name"], folder, train, validation)


def images_digest(paths: Sequence[Path]) -> str:
    """sha256 over the sorted image sha256s (as ``inference.training.split_digest``): names a set of images."""
    return hashlib.sha256("\n".join(sorted(sha256_file(p) for p in paths)).encode()).hexdigest()


def _check_digest(images: list[LabelledImage], expected: str | None, what: str) -> None:
    if expected and images_digest([i.path for i in images]) != expected:
        raise ValueError(f"{what} images under the data folder differ from the manifest's split")


def evenly_spaced(items: Sequence, limit: int) -> list:
    if len(items) <= limit:
        return list(items)
    return [items[i] for i in np.linspace(0, len(items) - 1, limit).round().astype(int)]


def representative_paths(splits: Sequence[tuple[VersionSplit, int]]) -> list[Path]:
    """``n`` training images of each version (sorted by path, evenly spaced), validation never included."""
    chosen: list[Path] = []
    for split, n in splits:
        chosen += evenly_spaced(sorted(i.path for i in split.train), n)
    return chosen


def preprocessed(path: Path, preprocessing: Preprocessing = BICUBIC_224) -> np.ndarray:
    with Image.open(path) as image:
        return preprocess(image, preprocessing)


# --- conversion ---------------------------------------------------------------------------------


def convert_base_int8(
    paths: Sequence[Path],
    out_path: Path,
    *,
    quantization: QuantizationSettings | None = None,
    size: int = BICUBIC_224.size,
) -> Int8Conversion:
    """Write the full-integer base (float32 in and out) to ``out_path``, calibrated on ``paths``."""
    import tensorflow as tf

    quantization = quantization or QuantizationSettings()
    start = time.perf_counter()
    model = base_model(size)

    def representative() -> Iterator[list[np.ndarray]]:
        for path in paths:
            yield [preprocessed(path)]

    with tempfile.TemporaryDirectory() as tmp:
        saved_model = Path(tmp) / "saved_model"
        # A None batch dimension keeps resize_tensor_input() usable for batched serving.
        signature = [tf.TensorSpec([None, size, size, 3], tf.float32, name="image")]
        model.export(str(saved_model), format="tf_saved_model", verbose=False, input_signature=signature)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        if quantization.activations == "int16x8":
            ops = tf.lite.OpsSet.EXPERIMENTAL_TFLITE_BUILTINS_ACTIVATIONS_INT16_WEIGHTS_INT8
        else:
            ops = tf.lite.OpsSet.TFLITE_BUILTINS_INT8
        # Full-integer: fail rather than silently keep an op in float (unless asked to, below).
        converter.target_spec.supported_ops = (
            [ops] if not quantization.float_layers else [ops, tf.lite.OpsSet.TFLITE_BUILTINS]
        )
        # Input and output stay float32 (the default): the converter adds Quantize/Dequantize at the ends.
        converter._experimental_disable_per_channel = not quantization.per_channel_weights
        tflite_bytes = (
            _selective(converter, quantization.float_layers, representative)
            if quantization.float_layers
            else converter.convert()
        )
    out_path.parent.mkdir(parents=True, exist_ok=True)
    out_path.write_bytes(tflite_bytes)
    return Int8Conversion(
        tflite_path=out_path,
        sha256=sha256_file(out_path),
        bytes=out_path.stat().st_size,
        seconds=time.perf_counter() - start,
        settings=quantization.describe(),
    )


def _selective(converter: object, float_layers: tuple[str, ...], representative: object) -> bytes:
    """Quantise everything except the ops whose output names contain one of ``float_layers``."""
    import tensorflow as tf

    # fully_quantize=False keeps float32 input and output (Quantize/Dequantize at the ends), as convert() does.
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=converter,
        debug_dataset=representative,
        debug_options=tf.lite.experimental.QuantizationDebugOptions(fully_quantize=False),
    )
    names = [d["name"] for d in debugger._quant_interpreter.get_tensor_details()]
    nodes = [n for n in names if any(fragment in n for fragment in float_layers)]
    debugger.options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=nodes, fully_quantize=False)
    return debugger.get_nondebug_quantized_model()


def shares_base_reason(manifest: dict, base_sha256: str) -> str:
    """Why a shipped version cannot use the shared int8 base ("" when it can)."""
    if manifest["base"]["sha256"] != base_sha256:
        return f"built on another base (sha256 {manifest['base']['sha256']})"
    if manifest["preprocessing_version"] != BICUBIC_224.name:
        return f"its input is {manifest['preprocessing_version']}, the int8 base's {BICUBIC_224.name}"
    changed = set(manifest["weights"]["layers"]) - HEAD_LAYERS
    if changed:
        return f"it retrained base layers ({', '.join(sorted(changed))})"
    return ""


def parity_image_paths(repo_root: Path) -> list[Path]:
    """The parity images: the 16 packaged samples, then the committed adult fixtures (``tests/fixtures/adult``)."""
    from inference.model_package import packaged_sample_images

    adult = sorted((repo_root / ADULT_FIXTURES).glob("*.png"))
    return [path for path, _ in packaged_sample_images()] + adult
