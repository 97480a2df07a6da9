"""Tell the file's real format from its first bytes, never from its name.

Only DICOM Part 10, PNG and JPEG are accepted. Everything else is refused with
a sentence naming what the file really is, because "unsupported file" alone
leaves a technician guessing which export setting to change.
"""

from __future__ import annotations

import codecs
from pathlib import PurePath
from typing import Literal

from .errors import EmptyFile, NotAnImage, UnsupportedFormat

Format = Literal["dicom", "png", "jpeg"]

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SIGNATURE = b"\xff\xd8\xff"
DICOM_PREAMBLE_LENGTH = 128
DICOM_PREFIX = b"DICM"

# Other images someone might rename: refused as images we do not take.
_OTHER_IMAGES: tuple[tuple[bytes, int, str], ...] = (
    (b"GIF87a", 0, "a GIF image"),
    (b"GIF89a", 0, "a GIF image"),
    (b"II*\x00", 0, "a TIFF image"),
    (b"MM\x00*", 0, "a TIFF image"),
    (b"BM", 0, "a BMP image"),
    (b"\x00\x00\x00\x0cjP  ", 0, "a JPEG 2000 image"),
    (b"\xff\x4f\xff\x51", 0, "a JPEG 2000 codestream"),
    (b"ftypheic", 4, "a HEIC photo"),
    (b"ftypheix", 4, "a HEIC photo"),
    (b"ftypmif1", 4, "a HEIF photo"),
    (b"ftypavif", 4, "an AVIF image"),
    (b"\x00\x00\x01\x00", 0, "an icon file"),
)
# Things that are not images at all.
_NOT_IMAGES: tuple[tuple[bytes, int, str], ...] = (
    (b"%PDF", 0, "a PDF document"),
    (b"MZ", 0, "a Windows program"),
    (b"\x7fELF", 0, "a Linux program"),
    (b"\xcf\xfa\xed\xfe", 0, "a macOS program"),
    (b"\xca\xfe\xba\xbe", 0, "a macOS program"),
    (b"#!", 0, "a script"),
    (b"PK\x03\x04", 0, "a ZIP archive"),
    (b"\x1f\x8b", 0, "a compressed (gzip) archive"),
    (b"Rar!", 0, "a RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", 0, "a 7-Zip archive"),
    (b"\xd0\xcf\x11\xe0", 0, "an Office document"),
)


def sniff(data: bytes, filename: str = "") -> Format:
    """The accepted format of ``data``, or a refusal saying what it is instead."""
    if not data:
        raise EmptyFile("The file is empty")
    if is_dicom_part10(data):
        return "dicom"
    if data.startswith(PNG_SIGNATURE):
        return "png"
    if data.startswith(JPEG_SIGNATURE):
        return "jpeg"
    raise _refusal(data, filename)


def is_dicom_part10(data: bytes) -> bool:
    return data[DICOM_PREAMBLE_LENGTH : DICOM_PREAMBLE_LENGTH + 4] == DICOM_PREFIX


def _refusal(data: bytes, filename: str) -> NotAnImage | UnsupportedFormat:
    named = _named_as(filename)
    if (what := _match(data, _OTHER_IMAGES) or _webp(data)) is not None:
        return UnsupportedFormat(f"The file{named} is {what}; only DICOM, PNG and JPEG images are accepted")
    if (what := _match(data, _NOT_IMAGES)) is not None:
        return NotAnImage(f"The file{named} is {what}, not a DICOM, PNG or JPEG image")
    if _looks_like_bare_dicom(data):
        return UnsupportedFormat(
            "The file looks like DICOM without the standard 'DICM' header; export it again as a DICOM Part 10 file"
        )
    if _looks_like_text(data):
        return NotAnImage(f"The file{named} is a text file, not a DICOM, PNG or JPEG image")
    return NotAnImage("Not a DICOM, PNG or JPEG file")


def _named_as(filename: str) -> str:
    suffix = PurePath(filename).suffix if filename else ""
    return f" (named {suffix})" if suffix else ""


def _match(data: bytes, table: tuple[tuple[bytes, int, str], ...]) -> str | None:
    return next((what for magic, at, what in table if data[at : at + len(magic)] == magic), None)


def _webp(data: bytes) -> str | None:
    return "a WebP image" if data[:4] == b"RIFF" and data[8:12] == b"WEBP" else None


def _looks_like_bare_dicom(data: bytes) -> bool:
    # A dataset written without preamble starts with a group 0002 or 0008 tag.
    return len(data) >= 8 and data[1] == 0 and data[0] in (2, 8) and data[3] == 0


def _looks_like_text(data: bytes) -> bool:
    # Incremental, so a multi-byte character cut at the boundary is not "binary".
    try:
        text = codecs.getincrementaldecoder("utf-8")().decode(data[:4096], final=False)
    except UnicodeDecodeError:
        return False
    return all(ch.isprintable() or ch in "\r\n\t\f" for ch in text)
