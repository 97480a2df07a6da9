"""Decoding of uploaded chest X-rays (DICOM, PNG, JPEG): pure Python, no Django.

Entry points:

* ``decode_guarded(data, filename=..., max_bytes=..., max_pixels=...)`` for
  uploads: decodes in a disposable, memory- and time-limited child process;
* ``decode(...)``: the same in-process, for tests, benchmarks and trusted files;
* ``assess_eligibility(metadata)``: may the image go to the model;
* ``render_display_png`` / ``encode_display_source``: PNGs for the viewer;
* ``zero_preamble``: defuse a DICOM preamble before storing the file.

Every refusal is a ``DecodeError`` whose ``str()`` is meant for the user.
"""

from __future__ import annotations

from .age import PatientAge, age_statement, parse_age, patient_age_read
from .decoding import decode
from .dicom import zero_preamble
from .display_png import (
    VALUE_OFFSET_KEY,
    decode_display_source,
    display_value_offset,
    encode_display_source,
    render_display_png,
)
from .eligibility import EligibilityStatus, EligibilityVerdict, assess_eligibility
from .errors import (
    CorruptImage,
    DecodeError,
    DecodeOutOfMemory,
    DecoderCrashed,
    DecodeTimeout,
    EmptyFile,
    NoPixelData,
    NotAnImage,
    TooComplex,
    TooLarge,
    Truncated,
    UnsupportedFormat,
)
from .guard import decode_guarded, warm_up
from .metadata import readable_person_name
from .sniff import sniff
from .types import DecodedImage, ImageKind, ImageMetadata, to_rgb_image

__all__ = [
    "VALUE_OFFSET_KEY",
    "CorruptImage",
    "DecodeError",
    "DecodeOutOfMemory",
    "DecodeTimeout",
    "DecodedImage",
    "DecoderCrashed",
    "EligibilityStatus",
    "EligibilityVerdict",
    "EmptyFile",
    "ImageKind",
    "ImageMetadata",
    "NoPixelData",
    "NotAnImage",
    "PatientAge",
    "TooComplex",
    "TooLarge",
    "Truncated",
    "UnsupportedFormat",
    "age_statement",
    "assess_eligibility",
    "decode",
    "decode_display_source",
    "decode_guarded",
    "display_value_offset",
    "encode_display_source",
    "parse_age",
    "patient_age_read",
    "readable_person_name",
    "render_display_png",
    "sniff",
    "to_rgb_image",
    "warm_up",
    "zero_preamble",
]
