"""Session fixtures for the inference tests: the real packaged model, converted once (~15 s).

No Django and no database here; run with ``-p no:django``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

from inference.classifier import PACKAGED_MODEL_HEATMAP_SCALE, LiteRTClassifier, preprocess
from inference.conversion import ConversionResult, convert_to_litert, load_images, load_keras_model
from inference.model_package import packaged_model_path, packaged_sample_images

if TYPE_CHECKING:
    import keras


@pytest.fixture(scope="session")
def keras_path() -> Path:
    return packaged_model_path()


@pytest.fixture(scope="session")
def converted(keras_path: Path, tmp_path_factory: pytest.TempPathFactory) -> ConversionResult:
    return convert_to_litert(keras_path, tmp_path_factory.mktemp("litert"))


@pytest.fixture(scope="session")
def keras_model(keras_path: Path) -> keras.Model:
    return load_keras_model(keras_path)


@pytest.fixture(scope="session")
def samples() -> list[tuple[Path, str]]:
    return packaged_sample_images()


@pytest.fixture(scope="session")
def sample_images(samples: list[tuple[Path, str]]) -> list[Image.Image]:
    return load_images([path for path, _ in samples])


@pytest.fixture(scope="session")
def sample_batch(sample_images: list[Image.Image]) -> np.ndarray:
    return np.concatenate([preprocess(image) for image in sample_images])


@pytest.fixture(scope="session")
def classifier(converted: ConversionResult) -> LiteRTClassifier:
    return LiteRTClassifier(converted.tflite_path, converted.head_path, heatmap_scale=PACKAGED_MODEL_HEATMAP_SCALE)
