"""Studies ready to read, made directly in the database: a real stored DICOM file and a
succeeded AI result with a heatmap, so that no worker is needed.

Used by the browser tests and by the reading view tests.
"""

from __future__ import annotations

import hashlib
import itertools
from datetime import timedelta

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone

from cases.models import Image, Patient, Priority, Site, Study
from cases.states import StudyStatus
from inference.models import AiLabel, ModelVersion, Prediction, PredictionStatus
from tests.dicom_factory import make_dicom

_counter = itertools.count(1)

# A blob in the right lower zone, as Grad-CAM draws a consolidation there.
HEATMAP = [
    [0.02, 0.05, 0.08, 0.05, 0.02],
    [0.05, 0.12, 0.20, 0.15, 0.05],
    [0.08, 0.25, 0.45, 0.60, 0.20],
    [0.06, 0.30, 0.70, 0.95, 0.40],
    [0.03, 0.10, 0.30, 0.45, 0.15],
]


def model_version_active(threshold: float = 0.5) -> ModelVersion:
    version = ModelVersion.objects.filter(is_active=True).first()
    if version is not None:
        return version
    return ModelVersion.objects.create(
        name="pneumonia-test-model",
        version="1.0",
        source_path="model.keras",
        sha256="a" * 64,
        preprocessing_version="test-v1",
        threshold=threshold,
        is_active=True,
        intended_use="Paediatric AP chest X-rays (test model).",
    )


def stored_dicom(*, sample: int = 8, shape: tuple[int, int] = (384, 480), bits: int = 12, **dicom) -> tuple[str, bytes]:
    data = make_dicom(sample, shape=shape, bits=bits, **dicom)
    name = default_storage.save(f"studies/test/{next(_counter)}.dcm", ContentFile(data))
    return name, data


def image_stored(study: Study, *, sample: int = 8, shape: tuple[int, int] = (384, 480), bits: int = 12) -> Image:
    name, data = stored_dicom(sample=sample, shape=shape, bits=bits)
    n = next(_counter)
    return Image.objects.create(
        study=study,
        site=study.site,
        sop_instance_uid=f"1.2.826.0.1.3680043.12.{n}",
        kind="dicom",
        modality="CR",
        view_position="AP",
        body_part="CHEST",
        file=name,
        original_filename=f"{n}.dcm",
        sha256=hashlib.sha256(data).hexdigest(),
        size_bytes=len(data),
        rows=shape[0],
        columns=shape[1],
        bits_stored=bits,
        photometric_interpretation="MONOCHROME2",
        ai_eligibility="eligible",
    )


def prediction_succeeded(
    image: Image, *, probability: float, heatmap: list[list[float]] | None = None, outside_reason: str = ""
) -> Prediction:
    version = model_version_active()
    now = timezone.now()
    return Prediction.objects.create(
        image=image,
        model_version=version,
        preprocessing_version=version.preprocessing_version,
        status=PredictionStatus.SUCCEEDED,
        probability=probability,
        label=AiLabel.of(probability, version.threshold),
        threshold=version.threshold,
        heatmap=heatmap if heatmap is not None else HEATMAP,
        outside_validated_use=bool(outside_reason),
        outside_validated_use_reason=outside_reason,
        queue_wait_ms=120.0,
        decode_ms=35.0,
        preprocess_ms=4.0,
        inference_ms=88.0,
        heatmap_ms=21.0,
        started_at=now,
        finished_at=now,
    )


def study_ready(
    site: Site,
    *,
    patient: Patient | None = None,
    probability: float | None = 0.87,
    priority: str = Priority.ROUTINE,
    images: int = 1,
    waited: timedelta = timedelta(minutes=20),
    **patient_fields,
) -> Study:
    """A study awaiting review, with stored images and (unless ``probability`` is None) an AI result."""
    n = next(_counter)
    if patient is None:
        patient_fields.setdefault("patient_id", f"MRN{n:05d}")
        patient_fields.setdefault("name", f"Test Patient {n}")
        patient = Patient.objects.create(site=site, **patient_fields)
    version = model_version_active()
    study = Study.objects.create(
        site=site,
        patient=patient,
        study_instance_uid=f"1.2.826.0.1.3680043.13.{n}",
        accession_number=f"ACC{n:05d}",
        study_date=timezone.localdate(),
        description="XR CHEST 1 VIEW",
        priority=priority,
        status=StudyStatus.AWAITING_REVIEW,
        status_reason="" if probability is not None else "No AI result: no image is eligible for the AI.",
    )
    for i in range(images):
        image = image_stored(study, sample=8 + i if probability and probability >= 0.5 else i)
        if probability is not None:
            prediction_succeeded(image, probability=probability if i == 0 else probability / 2)
    now = timezone.now()
    Study.objects.filter(pk=study.pk).update(
        received_at=now - waited,
        ai_completed_at=now - waited + timedelta(seconds=30) if probability is not None else None,
        ai_probability=probability,
        ai_flagged=probability is not None and probability >= version.threshold,
    )
    study.refresh_from_db()
    return study
