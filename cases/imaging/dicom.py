"""Decode a DICOM Part 10 file into metadata, a model image and full-depth display pixels.

Order matters for hostile input: the structure walk (``dicom_scan``) and the
pixel budget, both computed from headers alone, run before pydicom allocates
anything for pixels. Files must carry the 'DICM' prefix: pydicom is never
asked to ``force`` its way through arbitrary bytes.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, replace

import numpy as np
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.pixels import apply_color_lut, apply_modality_lut, apply_voi, get_decoder
from pydicom.uid import UID

from .codestreams import codestream_size, first_fragment
from .dicom_scan import DicomLayout, scan_dicom
from .errors import (
    CorruptImage,
    DecodeOutOfMemory,
    NoPixelData,
    TooLarge,
    Truncated,
    UnsupportedFormat,
)
from .metadata import extract_metadata, first_number
from .sniff import DICOM_PREAMBLE_LENGTH, is_dicom_part10
from .types import DecodedImage, ImageMetadata, WindowSource
from .windowing import (
    LINEAR,
    LINEAR_EXACT,
    SIGMOID,
    full_range_window,
    invert,
    is_valid_window,
    to_display_dtype,
    window_to_uint8,
)

# Decoded pixels may use at most this many bytes per pixel of the megapixel budget.
BYTES_PER_BUDGET_PIXEL = 4
# Inflating a deflated file may add this much beyond the pixel budget (metadata, overlays).
INFLATE_SLACK_BYTES = 16 * 2**20
SUPPORTED_BITS_ALLOCATED = (8, 16)
# Measured fastest where several plugins decode the same syntax (bench/ingest.py): Pillow 4x libjpeg on
# baseline JPEG, CharLS 4x libjpeg on JPEG-LS. Should one fail, pydicom's own order is tried next.
_PREFERRED_PLUGINS = {
    "1.2.840.10008.1.2.4.50": "pillow",
    "1.2.840.10008.1.2.4.80": "pyjpegls",
    "1.2.840.10008.1.2.4.81": "pyjpegls",
    "1.2.840.10008.1.2.5": "pylibjpeg",
}


@dataclass(frozen=True)
class _Window:
    center: float
    width: float
    function: str
    source: WindowSource


def zero_preamble(data: bytes) -> bytes:
    """The file with its 128-byte preamble zeroed, which defuses executable/polyglot headers.

    The preamble is free-form by the standard, so zeroing it never changes the
    DICOM content. Anything that is not a Part 10 file is returned unchanged.
    """
    if not is_dicom_part10(data):
        return data
    return bytes(DICOM_PREAMBLE_LENGTH) + data[DICOM_PREAMBLE_LENGTH:]


def decode_dicom(data: bytes, *, max_bytes: int, max_pixels: int, decode_threads: int = 1) -> DecodedImage:
    """Decode one DICOM file; ``decode_threads`` is how many threads a JPEG 2000 frame may use."""
    layout = scan_dicom(data, max_inflated=max_bytes + max_pixels * BYTES_PER_BUDGET_PIXEL + INFLATE_SLACK_BYTES)
    ds = _read(data)
    meta = extract_metadata(ds, transfer_syntax_uid=layout.transfer_syntax_uid)
    _check_pixel_header(ds, layout, meta, max_pixels)
    if meta.is_multiframe:
        return DecodedImage("dicom", _with_file_window(meta, ds), None, None, None)
    return _decode_frame(ds, layout, meta, decode_threads)


def _read(data: bytes) -> Dataset:
    try:
        return dcmread(io.BytesIO(data), force=False)
    except MemoryError:
        raise
    except Exception as exc:
        raise CorruptImage("DICOM file is damaged and cannot be read") from exc


def _check_pixel_header(ds: Dataset, layout: DicomLayout, meta: ImageMetadata, max_pixels: int) -> None:
    if layout.pixel_data is None or "PixelData" not in ds:
        raise NoPixelData("DICOM file has no pixel data")
    _check_geometry(meta)
    check_pixel_budget(meta, max_pixels)
    if not layout.pixel_data.encapsulated:
        _check_native_length(ds, meta)


def _check_geometry(meta: ImageMetadata) -> None:
    if meta.rows <= 0 or meta.columns <= 0:
        raise CorruptImage("DICOM file does not give the image size (rows and columns)")
    if meta.bits_allocated not in SUPPORTED_BITS_ALLOCATED:
        raise UnsupportedFormat(f"DICOM images with {meta.bits_allocated} bits per pixel are not supported")
    if not 1 <= meta.bits_stored <= meta.bits_allocated:
        raise CorruptImage("DICOM file gives an impossible bit depth")
    if meta.samples_per_pixel not in (1, 3):
        raise UnsupportedFormat(f"DICOM images with {meta.samples_per_pixel} samples per pixel are not supported")


def check_pixel_budget(meta: ImageMetadata, max_pixels: int) -> None:
    """Refuse from the header alone what would not fit the budget once decoded."""
    if meta.rows * meta.columns > max_pixels:
        raise TooLarge(
            f"Image dimensions {meta.columns}x{meta.rows} exceed the limit of {_megapixels(max_pixels)} megapixels"
        )
    decoded = expected_native_length(meta)
    budget = max_pixels * BYTES_PER_BUDGET_PIXEL
    if decoded > budget:
        raise TooLarge(
            f"Image data ({meta.number_of_frames} frames of {meta.columns}x{meta.rows}) needs "
            f"{decoded // 2**20} MB, over the limit of {budget // 2**20} MB"
        )


def expected_native_length(meta: ImageMetadata) -> int:
    samples = meta.rows * meta.columns * meta.number_of_frames * meta.samples_per_pixel
    return samples * meta.bits_allocated // 8


def _megapixels(pixels: int) -> str:
    return f"{pixels / 1_000_000:g}"


def _check_native_length(ds: Dataset, meta: ImageMetadata) -> None:
    expected = expected_native_length(meta)
    if meta.photometric_interpretation == "YBR_FULL_422":
        expected = expected // 3 * 2
    if len(ds.PixelData) < expected:
        raise Truncated("DICOM file is truncated or damaged: it holds less pixel data than its header promises")


def _decode_frame(ds: Dataset, layout: DicomLayout, meta: ImageMetadata, threads: int) -> DecodedImage:
    syntax = UID(layout.transfer_syntax_uid)
    if layout.pixel_data and layout.pixel_data.encapsulated:
        _check_codestream_size(ds, meta)
    stored = _grayscale(_pixel_array(ds, syntax, threads), ds, meta)
    values = modality_values(stored, ds)
    return _windowed(ds, meta, values)


def _pixel_array(ds: Dataset, syntax: UID, threads: int) -> np.ndarray:
    plugin = _preferred_plugin(syntax)
    try:
        fast = _j2k_threaded(ds, syntax, threads)
        return fast if fast is not None else _decode_with(ds, plugin)
    except MemoryError as exc:
        raise DecodeOutOfMemory("The image is too large to decode within the memory limit") from exc
    except Exception as exc:
        if _is_unsupported(syntax):
            raise UnsupportedFormat(f"DICOM images compressed as {syntax.name} are not supported") from exc
        raise CorruptImage("DICOM image data is damaged and could not be decoded") from exc


_J2K_SYNTAXES = {"1.2.840.10008.1.2.4.90", "1.2.840.10008.1.2.4.91"}


def _j2k_threaded(ds: Dataset, syntax: UID, threads: int) -> np.ndarray | None:
    """JPEG 2000 through imagecodecs' multi-threaded OpenJPEG, or None to use pydicom's plugins.

    pylibjpeg-openjpeg decodes on one thread (about 0.6 s for a 2500x2048
    radiograph here); OpenJPEG's own threads cut that roughly in half on two
    cores. Only the plain case (one greyscale frame whose decoded type matches
    the header) takes this path; anything else goes through pydicom.
    """
    if str(syntax) not in _J2K_SYNTAXES or int(ds.get("NumberOfFrames", 1) or 1) != 1:
        return None
    if int(ds.get("SamplesPerPixel", 1)) != 1:
        return None
    try:
        import imagecodecs
        from pydicom.encaps import generate_frames
    except ImportError:
        return None
    frame = next(generate_frames(ds.PixelData, number_of_frames=1))
    array = imagecodecs.jpeg2k_decode(frame, numthreads=max(1, threads))
    signed = int(ds.get("PixelRepresentation", 0)) == 1
    expected = (int(ds.Rows), int(ds.Columns))
    if array.shape != expected or (array.dtype.kind == "i") != signed:
        return None
    return array


def _decode_with(ds: Dataset, plugin: str | None) -> np.ndarray:
    if plugin is None:
        return ds.pixel_array
    try:
        ds.pixel_array_options(decoding_plugin=plugin)
        return ds.pixel_array
    except (ValueError, RuntimeError, NotImplementedError):
        ds.pixel_array_options(decoding_plugin="")
        return ds.pixel_array


def _preferred_plugin(syntax: UID) -> str | None:
    plugin = _PREFERRED_PLUGINS.get(str(syntax))
    return plugin if plugin and plugin in _available_plugins(syntax) else None


def _available_plugins(syntax: UID) -> tuple[str, ...]:
    try:
        return tuple(get_decoder(syntax).available_plugins)
    except NotImplementedError:
        return ()


def _is_unsupported(syntax: UID) -> bool:
    # Native syntaxes need no plugin; a compressed (or unknown) one without any plugin cannot be decoded here.
    native = syntax.is_transfer_syntax and not syntax.is_compressed
    return not native and not _available_plugins(syntax)


def _check_codestream_size(ds: Dataset, meta: ImageMetadata) -> None:
    # A compressed frame can claim far larger dimensions than the header; decoders size buffers from the stream.
    size = codestream_size(first_fragment(ds.PixelData))
    if size is not None and size != (meta.rows, meta.columns):
        raise CorruptImage(
            f"DICOM compressed image is {size[1]}x{size[0]} but its header says {meta.columns}x{meta.rows}"
        )


def _grayscale(stored: np.ndarray, ds: Dataset, meta: ImageMetadata) -> np.ndarray:
    """Colour secondary captures reduced to luminance; greyscale passes through untouched."""
    if meta.photometric_interpretation == "PALETTE COLOR":
        stored = apply_color_lut(stored, ds)
    if stored.ndim == 2:
        return stored
    rgb = stored[..., :3].astype(np.float32)
    luma = rgb[..., 0] * 0.299 + rgb[..., 1] * 0.587 + rgb[..., 2] * 0.114
    return np.rint(luma).astype(stored.dtype)


def modality_values(stored: np.ndarray, ds: Dataset) -> np.ndarray:
    """Stored values through the Modality LUT or rescale slope/intercept (integers stay integers)."""
    if "ModalityLUTSequence" in ds:
        return apply_modality_lut(stored, ds)
    slope = first_number(ds, "RescaleSlope")
    intercept = first_number(ds, "RescaleIntercept") or 0.0
    slope = 1.0 if slope is None or slope == 0 else slope
    if slope == 1.0 and intercept == 0.0:
        return stored
    if slope == 1.0 and intercept.is_integer():
        return stored.astype(np.int32) + int(intercept)
    return stored.astype(np.float32) * np.float32(slope) + np.float32(intercept)


def _windowed(ds: Dataset, meta: ImageMetadata, values: np.ndarray) -> DecodedImage:
    lut_image = _voi_lut_image(ds, values)
    window = _file_window(ds) or (_lut_window(ds) if lut_image is not None else None)
    inverted = meta.photometric_interpretation == "MONOCHROME1"
    display_values, window = _as_monochrome2(values, window) if inverted else (values, window)
    window = window or _Window(*full_range_window(display_values), LINEAR, "full_range")
    model = _model_image(display_values, window, lut_image, inverted=inverted)
    meta = _with_window(meta, window, "voi_lut" if lut_image is not None else window.source)
    return DecodedImage("dicom", meta, model, to_display_dtype(display_values), (window.center, window.width))


def _as_monochrome2(values: np.ndarray, window: _Window | None) -> tuple[np.ndarray, _Window | None]:
    """MONOCHROME1 values mirrored so that bone is bright, with the window mirrored alongside."""
    mirrored, mirror = invert(values)
    if window is None:
        return mirrored, None
    # LINEAR centres sit half a value off (c - 0.5), so the mirror image of c is k - c + 1.
    shift = 1.0 if window.function == LINEAR else 0.0
    return mirrored, replace(window, center=mirror - window.center + shift)


def _model_image(values: np.ndarray, window: _Window, lut_image: np.ndarray | None, *, inverted: bool) -> np.ndarray:
    if lut_image is None:
        return window_to_uint8(values, window.center, window.width, window.function)
    return 255 - lut_image if inverted else lut_image


def _file_window(ds: Dataset) -> _Window | None:
    function = _voi_function(ds)
    center, width = first_number(ds, "WindowCenter"), first_number(ds, "WindowWidth")
    if not is_valid_window(center, width, function):
        return None
    return _Window(center, width, function, "window")


def _voi_function(ds: Dataset) -> str:
    value = str(ds.get("VOILUTFunction", "") or "").strip().upper()
    return value if value in (LINEAR, LINEAR_EXACT, SIGMOID) else LINEAR


def _voi_lut_image(ds: Dataset, values: np.ndarray) -> np.ndarray | None:
    """The first VOI LUT applied and stretched over 0..255, or ``None`` when absent or unusable."""
    if not ds.get("VOILUTSequence"):
        return None
    try:
        mapped = apply_voi(values, ds, index=0)
    except Exception:  # noqa: BLE001 - an unusable LUT falls back to the window, like any viewer
        return None
    low, high = float(mapped.min()), float(mapped.max())
    scale = 255.0 / (high - low) if high > low else 0.0
    return np.rint((mapped.astype(np.float32) - low) * scale).astype(np.uint8)


def _lut_window(ds: Dataset) -> _Window | None:
    # A viewer can only window linearly: approximate the LUT by the input range it covers.
    try:
        entries, first_mapped, _bits = (int(v) for v in ds.VOILUTSequence[0].LUTDescriptor)
    except Exception:  # noqa: BLE001 - a malformed descriptor just means no approximation
        return None
    entries = entries or 65536
    return _Window(first_mapped + entries / 2, float(entries), LINEAR, "voi_lut")


def _with_window(meta: ImageMetadata, window: _Window, source: WindowSource) -> ImageMetadata:
    return replace(
        meta,
        window_center=window.center,
        window_width=window.width,
        window_source=source,
        voi_lut_function=window.function,
    )


def _with_file_window(meta: ImageMetadata, ds: Dataset) -> ImageMetadata:
    window = _file_window(ds)
    return _with_window(meta, window, "window") if window else meta
