"""Benchmark upload decoding: ms per file for decode plus model input, in-process and guarded.

    .venv/bin/python bench/ingest.py [--runs 15] [--spacing 0.3]

Three DICOM files are built by resizing a packaged sample image: a 1024x1024
8-bit JPEG baseline, a 2500x2048 12-bit uncompressed, and the same 12-bit
image as lossless JPEG 2000. Each is decoded with ``decode`` (in this process)
and with ``decode_guarded`` (in a limited child process). Guarded calls are
spaced by ``--spacing`` seconds, as uploads are, so that the spare child the
previous call left behind has started; back-to-back guarded timings are shown
too. Medians over ``--runs`` calls, after warm-up.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

import argparse  # noqa: E402
import io  # noqa: E402
import os  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.encaps import encapsulate  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGBaseline8Bit, generate_uid  # noqa: E402

from cases.imaging import decode, decode_guarded, warm_up  # noqa: E402
from inference.model_package import packaged_sample_images  # noqa: E402

GOALS_MS = {"jpeg-baseline-1024": 50.0, "uncompressed-12bit-2500x2048": 50.0, "j2k-12bit-2500x2048": 600.0}
WARMUP_RUNS = 2
LIMITS = {"max_bytes": 200 * 2**20, "max_pixels": 60_000_000}


def sample_grey(rows: int, columns: int) -> np.ndarray:
    with Image.open(packaged_sample_images()[0][0]) as image:
        return np.asarray(image.convert("L").resize((columns, rows), Image.Resampling.BILINEAR))


def base_dataset(pixels: np.ndarray, bits: int) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = "1.2.840.10008.5.1.4.1.1.1"
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.Modality, ds.BodyPartExamined, ds.ViewPosition, ds.PatientAge = "CR", "CHEST", "AP", "003Y"
    ds.PatientID, ds.PatientName = "BENCH-1", "BENCH^MARK"
    ds.StudyInstanceUID, ds.SeriesInstanceUID = generate_uid(), generate_uid()
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PixelRepresentation = 1, "MONOCHROME2", 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = (8 if bits == 8 else 16), bits, bits - 1
    ds.PixelData = pixels.tobytes()
    return ds


def to_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def jpeg_baseline_dicom() -> bytes:
    pixels = sample_grey(1024, 1024)
    ds = base_dataset(pixels, 8)
    frame = io.BytesIO()
    Image.fromarray(pixels).save(frame, format="JPEG", quality=90)
    ds.PixelData = encapsulate([frame.getvalue()])
    ds.file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    return to_bytes(ds)


def twelve_bit_dicom(*, j2k: bool) -> bytes:
    grey = sample_grey(2500, 2048).astype(np.uint16)
    ds = base_dataset(grey * 16 + grey // 16, 12)
    if j2k:
        ds.compress(JPEG2000Lossless, generate_instance_uid=False)
    return to_bytes(ds)


def median_ms(call: Callable[[], object], runs: int, spacing_s: float) -> float:
    for _ in range(WARMUP_RUNS):
        call()
    samples = []
    for _ in range(runs):
        time.sleep(spacing_s)
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def decode_call(data: bytes, *, guarded: bool) -> Callable[[], object]:
    def call() -> object:
        if guarded:
            image = decode_guarded(data, filename="bench.dcm", **LIMITS)
        else:
            image = decode(data, filename="bench.dcm", **LIMITS)
        assert image.model_image is not None and image.model_image.dtype == np.uint8
        return image

    return call


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--spacing", type=float, default=0.3, help="seconds between guarded calls")
    args = parser.parse_args()
    files = {
        "jpeg-baseline-1024": jpeg_baseline_dicom(),
        "uncompressed-12bit-2500x2048": twelve_bit_dicom(j2k=False),
        "j2k-12bit-2500x2048": twelve_bit_dicom(j2k=True),
    }
    warm_up()
    print(f"cpus={os.cpu_count()} load={os.getloadavg()[0]:.2f} runs={args.runs} spacing={args.spacing}s")
    print(f"{'file':30} {'MB':>6} {'in-process':>11} {'guarded':>9} {'back-to-back':>13} {'goal':>6}")
    failed = False
    for name, data in files.items():
        runs = max(args.runs // 3, 5) if name.startswith("j2k") else args.runs
        local = median_ms(decode_call(data, guarded=False), runs, 0.0)
        guarded = median_ms(decode_call(data, guarded=True), runs, args.spacing)
        rushed = median_ms(decode_call(data, guarded=True), runs, 0.0)
        goal = GOALS_MS[name]
        failed |= max(local, guarded) > goal
        print(f"{name:30} {len(data) / 2**20:6.1f} {local:9.1f}ms {guarded:7.1f}ms {rushed:11.1f}ms {goal:5.0f}ms")
    print("all goals met" if not failed else "some goals missed (see the table; timings depend on machine load)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
