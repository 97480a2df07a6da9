"""Evaluating a model version on a labelled folder (``NORMAL/`` and ``PNEUMONIA/``).

The same decoding and preprocessing as the worker, on every decodable image
whatever its eligibility. Files are chosen by their first bytes, never their
names (as ``scope_report`` chooses them). Metrics in plain NumPy so workers
need nothing more.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np

from cases.imaging import DecodeError
from cases.imaging.sniff import DICOM_PREAMBLE_LENGTH, DICOM_PREFIX, JPEG_SIGNATURE, PNG_SIGNATURE, is_dicom_part10
from inference.model_input import DecodeLimits, original_model_image

LABELS = ("NORMAL", "PNEUMONIA")
HEAD_BYTES = DICOM_PREAMBLE_LENGTH + len(DICOM_PREFIX)
# The first tags of a DICOM file meta header written without its preamble: (0002,0000), (0002,0001), (0002,0002).
_META_HEADER_STARTS = (b"\x02\x00\x00\x00", b"\x02\x00\x01\x00", b"\x02\x00\x02\x00")


def looks_like_image(head: bytes) -> bool:
    """Whether a file's first bytes are a DICOM preamble or meta header, or a PNG or JPEG signature.

    A DICOM without its preamble is chosen too: decoding it then says why it is refused.
    """
    return is_dicom_part10(head) or head.startswith((PNG_SIGNATURE, JPEG_SIGNATURE, DICOM_PREFIX, *_META_HEADER_STARTS))


def _head(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            return handle.read(HEAD_BYTES)
    except OSError:
        return b""


def image_files(root: Path) -> Iterator[Path]:
    """Every file under ``root`` (recursively, sorted) whose content is an image's, whatever its name."""
    for path in sorted(root.rglob("*")):
        if path.is_file() and looks_like_image(_head(path)):
            yield path


def labelled_files(root: Path) -> Iterator[tuple[Path, int]]:
    for index, label in enumerate(LABELS):
        folder = root / label
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is missing: the folder needs NORMAL/ and PNEUMONIA/")
        for path in image_files(folder):
            yield path, index


def model_input(path: Path, max_bytes: int, max_pixels: int) -> np.ndarray | None:
    """What the worker would feed the model from this file, or None when it has nothing to feed."""
    try:
        return original_model_image(path.read_bytes(), filename=path.name, limits=DecodeLimits(max_bytes, max_pixels))
    except DecodeError:
        return None


def routed_input(path: Path, max_bytes: int, max_pixels: int) -> tuple[np.ndarray, float | None] | None:
    """The model image and the patient's age in years as the site reads it (None: unknown); None when undecodable."""
    from cases.imaging import decode

    try:
        decoded = decode(path.read_bytes(), filename=path.name, max_bytes=max_bytes, max_pixels=max_pixels)
    except DecodeError:
        return None
    if decoded.model_image is None:
        return None
    return decoded.model_image, decoded.metadata.age_years


def auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with ties counted half)."""
    positives, negatives = scores[labels == 1], scores[labels == 0]
    if not len(positives) or not len(negatives):
        return float("nan")
    order = np.argsort(np.concatenate([positives, negatives]), kind="mergesort")
    ranks = np.empty(len(order))
    ranks[order] = np.arange(1, len(order) + 1)
    combined = np.concatenate([positives, negatives])
    for value in np.unique(combined):  # average ranks of ties
        tied = combined == value
        ranks[tied] = ranks[tied].mean()
    u = ranks[: len(positives)].sum() - len(positives) * (len(positives) + 1) / 2
    return float(u / (len(positives) * len(negatives)))


def roc_curve(labels: np.ndarray, scores: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    thresholds = np.unique(scores)[::-1]
    tpr = np.array([((scores >= t) & (labels == 1)).sum() for t in thresholds]) / max(1, (labels == 1).sum())
    fpr = np.array([((scores >= t) & (labels == 0)).sum() for t in thresholds]) / max(1, (labels == 0).sum())
    return np.concatenate([[0.0], fpr, [1.0]]), np.concatenate([[0.0], tpr, [1.0]]), thresholds


def threshold_for_sensitivity(labels: np.ndarray, scores: np.ndarray, target: float = 0.95) -> float | None:
    """The highest threshold whose sensitivity reaches ``target``."""
    for t in np.unique(scores)[::-1]:
        predicted = scores >= t
        if predicted[labels == 1].mean() >= target:
            return float(t)
    return None


def _ratio(num: int, den: int) -> float | None:
    return num / den if den else None


def metrics(labels: np.ndarray, scores: np.ndarray, threshold: float | np.ndarray) -> dict:
    """The figures at ``threshold``: one number, or each image's own (images routed to different versions)."""
    per_image = np.ndim(threshold) > 0
    predicted = scores >= np.asarray(threshold)
    tp = int((predicted & (labels == 1)).sum())
    fn = int((~predicted & (labels == 1)).sum())
    tn = int((~predicted & (labels == 0)).sum())
    fp = int((predicted & (labels == 0)).sum())
    return {
        "n": len(labels),
        "auc": auc(labels, scores),
        "threshold": None if per_image else threshold,
        "sensitivity": _ratio(tp, tp + fn),
        "specificity": _ratio(tn, tn + fp),
        "ppv": _ratio(tp, tp + fp),
        "npv": _ratio(tn, tn + fn),
        # rows: true NORMAL, PNEUMONIA; columns: predicted NORMAL, PNEUMONIA
        "confusion_matrix": [[tn, fp], [fn, tp]],
        "threshold_at_95_sensitivity": threshold_for_sensitivity(labels, scores, 0.95),
    }


def roc_png(labels: np.ndarray, scores: np.ndarray, path: Path, title: str) -> None:
    """A plain ROC curve drawn with Pillow (no plotting library in the image)."""
    from PIL import Image, ImageDraw

    fpr, tpr, _ = roc_curve(labels, scores)
    size, pad = 480, 50
    image = Image.new("RGB", (size + 2 * pad, size + 2 * pad), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([pad, pad, pad + size, pad + size], outline="black")
    draw.line([pad, pad + size, pad + size, pad], fill=(180, 180, 180))
    points = [(pad + x * size, pad + size - y * size) for x, y in zip(fpr, tpr, strict=True)]
    draw.line(points, fill=(20, 90, 200), width=3)
    draw.text((pad, 15), f"{title}  AUC {auc(labels, scores):.3f}", fill="black")
    draw.text((pad + size // 2 - 60, pad + size + 15), "1 - specificity", fill="black")
    draw.text((5, pad + size // 2), "sensitivity", fill="black")
    image.save(path)
