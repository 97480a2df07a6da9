"""Shared fixtures: two sites, a user of each role, and small builders.

The DEMO site is "ours"; NORTH is the stranger's site whose data must never
show up for DEMO users.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from cases.models import Image, Patient, Site, Study, User
from inference.models import ModelVersion

_counter = itertools.count(1)


def totp_code(device) -> str:
    """The code an authenticator app shows now for this TOTP device."""
    from cases.otp.services import totp_code_now

    return totp_code_now(device=device)


def otp_session_verify(client: Client, user: User):
    """An admin's session as after the second-factor page: a confirmed TOTP device, the session verified with it."""
    from django_otp import DEVICE_ID_SESSION_KEY
    from django_otp.plugins.otp_totp.models import TOTPDevice

    device = TOTPDevice.objects.filter(user=user, confirmed=True).first()
    device = device or TOTPDevice.objects.create(user=user, name="test", confirmed=True)
    session = client.session
    session[DEVICE_ID_SESSION_KEY] = device.persistent_id
    session.save()
    return device


@pytest.fixture(autouse=True)
def _admins_verified_on_force_login(monkeypatch) -> None:
    """``force_login`` of an admin also verifies the second factor, so tests of other things need not.

    tests/cases/test_otp.py logs admins in through the pages to test the second factor itself.
    """
    force_login = Client.force_login

    def force_login_verified(self: Client, user: User, backend: str | None = None) -> None:
        force_login(self, user, backend)
        if user.is_staff:
            otp_session_verify(self, user)

    monkeypatch.setattr(Client, "force_login", force_login_verified)


@pytest.fixture
def demo_site(db) -> Site:
    return Site.objects.create(code="DEMO", name="Demo General")


@pytest.fixture
def north_site(db) -> Site:
    return Site.objects.create(code="NORTH", name="North Clinic")


def _user(username: str, sites: list[Site], role: str | None = None, staff: bool = False) -> User:
    user = User.objects.create_user(username=username, password="correct-horse-battery", is_staff=staff)
    user.sites.set(sites)
    if role:
        # get_or_create: transactional tests flush the rows that data migrations made.
        user.groups.add(Group.objects.get_or_create(name=role)[0])
    return user


@pytest.fixture
def tech(demo_site) -> User:
    return _user("tech", [demo_site], "Technician")


@pytest.fixture
def rad(demo_site) -> User:
    return _user("rad", [demo_site], "Radiologist")


@pytest.fixture
def colleague_rad(demo_site) -> User:
    return _user("rad1b", [demo_site], "Radiologist")


@pytest.fixture
def admin_user(demo_site) -> User:
    return _user("admin", [demo_site], staff=True)


@pytest.fixture
def north_rad(north_site) -> User:
    return _user("rad2", [north_site], "Radiologist")


@pytest.fixture
def north_tech(north_site) -> User:
    return _user("tech2", [north_site], "Technician")


@pytest.fixture
def make_patient() -> Callable[..., Patient]:
    def make(site: Site, **fields) -> Patient:
        n = next(_counter)
        fields.setdefault("patient_id", f"P{n:05d}")
        fields.setdefault("name", f"Doe^Patient{n}")
        return Patient.objects.create(site=site, **fields)

    return make


@pytest.fixture
def make_study(make_patient) -> Callable[..., Study]:
    def make(site: Site, patient: Patient | None = None, **fields) -> Study:
        n = next(_counter)
        patient = patient or make_patient(site)
        fields.setdefault("study_instance_uid", f"1.2.826.0.1.3680043.10.{n}")
        return Study.objects.create(site=site, patient=patient, **fields)

    return make


@pytest.fixture
def make_image() -> Callable[..., Image]:
    def make(study: Study, **fields) -> Image:
        n = next(_counter)
        fields.setdefault("sop_instance_uid", f"1.2.826.0.1.3680043.11.{n}")
        fields.setdefault("kind", "dicom")
        fields.setdefault("sha256", "0" * 64)
        fields.setdefault("ai_eligibility", "eligible")
        fields.setdefault("file", f"studies/test/{n}.dcm")
        return Image.objects.create(study=study, site=study.site, **fields)

    return make


@pytest.fixture
def make_model_version(db, tmp_path_factory) -> Callable[..., ModelVersion]:
    """A registered version with a conversion that passed the gate and scope check files (nothing here runs it)."""
    from tests.domain_factory import scope_fields

    def make(**fields) -> ModelVersion:
        n = next(_counter)
        preprocessing = fields.get("preprocessing_version", "test-v1")
        defaults = {
            "name": f"test-model-{n}",
            "version": "1",
            "source_path": f"/models/test-{n}.keras",
            "sha256": f"{n:064x}",
            "converted_path": f"/models/test-{n}.tflite",
            "parity_passed": True,
            "parity_max_diff": 0.0,
            "preprocessing_version": preprocessing,
            **scope_fields(tmp_path_factory.mktemp("scope"), preprocessing),
        }
        return ModelVersion.objects.create(**{**defaults, **fields})

    return make


@pytest.fixture
def active_model(db):
    """The shipped models, registered, converted (cached on disk) and active; returns the paediatric one."""
    from inference.registry import active_model_versions, models_prepare_all

    models_prepare_all()
    return active_model_versions()["paediatric"]


@pytest.fixture
def celery_worker(transactional_db, active_model):
    """A real Celery worker process on the run's Redis and queue, sharing the test database.

    Use with ``transactional_db`` (rows must be committed for the worker to see them).
    """
    from tests.processes import WorkerProcess, worker_env

    worker = WorkerProcess(hostname=f"test-{next(_counter)}@%h", env=worker_env()).start()
    try:
        worker.wait_ready()
        yield worker
    finally:
        worker.stop()
