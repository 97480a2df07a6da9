"""Evaluate the AI on a folder with NORMAL/ and PNEUMONIA/ subfolders: routed as the site routes, or one version.

Without ``--model`` each image goes to the version the site would choose (its age when the file
says it, otherwise the version whose domain check finds it most typical), with that version's
probability judged at that version's threshold. Every decodable image counts, whatever its
scope outcome; ``routed`` and ``domains`` say how they were read.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from inference import evaluation
from inference.models import ModelVersion
from inference.registry import active_model_versions, models_prepare_all
from inference.routing import route_image, route_requested
from inference.scope import RoutedOutput, image_scope_routed


@dataclass
class Scored:
    labels: list[int] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    thresholds: list[float] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)
    skipped: int = 0

    def add(self, label: int, routed: RoutedOutput) -> None:
        self.labels.append(label)
        # The probability its version computed, whatever the scope outcome (a muted one included).
        self.scores.append(routed.scoped.output.probability)
        self.thresholds.append(routed.version.threshold)
        self.versions.append(routed.version.name)
        self.domains.append(routed.scoped.verdict.domain)


def _fmt(value: float | None) -> str:
    return "n/a" if value is None or value != value else f"{value:.4f}"


class Command(BaseCommand):
    help = "Print n, AUC, sensitivity, specificity, PPV, NPV and the confusion matrix of a model on a folder."

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", type=Path)
        parser.add_argument(
            "--model", help="read every image with this version (default: each routed as the site routes it)"
        )
        parser.add_argument("--threshold", type=float, help="default: the model's threshold")
        parser.add_argument("--json", type=Path, help="write the figures here, and a ROC curve PNG beside it")

    def handle(self, *args, **options) -> None:
        models_prepare_all()
        version = self._version(options["model"]) if options["model"] else None
        scored = self._score(options["path"], version)
        if not scored.labels:
            raise CommandError("no decodable image found")
        labels, scores = np.array(scored.labels), np.array(scored.scores)
        if options["threshold"] is not None:
            threshold: float | np.ndarray = options["threshold"]
        else:
            threshold = np.array(scored.thresholds) if version is None else version.threshold
        figures = {
            "model": version.name if version else "routed",
            **evaluation.metrics(labels, scores, threshold),
            "routed": dict(sorted(Counter(scored.versions).items())),
            "domains": dict(sorted(Counter(scored.domains).items())),
        }
        self._print(figures, scored.skipped)
        if options["json"]:
            options["json"].write_text(json.dumps(figures, indent=2))
            evaluation.roc_png(labels, scores, options["json"].with_suffix(".roc.png"), figures["model"])

    def _version(self, name: str) -> ModelVersion:
        version = ModelVersion.objects.filter(name=name).first()
        if version is None:
            raise CommandError(f"no model version {name!r}")
        return version

    def _score(self, root: Path, version: ModelVersion | None) -> Scored:
        actives = active_model_versions()
        if version is None and not actives:
            raise CommandError("no active model version")
        scored = Scored()
        for path, label in evaluation.labelled_files(root):
            found = evaluation.routed_input(path, settings.PNEUMO_MAX_UPLOAD_BYTES, settings.PNEUMO_MAX_PIXELS)
            if found is None:
                scored.skipped += 1
                continue
            image, age = found
            route = route_requested(version) if version is not None else route_image(age, actives)
            routed = image_scope_routed(image, route=route, heatmap=False)
            scored.add(label, routed)
        return scored

    def _print(self, f: dict, skipped: int) -> None:
        (tn, fp), (fn, tp) = f["confusion_matrix"]
        self.stdout.write(f"model        {f['model']}")
        self.stdout.write(f"n            {f['n']} ({skipped} undecodable skipped)")
        self.stdout.write(f"routed       {', '.join(f'{k} {v}' for k, v in f['routed'].items())}")
        self.stdout.write(f"domains      {', '.join(f'{k} {v}' for k, v in f['domains'].items())}")
        keys = ("auc", "threshold", "sensitivity", "specificity", "ppv", "npv", "threshold_at_95_sensitivity")
        for key in keys:
            self.stdout.write(f"{key:<12} {_fmt(f[key])}")
        self.stdout.write("confusion    predicted NORMAL  predicted PNEUMONIA")
        self.stdout.write(f"  NORMAL     {tn:>16}  {fp:>19}")
        self.stdout.write(f"  PNEUMONIA  {fn:>16}  {tp:>19}")
