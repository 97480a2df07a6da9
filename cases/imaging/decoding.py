"""In-process decoding entry point: size check, format sniffing, dispatch."""

from __future__ import annotations

import logging

from .dicom import decode_dicom
from .errors import CorruptImage, DecodeError, DecodeOutOfMemory, EmptyFile, TooLarge
from .raster import decode_raster
from .sniff import sniff
from .types import DecodedImage

logger = logging.getLogger(__name__)


def decode(data: bytes, *, filename: str, max_bytes: int, max_pixels: int, decode_threads: int = 1) -> DecodedImage:
    """Decode an upload in this process. Untrusted uploads should go through ``decode_guarded``.

    ``max_bytes`` bounds the file size, ``max_pixels`` the image area (rows x
    columns); both are checked before any pixel is decoded. ``decode_threads``
    bounds the threads one JPEG 2000 frame may use (callers pass the setting).
    """
    check_file_size(data, max_bytes)
    try:
        return _decode(data, filename, max_bytes, max_pixels, decode_threads)
    except DecodeError:
        raise
    except MemoryError as exc:
        raise DecodeOutOfMemory("The image is too large to decode within the memory limit") from exc
    except Exception as exc:
        # A decoder library tripping over hostile bytes is a damaged file to the user, a bug report to us.
        # The file name is left out: hospital file names often carry the patient's name.
        logger.warning("unexpected decoder failure (%s)", type(exc).__name__, exc_info=True)
        raise CorruptImage("The image is damaged and could not be decoded") from exc


def check_file_size(data: bytes, max_bytes: int) -> None:
    if not data:
        raise EmptyFile("The file is empty")
    if len(data) > max_bytes:
        raise TooLarge(f"The file is {_megabytes(len(data))} MB, over the limit of {_megabytes(max_bytes)} MB")


def _decode(data: bytes, filename: str, max_bytes: int, max_pixels: int, decode_threads: int) -> DecodedImage:
    kind = sniff(data, filename)
    if kind == "dicom":
        return decode_dicom(data, max_bytes=max_bytes, max_pixels=max_pixels, decode_threads=decode_threads)
    return decode_raster(data, kind, max_pixels=max_pixels)


def _megabytes(size: int) -> str:
    return f"{size / 2**20:.1f}".removesuffix(".0")
