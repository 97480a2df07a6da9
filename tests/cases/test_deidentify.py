"""De-identifying one dataset: every attribute of PS3.15 Table E.1-1 is gone or replaced.

The attributes and their actions come from ``dicom-anonymizer``'s copy of Table E.1-1 (pinned in
requirements.txt for the tests only), not from a list written here: the file under test is filled
with every one of them that pydicom can write.
"""

from __future__ import annotations

import io
from datetime import date, datetime, time, timedelta

import numpy as np
import pytest
from dicomanonymizer.dicomfields_selector import dicom_anonymization_database_selector
from pydicom import dcmread
from pydicom.datadict import dictionary_has_tag, dictionary_VR, keyword_for_tag
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence
from pydicom.tag import Tag
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    RLELossless,
)
from pydicom.valuerep import DA, DT, TM

from cases.deidentify import burned_in_annotation, deidentify, patient_pseudonym, uid_remap
from cases.imaging import decode
from tests.dicom_factory import dataset_bytes, make_dicom

TABLE = dicom_anonymization_database_selector("dicomfields_2026c")
ACTIONS = [name for name in TABLE if name != "ALL_TAGS"]
KEY, OTHER_KEY = b"k" * 32, b"o" * 32
PATIENT = "DEMO\0PID-0001"
TEMPORAL_VRS = ("DA", "TM", "DT")
PAIRS = (
    ("StudyDate", "StudyTime"),
    ("SeriesDate", "SeriesTime"),
    ("AcquisitionDate", "AcquisitionTime"),
    ("ContentDate", "ContentTime"),
)


def _tags(action: str) -> list[int]:
    """The action's tags as pydicom tags; a repeating group (60xx, 50xx) stands for its first group."""
    tags = []
    for entry in TABLE[action]:
        group, element = entry[0], entry[1]
        if len(entry) == 4 and group in (0x5000, 0x6000) and element == 0x0000:
            element = 0x3000  # Curve Data: "any element of the group", written as its data element
        tags.append(Tag(group, element))
    return tags


_VALUES = {
    "AE": "STATION01",
    "AS": "045Y",
    "CS": "SECRET",
    "DA": "20221105",
    "DS": "12.5",
    "DT": "20221105231500",
    "FD": 2.5,
    "FL": 2.5,
    "IS": "7",
    "LO": "Secret long string",
    "LT": "Secret long text",
    "OB": b"\x01\x02",
    "OW": b"\x01\x02",
    "PN": "Secret^Person",
    "SH": "SECRET SH",
    "SL": 7,
    "SS": 7,
    "ST": "Secret short text",
    "TM": "231500",
    "UC": "Secret unlimited",
    "UL": 7,
    "UN": b"\x01\x02",
    "UR": "https://hospital.example/patient/1",
    "US": 7,
    "UT": "Secret unlimited text",
}


def _value(tag: int, vr: str, n: int):
    if vr == "UI":
        return f"1.2.826.0.1.3680043.8.498.{n}"
    if vr == "SQ":
        item = Dataset()
        item.CodeValue, item.CodeMeaning = "SECRET", "Secret meaning"
        item.ReferencedSOPInstanceUID = f"1.2.826.0.1.3680043.8.499.{n}"
        return Sequence([item])
    return _VALUES.get(vr)


def filled_dataset() -> tuple[Dataset, list[int]]:
    """A real chest film with every Table E.1-1 attribute pydicom can write filled in, and a private block."""
    ds = dcmread(io.BytesIO(make_dicom(extra={"BurnedInAnnotation": "NO"})))
    filled = []
    for n, tag in enumerate(sorted({t for action in ACTIONS for t in _tags(action)}), 1):
        if not dictionary_has_tag(tag) or tag.group in (0x0000, 0x0002):
            continue  # newer than pydicom's dictionary, or a command or file meta element: not in a dataset
        vr = dictionary_VR(tag).split(" or ")[0]
        value = _value(tag, vr, n)
        if value is None:
            continue
        if tag not in ds:
            ds.add_new(tag, vr, value)
        filled.append(tag)
    ds.private_block(0x0009, "ACME 1.0", create=True).add_new(0x01, "LO", "Secret private")
    ds.private_block(0x0011, "ACME 1.0", create=True).add_new(0x02, "SQ", Sequence([Dataset()]))
    return dcmread(io.BytesIO(dataset_bytes(ds))), filled


def _round_trip(ds: Dataset) -> Dataset:
    return dcmread(io.BytesIO(dataset_bytes(ds)))


@pytest.fixture(scope="module")
def filled() -> tuple[Dataset, list[int], Dataset]:
    original, tags = filled_dataset()
    return original, tags, _round_trip(deidentify(original, key=KEY, patient_key=PATIENT))


def test_it_fills_most_of_the_table_in_the_test_file(filled) -> None:
    original, tags, _ = filled
    assert len(tags) > 600
    assert all(tag in original for tag in tags)


def test_it_removes_every_attribute_whose_action_is_x(filled) -> None:
    _, tags, out = filled
    x_tags = set(_tags("X_TAGS")) & set(tags)
    assert x_tags
    assert sorted(keyword_for_tag(t) for t in x_tags if t in out) == []


def test_it_remaps_every_uid_of_action_u_and_removes_the_others(filled) -> None:
    original, tags, out = filled
    for tag in set(_tags("U_TAGS")) & set(tags):
        if tag in out:
            assert out[tag].value == uid_remap(original[tag].value, key=KEY) != original[tag].value
    assert out.StudyInstanceUID == uid_remap(original.StudyInstanceUID, key=KEY)
    assert out.SOPInstanceUID == out.file_meta.MediaStorageSOPInstanceUID
    assert out.SOPInstanceUID.startswith("2.25.") and len(out.SOPInstanceUID) <= 64


def test_it_replaces_or_empties_every_attribute_of_the_other_actions(filled) -> None:
    original, tags, out = filled
    kept_as_it_was = []
    for action in ("D_TAGS", "Z_TAGS", "Z_D_TAGS", "X_Z_TAGS", "X_D_TAGS", "X_Z_D_TAGS", "X_Z_U_STAR_TAGS"):
        for tag in set(_tags(action)) & set(tags):
            if tag in out and out[tag].value not in (None, "") and out[tag].value == original[tag].value:
                kept_as_it_was.append(f"{action} {keyword_for_tag(tag)}")
    assert kept_as_it_was == []
    assert out.PatientID == out.PatientName == patient_pseudonym(PATIENT, key=KEY).patient_id
    assert out.PatientID != original.PatientID


def _moment(ds: Dataset, date_keyword: str, time_keyword: str) -> datetime:
    return datetime.combine(DA(ds[date_keyword].value), TM(ds[time_keyword].value))


def test_it_shifts_every_date_and_time_it_keeps_by_the_patients_one_offset(filled) -> None:
    original, _, out = filled
    offset = patient_pseudonym(PATIENT, key=KEY).date_offset
    assert offset != timedelta(0)
    for date_keyword, time_keyword in PAIRS:
        assert _moment(out, date_keyword, time_keyword) - _moment(original, date_keyword, time_keyword) == offset
    assert DT(out.AcquisitionDateTime) - DT(original.AcquisitionDateTime) == offset
    kept = {element.keyword for element in out if element.VR in TEMPORAL_VRS and element.value}
    assert kept == {k for pair in PAIRS for k in pair} | {"AcquisitionDateTime"}


def test_it_removes_private_attributes_and_overlays_everywhere(filled) -> None:
    _, _, out = filled
    found = []
    out.walk(
        lambda ds, element: (
            found.append(element.tag) if element.tag.is_private or element.tag.group >> 8 in (0x50, 0x60) else None
        )
    )
    assert found == []


def test_it_records_what_was_done(filled) -> None:
    _, _, out = filled
    assert out.PatientIdentityRemoved == "YES"
    assert out.LongitudinalTemporalInformationModified == "MODIFIED"
    codes = {(item.CodingSchemeDesignator, item.CodeValue) for item in out.DeidentificationMethodCodeSequence}
    assert codes == {("DCM", "113100"), ("DCM", "113106")}
    assert out.DeidentificationMethod


def test_it_keeps_the_pixels_and_what_a_reader_needs(filled) -> None:
    original, _, out = filled
    assert out.PixelData == original.PixelData
    assert (out.Rows, out.Columns, out.Modality, out.ViewPosition, out.BodyPartExamined) == (
        original.Rows,
        original.Columns,
        "CR",
        "AP",
        "CHEST",
    )
    assert out.file_meta.TransferSyntaxUID == original.file_meta.TransferSyntaxUID
    assert out.BurnedInAnnotation == "NO"


def test_it_gives_one_patient_one_offset_and_one_study_one_uid_under_one_key() -> None:
    first = dcmread(io.BytesIO(make_dicom(study_uid="1.2.3.4", study_date="20240101")))
    second = dcmread(io.BytesIO(make_dicom(study_uid="1.2.3.4", study_date="20240301")))
    a, b = (deidentify(ds, key=KEY, patient_key=PATIENT) for ds in (first, second))
    assert a.StudyInstanceUID == b.StudyInstanceUID
    assert a.SOPInstanceUID != b.SOPInstanceUID
    assert _moment(b, "StudyDate", "StudyTime") - _moment(a, "StudyDate", "StudyTime") == timedelta(days=60)
    again = deidentify(first, key=KEY, patient_key=PATIENT)
    assert (again.StudyInstanceUID, again.StudyDate) == (a.StudyInstanceUID, a.StudyDate)


def test_it_gives_other_uids_pseudonyms_and_offsets_under_another_key() -> None:
    ds = dcmread(io.BytesIO(make_dicom()))
    a, b = deidentify(ds, key=KEY, patient_key=PATIENT), deidentify(ds, key=OTHER_KEY, patient_key=PATIENT)
    assert a.StudyInstanceUID != b.StudyInstanceUID and a.SOPInstanceUID != b.SOPInstanceUID
    assert a.PatientID != b.PatientID
    assert patient_pseudonym(PATIENT, key=KEY).date_offset != patient_pseudonym(PATIENT, key=OTHER_KEY).date_offset


def test_it_moves_a_time_near_midnight_with_its_date() -> None:
    ds = dcmread(io.BytesIO(make_dicom(study_date="20240115", extra={"StudyTime": "235959.5"})))
    out = deidentify(ds, key=KEY, patient_key=PATIENT)
    offset = patient_pseudonym(PATIENT, key=KEY).date_offset
    assert (
        _moment(out, "StudyDate", "StudyTime") == datetime.combine(date(2024, 1, 15), time(23, 59, 59, 500000)) + offset
    )


def test_it_leaves_out_a_date_it_cannot_read_rather_than_keeping_it() -> None:
    ds = dcmread(io.BytesIO(make_dicom(study_date="2024-01-15xx")))
    assert "StudyDate" not in deidentify(ds, key=KEY, patient_key=PATIENT)


@pytest.mark.parametrize(("value", "declared"), [("YES", "YES"), ("no", "NO"), ("", ""), ("MAYBE", ""), (None, "")])
def test_it_reads_what_the_header_declares_about_burned_in_text(value, declared) -> None:
    extra = {"BurnedInAnnotation": value} if value is not None else {}
    assert burned_in_annotation(dcmread(io.BytesIO(make_dicom(extra=extra)))) == declared


@pytest.mark.parametrize(
    "syntax",
    [ImplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian, JPEG2000Lossless, RLELossless],
)
def test_it_keeps_the_transfer_syntax_and_what_pneumo_decodes(syntax) -> None:
    data = make_dicom(3, transfer_syntax=syntax, bits=12, window=(2048.0, 4096.0), voi_lut=True)
    out = dataset_bytes(deidentify(dcmread(io.BytesIO(data)), key=KEY, patient_key=PATIENT))
    before, after = (decode(d, filename="x.dcm", max_bytes=10**8, max_pixels=10**8) for d in (data, out))
    assert dcmread(io.BytesIO(out)).file_meta.TransferSyntaxUID == syntax
    assert np.array_equal(before.model_image, after.model_image)
    assert np.array_equal(before.display_pixels, after.display_pixels)
