"""Judge the shipped scope checks: outcome shares on held-out films, adults, made-up and transformed images.

    .venv/bin/python bench/domain.py --data ../shared/data [--films 12] [--json var/domain-bench.json]

For each version with a ``models/<name>/domain.json``: the pooled features come from the
prepared LiteRT conversion the worker serves (``prepare_models`` first), from file bytes
decoded by the upload decoder; they are cached under ``var/domain-cache/`` with those of
``fit_domain``. Rows: the version's validation split (paediatric), the held-out NIH patients,
all of nih-adult-512 (70 % of it fitted the chest check), synthetic images that are not chest
X-rays, held-out chest films rotated, flipped, cropped, inverted and downscaled, and 200
paediatric validation films turned as the orientation probe's training films were (that probe
saw training films only). The synthetic and transformed images were never used for any choice.
Each image goes through ``domain_assess`` with its model image, so the pixel rules (blank,
noise, text) count as in the worker. Last, the cost of each check.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path[0] = str(REPO_ROOT)

import argparse  # noqa: E402
import collections  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

from inference import domain_fitting as fitting  # noqa: E402
from inference.domain import DOMAINS, domain_assess, domain_check_load, image_not_chest_by_pixels  # noqa: E402

MAX_BYTES, MAX_PIXELS = 200 * 1024 * 1024, 60_000_000  # the settings' defaults


def shares(verdicts: list[str]) -> dict[str, float]:
    counts = collections.Counter(verdicts)
    return {domain: counts[domain] / max(len(verdicts), 1) for domain in DOMAINS}


def held_out_films(split: fitting.ReferenceSplit, n: int, seed: int) -> list[tuple[str, bytes]]:
    rng = np.random.default_rng(seed)
    films = []
    for source in (split.kermany_validation, split.nih_validation):
        for index in sorted(rng.choice(len(source), size=min(n, len(source)), replace=False)):
            films.append((source[index].group, source[index].path.read_bytes()))
    return films


def check_cost_us(score, items, repeats: int = 2000) -> float:
    started = time.perf_counter()
    for i in range(repeats):
        score(items[i % len(items)])
    return (time.perf_counter() - started) / repeats * 1e6


def bench_version(model_dir: Path, args: argparse.Namespace) -> dict:
    record = json.loads((model_dir / fitting.RECORD_FILE).read_text())
    chest = domain_check_load(model_dir / record["chest"]["file"], sha256=record["chest"]["sha256"])
    version = domain_check_load(model_dir / record["version"]["file"], sha256=record["version"]["sha256"])
    classifier = fitting.served_classifier_for_record(
        prepared_dir=args.prepared, record=record, num_threads=args.threads
    )
    extractor = fitting.FeatureExtractor(classifier, cache_dir=args.cache, max_bytes=MAX_BYTES, max_pixels=MAX_PIXELS)
    split_manifest = json.loads((REPO_ROOT / "models" / record["split_from"] / "manifest.json").read_text())
    nih = record["nih_split"]
    split = fitting.reference_split(
        args.data,
        validation_paths=split_manifest["split"]["validation_paths"],
        nih_held_out=nih["held_out"],
        seed=nih["seed"],
    )

    def files_of(samples: list[fitting.Sample]) -> list[tuple[str, bytes]]:
        extractor.pooled_files(samples)  # checks each file against its manifest's sha256
        return [(s.path.name, s.path.read_bytes()) for s in samples]

    by_category: dict[str, list[tuple[str, bytes]]] = {
        "paediatric validation (kermany, the version's split)": files_of(split.kermany_validation),
        "adult held-out patients (nih, 30 %)": files_of(split.nih_validation),
        "adult, all of nih-adult-512 (70 % fitted the chest check)": files_of(
            fitting.nih_samples(args.data / "nih-adult-512")
        ),
    }
    for probe in fitting.synthetic_probes(seed=args.seed):
        by_category.setdefault(f"synthetic: {probe.category}", []).append((probe.name + ".png", probe.png))
    for probe in fitting.transformed_probes(held_out_films(split, args.films, args.seed)):
        by_category.setdefault(f"chest film {probe.category}", []).append((probe.name + ".png", probe.png))
    turned = fitting.orientation_subset(split.kermany_validation, n=args.turned_films, seed=args.seed)
    for probe in fitting.transformed_probes(
        [(s.path.name, s.path.read_bytes()) for s in turned], list(fitting.ORIENTATION_TRANSFORMS)
    ):
        by_category.setdefault(f"paediatric validation film {probe.category}", []).append(
            (probe.name + ".png", probe.png)
        )
    sets = {category: extractor.pooled_bytes(files) for category, files in by_category.items()}
    images = {
        category: [extractor.model_image(data, name) for name, data in files] for category, files in by_category.items()
    }
    rows = {}
    scored = {}
    for name, pooled in sets.items():
        verdicts = [
            domain_assess(p, chest=chest, version=version, image=image)
            for p, image in zip(pooled, images[name], strict=True)
        ]
        rows[name] = {"n": len(pooled), **shares([v.domain for v in verdicts])}
        scored[name] = {
            "chest_score_min": float(chest.scores(pooled).min()),
            "chest_score_median": float(np.median(chest.scores(pooled))),
        }
    reference = sets["paediatric validation (kermany, the version's split)"]
    films = images["paediatric validation (kermany, the version's split)"]
    cost = {
        "chest_check_us": check_cost_us(chest.score, reference),
        "version_check_us": check_cost_us(version.score, reference),
        "orientation_probe_us": check_cost_us(version.orientation_score, reference)
        if version.checks_orientation
        else None,
        "pixel_rules_us": check_cost_us(image_not_chest_by_pixels, films, repeats=500),
        "chest_file_bytes": (model_dir / record["chest"]["file"]).stat().st_size,
        "version_file_bytes": (model_dir / record["version"]["file"]).stat().st_size,
    }
    return {
        "model": record["model"],
        "limits": {"chest": chest.limit, "version": version.limit, "orientation": version.orientation_limit},
        "rows": rows,
        "scores": scored,
        "cost": cost,
    }


def print_table(result: dict) -> None:
    print(
        f"\n## {result['model']}  (chest limit {result['limits']['chest']:.2f}, "
        f"version limit {result['limits']['version']:.2f}, orientation limit {result['limits']['orientation']:.2f})"
    )
    print("| images | n | in_domain | outside_domain | not_chest_xray | chest score min / median |")
    print("|---|---|---|---|---|---|")
    for name, row in result["rows"].items():
        score = result["scores"][name]
        print(
            f"| {name} | {row['n']} | {row['in_domain']:.1%} | {row['outside_domain']:.1%} | "
            f"{row['not_chest_xray']:.1%} | {score['chest_score_min']:.1f} / {score['chest_score_median']:.1f} |"
        )
    cost = result["cost"]
    orientation = "none" if cost["orientation_probe_us"] is None else f"{cost['orientation_probe_us']:.0f} us"
    print(
        f"cost per image: chest check {cost['chest_check_us']:.0f} us, "
        f"version check {cost['version_check_us']:.0f} us, orientation probe {orientation}, "
        f"pixel rules {cost['pixel_rules_us']:.0f} us (on the decoded films); "
        f"files {cost['chest_file_bytes'] / 1e6:.2f} MB and {cost['version_file_bytes'] / 1e6:.2f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--models", type=Path, default=REPO_ROOT / "models")
    parser.add_argument("--prepared", type=Path, default=REPO_ROOT / "var" / "models", help="PNEUMO_MODEL_DIR")
    parser.add_argument("--cache", type=Path, default=REPO_ROOT / "var" / "domain-cache")
    parser.add_argument("--films", type=int, default=12, help="held-out films per source to transform")
    parser.add_argument(
        "--turned-films", type=int, default=200, help="paediatric validation films turned as the orientation probe's"
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    results = []
    for path in sorted(args.models.glob(f"*/{fitting.RECORD_FILE}")):
        record = json.loads(path.read_text())
        if record.get("chest_from"):
            # This bench judges paediatric versions on held-out NIH adults; an adult version's own
            # figures (its validation, the children's films, the routing shares) are in its domain.json.
            print(f"{path.parent.name}: skipped (an adult version: see its {fitting.RECORD_FILE})")
            continue
        results.append(bench_version(path.parent, args))
    for result in results:
        print_table(result)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
