"""What a user may see through DICOMweb, as DICOM instances: selectors, built on ``cases.selectors``.

An instance here is a received image of kind ``dicom`` with its SOP Instance
and Series Instance UIDs, or one of Pneumo's own result objects. PNG and JPEG
uploads are left out: ingest gives them a generated study and SOP Instance
UID (``2.25.<digest>``) but no series and no DICOM file to retrieve, so no
PACS could use them. A DICOM image stored without a SeriesInstanceUID is left
out too (it has no WADO-RS address).

**Extension point for result objects.** Pneumo's AI result SR, heatmap
secondary capture and report SR join the study they describe. The module that
stores them registers a source once, on import::

    register_instance_source(InstanceSource(name="outbox", instances=result_instances,
                                            study_ids_with_modality=result_study_ids))

``cases/dicomweb/outbox_source.py`` does so for the objects the result outbox
stored (the views import it).

``instances(study_ids)`` yields an ``Instance`` (with ``opener`` returning the
Part 10 bytes) for each stored object of those studies. The studies passed are
ones the user may already see (``studies_for_user``), so a source needs no
access check of its own. ``study_ids_with_modality(modalities)`` (for an empty
set: every study with result objects) lets the ``ModalitiesInStudy`` filter
find studies by their results' modality (``SR``, ``OT``).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from django.core.files.storage import default_storage
from django.db.models import Q, QuerySet

from cases import selectors
from cases.models import FileState, Image, Site, Study, User


@dataclass(frozen=True)
class Instance:
    study: Study
    series_uid: str
    sop_uid: str
    sop_class_uid: str
    modality: str
    transfer_syntax: str
    rows: int = 0
    columns: int = 0
    bits_stored: int = 8
    frames: int = 1
    series_description: str = ""
    image: Image | None = None  # a received image; None for a result object
    opener: Callable[[], bytes] | None = None  # result objects: their Part 10 bytes

    def read(self) -> bytes:
        if self.opener is not None:
            return self.opener()
        with default_storage.open(self.image.file.name, "rb") as handle:
            return handle.read()


@dataclass(frozen=True)
class InstanceSource:
    name: str
    instances: Callable[[Sequence[int]], Iterable[Instance]]
    # Study ids, best as a ``values("study_id")`` queryset: it becomes a subquery, not a list in memory.
    study_ids_with_modality: Callable[[set[str]], Iterable[int] | QuerySet] | None = None


_SOURCES: dict[str, InstanceSource] = {}


def register_instance_source(source: InstanceSource) -> None:
    """Idempotent by name: a process that registers twice (autoreload, tests) keeps one."""
    _SOURCES[source.name] = source


def unregister_instance_source(name: str) -> None:
    _SOURCES.pop(name, None)


# --- Studies ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class StudyFilters:
    patient_id: str = ""
    study_uids: tuple[str, ...] = ()
    accession_number: str = ""
    date_from: date | None = None
    date_to: date | None = None
    modalities: frozenset[str] = frozenset()
    site: Site | None = None
    limit: int = 100
    offset: int = 0


def _with_dicom_images(studies: QuerySet[Study]) -> QuerySet[Study]:
    # Subqueries, not joins: a study of two images must still be one row.
    received = Image.objects.filter(kind="dicom").exclude(series_instance_uid="").values("study_id")
    return studies.filter(Q(pk__in=received) | _with_results(set()))


def _with_results(modalities: set[str]) -> Q:
    """Studies with result objects of these modalities (of any for an empty set)."""
    found = Q(pk__in=[])
    for source in _SOURCES.values():
        if source.study_ids_with_modality is not None:
            found |= Q(pk__in=source.study_ids_with_modality(modalities))
    return found


def studies_dicomweb(*, user: User, filters: StudyFilters) -> list[Study]:
    """The user's studies that have DICOM instances, matching the QIDO-RS filters, oldest first."""
    studies = selectors.studies_for_user(user=user)
    if filters.site is not None:
        studies = studies.filter(site=filters.site)
    studies = _with_dicom_images(studies)
    exact: dict[str, Any] = {}
    if filters.patient_id:
        exact.update(_matching("patient__patient_id", filters.patient_id))
    if filters.accession_number:
        exact.update(_matching("accession_number", filters.accession_number))
    if filters.study_uids:
        exact["study_instance_uid__in"] = filters.study_uids
    if filters.date_from:
        exact["study_date__gte"] = filters.date_from
    if filters.date_to:
        exact["study_date__lte"] = filters.date_to
    studies = studies.filter(**exact)
    if filters.modalities:
        received = Image.objects.filter(kind="dicom", modality__in=filters.modalities).values("study_id")
        studies = studies.filter(Q(pk__in=received) | _with_results(set(filters.modalities)))
    end = filters.offset + filters.limit
    return list(studies.order_by("received_at", "pk")[filters.offset : end])


def _matching(field_name: str, value: str) -> dict[str, str]:
    """PS3.4 C.2.2.2.4 wild card matching: ``*`` any run of characters, ``?`` one; otherwise exact."""
    if "*" not in value and "?" not in value:
        return {field_name: value}
    pattern = "".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in value)
    return {f"{field_name}__regex": f"^{pattern}$"}


def studies_by_uid(*, user: User, study_uid: str, site: Site | None = None) -> list[Study]:
    """The user's studies with this StudyInstanceUID: one per site (an admin may see the same UID at two sites)."""
    studies = selectors.studies_for_user(user=user).filter(study_instance_uid=study_uid)
    if site is not None:
        studies = studies.filter(site=site)
    return list(studies.order_by("pk"))


# --- Instances --------------------------------------------------------------------------------


def instances_of(studies: Sequence[Study]) -> list[Instance]:
    """Every instance of these (visible) studies: received DICOM images, then the registered sources' objects."""
    by_pk = {study.pk: study for study in studies}
    images = (
        Image.objects.filter(study_id__in=by_pk, kind="dicom")
        .exclude(series_instance_uid="")
        .exclude(file_state=FileState.PURGED)  # deleted by the retention policy: nothing left to retrieve
        .order_by("study_id", "created_at", "pk")
    )
    found = [_from_image(image, by_pk[image.study_id]) for image in images]
    for source in _SOURCES.values():
        found += [i for i in source.instances(list(by_pk)) if i.study.pk in by_pk]
    return found


def _from_image(image: Image, study: Study) -> Instance:
    image.study = study
    return Instance(
        study=study,
        series_uid=image.series_instance_uid,
        sop_uid=image.sop_instance_uid,
        sop_class_uid=image.sop_class_uid,
        modality=image.modality,
        transfer_syntax=image.transfer_syntax,
        rows=image.rows,
        columns=image.columns,
        bits_stored=image.bits_stored,
        frames=image.number_of_frames,
        image=image,
    )


@dataclass
class Series:
    uid: str
    study: Study
    instances: list[Instance] = field(default_factory=list)

    @property
    def modality(self) -> str:
        return self.instances[0].modality

    @property
    def description(self) -> str:
        return self.instances[0].series_description


def series_of(instances: Iterable[Instance]) -> list[Series]:
    grouped: dict[tuple[int, str], Series] = {}
    for instance in instances:
        key = (instance.study.pk, instance.series_uid)
        grouped.setdefault(key, Series(instance.series_uid, instance.study)).instances.append(instance)
    return list(grouped.values())


def instance_for_user(
    *, user: User, study_uid: str, series_uid: str, sop_uid: str, site: Site | None = None
) -> Instance | None:
    """The user's instance at this address, or None (another site's is not found either)."""
    for instance in instances_of(studies_by_uid(user=user, study_uid=study_uid, site=site)):
        if instance.series_uid == series_uid and instance.sop_uid == sop_uid:
            return instance
    return None
