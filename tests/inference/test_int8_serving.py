"""Workers serve the int8 base only for a version whose gates passed on its own head; float32 otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from django.conf import settings as django_settings
from PIL import Image

from inference import runtime
from inference.classifier import LiteRTClassifier
from inference.features_model import SharedBaseClassifier
from inference.model_package import packaged_sample_images
from inference.registry import int8_verdict

pytestmark = pytest.mark.slow
SHIPPED = Path(django_settings.BASE_DIR) / "models" / "xception224-int8"


def _shipped_int8(tmp_path: Path, gates: dict) -> Path:
    folder = tmp_path / "xception224-int8"
    folder.mkdir()
    record = json.loads((SHIPPED / "int8-manifest.json").read_text())
    (folder / record["file"]).symlink_to(SHIPPED / record["file"])
    (folder / "int8-manifest.json").write_text(json.dumps({**record, "gates": gates}))
    return tmp_path


@pytest.fixture(autouse=True)
def _fresh_runtime():
    runtime._loaded.clear()
    yield
    runtime._loaded.clear()


def test_the_shipped_int8_base_failed_its_gates_so_float32_is_served(active_model) -> None:
    assert "failed its gates" in int8_verdict(active_model)
    assert isinstance(runtime.classifier_for(active_model), LiteRTClassifier)


def test_a_version_whose_gates_passed_serves_the_int8_base(active_model, settings, tmp_path) -> None:
    # As quantize_models records them: measured on this version's head and float32 conversion.
    passed = {
        "passed": True,
        "head_sha256": active_model.head_sha256,
        "float32_tflite_sha256": active_model.converted_sha256,
    }
    settings.PNEUMO_SHIPPED_MODELS_DIR = str(_shipped_int8(tmp_path, {active_model.name: passed}))
    image = np.asarray(Image.open(packaged_sample_images()[9][0]).convert("L"))

    classifier = runtime.classifier_for(active_model)
    result = classifier.predict(image)

    assert int8_verdict(active_model) == ""
    assert isinstance(classifier, SharedBaseClassifier)
    assert 0.0 <= result.probability <= 1.0 and result.heatmap.shape == (7, 7)
    assert result.pooled_features.shape == (2048,)


def test_gates_measured_on_another_head_do_not_count(active_model, settings, tmp_path) -> None:
    other = {"passed": True, "head_sha256": "0" * 64}
    settings.PNEUMO_SHIPPED_MODELS_DIR = str(_shipped_int8(tmp_path, {active_model.name: other}))

    assert int8_verdict(active_model) == "its int8 gates were measured on another head"
    assert isinstance(runtime.classifier_for(active_model), LiteRTClassifier)


def test_gates_measured_against_another_float32_conversion_do_not_count(active_model, settings, tmp_path) -> None:
    other = {"passed": True, "head_sha256": active_model.head_sha256, "float32_tflite_sha256": "0" * 64}
    settings.PNEUMO_SHIPPED_MODELS_DIR = str(_shipped_int8(tmp_path, {active_model.name: other}))

    assert int8_verdict(active_model) == "its int8 gates were measured against another float32 conversion"
    assert isinstance(runtime.classifier_for(active_model), LiteRTClassifier)
