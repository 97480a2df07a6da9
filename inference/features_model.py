"""Serve a features-only LiteRT model (the int8 Xception base) and apply a version's float head in NumPy.

No Django and no TensorFlow: Celery workers import this. The ``.tflite`` file is made by
``manage.py quantize_models`` (``inference.quantization``): the packaged Xception base at 224 px,
full-integer quantised, float32 input and float32 (dequantised) output, one rank-4 output, the
``N x 7 x 7 x 2048`` feature map. Every version that shares the frozen base shares this file; its
own head (``head.npz`` from its float32 conversion) gives the logits and Grad-CAM.

For the registry/runtime side::

    model = FeatureMapModel(path, num_threads=1)          # nothing loaded yet (fork-safe)
    maps = model.run(batch)                               # N x S x S x 3 float32 -> N x 7 x 7 x 2048 float32
    outputs = model.predict_batch(images, head=head, heatmap_scale=s, preprocessing=BICUBIC_224)

``predict_batch`` returns the same ``inference.classifier.ClassifierOutput`` as
``LiteRTClassifier.predict_batch`` (logits from ``head_logits``, heatmap from ``raw_gradcam`` and
``scale_heatmap``), so a caller can swap one for the other. Gate figures: ``inference.quantization_gates``.

The committed file is ``models/xception224-int8/base-int8.tflite``; ``int8-manifest.json`` beside it
(not ``manifest.json``, which the registry would take for a shipped version) holds its ``sha256`` and,
under ``gates[<version name>]``, each version's figures with ``passed`` and the ``head_sha256`` and
``float32_tflite_sha256`` they were measured with: serve int8 for a version only where ``passed`` is
true and those match its registered conversion.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from inference.classifier import (
    BICUBIC_224,
    PNEUMONIA_INDEX,
    ClassifierOutput,
    Head,
    HeadSpec,
    Preprocessing,
    head_logits,
    preprocess,
    raw_gradcam,
    scale_heatmap,
    softmax,
)
from inference.domain import pooled_features

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ai_edge_litert.interpreter import Interpreter
    from PIL import Image


class FeatureMapModel:
    """A LiteRT model with one float32 rank-4 output (the feature map), created lazily per process.

    Like ``LiteRTClassifier``, the interpreter is made on first use in each process, so an object
    built before a prefork never shares the parent's native state across ``fork``.
    """

    def __init__(self, tflite_path: str | os.PathLike[str], *, num_threads: int = 1) -> None:
        self.tflite_path = Path(tflite_path)
        self.num_threads = num_threads
        self._interpreter: Interpreter | None = None
        self._owner_pid: int | None = None
        self._batch_size = 0
        self._input_size = 0

    def _get_interpreter(self) -> Interpreter:
        if self._interpreter is None or self._owner_pid != os.getpid():
            from ai_edge_litert.interpreter import Interpreter

            interpreter = Interpreter(model_path=str(self.tflite_path), num_threads=self.num_threads)
            (self._input,) = interpreter.get_input_details()
            outputs = interpreter.get_output_details()
            if len(outputs) != 1 or len(outputs[0]["shape"]) != 4:
                raise ValueError(f"{self.tflite_path} must have one rank-4 output, has {len(outputs)} outputs")
            if self._input["dtype"] != np.float32 or outputs[0]["dtype"] != np.float32:
                raise ValueError(f"{self.tflite_path} must take and return float32 (quantised inside only)")
            self._output_index = outputs[0]["index"]
            self._interpreter, self._owner_pid, self._batch_size = interpreter, os.getpid(), 0
        return self._interpreter

    def _ensure_batch(self, interpreter: Interpreter, batch_size: int, size: int) -> None:
        if (batch_size, size) != (self._batch_size, self._input_size):
            interpreter.resize_tensor_input(self._input["index"], [batch_size, size, size, 3], strict=True)
            interpreter.allocate_tensors()
            self._batch_size, self._input_size = batch_size, size

    def load(self, size: int = BICUBIC_224.size) -> FeatureMapModel:
        """Create the interpreter now (e.g. in a worker's init) instead of on first run."""
        self._ensure_batch(self._get_interpreter(), 1, size)
        return self

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Preprocessed ``N x S x S x 3`` float32 input -> ``N x H x W x 2048`` float32 feature maps (a copy)."""
        interpreter = self._get_interpreter()
        self._ensure_batch(interpreter, batch.shape[0], batch.shape[1])
        interpreter.set_tensor(self._input["index"], np.ascontiguousarray(batch, dtype=np.float32))
        interpreter.invoke()
        return interpreter.get_tensor(self._output_index)

    def predict_batch(
        self,
        images: Sequence[np.ndarray | Image.Image],
        *,
        head: Head,
        heatmap_scale: float,
        preprocessing: Preprocessing = BICUBIC_224,
        heatmap: bool = True,
    ) -> list[ClassifierOutput]:
        """``LiteRTClassifier.predict_batch``'s results, from this base and ``head``; timings are per-image shares."""
        if not images:
            return []
        n = len(images)
        t0 = time.perf_counter()
        batch = np.concatenate([preprocess(image, preprocessing) for image in images])
        t1 = time.perf_counter()
        feature_maps = self.run(batch)
        pooled = pooled_features(feature_maps)
        logits = head_logits(pooled, head)
        t2 = time.perf_counter()
        heatmaps = [scale_heatmap(raw_gradcam(fm, head), heatmap_scale) if heatmap else None for fm in feature_maps]
        t3 = time.perf_counter()
        probabilities = softmax(logits)[:, PNEUMONIA_INDEX]
        return [
            ClassifierOutput(
                probability=float(probabilities[i]),
                logits=(float(logits[i, 0]), float(logits[i, 1])),
                heatmap=heatmaps[i],
                input_sha256=hashlib.sha256(batch[i].tobytes()).hexdigest(),
                preprocess_ms=(t1 - t0) * 1000 / n,
                inference_ms=(t2 - t1) * 1000 / n,
                heatmap_ms=(t3 - t2) * 1000 / n,
                preprocessing_version=preprocessing.name,
                pooled_features=pooled[i],
            )
            for i in range(n)
        ]


class SharedBaseClassifier:
    """``inference.runtime``'s classifier on a features-only base: the version's own head and, on the same
    forward pass, the heads of the other versions that share the base (``predict_heads``).

    What workers serve when a version's int8 base passed its gates (``inference.registry.int8_verdict``).
    """

    def __init__(self, model: FeatureMapModel, own: HeadSpec, preprocessing: Preprocessing = BICUBIC_224) -> None:
        self.model = model
        self.own = own
        self.preprocessing = preprocessing

    def load(self) -> SharedBaseClassifier:
        self.model.load(self.preprocessing.size)
        return self

    def predict(self, image: np.ndarray | Image.Image, *, heatmap: bool = True) -> ClassifierOutput:
        return self.predict_heads(image, heads=[], heatmap=heatmap)[0]

    def predict_heads(
        self, image: np.ndarray | Image.Image, *, heads: Sequence[HeadSpec], heatmap: bool = True
    ) -> list[ClassifierOutput]:
        t0 = time.perf_counter()
        batch = preprocess(image, self.preprocessing)
        t1 = time.perf_counter()
        feature_map = self.model.run(batch)[0]
        t2 = time.perf_counter()
        pooled = pooled_features(feature_map[np.newaxis])
        input_sha256 = hashlib.sha256(batch[0].tobytes()).hexdigest()
        results = []
        for spec in (self.own, *heads):
            t3 = time.perf_counter()
            logits = head_logits(pooled, spec.head)
            t4 = time.perf_counter()
            grid = scale_heatmap(raw_gradcam(feature_map, spec.head), spec.heatmap_scale) if heatmap else None
            results.append(
                ClassifierOutput(
                    probability=float(softmax(logits)[0, PNEUMONIA_INDEX]),
                    logits=(float(logits[0, 0]), float(logits[0, 1])),
                    heatmap=grid,
                    input_sha256=input_sha256,
                    preprocess_ms=(t1 - t0) * 1000,
                    inference_ms=(t2 - t1 + t4 - t3) * 1000,
                    heatmap_ms=(time.perf_counter() - t4) * 1000,
                    preprocessing_version=self.preprocessing.name,
                    pooled_features=pooled[0],
                )
            )
        return results
