"""The int8 base (models/xception224-int8) and its gates: parity with the float32 conversion, and the gate rule."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from inference.classifier import BICUBIC_224, Head, LiteRTClassifier, head_logits
from inference.features_model import FeatureMapModel
from inference.model_package import sha256_file
from inference.quantization_gates import (
    AUC_TOLERANCE,
    HEATMAP_CELL_TOLERANCE,
    PROBABILITY_TOLERANCE,
    ValidationAUC,
    int8_gates,
)

REPO = Path(__file__).resolve().parents[2]
INT8_DIR = REPO / "models" / "xception224-int8"
V2 = "pneumo-xception224-cal-v2"


# --- the gate rule, on made-up arrays -------------------------------------------------------------


def _head(rng: np.random.Generator) -> Head:
    return Head(
        w1=rng.normal(0, 0.05, (2048, 128)).astype(np.float32),
        b1=np.zeros(128, np.float32),
        w2=rng.normal(0, 0.3, (128, 2)).astype(np.float32),
        b2=np.zeros(2, np.float32),
    )


def _maps(rng: np.random.Generator, n: int = 4) -> np.ndarray:
    return np.maximum(rng.normal(0.2, 0.5, (n, 7, 7, 2048)), 0).astype(np.float32)


def test_it_passes_an_int8_base_within_every_tolerance() -> None:
    rng = np.random.default_rng(0)
    head, maps = _head(rng), _maps(rng)

    figures = int8_gates(
        head=head,
        heatmap_scale=1.0,
        parity_float32=maps,
        parity_int8=maps + rng.normal(0, 1e-4, maps.shape).astype(np.float32),
        validation=ValidationAUC(float32=0.994, int8=0.994 - AUC_TOLERANCE / 2, n=100),
    )

    assert figures["passed"]
    assert 0 < figures["parity_probability_max_diff"] < PROBABILITY_TOLERANCE
    assert figures["parity_heatmap_cell_max_diff"] < HEATMAP_CELL_TOLERANCE
    assert figures["n_parity_images"] == 4 and figures["validation_n"] == 100


def test_it_fails_an_int8_base_that_misses_any_tolerance_or_was_never_validated() -> None:
    rng = np.random.default_rng(1)
    head, maps = _head(rng), _maps(rng)
    close = maps + rng.normal(0, 1e-4, maps.shape).astype(np.float32)
    good_auc = ValidationAUC(float32=0.99, int8=0.99, n=10)

    def gates(int8: np.ndarray, validation: ValidationAUC | None) -> dict:
        return int8_gates(head=head, heatmap_scale=0.01, parity_float32=maps, parity_int8=int8, validation=validation)

    auc_off = gates(close, ValidationAUC(float32=0.99, int8=0.99 - 2 * AUC_TOLERANCE, n=10))
    assert not auc_off["passed"] and auc_off["validation_auc_diff"] == pytest.approx(2 * AUC_TOLERANCE)
    assert not gates(close, None)["passed"]
    assert not gates(close, ValidationAUC(float32=float("nan"), int8=0.99, n=10))["passed"]
    # Noise on every cell moves the pooled features, so the probability (and the heatmap) leaves its tolerance.
    noisy = gates(maps + rng.normal(0, 0.5, maps.shape).astype(np.float32), good_auc)
    assert not noisy["passed"] and noisy["parity_probability_max_diff"] > PROBABILITY_TOLERANCE
    # Moving evidence from one cell to another leaves the pooled features, so the probability, as they were,
    # but both cells' heatmap values change.
    toward = np.sign(head.w1 @ (head.w2[:, 1] - head.w2[:, 0])).astype(np.float32)
    moved = maps + 1.0
    moved[0, 1, 1] += 0.5 * toward
    moved[0, 5, 5] -= 0.5 * toward
    one_cell = int8_gates(
        head=head, heatmap_scale=1.0, parity_float32=maps + 1.0, parity_int8=moved, validation=good_auc
    )
    assert one_cell["parity_probability_max_diff"] < 1e-4
    assert not one_cell["passed"] and one_cell["parity_heatmap_cell_max_diff"] > HEATMAP_CELL_TOLERANCE


def test_it_computes_the_heads_logits_as_the_float32_conversion_does(tmp_path: Path) -> None:
    rng = np.random.default_rng(2)
    head = _head(rng)
    pooled = rng.normal(0, 1, (3, 2048)).astype(np.float32)

    hidden = np.maximum(pooled.astype(np.float64) @ head.w1 + head.b1, 0)
    np.testing.assert_allclose(head_logits(pooled, head), hidden @ head.w2 + head.b2, rtol=1e-4, atol=1e-4)


# --- the committed int8 file against v2's float32 conversion -----------------------------------


@pytest.fixture(scope="module")
def int8_manifest() -> dict:
    return json.loads((INT8_DIR / "int8-manifest.json").read_text())


def test_it_ships_the_int8_file_its_manifest_names(int8_manifest: dict) -> None:
    path = INT8_DIR / int8_manifest["file"]

    assert sha256_file(path) == int8_manifest["sha256"] and path.stat().st_size == int8_manifest["bytes"]
    assert int8_manifest["converter"]["inference_input_type"] == "float32"
    # Calibrated on training images only: none of any version's validation split
    calibration = set(int8_manifest["representative_set"]["paths"])
    assert len(calibration) == int8_manifest["representative_set"]["n_images"] >= 200
    for name in int8_manifest["representative_set"]["versions"]:
        assert not calibration & _validation_paths(name), name


def _validation_paths(name: str) -> set[str]:
    manifest = json.loads((REPO / "models" / name / "manifest.json").read_text())
    return {f"{manifest['data']['folder']}/{p}" for p in manifest["split"]["validation_paths"]}


@pytest.mark.slow
@pytest.mark.django_db
def test_it_reproduces_the_recorded_parity_gate_of_v2_on_the_packaged_images(active_model, int8_manifest) -> None:
    # Given v2's prepared float32 conversion and the committed int8 base
    from inference.models import ModelVersion
    from inference.quantization import parity_image_paths, preprocessed

    version = ModelVersion.objects.get(name=V2)
    float32 = LiteRTClassifier(
        version.converted_path, version.head_path, heatmap_scale=version.heatmap_scale, preprocessing=BICUBIC_224
    )
    int8 = FeatureMapModel(INT8_DIR / int8_manifest["file"])
    paths = parity_image_paths(REPO)
    batch = np.concatenate([preprocessed(p) for p in paths])
    recorded = int8_manifest["gates"][V2]
    validation = ValidationAUC(
        recorded["validation_auc_float32"], recorded["validation_auc_int8"], recorded["validation_n"]
    )

    # When the parity gate is measured again, through v2's head in NumPy
    figures = int8_gates(
        head=Head.load(version.head_path),
        heatmap_scale=version.heatmap_scale,
        parity_float32=float32.run(batch)[0].copy(),
        parity_int8=int8.run(batch).copy(),
        validation=validation,
    )

    # Then it gives the figures and the verdict quantize_models recorded; int8 is served only where they pass
    assert figures["n_parity_images"] == recorded["n_parity_images"] >= 16
    for key in ("parity_probability_max_diff", "parity_heatmap_cell_max_diff"):
        assert figures[key] == pytest.approx(recorded[key], abs=1e-5)
    within = (
        figures["parity_probability_max_diff"] <= PROBABILITY_TOLERANCE
        and figures["parity_heatmap_cell_max_diff"] <= HEATMAP_CELL_TOLERANCE
        and figures["validation_auc_diff"] <= AUC_TOLERANCE
    )
    assert figures["passed"] == recorded["passed"] == within
    # And the float32 conversion (feature map and logits) is no features-only model
    with pytest.raises(ValueError, match="one rank-4 output"):
        FeatureMapModel(version.converted_path).load()
