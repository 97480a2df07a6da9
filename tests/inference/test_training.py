"""Training, calibration and shipping of trained model versions."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from PIL import Image

from inference import shipped_model, training
from inference.model_package import packaged_model_path, packaged_sample_images, sha256_file

SHIPPED = Path(__file__).resolve().parents[2] / "models" / "pneumo-xception224-cal-v2"


def _examples(n_normal: int, n_pneumonia: int) -> list[training.Example]:
    return [
        training.Example(f"{training.LABELS[label]}/{i}.png", label, f"{label}{i:063d}")
        for label, n in ((0, n_normal), (1, n_pneumonia))
        for i in range(n)
    ]


def test_it_splits_per_class_reproducibly_and_disjointly() -> None:
    examples = _examples(50, 150)
    first = training.split_stratified(examples, val_fraction=0.2, seed=1)
    again = training.split_stratified(examples, val_fraction=0.2, seed=1)
    other = training.split_stratified(examples, val_fraction=0.2, seed=2)
    assert first.validation == again.validation and first.digest() == again.digest()
    assert first.digest() != other.digest()
    assert [sum(e.label == c for e in first.validation) for c in (0, 1)] == [10, 30]
    assert not {e.path for e in first.train} & {e.path for e in first.validation}


def test_it_keeps_each_patients_images_on_one_side_of_the_split() -> None:
    names = [f"PNEUMONIA/person{p}_bacteria_{k}.jpeg" for p in range(40) for k in range(p % 4 + 1)]
    names += [
        f"NORMAL/{prefix}IM-{p:04d}-000{k}.jpeg" for prefix in ("", "NORMAL2-") for p in range(20) for k in (1, 2)
    ]
    examples = [training.Example(n, int(n.startswith("P")), f"{i:064d}") for i, n in enumerate(names)]
    split = training.split_stratified(examples, val_fraction=0.25, seed=3)
    train_patients = {training.patient_key(e) for e in split.train}
    val_patients = {training.patient_key(e) for e in split.validation}
    assert val_patients and not train_patients & val_patients
    assert training.patient_key(examples[0]) == "1:person0"
    assert training.patient_key(training.Example("NORMAL/NORMAL2-IM-0007-0002.jpeg", 0, "")) == "0:NORMAL2-IM-0007"
    # Whole patients, so the share is reached, give or take one patient's images
    for label in (0, 1):
        n = sum(e.label == label for e in examples)
        assert round(0.25 * n) <= sum(e.label == label for e in split.validation) < round(0.25 * n) + 4
    by_image = training.split_stratified(examples, val_fraction=0.25, seed=3, by_patient=False)
    assert {training.patient_key(e) for e in by_image.train} & {training.patient_key(e) for e in by_image.validation}


def test_it_never_uses_the_packaged_sample_images(tmp_path: Path) -> None:
    path, label = packaged_sample_images()[0]
    examples = [*_examples(5, 5), training.Example(f"{label}/{path.name}", 0, sha256_file(path))]
    split = training.split_stratified(examples, val_fraction=0.2, seed=1)
    assert [e.path for e in split.excluded] == [f"{label}/{path.name}"]
    assert all(e.sha256 != sha256_file(path) for e in split.train + split.validation)


def test_it_picks_the_highest_threshold_that_keeps_the_sensitivity() -> None:
    labels = np.array([1] * 20 + [0] * 5)
    probs = np.concatenate([np.linspace(0.05, 1.0, 20), np.full(5, 0.02)])
    threshold = training.threshold_for_sensitivity(probs, labels, 0.95)
    assert threshold == pytest.approx(0.1)
    assert (probs[labels == 1] >= threshold).mean() == 0.95


def test_it_calibrates_overconfident_logits_with_a_temperature() -> None:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 4000)
    true_log_odds = rng.normal(0, 2, 4000) + np.where(labels == 1, 1.5, -1.5)
    labels = (rng.random(4000) < 1 / (1 + np.exp(-true_log_odds))).astype(int)
    logits = np.stack([np.zeros(4000), 3.0 * true_log_odds], axis=1)  # three times too confident
    temperature = training.temperature_fit(logits, labels)
    assert temperature == pytest.approx(3.0, rel=0.1)
    before = training.expected_calibration_error(training.probabilities(logits), labels)
    after = training.expected_calibration_error(training.probabilities(logits, temperature), labels)
    assert after < before / 2


def test_it_writes_a_logistic_regression_exactly_into_the_head_shape() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = rng.normal(2.0, 0.5, (300, 2048)).astype(np.float32)
    y = (x[:, :10].sum(axis=1) + rng.normal(0, 1, 300) > 20).astype(int)
    scaler = StandardScaler().fit(x)
    lr = LogisticRegression(C=0.01, max_iter=2000).fit(scaler.transform(x), y)
    weights = training.logistic_regression_as_head(lr.coef_[0], lr.intercept_[0], scaler)
    assert weights["dense/0"].shape == (2048, 128) and weights["dense_1/0"].shape == (128, 2)
    served = training.probabilities(training.head_logits_numpy(weights, x))
    assert np.abs(served - lr.predict_proba(scaler.transform(x))[:, 1]).max() < 2e-3  # float16 weights


def _tiny_data_set(root: Path) -> Path:
    """The 16 packaged samples re-encoded as PNG: new bytes, so the split may use them."""
    for path, label in packaged_sample_images():
        (root / label).mkdir(parents=True, exist_ok=True)
        with Image.open(path) as image:
            image.convert("RGB").save(root / label / f"{path.stem}.png")
    return root


@pytest.mark.slow
@pytest.mark.django_db
def test_it_trains_end_to_end_into_artifacts_the_registry_accepts(tmp_path: Path, settings) -> None:
    # Given a tiny labelled folder
    data = _tiny_data_set(tmp_path / "data")
    out = tmp_path / "models" / "tiny-v1"
    # When training for one short epoch of each stage
    call_command(
        "train_model",
        str(data),
        "--out",
        str(out),
        "--name",
        "tiny-v1",
        "--val-fraction",
        "0.25",
        "--epochs",
        "1",
        "--fine-tune-epochs",
        "1",
        "--augment",
        "1",
        "--heatmap-limit",
        "4",
        "--cache",
        str(tmp_path / "cache"),
    )
    # Then the artifacts are complete and the registry registers, converts and gates them
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["base"]["sha256"] == sha256_file(packaged_model_path())
    assert manifest["split"]["validation_count"] == {"NORMAL": 2, "PNEUMONIA": 2}
    assert 0.0 < manifest["threshold"] < 1.0 and manifest["temperature"] > 0
    assert manifest["heatmap_scale"]["scale"] > 0 and manifest["parity_max_diff"] <= 1e-4
    assert (out / "reliability.png").stat().st_size > 1000
    from inference.registry import model_version_prepare, model_version_register_shipped

    settings.PNEUMO_MODEL_DIR = tmp_path / "converted"
    version = model_version_prepare(model_version_register_shipped(out))
    assert version.name == "tiny-v1" and version.parity_passed
    assert version.threshold == manifest["threshold"]
    assert version.sha256 == manifest["rebuilt_keras_sha256"]


@pytest.mark.slow
def test_it_rebuilds_the_shipped_model_deterministically(tmp_path: Path) -> None:
    manifest = shipped_model.shipped_verify(SHIPPED, packaged_model_path())
    weights = SHIPPED / manifest["weights"]["file"]
    size = manifest["input_size"]
    first = shipped_model.model_rebuild(packaged_model_path(), weights, tmp_path / "a.keras", size)
    second = shipped_model.model_rebuild(packaged_model_path(), weights, tmp_path / "b.keras", size)
    assert sha256_file(first) == sha256_file(second) == manifest["rebuilt_keras_sha256"]
    assert weights.stat().st_size <= 25 * 1024 * 1024


@pytest.mark.slow
def test_it_activates_the_shipped_model_once_it_passes_the_gate(active_model) -> None:
    manifest = json.loads((SHIPPED / "manifest.json").read_text())
    assert active_model.name == manifest["name"] and active_model.parity_passed
    assert active_model.threshold == manifest["threshold"]
    assert active_model.heatmap_scale == manifest["heatmap_scale"]["scale"]
    assert active_model.intended_max_age_years == 5.0


@pytest.mark.slow
def test_it_leaves_an_admins_choice_of_the_packaged_model_alone(active_model, admin_user) -> None:
    from inference.models import ModelVersion
    from inference.registry import PACKAGED_MODEL_NAME, model_version_activate, models_prepare_all

    packaged = ModelVersion.objects.get(name=PACKAGED_MODEL_NAME)
    model_version_activate(version=packaged, user=admin_user)
    models_prepare_all()
    assert ModelVersion.objects.get(is_active=True, population=packaged.population).pk == packaged.pk


@pytest.mark.slow
def test_the_shipped_224_model_serves_an_exact_7x7_gradcam(active_model) -> None:
    from inference.classifier import preprocess, preprocessing_get, raw_gradcam
    from inference.conversion import gradient_tape_gradcam, load_images, load_keras_model
    from inference.runtime import classifier_load

    assert active_model.name == SHIPPED.name and active_model.input_size == 224
    preprocessing = preprocessing_get(active_model.preprocessing_version)
    images = load_images([path for path, _ in packaged_sample_images()])
    batch = np.concatenate([preprocess(image, preprocessing) for image in images])
    classifier = classifier_load(active_model)  # its own conversion, whatever this process already loaded
    feature_maps, _ = classifier.run(batch)
    served = np.stack([raw_gradcam(fm, classifier.head) for fm in feature_maps])
    tape = gradient_tape_gradcam(load_keras_model(active_model.source_path), batch)
    assert served.shape == tape.shape == (16, 7, 7)
    assert np.corrcoef(served.ravel(), tape.ravel())[0, 1] > 0.999
    prediction = classifier.predict(images[0])
    assert prediction.heatmap.shape == (7, 7)
    assert prediction.preprocessing_version == preprocessing.name
