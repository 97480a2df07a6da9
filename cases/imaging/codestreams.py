"""Image dimensions read from compressed headers, without decoding.

Decoders size their buffers from the codestream, not from the DICOM header,
so a tiny frame claiming 60000x60000 pixels is checked here first.
"""

from __future__ import annotations

import struct

_JPEG_SOF = frozenset({0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF, 0xF7})
_J2K_SIZ = b"\xff\x4f\xff\x51"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def first_fragment(pixel_data: bytes) -> bytes:
    """The first fragment after the Basic Offset Table of encapsulated pixel data."""
    offset = 0
    for _ in range(2):
        if len(pixel_data) < offset + 8 or pixel_data[offset : offset + 4] != b"\xfe\xff\x00\xe0":
            return b""
        length = struct.unpack_from("<L", pixel_data, offset + 4)[0]
        start, offset = offset + 8, offset + 8 + length
    return pixel_data[start:offset]


def codestream_size(fragment: bytes) -> tuple[int, int] | None:
    """``(rows, columns)`` from a JPEG, JPEG-LS or JPEG 2000 codestream header; ``None`` if not found."""
    if fragment.startswith(b"\xff\xd8"):
        return _jpeg_size(fragment)
    siz = fragment.find(_J2K_SIZ, 0, 4096)
    return _j2k_size(fragment, siz + 2) if siz >= 0 else None


def _jpeg_size(stream: bytes) -> tuple[int, int] | None:
    offset = 2
    while offset + 9 <= len(stream) and stream[offset] == 0xFF:
        marker = stream[offset + 1]
        if marker in _JPEG_SOF:
            return struct.unpack_from(">HH", stream, offset + 5)
        offset += 2 + struct.unpack_from(">H", stream, offset + 2)[0]
    return None


def _j2k_size(stream: bytes, siz: int) -> tuple[int, int] | None:
    if siz + 22 > len(stream):
        return None
    width, height, x_origin, y_origin = struct.unpack_from(">LLLL", stream, siz + 6)
    return height - y_origin, width - x_origin


def png_size(data: bytes) -> tuple[int, int] | None:
    """``(rows, columns)`` from a PNG's IHDR chunk."""
    if not data.startswith(_PNG_SIGNATURE) or data[12:16] != b"IHDR" or len(data) < 24:
        return None
    width, height = struct.unpack_from(">LL", data, 16)
    return height, width
