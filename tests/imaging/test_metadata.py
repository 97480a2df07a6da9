"""Patient, study and image attributes as the rest of the site needs them."""

from __future__ import annotations

from datetime import date

import pytest

from cases.imaging import decode, parse_age, patient_age_read, readable_person_name
from tests.dicom_factory import make_dicom

LIMITS = {"max_bytes": 64 * 2**20, "max_pixels": 50_000_000}


def metadata(**options):
    return decode(make_dicom(shape=(32, 40), **options), filename="image.dcm", **LIMITS).metadata


def test_it_extracts_the_identifiers_and_descriptions() -> None:
    meta = metadata(
        patient_id="PID-42",
        study_uid="1.2.826.0.1.3680043.10.1",
        series_uid="1.2.826.0.1.3680043.10.2",
        sop_uid="1.2.826.0.1.3680043.10.3",
        accession_number="ACC-7",
        study_description="XR CHEST AP",
        modality="DX",
    )

    assert meta.kind == "dicom"
    assert meta.patient_id == "PID-42"
    assert meta.study_instance_uid == "1.2.826.0.1.3680043.10.1"
    assert meta.series_instance_uid == "1.2.826.0.1.3680043.10.2"
    assert meta.sop_instance_uid == "1.2.826.0.1.3680043.10.3"
    assert meta.sop_class_uid == "1.2.840.10008.5.1.4.1.1.1.1"
    assert meta.accession_number == "ACC-7"
    assert meta.study_description == "XR CHEST AP"
    assert meta.modality == "DX"


def test_it_extracts_the_image_description() -> None:
    meta = metadata(bits=12, body_part="CHEST", view="PA", pixel_spacing=(0.15, 0.2))

    assert (meta.rows, meta.columns, meta.bits_allocated, meta.bits_stored) == (32, 40, 16, 12)
    assert meta.number_of_frames == 1 and not meta.is_multiframe
    assert meta.photometric_interpretation == "MONOCHROME2"
    assert meta.transfer_syntax_uid == "1.2.840.10008.1.2.1"
    assert (meta.body_part, meta.view_position) == ("CHEST", "PA")
    assert meta.pixel_spacing == (0.15, 0.2)


def test_it_extracts_patient_demographics() -> None:
    meta = metadata(patient_name="DOE^JANE^M", birth_date="20200301", sex="F", study_date="20240115")

    assert meta.patient_name == "DOE, JANE M"
    assert meta.patient_name_dicom == "DOE^JANE^M"
    assert meta.birth_date == date(2020, 3, 1)
    assert meta.study_date == date(2024, 1, 15)
    assert meta.sex == "F"


def test_it_leaves_absent_attributes_as_none() -> None:
    meta = metadata(patient_name=None, birth_date=None, sex=None, body_part=None, view=None, pixel_spacing=None)

    assert meta.patient_name is None and meta.birth_date is None and meta.sex is None
    assert meta.body_part is None and meta.view_position is None and meta.pixel_spacing is None


@pytest.mark.parametrize(
    ("charset", "name", "readable"),
    [
        ("ISO_IR 100", "Müller^Jürgen", "Müller, Jürgen"),
        ("ISO_IR 192", "Иванов^Иван", "Иванов, Иван"),
        ("ISO_IR 192", "王^小明", "王, 小明"),
        ("ISO_IR 144", "Люксембург", "Люксембург"),
        (["", "ISO 2022 IR 87"], "Yamada^Tarou=山田^太郎=やまだ^たろう", "Yamada, Tarou = 山田, 太郎 = やまだ, たろう"),
    ],
    ids=["latin-1", "utf-8-cyrillic", "utf-8-chinese", "cyrillic", "iso-2022-japanese"],
)
def test_it_decodes_non_ascii_names_in_the_files_character_set(charset, name: str, readable: str) -> None:
    meta = metadata(charset=charset, patient_name=name)

    assert meta.patient_name == readable
    assert meta.patient_name_dicom == name


def test_it_keeps_markup_in_names_verbatim_for_the_template_to_escape() -> None:
    meta = metadata(patient_name="<script>alert(1)</script>", patient_id='"><img src=x onerror=alert(1)>')

    assert meta.patient_name == "<script>alert(1)</script>"
    assert meta.patient_id == '"><img src=x onerror=alert(1)>'


@pytest.mark.parametrize(
    ("patient_age", "years"),
    [
        ("004Y", 4.0),
        ("018M", 1.5),
        ("030D", 30 / 365.25),
        ("002W", 14 / 365.25),
        ("4y", 4.0),
        ("58", 58.0),
        ("", None),
        ("old", None),
    ],
)
def test_it_parses_dicom_age_strings(patient_age: str, years: float | None) -> None:
    assert parse_age(patient_age) == pytest.approx(years) if years is not None else parse_age(patient_age) is None


def test_it_prefers_the_recorded_age_to_the_dates() -> None:
    assert (
        patient_age_read(stated="002Y", birth_date=date(2010, 1, 1), on=date(2024, 1, 1), origin="dicom").years == 2.0
    )


def test_it_computes_the_age_from_birth_and_study_dates_when_no_age_is_recorded() -> None:
    meta = metadata(patient_age=None, birth_date="20210115", study_date="20240115")

    assert meta.age_years == pytest.approx(3.0, abs=0.01)


def test_it_leaves_the_age_unknown_without_age_or_birth_date() -> None:
    assert metadata(patient_age=None, birth_date=None).age_years is None
    before_birth = patient_age_read(stated=None, birth_date=date(2024, 2, 1), on=date(2024, 1, 1), origin="dicom")
    assert before_birth.years is None


def test_it_ignores_malformed_dates() -> None:
    meta = metadata(birth_date="20241345", patient_age=None)

    assert meta.birth_date is None and meta.age_years is None


def test_it_formats_person_names_readably() -> None:
    assert readable_person_name("DOE^JOHN^^DR^JR") == "DOE, DR JOHN JR"
    assert readable_person_name("^Cher") == "Cher"
    assert readable_person_name("") is None
