"""Keras -> LiteRT conversion, parity checks and reference Grad-CAM (the TensorFlow side).

Only prepare_models, tests, benchmarks and training import this module; the
serving path (``inference.classifier``) never imports TensorFlow.
"""

from __future__ import annotations

import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from inference.classifier import (
    FEATURE_CHANNELS,
    NEAREST_150,
    PNEUMONIA_INDEX,
    Head,
    LiteRTClassifier,
    Preprocessing,
    preprocess,
    raw_gradcam,
)
from inference.model_input import TRAINING_SUFFIXES
from inference.model_package import sha256_file

if TYPE_CHECKING:
    from collections.abc import Sequence

    import keras

# TensorFlow is imported lazily, inside the functions below, so this still precedes it:
# keep its C++ INFO/WARNING chatter out of logs unless the caller asked for it.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

BASE_LAYER = "xception"
HIDDEN_LAYER = "dense"
LOGITS_LAYER = "dense_1"
TFLITE_NAME = "model.tflite"
HEAD_NAME = "head.npz"
IMAGE_SUFFIXES = TRAINING_SUFFIXES  # the same files training reads


@dataclass(frozen=True)
class ConversionResult:
    tflite_path: Path
    head_path: Path
    tflite_sha256: str
    seconds: float


@dataclass(frozen=True)
class HeatmapScaleMeasurement:
    scale: float
    percentile: float
    n_images: int
    n_cells: int
    folder: Path


def load_keras_model(path: str | os.PathLike[str]) -> keras.Model:
    import keras

    # compile=False: inference only, and it skips restoring the optimizer state.
    return keras.models.load_model(path, compile=False)


def input_size(model: keras.Model) -> int:
    """The square input size a model was built for (150 for the packaged model)."""
    _, height, width, _ = model.inputs[0].shape
    if height != width or height is None:
        raise ValueError(f"expected a square input of fixed size, got {model.inputs[0].shape}")
    return int(height)


def model_at_size(model: keras.Model, size: int) -> keras.Model:
    """The same model, same layer names and weights, built for ``size`` x ``size`` input.

    Xception is fully convolutional and the head sits after global average pooling, so
    every weight fits any input size; only the input layers' declared shapes change.
    """
    import keras

    if input_size(model) == size:
        return model

    def resized(node: object) -> None:
        if isinstance(node, dict):
            if node.get("class_name") == "InputLayer":
                node["config"]["batch_shape"] = [None, size, size, 3]
            for value in node.values():
                resized(value)
        elif isinstance(node, list):
            for value in node:
                resized(value)

    config = model.get_config()
    resized(config)
    rebuilt = keras.Model.from_config(config)
    rebuilt.set_weights(model.get_weights())
    return rebuilt


def build_two_output_model(model: keras.Model) -> keras.Model:
    """Same weights, outputs ``(Xception HxWx2048 feature map, logits)``.

    The head is re-applied on a fresh input rather than read from
    ``model.get_layer(...).output``: the Xception base is a nested Functional
    model, whose ``.output`` belongs to its own inner graph.
    """
    import keras

    size = input_size(model)
    inputs = keras.Input(shape=(size, size, 3), name="image")
    feature_map = model.get_layer(BASE_LAYER)(inputs)
    # The saved base declares its outputs as a one-element list; unwrap it for the head layers.
    if isinstance(feature_map, (list, tuple)):
        (feature_map,) = feature_map
    x = feature_map
    after_base = False
    for layer in model.layers:
        if layer.name == BASE_LAYER:
            after_base = True
        elif after_base:
            x = layer(x)
    return keras.Model(inputs, [feature_map, x], name="pneumonia_two_output")


def extract_head(model: keras.Model) -> dict[str, np.ndarray]:
    w1, b1 = model.get_layer(HIDDEN_LAYER).get_weights()
    w2, b2 = model.get_layer(LOGITS_LAYER).get_weights()
    if w1.shape != (FEATURE_CHANNELS, w2.shape[0]) or w2.shape[1] != 2:
        raise ValueError(f"unexpected head shapes {w1.shape}, {w2.shape}")
    return {"W1": w1, "b1": b1, "W2": w2, "b2": b2}


def convert_to_litert(keras_path: str | os.PathLike[str], out_dir: str | os.PathLike[str]) -> ConversionResult:
    """Write ``model.tflite`` (float32, dynamic batch) and ``head.npz`` into ``out_dir``."""
    import tensorflow as tf

    start = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model = load_keras_model(keras_path)
    two_output = build_two_output_model(model)
    with tempfile.TemporaryDirectory() as tmp:
        saved_model = Path(tmp) / "saved_model"
        # A None batch dimension keeps resize_tensor_input() usable for batched serving.
        size = input_size(model)
        signature = [tf.TensorSpec([None, size, size, 3], tf.float32, name="image")]
        two_output.export(str(saved_model), format="tf_saved_model", verbose=False, input_signature=signature)
        converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
        # No optimizations: float32 weights and activations, nothing quantized.
        converter.optimizations = []
        tflite_bytes = converter.convert()
    tflite_path = out / TFLITE_NAME
    tflite_path.write_bytes(tflite_bytes)
    head_path = out / HEAD_NAME
    np.savez(head_path, **extract_head(model))
    return ConversionResult(
        tflite_path=tflite_path,
        head_path=head_path,
        tflite_sha256=sha256_file(tflite_path),
        seconds=time.perf_counter() - start,
    )


def keras_probabilities(model: keras.Model, batch: np.ndarray) -> np.ndarray:
    """p(PNEUMONIA) per row of a preprocessed batch, via plain ``Model.predict``."""
    logits = model.predict(batch, batch_size=len(batch), verbose=0)
    exp = np.exp(logits.astype(np.float64) - logits.max(axis=1, keepdims=True))
    return (exp / exp.sum(axis=1, keepdims=True))[:, PNEUMONIA_INDEX]


def load_images(paths: Sequence[str | os.PathLike[str]]) -> list[Image.Image]:
    from inference.model_input import training_image_open  # DICOM files too (a site's de-identified export)

    return [training_image_open(path) for path in paths]


def parity_check(
    keras_path: str | os.PathLike[str],
    tflite_path: str | os.PathLike[str],
    head_path: str | os.PathLike[str],
    images: Sequence[np.ndarray | Image.Image],
    preprocessing: Preprocessing = NEAREST_150,
) -> float:
    """Max |p_keras - p_litert| over ``images``; the release gate is 1e-4."""
    batch = np.concatenate([preprocess(image, preprocessing) for image in images])
    expected = keras_probabilities(load_keras_model(keras_path), batch)
    # heatmap_scale is irrelevant here; any positive value will do.
    served = LiteRTClassifier(tflite_path, head_path, heatmap_scale=1.0, preprocessing=preprocessing)
    served = served.predict_batch(images, heatmap=False)
    return float(np.max(np.abs(expected - np.array([p.probability for p in served]))))


def gradient_tape_gradcam(model: keras.Model, batch: np.ndarray) -> np.ndarray:
    """Reference Grad-CAM (N x H x W, unscaled) of the pneumonia log-odds w.r.t. the Xception feature map.

    ``model`` may be the original or the two-output model.
    """
    import tensorflow as tf

    two_output = model if len(model.outputs) == 2 else build_two_output_model(model)
    x = tf.convert_to_tensor(batch, dtype=tf.float32)
    with tf.GradientTape() as tape:
        feature_map, logits = two_output(x, training=False)
        tape.watch(feature_map)
        # log(p / (1 - p)) for the 2-class softmax: see classifier.raw_gradcam for why.
        log_odds = logits[:, PNEUMONIA_INDEX] - logits[:, 1 - PNEUMONIA_INDEX]
    grads = tape.gradient(log_odds, feature_map)
    alpha = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    return tf.nn.relu(tf.reduce_sum(alpha * feature_map, axis=-1)).numpy()


def sample_folder(folder: str | os.PathLike[str], limit: int) -> list[Path]:
    """Up to ``limit`` images evenly spaced over the sorted folder listing (deterministic)."""
    paths = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if len(paths) <= limit:
        return paths
    return [paths[i] for i in np.linspace(0, len(paths) - 1, limit).round().astype(int)]


def measure_heatmap_scale(
    tflite_path: str | os.PathLike[str],
    head_path: str | os.PathLike[str],
    folder: str | os.PathLike[str],
    *,
    limit: int = 400,
    percentile: float = 99.0,
    batch_size: int = 16,
    preprocessing: Preprocessing = NEAREST_150,
) -> HeatmapScaleMeasurement:
    """The fixed display scale: a high percentile of raw Grad-CAM cells over PNEUMONIA images."""
    classifier = LiteRTClassifier(tflite_path, head_path, heatmap_scale=1.0, preprocessing=preprocessing)
    head = classifier.head
    paths = sample_folder(folder, limit)
    cells: list[np.ndarray] = []
    for start in range(0, len(paths), batch_size):
        images = load_images(paths[start : start + batch_size])
        batch = np.concatenate([preprocess(image, preprocessing) for image in images])
        feature_maps, _ = classifier.run(batch)
        cells.extend(raw_gradcam(fm, head).ravel() for fm in feature_maps)
    values = np.concatenate(cells)
    return HeatmapScaleMeasurement(
        scale=float(np.percentile(values, percentile)),
        percentile=percentile,
        n_images=len(paths),
        n_cells=values.size,
        folder=Path(folder),
    )


def head_from_model(model: keras.Model) -> Head:
    weights = extract_head(model)
    return Head(w1=weights["W1"], b1=weights["b1"], w2=weights["W2"], b2=weights["b2"])
