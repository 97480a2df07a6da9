"""De-identifying one DICOM dataset for teaching and research: pure functions, no Django.

PS3.15 Annex E, the Basic Application Level Confidentiality Profile (Table E.1-1) with the Retain
Longitudinal Temporal Information with Modified Dates option. Rather than acting on the table's few
hundred attributes one by one, the dataset is rebuilt from a short list of attributes that are not in
the table and that a chest film needs to be displayed and read (pixels, presentation, view, body part):
everything else, private attributes, overlays and curves included, is left out. That is stricter than
the table demands, and it stays safe when a later edition of the standard, or a vendor, adds an
attribute that can identify the patient. Of the table's own attributes only these come back:

- the study, series, instance and frame of reference UIDs, remapped (HMAC-SHA256 under the site's
  secret key, as a ``2.25.<int>`` UID), so references within a study and across exports still match;
- the study, series, acquisition and content dates and times, shifted by one non-zero offset per
  patient (derived from the key), so intervals between a patient's studies are kept;
- the patient's ID and name, replaced by a keyed pseudonym, and the type 2 attributes of the patient
  and study modules (birth date, sex, accession number, study ID, referring physician), emptied.

The caller passes ``patient_key``, the patient's identity as Pneumo knows it, so that every study of
one patient gets the same pseudonym and date offset whatever its headers say.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID
from pydicom.valuerep import DA, DT, TM

# Attributes kept as they are (also inside the kept sequences): none of them is in Table E.1-1.
RETAINED = frozenset(
    {
        "SpecificCharacterSet",
        "ImageType",
        "SOPClassUID",
        "Modality",
        # Not in the table, and what a site's own validation compares results by (domain shift by vendor).
        "Manufacturer",
        "ManufacturerModelName",
        "ConversionType",
        "PresentationIntentType",
        "BodyPartExamined",
        "ViewPosition",
        "ViewCodeSequence",
        "AnatomicRegionSequence",
        "CodeValue",
        "CodingSchemeDesignator",
        "CodingSchemeVersion",
        "CodeMeaning",
        "PatientOrientation",
        "ImageLaterality",
        "Laterality",
        "SeriesNumber",
        "InstanceNumber",
        "SamplesPerPixel",
        "PhotometricInterpretation",
        "PlanarConfiguration",
        "NumberOfFrames",
        "FrameIncrementPointer",
        "Rows",
        "Columns",
        "PixelSpacing",
        "ImagerPixelSpacing",
        "PixelAspectRatio",
        "BitsAllocated",
        "BitsStored",
        "HighBit",
        "PixelRepresentation",
        "SmallestImagePixelValue",
        "LargestImagePixelValue",
        "PixelIntensityRelationship",
        "PixelIntensityRelationshipSign",
        "WindowCenter",
        "WindowWidth",
        "VOILUTFunction",
        "VOILUTSequence",
        "ModalityLUTSequence",
        "LUTDescriptor",
        "LUTData",
        "ModalityLUTType",
        "RescaleIntercept",
        "RescaleSlope",
        "RescaleType",
        "PresentationLUTShape",
        "RedPaletteColorLookupTableDescriptor",
        "GreenPaletteColorLookupTableDescriptor",
        "BluePaletteColorLookupTableDescriptor",
        "RedPaletteColorLookupTableData",
        "GreenPaletteColorLookupTableData",
        "BluePaletteColorLookupTableData",
        "LossyImageCompression",
        "LossyImageCompressionRatio",
        "LossyImageCompressionMethod",
        "BurnedInAnnotation",
        "RecognizableVisualFeatures",
        "ExtendedOffsetTable",
        "ExtendedOffsetTableLengths",
        "PixelData",
    }
)
UIDS_REMAPPED = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")
# (date, time) pairs shifted together, so that a time near midnight moves its date with it.
DATE_TIME_PAIRS = (
    ("StudyDate", "StudyTime"),
    ("SeriesDate", "SeriesTime"),
    ("AcquisitionDate", "AcquisitionTime"),
    ("ContentDate", "ContentTime"),
)
DATETIMES_SHIFTED = ("AcquisitionDateTime",)
# Type 2 in the patient and general study modules: present, but empty (action Z).
EMPTIED = ("PatientBirthDate", "PatientSex", "AccessionNumber", "StudyID", "ReferringPhysicianName")

BASIC_PROFILE = ("113100", "Basic Application Confidentiality Profile")
MODIFIED_DATES = ("113106", "Retain Longitudinal Temporal Information Modified Dates Option")
METHOD_TEXT = ["PS3.15 E.1-1 Basic Profile", "Retain Longitudinal Modified Dates", "Pneumo"]

# The offset moves dates 1 to 10 years back: never zero, and far enough that no real date survives.
_MIN_DAYS, _MAX_DAYS = 365, 3650


@dataclass(frozen=True)
class Pseudonym:
    """What one patient becomes in every export under one key."""

    patient_id: str
    date_offset: timedelta


def _digest(key: bytes, purpose: str, value: str) -> bytes:
    # The purpose keeps the three uses of one key apart: a UID's digest never equals a patient's.
    return hmac.new(key, f"{purpose}\0{value}".encode(), hashlib.sha256).digest()


def uid_remap(uid: str, *, key: bytes) -> str:
    """The UID an original UID becomes: ``2.25.`` and the first 128 bits of its HMAC (at most 44 characters)."""
    return f"2.25.{int.from_bytes(_digest(key, 'uid', uid.strip())[:16], 'big')}"


def patient_pseudonym(patient_key: str, *, key: bytes) -> Pseudonym:
    digest = _digest(key, "patient", patient_key)
    days = _MIN_DAYS + int.from_bytes(digest[16:20], "big") % (_MAX_DAYS - _MIN_DAYS + 1)
    seconds = int.from_bytes(digest[20:24], "big") % 86400
    return Pseudonym(patient_id=f"ANON-{digest[:8].hex().upper()}", date_offset=-timedelta(days=days, seconds=seconds))


def burned_in_annotation(ds: Dataset) -> str:
    """``YES``, ``NO``, or ``""`` when the header does not say (absent, empty or not a defined term)."""
    value = str(ds.get("BurnedInAnnotation", "") or "").strip().upper()
    return value if value in ("YES", "NO") else ""


def deidentify(ds: Dataset, *, key: bytes, patient_key: str) -> Dataset:
    """A new dataset (with its file meta) holding only what the module docstring lists; ``ds`` is unchanged."""
    pseudonym = patient_pseudonym(patient_key, key=key)
    out = _retained(ds)
    for keyword in UIDS_REMAPPED:
        if ds.get(keyword):
            setattr(out, keyword, uid_remap(str(ds[keyword].value), key=key))
    _shift_temporal(ds, out, pseudonym.date_offset)
    for keyword in EMPTIED:
        setattr(out, keyword, "")
    out.PatientID = pseudonym.patient_id
    out.PatientName = pseudonym.patient_id
    _mark_deidentified(out)
    out.file_meta = _file_meta(ds, out)
    return out


def _retained(ds: Dataset) -> Dataset:
    out = Dataset()
    for element in ds:
        if element.tag.is_private or element.keyword not in RETAINED:
            continue
        if element.VR == "SQ":
            out.add_new(element.tag, "SQ", Sequence([_retained(item) for item in element.value]))
        else:
            out.add(element)
    return out


def _shift_temporal(ds: Dataset, out: Dataset, offset: timedelta) -> None:
    for date_keyword, time_keyword in DATE_TIME_PAIRS:
        _shift_pair(ds, out, date_keyword, time_keyword, offset)
    for keyword in DATETIMES_SHIFTED:
        shifted = _shifted_datetime(ds.get(keyword), offset)
        if shifted is not None:
            setattr(out, keyword, shifted)


def _shift_pair(ds: Dataset, out: Dataset, date_keyword: str, time_keyword: str, offset: timedelta) -> None:
    """Shift a date and its time as one instant; a value that cannot be read is left out, never kept as it was."""
    day, clock = _parsed(ds.get(date_keyword), DA), _parsed(ds.get(time_keyword), TM)
    if day is None and clock is None:
        return
    moment = datetime.combine(day or date(2000, 1, 1), clock or time()) + offset
    if day is not None:
        setattr(out, date_keyword, moment.strftime("%Y%m%d"))
    if clock is not None:
        setattr(out, time_keyword, moment.strftime("%H%M%S.%f" if moment.microsecond else "%H%M%S"))


def _parsed(value: object, kind: type) -> date | time | None:
    if value is None or value == "" or not isinstance(value, str | DA | TM):
        return None
    try:
        parsed = kind(str(value).strip())
    except (ValueError, TypeError):
        return None
    return parsed if isinstance(parsed, date | time) else None


def _shifted_datetime(value: object, offset: timedelta) -> str | None:
    if value is None or value == "" or not isinstance(value, str | DT):
        return None
    try:
        moment = DT(str(value).strip())
    except (ValueError, TypeError):
        return None
    shifted = moment + offset
    text = shifted.strftime("%Y%m%d%H%M%S.%f" if shifted.microsecond else "%Y%m%d%H%M%S")
    if shifted.tzinfo is not None:
        text += shifted.strftime("%z")
    return text


def _code_item(code: tuple[str, str]) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code[0], "DCM", code[1]
    return item


def _mark_deidentified(out: Dataset) -> None:
    out.PatientIdentityRemoved = "YES"
    out.DeidentificationMethod = METHOD_TEXT
    out.DeidentificationMethodCodeSequence = Sequence([_code_item(BASIC_PROFILE), _code_item(MODIFIED_DATES)])
    out.LongitudinalTemporalInformationModified = "MODIFIED"


def _file_meta(ds: Dataset, out: Dataset) -> FileMetaDataset:
    # Built anew: the original's meta may name the sending AE or the implementation of a device.
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = out.get("SOPClassUID", "")
    meta.MediaStorageSOPInstanceUID = out.get("SOPInstanceUID", "")
    meta.TransferSyntaxUID = ds.file_meta.TransferSyntaxUID
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    return meta
