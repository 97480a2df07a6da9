"""A site's studies as a de-identified, labelled folder for teaching, validation and retraining.

``deidentified_export`` writes ``NORMAL/``, ``PNEUMONIA/`` and (without ``signed_only``)
``UNLABELLED/`` DICOM files de-identified by ``cases.deidentify``, and ``manifest.csv`` with the
columns of the data manifests (``path,label,patient_id,age,sex,view,sha256``), so that
``train_model`` splits the folder by (pseudonymised) patient and ``evaluate_model`` reads it as it is.

What is left out, and why, goes to ``excluded.csv``: a header that declares burned-in annotation,
PNG and JPEG uploads (no header can declare burned-in text), files that cannot be read. Exported
files whose header does not say whether text is burned in are listed in ``undeclared.csv``, for a
person to look at before the folder leaves the hospital. Both lists name Pneumo's image ids: they
are for the site's own records, not for sharing.

The key comes from ``PNEUMO_DEID_KEY_FILE``; without it one is generated once under ``var/`` and
kept, so that pseudonyms, UIDs and date offsets stay the same from one export to the next.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import secrets
import tempfile
import zipfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time
from pathlib import Path

from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Prefetch, QuerySet
from django.http import FileResponse, HttpRequest
from django.utils import timezone
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from cases.audit import audit_record
from cases.deidentify import burned_in_annotation, deidentify, patient_pseudonym, uid_remap
from cases.models import FileState, Finding, Image, Review, Site, Study, User
from cases.selectors import latest_review, user_is_admin

MANIFEST_COLUMNS = ("path", "label", "patient_id", "age", "sex", "view", "sha256")
LISTED_COLUMNS = ("image_id", "study_id", "kind", "path", "reason")
UNLABELLED = "UNLABELLED"
LABELS = {Finding.PNEUMONIA: "PNEUMONIA", Finding.NO_PNEUMONIA: "NORMAL"}
# HIPAA's safe harbour: ages over 89 are one group, "90 or over".
AGE_CAP = 90.0
KEY_MIN_LENGTH = 32


class ExportError(Exception):
    """The export cannot start (a bad key, a folder already in use); nothing was written."""


@dataclass(frozen=True)
class Listed:
    image_id: int
    study_id: int
    kind: str
    path: str
    reason: str


@dataclass
class ExportReport:
    out_dir: Path
    studies: int = 0
    manifest: list[dict[str, str]] = field(default_factory=list)
    excluded: list[Listed] = field(default_factory=list)
    undeclared: list[Listed] = field(default_factory=list)

    @property
    def exported(self) -> int:
        return len(self.manifest)


# --- The key ----------------------------------------------------------------------------------


def deid_key_read(*, path: Path | None = None, generated: Path | None = None) -> bytes:
    """The secret key: the file ``PNEUMO_DEID_KEY_FILE`` names, or the generated one (made on first use).

    A named file that is missing or short stops the export: quietly making a new key would give the
    same patients new pseudonyms, and the next export could no longer be joined to the last.
    """
    named = (
        path if path is not None else (Path(settings.PNEUMO_DEID_KEY_FILE) if settings.PNEUMO_DEID_KEY_FILE else None)
    )
    if named is not None:
        return _key_from(named)
    generated = generated or Path(settings.PNEUMO_DEID_GENERATED_KEY_FILE)
    if not generated.exists():
        _key_generate(generated)
    return _key_from(generated)


def _key_from(path: Path) -> bytes:
    try:
        key = path.read_bytes().strip()
    except OSError as error:
        raise ExportError(f"cannot read the de-identification key {path}: {error.strerror}") from None
    if len(key) < KEY_MIN_LENGTH:
        raise ExportError(f"the de-identification key {path} is shorter than {KEY_MIN_LENGTH} bytes")
    return key


def _key_generate(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # O_EXCL: two exports starting at once keep one key, never overwrite each other's.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return
    with os.fdopen(fd, "w") as handle:
        handle.write(secrets.token_hex(32) + "\n")


# --- Which studies, and their labels -----------------------------------------------------------


def studies_for_export(*, site: Site, signed_only: bool = False, since: date | None = None) -> QuerySet[Study]:
    """The site's studies received on or after ``since``; with ``signed_only`` only those with a signed review."""
    studies = Study.objects.filter(site=site)
    if since is not None:
        studies = studies.filter(received_at__gte=timezone.make_aware(datetime.combine(since, time.min)))
    if signed_only:
        studies = studies.filter(reviews__isnull=False).distinct()
    return studies.order_by("pk")


def study_label(study: Study) -> str:
    """NORMAL or PNEUMONIA from the latest signed version of the reading; UNLABELLED otherwise."""
    latest = latest_review(study=study)
    return LABELS.get(latest.finding, UNLABELLED) if latest else UNLABELLED


# --- The export --------------------------------------------------------------------------------


def deidentified_export(
    *,
    studies: QuerySet[Study],
    out_dir: Path,
    signed_only: bool = False,
    key: bytes | None = None,
    user: User | None = None,
) -> ExportReport:
    """Write the studies' images de-identified and labelled under ``out_dir`` (new or empty), with the lists."""
    key = key if key is not None else deid_key_read()
    _out_dir_prepare(out_dir)
    report = ExportReport(out_dir=out_dir)
    prefetched = studies.select_related("patient", "site").prefetch_related(
        Prefetch("reviews", queryset=Review.objects.order_by("-version"), to_attr="reviews_desc"),
        Prefetch("images", queryset=Image.objects.order_by("pk")),
    )
    for study in prefetched:
        report.studies += 1
        label = study_label(study)
        for image in study.images.all():
            _image_export(image, study=study, label=label, signed_only=signed_only, key=key, report=report)
    _lists_write(report)
    audit_record(
        action="deidentified_export",
        user=user,
        site=_only_site(prefetched),
        studies=report.studies,
        exported=report.exported,
        excluded=len(report.excluded),
        undeclared=len(report.undeclared),
    )
    return report


def _out_dir_prepare(out_dir: Path) -> None:
    if out_dir.exists() and (not out_dir.is_dir() or any(out_dir.iterdir())):
        raise ExportError(f"{out_dir} is not an empty folder: choose a new one, so two exports never mix")
    out_dir.mkdir(parents=True, exist_ok=True)


def _only_site(studies: QuerySet[Study]) -> Site | None:
    sites = {study.site for study in studies}
    return sites.pop() if len(sites) == 1 else None


def _patient_key(study: Study) -> str:
    # Pneumo's own identity of the patient (site and patient ID), not the header's: every study of one
    # patient gets one pseudonym and one date offset whatever its files say.
    return f"{study.site.code}\0{study.patient.patient_id}"


def _image_export(
    image: Image, *, study: Study, label: str, signed_only: bool, key: bytes, report: ExportReport
) -> None:
    def listed(reason: str, path: str = "") -> Listed:
        return Listed(image.pk, study.pk, image.kind, path, reason)

    if signed_only and label == UNLABELLED:
        report.excluded.append(listed("no signed pneumonia or no-pneumonia finding"))
        return
    if image.kind != "dicom":
        report.excluded.append(listed("not DICOM: no header can declare burned-in text"))
        return
    if image.file_state != FileState.OK:
        report.excluded.append(listed(f"stored file: {image.get_file_state_display()}"))
        return
    ds, problem = _dataset_read(image)
    if ds is None:
        report.excluded.append(listed(problem))
        return
    declared = burned_in_annotation(ds)
    if declared == "YES":
        report.excluded.append(listed("BurnedInAnnotation YES"))
        return
    data = _deidentified_bytes(ds, key=key, patient_key=_patient_key(study))
    path = f"{label}/{uid_remap(str(ds.SOPInstanceUID), key=key)}.dcm"
    (report.out_dir / label).mkdir(exist_ok=True)
    (report.out_dir / path).write_bytes(data)
    report.manifest.append(_manifest_row(image, study=study, path=path, label=label, data=data, key=key))
    if declared == "":
        report.undeclared.append(listed("BurnedInAnnotation undeclared: check the pixels before sharing", path))


def _dataset_read(image: Image) -> tuple[Dataset | None, str]:
    try:
        with image.file.open("rb") as handle:
            ds = dcmread(handle)
            ds.PixelData  # noqa: B018 - read now, while the file is open
    except (FileNotFoundError, OSError, ValueError) as error:
        return None, f"stored file unavailable ({type(error).__name__})"
    except (InvalidDicomError, AttributeError, KeyError):
        return None, "stored file is not a readable DICOM image"
    if "SOPInstanceUID" not in ds:
        return None, "stored file has no SOPInstanceUID"
    return ds, ""


def _deidentified_bytes(ds: Dataset, *, key: bytes, patient_key: str) -> bytes:
    buffer = io.BytesIO()
    deidentify(ds, key=key, patient_key=patient_key).save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _manifest_row(image: Image, *, study: Study, path: str, label: str, data: bytes, key: bytes) -> dict[str, str]:
    age = image.patient_age_years
    return {
        "path": path,
        "label": label,
        "patient_id": patient_pseudonym(_patient_key(study), key=key).patient_id,
        "age": "" if age is None else f"{min(age, AGE_CAP):.1f}",
        "sex": study.patient.sex,
        "view": image.view_position.upper(),
        "sha256": hashlib.sha256(data).hexdigest(),
    }


def _lists_write(report: ExportReport) -> None:
    _csv_write(report.out_dir / "manifest.csv", MANIFEST_COLUMNS, report.manifest)
    _csv_write(report.out_dir / "excluded.csv", LISTED_COLUMNS, (vars(row) for row in report.excluded))
    _csv_write(report.out_dir / "undeclared.csv", LISTED_COLUMNS, (vars(row) for row in report.undeclared))


def _csv_write(path: Path, columns: tuple[str, ...], rows: Iterable[dict]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


# --- The admin action ----------------------------------------------------------------------------


@admin.action(description="Export de-identified (a zip of DICOM files, manifest.csv, excluded.csv)")
def export_deidentified_action(
    modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet[Study]
) -> FileResponse | None:
    """For ``StudyAdmin.actions``: the selected studies exported as ``export_deidentified`` does, as a download."""
    if not user_is_admin(user=request.user):
        raise PermissionDenied
    archive = tempfile.TemporaryFile()  # noqa: SIM115 - FileResponse closes it once sent
    with tempfile.TemporaryDirectory() as tmp:
        try:
            report = deidentified_export(studies=queryset, out_dir=Path(tmp) / "export", user=request.user)
        except ExportError as error:
            archive.close()
            modeladmin.message_user(request, str(error), messages.ERROR)
            return None
        with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
            for path in sorted(report.out_dir.rglob("*")):
                if path.is_file():
                    zipped.write(path, path.relative_to(report.out_dir).as_posix())
    archive.seek(0)
    return FileResponse(archive, as_attachment=True, filename="deidentified-export.zip")
