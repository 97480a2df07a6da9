"""Make the int8 LiteRT base shared by the shipped versions, and measure its gates for each of them.

    DEBUG=1 .venv/bin/python manage.py quantize_models --data ../shared/data

Writes ``models/xception224-int8/base-int8.tflite`` and ``int8-manifest.json`` (sha256, converter
settings, the representative set, and per version the gate figures of
``inference.quantization_gates.int8_gates``: AUC float32 vs int8 on its validation split, and the
parity images' probability and heatmap-cell differences). The float32 reference is each version's
prepared conversion (``prepare_models``, run first). A version that changed the base (fine-tuned
block 14) or uses another input cannot share it and is recorded as not applicable.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import numpy as np
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference import quantization as q
from inference.classifier import BICUBIC_224, Head, LiteRTClassifier
from inference.features_model import FeatureMapModel
from inference.model_package import packaged_model_path, sha256_file
from inference.models import ModelVersion
from inference.quantization_gates import ValidationAUC, int8_gates, probabilities_from_maps
from inference.registry import models_prepare_all, shipped_models_dir
from inference.shipped_model import manifest_read

# Calibration images per version: most from the large paediatric split, fewer from the small adult one.
CALIBRATION_IMAGES = {"kermany-224/train": 200}
CALIBRATION_IMAGES_OTHER = 100
BATCH = 8


class Command(BaseCommand):
    help = "Convert the shared Xception base to full-integer LiteRT and record each shipped version's int8 gates."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--data", type=Path, required=True, help="the shared data folder (../shared/data)")
        parser.add_argument("--out", type=Path, default=None, help=f"default models/{q.INT8_DIR_NAME}/")
        parser.add_argument("--threads", type=int, default=2, help="LiteRT threads for the gate measurements")
        parser.add_argument(
            "--float-layers",
            nargs="*",
            default=list(q.QuantizationSettings.float_layers),
            help="node-name fragments kept float32 (selective quantisation)",
        )

    def handle(self, *args, **options) -> None:
        data: Path = options["data"]
        out: Path = options["out"] or Path(settings.BASE_DIR) / "models" / q.INT8_DIR_NAME
        models_prepare_all()  # the float32 conversions, the reference of every gate
        shared, skipped = self._versions()
        if not shared:
            raise CommandError("no shipped version keeps the packaged base frozen at 224 px")
        splits = [(q.version_split(m, data), self._calibration_count(m)) for m in shared]
        paths = q.representative_paths(splits)
        self.stdout.write(f"calibrating on {len(paths)} training images ...")
        quantization = q.QuantizationSettings(float_layers=tuple(options["float_layers"]))
        converted = q.convert_base_int8(paths, out / q.INT8_FILE_NAME, quantization=quantization)
        self.stdout.write(
            f"wrote {converted.tflite_path} ({converted.bytes / 1e6:.1f} MB) in {converted.seconds:.0f} s"
        )
        int8 = FeatureMapModel(converted.tflite_path, num_threads=options["threads"])
        gates = {
            m["name"]: self._gates(m, split, int8, options["threads"])
            for m, (split, _) in zip(shared, splits, strict=True)
        }
        gates.update(skipped)
        manifest = self._manifest(converted, splits, paths, data, gates)
        (out / q.INT8_MANIFEST_NAME).write_text(json.dumps(manifest, indent=1) + "\n")
        for name, figures in gates.items():
            self.stdout.write(f"{name}: {self._summary(figures)}")

    def _versions(self) -> tuple[list[dict], dict[str, dict]]:
        """Shipped manifests that share the frozen 224 px packaged base, and why the others cannot."""
        base_sha = sha256_file(packaged_model_path())
        shared, skipped = [], {}
        for manifest_path in sorted(shipped_models_dir().glob("*/manifest.json")):
            manifest = manifest_read(manifest_path.parent)
            reason = q.shares_base_reason(manifest, base_sha)
            if reason:
                skipped[manifest["name"]] = {"applicable": False, "reason": reason, "passed": False}
            else:
                shared.append(manifest)
        return shared, skipped

    def _calibration_count(self, manifest: dict) -> int:
        return CALIBRATION_IMAGES.get(manifest["data"]["folder"], CALIBRATION_IMAGES_OTHER)

    def _gates(self, manifest: dict, split: q.VersionSplit, int8: FeatureMapModel, threads: int) -> dict:
        version = ModelVersion.objects.get(name=manifest["name"])
        scale = manifest["heatmap_scale"]["scale"]
        float32 = LiteRTClassifier(
            version.converted_path,
            version.head_path,
            heatmap_scale=scale,
            preprocessing=BICUBIC_224,
            num_threads=threads,
        )
        head = Head.load(version.head_path)
        parity = q.parity_image_paths(Path(settings.BASE_DIR))
        parity_f32, parity_int8 = self._maps(float32, int8, parity)
        labels = np.array([i.label for i in split.validation])
        p_f32, p_int8 = [], []
        for start in range(0, len(split.validation), BATCH):
            chunk = [i.path for i in split.validation[start : start + BATCH]]
            maps_f32, maps_int8 = self._maps(float32, int8, chunk)
            p_f32.append(probabilities_from_maps(maps_f32, head))
            p_int8.append(probabilities_from_maps(maps_int8, head))
        validation = ValidationAUC.from_scores(labels, np.concatenate(p_f32), np.concatenate(p_int8))
        figures = int8_gates(
            head=head, heatmap_scale=scale, parity_float32=parity_f32, parity_int8=parity_int8, validation=validation
        )
        probability_diff = np.abs(np.concatenate(p_f32) - np.concatenate(p_int8))
        figures["validation_probability_max_diff"] = float(probability_diff.max())
        figures["validation_probability_median_diff"] = float(np.median(probability_diff))
        return {
            "applicable": True,
            "float32_tflite_sha256": version.converted_sha256,
            "head_sha256": version.head_sha256,
            "heatmap_scale": scale,
            "parity_images": [p.name for p in parity],
            **figures,
        }

    def _maps(
        self, float32: LiteRTClassifier, int8: FeatureMapModel, paths: list[Path]
    ) -> tuple[np.ndarray, np.ndarray]:
        batch = np.concatenate([q.preprocessed(p) for p in paths])
        return float32.run(batch)[0].copy(), int8.run(batch).copy()

    def _manifest(self, converted: q.Int8Conversion, splits: list, paths: list[Path], data: Path, gates: dict) -> dict:
        import tensorflow as tf

        return {
            "file": converted.tflite_path.name,
            "sha256": converted.sha256,
            "bytes": converted.bytes,
            "base": {
                "distribution": "pneumonia-model-package 0.3.0",
                "sha256": sha256_file(packaged_model_path()),
                "layer": q.BASE_LAYER,
                "input_size": BICUBIC_224.size,
                "preprocessing_version": BICUBIC_224.name,
                "output": "N x 7 x 7 x 2048 float32 feature map (dequantised)",
            },
            "converter": {"tensorflow": tf.__version__, **converted.settings},
            "representative_set": {
                "method": "per version: its training split (data folder minus validation_paths and excluded "
                "packaged samples), sorted by path, evenly spaced (numpy linspace, rounded); "
                "inference.classifier.preprocess(..., rgb-bicubic224-xception-v1)",
                "versions": {s.name: {"folder": str(s.folder.relative_to(data)), "n": n} for s, n in splits},
                "n_images": len(paths),
                "sha256_digest": q.images_digest(paths),
                "paths": [str(p.relative_to(data)) for p in paths],
            },
            "conversion_seconds": round(converted.seconds, 1),
            "command": "manage.py " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
            "gates": gates,
        }

    def _summary(self, figures: dict) -> str:
        if not figures["applicable"]:
            return f"not applicable ({figures['reason']})"
        verdict = "PASSED" if figures["passed"] else "FAILED (float32 is served)"
        return (
            f"{verdict}: AUC {figures['validation_auc_float32']:.4f} float32"
            f" vs {figures['validation_auc_int8']:.4f} int8"
            f" (n={figures['validation_n']}), parity max prob diff {figures['parity_probability_max_diff']:.4f},"
            f" max heatmap cell diff {figures['parity_heatmap_cell_max_diff']:.4f}"
        )
