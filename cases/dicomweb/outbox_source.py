"""Pneumo's own result objects (AI result SR, heatmap secondary capture, report SR) as instances of their study.

They are the objects the result outbox stored (``cases.models.OutboxItem``:
one file per SOP Instance UID, shared by the items of every destination), so
DICOMweb lists exactly what was sent, or is being sent, to the PACS. An object
is stored only when some destination wants it: a site whose results go to no
PACS has none here. Their series UID and description are read from the stored
file once and cached (a stored object never changes: it is named by its UID).
Registered with ``instances.register_instance_source`` on import (the views
import this module).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator, Sequence

from django.core.cache import cache
from django.core.files.storage import default_storage
from django.db.models import Q, QuerySet
from pydicom import dcmread

from cases.ai_modes import shadowed_studies_q
from cases.dicomweb.instances import Instance, InstanceSource, register_instance_source
from cases.models import OutboxItem, ResultObject

logger = logging.getLogger(__name__)

MODALITY = {ResultObject.AI_SR: "SR", ResultObject.REPORT_SR: "SR", ResultObject.SECONDARY_CAPTURE: "OT"}
HEADER_SECONDS = 24 * 3600
_HEADER_TAGS = ["SeriesInstanceUID", "SeriesDescription", "Rows", "Columns", "BitsStored", "NumberOfFrames"]


def _shown() -> QuerySet[OutboxItem]:
    # An AI object of a shadowed study (sent before its site went shadow) is not listed until it is signed.
    ai_kinds = (ResultObject.AI_SR, ResultObject.SECONDARY_CAPTURE)
    return OutboxItem.objects.exclude(Q(kind__in=ai_kinds) & shadowed_studies_q("study__"))


def result_instances(study_ids: Sequence[int]) -> Iterator[Instance]:
    items = (
        _shown()
        .filter(study_id__in=study_ids)
        .select_related("study__patient", "study__site")
        .order_by("study_id", "created_at", "pk")
    )
    seen: set[tuple[int, str]] = set()
    for item in items:
        if (item.study_id, item.sop_instance_uid) in seen:
            continue  # the same object queued for another destination
        seen.add((item.study_id, item.sop_instance_uid))
        header = _header(item.file.name)
        if header is not None:
            yield _instance(item, header)


def _instance(item: OutboxItem, header: dict) -> Instance:
    return Instance(
        study=item.study,
        series_uid=header["series_uid"],
        sop_uid=item.sop_instance_uid,
        sop_class_uid=item.sop_class_uid,
        modality=MODALITY.get(item.kind, "OT"),
        transfer_syntax=header["transfer_syntax"],
        rows=header["rows"],
        columns=header["columns"],
        bits_stored=header["bits_stored"],
        frames=header["frames"],
        series_description=header["series_description"],
        opener=functools.partial(_read, item.file.name),
    )


def _read(name: str) -> bytes:
    with default_storage.open(name, "rb") as handle:
        return handle.read()


def _header(name: str) -> dict | None:
    key = f"pneumo:dicomweb:result-header:{name}"
    header = cache.get(key)
    if header is None:
        try:
            with default_storage.open(name, "rb") as handle:
                ds = dcmread(handle, stop_before_pixels=True, specific_tags=_HEADER_TAGS)
        except (OSError, ValueError) as error:  # a missing or damaged object is left out, not a failed search
            logger.warning("result object %s unreadable (%s)", name, type(error).__name__)
            return None
        header = {
            "series_uid": str(ds.get("SeriesInstanceUID", "")),
            "series_description": str(ds.get("SeriesDescription", "")),
            "transfer_syntax": str(ds.file_meta.get("TransferSyntaxUID", "")),
            "rows": int(ds.get("Rows") or 0),
            "columns": int(ds.get("Columns") or 0),
            "bits_stored": int(ds.get("BitsStored") or 8),
            "frames": int(ds.get("NumberOfFrames") or 1),
        }
        cache.set(key, header, HEADER_SECONDS)
    return header if header["series_uid"] else None


def result_study_ids(modalities: set[str]) -> QuerySet:
    kinds = [kind for kind, modality in MODALITY.items() if not modalities or modality in modalities]
    return _shown().filter(kind__in=kinds).values("study_id")


register_instance_source(
    InstanceSource(name="outbox", instances=result_instances, study_ids_with_modality=result_study_ids)
)
