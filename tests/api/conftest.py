"""API fixtures: clients signed in with real tokens, and a small world at DEMO and NORTH.

Each site's world holds one patient with a study of every state the API acts
on: awaiting review (with a stored DICOM image and a finished AI result with
its heatmap), in review by a colleague, and reported.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from functools import cache

import pytest
from django.core.cache import cache as django_cache
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.utils import timezone
from rest_framework.test import APIClient

from cases.api.tokens import token_create
from cases.models import Image, Patient, Review, Site, Study, User
from cases.states import StudyStatus
from inference.models import ModelVersion, Prediction

PASSWORD = "correct-horse-battery"  # tests/conftest.py's users


@pytest.fixture(autouse=True)
def _fresh_throttles() -> None:
    django_cache.clear()


@cache
def dicom_bytes(**kwargs) -> bytes:
    from tests.dicom_factory import make_dicom

    return make_dicom(**kwargs)


@pytest.fixture
def api() -> Callable[[User | None], APIClient]:
    """``api(user)``: a client sending a fresh token of ``user``; ``api(None)`` is anonymous."""

    def client_for(user: User | None) -> APIClient:
        client = APIClient()
        if user is not None:
            key, _ = token_create(user=user)
            client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
        return client

    return client_for


@pytest.fixture
def model_version(make_model_version) -> ModelVersion:
    """An active model version as the registry leaves one (no real files: nothing here runs it)."""
    return make_model_version(
        name="test-model",
        source_path="/models/test.keras",
        sha256="a" * 64,
        converted_path="/models/test.tflite",
        is_active=True,
    )


@dataclass
class SiteWorld:
    site: Site
    patient: Patient
    awaiting: Study
    in_review: Study
    reported: Study
    image: Image
    prediction: Prediction


def _stored_dicom(name: str) -> str:
    return default_storage.save(f"studies/test/{name}.dcm", ContentFile(dicom_bytes()))


def site_world(
    site: Site, *, reader: User, colleague: User, version: ModelVersion, make_patient, make_study, make_image
) -> SiteWorld:
    now = timezone.now()
    patient = make_patient(site, name="DOE^JANE")
    awaiting = make_study(
        site, patient, status=StudyStatus.AWAITING_REVIEW, ai_probability=0.91, ai_flagged=True, ai_completed_at=now
    )
    image = make_image(
        awaiting, file=_stored_dicom(f"{site.code}-awaiting"), rows=256, columns=320, modality="CR", view_position="AP"
    )
    prediction = Prediction.objects.create(
        image=image,
        model_version=version,
        preprocessing_version=version.preprocessing_version,
        status="succeeded",
        probability=0.91,
        label="pneumonia",
        threshold=0.5,
        heatmap=[[0.0, 0.5], [0.25, 1.0]],
        finished_at=now,
    )
    in_review = make_study(
        site, patient, status=StudyStatus.IN_REVIEW, claimed_by=colleague, claimed_at=now, claim_seen_at=now
    )
    reported = make_study(site, patient, status=StudyStatus.REPORTED, reported_at=now - timedelta(hours=1))
    Review.objects.create(
        study=reported,
        radiologist=reader,
        finding="no_pneumonia",
        agreement="no_ai",
        signed_at=now - timedelta(hours=1),
    )
    return SiteWorld(site, patient, awaiting, in_review, reported, image, prediction)


@dataclass
class World:
    demo: SiteWorld
    north: SiteWorld
    version: ModelVersion

    def site(self, code: str) -> SiteWorld:
        return self.demo if code == "DEMO" else self.north


@pytest.fixture
def world(
    demo_site, north_site, rad, colleague_rad, north_rad, model_version, make_patient, make_study, make_image
) -> World:
    builders = {"make_patient": make_patient, "make_study": make_study, "make_image": make_image}
    return World(
        demo=site_world(demo_site, reader=rad, colleague=colleague_rad, version=model_version, **builders),
        north=site_world(north_site, reader=north_rad, colleague=north_rad, version=model_version, **builders),
        version=model_version,
    )
