"""QIDO-RS: reading the query (PS3.18 8.3.4) and writing each level's required return keys (PS3.18 Table 6.7.1-2).

Values come from the database (``Study``, ``Patient``, ``Image``) and the
registered result objects; what Pneumo does not store (StudyTime, StudyID,
ReferringPhysicianName, SeriesNumber, InstanceNumber) is returned empty, as
the model allows for an attribute without a value. ``includefield`` and
``fuzzymatching`` are accepted and ignored: every match carries the required
keys, and matching is exact or with ``*``/``?`` wild cards.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime
from typing import Any

from cases.dicomweb.instances import Instance, Series, StudyFilters
from cases.dicomweb.json_model import UTF8, dataset_json, dicom_date, person_name
from cases.models import Study

DEFAULT_LIMIT = 100
MAX_LIMIT = 1000
# Attributes may be named by keyword or by tag (PS3.18 8.3.4.1).
TAGS = {
    "00100020": "PatientID",
    "00080020": "StudyDate",
    "00080050": "AccessionNumber",
    "0020000D": "StudyInstanceUID",
    "00080061": "ModalitiesInStudy",
    "00080060": "Modality",
    "0020000E": "SeriesInstanceUID",
    "00080018": "SOPInstanceUID",
}
_DATE = re.compile(r"^\d{8}$")


class QueryError(ValueError):
    """A query parameter that cannot be read; the message is for the client."""


def query_values(params: Mapping[str, Sequence[str]]) -> dict[str, list[str]]:
    """Parameters by keyword, each a list of values (repeated, comma- or backslash-separated)."""
    values: dict[str, list[str]] = {}
    for name, given in params.items():
        keyword = TAGS.get(name.upper(), name)
        for value in given:
            values.setdefault(keyword, []).extend(v for v in re.split(r"[,\\]", value.strip()) if v)
    return values


def _one(values: dict[str, list[str]], keyword: str) -> str:
    found = values.get(keyword, [])
    if len(found) > 1:
        raise QueryError(f"{keyword} takes one value.")
    return found[0] if found else ""


def _number(values: dict[str, list[str]], keyword: str, default: int, maximum: int) -> int:
    text = _one(values, keyword)
    if not text:
        return default
    if not (text.isascii() and text.isdigit()):
        raise QueryError(f"{keyword} is a whole number.")
    return min(int(text), maximum)


def _day(text: str) -> date | None:
    if not text:
        return None
    if not _DATE.match(text):
        raise QueryError("StudyDate is YYYYMMDD, or a range YYYYMMDD-YYYYMMDD (either end may be left open).")
    try:
        return datetime.strptime(text, "%Y%m%d").date()
    except ValueError as exc:
        raise QueryError(f"StudyDate {text} is not a date.") from exc


def date_range(text: str) -> tuple[date | None, date | None]:
    if "-" not in text:
        day = _day(text)
        return day, day
    start, _, end = text.partition("-")
    if not start and not end:
        raise QueryError("StudyDate's range needs at least one end.")
    return _day(start), _day(end)


def paging(values: dict[str, list[str]]) -> tuple[int, int]:
    return _number(values, "limit", DEFAULT_LIMIT, MAX_LIMIT), _number(values, "offset", 0, 2**31)


def study_filters(values: dict[str, list[str]]) -> StudyFilters:
    date_from, date_to = date_range(_one(values, "StudyDate"))
    limit, offset = paging(values)
    return StudyFilters(
        patient_id=_one(values, "PatientID"),
        study_uids=tuple(values.get("StudyInstanceUID", [])),
        accession_number=_one(values, "AccessionNumber"),
        date_from=date_from,
        date_to=date_to,
        modalities=frozenset(values.get("ModalitiesInStudy", [])),
        limit=limit,
        offset=offset,
    )


def series_matching(series: list[Series], values: dict[str, list[str]]) -> list[Series]:
    modalities, uids = set(values.get("Modality", [])), set(values.get("SeriesInstanceUID", []))
    found = [s for s in series if (not modalities or s.modality in modalities) and (not uids or s.uid in uids)]
    limit, offset = paging(values)
    return found[offset : offset + limit]


def instances_matching(instances: list[Instance], values: dict[str, list[str]]) -> list[Instance]:
    uids = set(values.get("SOPInstanceUID", []))
    found = [i for i in instances if not uids or i.sop_uid in uids]
    limit, offset = paging(values)
    return found[offset : offset + limit]


# --- Results ------------------------------------------------------------------------------------

Url = Callable[..., str]  # url(study=..., series=..., instance=...): an absolute WADO-RS address


def study_json(study: Study, instances: list[Instance], url: Url) -> dict[str, Any]:
    patient = study.patient
    return dataset_json(
        {
            "SpecificCharacterSet": UTF8,
            "StudyDate": dicom_date(study.study_date),
            "StudyTime": None,
            "AccessionNumber": study.accession_number,
            "InstanceAvailability": "ONLINE",
            "ModalitiesInStudy": sorted({i.modality for i in instances if i.modality}),
            "ReferringPhysicianName": None,
            "RetrieveURL": url(study=study.study_instance_uid),
            "PatientName": person_name(patient.name),
            "PatientID": patient.patient_id,
            "PatientBirthDate": dicom_date(patient.birth_date),
            "PatientSex": patient.sex,
            "StudyInstanceUID": study.study_instance_uid,
            "StudyID": None,
            "StudyDescription": study.description,
            "NumberOfStudyRelatedSeries": len({i.series_uid for i in instances}),
            "NumberOfStudyRelatedInstances": len(instances),
        }
    )


def series_json(series: Series, url: Url) -> dict[str, Any]:
    study_uid = series.study.study_instance_uid
    return dataset_json(
        {
            "SpecificCharacterSet": UTF8,
            "Modality": series.modality,
            "SeriesDescription": series.description,
            "RetrieveURL": url(study=study_uid, series=series.uid),
            "StudyInstanceUID": study_uid,
            "SeriesInstanceUID": series.uid,
            "SeriesNumber": None,
            "NumberOfSeriesRelatedInstances": len(series.instances),
        }
    )


def instance_json(instance: Instance, url: Url) -> dict[str, Any]:
    study_uid = instance.study.study_instance_uid
    return dataset_json(
        {
            "SpecificCharacterSet": UTF8,
            "SOPClassUID": instance.sop_class_uid,
            "SOPInstanceUID": instance.sop_uid,
            "InstanceAvailability": "ONLINE",
            "RetrieveURL": url(study=study_uid, series=instance.series_uid, instance=instance.sop_uid),
            "StudyInstanceUID": study_uid,
            "SeriesInstanceUID": instance.series_uid,
            "Modality": instance.modality,
            "InstanceNumber": None,
            "Rows": instance.rows or None,
            "Columns": instance.columns or None,
            "BitsAllocated": (8 if instance.bits_stored <= 8 else 16) if instance.rows else None,
            "NumberOfFrames": instance.frames if instance.rows else None,
        }
    )
