from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from django.core.management import call_command

from cases.imaging.sniff import PNG_SIGNATURE
from inference import evaluation
from inference.model_package import packaged_sample_images
from tests.dicom_factory import make_dicom


def test_it_computes_auc_with_ties_like_the_textbook() -> None:
    labels = np.array([0, 0, 1, 1])
    assert evaluation.auc(labels, np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert evaluation.auc(labels, np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.5)


def test_it_computes_the_confusion_figures_at_a_threshold() -> None:
    labels = np.array([0, 0, 0, 1, 1, 1, 1])
    scores = np.array([0.1, 0.6, 0.2, 0.9, 0.7, 0.4, 0.8])
    m = evaluation.metrics(labels, scores, 0.5)
    assert m["confusion_matrix"] == [[2, 1], [1, 3]]
    assert m["sensitivity"] == pytest.approx(0.75) and m["specificity"] == pytest.approx(2 / 3)
    assert m["ppv"] == pytest.approx(0.75) and m["npv"] == pytest.approx(2 / 3)
    assert m["threshold_at_95_sensitivity"] == pytest.approx(0.4)


@pytest.mark.slow
def test_it_evaluates_a_folder_with_the_real_model(active_model, tmp_path, capsys) -> None:
    for path, label in packaged_sample_images():
        (tmp_path / label).mkdir(exist_ok=True)
        shutil.copy(path, tmp_path / label / path.name)
    (tmp_path / "NORMAL" / "extra.dcm").write_bytes(make_dicom(0))
    # Chosen by content, never by name: a JPEG named .txt counts, a text file named .dcm is no image.
    shutil.copy(packaged_sample_images()[0][0], tmp_path / "NORMAL" / "exported.txt")
    (tmp_path / "NORMAL" / "notes.dcm").write_bytes(b"not an image")
    (tmp_path / "NORMAL" / "broken.png").write_bytes(PNG_SIGNATURE + b"cut short")
    out_json = tmp_path / "eval.json"
    call_command("evaluate_model", str(tmp_path), "--json", str(out_json))
    figures = json.loads(out_json.read_text())
    assert set(figures) == {
        "model",
        "n",
        "auc",
        "threshold",
        "sensitivity",
        "specificity",
        "ppv",
        "npv",
        "confusion_matrix",
        "threshold_at_95_sensitivity",
        "routed",
        "domains",
    }
    # Routed as the site routes: each image by its version, judged at that version's threshold (none overall).
    assert figures["n"] == 18 and figures["model"] == "routed" and figures["threshold"] is None
    assert sum(figures["routed"].values()) == 18 == sum(figures["domains"].values())
    assert figures["routed"].get(active_model.name, 0) >= 16  # the paediatric samples go to the paediatric version
    assert 0.5 < figures["auc"] <= 1.0
    assert sum(map(sum, figures["confusion_matrix"])) == 18
    one = tmp_path / "one.json"
    call_command("evaluate_model", str(tmp_path), "--model", active_model.name, "--json", str(one))
    single = json.loads(one.read_text())
    assert single["model"] == active_model.name and single["routed"] == {active_model.name: 18}
    assert single["threshold"] == pytest.approx(active_model.threshold)
    assert (tmp_path / "eval.roc.png").stat().st_size > 1000
    assert "1 undecodable skipped" in capsys.readouterr().out
