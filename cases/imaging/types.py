"""The value objects the decoder hands back; plain data, safe to pickle."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import date
from typing import Literal

import numpy as np
from PIL import Image

ImageKind = Literal["dicom", "png", "jpeg"]
WindowSource = Literal["voi_lut", "window", "full_range"]


@dataclass(frozen=True)
class ImageMetadata:
    """What the file says about itself. PNG/JPEG fill only the image fields.

    ``window_center``/``window_width`` are the window actually applied, in
    ``display_pixels`` values (for MONOCHROME1, the mirror of the file's own);
    ``window_source`` says where it came from. ``age_years`` is PatientAge, else
    study date minus birth date; the upload form may supply it for PNG/JPEG
    with ``dataclasses.replace``. ``patient_name`` is readable ("Family, Given"),
    ``patient_name_dicom`` the decoded value as written ("Family^Given").
    """

    kind: ImageKind
    rows: int
    columns: int
    bits_allocated: int
    bits_stored: int
    number_of_frames: int = 1
    samples_per_pixel: int = 1
    pixel_signed: bool = False
    photometric_interpretation: str | None = None
    transfer_syntax_uid: str | None = None
    sop_class_uid: str | None = None
    sop_instance_uid: str | None = None
    study_instance_uid: str | None = None
    series_instance_uid: str | None = None
    accession_number: str | None = None
    study_date: date | None = None
    study_description: str | None = None
    modality: str | None = None
    body_part: str | None = None
    view_position: str | None = None
    manufacturer: str | None = None
    manufacturer_model_name: str | None = None
    patient_id: str | None = None
    patient_name: str | None = None
    patient_name_dicom: str | None = None
    birth_date: date | None = None
    sex: str | None = None
    patient_age: str | None = None
    age_years: float | None = None
    age_source: str = "unknown"  # an age.AgeSource
    age_reason: str = ""  # why the age is unknown, or a value passed over
    specific_character_set: str | None = None
    pixel_spacing: tuple[float, float] | None = None
    window_center: float | None = None
    window_width: float | None = None
    window_source: WindowSource | None = None
    voi_lut_function: str | None = None

    @property
    def is_multiframe(self) -> bool:
        return self.number_of_frames > 1


@dataclass(frozen=True, eq=False)
class DecodedImage:
    """A decoded upload.

    ``model_image`` is the windowed image as 8-bit grayscale (HxW uint8), what
    the classifier receives. ``display_pixels`` holds the full-depth values
    after the modality LUT and MONOCHROME1 inversion (uint16 when they fit,
    else int32) for a viewer that windows by itself; ``default_window`` is
    ``(center, width)`` in those values. Both are ``None`` for multi-frame
    objects, which are stored but never decoded.
    """

    kind: ImageKind
    metadata: ImageMetadata
    model_image: np.ndarray | None
    display_pixels: np.ndarray | None
    default_window: tuple[float, float] | None

    @property
    def is_multiframe(self) -> bool:
        return self.metadata.is_multiframe

    def pixel_sha256(self) -> str | None:
        """SHA-256 of the display pixels, their dtype and shape: equal for the same image in any lossless syntax.

        ``None`` for multi-frame objects, which are not decoded.
        """
        if self.display_pixels is None:
            return None
        pixels = np.ascontiguousarray(self.display_pixels)
        digest = hashlib.sha256(f"{pixels.dtype.str}{pixels.shape}".encode())
        digest.update(memoryview(pixels).cast("B"))
        return digest.hexdigest()

    def model_image_rgb(self) -> Image.Image:
        if self.model_image is None:
            raise ValueError("multi-frame objects have no model image")
        return to_rgb_image(self.model_image)


def to_rgb_image(model_image: np.ndarray) -> Image.Image:
    """The 8-bit grayscale model image as a 3-channel PIL image."""
    return Image.fromarray(np.asarray(model_image, dtype=np.uint8)).convert("RGB")
