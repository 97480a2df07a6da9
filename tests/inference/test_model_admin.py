"""Model versions change in one place: the admin's own form goes through inference.registry.

Before, the admin was a plain ModelAdmin: an admin could change the threshold,
file or checksum of the active version, or of one with predictions, and no
audit event was written (the API refused the same change).
"""

from __future__ import annotations

import pytest
from django.urls import reverse

from cases.models import AuditEvent
from inference.models import ModelVersion, Prediction
from inference.registry import SCOPE_FIELDS

FIELDS = {
    "name": "xception-v9",
    "version": "9",
    "description": "",
    "source_path": "/models/v9.keras",
    "sha256": "b" * 64,
    "threshold": "0.5",
    "input_size": "224",
    "preprocessing_version": "rgb-bicubic224-xception-v1",
    "heatmap_scale": "1.0",
    "intended_use": "",
    "intended_min_age_years": "",
    "intended_max_age_years": "",
    "intended_views": "[]",
    "population": "paediatric",
    "features_key": "",
}


@pytest.fixture
def superuser(admin_user):
    admin_user.is_superuser = True
    admin_user.save()
    return admin_user


@pytest.fixture
def version(make_model_version) -> ModelVersion:
    return make_model_version(
        name="xception-v9",
        version="9",
        source_path="/models/v9.keras",
        sha256="b" * 64,
        input_size=224,
        preprocessing_version="rgb-bicubic224-xception-v1",
    )


@pytest.fixture
def used(version, demo_site, make_study, make_image) -> ModelVersion:
    image = make_image(make_study(demo_site))
    Prediction.objects.create(image=image, model_version=version, preprocessing_version=version.preprocessing_version)
    return version


def _change(client, version: ModelVersion, **changes):
    url = reverse("admin:inference_modelversion_change", args=[version.pk])
    scope = {name: getattr(version, name) for name in SCOPE_FIELDS}  # the form posts them unchanged
    return client.post(url, {**FIELDS, **scope, **changes})


def _updates(version: ModelVersion) -> list[dict]:
    events = AuditEvent.objects.filter(action="model_update", object_type="ModelVersion", object_id=str(version.pk))
    return [event.detail for event in events]


@pytest.mark.parametrize("state", ["active", "with_predictions"])
def test_it_shows_the_meaning_of_a_used_version_read_only(client, superuser, version, used, state) -> None:
    if state == "active":
        Prediction.objects.all().delete()
        ModelVersion.objects.filter(pk=version.pk).update(is_active=True)
    client.force_login(superuser)
    page = client.get(reverse("admin:inference_modelversion_change", args=[version.pk]))
    form = page.context["adminform"].form
    for name in ("threshold", "sha256", "source_path", "version", "preprocessing_version"):
        assert name not in form.fields, f"{name} is editable on a {state} version"
    assert "description" in form.fields and "intended_use" in form.fields


@pytest.mark.parametrize("state", ["active", "with_predictions"])
def test_it_keeps_the_threshold_file_and_checksum_of_a_used_version(client, superuser, used, state) -> None:
    if state == "active":
        Prediction.objects.all().delete()
        ModelVersion.objects.filter(pk=used.pk).update(is_active=True)
    client.force_login(superuser)
    response = _change(client, used, threshold="0.05", sha256="c" * 64, source_path="/tmp/evil.keras", description="n")
    assert response.status_code == 302
    used.refresh_from_db()
    assert (used.threshold, used.sha256, used.source_path) == (0.5, "b" * 64, "/models/v9.keras")
    assert used.description == "n" and used.parity_passed  # the conversion stays valid
    assert _updates(used) == [{"fields": ["description"]}]


def test_it_changes_and_audits_the_threshold_of_an_unused_version(client, superuser, version) -> None:
    client.force_login(superuser)
    assert _change(client, version, threshold="0.3").status_code == 302
    version.refresh_from_db()
    assert version.threshold == 0.3
    event = AuditEvent.objects.get(action="model_update", object_id=str(version.pk))
    assert event.user == superuser and event.detail == {"fields": ["threshold"]}
    assert event.ip_address == "127.0.0.1"


def test_it_makes_a_new_file_reconvert_before_it_can_be_activated(client, superuser, version) -> None:
    client.force_login(superuser)
    assert _change(client, version, sha256="d" * 64).status_code == 302
    version.refresh_from_db()
    assert version.sha256 == "d" * 64 and not version.parity_passed and version.converted_path == ""


def test_it_registers_a_version_through_the_registry_and_audits_it(client, superuser, db) -> None:
    client.force_login(superuser)
    response = client.post(reverse("admin:inference_modelversion_add"), {**FIELDS, "name": "xception-v10"})
    assert response.status_code == 302
    created = ModelVersion.objects.get(name="xception-v10")
    assert not created.is_active and created.input_size == 224
    assert AuditEvent.objects.filter(action="model_create", object_id=str(created.pk), user=superuser).exists()


def test_it_activates_from_the_admin_with_an_audit_event(client, superuser, version) -> None:
    client.force_login(superuser)
    url = reverse("admin:inference_modelversion_changelist")
    client.post(url, {"action": "activate", "_selected_action": [version.pk]})
    version.refresh_from_db()
    assert version.is_active
    assert AuditEvent.objects.filter(action="model_activate", object_id=str(version.pk), user=superuser).exists()


def test_it_refuses_to_delete_a_used_version_and_audits_deleting_an_unused_one(
    client, superuser, used, make_model_version
) -> None:
    client.force_login(superuser)
    assert client.get(reverse("admin:inference_modelversion_delete", args=[used.pk])).status_code == 403
    spare = make_model_version(name="spare")
    response = client.post(reverse("admin:inference_modelversion_delete", args=[spare.pk]), {"post": "yes"})
    assert response.status_code == 302 and not ModelVersion.objects.filter(pk=spare.pk).exists()
    assert AuditEvent.objects.filter(action="model_delete", object_id=str(spare.pk), user=superuser).exists()
    assert ModelVersion.objects.filter(pk=used.pk).exists()
