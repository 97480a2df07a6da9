"""Training for a population: a data folder whose manifest names the patient, view, sex and age."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from PIL import Image

from inference import domain_fitting, training
from inference.domain import CHEST, FEATURE_CHANNELS, VERSION
from inference.management.commands.train_model import age_range, view_list
from inference.model_package import packaged_sample_images

COLUMNS = ("path", "label", "patient_id", "age", "sex", "view")


def _write_manifest(root: Path, rows: list[dict]) -> None:
    with (root / "manifest.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _patient_data_set(root: Path) -> Path:
    """The 16 packaged samples re-encoded as grey PNG (new bytes), with a patient manifest.

    Patient P0 has a NORMAL and a PNEUMONIA film, P1 two PNEUMONIA films; one adult is 90, outside 18-85,
    and one film is lateral (LL): both must be left out by the filters.
    """
    rows = []
    for i, (path, label) in enumerate(packaged_sample_images()):
        (root / label).mkdir(parents=True, exist_ok=True)
        with Image.open(path) as image:
            image.convert("L").save(root / label / f"{path.stem}.png")
        patient = {0: "P0", 8: "P0", 9: "P1", 10: "P1"}.get(i, f"P{i + 2}")
        age = 90 if i == 5 else 20 + 3 * i
        view = "LL" if i == 6 else ("PA" if i % 2 else "AP")
        rows.append(
            {"path": f"{label}/{path.stem}.png", "label": label, "patient_id": patient, "age": age, "sex": "FM"[i % 2]}
            | {"view": view}
        )
    _write_manifest(root, rows)
    return root


def _examples(patients: list[tuple[str, int, int]]) -> list[training.Example]:
    """(patient, NORMAL films, PNEUMONIA films) -> examples with that patient."""
    out = []
    for patient, n_normal, n_pneumonia in patients:
        for label, n in ((0, n_normal), (1, n_pneumonia)):
            out += [
                training.Example(
                    f"{training.LABELS[label]}/{patient}-{k}.png", label, f"{patient}{label}{k}".ljust(64, "0")
                )
                for k in range(n)
            ]
    return [training.Example(e.path, e.label, e.sha256, patient=e.path.split("/")[1].split("-")[0]) for e in out]


def test_it_keeps_a_patient_with_films_in_both_classes_on_one_side() -> None:
    rng = np.random.default_rng(0)
    patients = [(f"N{i}", int(rng.integers(1, 4)), 0) for i in range(60)]
    patients += [(f"P{i}", 0, int(rng.integers(1, 4))) for i in range(60)]
    patients += [(f"B{i}", int(rng.integers(1, 3)), int(rng.integers(1, 3))) for i in range(15)]
    examples = _examples(patients)
    split = training.split_stratified(examples, val_fraction=0.2, seed=1)
    again = training.split_stratified(examples, val_fraction=0.2, seed=1)
    assert split.validation == again.validation
    assert not {e.patient for e in split.train} & {e.patient for e in split.validation}
    assert len(split.train) + len(split.validation) == len(examples)
    for label in (0, 1):
        n = sum(e.label == label for e in examples)
        got = sum(e.label == label for e in split.validation)
        assert abs(got - round(0.2 * n)) <= 2, (label, got, n)  # stratified as well as whole patients allow


def test_it_reads_a_patient_manifest_and_keeps_only_the_intended_ages_and_views(tmp_path: Path) -> None:
    data = _patient_data_set(tmp_path / "data")
    assert training.has_patient_manifest(data) and not training.has_patient_manifest(tmp_path)
    examples = training.examples_from_manifest(data, ages=(18, 85), views=("AP", "PA"))
    assert len(examples) == 14  # the 90-year-old and the lateral film are left out
    assert {e.view for e in examples} == {"AP", "PA"} and {e.sex for e in examples} == {"F", "M"}
    assert all(18 <= e.age <= 85 and e.patient for e in examples)
    assert len(training.examples_from_manifest(data, views=("PA",))) == 8


def test_it_parses_the_population_options() -> None:
    assert age_range("18-85") == (18.0, 85.0) and view_list("ap, PA") == ("AP", "PA")
    for bad in ("18", "85-18", "x-y"):
        with pytest.raises(CommandError):
            age_range(bad)
    with pytest.raises(CommandError):
        view_list("LL")


def test_it_figures_per_group_and_measures_what_the_view_alone_predicts() -> None:
    examples = [training.Example(f"x/{i}", i % 2, "", view="PA" if i % 2 else "AP", sex="F") for i in range(8)]
    probs = np.linspace(0.1, 0.9, 8)
    groups = training.subgroup_figures(examples, probs, threshold=0.5)
    assert set(groups["by_view"]) == {"AP", "PA"} and groups["by_view"]["AP"]["auc"] is None  # one class only
    assert groups["by_view"]["PA"]["sensitivity"] == 0.5 and groups["by_sex"]["F"]["n"] == 8
    # The view alone separates these classes perfectly: the confound shows as an AUC of 1.
    assert training.attribute_only_figure(examples, examples, "view")["auc"] == 1.0
    assert training.attribute_only_figure(examples, examples, "sex")["auc"] == 0.5


@pytest.mark.slow  # three 2048-feature fits
def test_it_routes_each_image_to_the_version_that_finds_it_most_typical() -> None:
    rng = np.random.default_rng(0)
    a = np.abs(rng.normal(0, 1, (400, FEATURE_CHANNELS)))  # pooled features are non-negative, like these
    b = a[::-1] + 1.0
    settings = domain_fitting.FitSettings(version_components=16, orientation_films=0)
    common = {"preprocessing_version": "p", "n_components": 16}
    chest = domain_fitting.domain_check_fit(np.concatenate([a, b]), kind=CHEST, **common)
    chest = domain_fitting.check_with_limit(chest, 1e9)
    checks = {}
    for name, x in (("a", a), ("b", b)):
        parts = {f"{name}_train": x[:300], f"{name}_validation": x[300:]}
        samples = {
            part: [domain_fitting.Sample(Path(f"{part}/{i}"), name, f"{part}{i}", f"{i:064d}") for i in range(len(f))]
            for part, f in parts.items()
        }
        version, record = domain_fitting.version_check_fit(
            features=parts,
            samples=samples,
            own=name,
            others=(),
            background=None,
            preprocessing_version="p",
            settings=settings,
        )
        assert version.kind == VERSION and record["fitted_on"][f"{name}_train"]["n"] == 300
        assert record["scores"][f"{name}_validation"]["inside_share"] == pytest.approx(0.975, abs=0.02)
        checks[name] = (chest, version)
    shares = domain_fitting.routing_shares({"a_val": ("a", a[300:]), "b_val": ("b", b[300:])}, checks)
    assert shares["a_val"]["to_own_share"] == 1.0 and shares["b_val"]["to_own_share"] == 1.0
    assert shares["a_val"]["routed_share"] == {"a": 1.0, "b": 0.0} and shares["a_val"]["ties"] == 0


@pytest.mark.slow
@pytest.mark.django_db
def test_it_trains_on_a_patient_manifest_and_records_population_views_and_subgroups(tmp_path: Path) -> None:
    # Given a tiny folder with a patient manifest (one patient in both classes)
    data = _patient_data_set(tmp_path / "nih-tiny")
    out = tmp_path / "models" / "tiny-adult-v1"
    # When training the adult population on it, briefly
    call_command(
        "train_model",
        str(data),
        "--out",
        str(out),
        "--name",
        "tiny-adult-v1",
        "--population",
        "adult",
        "--ages",
        "18-85",
        "--views",
        "AP,PA",
        "--target-sensitivity",
        "0.9",
        "--val-fraction",
        "0.3",
        "--epochs",
        "1",
        "--fine-tune-epochs",
        "0",
        "--augment",
        "0",
        "--heatmap-limit",
        "2",
        "--cache",
        str(tmp_path / "cache"),
    )
    manifest = json.loads((out / "manifest.json").read_text())
    # Then no patient is on both sides, and the filters left out the 90-year-old and the lateral film
    validation = set(manifest["split"]["validation_paths"])
    with (data / "manifest.csv").open(newline="") as handle:
        rows = {row["path"]: row for row in csv.DictReader(handle)}
    kept = [p for p, row in rows.items() if row["view"] != "LL" and int(row["age"]) <= 85]
    train_patients = {rows[p]["patient_id"] for p in kept if p not in validation}
    val_patients = {rows[p]["patient_id"] for p in validation}
    assert val_patients and not train_patients & val_patients
    assert manifest["data"]["n_images"] == 14 and manifest["data"]["folder"] == "nih-tiny"
    # And the manifest says whom it is for, with per-view and per-sex figures beside the baseline's
    assert manifest["population"] == "adult"
    use = manifest["intended_use"]
    assert (use["min_age_years"], use["max_age_years"], use["views"], use["view"]) == (18.0, 85.0, ["AP", "PA"], "AP")
    assert "NIH Clinical Center" in use["text"] and "lateral" in use["text"]
    figures = manifest["validation"]
    assert set(figures["by_view"]) <= {"AP", "PA"} and set(figures["by_sex"]) <= {"F", "M"}
    assert sum(g["n"] for g in figures["by_view"].values()) == len(validation)
    assert {"by_view", "by_sex"} <= set(figures["baseline"]) and "auc" in figures["view_only"]
    assert manifest["recipe"]["threshold_rule"].find(">= 0.9 ") > 0
