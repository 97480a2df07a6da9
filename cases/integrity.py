"""Storage integrity (services): re-hash stored files against the sha256 recorded at ingest.

A changed or missing file marks its image, which blocks signing of the study
until an admin resolves it; files in storage that no image points at are
reported as orphans. A file the retention policy deleted (``purged``) is gone
on purpose: it is listed apart and never counts against the storage.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from django.core.files.storage import default_storage

from cases.audit import audit_record
from cases.models import FileState, Image

STUDY_ROOT = "studies"


@dataclass
class StorageReport:
    checked: int = 0
    missing: list[int] = field(default_factory=list)
    changed: list[int] = field(default_factory=list)
    orphans: list[str] = field(default_factory=list)
    purged: list[int] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.missing or self.changed or self.orphans)


def _sha256(name: str) -> str:
    digest = hashlib.sha256()
    with default_storage.open(name, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _walk(root: str):
    try:
        dirs, files = default_storage.listdir(root)
    except (FileNotFoundError, NotImplementedError):
        return
    for name in files:
        yield f"{root}/{name}"
    for sub in dirs:
        yield from _walk(f"{root}/{sub}")


def _state_of(image: Image) -> str:
    if not default_storage.exists(image.file.name):
        return FileState.MISSING
    return FileState.OK if _sha256(image.file.name) == image.sha256 else FileState.CHANGED


def storage_verify() -> StorageReport:
    report = StorageReport()
    known = set()
    for image in Image.objects.only("pk", "file", "sha256", "file_state", "site").iterator():
        if image.file_state == FileState.PURGED:
            report.purged.append(image.pk)
            continue
        known.add(image.file.name)
        state = _state_of(image)
        report.checked += 1
        if state == FileState.MISSING:
            report.missing.append(image.pk)
        elif state == FileState.CHANGED:
            report.changed.append(image.pk)
        if state != image.file_state:
            Image.objects.filter(pk=image.pk).update(file_state=state)
            audit_record(action="file_state", obj=image, site=image.site, state=state)
    report.orphans = sorted(name for name in _walk(STUDY_ROOT) if name not in known)
    return report
