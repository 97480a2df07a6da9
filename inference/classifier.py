"""Serve the pneumonia model with LiteRT and an exact NumPy Grad-CAM.

This is the module Celery workers import, so it must stay free of Django and
TensorFlow: importing TF costs seconds and hundreds of MB per process, while a
LiteRT interpreter over the converted ``.tflite`` file loads in milliseconds.
The ``.tflite`` file and ``head.npz`` are produced by ``inference.conversion``.
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from inference.domain import pooled_features

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ai_edge_litert.interpreter import Interpreter


# Bump a preprocessing's name whenever what it computes changes: stored predictions record
# which one produced them, and a model version names the one it was trained with.
@dataclass(frozen=True)
class Preprocessing:
    """How an 8-bit image becomes a model input: RGB, resized to ``size`` x ``size``, then ``x / 127.5 - 1``."""

    name: str
    size: int
    resample: Image.Resampling


# The packaged model's training pipeline (Keras load_img): RGB, then Pillow NEAREST to 150 px.
NEAREST_150 = Preprocessing("rgb-nearest150-xception-v1", 150, Image.Resampling.NEAREST)
# Pillow's default BICUBIC to 224 px: antialiased when shrinking, and exactly how the 224 px
# training copies of the Kermany images were made from the originals.
BICUBIC_224 = Preprocessing("rgb-bicubic224-xception-v1", 224, Image.Resampling.BICUBIC)
PREPROCESSINGS = {p.name: p for p in (NEAREST_150, BICUBIC_224)}

PREPROCESSING_VERSION = NEAREST_150.name  # the packaged model's
INPUT_SIZE = NEAREST_150.size


def preprocessing_get(name: str) -> Preprocessing:
    try:
        return PREPROCESSINGS[name]
    except KeyError:
        raise ValueError(f"unknown preprocessing {name!r}; known: {', '.join(PREPROCESSINGS)}") from None


FEATURE_CHANNELS = 2048
NUM_CLASSES = 2
PNEUMONIA_INDEX = 1

# Fixed Grad-CAM display scales, keyed by the sha256 of the ``.keras`` file they were measured on.
# A fixed scale (rather than each image's own max) keeps a confident normal from looking hot.
# Packaged model (pneumonia-model-package 0.3.0, pneumonia_xception_model_val-acc_0.861.keras):
# inference.conversion.measure_heatmap_scale(limit=400, percentile=99.0) = the 99th percentile of
# the raw (unscaled) log-odds Grad-CAM cells over 400 evenly spaced images of the sorted listing
# of ../shared/data/kermany-224/train/PNEUMONIA (224x224 RGB JPEGs through preprocess(); training
# images, acceptable for a display constant): 10000 cells, LiteRT float32 feature maps.
# With it, over 200 images of each class: median heatmap maximum 0.000 for normals with
# p < 0.1, 0.14 to 0.18 for 0.5 <= p < 0.9, and 0.74 for pneumonias with p >= 0.99.
PACKAGED_MODEL_SHA256 = "d7997cd1923f4d13538f02d64b6d5925e2f87a2a2db8036c074f795c41439e26"
PACKAGED_MODEL_HEATMAP_SCALE = 0.7843911
HEATMAP_SCALES = {PACKAGED_MODEL_SHA256: PACKAGED_MODEL_HEATMAP_SCALE}


def _to_rgb_pil(image: np.ndarray | Image.Image) -> Image.Image:
    if isinstance(image, Image.Image):
        return image if image.mode == "RGB" else image.convert("RGB")
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"expected a uint8 image array, got {array.dtype}")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim == 2 or (array.ndim == 3 and array.shape[2] == 3):
        # Through Pillow, like Keras' load_img: L -> RGB replicates the channel.
        return Image.fromarray(np.ascontiguousarray(array)).convert("RGB")
    raise ValueError(f"expected an HxW or HxWx3 image, got shape {array.shape}")


def preprocess(image: np.ndarray | Image.Image, preprocessing: Preprocessing = NEAREST_150) -> np.ndarray:
    """Return the float32 ``1 x size x size x 3`` model input for one image.

    For the packaged model this reproduces training exactly (ImageDataGenerator.flow_from_dataframe):
    Keras' ``load_img`` converts to RGB *then* resizes with Pillow NEAREST, then
    ``xception.preprocess_input`` computes ``x / 127.5 - 1`` in float32, in place.
    """
    size = preprocessing.size
    rgb = _to_rgb_pil(image)
    if rgb.size != (size, size):
        rgb = rgb.resize((size, size), preprocessing.resample)
    x = np.asarray(rgb, dtype=np.float32).copy()
    # Same two in-place float32 steps as Keras, so the result is bit-identical.
    x /= 127.5
    x -= 1.0
    return x[np.newaxis]


def reduce_to_input_grid(image: np.ndarray, preprocessing: Preprocessing = NEAREST_150) -> np.ndarray:
    """The uint8 image resized to the model's grid, so that ``preprocess`` of it equals ``preprocess`` of the original.

    Pillow resamples each band of an 8-bit image with the same integer arithmetic, so a grey
    image gives the same pixels whether it is expanded to RGB before or after resizing (NEAREST
    and BICUBIC alike; a test checks it). Ingest can keep this small grid and the worker skip
    decoding the original again.
    """
    size = preprocessing.size
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim not in (2, 3):
        raise ValueError(f"expected a uint8 HxW or HxWx3 image, got {array.dtype} {array.shape}")
    pil = Image.fromarray(np.ascontiguousarray(array))
    if pil.size != (size, size):
        pil = pil.resize((size, size), preprocessing.resample)
    return np.asarray(pil)


@dataclass(frozen=True)
class Head:
    """Weights of the dense head after the Xception base (Dropout is identity at inference)."""

    w1: np.ndarray  # (2048, 128)
    b1: np.ndarray  # (128,)
    w2: np.ndarray  # (128, 2)
    b2: np.ndarray  # (2,)

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Head:
        with np.load(path) as data:
            return cls(
                w1=data["W1"].astype(np.float32),
                b1=data["b1"].astype(np.float32),
                w2=data["W2"].astype(np.float32),
                b2=data["b2"].astype(np.float32),
            )


def softmax(logits: np.ndarray) -> np.ndarray:
    # float64: for a confident prediction 1 - p is tiny, and Grad-CAM scales with p * (1 - p).
    z = np.asarray(logits, dtype=np.float64)
    exp = np.exp(z - z.max(axis=-1, keepdims=True))
    return exp / exp.sum(axis=-1, keepdims=True)


def raw_gradcam(feature_map: np.ndarray, head: Head) -> np.ndarray:
    """Unscaled HxW Grad-CAM of the pneumonia log-odds w.r.t. the HxWx2048 Xception feature map.

    H = W = 5 at 150 px input, 7 at 224 px.

    The target is log(p / (1 - p)) = logit[PNEUMONIA] - logit[NORMAL], the pneumonia
    probability on the log-odds scale, as in Grad-CAM's use of the pre-softmax class score.
    The gradient of p itself carries a factor p * (1 - p) that blanks the map of exactly
    the confident pneumonia cases a radiologist most wants localised; on log-odds a
    confident pneumonia maps hot and a confident normal (no positive evidence) stays cold.
    Exact backpropagation through GAP -> Dense(relu) -> Dense: the numbers a GradientTape
    gives, in ~0.15 ms, in float32 like the model.
    """
    a = np.asarray(feature_map, dtype=np.float32)
    if a.ndim != 3 or a.shape[2] != FEATURE_CHANNELS:
        raise ValueError(f"expected an HxWx{FEATURE_CHANNELS} feature map, got {a.shape}")
    pooled = pooled_features(a)
    pre = pooled @ head.w1 + head.b1
    dp_dlogits = np.full(NUM_CLASSES, -1.0, dtype=np.float32)
    dp_dlogits[PNEUMONIA_INDEX] = 1.0
    dp_dhidden = (head.w2 @ dp_dlogits.astype(np.float32)) * (pre > 0.0)
    dp_dpooled = head.w1 @ dp_dhidden
    # GAP spreads each channel's gradient evenly over the H*W cells, so the spatial mean of
    # dp/dA (the Grad-CAM channel weight alpha_k) is dp/dpooled_k / (H*W).
    alpha = dp_dpooled / np.float32(a.shape[0] * a.shape[1])
    return np.maximum(a @ alpha, 0.0)


def head_logits(pooled: np.ndarray, head: Head) -> np.ndarray:
    """``N x 2`` logits of the dense head on ``N x 2048`` pooled features (Dropout is identity at inference)."""
    hidden = np.maximum(np.asarray(pooled, dtype=np.float32) @ head.w1 + head.b1, 0.0)
    return hidden @ head.w2 + head.b2


@dataclass(frozen=True)
class HeadSpec:
    """Another version's head on the same feature map, with its own Grad-CAM display scale."""

    head: Head
    heatmap_scale: float


def scale_heatmap(raw: np.ndarray, heatmap_scale: float) -> np.ndarray:
    if heatmap_scale <= 0:
        raise ValueError("heatmap_scale must be positive")
    return np.clip(raw / np.float32(heatmap_scale), 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class ClassifierOutput:
    """One image's result; the caller applies the decision threshold to ``probability``."""

    probability: float  # p(PNEUMONIA) = softmax(logits)[1]
    logits: tuple[float, float]  # [NORMAL, PNEUMONIA]
    heatmap: np.ndarray | None  # HxW (5x5 or 7x7) float32 in [0, 1], None when not requested
    input_sha256: str  # sha256 of the preprocessed float32 1xSxSx3 input's C-order bytes
    preprocess_ms: float
    inference_ms: float
    heatmap_ms: float
    preprocessing_version: str = PREPROCESSING_VERSION
    # The (2048,) float32 mean of this forward pass's feature map: what the scope checks read.
    pooled_features: np.ndarray | None = None


class LiteRTClassifier:
    """Two-output LiteRT model (feature map, logits) plus the NumPy head for Grad-CAM.

    The interpreter is created lazily, per process: a classifier built before a
    prefork (Celery, gunicorn) creates a fresh interpreter in each child rather
    than sharing the parent's native state across ``fork``.
    """

    def __init__(
        self,
        tflite_path: str | os.PathLike[str],
        head_path: str | os.PathLike[str],
        *,
        heatmap_scale: float,
        num_threads: int = 1,
        preprocessing: Preprocessing | str = NEAREST_150,
    ) -> None:
        if heatmap_scale <= 0:
            raise ValueError("heatmap_scale must be positive")
        self.tflite_path = Path(tflite_path)
        self.head = Head.load(head_path)
        self.heatmap_scale = float(heatmap_scale)
        self.num_threads = num_threads
        self.preprocessing = preprocessing_get(preprocessing) if isinstance(preprocessing, str) else preprocessing
        self._interpreter: Interpreter | None = None
        self._owner_pid: int | None = None
        self._batch_size = 0
        self._last_feature_map: np.ndarray | None = None

    def _get_interpreter(self) -> Interpreter:
        if self._interpreter is None or self._owner_pid != os.getpid():
            # Imported here so importing this module stays cheap for code that never predicts.
            from ai_edge_litert.interpreter import Interpreter

            self._interpreter = Interpreter(model_path=str(self.tflite_path), num_threads=self.num_threads)
            self._owner_pid = os.getpid()
            self._batch_size = 0
            self._locate_tensors(self._interpreter)
        return self._interpreter

    def _locate_tensors(self, interpreter: Interpreter) -> None:
        (self._input,) = interpreter.get_input_details()
        # Output order in a converted model is not guaranteed; tell them apart by rank.
        outputs = {len(d["shape"]): d["index"] for d in interpreter.get_output_details()}
        self._feature_index, self._logits_index = outputs[4], outputs[2]

    def _ensure_batch(self, interpreter: Interpreter, batch_size: int) -> None:
        if batch_size != self._batch_size:
            size = self.preprocessing.size
            shape = [batch_size, size, size, 3]
            interpreter.resize_tensor_input(self._input["index"], shape, strict=True)
            interpreter.allocate_tensors()
            self._batch_size = batch_size

    def load(self) -> LiteRTClassifier:
        """Create the interpreter now (e.g. in a worker's init) instead of on first predict."""
        self._ensure_batch(self._get_interpreter(), 1)
        return self

    def run(self, batch: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Run preprocessed ``N x S x S x 3`` input; return (feature maps, logits)."""
        interpreter = self._get_interpreter()
        self._ensure_batch(interpreter, batch.shape[0])
        interpreter.set_tensor(self._input["index"], np.ascontiguousarray(batch, dtype=np.float32))
        interpreter.invoke()
        return interpreter.get_tensor(self._feature_index), interpreter.get_tensor(self._logits_index)

    def predict(self, image: np.ndarray | Image.Image, *, heatmap: bool = True) -> ClassifierOutput:
        return self.predict_batch([image], heatmap=heatmap)[0]

    def predict_batch(
        self, images: Sequence[np.ndarray | Image.Image], *, heatmap: bool = True
    ) -> list[ClassifierOutput]:
        """Predict several images in one interpreter call; timings are per-image shares."""
        if not images:
            return []
        n = len(images)
        t0 = time.perf_counter()
        batch = np.concatenate([preprocess(image, self.preprocessing) for image in images])
        t1 = time.perf_counter()
        feature_maps, logits = self.run(batch)
        # The last image's map, kept for the other heads of predict_heads (this process's own copy).
        self._last_feature_map = feature_maps[-1]
        t2 = time.perf_counter()
        heatmaps = [self._heatmap(fm) if heatmap else None for fm in feature_maps]
        t3 = time.perf_counter()
        probabilities = softmax(logits)[:, PNEUMONIA_INDEX]
        pooled = pooled_features(feature_maps)
        return [
            ClassifierOutput(
                probability=float(probabilities[i]),
                logits=(float(logits[i, 0]), float(logits[i, 1])),
                heatmap=heatmaps[i],
                input_sha256=hashlib.sha256(batch[i].tobytes()).hexdigest(),
                preprocess_ms=(t1 - t0) * 1000 / n,
                inference_ms=(t2 - t1) * 1000 / n,
                heatmap_ms=(t3 - t2) * 1000 / n,
                preprocessing_version=self.preprocessing.name,
                pooled_features=pooled[i],
            )
            for i in range(n)
        ]

    def _heatmap(self, feature_map: np.ndarray) -> np.ndarray:
        return scale_heatmap(raw_gradcam(feature_map, self.head), self.heatmap_scale)

    def predict_heads(
        self, image: np.ndarray | Image.Image, *, heads: Sequence[HeadSpec], heatmap: bool = True
    ) -> list[ClassifierOutput]:
        """This model's result, then each other head's, from one forward pass of the shared feature map.

        Versions that put a new head on the same frozen base and preprocessing compute the same
        feature map, so routing an image among them costs one pass and a few NumPy products.
        """
        own = self.predict(image, heatmap=heatmap)
        if not heads:
            return [own]
        feature_map = self._last_feature_map
        results = [own]
        for spec in heads:
            t0 = time.perf_counter()
            logits = head_logits(own.pooled_features[np.newaxis], spec.head)
            probability = float(softmax(logits)[0, PNEUMONIA_INDEX])
            t1 = time.perf_counter()
            grid = scale_heatmap(raw_gradcam(feature_map, spec.head), spec.heatmap_scale) if heatmap else None
            results.append(
                ClassifierOutput(
                    probability=probability,
                    logits=(float(logits[0, 0]), float(logits[0, 1])),
                    heatmap=grid,
                    input_sha256=own.input_sha256,
                    preprocess_ms=own.preprocess_ms,
                    inference_ms=own.inference_ms + (t1 - t0) * 1000,
                    heatmap_ms=(time.perf_counter() - t1) * 1000,
                    preprocessing_version=own.preprocessing_version,
                    pooled_features=own.pooled_features,
                )
            )
        return results
