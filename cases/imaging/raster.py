"""Decode PNG and JPEG uploads with Pillow, refusing bombs and truncated files.

Pillow is told which single format to expect (the one sniffed from the bytes),
so a file cannot reach any other of its many decoders. Its decompression-bomb
limit is set from our pixel budget and its warning turned into a refusal, and
truncated images are never accepted, whatever another module set globally.

Those Pillow settings and the warning filter are process-global and restored
afterwards: a guarded child owns them outright; threads decoding in-process
share them.
"""

from __future__ import annotations

import io
import struct
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Literal

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from .codestreams import codestream_size, png_size
from .errors import CorruptImage, DecodeOutOfMemory, TooLarge, Truncated
from .types import DecodedImage, ImageMetadata
from .windowing import full_range_window, identity_window, to_display_dtype, window_to_uint8

RasterFormat = Literal["png", "jpeg"]
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def decode_raster(data: bytes, fmt: RasterFormat, *, max_pixels: int) -> DecodedImage:
    with _pillow_limits(max_pixels):
        image = _open(data, fmt, max_pixels)
        _load(image, fmt)
        image = _upright(image)
    pixels, bits = grayscale_pixels(image)
    return _decoded(fmt, pixels, bits)


@contextmanager
def _pillow_limits(max_pixels: int) -> Iterator[None]:
    saved = Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES
    Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = max_pixels, False
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    finally:
        Image.MAX_IMAGE_PIXELS, ImageFile.LOAD_TRUNCATED_IMAGES = saved


def _open(data: bytes, fmt: RasterFormat, max_pixels: int) -> Image.Image:
    try:
        image = Image.open(io.BytesIO(data), formats=[fmt.upper()])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        # Pillow's message is for developers; ours names the dimensions and the limit.
        raise _too_large(_header_size(data) or (0, 0), max_pixels) from exc
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise CorruptImage(f"The {fmt.upper()} file is damaged and could not be read") from exc
    width, height = image.size
    if width * height > max_pixels:
        raise _too_large((height, width), max_pixels)
    return image


def _header_size(data: bytes) -> tuple[int, int] | None:
    return png_size(data) or codestream_size(data)


def _too_large(size: tuple[int, int], max_pixels: int) -> TooLarge:
    dimensions = f" {size[1]}x{size[0]}" if all(size) else ""
    return TooLarge(f"Image dimensions{dimensions} exceed the limit of {max_pixels / 1e6:g} megapixels")


def _load(image: Image.Image, fmt: RasterFormat) -> None:
    try:
        image.load()
    except MemoryError as exc:
        raise DecodeOutOfMemory("The image is too large to decode within the memory limit") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        if "truncated" in str(exc).lower() or isinstance(exc, EOFError):
            raise Truncated(f"The {fmt.upper()} file is truncated (incomplete upload or copy?)") from exc
        raise CorruptImage(f"The {fmt.upper()} file is damaged and could not be decoded") from exc


def _upright(image: Image.Image) -> Image.Image:
    # A damaged EXIF block should not cost a good image: without a readable orientation, keep it as stored.
    try:
        return ImageOps.exif_transpose(image)
    except (SyntaxError, ValueError, OSError, KeyError, TypeError, struct.error):
        return image


def grayscale_pixels(image: Image.Image) -> tuple[np.ndarray, int]:
    """Greyscale pixels and their bit depth; 16-bit PNGs keep all 16 bits."""
    if image.mode in _SIXTEEN_BIT_MODES:
        return to_display_dtype(np.array(image)), 16
    if image.mode != "L":
        image = image.convert("L")
    return np.array(image), 8


def _decoded(fmt: RasterFormat, pixels: np.ndarray, bits: int) -> DecodedImage:
    # 8-bit images go to the model as they are (that is what it was trained on); 16-bit ones are stretched.
    center, width = identity_window(8) if bits == 8 else full_range_window(pixels)
    model = pixels if bits == 8 else window_to_uint8(pixels, center, width)
    meta = ImageMetadata(
        kind=fmt,
        rows=pixels.shape[0],
        columns=pixels.shape[1],
        bits_allocated=bits,
        bits_stored=bits,
        photometric_interpretation="MONOCHROME2",
        window_center=center,
        window_width=width,
        window_source="full_range",
        voi_lut_function="LINEAR",
    )
    return DecodedImage(fmt, meta, model, to_display_dtype(pixels), (center, width))
