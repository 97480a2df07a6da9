"""Read patient, study and image attributes out of a pydicom dataset.

Every attribute is read defensively: a malformed value (a date of "2024-13-45",
a non-numeric age) becomes ``None`` rather than failing the upload, because
the image itself may be perfectly good and the form lets staff fill gaps. The
age is read by ``age.patient_age_read``, which also says where it came from and
why it is unknown.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any, TypeVar

from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.valuerep import PersonName

from .age import parse_date, patient_age_read
from .types import ImageMetadata

T = TypeVar("T")

_DATE_KEYWORDS = ("StudyDate", "SeriesDate", "AcquisitionDate", "ContentDate")
# The age is counted to the day the film was taken: the study's date, else the acquisition's.
_AGE_DATE_KEYWORDS = ("StudyDate", "AcquisitionDate", "SeriesDate", "ContentDate")


def extract_metadata(ds: Dataset, *, transfer_syntax_uid: str) -> ImageMetadata:
    birth_date_text = _text(ds, "PatientBirthDate")
    patient_age = _text(ds, "PatientAge")
    age = patient_age_read(
        stated=patient_age, birth_date=birth_date_text, on=_first_date(ds, _AGE_DATE_KEYWORDS), origin="dicom"
    )
    return ImageMetadata(
        kind="dicom",
        **image_geometry(ds),
        photometric_interpretation=_text(ds, "PhotometricInterpretation"),
        transfer_syntax_uid=transfer_syntax_uid,
        **_identifiers(ds),
        study_date=_first_date(ds, _DATE_KEYWORDS),
        **_descriptions(ds),
        **_patient(ds),
        birth_date=parse_date(birth_date_text),
        patient_age=patient_age,
        age_years=age.years,
        age_source=age.source,
        age_reason=age.reason,
        pixel_spacing=_pixel_spacing(ds),
    )


def image_geometry(ds: Dataset) -> dict[str, Any]:
    bits_allocated = _int(ds, "BitsAllocated") or 0
    return {
        "rows": _int(ds, "Rows") or 0,
        "columns": _int(ds, "Columns") or 0,
        "bits_allocated": bits_allocated,
        "bits_stored": _int(ds, "BitsStored") or bits_allocated,
        "number_of_frames": max(_int(ds, "NumberOfFrames") or 1, 1),
        "samples_per_pixel": _int(ds, "SamplesPerPixel") or 1,
        "pixel_signed": _int(ds, "PixelRepresentation") == 1,
    }


def _identifiers(ds: Dataset) -> dict[str, str | None]:
    sop_class = _text(ds, "SOPClassUID") or _text(ds.get("file_meta", Dataset()), "MediaStorageSOPClassUID")
    return {
        "sop_class_uid": sop_class,
        "sop_instance_uid": _text(ds, "SOPInstanceUID"),
        "study_instance_uid": _text(ds, "StudyInstanceUID"),
        "series_instance_uid": _text(ds, "SeriesInstanceUID"),
        "accession_number": _text(ds, "AccessionNumber"),
    }


def _descriptions(ds: Dataset) -> dict[str, str | None]:
    return {
        "study_description": _text(ds, "StudyDescription"),
        "modality": _upper(_text(ds, "Modality")),
        "body_part": _text(ds, "BodyPartExamined"),
        "view_position": _text(ds, "ViewPosition"),
        "manufacturer": _text(ds, "Manufacturer"),
        "manufacturer_model_name": _text(ds, "ManufacturerModelName"),
        "specific_character_set": _text(ds, "SpecificCharacterSet", joined=True),
    }


def _patient(ds: Dataset) -> dict[str, str | None]:
    name = _safe(lambda: ds.get("PatientName"))
    sex = _upper(_text(ds, "PatientSex"))
    return {
        "patient_id": _text(ds, "PatientID"),
        "patient_name": readable_person_name(name),
        "patient_name_dicom": _clean(str(name)) if name is not None else None,
        "sex": sex if sex in ("M", "F", "O") else None,
    }


def readable_person_name(name: PersonName | str | None) -> str | None:
    """'Family^Given^Middle^Prefix^Suffix' groups as 'Family, Prefix Given Middle Suffix'.

    Alphabetic, ideographic and phonetic groups are all kept, joined with ' = ',
    so a Japanese name shows its kanji as well as its romaji.
    """
    if name is None:
        return None
    groups = name.components if isinstance(name, PersonName) else tuple(str(name).split("="))
    readable = [_readable_group(group) for group in groups]
    return _clean(" = ".join(part for part in readable if part))


def _readable_group(group: str) -> str:
    family, given, middle, prefix, suffix = ([*group.split("^"), "", "", "", ""])[:5]
    rest = " ".join(part.strip() for part in (prefix, given, middle, suffix) if part.strip())
    family = family.strip()
    return f"{family}, {rest}" if family and rest else family or rest


def _first_date(ds: Dataset, keywords: tuple[str, ...]) -> date | None:
    dates = (parse_date(_text(ds, keyword)) for keyword in keywords)
    return next((found for found in dates if found is not None), None)


def _pixel_spacing(ds: Dataset) -> tuple[float, float] | None:
    for keyword in ("PixelSpacing", "ImagerPixelSpacing"):
        spacing = _safe(lambda keyword=keyword: tuple(float(v) for v in ds.get(keyword) or ()))
        if spacing and len(spacing) == 2 and all(v > 0 for v in spacing):
            return spacing
    return None


def first_number(ds: Dataset, keyword: str) -> float | None:
    """The first value of a possibly multi-valued numeric attribute."""
    value = _safe(lambda: ds.get(keyword))
    if isinstance(value, MultiValue | list | tuple):
        value = value[0] if len(value) else None
    return _safe(lambda: float(value)) if value not in (None, "") else None


def _text(ds: Dataset, keyword: str, *, joined: bool = False) -> str | None:
    value = _safe(lambda: ds.get(keyword))
    if isinstance(value, MultiValue | list | tuple):
        value = "\\".join(str(v) for v in value) if joined else (value[0] if len(value) else None)
    return _clean(str(value)) if value is not None else None


def _int(ds: Dataset, keyword: str) -> int | None:
    value = _safe(lambda: ds.get(keyword))
    if isinstance(value, MultiValue | list | tuple):
        value = value[0] if len(value) else None
    return _safe(lambda: int(value)) if value not in (None, "") else None


def _clean(text: str) -> str | None:
    text = text.replace("\x00", "").strip()
    return text or None


def _upper(text: str | None) -> str | None:
    return text.upper() if text else None


def _safe(read: Callable[[], T]) -> T | None:
    # Malformed values surface as assorted exceptions from pydicom's lazy conversion.
    try:
        return read()
    except Exception:  # noqa: BLE001 - any failure to read one attribute just leaves it unknown
        return None
