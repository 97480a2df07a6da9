"""Fit a model version's scope checks (``domain.npz``, ``chest.npz``, ``domain.json``) from the data folder.

    DEBUG=1 .venv/bin/python manage.py fit_domain pneumo-xception224-cal-v2 --data ../shared/data
    DEBUG=1 .venv/bin/python manage.py fit_domain pneumonia-xception-pkg-0.3.0 --data ../shared/data
    DEBUG=1 .venv/bin/python manage.py fit_domain pneumo-xception224-adult-v1 --data ../shared/data

Features come from the prepared LiteRT conversion the worker serves (``prepare_models``; for a
version not prepared yet, a conversion of its rebuilt model cached under ``var/domain-cache/``)
and are cached under ``var/domain-cache/``; the fitting is ``inference.domain_fitting``.

A version trained on a folder with its own patient manifest (the adult version) gets its version
check fitted on its own training split and limited on its own validation split; its chest check,
and the chest films of all ages its score is relative to, are those of ``--chest-from`` (the same
images and, the base being frozen and shared, the same features), so that file is copied unchanged.
Its ``domain.json`` also records how the routing rule (smallest ``score / limit``) sends each
version's validation films.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference import domain_fitting as fitting
from inference.classifier import PACKAGED_MODEL_SHA256, PREPROCESSING_VERSION
from inference.registry import PACKAGED_MODEL_NAME, shipped_models_dir

# The packaged model's head was trained on all of kermany-224/train; its version check uses the
# split of the shipped version trained on the same images, so both are judged on the same films.
PACKAGED_SPLIT_FROM = "pneumo-xception224-cal-v2"


class Command(BaseCommand):
    help = "Fit the chest check and the version check of a model version and write them to models/<name>/."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("name", help="the model version (a folder under models/, or the packaged model)")
        parser.add_argument("--data", type=Path, default=Path(settings.BASE_DIR).parent / "shared" / "data")
        parser.add_argument("--out", type=Path, default=None, help="default models/<name>/")
        parser.add_argument("--cache", type=Path, default=Path(settings.BASE_DIR) / "var" / "domain-cache")
        parser.add_argument("--threads", type=int, default=1, help="LiteRT threads for feature extraction")
        parser.add_argument("--seed", type=int, default=1, help="seed of the NIH patient split")
        parser.add_argument("--nih-held-out", type=float, default=0.3, help="share of NIH images held out")
        parser.add_argument("--chest-components", type=int, default=fitting.FitSettings.chest_components)
        parser.add_argument("--version-components", type=int, default=fitting.FitSettings.version_components)
        parser.add_argument(
            "--absolute", action="store_true", help="version check without the all-ages chest background"
        )
        parser.add_argument("--shrinkage", type=float, default=fitting.DEFAULT_SHRINKAGE)
        parser.add_argument("--power", type=float, default=fitting.DEFAULT_POWER)
        parser.add_argument("--version-inside", type=float, default=0.975)
        parser.add_argument("--chest-inside", type=float, default=0.995)
        parser.add_argument(
            "--orientation-films",
            type=int,
            default=fitting.ORIENTATION_FILMS,
            help="training films turned (90/180/270 degrees, upside down) to fit the orientation probe; 0: none",
        )
        parser.add_argument("--orientation-inside", type=float, default=0.995)
        parser.add_argument(
            "--chest-from",
            default=PACKAGED_SPLIT_FROM,
            help="for a version with its own patient manifest: the version whose chest check and background it shares",
        )

    def handle(self, *args, **options) -> None:
        name = options["name"]
        model_sha256, preprocessing, manifest = self._version(name)
        if name != PACKAGED_MODEL_NAME and manifest.get("data", {}).get("manifest"):
            return self._fit_own_split(name, manifest, options)
        started = time.perf_counter()
        split = fitting.reference_split(
            options["data"],
            validation_paths=manifest["split"]["validation_paths"],
            nih_held_out=options["nih_held_out"],
            seed=options["seed"],
        )
        for part in ("train", "validation"):
            got = fitting.samples_digest(getattr(split, f"kermany_{part}"))
            if got != manifest["split"][f"{part}_sha256_digest"]:
                raise CommandError(f"{options['data']} does not hold the {part} images the split recorded")
        try:
            classifier = fitting.served_classifier(
                prepared_dir=Path(settings.PNEUMO_MODEL_DIR),
                model_sha256=model_sha256,
                preprocessing_version=preprocessing,
                num_threads=options["threads"],
            )
        except (FileNotFoundError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        extractor = fitting.FeatureExtractor(
            classifier,
            cache_dir=options["cache"],
            max_bytes=settings.PNEUMO_MAX_UPLOAD_BYTES,
            max_pixels=settings.PNEUMO_MAX_PIXELS,
        )
        features = {
            part: extractor.pooled_files(getattr(split, part), progress=self.stdout.write)
            for part in ("kermany_train", "kermany_validation", "nih_train", "nih_validation")
        }
        fit = self._settings(options)
        orientation, turned_samples = None, []
        if fit.orientation_films > 0:
            # Training films only: the upright validation films set the probe's limit.
            turned_samples = fitting.orientation_subset(
                split.kermany_train, n=fit.orientation_films, seed=options["seed"]
            )
            orientation = {"upright": extractor.pooled_files(turned_samples)} | fitting.orientation_features(
                extractor, turned_samples, progress=self.stdout.write
            )
        fitted = fitting.scope_checks_fit(
            features=features,
            split=split,
            preprocessing_version=preprocessing,
            settings=fit,
            orientation=orientation,
            orientation_samples=turned_samples,
        )
        out = options["out"] or shipped_models_dir() / name
        about = {
            "what": f"scope checks of model version {name}: inference.domain.DomainCheck files, see docs/model-card.md",
            "model": name,
            "preprocessing_version": preprocessing,
            "served_model_sha256": extractor.served_sha256,
            "split_from": manifest.get("name", name),
            "nih_split": {"by": "patient_id", "seed": options["seed"], "held_out": options["nih_held_out"]},
            "command": "manage.py fit_domain " + shlex.join(sys.argv[2:]),
        }
        record = fitting.scope_checks_write(fitted, out, about=about)
        for kind in ("chest", "version"):
            entry = record[kind]
            shares = ", ".join(f"{k} {v['inside_share']:.1%} inside" for k, v in entry["scores"].items())
            self.stdout.write(f"{kind} check: limit {entry['limit']:.3f}, {entry['n_fitted']} fitted; {shares}")
        if "orientation" in record["version"]:
            entry = record["version"]["orientation"]
            shares = ", ".join(f"{k} {v['inside_share']:.1%} pass" for k, v in entry["scores"].items())
            self.stdout.write(f"orientation probe: limit {entry['limit']:.3f}; {shares}")
        self.stdout.write(self.style.SUCCESS(f"wrote {out} in {time.perf_counter() - started:.0f} s"))

    def _fit_own_split(self, name: str, manifest: dict, options: dict) -> None:
        """The version check on the version's own split; the chest check shared with ``--chest-from``."""
        import shutil

        from inference.domain import domain_check_load

        started = time.perf_counter()
        preprocessing = manifest["preprocessing_version"]
        try:
            own = fitting.version_split(options["data"], manifest)
        except (FileNotFoundError, ValueError) as exc:
            raise CommandError(str(exc)) from exc
        shared_dir = shipped_models_dir() / options["chest_from"]
        shared_manifest = json.loads((shared_dir / "manifest.json").read_text())
        shared_record = json.loads((shared_dir / fitting.RECORD_FILE).read_text())
        if shared_manifest["preprocessing_version"] != preprocessing:
            raise CommandError(
                f"{options['chest_from']} runs {shared_manifest['preprocessing_version']}, not {preprocessing}"
            )
        chest = domain_check_load(shared_dir / fitting.CHEST_FILE, sha256=shared_record["chest"]["sha256"])
        shared_version = domain_check_load(shared_dir / fitting.VERSION_FILE, sha256=shared_record["version"]["sha256"])
        # The other version's validation films: scored for the record and for the routing figures.
        other = fitting.reference_split(
            options["data"], validation_paths=shared_manifest["split"]["validation_paths"]
        ).kermany_validation
        extractor = self._extractor(name, manifest, options)
        samples = {
            f"{own.source}_train": own.train,
            f"{own.source}_validation": own.validation,
            "kermany_validation": other,
        }
        features = {part: extractor.pooled_files(files, progress=self.stdout.write) for part, files in samples.items()}
        fit = self._settings(options)
        orientation, turned = None, []
        if fit.orientation_films > 0:
            turned = fitting.orientation_subset(own.train, n=fit.orientation_films, seed=options["seed"])
            orientation = {"upright": extractor.pooled_files(turned)} | fitting.orientation_features(
                extractor, turned, progress=self.stdout.write
            )
        version, version_record = fitting.version_check_fit(
            features=features,
            samples=samples,
            own=own.source,
            others=("kermany_validation",),
            background=shared_version.background if fit.relative else None,
            preprocessing_version=preprocessing,
            settings=fit,
            orientation=orientation,
            orientation_samples=turned,
        )
        routing = fitting.routing_shares(
            {
                f"{own.source}_validation": (name, features[f"{own.source}_validation"]),
                "kermany_validation": (options["chest_from"], features["kermany_validation"]),
            },
            {name: (chest, version), options["chest_from"]: (chest, shared_version)},
        )
        out = options["out"] or shipped_models_dir() / name
        out.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shared_dir / fitting.CHEST_FILE, out / fitting.CHEST_FILE)
        about = {
            "what": f"scope checks of model version {name}: inference.domain.DomainCheck files, see docs/model-card.md",
            "model": name,
            "preprocessing_version": preprocessing,
            "served_model_sha256": extractor.served_sha256,
            "split_from": name,
            "chest_from": options["chest_from"],
            "nih_split": shared_record.get("nih_split"),
            "command": "manage.py fit_domain " + shlex.join(sys.argv[2:]),
        }
        record = {
            **about,
            "version": {**version_record, "sha256": fitting.domain_check_save(version, out / fitting.VERSION_FILE)},
            "chest": {**shared_record["chest"], "shared_with": options["chest_from"]},
            "routing": {
                "rule": "an image goes to the version whose verdict (inference.domain.domain_assess, chest check "
                "then version check then orientation probe) has the smallest score / limit",
                "versions": sorted([name, options["chest_from"]]),
                "sets": routing,
            },
        }
        (out / fitting.RECORD_FILE).write_text(json.dumps(record, indent=1) + "\n")
        entry = record["version"]
        shares = ", ".join(f"{k} {v['inside_share']:.1%} inside" for k, v in entry["scores"].items())
        self.stdout.write(f"version check: limit {entry['limit']:.3f}, {entry['n_fitted']} fitted; {shares}")
        if "orientation" in entry:
            shares = ", ".join(f"{k} {v['inside_share']:.1%} pass" for k, v in entry["orientation"]["scores"].items())
            self.stdout.write(f"orientation probe: limit {entry['orientation']['limit']:.3f}; {shares}")
        for set_name, shares in routing.items():
            self.stdout.write(f"routing: {set_name} {shares['to_own_share']:.1%} to {shares['belongs_to']}")
        self.stdout.write(self.style.SUCCESS(f"wrote {out} in {time.perf_counter() - started:.0f} s"))

    def _settings(self, options: dict) -> fitting.FitSettings:
        return fitting.FitSettings(
            chest_components=options["chest_components"],
            version_components=options["version_components"],
            relative=not options["absolute"],
            shrinkage=options["shrinkage"],
            power=options["power"],
            version_inside=options["version_inside"],
            chest_inside=options["chest_inside"],
            orientation_films=options["orientation_films"],
            orientation_inside=options["orientation_inside"],
        )

    def _extractor(self, name: str, manifest: dict, options: dict) -> fitting.FeatureExtractor:
        """Features through the version's prepared conversion, or one converted here when it is not prepared."""
        try:
            classifier = fitting.served_classifier(
                prepared_dir=Path(settings.PNEUMO_MODEL_DIR),
                model_sha256=manifest["rebuilt_keras_sha256"],
                preprocessing_version=manifest["preprocessing_version"],
                num_threads=options["threads"],
            )
        except FileNotFoundError:
            classifier = fitting.converted_classifier(
                shipped_models_dir() / name, cache_dir=options["cache"], num_threads=options["threads"]
            )
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        return fitting.FeatureExtractor(
            classifier,
            cache_dir=options["cache"],
            max_bytes=settings.PNEUMO_MAX_UPLOAD_BYTES,
            max_pixels=settings.PNEUMO_MAX_PIXELS,
        )

    def _version(self, name: str) -> tuple[str, str, dict]:
        """(sha256 of the version's ``.keras``, its preprocessing, the manifest holding its split)."""
        if name == PACKAGED_MODEL_NAME:
            split_manifest = shipped_models_dir() / PACKAGED_SPLIT_FROM / "manifest.json"
            return PACKAGED_MODEL_SHA256, PREPROCESSING_VERSION, json.loads(split_manifest.read_text())
        path = shipped_models_dir() / name / "manifest.json"
        if not path.is_file():
            raise CommandError(f"{path} is missing: {name} is neither a shipped version nor {PACKAGED_MODEL_NAME}")
        manifest = json.loads(path.read_text())
        return manifest["rebuilt_keras_sha256"], manifest["preprocessing_version"], manifest
