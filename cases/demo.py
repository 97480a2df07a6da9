"""The demo data: sites and users for every `make run`, and the studies it loads on the embedded
database, so that a newcomer sees the whole workflow at once.

The 16 labelled sample images shipped with the model package become DICOM DX
studies of invented children (ages 1 to 5, as the model was trained on), plus
one lateral view that the AI must refuse. They go through the real ingest
service, so the real worker predicts them; ``demo_reviews_sign`` then signs a
few through the real review service once their AI results are in.

Every UID is derived from a fixed name, so loading twice stores nothing twice.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from io import BytesIO
from pathlib import Path

import numpy as np
from django.contrib.auth.models import Group
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from PIL import Image as PILImage
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, ExplicitVRLittleEndian

from cases.ingest import IncomingFile, IngestReport, studies_ingest
from cases.models import Agreement, Finding, OverruleReason, Priority, Site, Study, User
from cases.reviews import ReadingInput, ReviewError, agreement_of, ai_label_of, review_sign
from cases.services import RADIOLOGIST, TECHNICIAN
from cases.states import AI_PENDING, StudyStatus
from inference.model_package import packaged_sample_images

DX_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.1.1"  # Digital X-Ray Image Storage - For Presentation
_UID_NAMESPACE = uuid.UUID("5a1e6f0e-9d4c-4c1a-9a53-7c1d3d6e0b5e")  # fixed: the same names give the same UIDs
ACCESSION_PREFIX = "DEMO"


# ---- sites and users ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoUser:
    username: str
    role: str
    site_codes: tuple[str, ...]
    is_staff: bool = False
    display_name: str = ""


DEMO_SITES = (("DEMO", "Demo General Hospital"), ("NORTH", "North Community Clinic"))
DEMO_USERS = (
    DemoUser("admin", "admin", ("DEMO",), is_staff=True, display_name="Site Administrator"),
    DemoUser("tech", TECHNICIAN, ("DEMO",), display_name="Terry Tech"),
    DemoUser("rad", RADIOLOGIST, ("DEMO",), display_name="Dr Rae Diologist"),
    DemoUser("rad2", RADIOLOGIST, ("NORTH",), display_name="Dr Nora North"),
)


def demo_password_generate() -> str:
    return "-".join(secrets.token_urlsafe(6) for _ in range(3))


@transaction.atomic
def demo_users_ensure(*, password: str = "") -> dict[str, str]:
    """Create the demo sites and users if missing, reset their passwords and lift any lockout.

    Idempotent. Returns ``{username: password}``: ``password`` for everyone when
    given, else a fresh random one each (printed by the caller).
    """
    sites = {code: Site.objects.get_or_create(code=code, defaults={"name": name})[0] for code, name in DEMO_SITES}
    logins = {}
    for spec in DEMO_USERS:
        user, _ = User.objects.get_or_create(username=spec.username)
        user.is_staff = user.is_superuser = spec.is_staff
        user.display_name = spec.display_name
        user.is_active = True
        logins[spec.username] = password or demo_password_generate()
        user.set_password(logins[spec.username])
        user.save()
        user.sites.set([sites[c] for c in spec.site_codes])
        if spec.role != "admin":
            user.groups.set([Group.objects.get(name=spec.role)])
    _lockouts_clear(list(logins))
    return logins


DEMO_TOTP_NAME = "Demo authenticator"


def demo_admin_totp_ensure() -> tuple[str, str]:
    """The demo admin's TOTP device, enrolled once and kept (an app set up with it keeps working).

    Returns its key in base32 (for an authenticator app) and the code it gives now.
    """
    from django_otp.plugins.otp_totp.models import TOTPDevice

    from cases.otp.services import totp_code_now, totp_secret_base32

    admin = User.objects.get(username=next(u.username for u in DEMO_USERS if u.is_staff))
    device = TOTPDevice.objects.filter(user=admin, name=DEMO_TOTP_NAME, confirmed=True).first()
    device = device or TOTPDevice.objects.create(user=admin, name=DEMO_TOTP_NAME, confirmed=True)
    return totp_secret_base32(device=device), totp_code_now(device=device)


def _lockouts_clear(usernames: list[str]) -> None:
    from axes.utils import reset

    for username in usernames:
        reset(username=username)


# ---- studies -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class DemoStudy:
    number: int  # names the patient, accession and UIDs
    sample: int  # index into packaged_sample_images(): 0-7 are NORMAL, 8-15 PNEUMONIA
    site: str
    priority: str
    given_name: str
    family_name: str
    sex: str
    age_years: int
    view: str = "AP"
    signer: str = ""  # the demo radiologist who signs it once the AI is done

    @property
    def accession(self) -> str:
        return f"{ACCESSION_PREFIX}{self.number:04d}"

    @property
    def patient_id(self) -> str:
        return f"DEMO-{self.number:04d}"

    def uid(self, part: str) -> str:
        return f"2.25.{uuid.uuid5(_UID_NAMESPACE, f'pneumo-demo/{self.number}/{part}').int}"


_S, _U, _R = Priority.STAT, Priority.URGENT, Priority.ROUTINE
# Names are plainly invented ("Example", "Sample", ...): nobody should mistake them for patients.
DEMO_STUDIES: tuple[DemoStudy, ...] = (
    DemoStudy(1, 9, "DEMO", _S, "Ada", "Example", "F", 2),
    DemoStudy(2, 0, "DEMO", _R, "Ben", "Sample", "M", 4),
    DemoStudy(3, 10, "DEMO", _U, "Cleo", "Fictional", "F", 3),
    DemoStudy(4, 1, "DEMO", _R, "Dev", "Madeup", "M", 1),
    DemoStudy(5, 11, "DEMO", _R, "Esme", "Example", "F", 5),
    DemoStudy(6, 2, "DEMO", _U, "Finn", "Sample", "M", 2),
    DemoStudy(7, 12, "DEMO", _R, "Gia", "Fictional", "F", 4),
    DemoStudy(8, 3, "DEMO", _S, "Hugo", "Madeup", "M", 3),
    DemoStudy(9, 13, "DEMO", _R, "Iris", "Example", "F", 1, signer="rad"),
    DemoStudy(10, 4, "DEMO", _R, "Jay", "Sample", "M", 5),
    DemoStudy(11, 14, "DEMO", _U, "Kit", "Fictional", "O", 2, signer="rad"),
    DemoStudy(12, 5, "DEMO", _R, "Lena", "Madeup", "F", 3),
    DemoStudy(13, 15, "NORTH", _S, "Milo", "Example", "M", 4),
    DemoStudy(14, 6, "NORTH", _R, "Nia", "Sample", "F", 2),
    DemoStudy(15, 8, "NORTH", _U, "Omar", "Fictional", "M", 1),
    DemoStudy(16, 7, "NORTH", _R, "Pia", "Madeup", "F", 3, signer="rad2"),
    # A lateral view, which the AI (validated on frontal views) must refuse. The package holds no lateral
    # picture, so this header says LL over a frontal one: the refusal reads the header, as it does for real.
    DemoStudy(17, 13, "DEMO", _U, "Quin", "Example", "M", 3, view="LL"),
)


def demo_studies_ensure(*, today: date | None = None) -> IngestReport | None:
    """Ingest the demo studies not stored yet; None when all of them already are.

    The technician ``tech`` uploads those of DEMO (its site); NORTH's come in as
    an import (no user), as ``import_studies`` would bring them.
    """
    missing = [spec for spec in DEMO_STUDIES if not _stored(spec)]
    if not missing:
        return None
    today = today or timezone.localdate()
    report = IngestReport()
    for site_code in dict.fromkeys(spec.site for spec in missing):
        site = Site.objects.get(code=site_code)
        uploader = User.objects.filter(username="tech", sites=site).first()
        for priority in dict.fromkeys(spec.priority for spec in missing if spec.site == site_code):
            specs = [s for s in missing if s.site == site_code and s.priority == priority]
            files = [IncomingFile(f"{s.accession}.dcm", demo_dicom(s, today=today)) for s in specs]
            part = studies_ingest(files=files, site=site, user=uploader, priority=priority)
            report.files += part.files
            report.study_ids += part.study_ids
    return report


def _stored(spec: DemoStudy) -> bool:
    return Study.objects.filter(site__code=spec.site, study_instance_uid=spec.uid("study")).exists()


def demo_studies() -> Iterator[tuple[DemoStudy, Study]]:
    """The demo studies that are stored, each with its spec."""
    uids = {(spec.site, spec.uid("study")): spec for spec in DEMO_STUDIES}
    query = Q()
    for site_code, uid in uids:
        query |= Q(site__code=site_code, study_instance_uid=uid)
    for study in Study.objects.filter(query).select_related("site"):
        yield uids[(study.site.code, study.study_instance_uid)], study


def demo_predictions_wait(*, timeout: float, poll: float = 0.25) -> bool:
    """Wait until the worker has finished with every demo study; whether it did within ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        pending = [study.pk for _, study in demo_studies() if study.status in AI_PENDING]
        if not pending or time.monotonic() >= deadline:
            return not pending
        time.sleep(poll)


def demo_reviews_sign() -> list[Study]:
    """Sign the demo studies meant to be signed, once their AI result is in; returns those signed now.

    The finding is the image's true label, so the dashboard shows what the AI
    got right (and, should it miss one, an overrule with its reason).
    """
    labels = [label for _, label in packaged_sample_images()]
    signed = []
    for spec, study in demo_studies():
        # Awaiting review with the AI done: its result may count, be muted or be none (then the reading
        # records that the AI was not validated for the image), as a radiologist would meet it.
        if not spec.signer or study.status != StudyStatus.AWAITING_REVIEW or study.ai_completed_at is None:
            continue
        finding = Finding.PNEUMONIA if labels[spec.sample] == "PNEUMONIA" else Finding.NO_PNEUMONIA
        try:
            review_sign(
                study_id=study.pk,
                user=User.objects.get(username=spec.signer),
                reading=_reading(study, finding),
            )
        except ReviewError:
            continue  # someone is reading it in the running site: leave it to them
        signed.append(study)
    return signed


def _reading(study: Study, finding: str) -> ReadingInput:
    ai_label = ai_label_of(study)
    reason = ""
    if agreement_of(finding, ai_label) == Agreement.DISAGREE:
        reason = OverruleReason.FALSE_NEGATIVE if finding == Finding.PNEUMONIA else OverruleReason.FALSE_POSITIVE
    impression = "Consolidation consistent with pneumonia." if finding == Finding.PNEUMONIA else "Lungs are clear."
    return ReadingInput(finding=finding, reason=reason, report=f"Demo report (invented patient). {impression}")


# ---- the DICOM files -----------------------------------------------------------------------------


def demo_dicom(spec: DemoStudy, *, today: date) -> bytes:
    """A DX Part 10 file of the spec's sample picture, 8-bit, explicit VR little endian."""
    pixels = _sample_pixels(spec.sample)
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = DX_SOP_CLASS
    ds.file_meta.MediaStorageSOPInstanceUID = spec.uid("image")
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SpecificCharacterSet = "ISO_IR 100"
    ds.SOPClassUID, ds.SOPInstanceUID = DX_SOP_CLASS, spec.uid("image")
    _patient_set(ds, spec, today)
    _study_set(ds, spec, today)
    _image_set(ds, pixels)
    buffer = BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def _patient_set(ds: Dataset, spec: DemoStudy, today: date) -> None:
    # Some weeks past a birthday, so that PatientAge and the birth date agree.
    birth = today - timedelta(days=round(spec.age_years * 365.25) + 20 + 7 * spec.number)
    ds.PatientName = f"{spec.family_name}^{spec.given_name}"
    ds.PatientID = spec.patient_id
    ds.PatientBirthDate = birth.strftime("%Y%m%d")
    ds.PatientSex = spec.sex
    ds.PatientAge = f"{spec.age_years:03d}Y"


def _study_set(ds: Dataset, spec: DemoStudy, today: date) -> None:
    ds.StudyInstanceUID, ds.SeriesInstanceUID = spec.uid("study"), spec.uid("series")
    ds.StudyID, ds.AccessionNumber = str(spec.number), spec.accession
    ds.StudyDate = ds.SeriesDate = ds.ContentDate = today.strftime("%Y%m%d")
    ds.StudyTime = ds.SeriesTime = ds.ContentTime = f"{8 + spec.number % 9:02d}{(spec.number * 7) % 60:02d}00"
    ds.StudyDescription = "XR CHEST 1 VIEW" if spec.view == "AP" else "XR CHEST LATERAL"
    ds.Modality, ds.Manufacturer, ds.InstitutionName = "DX", "Pneumo demo", "Pneumo demo data (invented)"
    ds.SeriesNumber, ds.InstanceNumber = 1, 1
    ds.BodyPartExamined, ds.ViewPosition = "CHEST", spec.view
    ds.PresentationIntentType, ds.ImageType = "FOR PRESENTATION", ["ORIGINAL", "PRIMARY"]
    ds.PatientOrientation = ["L", "F"] if spec.view == "AP" else ["A", "F"]
    ds.BurnedInAnnotation = "NO"


def _image_set(ds: Dataset, pixels: np.ndarray) -> None:
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.ImagerPixelSpacing = [0.143, 0.143]
    ds.WindowCenter, ds.WindowWidth = 128, 256
    ds.PixelData = pixels.tobytes()
    ds["PixelData"].VR = "OB"


def _sample_pixels(index: int) -> np.ndarray:
    path: Path = packaged_sample_images()[index][0]
    with PILImage.open(path) as picture:
        return np.ascontiguousarray(np.asarray(picture.convert("L"), dtype=np.uint8))
