"""Ingest: turning uploaded files into patients, studies and images (services).

The upload page, the API and ``import_studies`` all call ``studies_ingest``.
Each file is decoded in an isolated process under time and memory limits,
checked, and stored in its own transaction, so a broken file in a batch of ten
still leaves nine stored, and a refusal leaves no partial study or orphan file.

Files are opened one at a time (``IncomingFile.from_upload`` reads a spooled
upload only when its turn comes), and a zip's members are inflated one at a
time in counted chunks. An archive that is a bomb (overlapping entries, more
entries or more inflated bytes than allowed) is refused whole before anything
in it is inflated.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import itertools
import logging
import time
import uuid
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone

from cases.audit import audit_record
from cases.identifiers import identifier_refusal
from cases.imaging import (
    DecodedImage,
    DecodeError,
    decode_guarded,
    patient_age_read,
    sniff,
    zero_preamble,
)
from cases.models import Image, Patient, Priority, Site, Study, User
from inference.model_input import input_grid_make

if TYPE_CHECKING:
    from django.core.files.uploadedfile import UploadedFile


logger = logging.getLogger(__name__)

STORED, DUPLICATE, REFUSED, SKIPPED = "stored", "duplicate", "refused", "skipped"
ZIP_MAX_ENTRIES = 5000
ZIP_MAX_RATIO = 200  # a compression ratio beyond this is a zip bomb, not an X-ray export
# Unpacking one archive stops after this long (each member's decoding may take up to 10 s):
# the members not reached are refused by name, to be sent again in another upload.
ZIP_MAX_SECONDS = 300
# zipfile reads the whole central directory before we see one entry: bound it first (1 KiB per entry is ample).
ZIP_MAX_DIRECTORY_BYTES = ZIP_MAX_ENTRIES * 1024
_INFLATE_CHUNK = 1 << 20
_LOCAL_HEADER_BYTES = 30  # a zip local file header before its name, extra field and data


@dataclass(frozen=True)
class IngestOrigin:
    """Where files came from when no web request brought them: the DICOM listener's calling AE and peer."""

    ae_title: str = ""
    address: str = ""


class Refused(Exception):
    """A file is refused; the message is shown to the technician."""


@dataclass(frozen=True)
class ManualPatient:
    """What a technician types for PNG and JPEG files, which carry no header."""

    patient_id: str = ""
    name: str = ""
    birth_date: date | None = None
    sex: str = ""
    study_description: str = ""
    age_years: float | None = None
    # Files sent in separate requests of one upload share this key, so that
    # they become one study per patient.
    batch_key: str = ""


@dataclass(frozen=True)
class IncomingFile:
    """One file to ingest: its bytes, or an ``opener`` called only when the file's turn comes.

    With an opener the files of a request are read one at a time, each from its
    spooled upload or its path, and closed (their memory or temporary file
    released) before the next is opened.
    """

    name: str
    data: bytes = b""
    opener: Callable[[], BinaryIO] | None = None

    @classmethod
    def from_upload(cls, upload: UploadedFile) -> IncomingFile:
        return cls(upload.name or "upload", opener=functools.partial(_rewound, upload))

    @classmethod
    def from_path(cls, name: str, path: Path) -> IncomingFile:
        return cls(name, opener=functools.partial(path.open, "rb"))

    def open(self) -> BinaryIO:
        return self.opener() if self.opener is not None else io.BytesIO(self.data)


def _rewound(upload: UploadedFile) -> BinaryIO:
    # Closing the file itself frees an in-memory upload and deletes a spooled one once ingested.
    upload.seek(0)
    return upload.file


@dataclass
class FileOutcome:
    name: str
    status: str
    reason: str = ""
    study_id: int | None = None
    image_id: int | None = None


@dataclass
class IngestReport:
    files: list[FileOutcome] = field(default_factory=list)
    study_ids: list[int] = field(default_factory=list)

    @property
    def refused(self) -> int:
        return sum(1 for f in self.files if f.status == REFUSED)

    @property
    def accepted(self) -> bool:
        return any(f.status in (STORED, DUPLICATE) for f in self.files)


# --- Reading files and unpacking zips -----------------------------------------------------------


def _mb(size: int) -> int:
    return size >> 20


def _read_limited(handle: BinaryIO, limit: int, refusal: str) -> bytes:
    """At most ``limit`` bytes, read in chunks: a larger file is refused once the limit is passed, not read whole."""
    buffer = io.BytesIO()  # getvalue() hands over its buffer without a copy
    while chunk := handle.read(_INFLATE_CHUNK):
        if buffer.tell() + len(chunk) > limit:
            raise Refused(refusal)
        buffer.write(chunk)
    return buffer.getvalue()


def _loaded(name: str, handle: BinaryIO) -> IncomingFile:
    limit = settings.PNEUMO_MAX_UPLOAD_BYTES
    refusal = f"The file is larger than the {_mb(limit)} MB limit"
    if handle.seek(0, io.SEEK_END) > limit:
        raise Refused(refusal)  # told by its size: not read at all
    handle.seek(0)
    return IncomingFile(name, _read_limited(handle, limit, refusal))


def _expand(name: str, handle: BinaryIO) -> Iterator[IncomingFile | FileOutcome]:
    """A zip (such as a PACS export) yields its members one at a time; anything else itself."""
    if handle.read(4) != b"PK\x03\x04":
        yield _loaded(name, handle)
        return
    try:
        archive = _zip_open(handle)
    except (zipfile.BadZipFile, ValueError, OSError, EOFError):
        yield _loaded(name, handle)  # decoding refuses it with a clear reason
        return
    entries = archive.infolist()
    _archive_check(archive, entries)
    yield from _zip_members(archive, entries, name)


def _zip_open(handle: BinaryIO) -> zipfile.ZipFile:
    handle.seek(0)
    # zipfile's own reading of the end record (it handles zip64 and comments); private, stable since Python 2.
    end = zipfile._EndRecData(handle)  # type: ignore[attr-defined]
    if end is None:
        raise zipfile.BadZipFile("no end of central directory")
    entries, directory_bytes = end[zipfile._ECD_ENTRIES_TOTAL], end[zipfile._ECD_SIZE]  # type: ignore[attr-defined]
    if entries > ZIP_MAX_ENTRIES or directory_bytes > ZIP_MAX_DIRECTORY_BYTES:
        raise Refused(f"The zip file holds more than {ZIP_MAX_ENTRIES} files")
    handle.seek(0)
    return zipfile.ZipFile(handle)


def _archive_check(archive: zipfile.ZipFile, entries: list[zipfile.ZipInfo]) -> None:
    """Refuse a whole archive that is a bomb, before any of it is inflated (so nothing of it is stored)."""
    if len(entries) > ZIP_MAX_ENTRIES:
        raise Refused(f"The zip file holds more than {ZIP_MAX_ENTRIES} files")
    if _entries_overlap(entries, archive.start_dir):
        raise Refused(
            "The zip file's entries overlap (several names share the same compressed data): "
            "a zip bomb, not an X-ray export; nothing of it was stored"
        )
    declared = sum(entry.file_size for entry in entries)
    limit = settings.PNEUMO_MAX_INFLATED_BYTES
    if declared > limit:
        raise Refused(
            f"The zip file unpacks to {_mb(declared)} MB, over the {_mb(limit)} MB limit for one archive: "
            "send it in smaller parts; nothing of it was stored"
        )


def _entries_overlap(entries: list[zipfile.ZipInfo], directory_start: int) -> bool:
    """Two entries sharing bytes, or one running into the central directory (D. Fifield, "A better zip bomb")."""
    spans = sorted((entry.header_offset, _entry_end(entry)) for entry in entries)
    for (_, end), (next_start, _) in itertools.pairwise(spans):
        if next_start < end:
            return True
    return bool(spans) and spans[-1][1] > directory_start


def _entry_end(entry: zipfile.ZipInfo) -> int:
    encoding = "utf-8" if entry.flag_bits & 0x800 else "cp437"
    try:
        name_bytes = len(entry.orig_filename.encode(encoding))
    except UnicodeEncodeError:
        name_bytes = 0
    return entry.header_offset + _LOCAL_HEADER_BYTES + name_bytes + entry.compress_size


@dataclass
class _Budget:
    """What is left of one archive's inflated bytes and time."""

    bytes_left: int
    deadline: float

    def expired(self) -> bool:
        return self.bytes_left <= 0 or time.monotonic() > self.deadline


def _zip_members(
    archive: zipfile.ZipFile, entries: list[zipfile.ZipInfo], zip_name: str
) -> Iterator[IncomingFile | FileOutcome]:
    budget = _Budget(settings.PNEUMO_MAX_INFLATED_BYTES, time.monotonic() + ZIP_MAX_SECONDS)
    for entry in entries:
        name = f"{zip_name}/{entry.filename}"
        if reason := _skip_reason(entry):
            yield FileOutcome(name, SKIPPED, reason)
        elif budget.expired():
            yield FileOutcome(
                name, REFUSED, f"Not unpacked: the zip took longer than {ZIP_MAX_SECONDS} s; send this file again"
            )
        else:
            yield _zip_member(archive, entry, name, budget)


def _skip_reason(entry: zipfile.ZipInfo) -> str:
    """Why a member is not an image to ingest; empty when it may be one."""
    path = entry.orig_filename  # as written: zipfile rewrites backslashes only on Windows
    parts = path.split("/")
    base = parts[-1]
    if entry.is_dir():
        return "A folder, not a file"
    if "\\" in path:
        return "The name holds a backslash: not unpacked"
    if ".." in parts:
        return "The name climbs out of its folder ('..'): not unpacked"
    if parts[0] == "__MACOSX":
        return "macOS metadata (__MACOSX), not an image"
    if base.upper() == "DICOMDIR":
        return "DICOMDIR is the export's index, not an image"
    if base.startswith("."):
        return "A hidden file (its name starts with a dot), not an image"
    return ""


def _zip_member(
    archive: zipfile.ZipFile, member: zipfile.ZipInfo, name: str, budget: _Budget
) -> IncomingFile | FileOutcome:
    limit = settings.PNEUMO_MAX_UPLOAD_BYTES
    if member.file_size > limit:
        return FileOutcome(name, REFUSED, f"The file in the zip is larger than the {_mb(limit)} MB limit")
    if member.compress_size and member.file_size / member.compress_size > ZIP_MAX_RATIO:
        return FileOutcome(
            name, REFUSED, f"The file in the zip expands over {ZIP_MAX_RATIO}-fold: a zip bomb, not an X-ray export"
        )
    try:
        data = _inflate(archive, member, budget)
    except Refused as exc:
        return FileOutcome(name, REFUSED, str(exc))
    except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError, EOFError, zlib.error) as exc:
        logger.info("unreadable zip member (%s)", type(exc).__name__)
        return FileOutcome(name, REFUSED, "The file in the zip could not be unpacked: it is damaged or encrypted")
    return IncomingFile(name, data)


def _inflate(archive: zipfile.ZipFile, member: zipfile.ZipInfo, budget: _Budget) -> bytes:
    """The member's bytes, counted while inflating against its own and the archive's limits (headers can lie)."""
    limit = settings.PNEUMO_MAX_UPLOAD_BYTES
    if budget.bytes_left < limit:
        limit, refusal = budget.bytes_left, "The zip file unpacks to more than its header says: a zip bomb"
    else:
        refusal = f"The file in the zip is larger than the {_mb(limit)} MB limit"
    with archive.open(member) as handle:
        try:
            data = _read_limited(handle, limit, refusal)
        except Refused:
            budget.bytes_left = 0  # the archive lied once: nothing more of it is inflated
            raise
    budget.bytes_left -= len(data)
    return data


def _decode(item: IncomingFile) -> DecodedImage:
    if len(item.data) > settings.PNEUMO_MAX_UPLOAD_BYTES:
        limit_mb = settings.PNEUMO_MAX_UPLOAD_BYTES // (1024 * 1024)
        raise Refused(f"The file is larger than the {limit_mb} MB limit")
    try:
        # The format is told from the first bytes here: a file that is no image costs no decoding process.
        sniff(item.data, item.name)
        return decode_guarded(
            item.data,
            filename=item.name,
            max_bytes=settings.PNEUMO_MAX_UPLOAD_BYTES,
            max_pixels=settings.PNEUMO_MAX_PIXELS,
            decode_threads=settings.PNEUMO_DECODE_THREADS,
        )
    except DecodeError as exc:
        raise Refused(str(exc)) from exc


@dataclass(frozen=True)
class Identity:
    patient_id: str
    name: str
    birth_date: date | None
    sex: str
    age_years: float | None
    age_source: str
    age_reason: str
    study_uid: str
    sop_uid: str
    series_uid: str
    accession_number: str
    study_date: date | None
    description: str


_MAX_IDENTIFIER = 64  # PatientID (LO) and UIDs (UI) by the standard, and their columns


def _identifiers_fit(meta) -> None:
    """An identifier cut short could name another patient or image: refuse instead."""
    for label, value in (
        ("patient ID (PatientID)", meta.patient_id),
        ("StudyInstanceUID", meta.study_instance_uid),
        ("SeriesInstanceUID", meta.series_instance_uid),
        ("SOPInstanceUID", meta.sop_instance_uid),
    ):
        if value and len(value.strip()) > _MAX_IDENTIFIER:
            raise Refused(f"The DICOM file's {label} is longer than {_MAX_IDENTIFIER} characters: not valid DICOM")
    _patient_readable("DICOM file's patient ID (PatientID)", meta.patient_id)
    _patient_readable("DICOM file's patient name (PatientName)", meta.patient_name)


def _patient_readable(label: str, value: str | None) -> None:
    """Whichever door a file came through (page, API, import, listener): no ID that can pass for another."""
    refusal = identifier_refusal(value or "", label=label)
    if refusal:
        raise Refused(refusal)


def _fit(model: type, fields: dict) -> dict:
    """Text cut to its column's length: a non-conforming tag must not fail the database write."""
    limits = {f.name: f.max_length for f in model._meta.concrete_fields if getattr(f, "max_length", None)}
    return {k: v[: limits[k]] if isinstance(v, str) and k in limits else v for k, v in fields.items()}


def _sex(value: str | None) -> str:
    value = (value or "").strip().upper()[:1]
    return value if value in {"F", "M", "O"} else ""


def _identity(
    decoded: DecodedImage, manual: ManualPatient | None, batch_study_uids: dict[str, str], sha256: str
) -> Identity:
    meta = decoded.metadata
    if decoded.kind == "dicom":
        if not (meta.patient_id or "").strip():
            raise Refused("The DICOM file has no patient ID (PatientID)")
        if not meta.study_instance_uid or not meta.sop_instance_uid:
            raise Refused("The DICOM file lacks its StudyInstanceUID or SOPInstanceUID")
        _identifiers_fit(meta)
        return Identity(
            patient_id=meta.patient_id.strip(),
            name=(meta.patient_name or "")[:200],
            birth_date=meta.birth_date,
            sex=_sex(meta.sex),
            age_years=meta.age_years,
            age_source=meta.age_source,
            age_reason=meta.age_reason,
            study_uid=meta.study_instance_uid,
            sop_uid=meta.sop_instance_uid,
            series_uid=meta.series_instance_uid or "",
            accession_number=(meta.accession_number or "")[:64],
            study_date=meta.study_date,
            description=(meta.study_description or "")[:200],
        )
    if manual is None or not manual.patient_id.strip():
        raise Refused("PNG and JPEG files carry no patient details: enter at least the patient ID")
    patient_id = manual.patient_id.strip()
    _patient_readable("patient ID", patient_id)
    _patient_readable("patient name", manual.name.strip())
    # One study per patient per upload batch; the same bytes again are a duplicate.
    study_uid = batch_study_uids.setdefault(patient_id, _batch_study_uid(manual, patient_id))
    today = timezone.localdate()
    age = patient_age_read(stated=manual.age_years, birth_date=manual.birth_date, on=today, origin="upload")
    return Identity(
        patient_id=patient_id,
        name=manual.name.strip(),
        birth_date=manual.birth_date,
        sex=_sex(manual.sex),
        age_years=age.years,
        age_source=age.source,
        age_reason=age.reason,
        study_uid=study_uid,
        sop_uid=f"2.25.{int(sha256[:32], 16)}",
        series_uid="",
        accession_number="",
        study_date=today,
        description=manual.study_description.strip(),
    )


def _batch_study_uid(manual: ManualPatient, patient_id: str) -> str:
    if not manual.batch_key:
        return f"2.25.{uuid.uuid4().int}"
    digest = hashlib.sha256(f"{manual.batch_key}\x00{patient_id}".encode()).hexdigest()
    return f"2.25.{int(digest[:32], 16)}"


def _patient(site: Site, ident: Identity) -> Patient:
    patient, created = Patient.objects.get_or_create(
        site=site,
        patient_id=ident.patient_id,
        defaults={"name": ident.name, "birth_date": ident.birth_date, "sex": ident.sex},
    )
    if not created:
        _patient_reconcile(patient, ident)
    return patient


def _patient_reconcile(patient: Patient, ident: Identity) -> None:
    """Fill blanks; flag real disagreements for an admin instead of overwriting."""
    differences = []
    for field_name, new in (("name", ident.name), ("birth_date", ident.birth_date), ("sex", ident.sex)):
        old = getattr(patient, field_name)
        if new and not old:
            setattr(patient, field_name, new)
        elif new and old and new != old:
            differences.append(field_name.replace("_", " "))
    if differences:
        note = f"{timezone.now():%Y-%m-%d}: an upload disagreed on {', '.join(differences)}"
        patient.demographics_conflict = "\n".join(filter(None, [patient.demographics_conflict, note]))[-2000:]
    patient.save()


def _study(site: Site, patient: Patient, ident: Identity, priority: str, user: User | None) -> Study:
    study, created = Study.objects.get_or_create(
        site=site,
        study_instance_uid=ident.study_uid,
        defaults={
            "patient": patient,
            "accession_number": ident.accession_number,
            "study_date": ident.study_date,
            "description": ident.description,
            "priority": priority,
            "uploaded_by": user,
        },
    )
    if not created and study.patient_id != patient.pk:
        raise Refused("Identity conflict: this study (StudyInstanceUID) is already stored for a different patient ID")
    if not created and _rank(priority) < _rank(study.priority):
        study.priority = priority  # a later upload may escalate a study, never downgrade it
        study.save(update_fields=["priority", "updated_at"])
    return study


def _rank(priority: str) -> int:
    return {Priority.STAT: 0, Priority.URGENT: 1}.get(priority, 2)


def _storage_name(decoded: DecodedImage, sha256: str) -> str:
    ext = {"dicom": "dcm", "png": "png", "jpeg": "jpg"}[decoded.kind]
    # No patient data in paths: the content hash names the file.
    return f"studies/{timezone.now():%Y/%m}/{sha256[:2]}/{sha256}.{ext}"


def _image_fields(decoded: DecodedImage, ident: Identity, eligibility, grid_preprocessing: str | None) -> dict:
    meta = decoded.metadata
    # The active versions' input grid, kept for the worker; another preprocessing decodes the original.
    grid = input_grid_make(decoded.model_image, grid_preprocessing)
    spacing = meta.pixel_spacing
    center, width = decoded.default_window or (None, None)
    return {
        "sop_instance_uid": ident.sop_uid,
        "series_instance_uid": ident.series_uid,
        "sop_class_uid": meta.sop_class_uid or "",
        "kind": decoded.kind,
        "modality": meta.modality or "",
        "view_position": meta.view_position or "",
        "body_part": meta.body_part or "",
        "manufacturer": (meta.manufacturer or "")[:64],
        "manufacturer_model_name": (meta.manufacturer_model_name or "")[:64],
        "rows": meta.rows,
        "columns": meta.columns,
        "bits_stored": meta.bits_stored or 8,
        "number_of_frames": meta.number_of_frames or 1,
        "photometric_interpretation": meta.photometric_interpretation or "",
        "transfer_syntax": meta.transfer_syntax_uid or "",
        "pixel_spacing": f"{spacing[0]:g}\\{spacing[1]:g}" if spacing else "",
        "window_center": center,
        "window_width": width,
        "patient_age_years": ident.age_years,
        "patient_age_source": ident.age_source,
        "patient_age_reason": ident.age_reason,
        "ai_eligibility": eligibility.status,
        "ai_eligibility_reason": eligibility.reason,
        "model_input": grid.png if grid else None,
        "model_input_version": grid.preprocessing_version if grid else "",
    }


def _eligibility(decoded: DecodedImage, ident: Identity):
    meta = decoded.metadata
    if meta.age_years is None and ident.age_years is not None:
        meta = dataclasses.replace(meta, age_years=ident.age_years)
    from inference.scope import eligibility_for  # the worker's and scope_report's rule too

    return eligibility_for(meta)


@dataclass
class _Batch:
    site: Site
    user: User | None
    priority: str
    manual: ManualPatient | None
    request: HttpRequest | None
    # The preprocessing of the active versions when the batch began: the input grid kept for the worker.
    grid_preprocessing: str | None
    origin: IngestOrigin | None = None
    study_uids: dict[str, str] = field(default_factory=dict)


def _store_one(item: IncomingFile, batch: _Batch) -> FileOutcome:
    if not item.data:
        raise Refused("The file is empty")
    decoded = _decode(item)
    # The file as stored (a DICOM preamble defused) is hashed once: its name, its checksum and,
    # for PNG and JPEG, the image's identity all come from that one digest.
    data = zero_preamble(item.data) if decoded.kind == "dicom" else item.data
    sha256 = hashlib.sha256(data).hexdigest()
    ident = _identity(decoded, batch.manual, batch.study_uids, sha256)
    duplicate = _duplicate(item, batch, ident)
    if duplicate is not None:
        return duplicate
    eligibility = _eligibility(decoded, ident)
    fields = _image_fields(decoded, ident, eligibility, batch.grid_preprocessing)
    stored_name = default_storage.save(_storage_name(decoded, sha256), ContentFile(data))
    try:
        return _rows_create(item, batch, decoded, ident, fields, stored_name, data, sha256)
    except IntegrityError:
        default_storage.delete(stored_name)
        # Another upload stored the same image at the same moment.
        duplicate = _duplicate(item, batch, ident)
        if duplicate is None:
            raise Refused("The file could not be stored; please try again") from None
        return duplicate
    except BaseException:
        default_storage.delete(stored_name)  # a refusal leaves no orphan file
        raise


def _duplicate(item: IncomingFile, batch: _Batch, ident: Identity) -> FileOutcome | None:
    existing = Image.objects.filter(site=batch.site, sop_instance_uid=ident.sop_uid).first()
    if existing is None:
        return None
    return FileOutcome(item.name, DUPLICATE, "Already stored (same SOPInstanceUID)", existing.study_id, existing.pk)


def _rows_create(item, batch, decoded, ident, fields: dict, stored_name: str, data: bytes, sha256: str) -> FileOutcome:
    with transaction.atomic():
        patient = _patient(batch.site, ident)
        study = _study(batch.site, patient, ident, batch.priority, batch.user)
        image = Image.objects.create(
            study=study,
            site=batch.site,
            file=stored_name,
            original_filename=item.name[-255:],
            sha256=sha256,
            size_bytes=len(data),
            uploaded_by=batch.user,
            **_fit(Image, {**fields, **_origin_fields(batch.origin)}),
        )
        audit_record(
            action="upload",
            user=batch.user,
            obj=image,
            site=batch.site,
            request=batch.request,
            study_id=study.pk,
            eligibility=fields["ai_eligibility"],
            **_origin_fields(batch.origin),
        )
    return FileOutcome(item.name, STORED, fields["ai_eligibility_reason"], study.pk, image.pk)


def _origin_fields(origin: IngestOrigin | None) -> dict[str, str]:
    if origin is None:
        return {}
    return {"source_ae_title": origin.ae_title, "source_address": origin.address}


def _ingest_one(item: IncomingFile, batch: _Batch) -> FileOutcome:
    try:
        return _store_one(item, batch)
    except Refused as exc:
        return FileOutcome(item.name, REFUSED, str(exc))


def _items(incoming: IncomingFile) -> Iterator[IncomingFile | FileOutcome]:
    """The file, or its members; the file is open only while they are ingested."""
    try:
        handle = incoming.open()
    except OSError as exc:
        yield FileOutcome(incoming.name, REFUSED, f"Cannot read the file ({exc.strerror or type(exc).__name__})")
        return
    with handle:
        try:
            yield from _expand(incoming.name, handle)
        except Refused as exc:
            yield FileOutcome(incoming.name, REFUSED, str(exc))


def _file_ingest(incoming: IncomingFile, batch: _Batch) -> list[FileOutcome]:
    outcomes = [item if isinstance(item, FileOutcome) else _ingest_one(item, batch) for item in _items(incoming)]
    _refusals_audit(outcomes, batch)
    return outcomes


def _refusals_audit(outcomes: list[FileOutcome], batch: _Batch) -> None:
    """One event per uploaded file with refusals: a zip of 1,500 refused members is one row, with counts."""
    refused = [outcome for outcome in outcomes if outcome.status == REFUSED]
    if not refused:
        return
    detail: dict = {"reason": refused[0].reason[:200]}
    if len(outcomes) > 1:
        reasons = Counter(outcome.reason[:200] for outcome in refused)
        detail.update(refused=len(refused), files=len(outcomes), reasons=dict(reasons.most_common(5)))
    detail.update(_origin_fields(batch.origin))
    audit_record(action="upload_refused", user=batch.user, site=batch.site, request=batch.request, **detail)


def studies_ingest(
    *,
    files: Iterable[IncomingFile],
    site: Site,
    user: User | None,
    priority: str = Priority.ROUTINE,
    manual: ManualPatient | None = None,
    request: HttpRequest | None = None,
    origin: IngestOrigin | None = None,
) -> IngestReport:
    """Store every decodable file, refuse the rest with a reason, then queue the AI."""
    from inference.registry import grid_preprocessing
    from inference.services import predictions_request

    batch = _Batch(
        site=site,
        user=user,
        priority=priority if priority in Priority.values else Priority.ROUTINE,
        manual=manual,
        request=request,
        grid_preprocessing=grid_preprocessing(),  # one query per batch, not per file
        origin=origin,
    )
    report = IngestReport()
    for incoming in files:
        report.files += _file_ingest(incoming, batch)
    report.study_ids = sorted({f.study_id for f in report.files if f.status == STORED and f.study_id})
    for study_id in report.study_ids:
        with transaction.atomic():
            predictions_request(study=Study.objects.select_related("site").get(pk=study_id))
    return report
