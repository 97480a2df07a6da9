"""Reproduce a shipped model's recorded validation figures on its recorded split (needs the data folder)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.registry import shipped_keras_path, shipped_model_dirs

FIGURES = ("auc", "sensitivity", "specificity", "ece")


class Command(BaseCommand):
    help = "Check each shipped model (models/*/manifest.json) against its recorded validation figures."

    def add_arguments(self, parser: CommandParser) -> None:
        default = Path(settings.BASE_DIR).parent / "shared" / "data" / "kermany-224" / "train"
        parser.add_argument("--data", type=Path, default=default, help="the folder with NORMAL/ and PNEUMONIA/")
        parser.add_argument("--models", type=Path, default=None, help="folder of shipped models (default models/)")
        parser.add_argument("--tolerance", type=float, default=0.005)

    def handle(self, *args, **options) -> None:
        dirs = shipped_model_dirs(options["models"])
        if not dirs:
            raise CommandError("no shipped models found")
        failures = [d.name for d in dirs if not self.check_one(d, options["data"], options["tolerance"])]
        if failures:
            raise CommandError(f"figures not reproduced for: {', '.join(failures)}")

    def check_one(self, model_dir: Path, data_dir: Path, tolerance: float) -> bool:
        from inference import training
        from inference.conversion import convert_to_litert
        from inference.model_package import sha256_file

        keras_path, manifest = shipped_keras_path(model_dir)
        split = manifest["split"]
        examples = [
            training.Example(p, training.LABELS.index(p.split("/")[0]), sha256_file(data_dir / p))
            for p in split["validation_paths"]
        ]
        if training.split_digest(examples) != split["validation_sha256_digest"]:
            raise CommandError(f"{data_dir} does not hold the validation images {model_dir.name} recorded")
        with tempfile.TemporaryDirectory() as tmp:
            converted = convert_to_litert(keras_path, tmp)
            probs = training.served_probabilities(
                converted.tflite_path, converted.head_path, data_dir, examples, manifest["preprocessing_version"]
            )
        labels = np.array([e.label for e in examples])
        got = training.figures(probs, labels, manifest["threshold"])
        recorded = manifest["validation"]["served"]
        ok = all(abs(got[k] - recorded[k]) <= tolerance for k in FIGURES)
        for k in FIGURES:
            self.stdout.write(f"{model_dir.name} {k}: recorded {recorded[k]}, now {got[k]}")
        style = self.style.SUCCESS if ok else self.style.ERROR
        self.stdout.write(style(f"{model_dir.name}: {'reproduced' if ok else 'NOT reproduced'} within {tolerance}"))
        return ok
