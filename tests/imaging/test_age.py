"""A patient's age at imaging: every form DICOM files and uploads write it in, and every way it can be wrong."""

from __future__ import annotations

from datetime import date

import pytest

from cases.imaging import PatientAge, age_statement, decode, parse_age, patient_age_read
from tests.dicom_factory import make_dicom

LIMITS = {"max_bytes": 64 * 2**20, "max_pixels": 50_000_000}
STUDY = date(2024, 1, 15)


def dicom_age(stated: str | None, birth_date: str | None = None, on: date | None = STUDY) -> PatientAge:
    return patient_age_read(stated=stated, birth_date=birth_date, on=on, origin="dicom")


@pytest.mark.parametrize(
    ("stated", "years"),
    [
        ("004Y", 4.0),
        ("058Y", 58.0),
        ("018M", 1.5),
        ("002W", 14 / 365.25),
        ("030D", 30 / 365.25),
        ("999D", 999 / 365.25),
        ("999M", 999 / 12),
        ("4y", 4.0),
        ("58y", 58.0),
        ("58Y", 58.0),
        (" 6 Y ", 6.0),
    ],
)
def test_it_reads_the_standard_age_string_in_each_unit(stated: str, years: float) -> None:
    age = dicom_age(stated)

    assert age.years == pytest.approx(years)
    assert (age.source, age.reason) == ("dicom_age", "")


@pytest.mark.parametrize(("stated", "years"), [("58", 58.0), ("6", 6.0), ("  6", 6.0), ("006", 6.0), ("2.5", 2.5)])
def test_it_reads_a_plain_number_as_years(stated: str, years: float) -> None:
    age = dicom_age(stated)

    assert age.years == pytest.approx(years)
    assert age.source == "dicom_age"


@pytest.mark.parametrize("stated", ["000Y", "0", "000D"])
def test_it_takes_zero_as_a_newborn_not_as_missing(stated: str) -> None:
    assert dicom_age(stated) == PatientAge(0.0, "dicom_age")


@pytest.mark.parametrize(
    ("stated", "reason"),
    [
        ("abc", "PatientAge 'abc' is not a valid age"),
        ("12X", "PatientAge '12X' is not a valid age"),
        ("-5", "PatientAge '-5' is not a valid age"),
        ("-005Y", "PatientAge '-005Y' is not a valid age"),
        ("5 years", "PatientAge '5 years' is not a valid age"),
        ("999Y", "PatientAge '999Y' is not a plausible age (over 130 years)"),
        ("1000", "PatientAge '1000' is not a plausible age (over 130 years)"),
        ("9" * 400, "PatientAge '" + "9" * 23 + "…' is not a valid age"),
    ],
)
def test_it_leaves_a_malformed_age_unknown_and_says_why(stated: str, reason: str) -> None:
    assert dicom_age(stated) == PatientAge(None, "unknown", reason)


@pytest.mark.parametrize("stated", [None, "", "   "])
def test_it_treats_an_empty_age_as_not_recorded(stated: str | None) -> None:
    assert dicom_age(stated) == PatientAge(None, "unknown", "The file records neither PatientAge nor PatientBirthDate")


def test_it_counts_the_age_from_the_birth_date_to_the_study_date() -> None:
    age = dicom_age(None, birth_date="20210115")

    assert age.years == pytest.approx(3.0, abs=0.01)
    assert (age.source, age.reason) == ("dicom_birth_date", "")


def test_it_prefers_the_stated_age_to_the_dates() -> None:
    assert dicom_age("002Y", birth_date="20100101") == PatientAge(2.0, "dicom_age")


def test_it_falls_back_to_the_dates_when_the_stated_age_is_malformed_and_keeps_the_reason() -> None:
    age = dicom_age("12X", birth_date="20210115")

    assert age.years == pytest.approx(3.0, abs=0.01)
    assert (age.source, age.reason) == ("dicom_birth_date", "PatientAge '12X' is not a valid age")


def test_it_refuses_a_birth_date_after_the_study_date() -> None:
    assert dicom_age(None, birth_date="20240201") == PatientAge(
        None, "unknown", "PatientBirthDate 2024-02-01 is after the study date 2024-01-15"
    )


def test_it_counts_a_birth_on_the_study_day_as_age_zero() -> None:
    assert dicom_age(None, birth_date="20240115") == PatientAge(0.0, "dicom_birth_date")


def test_it_leaves_the_age_unknown_when_a_birth_date_has_no_study_date_to_count_to() -> None:
    # Counting to today would turn an archived film of a child into an adult's.
    assert dicom_age(None, birth_date="20210115", on=None) == PatientAge(
        None, "unknown", "PatientBirthDate is recorded but there is no study date to count the age to"
    )


def test_it_says_when_the_birth_date_is_no_real_date() -> None:
    assert dicom_age(None, birth_date="20241345") == PatientAge(
        None, "unknown", "PatientBirthDate '20241345' is not a valid date"
    )


def test_it_gives_every_reason_when_both_the_age_and_the_birth_date_are_malformed() -> None:
    assert dicom_age("abc", birth_date="1899x") == PatientAge(
        None, "unknown", "PatientAge 'abc' is not a valid age; PatientBirthDate '1899x' is not a valid date"
    )


def test_it_refuses_an_implausible_age_counted_from_the_dates() -> None:
    assert dicom_age(None, birth_date="18500101") == PatientAge(
        None, "unknown", "The age counted from PatientBirthDate is not a plausible age (over 130 years)"
    )


def test_it_takes_an_age_typed_at_upload_before_the_typed_birth_date() -> None:
    age = patient_age_read(stated=58, birth_date=date(2021, 1, 15), on=STUDY, origin="upload")

    assert age == PatientAge(58.0, "upload_form")


def test_it_counts_a_typed_birth_date_to_the_upload_date() -> None:
    age = patient_age_read(stated=None, birth_date=date(2021, 1, 15), on=STUDY, origin="upload")

    assert age.years == pytest.approx(3.0, abs=0.01)
    assert age.source == "upload_form"


@pytest.mark.parametrize(
    ("stated", "reason"),
    [
        (-1.0, "The age entered at upload (-1) is not a valid age"),
        (float("nan"), "The age entered at upload (nan) is not a valid age"),
        (200.0, "The age entered at upload (200) is not a plausible age (over 130 years)"),
    ],
)
def test_it_leaves_an_impossible_typed_age_unknown_and_says_why(stated: float, reason: str) -> None:
    assert patient_age_read(stated=stated, birth_date=None, on=STUDY, origin="upload") == PatientAge(
        None, "unknown", reason
    )


def test_it_says_when_nothing_was_entered_at_upload() -> None:
    assert patient_age_read(stated=None, birth_date=None, on=STUDY, origin="upload") == PatientAge(
        None, "unknown", "No age or birth date was entered at upload"
    )


def test_it_parses_an_age_string_alone() -> None:
    assert parse_age("058Y") == 58.0
    assert parse_age("58") == 58.0
    assert parse_age("12X") is None


@pytest.mark.parametrize(
    ("years", "source", "reason", "shown"),
    [
        (3.0, "dicom_age", "", "age 3 years (from DICOM PatientAge)"),
        (1.5, "dicom_birth_date", "", "age 18 months (from the DICOM birth and study dates)"),
        (58.0, "upload_form", "", "age 58 years (entered at upload)"),
        (
            3.0,
            "dicom_birth_date",
            "PatientAge '12X' is not a valid age",
            "age 3 years (from the DICOM birth and study dates; PatientAge '12X' is not a valid age)",
        ),
        (None, "unknown", "PatientAge '12X' is not a valid age", "age unknown: PatientAge '12X' is not a valid age"),
        (None, "unknown", "", "age unknown"),
        (4.0, "unknown", "", "age 4 years (source not recorded)"),  # images stored before the source was kept
    ],
)
def test_it_states_the_age_with_its_source_or_the_reason_it_is_unknown(
    years: float | None, source: str, reason: str, shown: str
) -> None:
    assert age_statement(years, source, reason) == shown


@pytest.mark.parametrize(
    ("tags", "years", "source"),
    [
        ({"patient_age": "58"}, 58.0, "dicom_age"),
        ({"patient_age": None, "birth_date": "20210115"}, 3.0, "dicom_birth_date"),
        ({"patient_age": None, "birth_date": "20210115", "study_date": None}, None, "unknown"),
    ],
)
def test_it_reads_the_age_out_of_a_dicom_file(tags: dict, years: float | None, source: str) -> None:
    meta = decode(make_dicom(shape=(32, 40), **tags), filename="image.dcm", **LIMITS).metadata

    assert meta.age_years == (pytest.approx(years, abs=0.01) if years is not None else None)
    assert meta.age_source == source


def test_it_counts_to_the_acquisition_date_when_the_study_date_is_missing() -> None:
    data = make_dicom(
        shape=(32, 40), patient_age=None, birth_date="20210115", study_date=None, extra={"AcquisitionDate": "20230115"}
    )

    meta = decode(data, filename="image.dcm", **LIMITS).metadata

    assert meta.age_years == pytest.approx(2.0, abs=0.01)
    assert meta.age_source == "dicom_birth_date"
