"""Refusals raised while decoding an upload.

Every refusal is a ``DecodeError`` whose ``str()`` is a sentence a radiology
technician can act on; ``code`` is a stable machine-readable tag for APIs and
logs. The classes take a single ``reason`` argument so they survive pickling
across the guarded decoder's process boundary unchanged.
"""

from __future__ import annotations

from typing import ClassVar


class DecodeError(Exception):
    code: ClassVar[str] = "decode_error"

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason

    def __str__(self) -> str:
        return self.reason


class NotAnImage(DecodeError):
    code = "not_an_image"


class EmptyFile(NotAnImage):
    code = "empty"


class UnsupportedFormat(DecodeError):
    code = "unsupported_format"


class TooLarge(DecodeError):
    code = "too_large"


class Truncated(DecodeError):
    code = "truncated"


class CorruptImage(DecodeError):
    code = "corrupt"


class NoPixelData(DecodeError):
    code = "no_pixel_data"


class TooComplex(CorruptImage):
    """Structure (nesting, element count) far beyond anything a modality writes."""

    code = "too_complex"


class DecodeTimeout(DecodeError):
    code = "timeout"


class DecodeOutOfMemory(DecodeError):
    code = "out_of_memory"


class DecoderCrashed(DecodeError):
    code = "crashed"
