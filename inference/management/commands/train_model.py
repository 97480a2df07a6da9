"""Train a calibrated pneumonia model version on a labelled folder and write its shipped artifacts."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from inference.classifier import BICUBIC_224, PREPROCESSINGS
from inference.training import POPULATIONS


def age_range(value: str) -> tuple[float, float]:
    low, sep, high = value.partition("-")
    try:
        ages = (float(low), float(high))
    except ValueError:
        ages = None
    if not sep or ages is None or not 0 <= ages[0] <= ages[1]:
        raise CommandError(f"--ages wants MIN-MAX in years (such as 18-85), not {value!r}")
    return ages


def view_list(value: str) -> tuple[str, ...]:
    views = tuple(v.strip().upper() for v in value.split(",") if v.strip())
    if not views or any(v not in ("AP", "PA") for v in views):
        raise CommandError(f"--views wants a comma-separated list of AP and PA, not {value!r}")
    return views


class Command(BaseCommand):
    help = (
        "Train head (and block 14) on DATA_DIR (NORMAL/, PNEUMONIA/; split by patient_id where its manifest.csv "
        "has one); write weights.npz + manifest.json to --out."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("data_dir", type=Path)
        parser.add_argument("--out", type=Path, required=True)
        parser.add_argument("--name", default="pneumo-xception224-cal-v2")
        parser.add_argument("--seed", type=int, default=1)
        parser.add_argument("--val-fraction", type=float, default=0.2)
        parser.add_argument("--epochs", type=int, default=40, help="head-only epochs (early stopping)")
        parser.add_argument("--fine-tune-epochs", type=int, default=3, help="block 14 epochs; 0 skips fine-tuning")
        parser.add_argument("--augment", type=int, default=2, help="augmented copies per training image")
        parser.add_argument("--limit", type=int, default=None, help="images per class (smoke tests)")
        parser.add_argument("--heatmap-limit", type=int, default=400)
        parser.add_argument(
            "--preprocessing",
            default=BICUBIC_224.name,
            choices=sorted(PREPROCESSINGS),
            help="input pipeline (a 224 px one rebuilds the packaged base for 224 px input)",
        )
        parser.add_argument(
            "--split-by-image",
            action="store_true",
            help="split images at random instead of keeping each patient's images on one side",
        )
        parser.add_argument("--population", choices=POPULATIONS, default="paediatric")
        parser.add_argument(
            "--ages", default="1-5", help="intended ages MIN-MAX in years; filters a manifest that has ages"
        )
        parser.add_argument("--views", default="AP", help="intended views, such as AP,PA; filters a manifest's views")
        parser.add_argument(
            "--target-sensitivity", type=float, default=0.95, help="the threshold keeps at least this sensitivity"
        )
        parser.add_argument(
            "--cache", type=Path, default=Path(settings.BASE_DIR) / "var" / "train-cache", help="activation cache"
        )

    def handle(self, *args, **options) -> None:
        from inference import training
        from inference.model_package import packaged_model_path

        config = training.TrainConfig(
            data_dir=options["data_dir"].resolve(),
            base_path=packaged_model_path(),
            seed=options["seed"],
            val_fraction=options["val_fraction"],
            epochs=options["epochs"],
            fine_tune_epochs=options["fine_tune_epochs"],
            augment=options["augment"],
            limit=options["limit"],
            cache_dir=options["cache"],
            preprocessing=options["preprocessing"],
            by_patient=not options["split_by_image"],
            population=options["population"],
            ages=age_range(options["ages"]),
            views=view_list(options["views"]),
            target_sensitivity=options["target_sensitivity"],
        )
        log = self.stdout.write
        result = training.train(config, log=log)
        manifest = training.artifacts_write(
            config, result, options["out"], name=options["name"], heatmap_limit=options["heatmap_limit"], log=log
        )
        training.reliability_plot(result, options["out"] / "reliability.png")
        self.stdout.write(
            self.style.SUCCESS(f"wrote {options['out']} ({manifest['weights']['bytes']} bytes of weights)")
        )
