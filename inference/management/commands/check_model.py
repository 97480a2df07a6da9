"""Reproduce a shipped model's recorded validation figures on its recorded split (needs the data folder)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.registry import shipped_keras_path, shipped_model_dirs

FIGURES = ("auc", "sensitivity", "specificity", "ece")
SUBGROUP_FIGURES = ("auc", "sensitivity", "specificity")


class Command(BaseCommand):
    help = "Check each shipped model (models/*/manifest.json) against its recorded validation figures."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--data",
            type=Path,
            default=None,
            help="one folder with NORMAL/ and PNEUMONIA/ for all models (default: each model's own, under --data-root)",
        )
        parser.add_argument(
            "--data-root",
            type=Path,
            default=Path(settings.BASE_DIR).parent / "shared" / "data",
            help="where each model's recorded data.folder (kermany-224/train, nih-adult-512) lies",
        )
        parser.add_argument("--models", type=Path, default=None, help="folder of shipped models (default models/)")
        parser.add_argument("--tolerance", type=float, default=0.005)

    def handle(self, *args, **options) -> None:
        dirs = shipped_model_dirs(options["models"])
        if not dirs:
            raise CommandError("no shipped models found")
        failures = [
            d.name for d in dirs if not self.check_one(d, options["data"], options["data_root"], options["tolerance"])
        ]
        if failures:
            raise CommandError(f"figures not reproduced for: {', '.join(failures)}")

    def check_one(self, model_dir: Path, data: Path | None, data_root: Path, tolerance: float) -> bool:
        from inference import training
        from inference.conversion import convert_to_litert

        keras_path, manifest = shipped_keras_path(model_dir)
        data_dir = data if data is not None else data_root / manifest["data"]["folder"]
        examples = self._validation_examples(data_dir, manifest)
        if training.split_digest(examples) != manifest["split"]["validation_sha256_digest"]:
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
        if "by_view" in manifest["validation"]:
            ok = self._check_subgroups(model_dir.name, manifest, examples, probs, tolerance) and ok
        style = self.style.SUCCESS if ok else self.style.ERROR
        self.stdout.write(style(f"{model_dir.name}: {'reproduced' if ok else 'NOT reproduced'} within {tolerance}"))
        return ok

    def _validation_examples(self, data_dir: Path, manifest: dict) -> list:
        """The recorded validation images, with view and sex where the folder's manifest gives them."""
        from inference import training
        from inference.model_package import sha256_file

        paths = manifest["split"]["validation_paths"]
        if training.has_patient_manifest(data_dir):
            by_path = {e.path: e for e in training.examples_from_manifest(data_dir)}
            missing = [p for p in paths if p not in by_path]
            if missing:
                raise CommandError(f"{data_dir}/manifest.csv lacks {len(missing)} validation images, e.g. {missing[0]}")
            return [by_path[p] for p in paths]
        return [training.Example(p, training.LABELS.index(p.split("/")[0]), sha256_file(data_dir / p)) for p in paths]

    def _check_subgroups(self, name: str, manifest: dict, examples: list, probs: np.ndarray, tolerance: float) -> bool:
        from inference import training

        got = training.subgroup_figures(examples, probs, manifest["threshold"])
        ok = True
        for key in ("by_view", "by_sex"):
            for group, recorded in manifest["validation"][key].items():
                now = got[key].get(group, {})
                same = all(
                    (recorded[k] is None and now.get(k) is None)
                    or (recorded[k] is not None and now.get(k) is not None and abs(now[k] - recorded[k]) <= tolerance)
                    for k in SUBGROUP_FIGURES
                )
                ok = ok and same and now.get("n") == recorded["n"]
                figures = ", ".join(f"{k} {recorded[k]} -> {now.get(k)}" for k in SUBGROUP_FIGURES)
                self.stdout.write(f"{name} {key} {group} (n {recorded['n']}): {figures}")
        return ok
