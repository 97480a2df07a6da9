"""Ingest: turning uploaded files into patients, studies and images (services).

The upload page, the API and ``import_studies`` all call ``studies_ingest``.
Each file is decoded in an isolated process under time and memory limits,
checked, and stored in its own transaction, so a broken file in a batch of ten
still leaves nine stored, and a refusal leaves no partial study or orphan file.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import logging
import uuid
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import date
from typing import TYPE_CHECKING

from django.conf import settings
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import IntegrityError, transaction
from django.http import HttpRequest
from django.utils import timezone

from cases.audit import audit_record
from cases.identifiers import identifier_refusal
from cases.imaging import DecodedImage, DecodeError, assess_eligibility, decode_guarded, zero_preamble
from cases.models import Image, Patient, Priority, Site, Study, User
from inference.model_input import input_grid_make

if TYPE_CHECKING:
    from inference.models import ModelVersion

logger = logging.getLogger(__name__)

STORED, DUPLICATE, REFUSED = "stored", "duplicate", "refused"
ZIP_MAX_ENTRIES = 5000
ZIP_MAX_RATIO = 200  # a compression ratio beyond this is a zip bomb, not an X-ray export


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
    name: str
    data: bytes


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
        return any(f.status != REFUSED for f in self.files)


def _expand(incoming: IncomingFile) -> Iterator[IncomingFile | FileOutcome]:
    """A zip (such as a PACS export) yields its members; anything else itself."""
    if not incoming.data.startswith(b"PK\x03\x04"):
        yield incoming
        return
    try:
        archive = zipfile.ZipFile(io.BytesIO(incoming.data))
        members = [m for m in archive.infolist() if not m.is_dir()]
    except (zipfile.BadZipFile, ValueError, OSError):
        yield IncomingFile(incoming.name, incoming.data)  # decoding refuses it with a clear reason
        return
    if len(members) > ZIP_MAX_ENTRIES:
        raise Refused(f"The zip file holds more than {ZIP_MAX_ENTRIES} files")
    for member in members:
        yield from _zip_member(archive, member, incoming.name)


def _zip_member(
    archive: zipfile.ZipFile, member: zipfile.ZipInfo, zip_name: str
) -> Iterator[IncomingFile | FileOutcome]:
    name = f"{zip_name}/{member.filename}"
    base = member.filename.rsplit("/", 1)[-1]
    if base.startswith(".") or base.upper() == "DICOMDIR":
        return  # index files and OS litter, not images
    if member.file_size > settings.PNEUMO_MAX_UPLOAD_BYTES:
        limit_mb = settings.PNEUMO_MAX_UPLOAD_BYTES >> 20
        yield FileOutcome(name, REFUSED, f"The file in the zip is larger than the {limit_mb} MB limit")
        return
    if member.compress_size and member.file_size / member.compress_size > ZIP_MAX_RATIO:
        yield FileOutcome(
            name, REFUSED, f"The file in the zip expands over {ZIP_MAX_RATIO}-fold: a zip bomb, not an X-ray export"
        )
        return
    try:
        yield IncomingFile(name, archive.read(member))
    except (zipfile.BadZipFile, OSError, RuntimeError, NotImplementedError) as exc:
        logger.info("unreadable zip member (%s)", type(exc).__name__)
        yield IncomingFile(name, b"\x00unreadable")


def _decode(item: IncomingFile) -> DecodedImage:
    if len(item.data) > settings.PNEUMO_MAX_UPLOAD_BYTES:
        limit_mb = settings.PNEUMO_MAX_UPLOAD_BYTES // (1024 * 1024)
        raise Refused(f"The file is larger than the {limit_mb} MB limit")
    try:
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
    return Identity(
        patient_id=patient_id,
        name=manual.name.strip(),
        birth_date=manual.birth_date,
        sex=_sex(manual.sex),
        age_years=manual.age_years if manual.age_years is not None else _age(manual.birth_date),
        study_uid=study_uid,
        sop_uid=f"2.25.{int(sha256[:32], 16)}",
        series_uid="",
        accession_number="",
        study_date=timezone.localdate(),
        description=manual.study_description.strip(),
    )


def _batch_study_uid(manual: ManualPatient, patient_id: str) -> str:
    if not manual.batch_key:
        return f"2.25.{uuid.uuid4().int}"
    digest = hashlib.sha256(f"{manual.batch_key}\x00{patient_id}".encode()).hexdigest()
    return f"2.25.{int(digest[:32], 16)}"


def _age(birth_date: date | None) -> float | None:
    if birth_date is None:
        return None
    return (timezone.localdate() - birth_date).days / 365.25


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


def _image_fields(decoded: DecodedImage, ident: Identity, eligibility, version: ModelVersion | None) -> dict:
    meta = decoded.metadata
    # The active version's input grid, kept for the worker; another version decodes the original.
    grid = input_grid_make(decoded.model_image, version.preprocessing_version if version else None)
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
        "ai_eligibility": eligibility.status,
        "ai_eligibility_reason": eligibility.reason,
        "model_input": grid.png if grid else None,
        "model_input_version": grid.preprocessing_version if grid else "",
    }


def _eligibility(decoded: DecodedImage, ident: Identity, version: ModelVersion | None):
    meta = decoded.metadata
    if meta.age_years is None and ident.age_years is not None:
        meta = dataclasses.replace(meta, age_years=ident.age_years)
    return assess_eligibility(
        meta,
        intended_min_age=version.intended_min_age_years if version and version.intended_min_age_years else 1.0,
        intended_max_age=version.intended_max_age_years if version and version.intended_max_age_years else 5.0,
        intended_view=(version.intended_view if version and version.intended_view else "AP"),
    )


@dataclass
class _Batch:
    site: Site
    user: User | None
    priority: str
    manual: ManualPatient | None
    request: HttpRequest | None
    model_version: ModelVersion | None  # the active one when the batch began: its eligibility rules and input grid
    study_uids: dict[str, str] = field(default_factory=dict)


def _store_one(item: IncomingFile, batch: _Batch) -> FileOutcome:
    if not item.data:
        raise Refused("The file is empty")
    decoded = _decode(item)
    sha256 = hashlib.sha256(item.data).hexdigest()
    ident = _identity(decoded, batch.manual, batch.study_uids, sha256)
    duplicate = _duplicate(item, batch, ident)
    if duplicate is not None:
        return duplicate
    data = zero_preamble(item.data) if decoded.kind == "dicom" else item.data
    eligibility = _eligibility(decoded, ident, batch.model_version)
    fields = _image_fields(decoded, ident, eligibility, batch.model_version)
    stored_name = default_storage.save(_storage_name(decoded, sha256), ContentFile(data))
    try:
        return _rows_create(item, batch, decoded, ident, fields, stored_name, data)
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


def _rows_create(item, batch, decoded, ident, fields: dict, stored_name: str, data: bytes) -> FileOutcome:
    with transaction.atomic():
        patient = _patient(batch.site, ident)
        study = _study(batch.site, patient, ident, batch.priority, batch.user)
        image = Image.objects.create(
            study=study,
            site=batch.site,
            file=stored_name,
            original_filename=item.name[-255:],
            sha256=hashlib.sha256(data).hexdigest(),
            size_bytes=len(data),
            uploaded_by=batch.user,
            **_fit(Image, fields),
        )
        audit_record(
            action="upload",
            user=batch.user,
            obj=image,
            site=batch.site,
            request=batch.request,
            study_id=study.pk,
            eligibility=fields["ai_eligibility"],
        )
    return FileOutcome(item.name, STORED, fields["ai_eligibility_reason"], study.pk, image.pk)


def _ingest_one(item: IncomingFile, batch: _Batch) -> FileOutcome:
    try:
        return _store_one(item, batch)
    except Refused as exc:
        audit_record(
            action="upload_refused", user=batch.user, site=batch.site, request=batch.request, reason=str(exc)[:200]
        )
        return FileOutcome(item.name, REFUSED, str(exc))


def _items(files: Iterable[IncomingFile]) -> Iterator[IncomingFile | FileOutcome]:
    for incoming in files:
        try:
            yield from _expand(incoming)
        except Refused as exc:
            yield FileOutcome(incoming.name, REFUSED, str(exc))


def studies_ingest(
    *,
    files: Iterable[IncomingFile],
    site: Site,
    user: User | None,
    priority: str = Priority.ROUTINE,
    manual: ManualPatient | None = None,
    request: HttpRequest | None = None,
) -> IngestReport:
    """Store every decodable file, refuse the rest with a reason, then queue the AI."""
    from inference.registry import active_model_version
    from inference.services import predictions_request

    batch = _Batch(
        site=site,
        user=user,
        priority=priority if priority in Priority.values else Priority.ROUTINE,
        manual=manual,
        request=request,
        model_version=active_model_version(),  # one query per batch, not per file
    )
    report = IngestReport()
    for item in _items(files):
        outcome = item if isinstance(item, FileOutcome) else _ingest_one(item, batch)
        report.files.append(outcome)
    report.study_ids = sorted({f.study_id for f in report.files if f.status == STORED and f.study_id})
    for study_id in report.study_ids:
        with transaction.atomic():
            predictions_request(study=Study.objects.select_related("site").get(pk=study_id))
    return report
