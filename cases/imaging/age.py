"""A patient's age at the time of the image, and where it was read from.

One rule for every door: a DICOM file states its age in PatientAge or lets it
be counted from PatientBirthDate to the study date; a PNG or JPEG gets the age
or birth date typed at upload. Malformed values never fail an upload: they
leave the age unknown and say why, so the reader sees "age unknown: PatientAge
'12X' is not a valid age" rather than an error or a silent gap.

Decisions worth knowing:

* PatientAge is read in its standard form (``nnnD``, ``nnnW``, ``nnnM``,
  ``nnnY``) and as the common non-standard plain number of years (``58``,
  ``6``, ``058``), with spaces or a lower-case unit tolerated.
* A stated age wins over the dates; a malformed stated age falls back to the
  dates, and the reason stays as a note beside the counted age.
* Zero is a valid age (a newborn); more than 130 years is not plausible.
* A birth date with no date to count to (a DICOM file without StudyDate or
  AcquisitionDate) leaves the age unknown: counting to today would make an
  archived film of a child an adult's.

No Django here: pages, the API and ingest reach this through ``cases.ingest``.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import date
from typing import Literal

from .eligibility import describe_age

AgeSource = Literal["dicom_age", "dicom_birth_date", "upload_form", "unknown"]
Origin = Literal["dicom", "upload"]

DAYS_PER_YEAR = 365.25
MAX_PLAUSIBLE_YEARS = 130.0
_UNITS = {"D": 1 / DAYS_PER_YEAR, "W": 7 / DAYS_PER_YEAR, "M": 1 / 12, "Y": 1.0}
# Six digits at most: '0058Y' is a sloppy 58, a thousand-digit string is not an age.
_AGE = re.compile(r"^\s*(\d{1,6}(?:\.\d{1,6})?)\s*([DWMY])?\s*$", re.IGNORECASE)
_DATE = re.compile(r"^\s*(\d{4})[.\-]?(\d{2})[.\-]?(\d{2})")
_QUOTED_MAX = 24  # a quoted value in a reason: enough to recognise it, short enough to show


@dataclass(frozen=True)
class _Labels:
    stated_source: AgeSource
    dated_source: AgeSource
    stated: str
    birth: str
    to: str
    nothing: str


_LABELS: dict[Origin, _Labels] = {
    "dicom": _Labels(
        "dicom_age",
        "dicom_birth_date",
        "PatientAge",
        "PatientBirthDate",
        "the study date",
        "The file records neither PatientAge nor PatientBirthDate",
    ),
    "upload": _Labels(
        "upload_form",
        "upload_form",
        "the age entered at upload",
        "the birth date entered at upload",
        "the upload date",
        "No age or birth date was entered at upload",
    ),
}

_SOURCE_PHRASES: dict[str, str] = {
    "dicom_age": "from DICOM PatientAge",
    "dicom_birth_date": "from the DICOM birth and study dates",
    "upload_form": "entered at upload",
}


@dataclass(frozen=True)
class PatientAge:
    """``years`` is ``None`` exactly when ``source`` is ``unknown``; ``reason`` says why, or notes a value skipped."""

    years: float | None
    source: AgeSource
    reason: str = ""


def patient_age_read(
    *,
    stated: str | float | None,
    birth_date: date | str | None,
    on: date | None,
    origin: Origin,
) -> PatientAge:
    """The age on the date ``on``: the stated age (DICOM PatientAge text or typed years), else birth date to ``on``."""
    labels = _LABELS[origin]
    stated_years, stated_problem = _stated_years(stated, labels.stated)
    if stated_years is not None:
        return PatientAge(stated_years, labels.stated_source)
    dated_years, dated_problem = _dated_years(birth_date, on, labels)
    problems = [p for p in (stated_problem, dated_problem) if p]
    if dated_years is not None:
        return PatientAge(dated_years, labels.dated_source, "; ".join(problems))
    return PatientAge(None, "unknown", "; ".join(problems) or labels.nothing)


def years_between(birth_date: date, on: date) -> float | None:
    """The birth-date arithmetic every door shares: ``None`` when the birth date is after ``on``."""
    days = (on - birth_date).days
    return days / DAYS_PER_YEAR if days >= 0 else None


def parse_date(text: str | None) -> date | None:
    """A DICOM date (``YYYYMMDD``, also ``YYYY-MM-DD`` or ``YYYY.MM.DD``); ``None`` when it is no real date."""
    match = _DATE.match(text or "")
    if not match:
        return None
    try:
        return date(*(int(part) for part in match.groups()))
    except ValueError:
        return None


def parse_age(text: str | None) -> float | None:
    """A PatientAge string in years, ``None`` when absent, malformed or not plausible."""
    return _stated_years(text, "PatientAge")[0]


def age_statement(years: float | None, source: str, reason: str = "") -> str:
    """What a reader sees: 'age 3 years (from DICOM PatientAge)', 'age unknown: PatientAge '12X' is not a valid age'."""
    if years is None:
        return f"age unknown: {reason}" if reason else "age unknown"
    phrase = _SOURCE_PHRASES.get(source, "source not recorded")
    return f"age {describe_age(years)} ({phrase}{'; ' + reason if reason else ''})"


def _stated_years(stated: str | float | None, label: str) -> tuple[float | None, str]:
    if stated is None or (isinstance(stated, str) and not stated.strip()):
        return None, ""
    if isinstance(stated, str):
        return _age_text_years(stated, label)
    years = float(stated)
    if not math.isfinite(years) or years < 0:
        return None, _sentence(f"{label} ({stated:g}) is not a valid age")
    return _plausible(years, f"{label} ({stated:g})")


def _age_text_years(text: str, label: str) -> tuple[float | None, str]:
    quoted = _sentence(f"{label} '{_quoted(text)}'")
    match = _AGE.match(text)
    if not match:
        return None, f"{quoted} is not a valid age"
    # No unit is the common non-standard plain number of years ('58').
    years = float(match.group(1)) * _UNITS[(match.group(2) or "Y").upper()]
    return _plausible(years, quoted)


def _plausible(years: float, described: str) -> tuple[float | None, str]:
    if years > MAX_PLAUSIBLE_YEARS:
        return None, _sentence(f"{described} is not a plausible age (over {MAX_PLAUSIBLE_YEARS:g} years)")
    return years, ""


def _dated_years(birth_date: date | str | None, on: date | None, labels: _Labels) -> tuple[float | None, str]:
    if birth_date is None or (isinstance(birth_date, str) and not birth_date.strip()):
        return None, ""
    born = birth_date if isinstance(birth_date, date) else parse_date(birth_date)
    if born is None:
        return None, _sentence(f"{labels.birth} '{_quoted(str(birth_date))}' is not a valid date")
    if on is None:
        return None, _sentence(f"{labels.birth} is recorded but there is no study date to count the age to")
    years = years_between(born, on)
    if years is None:
        return None, _sentence(f"{labels.birth} {born:%Y-%m-%d} is after {labels.to} {on:%Y-%m-%d}")
    return _plausible(years, f"the age counted from {labels.birth}")


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _quoted(text: str) -> str:
    text = text.strip()
    return text if len(text) <= _QUOTED_MAX else text[: _QUOTED_MAX - 1] + "…"
