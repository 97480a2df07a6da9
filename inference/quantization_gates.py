"""The gates an int8 base must pass, for one version's head, before that version may serve it.

Pure NumPy (no Django, no TensorFlow): ``manage.py quantize_models`` measures the figures with
the data, and ``prepare_models`` can re-run the parity part on a fresh clone (the validation AUCs
then come from the int8 manifest, where the command recorded them)::

    figures = int8_gates(
        head=Head.load(head_path),            # the version's float head
        heatmap_scale=manifest_scale,         # the version's manifest heatmap_scale.scale
        parity_float32=maps_f32,              # N x 7 x 7 x 2048, float32 conversion, parity images
        parity_int8=maps_int8,                # the same images through FeatureMapModel
        validation=ValidationAUC.from_scores(labels, p_f32, p_int8),  # or ValidationAUC(...), or None
    )
    figures["passed"]                         # True only when all three gates are measured and met

A missing validation figure fails the gate: int8 is served only where its AUC was measured.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from inference.classifier import PNEUMONIA_INDEX, Head, head_logits, raw_gradcam, scale_heatmap, softmax
from inference.domain import pooled_features
from inference.evaluation import auc

AUC_TOLERANCE = 0.003
PROBABILITY_TOLERANCE = 0.02
HEATMAP_CELL_TOLERANCE = 0.05


@dataclass(frozen=True)
class ValidationAUC:
    """AUC of the float32 and the int8 path on a version's validation split."""

    float32: float
    int8: float
    n: int

    @classmethod
    def from_scores(cls, labels: np.ndarray, float32: np.ndarray, int8: np.ndarray) -> ValidationAUC:
        labels = np.asarray(labels)
        return cls(float32=auc(labels, np.asarray(float32)), int8=auc(labels, np.asarray(int8)), n=len(labels))


def probabilities_from_maps(feature_maps: np.ndarray, head: Head) -> np.ndarray:
    """p(PNEUMONIA) per ``HxWx2048`` map, through the float head in NumPy."""
    return softmax(head_logits(pooled_features(feature_maps), head))[:, PNEUMONIA_INDEX]


def heatmaps_from_maps(feature_maps: np.ndarray, head: Head, heatmap_scale: float) -> np.ndarray:
    """The served (scaled, clipped) Grad-CAM of each map: ``N x H x W`` in [0, 1]."""
    return np.stack([scale_heatmap(raw_gradcam(fm, head), heatmap_scale) for fm in feature_maps])


def int8_gates(
    *,
    head: Head,
    heatmap_scale: float,
    parity_float32: np.ndarray,
    parity_int8: np.ndarray,
    validation: ValidationAUC | None,
) -> dict:
    """The figures of the three gates and ``passed``; see the module docstring."""
    if parity_float32.shape != parity_int8.shape or not len(parity_float32):
        raise ValueError(f"parity maps differ in shape or are empty: {parity_float32.shape} {parity_int8.shape}")
    probability_diff = np.abs(
        probabilities_from_maps(parity_float32, head) - probabilities_from_maps(parity_int8, head)
    )
    heatmap_diff = np.abs(
        heatmaps_from_maps(parity_float32, head, heatmap_scale) - heatmaps_from_maps(parity_int8, head, heatmap_scale)
    )
    figures: dict = {
        "n_parity_images": len(parity_float32),
        "parity_probability_max_diff": float(probability_diff.max()),
        "parity_heatmap_cell_max_diff": float(heatmap_diff.max()),
        "validation_n": validation.n if validation else None,
        "validation_auc_float32": validation.float32 if validation else None,
        "validation_auc_int8": validation.int8 if validation else None,
        "validation_auc_diff": abs(validation.float32 - validation.int8) if validation else None,
        "tolerances": {
            "auc": AUC_TOLERANCE,
            "probability": PROBABILITY_TOLERANCE,
            "heatmap_cell": HEATMAP_CELL_TOLERANCE,
        },
    }
    figures["passed"] = bool(
        figures["validation_auc_diff"] is not None
        and figures["validation_auc_diff"] <= AUC_TOLERANCE
        and figures["parity_probability_max_diff"] <= PROBABILITY_TOLERANCE
        and figures["parity_heatmap_cell_max_diff"] <= HEATMAP_CELL_TOLERANCE
    )
    return figures
