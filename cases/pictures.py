"""Pictures of stored images and heatmaps, for the viewer, the report and the API.

No access checks here: callers fetch the image or prediction through a
selector first. Stored files were decoded once, guarded, at upload, so they
are decoded again in-process.

The heatmap colour map lives here only: ``heatmap_grid`` hands it to the
browser, so the overlay the viewer draws and the PNG the report prints agree.
"""

from __future__ import annotations

import io
import zlib

import numpy as np
from django.conf import settings
from django.core.cache import cache
from django.core.files.storage import default_storage
from PIL import Image as PILImage

from cases.imaging import DecodedImage, DecodeError, decode, display_value_offset, render_display_png
from cases.models import Image
from cases.retention import retention_notice
from inference.models import Prediction

# (position in [0, 1], RGB): dark blue through cyan and yellow to red, readable over grey.
HEATMAP_STOPS: tuple[tuple[float, tuple[int, int, int]], ...] = (
    (0.00, (20, 30, 140)),
    (0.25, (0, 120, 255)),
    (0.50, (0, 225, 210)),
    (0.70, (250, 230, 0)),
    (0.85, (255, 130, 0)),
    (1.00, (230, 20, 20)),
)
# Weak activations fade out so that the overlay never hides anatomy that the model ignored.
HEATMAP_ALPHA = {"start": 0.12, "full": 0.55, "max": 0.85}
HEATMAP_SCALE_NOTE = (
    "Grad-CAM activation on the model version's fixed scale (1 = the strongest activation measured on its "
    "training images). It shows where the model looked, not where pneumonia is, and is not a probability."
)
DEFAULT_OVERLAY_SIZE = 512
MAX_OVERLAY_SIZE = 2048
MAX_RENDER_SIZE = 4096
# Renders are cached when small (thumbnails, report pictures); full-size pixels are not.
CACHE_MAX_BYTES = 2 * 2**20
CACHE_SECONDS = 3600


class RenderUnavailable(Exception):
    """Nothing can be drawn: the file is missing or unreadable, multi-frame, or there is no heatmap."""


# --- Images ----------------------------------------------------------------------------


def _decoded(image: Image) -> DecodedImage:
    if notice := retention_notice(image):
        raise RenderUnavailable(notice)
    try:
        with default_storage.open(image.file.name, "rb") as handle:
            data = handle.read()
    except (FileNotFoundError, OSError) as exc:
        raise RenderUnavailable("The stored file is missing.") from exc
    try:
        decoded = decode(
            data,
            filename=image.original_filename or image.file.name,
            max_bytes=settings.PNEUMO_MAX_UPLOAD_BYTES,
            max_pixels=settings.PNEUMO_MAX_PIXELS,
            decode_threads=settings.PNEUMO_DECODE_THREADS,
        )
    except DecodeError as exc:
        raise RenderUnavailable(str(exc)) from exc
    if decoded.display_pixels is None:
        raise RenderUnavailable("Multi-frame images cannot be displayed.")
    return decoded


def _default_window(decoded: DecodedImage) -> tuple[float, float]:
    if decoded.default_window:
        return decoded.default_window
    pixels = decoded.display_pixels
    low, high = float(pixels.min()), float(pixels.max())
    return (low + high + 1) / 2, max(high - low + 1, 1.0)


def image_source_pixels(image: Image) -> tuple[bytes, dict]:
    """The display pixels as raw little-endian uint16, for a viewer that windows by itself.

    Browsers reduce 16-bit PNGs to 8 bits when they draw them, so the viewer
    gets the values raw. ``meta["offset"]`` was added to every value (signed
    data); windows in ``meta`` are in display values, so the viewer adds the
    offset before applying them.
    """
    decoded = _decoded(image)
    pixels = decoded.display_pixels
    offset = display_value_offset(pixels)
    shifted = pixels if pixels.dtype == np.uint16 else np.clip(pixels.astype(np.int64) + offset, 0, 0xFFFF)
    raw = np.ascontiguousarray(shifted, dtype="<u2")
    center, width = _default_window(decoded)
    meta = {
        "width": int(raw.shape[1]),
        "height": int(raw.shape[0]),
        "dtype": "uint16le",
        "offset": offset,
        "min": int(raw.min()),
        "max": int(raw.max()),
        "window_center": float(center),
        "window_width": float(width),
        "bits_stored": int(decoded.metadata.bits_stored),
        "photometric_interpretation": decoded.metadata.photometric_interpretation or "",
    }
    return raw.tobytes(), meta


def _render_key(image: Image, *parts: object) -> str:
    # The pk keeps two rows that share a file digest apart; the digest catches a replaced file.
    return "pneumo:render:" + ":".join(str(p) for p in (image.pk, image.sha256, *parts))


def render_image_png(
    image: Image, *, max_size: int | None = None, center: float | None = None, width: float | None = None
) -> bytes:
    """An 8-bit greyscale PNG under the given window (default: the image's own), shrunk to ``max_size``."""
    if max_size is not None:
        max_size = int(min(max(max_size, 16), MAX_RENDER_SIZE))
    key = _render_key(image, "png", max_size, center, width)
    cached = cache.get(key)
    if cached is not None:
        return cached
    decoded = _decoded(image)
    default_center, default_width = _default_window(decoded)
    center = default_center if center is None else center
    width = default_width if width is None or width < 1 else width
    png = render_display_png(decoded.display_pixels, center, width, max_size)
    if len(png) <= CACHE_MAX_BYTES:
        cache.set(key, png, CACHE_SECONDS)
    return png


# --- Heatmaps ---------------------------------------------------------------------------


def _grid(prediction: Prediction) -> np.ndarray:
    rows = prediction.heatmap
    if not rows or not isinstance(rows, list) or not all(isinstance(r, list) and r for r in rows):
        raise RenderUnavailable("This result has no heatmap.")
    if len({len(r) for r in rows}) != 1:
        raise RenderUnavailable("The stored heatmap is not a rectangular grid.")
    grid = np.asarray(rows, dtype=np.float64)
    return np.clip(np.nan_to_num(grid, nan=0.0), 0.0, 1.0)


def heatmap_grid(prediction: Prediction) -> dict:
    """The heatmap as data, with the colour map and how to upscale it, for a client that draws it."""
    grid = _grid(prediction)
    version = prediction.model_version
    return {
        "prediction_id": prediction.pk,
        "image_id": prediction.image_id,
        "rows": int(grid.shape[0]),
        "columns": int(grid.shape[1]),
        "values": [[round(float(v), 4) for v in row] for row in grid],
        "min": round(float(grid.min()), 4),
        "max": round(float(grid.max()), 4),
        "interpolation": "bilinear between cell centres; the grid spans the whole image",
        "scale_note": HEATMAP_SCALE_NOTE,
        "heatmap_scale": version.heatmap_scale,
        "model_version": str(version),
        "colour_map": {"stops": [[p, list(rgb)] for p, rgb in HEATMAP_STOPS], "alpha": HEATMAP_ALPHA},
    }


def upscale_bilinear(grid: np.ndarray, height: int, width: int) -> np.ndarray:
    """Sample ``grid`` at every output pixel, cells being centred (as Grad-CAM's feature map is)."""
    rows, cols = grid.shape
    y = np.clip((np.arange(height) + 0.5) * rows / height - 0.5, 0, rows - 1)
    x = np.clip((np.arange(width) + 0.5) * cols / width - 0.5, 0, cols - 1)
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    y1, x1 = np.minimum(y0 + 1, rows - 1), np.minimum(x0 + 1, cols - 1)
    wy, wx = (y - y0)[:, None], (x - x0)[None, :]
    top = grid[y0][:, x0] * (1 - wx) + grid[y0][:, x1] * wx
    bottom = grid[y1][:, x0] * (1 - wx) + grid[y1][:, x1] * wx
    return top * (1 - wy) + bottom * wy


def heatmap_colours(values: np.ndarray) -> np.ndarray:
    """RGBA (uint8) for values in [0, 1], through ``HEATMAP_STOPS`` and ``HEATMAP_ALPHA``."""
    positions = [p for p, _ in HEATMAP_STOPS]
    rgb = [np.interp(values, positions, [c[i] for _, c in HEATMAP_STOPS]) for i in range(3)]
    a = HEATMAP_ALPHA
    alpha = np.clip((values - a["start"]) / (a["full"] - a["start"]), 0.0, 1.0) * a["max"] * 255
    return np.rint(np.stack([*rgb, alpha], axis=-1)).astype(np.uint8)


def _overlay_shape(prediction: Prediction, size: int | None) -> tuple[int, int]:
    image = prediction.image
    rows, cols = (image.rows or 1, image.columns or 1)
    longest = int(min(max(size or min(max(rows, cols), DEFAULT_OVERLAY_SIZE), 16), MAX_OVERLAY_SIZE))
    scale = longest / max(rows, cols)
    return max(round(rows * scale), 1), max(round(cols * scale), 1)


def heatmap_overlay_png(prediction: Prediction, *, size: int | None = None) -> bytes:
    """A transparent RGBA PNG of the heatmap, in the image's aspect ratio, longest side ``size``."""
    grid = _grid(prediction)  # never cached: a re-run must show at once
    height, width = _overlay_shape(prediction, size)
    rgba = heatmap_colours(upscale_bilinear(grid, height, width))
    buffer = io.BytesIO()
    PILImage.fromarray(rgba).save(buffer, format="PNG", compress_level=6)
    return buffer.getvalue()


def gzip_bytes(data: bytes) -> bytes:
    """A gzip member at a fast level: raw 16-bit X-ray pixels shrink by about half."""
    compressor = zlib.compressobj(1, zlib.DEFLATED, 31)
    return compressor.compress(data) + compressor.flush()
