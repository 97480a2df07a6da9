"""The DICOM JSON model (PS3.18 F.2) for QIDO-RS results, WADO-RS metadata and STOW-RS responses.

Pure: no Django. Attributes are set on a pydicom ``Dataset`` and written with
its ``to_json_dict``, so VRs, person names and empty values (an attribute
with a ``vr`` and no ``Value``) follow the standard without a hand-made table.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from typing import Any

from pydicom import dcmread
from pydicom.datadict import dictionary_VR
from pydicom.dataset import Dataset
from pydicom.sequence import Sequence

UTF8 = "ISO_IR 192"  # the database holds Unicode text
# Bulk pixel data is left out of metadata (PS3.18 allows omitting it): there is no bulk data resource here.
PIXEL_TAGS = (0x7FE00010, 0x7FE00008, 0x7FE00009)
# STOW-RS failure reasons (PS3.18 Table I.2-1 and PS3.4 C-STORE statuses).
CANNOT_UNDERSTAND = 0xC000
OUT_OF_RESOURCES = 0xA700


def dicom_date(value: date | None) -> str:
    return value.strftime("%Y%m%d") if value else ""


def person_name(readable: str) -> str:
    """Ingest keeps names readable ("Family, Given Middle"); DICOM wants "Family^Given Middle" back.

    Middle names, prefixes and suffixes stay in the given-name component: the readable form no longer
    tells them apart. A name without a comma (typed at upload, or already in DICOM form) is kept.
    """
    groups = []
    for group in readable.split(" = "):
        family, comma, rest = group.partition(", ")
        groups.append(f"{family}^{rest}" if comma and "^" not in group else group)
    return "=".join(groups)


def dataset_json(values: Mapping[str, Any]) -> dict[str, Any]:
    """A DICOM JSON object of the given keywords; ``None`` and ``""`` become attributes without a value."""
    ds = Dataset()
    for keyword, value in values.items():
        if value is None or value == "":
            ds.add_new(keyword, dictionary_VR(keyword), None)  # "" would not do for a number's VR
        else:
            setattr(ds, keyword, value)
    return ds.to_json_dict()


@dataclass(frozen=True)
class StoredRef:
    sop_class_uid: str
    sop_instance_uid: str
    retrieve_url: str = ""


@dataclass(frozen=True)
class FailedRef:
    sop_class_uid: str
    sop_instance_uid: str
    reason: int


def stow_response(*, stored: Iterable[StoredRef], failed: Iterable[FailedRef], retrieve_url: str) -> dict[str, Any]:
    """The Store Instances response (PS3.18 Table 10.5.3-1): ReferencedSOPSequence and FailedSOPSequence."""
    ds = Dataset()
    if retrieve_url:
        ds.RetrieveURL = retrieve_url
    referenced = [_item(ReferencedSOPClassUID=r.sop_class_uid, ReferencedSOPInstanceUID=r.sop_instance_uid,
                        RetrieveURL=r.retrieve_url) for r in stored]  # fmt: skip
    failures = [_failure(f) for f in failed]
    if referenced:
        ds.ReferencedSOPSequence = Sequence(referenced)
    if failures:
        ds.FailedSOPSequence = Sequence(failures)
    return ds.to_json_dict()


def _failure(ref: FailedRef) -> Dataset:
    # The UIDs stay present (empty) when a part could not be read: clients read them from every failure item.
    item = Dataset()
    item.ReferencedSOPClassUID = ref.sop_class_uid
    item.ReferencedSOPInstanceUID = ref.sop_instance_uid
    item.FailureReason = ref.reason
    return item


def _item(**values: Any) -> Dataset:
    item = Dataset()
    for keyword, value in values.items():
        if value not in (None, ""):
            setattr(item, keyword, value)
    return item


def metadata_json(data: bytes) -> dict[str, Any]:
    """A stored instance's header as DICOM JSON, without its pixel data; the file meta group is left out too."""
    ds = dcmread(io.BytesIO(data), stop_before_pixels=True)
    for tag in PIXEL_TAGS:
        if tag in ds:
            del ds[tag]
    return ds.to_json_dict()


def header_uids(head: bytes) -> tuple[str, str]:
    """``(SOPClassUID, SOPInstanceUID)`` from the first bytes of a part, to name it in a failure; empty if unreadable.

    Only a bounded head is parsed: the whole part was refused by ingest (decoded in a guarded child), and
    this reading must not be a way around that guard.
    """
    try:
        ds = dcmread(io.BytesIO(head), force=True, stop_before_pixels=True, specific_tags=["SOPClassUID",
                     "SOPInstanceUID", "MediaStorageSOPClassUID", "MediaStorageSOPInstanceUID"])  # fmt: skip
        meta = getattr(ds, "file_meta", Dataset())
        sop_class = ds.get("SOPClassUID") or meta.get("MediaStorageSOPClassUID") or ""
        sop_instance = ds.get("SOPInstanceUID") or meta.get("MediaStorageSOPInstanceUID") or ""
        return _uid_text(sop_class), _uid_text(sop_instance)
    except (Exception, RecursionError):  # noqa: BLE001 - any refused bytes: the failure is still reported, unnamed
        return "", ""


def _uid_text(value: Any) -> str:
    text = str(value).strip()
    return text if len(text) <= 64 and all(c.isdigit() or c == "." for c in text) else ""
