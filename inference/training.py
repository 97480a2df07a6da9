"""Training a better, calibrated head (and optionally block 14) on top of the packaged Xception base.

The TensorFlow side of ``train_model``: split the labelled folder reproducibly, cache the frozen
activations that feed Xception's last block once, train on the cache, calibrate with temperature
scaling on the validation split and pick the operating threshold there. No Django here.

Preprocessing is exactly ``inference.classifier.preprocess`` with the configured preprocessing
(by default BICUBIC_224: the packaged base rebuilt for 224 px input, see
``conversion.model_at_size``), so the served model sees what training saw and keeps an exact
Grad-CAM. The split keeps each patient's images on one side: a folder whose ``manifest.csv`` has a
``patient_id`` column (NIH adults) is split by that id across both classes; otherwise Kermany file
names carry the patient.
"""

from __future__ import annotations

import csv
import hashlib
import json
import os
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from PIL import Image, ImageDraw, ImageEnhance

from inference.classifier import BICUBIC_224, NEAREST_150, PNEUMONIA_INDEX, Preprocessing, preprocess, preprocessing_get
from inference.model_input import TRAINING_SUFFIXES, training_image_open
from inference.model_package import packaged_sample_images, sha256_file

if TYPE_CHECKING:
    import keras

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

LABELS = ("NORMAL", "PNEUMONIA")
IMAGE_SUFFIXES = TRAINING_SUFFIXES
BASE_LAYER = "xception"
# The output of block 13's residual add: the tensor feeding block14_sepconv1 (5x5x1024 at 150 px, 7x7 at 224).
CUT_LAYER = "add_11"
BLOCK14_LAYERS = (
    "block14_sepconv1",
    "block14_sepconv1_bn",
    "block14_sepconv1_act",
    "block14_sepconv2",
    "block14_sepconv2_bn",
    "block14_sepconv2_act",
)
HEAD_LAYERS = ("dense", "dense_1")
DROPOUT_RATE = 0.3  # as in the packaged model


POPULATIONS = ("paediatric", "adult")
MANIFEST_NAME = "manifest.csv"
# What a data folder's manifest.csv needs for the split to go by its patient ids.
PATIENT_COLUMNS = ("path", "label", "patient_id")
UNRECORDED = "unrecorded"


@dataclass(frozen=True)
class Example:
    path: str  # relative to the data folder, e.g. "NORMAL/IM-0115-0001.jpeg"
    label: int
    sha256: str
    # From the folder's manifest.csv where it has them; empty for a folder of bare files (Kermany).
    patient: str = ""
    view: str = ""
    sex: str = ""
    age: float | None = None


@dataclass(frozen=True)
class Split:
    train: list[Example]
    validation: list[Example]
    excluded: list[Example] = field(default_factory=list)  # byte-identical to a packaged sample image

    def digest(self) -> str:
        return split_digest(self.validation)


def split_digest(examples: Sequence[Example]) -> str:
    """sha256 over the sorted image sha256s: names the validation set whatever the folder is called."""
    return hashlib.sha256("\n".join(sorted(e.sha256 for e in examples)).encode()).hexdigest()


def examples_list(data_dir: Path, *, limit: int | None = None) -> list[Example]:
    """Every image under ``data_dir/NORMAL`` and ``data_dir/PNEUMONIA``, sorted; ``limit`` per class."""
    examples = []
    for label, name in enumerate(LABELS):
        folder = data_dir / name
        if not folder.is_dir():
            raise FileNotFoundError(f"{folder} is missing: the folder needs NORMAL/ and PNEUMONIA/")
        paths = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if limit is not None:
            paths = paths[:limit]
        examples += [Example(f"{name}/{p.name}", label, sha256_file(p)) for p in paths]
    return examples


def has_patient_manifest(data_dir: Path) -> bool:
    """Does ``data_dir/manifest.csv`` list each image with its patient (``path,label,patient_id``)?"""
    path = data_dir / MANIFEST_NAME
    if not path.is_file():
        return False
    with path.open(newline="") as handle:
        header = next(csv.reader(handle), [])
    return all(column in header for column in PATIENT_COLUMNS)


def _age(value: str | None) -> float | None:
    try:
        return float(value) if value not in (None, "") else None
    except ValueError:
        return None


def examples_from_manifest(
    data_dir: Path,
    *,
    ages: tuple[float, float] | None = None,
    views: Sequence[str] | None = None,
    limit: int | None = None,
) -> list[Example]:
    """The images ``data_dir/manifest.csv`` lists, with patient, view, sex and age; sorted, ``limit`` per class.

    ``ages`` (inclusive) and ``views`` keep only the rows of the intended population; a row without an
    age or a view is kept only when no filter on it is asked for. sha256 is read from the file, not trusted
    from the manifest, so a changed file cannot pass under an old digest.
    """
    with (data_dir / MANIFEST_NAME).open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    wanted_views = {v.upper() for v in views} if views else None
    examples = []
    for label, name in enumerate(LABELS):
        chosen = []
        for row in sorted((r for r in rows if r["label"] == name), key=lambda r: r["path"]):
            age, view = _age(row.get("age")), (row.get("view") or "").upper()
            if ages is not None and not (age is not None and ages[0] <= age <= ages[1]):
                continue
            if wanted_views is not None and view not in wanted_views:
                continue
            chosen.append(row)
        if limit is not None:
            chosen = chosen[:limit]
        for row in chosen:
            examples.append(
                Example(
                    row["path"],
                    label,
                    sha256_file(data_dir / row["path"]),
                    patient=row["patient_id"],
                    view=(row.get("view") or "").upper(),
                    sex=(row.get("sex") or "").upper(),
                    age=_age(row.get("age")),
                )
            )
    return examples


_PATIENT_PATTERNS = (re.compile(r"^(person\d+)_"), re.compile(r"^((?:NORMAL2-)?IM-\d+)-"))


def patient_key(example: Example) -> str:
    """The patient an image belongs to, from Kermany's file names (``person1234_virus_2``,
    ``NORMAL2-IM-0527-0001``); any other name counts as its own patient."""
    name = example.path.rsplit("/", 1)[-1]
    for pattern in _PATIENT_PATTERNS:
        match = pattern.match(name)
        if match:
            return f"{example.label}:{match.group(1)}"
    return f"{example.label}:{name}"


def split_stratified(examples: Sequence[Example], *, val_fraction: float, seed: int, by_patient: bool = True) -> Split:
    """A per-class random split with a fixed seed; the 16 packaged sample images are never used.

    ``by_patient``: whole patients go to one side (a patient's second film in validation would
    flatter the figures); patients are drawn in random order until the class's share is reached.
    """
    packaged = {sha256_file(path) for path, _ in packaged_sample_images()}
    excluded = [e for e in examples if e.sha256 in packaged]
    if by_patient and examples and all(e.patient for e in examples):
        kept = [e for e in examples if e.sha256 not in packaged]
        train, validation = _split_by_patient_id(kept, val_fraction=val_fraction, seed=seed)
        return Split(train=train, validation=validation, excluded=excluded)
    rng = np.random.default_rng(seed)
    train: list[Example] = []
    validation: list[Example] = []
    for label in range(len(LABELS)):
        members = sorted((e for e in examples if e.label == label and e.sha256 not in packaged), key=lambda e: e.path)
        n_val = max(1, round(val_fraction * len(members)))
        if not by_patient:
            order = rng.permutation(len(members))
            validation += [members[i] for i in sorted(order[:n_val])]
            train += [members[i] for i in sorted(order[n_val:])]
            continue
        groups: dict[str, list[Example]] = {}
        for member in members:
            groups.setdefault(patient_key(member), []).append(member)
        keys = sorted(groups)
        chosen: set[str] = set()
        taken = 0
        for i in rng.permutation(len(keys)):
            if taken >= n_val:
                break
            chosen.add(keys[i])
            taken += len(groups[keys[i]])
        validation += [m for m in members if patient_key(m) in chosen]
        train += [m for m in members if patient_key(m) not in chosen]
    return Split(train=train, validation=validation, excluded=excluded)


def _split_by_patient_id(
    examples: Sequence[Example], *, val_fraction: float, seed: int
) -> tuple[list[Example], list[Example]]:
    """Whole patients (by ``Example.patient``, across both classes) to validation, stratified as well as can be.

    A patient with films in both classes is one group, so no patient is ever on both sides. Patients are
    visited in seeded random order; one goes to validation when it brings the per-class image counts closer
    to their targets (``round(val_fraction * n)`` per class, L1 distance), so a patient who would overshoot
    one class is passed over for a later one that fits.
    """
    members = sorted(examples, key=lambda e: e.path)
    groups: dict[str, list[Example]] = {}
    for member in members:
        groups.setdefault(member.patient, []).append(member)
    keys = sorted(groups)
    targets = [max(1, round(val_fraction * sum(e.label == c for e in members))) for c in range(len(LABELS))]
    taken = [0] * len(LABELS)
    chosen: set[str] = set()
    for i in np.random.default_rng(seed).permutation(len(keys)):
        if all(t >= n for t, n in zip(taken, targets, strict=True)):
            break
        counts = [sum(e.label == c for e in groups[keys[i]]) for c in range(len(LABELS))]
        before = sum(abs(n - t) for t, n in zip(taken, targets, strict=True))
        after = sum(abs(n - t - k) for t, n, k in zip(taken, targets, counts, strict=True))
        if after < before:
            chosen.add(keys[i])
            taken = [t + k for t, k in zip(taken, counts, strict=True)]
    validation = [m for m in members if m.patient in chosen]
    train = [m for m in members if m.patient not in chosen]
    # Class by class, as the per-class split lists them.
    by_label = lambda items: sorted(items, key=lambda e: (e.label, e.path))  # noqa: E731
    return by_label(train), by_label(validation)


def augment(image: Image.Image, rng: np.random.Generator) -> Image.Image:
    """A small, plausible change of one radiograph: rotation, shift, brightness and contrast. No flips."""
    image = image.convert("RGB")
    angle = rng.uniform(-7.0, 7.0)
    dx, dy = rng.uniform(-0.06, 0.06, size=2) * np.array(image.size)
    image = image.rotate(angle, resample=Image.Resampling.BILINEAR, translate=(dx, dy), fillcolor=(0, 0, 0))
    image = ImageEnhance.Brightness(image).enhance(rng.uniform(0.9, 1.1))
    return ImageEnhance.Contrast(image).enhance(rng.uniform(0.9, 1.1))


def activation_model(model: keras.Model) -> keras.Model:
    """Packaged input -> the frozen HxWx1024 tensor feeding block 14."""
    import keras

    base = model.get_layer(BASE_LAYER)
    return keras.Model(base.inputs, base.get_layer(CUT_LAYER).output, name="xception_to_block13")


def activations_extract(
    act_model: keras.Model,
    data_dir: Path,
    examples: Sequence[Example],
    *,
    variant: int = 0,
    seed: int = 1,
    batch_size: int = 32,
    progress: Callable[[int, int], None] | None = None,
    preprocessing: Preprocessing = BICUBIC_224,
) -> np.ndarray:
    """float16 ``N x H x W x 1024`` activations; ``variant`` 0 is the image itself, k > 0 an augmented copy."""
    out = np.empty((len(examples), *act_model.output.shape[1:]), dtype=np.float16)
    for start in range(0, len(examples), batch_size):
        chunk = examples[start : start + batch_size]
        images = []
        for example in chunk:
            image = training_image_open(data_dir / example.path)  # DICOM too, decoded as the worker does
            if variant:
                # One generator per (image, variant, seed): the same augmented copy whatever the batching.
                rng = np.random.default_rng([seed, variant, int(example.sha256[:12], 16)])
                image = augment(image, rng)
            images.append(preprocess(image, preprocessing))
        out[start : start + len(chunk)] = act_model(np.concatenate(images), training=False).numpy()
        if progress:
            progress(start + len(chunk), len(examples))
    return out


def activations_cached(
    act_model: keras.Model,
    data_dir: Path,
    examples: Sequence[Example],
    cache_dir: Path | None,
    *,
    variant: int = 0,
    seed: int = 1,
    base_sha256: str = "",
    progress: Callable[[int, int], None] | None = None,
    preprocessing: Preprocessing = BICUBIC_224,
) -> np.ndarray:
    """``activations_extract`` cached on disk by (base model, preprocessing, images, variant, seed)."""
    kwargs = {"variant": variant, "seed": seed, "progress": progress, "preprocessing": preprocessing}
    if cache_dir is None:
        return activations_extract(act_model, data_dir, examples, **kwargs)
    key = hashlib.sha256(
        json.dumps(
            [base_sha256, preprocessing.name, CUT_LAYER, variant, seed if variant else 0, [e.sha256 for e in examples]]
        ).encode()
    ).hexdigest()[:16]
    path = cache_dir / f"act-{key}.npy"
    if path.is_file():
        return np.load(path)
    acts = activations_extract(act_model, data_dir, examples, **kwargs)
    cache_dir.mkdir(parents=True, exist_ok=True)
    np.save(path.with_suffix(".tmp.npy"), acts)
    path.with_suffix(".tmp.npy").rename(path)
    return acts


# ---------------------------------------------------------------------------------------------
# Models on the cached activations


def block14_model(model: keras.Model, *, trainable: bool) -> keras.Model:
    """A copy of Xception's block 14 (HxWx1024 -> HxWx2048) with the packaged weights.

    Batch normalisation stays frozen (inference mode, ImageNet statistics) even when the
    separable convolutions are fine-tuned: a few thousand 5x5 maps are too few to re-estimate it.
    """
    import keras

    base = model.get_layer(BASE_LAYER)
    inputs = keras.Input(shape=tuple(base.get_layer(CUT_LAYER).output.shape[1:]), name="block13_out")
    x = inputs
    for name in BLOCK14_LAYERS:
        source = base.get_layer(name)
        layer = source.__class__.from_config(source.get_config())
        x = layer(x)
        layer.set_weights(source.get_weights())
        layer.trainable = trainable and not isinstance(layer, keras.layers.BatchNormalization)
    return keras.Model(inputs, x, name="block14")


def head_layers(seed: int) -> list[keras.layers.Layer]:
    """GAP -> Dense(128, relu) "dense" -> Dropout -> Dense(2) "dense_1": the packaged head's shape and names."""
    import keras

    return [
        keras.layers.Dense(
            128, activation="relu", name="dense", kernel_initializer=keras.initializers.GlorotUniform(seed)
        ),
        keras.layers.Dropout(DROPOUT_RATE, seed=seed, name="dropout"),
        keras.layers.Dense(2, name="dense_1", kernel_initializer=keras.initializers.GlorotUniform(seed + 1)),
    ]


def head_model(seed: int, width: int = 2048) -> keras.Model:
    import keras

    inputs = keras.Input(shape=(width,), name="pooled")
    x = inputs
    for layer in head_layers(seed):
        x = layer(x)
    return keras.Model(inputs, x, name="head")


def top_model(block14: keras.Model, head: keras.Model) -> keras.Model:
    """block 14 -> GAP -> head, sharing the given models' layers (and so their weights)."""
    import keras

    x = block14.output
    x = keras.layers.GlobalAveragePooling2D(name="global_average_pooling2d")(x)
    for layer in head.layers[1:]:
        x = layer(x)
    return keras.Model(block14.input, x, name="top")


def pooled_features(block14: keras.Model, activations: np.ndarray, batch_size: int = 128) -> np.ndarray:
    out = []
    for start in range(0, len(activations), batch_size):
        maps = block14(activations[start : start + batch_size].astype(np.float32), training=False)
        out.append(np.asarray(maps).mean(axis=(1, 2), dtype=np.float64).astype(np.float32))
    return np.concatenate(out)


def class_weights(labels: np.ndarray) -> dict[int, float]:
    """Balanced weights: each class carries half the loss (NORMAL is the minority here)."""
    counts = np.bincount(labels, minlength=2)
    return {i: float(len(labels) / (2 * counts[i])) for i in range(2)}


def fit(
    model: keras.Model,
    x: np.ndarray,
    y: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    *,
    learning_rate: float,
    epochs: int,
    batch_size: int,
    patience: int,
    seed: int,
) -> dict[str, list[float]]:
    """Adam on class-weighted cross-entropy; early stopping on validation loss, best weights kept."""
    import keras

    keras.utils.set_random_seed(seed)
    model.compile(
        optimizer=keras.optimizers.Adam(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
    )
    stop = keras.callbacks.EarlyStopping(monitor="val_loss", patience=patience, restore_best_weights=True)
    history = model.fit(
        x,
        y,
        validation_data=(x_val, y_val),
        epochs=epochs,
        batch_size=batch_size,
        class_weight=class_weights(y),
        callbacks=[stop],
        shuffle=True,
        verbose=0,
    )
    return {k: [float(v) for v in vs] for k, vs in history.history.items()}


def predict_logits(model: keras.Model, x: np.ndarray, batch_size: int = 128) -> np.ndarray:
    out = [
        np.asarray(model(x[i : i + batch_size].astype(np.float32), training=False))
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(out).astype(np.float64)


# ---------------------------------------------------------------------------------------------
# Calibration, threshold and figures (NumPy only)


def probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """p(PNEUMONIA) of the 2-class softmax of ``logits / temperature``."""
    log_odds = (logits[:, PNEUMONIA_INDEX] - logits[:, 1 - PNEUMONIA_INDEX]) / temperature
    return 1.0 / (1.0 + np.exp(-log_odds))


def nll(logits: np.ndarray, labels: np.ndarray, temperature: float = 1.0) -> float:
    p = np.clip(probabilities(logits, temperature), 1e-12, 1 - 1e-12)
    return float(-np.mean(labels * np.log(p) + (1 - labels) * np.log(1 - p)))


def temperature_fit(logits: np.ndarray, labels: np.ndarray) -> float:
    """The temperature minimising the (unweighted) NLL, searched on log T in [1/20, 20]."""
    from scipy.optimize import minimize_scalar

    result = minimize_scalar(
        lambda log_t: nll(logits, labels, float(np.exp(log_t))), bounds=(-3.0, 3.0), method="bounded"
    )
    return float(np.exp(result.x))


def expected_calibration_error(probs: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    """ECE of p(PNEUMONIA): equal-width bins, |mean p - observed rate| weighted by bin size."""
    index = np.minimum((probs * bins).astype(int), bins - 1)
    total = 0.0
    for b in range(bins):
        members = index == b
        if members.any():
            total += members.mean() * abs(probs[members].mean() - labels[members].mean())
    return float(total)


def threshold_for_sensitivity(probs: np.ndarray, labels: np.ndarray, sensitivity: float = 0.95) -> float:
    """The highest threshold (flag when p >= t) whose sensitivity is at least ``sensitivity``.

    Rounded *down* to 6 decimals, the precision it is recorded with, so the rounding never
    drops the case on the boundary.
    """
    positives = np.sort(probs[labels == 1])[::-1]
    needed = int(np.ceil(sensitivity * len(positives)))
    return float(np.floor(positives[needed - 1] * 1e6) / 1e6)


def figures(probs: np.ndarray, labels: np.ndarray, threshold: float) -> dict[str, float]:
    from inference.evaluation import auc

    flagged = probs >= threshold
    pos, neg = labels == 1, labels == 0
    return {
        "auc": round(auc(labels, probs), 4),
        "threshold": round(float(threshold), 6),
        "sensitivity": round(float(flagged[pos].mean()), 4),
        "specificity": round(float((~flagged[neg]).mean()), 4),
        "ece": round(expected_calibration_error(probs, labels), 4),
        "n_pneumonia": int(pos.sum()),
        "n_normal": int(neg.sum()),
    }


def group_of(example: Example, attribute: str) -> str:
    return getattr(example, attribute) or UNRECORDED


def figures_by(
    probs: np.ndarray, labels: np.ndarray, threshold: float, groups: Sequence[str]
) -> dict[str, dict[str, Any]]:
    """n, AUC, sensitivity and specificity per group (a view, a sex) at one threshold; None where undefined."""
    from inference.evaluation import auc

    out: dict[str, dict[str, Any]] = {}
    groups_array = np.asarray(groups)
    for group in sorted(set(groups)):
        members = groups_array == group
        p, y = probs[members], labels[members]
        flagged = p >= threshold
        pos, neg = y == 1, y == 0
        area = auc(y, p)
        out[group] = {
            "n": int(members.sum()),
            "n_pneumonia": int(pos.sum()),
            "n_normal": int(neg.sum()),
            "auc": None if np.isnan(area) else round(area, 4),
            "sensitivity": round(float(flagged[pos].mean()), 4) if pos.any() else None,
            "specificity": round(float((~flagged[neg]).mean()), 4) if neg.any() else None,
        }
    return out


def attribute_only_figure(train: Sequence[Example], validation: Sequence[Example], attribute: str) -> dict[str, Any]:
    """How well ``attribute`` (the view, the sex) alone predicts the label on validation: the confound's size.

    The score of an image is the pneumonia share of its group among the *training* images, so the
    figure is an honest out-of-sample AUC of a predictor that never looks at the lungs.
    """
    from inference.evaluation import auc

    rates = {}
    for group in sorted({group_of(e, attribute) for e in train}):
        members = [e.label for e in train if group_of(e, attribute) == group]
        rates[group] = round(float(np.mean(members)), 4)
    overall = float(np.mean([e.label for e in train])) if train else 0.5
    scores = np.array([rates.get(group_of(e, attribute), overall) for e in validation])
    labels = np.array([e.label for e in validation])
    area = auc(labels, scores) if len(validation) else float("nan")
    return {
        "auc": None if np.isnan(area) else round(area, 4),
        "training_pneumonia_share": rates,
        "rule": f"score = pneumonia share of the image's {attribute} among the training images",
    }


def subgroup_figures(
    examples: Sequence[Example], probs: np.ndarray, threshold: float
) -> dict[str, dict[str, dict[str, Any]]]:
    labels = np.array([e.label for e in examples])
    return {
        "by_view": figures_by(probs, labels, threshold, [group_of(e, "view") for e in examples]),
        "by_sex": figures_by(probs, labels, threshold, [group_of(e, "sex") for e in examples]),
    }


def reliability_plot(result: TrainResult, path: Path) -> Path:
    labels = np.array([e.label for e in result.split.validation])
    return reliability_diagram(
        {
            "before temperature scaling": (result.val_probabilities_uncalibrated, labels),
            f"after (T = {result.temperature:.2f}, shipped)": (result.val_probabilities, labels),
        },
        path,
    )


def reliability_diagram(curves: dict[str, tuple[np.ndarray, np.ndarray]], path: Path, bins: int = 10) -> Path:
    """A reliability diagram (observed pneumonia rate per bin of predicted p) drawn with Pillow."""
    size, margin = 560, 60
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)
    side = size - 2 * margin

    def point(px: float, py: float) -> tuple[float, float]:
        return margin + px * side, size - margin - py * side

    draw.rectangle([point(0, 1), point(1, 0)], outline="black")
    for tick in np.linspace(0, 1, 6):
        draw.text((point(tick, 0)[0] - 8, size - margin + 6), f"{tick:.1f}", fill="black")
        draw.text((margin - 30, point(0, tick)[1] - 6), f"{tick:.1f}", fill="black")
    draw.line([point(0, 0), point(1, 1)], fill=(160, 160, 160), width=1)
    draw.text((size / 2 - 90, size - 25), "predicted p(pneumonia)", fill="black")
    draw.text((8, 8), "observed pneumonia rate (10 bins, validation split)", fill="black")
    colours = [(200, 40, 40), (30, 90, 200), (30, 150, 60), (150, 90, 20)]
    for n, (name, (probs, labels)) in enumerate(curves.items()):
        index = np.minimum((probs * bins).astype(int), bins - 1)
        pts = [point(probs[index == b].mean(), labels[index == b].mean()) for b in range(bins) if (index == b).any()]
        colour = colours[n % len(colours)]
        draw.line(pts, fill=colour, width=2)
        for x, y in pts:
            draw.ellipse([x - 3, y - 3, x + 3, y + 3], fill=colour)
        ece = expected_calibration_error(probs, labels, bins)
        draw.text((margin + 10, margin + 10 + 16 * n), f"{name} (ECE {ece:.3f})", fill=colour)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


# ---------------------------------------------------------------------------------------------
# The whole recipe


@dataclass(frozen=True)
class TrainConfig:
    data_dir: Path
    base_path: Path
    seed: int = 1
    val_fraction: float = 0.2
    epochs: int = 40  # head only, on pooled features (seconds per epoch)
    fine_tune_epochs: int = 3  # block 14 + head on cached block-13 activations (minutes per epoch)
    augment: int = 2  # augmented copies of each training image
    limit: int | None = None  # images per class, for smoke tests
    cache_dir: Path | None = None
    target_sensitivity: float = 0.95
    head_learning_rate: float = 1e-3
    fine_tune_learning_rate: float = 1e-4
    batch_size: int = 64
    preprocessing: str = BICUBIC_224.name
    by_patient: bool = True
    population: str = "paediatric"
    ages: tuple[float, float] = (1.0, 5.0)  # intended ages; also a filter where the manifest gives ages
    views: tuple[str, ...] = ("AP",)  # intended views; also a filter where the manifest gives views

    @property
    def patient_manifest(self) -> bool:
        return has_patient_manifest(self.data_dir)


def examples_for(config: TrainConfig) -> list[Example]:
    """The folder's images: from its patient manifest (filtered by ages and views) or NORMAL/ and PNEUMONIA/."""
    if config.patient_manifest:
        return examples_from_manifest(config.data_dir, ages=config.ages, views=config.views, limit=config.limit)
    return examples_list(config.data_dir, limit=config.limit)


@dataclass
class TrainResult:
    weights: dict[str, np.ndarray]  # float32, temperature folded into dense_1
    fine_tuned: bool
    temperature: float
    threshold: float
    split: Split
    validation: dict[str, Any]  # figures per candidate, on the cached activations
    history: dict[str, Any]
    seconds: dict[str, float]
    val_probabilities: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))
    val_probabilities_uncalibrated: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))
    # The logistic-regression baseline at the served preprocessing, for the per-view and per-sex figures.
    baseline_name: str = ""
    baseline_probabilities: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))


def _layer_weights(model: keras.Model, names: Sequence[str]) -> dict[str, np.ndarray]:
    return {f"{name}/{i}": w for name in names for i, w in enumerate(model.get_layer(name).get_weights())}


def _round_to_float16(model: keras.Model, names: Sequence[str]) -> None:
    """Train-time models carry the weights as shipped (float16), so the figures are the shipped model's."""
    for name in names:
        layer = model.get_layer(name)
        layer.set_weights([w.astype(np.float16).astype(np.float32) for w in layer.get_weights()])


FINE_TUNED_LAYERS = ("block14_sepconv1", "block14_sepconv2")  # batch normalisation stays as packaged


SIMPLICITY = ("logistic_regression_head", "head_only", "fine_tuned")


def logistic_regression_as_head(coef: np.ndarray, intercept: float, scaler: Any) -> dict[str, np.ndarray]:
    """A logistic regression on standardised pooled features as GAP -> Dense(128, relu) -> Dense(2), exactly.

    Two hidden units carry z and -z (relu(z) - relu(-z) = z), the pneumonia logit is their
    difference and the normal logit is 0, so softmax gives sigmoid(z); the other units are zero.
    Rounded through float16 like every shipped weight.
    """
    w = (coef / scaler.scale_).astype(np.float64)
    b = float(intercept - np.dot(scaler.mean_, w))
    w1 = np.zeros((len(w), 128), dtype=np.float32)
    b1 = np.zeros(128, dtype=np.float32)
    w1[:, 0], w1[:, 1], b1[0], b1[1] = w, -w, b, -b
    w2 = np.zeros((128, 2), dtype=np.float32)
    w2[0, PNEUMONIA_INDEX], w2[1, PNEUMONIA_INDEX] = 1.0, -1.0
    weights = {"dense/0": w1, "dense/1": b1, "dense_1/0": w2, "dense_1/1": np.zeros(2, dtype=np.float32)}
    return {k: v.astype(np.float16).astype(np.float32) for k, v in weights.items()}


def head_logits_numpy(weights: dict[str, np.ndarray], pooled: np.ndarray) -> np.ndarray:
    hidden = np.maximum(pooled @ weights["dense/0"] + weights["dense/1"], 0.0)
    return (hidden @ weights["dense_1/0"] + weights["dense_1/1"]).astype(np.float64)


def train(config: TrainConfig, log: Callable[[str], None] = print) -> TrainResult:
    import keras
    import tensorflow as tf
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    from inference.conversion import extract_head, load_keras_model, model_at_size
    from inference.evaluation import auc

    keras.utils.set_random_seed(config.seed)
    tf.config.experimental.enable_op_determinism()
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    preprocessing = preprocessing_get(config.preprocessing)
    split = split_stratified(
        examples_for(config),
        val_fraction=config.val_fraction,
        seed=config.seed,
        by_patient=config.by_patient,
    )
    y_train = np.array([e.label for e in split.train])
    y_val = np.array([e.label for e in split.validation])
    log(f"split: {len(split.train)} train, {len(split.validation)} validation, {len(split.excluded)} excluded")

    packaged_150 = load_keras_model(config.base_path)
    packaged = model_at_size(packaged_150, preprocessing.size)
    base_sha = sha256_file(config.base_path)

    def cached(examples: Sequence[Example], variant: int, pp: Preprocessing = preprocessing) -> np.ndarray:
        start = time.perf_counter()
        acts = activations_cached(
            activation_model(packaged if pp == preprocessing else packaged_150),
            config.data_dir,
            examples,
            config.cache_dir,
            variant=variant,
            seed=config.seed,
            base_sha256=base_sha,
            preprocessing=pp,
        )
        log(f"activations {pp.name} variant {variant}: {len(examples)} images in {time.perf_counter() - start:.0f} s")
        return acts

    a_val = cached(split.validation, 0)
    a_train = [cached(split.train, v) for v in range(config.augment + 1)]
    y_train_all = np.tile(y_train, config.augment + 1)
    seconds["activations"] = time.perf_counter() - t0

    # Frozen block 14: pooled 2048-d features for the baseline and the head-only model.
    t1 = time.perf_counter()
    frozen = block14_model(packaged, trainable=False)
    p_val = pooled_features(frozen, a_val)
    p_train = [pooled_features(frozen, a) for a in a_train]
    validation: dict[str, Any] = {}

    def record(name: str, probs: np.ndarray) -> dict[str, float]:
        threshold = threshold_for_sensitivity(probs, y_val, config.target_sensitivity)
        validation[name] = figures(probs, y_val, threshold)
        log(f"{name}: {validation[name]}")
        return validation[name]

    # The packaged model itself, at its own preprocessing: its head was trained on these
    # validation images, so this is a training score.
    frozen_150 = block14_model(packaged_150, trainable=False)
    p150_val = pooled_features(frozen_150, cached(split.validation, 0, NEAREST_150))
    packaged_head = extract_head(packaged_150)
    hidden = np.maximum(p150_val @ packaged_head["W1"] + packaged_head["b1"], 0.0)
    record(
        "packaged_model_(saw_these_images)",
        probabilities((hidden @ packaged_head["W2"] + packaged_head["b2"]).astype(np.float64)),
    )

    def logistic_regression(train_x: np.ndarray, val_x: np.ndarray) -> tuple[float, np.ndarray, Any, Any]:
        """On the same training images (no augmentation), C chosen on validation AUC: (C, probs, model, scaler)."""
        scaler = StandardScaler().fit(train_x)
        best: tuple[float, float, np.ndarray, Any] | None = None
        for c in (0.001, 0.01, 0.1, 1.0):
            lr = LogisticRegression(C=c, max_iter=3000).fit(scaler.transform(train_x), y_train)
            probs = lr.predict_proba(scaler.transform(val_x))[:, 1]
            if best is None or auc(y_val, probs) > best[1]:
                best = (c, auc(y_val, probs), probs, lr)
        assert best is not None
        return best[0], best[2], best[3], scaler

    # The honest baseline: the packaged model's own frozen pooled features, at its own preprocessing.
    if preprocessing != NEAREST_150:
        c, probs, _, _ = logistic_regression(pooled_features(frozen_150, cached(split.train, 0, NEAREST_150)), p150_val)
        record(f"baseline_logistic_regression_{NEAREST_150.name}", probs)["C"] = c
    c, baseline_probs, lr_model, scaler = logistic_regression(p_train[0], p_val)
    baseline_name = f"baseline_logistic_regression_{preprocessing.name}"
    record(baseline_name, baseline_probs)["C"] = c
    # The same regression, written exactly into the packaged head's shape (so Grad-CAM stays exact).
    lr_weights = logistic_regression_as_head(lr_model.coef_[0], lr_model.intercept_[0], scaler)
    lr_logits = head_logits_numpy(lr_weights, p_val)
    record("logistic_regression_head_uncalibrated", probabilities(lr_logits))

    # Stage 1: a fresh head on frozen pooled features (original + augmented copies).
    head = head_model(config.seed)
    history = {
        "head": fit(
            head,
            np.concatenate(p_train),
            y_train_all,
            p_val,
            y_val,
            learning_rate=config.head_learning_rate,
            epochs=config.epochs,
            batch_size=config.batch_size,
            patience=5,
            seed=config.seed,
        )
    }
    _round_to_float16(head, HEAD_LAYERS)
    head_logits = predict_logits(head, p_val)
    record("head_only_uncalibrated", probabilities(head_logits))
    seconds["head"] = time.perf_counter() - t1
    candidates = {
        "logistic_regression_head": (lr_logits, lr_weights),
        "head_only": (head_logits, _layer_weights(head, HEAD_LAYERS)),
    }

    # Stage 2: fine-tune block 14's separable convolutions together with that head, gently.
    if config.fine_tune_epochs > 0:
        t2 = time.perf_counter()
        tuned_head = head_model(config.seed)
        tuned_head.set_weights(head.get_weights())
        top = top_model(block14_model(packaged, trainable=True), tuned_head)
        x = np.concatenate(a_train).astype(np.float32)
        history["fine_tune"] = fit(
            top,
            x,
            y_train_all,
            a_val.astype(np.float32),
            y_val,
            learning_rate=config.fine_tune_learning_rate,
            epochs=config.fine_tune_epochs,
            batch_size=config.batch_size,
            patience=1,
            seed=config.seed,
        )
        del x
        _round_to_float16(top, FINE_TUNED_LAYERS + HEAD_LAYERS)
        tuned_logits = predict_logits(top, a_val)
        record("fine_tuned_uncalibrated", probabilities(tuned_logits))
        candidates["fine_tuned"] = (tuned_logits, _layer_weights(top, FINE_TUNED_LAYERS + HEAD_LAYERS))
        seconds["fine_tune"] = time.perf_counter() - t2

    # Ship the candidate with the highest validation AUC (4 decimals); a tie goes to the simpler one.
    chosen = max(candidates, key=lambda k: (validation[f"{k}_uncalibrated"]["auc"], -SIMPLICITY.index(k)))
    logits, weights = candidates[chosen]
    temperature = temperature_fit(logits, y_val)
    weights = dict(weights)
    weights["dense_1/0"] = weights["dense_1/0"] / np.float32(temperature)
    weights["dense_1/1"] = weights["dense_1/1"] / np.float32(temperature)
    calibrated = probabilities(logits, temperature)
    chosen_figures = record("chosen_calibrated", calibrated)
    validation["chosen"] = chosen
    validation["nll_before_after"] = [round(nll(logits, y_val), 4), round(nll(logits, y_val, temperature), 4)]
    log(f"chosen {chosen}, temperature {temperature:.4f}, threshold {chosen_figures['threshold']}")
    seconds["total"] = time.perf_counter() - t0
    return TrainResult(
        weights=weights,
        fine_tuned=chosen == "fine_tuned",
        temperature=temperature,
        threshold=chosen_figures["threshold"],
        split=split,
        validation=validation,
        history=history,
        seconds={k: round(v, 1) for k, v in seconds.items()},
        val_probabilities=calibrated,
        val_probabilities_uncalibrated=probabilities(logits),
        baseline_name=baseline_name,
        baseline_probabilities=baseline_probs,
    )


def weights_save(weights: dict[str, np.ndarray], path: Path) -> Path:
    """float16 arrays in a plain (uncompressed, deterministic) .npz."""
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, **{k: np.asarray(v).astype(np.float16) for k, v in sorted(weights.items())})
    return path


def served_probabilities(
    tflite_path: Path,
    head_path: Path,
    data_dir: Path,
    examples: Sequence[Example],
    preprocessing: Preprocessing | str = BICUBIC_224,
) -> np.ndarray:
    """p(PNEUMONIA) from the converted LiteRT model, image by image through ``preprocess``: what is served."""
    from inference.classifier import LiteRTClassifier
    from inference.conversion import load_images

    classifier = LiteRTClassifier(tflite_path, head_path, heatmap_scale=1.0, preprocessing=preprocessing)
    probs = []
    for start in range(0, len(examples), 32):
        images = load_images([data_dir / e.path for e in examples[start : start + 32]])
        probs += [p.probability for p in classifier.predict_batch(images, heatmap=False)]
    return np.array(probs)


def intended_use(config: TrainConfig) -> dict[str, Any]:
    """What the version is for: the manifest's ``intended_use`` (``view``, the first view, for older readers)."""
    if config.population == "adult":
        views = " and ".join({"PA": "posterior-anterior", "AP": "anterior-posterior"}.get(v, v) for v in config.views)
        text = (
            f"Pneumonia on adult frontal chest X-rays (ages {config.ages[0]:g} to {config.ages[1]:g}), {views} "
            "views, as in the NIH Clinical Center ChestX-ray14 images (Wang et al., 2017) it was trained on: one "
            "hospital's adults, labels mined from radiology reports by text processing (noisy), view and sex "
            "mixed differently in the two classes. Not validated on children, lateral views or other hospitals' "
            "equipment."
        )
    else:
        text = (
            "Pneumonia on paediatric chest X-rays (ages 1 to 5), anterior-posterior view, as in the Guangzhou "
            "Women and Children's Medical Center data set (Kermany et al., 2018) it was trained on. Not validated "
            "on adults, lateral views or other hospitals' equipment."
        )
    return {
        "text": text,
        "min_age_years": float(config.ages[0]),
        "max_age_years": float(config.ages[1]),
        "view": config.views[0],
        "views": list(config.views),
    }


def data_folder_name(config: TrainConfig) -> str:
    """The data folder as a data root names it: a folder with its own patient manifest by its name
    (``nih-adult-512``), Kermany's split folder with its parent (``kermany-224/train``)."""
    if config.patient_manifest:
        return config.data_dir.name
    return f"{config.data_dir.parent.name}/{config.data_dir.name}"


def split_method(config: TrainConfig) -> str:
    if not config.by_patient:
        return "per class: sorted by path, numpy default_rng(seed).permutation, first round(fraction*n) to validation"
    if config.patient_manifest:
        return (
            "patients (manifest patient_id, one group across both classes) sorted, numpy default_rng(seed)"
            ".permutation, a patient to validation when it brings the per-class counts closer to round(fraction*n)"
        )
    return (
        "per class: patients (inference.training.patient_key) sorted, numpy default_rng(seed).permutation, "
        "whole patients to validation until round(fraction*n) images"
    )


def _heatmap_folder(config: TrainConfig, split: Split, tmp: Path) -> Path:
    """The PNEUMONIA images the heatmap scale is measured on.

    Kermany's whole PNEUMONIA folder as before; for a patient manifest, links to the training split's
    PNEUMONIA images only, so the display scale is set without the validation images.
    """
    if not config.patient_manifest:
        return config.data_dir / "PNEUMONIA"
    tmp.mkdir(parents=True, exist_ok=True)
    for example in split.train:
        if example.label == LABELS.index("PNEUMONIA"):
            (tmp / example.path.replace("/", "__")).symlink_to((config.data_dir / example.path).resolve())
    return tmp


def artifacts_write(
    config: TrainConfig,
    result: TrainResult,
    out_dir: Path,
    *,
    name: str,
    heatmap_limit: int = 400,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """weights.npz + manifest.json in ``out_dir``, after rebuilding, converting and checking the model.

    The manifest's validation figures are the served ones: the rebuilt model converted to LiteRT,
    run on the validation images end to end, at the threshold chosen on the training-time figures.
    """
    import tempfile

    from inference import shipped_model
    from inference.conversion import convert_to_litert, load_images, measure_heatmap_scale, parity_check
    from inference.model_package import DISTRIBUTION, DISTRIBUTION_VERSION

    out_dir.mkdir(parents=True, exist_ok=True)
    preprocessing = preprocessing_get(config.preprocessing)
    weights_path = weights_save(result.weights, out_dir / "weights.npz")
    split = result.split
    y_val = np.array([e.label for e in split.validation])
    with tempfile.TemporaryDirectory() as tmp:
        keras_path = shipped_model.model_rebuild(
            config.base_path, weights_path, Path(tmp) / "model.keras", input_size=preprocessing.size
        )
        keras_sha = sha256_file(keras_path)
        converted = convert_to_litert(keras_path, Path(tmp) / "litert")
        samples = load_images([p for p, _ in packaged_sample_images()])
        parity = parity_check(keras_path, converted.tflite_path, converted.head_path, samples, preprocessing)
        scale = measure_heatmap_scale(
            converted.tflite_path,
            converted.head_path,
            _heatmap_folder(config, split, Path(tmp) / "heatmap-images"),
            limit=heatmap_limit,
            preprocessing=preprocessing,
        )
        served = served_probabilities(
            converted.tflite_path, converted.head_path, config.data_dir, split.validation, preprocessing
        )
    # The threshold is chosen again on what is served: float16 weights and LiteRT move
    # probabilities by ~1e-6, enough to push the boundary case below a threshold chosen in Keras.
    threshold = threshold_for_sensitivity(served, y_val, config.target_sensitivity)
    served_figures = figures(served, y_val, threshold)
    log(f"served (LiteRT) validation figures: {served_figures}; parity {parity:.2e}; heatmap scale {scale.scale:.6f}")
    subgroups = subgroup_figures(split.validation, served, threshold)
    baseline = result.validation.get(result.baseline_name, {})
    baseline_subgroups = (
        subgroup_figures(split.validation, result.baseline_probabilities, baseline["threshold"]) if baseline else {}
    )
    log(f"served by view: {subgroups['by_view']}; by sex: {subgroups['by_sex']}")
    with np.load(weights_path) as data:
        shipped_layers = sorted({k.rsplit("/", 1)[0] for k in data.files})
    manifest = {
        "name": name,
        "version": "1",
        "description": (
            f"Packaged Xception base at {preprocessing.size} px ({preprocessing.name}) with a retrained, "
            "temperature-calibrated head"
            + (" and fine-tuned block 14" if result.fine_tuned else "")
            + f"; threshold chosen for sensitivity >= {config.target_sensitivity} on a held-out validation split."
        ),
        "base": {
            "distribution": f"{DISTRIBUTION} {DISTRIBUTION_VERSION}",
            "file": config.base_path.name,
            "sha256": sha256_file(config.base_path),
        },
        "weights": {
            "file": weights_path.name,
            "sha256": sha256_file(weights_path),
            "dtype": "float16",
            "layers": shipped_layers,
            "bytes": weights_path.stat().st_size,
        },
        "rebuilt_keras_sha256": keras_sha,
        "preprocessing_version": preprocessing.name,
        "input_size": preprocessing.size,
        "fine_tuned": result.fine_tuned,
        "threshold": threshold,
        "temperature": round(result.temperature, 6),
        "heatmap_scale": {
            "scale": round(scale.scale, 7),
            "percentile": scale.percentile,
            "n_images": scale.n_images,
            "method": "inference.conversion.measure_heatmap_scale over the sorted PNEUMONIA folder (training images)"
            if not config.patient_manifest
            else "inference.conversion.measure_heatmap_scale over the training split's PNEUMONIA images, sorted",
        },
        "parity_max_diff": parity,
        "population": config.population,
        "intended_use": intended_use(config),
        "data": {
            "folder": data_folder_name(config),
            "n_images": len(split.train) + len(split.validation) + len(split.excluded),
            "excluded_packaged_samples": [e.path for e in split.excluded],
        }
        | (
            {
                "manifest": MANIFEST_NAME,
                "filters": {"ages": list(config.ages), "views": list(config.views)},
            }
            if config.patient_manifest
            else {}
        ),
        "split": {
            "method": split_method(config),
            "seed": config.seed,
            "val_fraction": config.val_fraction,
            "limit_per_class": config.limit,
            "train_count": {lbl: sum(e.label == i for e in split.train) for i, lbl in enumerate(LABELS)},
            "validation_count": {lbl: sum(e.label == i for e in split.validation) for i, lbl in enumerate(LABELS)},
            "train_sha256_digest": split_digest(split.train),
            "validation_sha256_digest": split_digest(split.validation),
            "validation_paths": [e.path for e in split.validation],
        },
        "recipe": {
            "seed": config.seed,
            "augment_copies": config.augment,
            "augmentation": "rotation U(-7,7) deg, shift U(-6%,6%), brightness and contrast U(0.9,1.1); no flips",
            "cached_activations": f"{CUT_LAYER} (input of block14_sepconv1), float16",
            "head": f"GAP -> Dense(128, relu) -> Dropout({DROPOUT_RATE}) -> Dense(2), fresh Glorot init",
            "head_training": f"Adam {config.head_learning_rate}, batch {config.batch_size}, <= {config.epochs} epochs, "
            "balanced class weights, early stopping on validation loss (patience 5, best weights)",
            "fine_tune": f"block14 separable convs (BN frozen) + head, Adam {config.fine_tune_learning_rate}, "
            f"<= {config.fine_tune_epochs} epochs, early stopping patience 1",
            "selection": (
                "highest validation AUC among: logistic regression written as the head, fresh MLP head, "
                "fine-tuned block 14 + head; ties -> the simpler"
            ),
            "calibration": "temperature scaling (NLL on validation), 1/T folded into dense_1 kernel and bias",
            "threshold_rule": f"highest threshold (6 decimals, rounded down) with sensitivity >= "
            f"{config.target_sensitivity} on the validation split, as served by LiteRT",
        },
        "validation": {
            "served": served_figures,
            **subgroups,
            "baseline": {"name": result.baseline_name, **baseline_subgroups},
            "view_only": attribute_only_figure(split.train, split.validation, "view"),
            "sex_only": attribute_only_figure(split.train, split.validation, "sex"),
            "training_time": result.validation,
            "note": "Selection, calibration and threshold all used this validation split: figures are optimistic.",
        },
        "history": result.history,
        "seconds": result.seconds,
    }
    (out_dir / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest
