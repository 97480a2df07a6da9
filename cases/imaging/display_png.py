"""PNG renderings of decoded pixels: a windowed 8-bit picture, and a lossless 16-bit source for the viewer.

The viewer windows at full bit depth in the browser from the 16-bit source.
PNG has no signed samples, so signed data is shifted up by a value offset:

    stored_png_value = display_value + offset        (offset >= 0)

The offset is ``display_value_offset(display_pixels)``; it is also written into
the PNG as a tEXt chunk under ``VALUE_OFFSET_KEY``. A viewer applies a window
``(center, width)`` given in display values as ``(center + offset, width)``.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, PngImagePlugin

from .windowing import LINEAR, window_to_uint8

VALUE_OFFSET_KEY = "pneumo-value-offset"
_UINT16_MAX = 0xFFFF


def render_display_png(
    display_pixels: np.ndarray,
    center: float,
    width: float,
    max_size: int | None = None,
    *,
    function: str = LINEAR,
) -> bytes:
    """An 8-bit greyscale PNG of the pixels under the given window, shrunk to fit ``max_size`` if given."""
    image = Image.fromarray(window_to_uint8(display_pixels, center, width, function))
    if max_size and max(image.size) > max_size:
        image.thumbnail((max_size, max_size), Image.Resampling.LANCZOS, reducing_gap=2.0)
    return _png_bytes(image, compress_level=6)


def display_value_offset(display_pixels: np.ndarray) -> int:
    """What ``encode_display_source`` adds to every value: 0 unless the data goes below zero."""
    if display_pixels.dtype == np.uint16 or display_pixels.size == 0:
        return 0
    return max(-int(display_pixels.min()), 0)


def encode_display_source(display_pixels: np.ndarray) -> bytes:
    """A lossless 16-bit greyscale PNG of the display pixels, shifted by ``display_value_offset``.

    Values that would still exceed 65535 after the shift (only possible with
    unusual rescale slopes) are clipped.
    """
    offset = display_value_offset(display_pixels)
    info = PngImagePlugin.PngInfo()
    info.add_text(VALUE_OFFSET_KEY, str(offset))
    return _png_bytes(Image.fromarray(_as_uint16(display_pixels, offset)), compress_level=1, pnginfo=info)


def decode_display_source(png: bytes) -> np.ndarray:
    """The display values back from ``encode_display_source`` output, offset removed (int32)."""
    with Image.open(io.BytesIO(png), formats=["PNG"]) as image:
        offset = int(image.text.get(VALUE_OFFSET_KEY, "0"))
        return np.array(image).astype(np.int32) - offset


def _as_uint16(display_pixels: np.ndarray, offset: int) -> np.ndarray:
    if display_pixels.dtype == np.uint16:
        return np.ascontiguousarray(display_pixels)
    shifted = display_pixels.astype(np.int64) + offset
    return np.clip(shifted, 0, _UINT16_MAX).astype(np.uint16)


def _png_bytes(image: Image.Image, *, compress_level: int, pnginfo: PngImagePlugin.PngInfo | None = None) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG", compress_level=compress_level, pnginfo=pnginfo)
    return buffer.getvalue()
