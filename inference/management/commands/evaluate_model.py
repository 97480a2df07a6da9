"""Evaluate a model version on a folder with NORMAL/ and PNEUMONIA/ subfolders."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from inference import evaluation
from inference.models import ModelVersion
from inference.registry import active_model_version, models_prepare_all
from inference.runtime import classifier_for


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.4f}"


class Command(BaseCommand):
    help = "Print n, AUC, sensitivity, specificity, PPV, NPV and the confusion matrix of a model on a folder."

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument("--model", help="model version name (default: the active one)")
        parser.add_argument("--threshold", type=float, help="default: the model's threshold")
        parser.add_argument("--json", type=Path, help="write the figures here, and a ROC curve PNG beside it")

    def handle(self, *args, **options) -> None:
        models_prepare_all()
        version = self._version(options["model"])
        threshold = options["threshold"] if options["threshold"] is not None else version.threshold
        labels, scores, skipped = self._score(options["path"], version)
        if not len(labels):
            raise CommandError("no decodable image found")
        figures = {"model": version.name, **evaluation.metrics(labels, scores, threshold)}
        self._print(figures, skipped)
        if options["json"]:
            options["json"].write_text(json.dumps(figures, indent=2))
            evaluation.roc_png(labels, scores, options["json"].with_suffix(".roc.png"), version.name)

    def _version(self, name: str | None) -> ModelVersion:
        version = ModelVersion.objects.filter(name=name).first() if name else active_model_version()
        if version is None:
            raise CommandError(f"no model version {name!r}" if name else "no active model version")
        return version

    def _score(self, root: Path, version: ModelVersion) -> tuple[np.ndarray, np.ndarray, int]:
        classifier = classifier_for(version)
        labels, scores, skipped = [], [], 0
        for path, label in evaluation.labelled_files(root):
            image = evaluation.model_input(path, settings.PNEUMO_MAX_UPLOAD_BYTES, settings.PNEUMO_MAX_PIXELS)
            if image is None:
                skipped += 1
                continue
            labels.append(label)
            scores.append(classifier.predict(image, heatmap=False).probability)
        return np.array(labels), np.array(scores), skipped

    def _print(self, f: dict, skipped: int) -> None:
        (tn, fp), (fn, tp) = f["confusion_matrix"]
        self.stdout.write(f"model        {f['model']}")
        self.stdout.write(f"n            {f['n']} ({skipped} undecodable skipped)")
        keys = ("auc", "threshold", "sensitivity", "specificity", "ppv", "npv", "threshold_at_95_sensitivity")
        for key in keys:
            self.stdout.write(f"{key:<12} {_fmt(f[key])}")
        self.stdout.write("confusion    predicted NORMAL  predicted PNEUMONIA")
        self.stdout.write(f"  NORMAL     {tn:>16}  {fp:>19}")
        self.stdout.write(f"  PNEUMONIA  {fn:>16}  {tp:>19}")
