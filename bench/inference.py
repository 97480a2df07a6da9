"""Benchmark the served LiteRT path against the Keras baseline, on the packaged sample images.

    .venv/bin/python bench/inference.py [--model PATH | --shipped models/NAME] [--runs 50]

The main process imports TensorFlow (baseline: Keras ``Model.predict`` plus a separate
GradientTape Grad-CAM) and converts the model; the served path runs in child processes
started with ``--worker`` that never import TensorFlow, so their start-up time and resident
memory are what a Celery worker would see.

Then, where ``models/xception224-int8/`` holds the int8 base (``manage.py quantize_models``), every
shipped version's float32 conversion and the int8 base with its float head are timed side by side in
one child process (``--int8-worker``), at batch 1 and 8; ``--no-int8`` skips that section.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
# This file is itself called inference.py: without this, `import inference` would find it
# (the script's folder is sys.path[0]) instead of the package.
sys.path[0] = str(REPO_ROOT)

import argparse  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

GOAL_SERVED_RATIO = 0.25
GOAL_HEATMAP_OVERHEAD_PCT = 15.0
GOAL_WORKER_FIRST_RESULT_S = 1.0
GOAL_WORKER_RSS_MB = 400.0
WARMUP_RUNS = 5
BATCH = 16
INT8_DIR = REPO_ROOT / "models" / "xception224-int8"
INT8_BATCHES = (1, 8)
GOAL_INT8_RATIO = 0.5


def rss_mb() -> dict[str, float]:
    """Current and peak resident set size of this process, from /proc (Linux)."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return {"rss_mb": fields["VmRSS"], "peak_rss_mb": fields["VmHWM"]}


def median_ms(fn: Callable[[int], object], runs: int, per: int) -> float:
    """Median over ``runs`` timed calls after warm-up, in ms per image; ``fn`` gets the run number."""
    for i in range(WARMUP_RUNS):
        fn(i)
    samples = []
    for i in range(runs):
        start = time.perf_counter()
        fn(i)
        samples.append((time.perf_counter() - start) * 1000 / per)
    return statistics.median(samples)


def paired_median_ms(
    with_heatmap: Callable[[int], object], without: Callable[[int], object], runs: int, per: int
) -> tuple[float, float]:
    """Like median_ms for two variants, interleaved run by run so that drift hits both alike."""
    timed: tuple[list[float], list[float]] = ([], [])
    for i in range(WARMUP_RUNS + runs):
        for fn, samples in zip((with_heatmap, without), timed, strict=True):
            start = time.perf_counter()
            fn(i)
            if i >= WARMUP_RUNS:
                samples.append((time.perf_counter() - start) * 1000 / per)
    return statistics.median(timed[0]), statistics.median(timed[1])


def sample_paths() -> list[Path]:
    from inference.model_package import packaged_sample_images

    return [path for path, _ in packaged_sample_images()]


# --- served path (child process: never imports TensorFlow) -------------------------------------


def worker(args: argparse.Namespace) -> None:
    import numpy as np
    from PIL import Image

    from inference.classifier import LiteRTClassifier

    paths = sample_paths()
    # The ingest hands workers a uint8 grayscale array.
    first_image = np.asarray(Image.open(paths[0]).convert("L"))
    load_start = time.perf_counter()
    (threads,) = args.threads
    classifier = LiteRTClassifier(
        args.tflite, args.head, heatmap_scale=args.scale, num_threads=threads, preprocessing=args.preprocessing
    )
    classifier.load()
    load_s = time.perf_counter() - load_start
    classifier.predict(first_image)
    first_result_s = time.time() - args.t0
    after_first = rss_mb()

    images = [np.asarray(Image.open(path).convert("L")) for path in paths]
    result = {
        "threads": threads,
        "litert_load_s": load_s,
        "first_result_s": first_result_s,
        "rss_after_first_mb": after_first["rss_mb"],
        "tensorflow_imported": any(m.split(".")[0] in ("tensorflow", "keras") for m in sys.modules),
    }
    heatmap_ms = []

    def single(i: int, heatmap: bool) -> None:
        prediction = classifier.predict(images[i % len(images)], heatmap=heatmap)
        if heatmap:
            heatmap_ms.append(prediction.heatmap_ms)

    result["b1_heatmap_ms"], result["b1_plain_ms"] = paired_median_ms(
        lambda i: single(i, True), lambda i: single(i, False), args.runs, 1
    )
    result["gradcam_ms"] = statistics.median(heatmap_ms)
    # Workers predict one image per task: this is a worker's footprint. Batch 16 needs more.
    result["peak_rss_batch1_mb"] = rss_mb()["peak_rss_mb"]
    result["b16_heatmap_ms"], result["b16_plain_ms"] = paired_median_ms(
        lambda _: classifier.predict_batch(images),
        lambda _: classifier.predict_batch(images, heatmap=False),
        args.runs,
        BATCH,
    )
    result.update(rss_mb())
    result.update(scope_check_cost(Path(args.checks), classifier, images, args.runs) if args.checks else {})
    print(json.dumps(result))


def scope_check_cost(checks_dir: Path, classifier: object, images: list, runs: int) -> dict[str, float]:
    """Milliseconds per image of the scope checks: pixel rules, and distances on the pass's pooled features."""
    from inference.domain import domain_assess, domain_check_load

    files = json.loads((checks_dir / "domain.json").read_text())
    chest, version = (
        domain_check_load(checks_dir / files[kind]["file"], sha256=files[kind]["sha256"])
        for kind in ("chest", "version")
    )
    pooled = [classifier.predict(image, heatmap=False).pooled_features for image in images]

    def assess(i: int) -> None:
        n = i % len(pooled)
        domain_assess(pooled[n], chest=chest, version=version, image=images[n])

    return {"scope_check_ms": median_ms(assess, runs, 1)}


def run_worker(
    tflite: Path, head: Path, scale: float, threads: int, runs: int, preprocessing: str, checks: Path | None
) -> dict[str, float]:
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", "--tflite", str(tflite)]
    command += ["--preprocessing", preprocessing] + (["--checks", str(checks)] if checks else [])
    command += ["--head", str(head), "--scale", str(scale), "--threads", str(threads), "--runs", str(runs)]
    command += ["--t0", repr(time.time())]
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"worker failed:\n{completed.stderr}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


# --- baseline (this process: TensorFlow) --------------------------------------------------------


def baseline(model_path: Path, out_dir: Path, runs: int) -> tuple[dict[str, float], Path, Path, float, str]:
    import functools

    import numpy as np

    from inference.classifier import HEATMAP_SCALES, PACKAGED_MODEL_HEATMAP_SCALE, PREPROCESSINGS
    from inference.classifier import preprocess as preprocess_any
    from inference.conversion import (
        build_two_output_model,
        convert_to_litert,
        gradient_tape_gradcam,
        input_size,
        load_images,
        load_keras_model,
    )
    from inference.model_package import sha256_file

    figures: dict[str, float] = {}
    start = time.perf_counter()
    import keras  # noqa: F401
    import tensorflow  # noqa: F401

    figures["tf_import_s"] = time.perf_counter() - start
    start = time.perf_counter()
    model = load_keras_model(model_path)
    figures["keras_load_s"] = time.perf_counter() - start
    # The model's input size names its preprocessing (150: the packaged NEAREST, 224: BICUBIC).
    (preprocessing,) = [p for p in PREPROCESSINGS.values() if p.size == input_size(model)]
    preprocess = functools.partial(preprocess_any, preprocessing=preprocessing)
    figures["input_size"] = preprocessing.size
    converted = convert_to_litert(model_path, out_dir)
    figures["conversion_s"] = converted.seconds

    two_output = build_two_output_model(model)
    images = load_images(sample_paths())
    arrays = [preprocess(image) for image in images]

    def predict(batch: np.ndarray) -> None:
        model.predict(batch, batch_size=len(batch), verbose=0)

    def gradcam(batch: np.ndarray) -> None:
        gradient_tape_gradcam(two_output, batch)

    # Same work as the served path: both start from a decoded image and preprocess it.
    figures["b1_predict_ms"] = median_ms(lambda i: predict(preprocess(images[i % BATCH])), runs, 1)
    figures["b1_gradcam_ms"] = median_ms(lambda i: gradcam(arrays[i % BATCH]), runs, 1)
    figures["b16_predict_ms"] = median_ms(
        lambda _: predict(np.concatenate([preprocess(image) for image in images])), runs, BATCH
    )
    batch16 = np.concatenate(arrays)
    figures["b16_gradcam_ms"] = median_ms(lambda _: gradcam(batch16), runs, BATCH)
    figures["b1_baseline_ms"] = figures["b1_predict_ms"] + figures["b1_gradcam_ms"]
    figures["b16_baseline_ms"] = figures["b16_predict_ms"] + figures["b16_gradcam_ms"]
    figures.update(rss_mb())
    scale = HEATMAP_SCALES.get(sha256_file(model_path), PACKAGED_MODEL_HEATMAP_SCALE)
    return figures, converted.tflite_path, converted.head_path, scale, preprocessing.name


# --- report -------------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "ok" if ok else "MISSED"


def report(base: dict[str, float], workers: list[dict[str, float]]) -> None:
    print(f"cpus: {os.cpu_count()}  (TensorFlow baseline uses its default thread pools)")
    print(f"TensorFlow import           {base['tf_import_s']:8.2f} s")
    print(f"Keras model load            {base['keras_load_s']:8.2f} s")
    print(f"conversion to LiteRT        {base['conversion_s']:8.2f} s")
    print(f"baseline process RSS        {base['rss_mb']:8.0f} MB (peak {base['peak_rss_mb']:.0f} MB)")
    print("\nms per image (median)           batch 1   batch 16")
    rows = [
        ("Keras predict", "predict"),
        ("GradientTape Grad-CAM", "gradcam"),
        ("baseline total", "baseline"),
    ]
    for label, key in rows:
        print(f"  {label:<28}{base[f'b1_{key}_ms']:8.1f}  {base[f'b16_{key}_ms']:8.1f}")
    for w in workers:
        name = f"LiteRT threads={w['threads']}"
        print(f"  {name} + heatmap  {w['b1_heatmap_ms']:8.1f}  {w['b16_heatmap_ms']:8.1f}")
        print(f"  {name} no heatmap {w['b1_plain_ms']:8.1f}  {w['b16_plain_ms']:8.1f}")
    for w in workers:
        ratio = w["b1_heatmap_ms"] / base["b1_baseline_ms"]
        overhead = 100 * (w["b1_heatmap_ms"] / w["b1_plain_ms"] - 1)
        overhead16 = 100 * (w["b16_heatmap_ms"] / w["b16_plain_ms"] - 1)
        print(f"\nserved worker, num_threads={w['threads']} (TensorFlow imported: {w['tensorflow_imported']})")
        print(f"  LiteRT load                 {w['litert_load_s'] * 1000:8.1f} ms")
        print(
            f"  NumPy Grad-CAM              {w['gradcam_ms']:8.3f} ms per image"
            f" ({100 * w['gradcam_ms'] / w['b1_plain_ms']:.1f} % of a batch-1 prediction)"
        )
        print(
            f"  served+heatmap / baseline   {ratio:8.3f}x  at batch 1"
            f"   goal <= {GOAL_SERVED_RATIO}x  {verdict(ratio <= GOAL_SERVED_RATIO)}"
        )
        print(
            f"  heatmap overhead            {overhead:+8.1f} %  at batch 1 ({overhead16:+.1f} % at 16)"
            f"   goal <= +{GOAL_HEATMAP_OVERHEAD_PCT:.0f}%  {verdict(overhead <= GOAL_HEATMAP_OVERHEAD_PCT)}"
        )
        fast_start = w["first_result_s"] < GOAL_WORKER_FIRST_RESULT_S
        print(
            f"  start to first result       {w['first_result_s']:8.2f} s"
            f"   goal < {GOAL_WORKER_FIRST_RESULT_S:.0f} s  {verdict(fast_start)}"
        )
        print(
            f"  RSS after first result      {w['rss_after_first_mb']:8.0f} MB,"
            f" peak serving one image at a time (as workers do) {w['peak_rss_batch1_mb']:.0f} MB"
            f"   goal < {GOAL_WORKER_RSS_MB:.0f} MB  {verdict(w['peak_rss_batch1_mb'] < GOAL_WORKER_RSS_MB)}"
        )
        print(f"  peak RSS after batches of 16 {w['peak_rss_mb']:7.0f} MB (not a worker's load)")
        if "scope_check_ms" in w:
            print(
                f"  scope checks                {w['scope_check_ms']:8.3f} ms per image (pixel rules; chest, version"
                " and orientation checks on the pooled features of the same pass)"
            )


# --- float32 vs the int8 base, per shipped version (child process: never imports TensorFlow) ----


def int8_worker(args: argparse.Namespace) -> None:
    """Forward pass (+ heatmap) of the float32 conversion and of the int8 base + NumPy head, interleaved."""
    import numpy as np
    from PIL import Image

    from inference.classifier import BICUBIC_224, LiteRTClassifier, head_logits, preprocess, raw_gradcam, scale_heatmap
    from inference.domain import pooled_features
    from inference.features_model import FeatureMapModel

    (threads,) = args.threads
    float32 = LiteRTClassifier(
        args.tflite, args.head, heatmap_scale=args.scale, num_threads=threads, preprocessing=BICUBIC_224
    ).load()
    float32.predict(np.zeros((224, 224), np.uint8))
    result: dict[str, float] = {"threads": threads, "rss_float32_mb": rss_mb()["rss_mb"]}
    int8 = FeatureMapModel(args.int8, num_threads=threads).load()
    head, scale = float32.head, args.scale
    int8.run(preprocess(np.zeros((224, 224), np.uint8), BICUBIC_224))
    result["rss_both_mb"] = rss_mb()["rss_mb"]
    arrays = [preprocess(np.asarray(Image.open(p).convert("L")), BICUBIC_224) for p in sample_paths()]

    def heatmaps(maps: np.ndarray) -> list:
        return [scale_heatmap(raw_gradcam(fm, head), scale) for fm in maps]

    def f32(batch: np.ndarray, heatmap: bool) -> None:
        maps, _ = float32.run(batch)
        if heatmap:
            heatmaps(maps)

    def q8(batch: np.ndarray, heatmap: bool) -> None:
        maps = int8.run(batch)
        head_logits(pooled_features(maps), head)
        if heatmap:
            heatmaps(maps)

    for n in INT8_BATCHES:
        batches = [np.concatenate(arrays[i : i + n]) for i in range(0, len(arrays) - n + 1, n)]
        for name, fn in (("float32", f32), ("int8", q8)):
            heat, plain = paired_median_ms(
                lambda i, fn=fn, batches=batches: fn(batches[i % len(batches)], True),
                lambda i, fn=fn, batches=batches: fn(batches[i % len(batches)], False),
                args.runs,
                n,
            )
            result[f"{name}_b{n}_plain_ms"], result[f"{name}_b{n}_heatmap_ms"] = plain, heat
    result["tensorflow_imported"] = any(m.split(".")[0] in ("tensorflow", "keras") for m in sys.modules)
    print(json.dumps(result))


def int8_versions(out_dir: Path, threads: list[int], runs: int) -> list[tuple[str, dict, list[dict]]]:
    """(version, its int8 gate record, one worker result per thread count) for every shipped version."""
    from inference.conversion import convert_to_litert
    from inference.shipped_model import manifest_read

    manifest = json.loads((INT8_DIR / "int8-manifest.json").read_text())
    rows = []
    for model_dir in sorted(p.parent for p in (REPO_ROOT / "models").glob("*/manifest.json")):
        if model_dir == INT8_DIR:
            continue
        shipped = manifest_read(model_dir)
        gates = manifest["gates"].get(shipped["name"], {"applicable": False, "reason": "not measured"})
        if not gates["applicable"]:
            rows.append((shipped["name"], gates, []))
            continue
        keras_path = rebuild_shipped(model_dir, out_dir / shipped["name"])
        converted = convert_to_litert(keras_path, out_dir / shipped["name"])
        scale = shipped["heatmap_scale"]["scale"]
        workers = [run_int8_worker(converted.tflite_path, converted.head_path, scale, t, runs) for t in threads]
        rows.append((shipped["name"], gates, workers))
    return rows


def run_int8_worker(tflite: Path, head: Path, scale: float, threads: int, runs: int) -> dict:
    command = [sys.executable, str(Path(__file__).resolve()), "--int8-worker", "--tflite", str(tflite)]
    command += ["--int8", str(INT8_DIR / "base-int8.tflite"), "--head", str(head), "--scale", str(scale)]
    command += ["--threads", str(threads), "--runs", str(runs)]
    completed = subprocess.run(command, cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"int8 worker failed:\n{completed.stderr}")
    return json.loads(completed.stdout.strip().splitlines()[-1])


def report_int8(rows: list[tuple[str, dict, list[dict]]]) -> None:
    print("\nfloat32 conversion vs int8 base + float NumPy head (ms per image, median; forward = model + logits)")
    for name, gates, workers in rows:
        if not workers:
            print(f"  {name}: int8 not applicable ({gates.get('reason', '')})")
            continue
        served = "served" if gates["passed"] else "NOT served: gates failed, float32 is served"
        print(
            f"  {name}: int8 {served} (AUC diff {gates['validation_auc_diff']:.4f},"
            f" parity prob {gates['parity_probability_max_diff']:.4f},"
            f" heatmap cell {gates['parity_heatmap_cell_max_diff']:.4f})"
        )
        for w in workers:
            print(f"    threads={w['threads']}          float32    int8   ratio")
            for n in INT8_BATCHES:
                for kind, label in (("plain", "forward"), ("heatmap", "+ heatmap")):
                    f, q = w[f"float32_b{n}_{kind}_ms"], w[f"int8_b{n}_{kind}_ms"]
                    goal = f"   goal <= {GOAL_INT8_RATIO}x {verdict(q / f <= GOAL_INT8_RATIO)}" if n == 1 else ""
                    print(f"      b{n} {label:<10} {f:8.1f} {q:7.1f} {q / f:6.2f}x{goal}")
            print(
                f"      worker RSS: float32 only {w['rss_float32_mb']:.0f} MB, float32 + int8 loaded"
                f" {w['rss_both_mb']:.0f} MB (TensorFlow imported: {w['tensorflow_imported']})"
            )


def rebuild_shipped(model_dir: Path, out_dir: Path) -> Path:
    from inference import shipped_model
    from inference.model_package import packaged_model_path

    manifest = shipped_model.shipped_verify(model_dir, packaged_model_path())
    weights = model_dir / manifest["weights"]["file"]
    print(f"model: {manifest['name']} ({manifest['preprocessing_version']}, {manifest['input_size']} px)")
    return shipped_model.model_rebuild(
        packaged_model_path(), weights, out_dir / "shipped.keras", manifest["input_size"]
    )


def scope_checks_dir(shipped: Path | None) -> Path | None:
    """The shipped version's scope checks, or the packaged model's (models/pneumonia-xception-pkg-0.3.0)."""
    folder = shipped if shipped is not None else REPO_ROOT / "models" / "pneumonia-xception-pkg-0.3.0"
    return folder if (folder / "domain.json").is_file() else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, help="the .keras file (default: the packaged model)")
    parser.add_argument(
        "--shipped", type=Path, help="a shipped trained version (models/NAME), rebuilt from the packaged base"
    )
    parser.add_argument("--runs", type=int, default=50, help="timed runs per figure, after warm-up")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="LiteRT num_threads to try")
    parser.add_argument("--no-int8", action="store_true", help="skip the float32 vs int8 section")
    parser.add_argument("--int8-runs", type=int, default=20, help="timed runs per figure in the int8 section")
    parser.add_argument("--int8-only", action="store_true", help="only the float32 vs int8 section")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--int8-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--int8", help=argparse.SUPPRESS)
    parser.add_argument("--tflite", help=argparse.SUPPRESS)
    parser.add_argument("--head", help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--preprocessing", help=argparse.SUPPRESS)
    parser.add_argument("--checks", help=argparse.SUPPRESS)
    parser.add_argument("--t0", type=float, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    if args.int8_worker:
        int8_worker(args)
        return
    if args.int8_only:
        with tempfile.TemporaryDirectory(prefix="pneumo-bench-") as out_dir:
            report_int8(int8_versions(Path(out_dir), args.threads, args.int8_runs))
        return
    if args.model is None:
        from inference.model_package import packaged_model_path

        args.model = packaged_model_path()
    with tempfile.TemporaryDirectory(prefix="pneumo-bench-") as out_dir:
        if args.shipped is not None:
            args.model = rebuild_shipped(args.shipped, Path(out_dir))
        base, tflite, head, scale, preprocessing = baseline(args.model, Path(out_dir), args.runs)
        # Workers run after the baseline, one at a time, so they never compete for the CPUs.
        checks = scope_checks_dir(args.shipped)
        workers = [
            run_worker(tflite, head, scale, threads, args.runs, preprocessing, checks) for threads in args.threads
        ]
        with_int8 = not args.no_int8 and (INT8_DIR / "int8-manifest.json").is_file()
        int8_rows = int8_versions(Path(out_dir), args.threads, args.int8_runs) if with_int8 else []
    report(base, workers)
    if int8_rows:
        report_int8(int8_rows)


if __name__ == "__main__":
    main()
