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

import importlib
from typing import TYPE_CHECKING, Any

# Where each public name lives. They are imported on first use (PEP 562), so that a module
# needing only the eligibility rules or the age parser (a worker at start-up) does not pay for
# pydicom and the image codecs (about 0.15 s) before its first image.
_HOMES = {
    "age": ("PatientAge", "age_statement", "parse_age", "patient_age_read"),
    "decoding": ("decode",),
    "dicom": ("zero_preamble",),
    "display_png": (
        "VALUE_OFFSET_KEY",
        "decode_display_source",
        "display_value_offset",
        "encode_display_source",
        "render_display_png",
    ),
    "eligibility": ("EligibilityStatus", "EligibilityVerdict", "assess_eligibility"),
    "errors": (
        "CorruptImage",
        "DecodeError",
        "DecodeOutOfMemory",
        "DecoderCrashed",
        "DecodeTimeout",
        "EmptyFile",
        "NoPixelData",
        "NotAnImage",
        "TooComplex",
        "TooLarge",
        "Truncated",
        "UnsupportedFormat",
    ),
    "guard": ("decode_guarded", "warm_up"),
    "metadata": ("readable_person_name",),
    "types": ("DecodedImage", "ImageKind", "ImageMetadata", "to_rgb_image"),
}
_MODULE_OF = {name: module for module, names in _HOMES.items() for name in names}

# Imported now: the function shares its module's name, and a later ``import cases.imaging.sniff``
# would otherwise leave the package attribute pointing at the module instead of the function.
from .sniff import sniff  # noqa: E402


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_MODULE_OF])


if TYPE_CHECKING:  # what type checkers and readers see
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
