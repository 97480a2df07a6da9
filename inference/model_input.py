"""What the model is fed: the 8-bit image, from the grid kept at ingest or from the original decoded again.

Ingest reduces each upload to the active model version's input grid and keeps it
as a small PNG (about 15 kB), so that the worker need not decode the original
again; ``preprocess`` of the grid equals ``preprocess`` of the original (see
``classifier.reduce_to_input_grid``). A grid made for another preprocessing is
ignored and the original decoded instead. No Django here: callers pass the
stored bytes and the limits from the settings.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from inference.classifier import PREPROCESSING_VERSION, PREPROCESSINGS, reduce_to_input_grid


@dataclass(frozen=True)
class DecodeLimits:
    max_bytes: int
    max_pixels: int
    decode_threads: int = 1


@dataclass(frozen=True)
class InputGrid:
    png: bytes
    preprocessing_version: str


def input_grid_make(model_image: np.ndarray | None, preprocessing_version: str | None) -> InputGrid | None:
    """The input grid of ``preprocessing_version`` (the packaged model's when None) as a PNG.

    None when the image has no frame for the model, or for a preprocessing this
    code does not know: the upload is still stored, and the worker decodes the
    original (and reports the model's problem on the prediction).
    """
    preprocessing = PREPROCESSINGS.get(preprocessing_version or PREPROCESSING_VERSION)
    if model_image is None or preprocessing is None:
        return None
    buffer = io.BytesIO()
    # Level 1: a 224 px grid in about 1 ms instead of 5 at the default level, 3 kB larger; lossless either way.
    Image.fromarray(reduce_to_input_grid(model_image, preprocessing)).save(buffer, format="PNG", compress_level=1)
    return InputGrid(buffer.getvalue(), preprocessing.name)


def original_model_image(data: bytes, *, filename: str, limits: DecodeLimits) -> np.ndarray:
    """The 8-bit image the model reads from an original file; a ``DecodeError`` when it has none."""
    # Imported here: the decoders (pydicom and its plugins) cost a new worker a
    # quarter of a second before its first result, and the kept grid needs none.
    from cases.imaging import DecodeError, decode

    decoded = decode(
        data,
        filename=filename,
        max_bytes=limits.max_bytes,
        max_pixels=limits.max_pixels,
        decode_threads=limits.decode_threads,
    )
    if decoded.model_image is None:
        raise DecodeError("The image has no single frame the AI can read")
    return decoded.model_image


def model_image_load(
    *,
    grid: InputGrid | None,
    preprocessing_version: str,
    read_original: Callable[[], bytes],
    filename: str,
    limits: DecodeLimits,
) -> np.ndarray:
    """The model's 8-bit input for ``preprocessing_version``: the kept grid when it was made for it."""
    if grid is not None and grid.png and grid.preprocessing_version == preprocessing_version:
        with Image.open(io.BytesIO(grid.png)) as picture:
            return np.asarray(picture)
    return original_model_image(read_original(), filename=filename, limits=limits)


# What training and conversion read: the data sets' JPEG and PNG files, and a de-identified export's DICOM files.
TRAINING_SUFFIXES = (".jpeg", ".jpg", ".png", ".dcm")


def training_image_open(path: str | os.PathLike[str], *, limits: DecodeLimits | None = None) -> Image.Image:
    """A training or evaluation file as a loaded Pillow image: JPEG and PNG as Pillow reads them, DICOM as the
    worker reads it (its 8-bit model image), so that a site's own export trains as it would be served."""
    data = Path(path).read_bytes()
    from cases.imaging.sniff import is_dicom_part10

    if not is_dicom_part10(data[:132]) and Path(path).suffix.lower() != ".dcm":
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return image
    limits = limits or DecodeLimits(max_bytes=len(data) + 1, max_pixels=60_000_000)
    return Image.fromarray(original_model_image(data, filename=Path(path).name, limits=limits))
