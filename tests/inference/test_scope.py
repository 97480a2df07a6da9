"""Every new prediction says, from its own pixels, whether the model applies (issue 15).

The worker's path runs in this process (``prediction_run``) with the real
active model and its shipped scope checks; the registry refuses a version
without them as it refuses one without a passed parity gate.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from django.urls import reverse

from cases.ingest import IncomingFile, studies_ingest
from inference import domain
from inference.models import AiDomain, ModelVersion, Prediction
from inference.registry import (
    SCOPE_FIELDS,
    ModelFileMismatch,
    ModelNotReady,
    model_version_activate,
    models_prepare_all,
    scope_checks_load,
)
from inference.services import prediction_run
from tests.dicom_factory import make_dicom
from tests.domain_factory import domain_check_make


@pytest.fixture
def predict(active_model, demo_site, tech) -> Callable[[bytes], Prediction]:
    """Upload one DICOM and run its prediction as a worker would, in this process."""

    def run(data: bytes) -> Prediction:
        studies_ingest(files=[IncomingFile("chest.dcm", data)], site=demo_site, user=tech)
        prediction = Prediction.objects.latest("pk")
        assert prediction_run(prediction_id=prediction.pk).ran
        prediction.refresh_from_db()
        return prediction

    return run


def test_it_names_the_domains_as_the_scope_checks_do() -> None:
    assert tuple(AiDomain.values) == domain.DOMAINS


def test_it_stores_a_packaged_paediatric_film_as_in_domain_with_its_score_and_limit(predict) -> None:
    prediction = predict(make_dicom(8))

    assert prediction.status == "succeeded" and prediction.domain == AiDomain.IN_DOMAIN
    assert prediction.domain_score is not None and prediction.domain_limit is not None
    assert prediction.domain_score <= prediction.domain_limit
    assert prediction.domain_reason == domain.REASON_IN
    assert prediction.probability is not None and prediction.label in ("pneumonia", "normal") and prediction.heatmap


def test_it_stores_noise_as_not_chest_xray_without_a_probability_label_or_heatmap(predict) -> None:
    noise = np.random.default_rng(15).integers(0, 256, size=(512, 512), dtype=np.uint8)

    prediction = predict(make_dicom(noise))

    assert prediction.status == "succeeded" and prediction.domain == AiDomain.NOT_CHEST_XRAY
    assert prediction.probability is None and prediction.label == "" and prediction.heatmap is None
    assert prediction.domain_score > prediction.domain_limit
    assert prediction.domain_reason == domain.REASON_NOT_CHEST
    study = prediction.image.study
    study.refresh_from_db()
    assert study.ai_probability is None and not study.ai_flagged


def test_it_refuses_to_activate_a_version_without_scope_checks(make_model_version) -> None:
    version = make_model_version(chest_check_path="", chest_check_sha256="")

    with pytest.raises(ModelNotReady, match="has no domain check and chest check"):
        model_version_activate(version=version)

    version.refresh_from_db()
    assert not version.is_active


def test_it_refuses_to_activate_a_version_whose_check_file_changed(make_model_version) -> None:
    version = make_model_version()
    with open(version.domain_check_path, "ab") as handle:
        handle.write(b"\0")

    with pytest.raises(ModelNotReady, match="was changed or replaced"):
        model_version_activate(version=version)


def test_it_refuses_a_check_fitted_on_another_input(make_model_version, tmp_path) -> None:
    version = make_model_version(preprocessing_version="rgb-bicubic224-xception-v1")
    path = tmp_path / "other.npz"
    sha256 = domain.domain_check_save(domain_check_make(kind="version", preprocessing_version="other-v1"), path)
    ModelVersion.objects.filter(pk=version.pk).update(domain_check_path=str(path), domain_check_sha256=sha256)
    version.refresh_from_db()

    with pytest.raises(ModelFileMismatch, match="not a version check for"):
        scope_checks_load(version)


def test_it_shows_why_the_admin_cannot_activate_a_version_without_scope_checks(
    client, admin_user, make_model_version
) -> None:
    admin_user.is_superuser = True
    admin_user.save()
    version = make_model_version(name="unscoped", domain_check_path="", domain_check_sha256="")
    client.force_login(admin_user)

    page = client.post(
        reverse("admin:inference_modelversion_changelist"),
        {"action": "activate", "_selected_action": [version.pk]},
        follow=True,
    )

    shown = [str(message) for message in page.context["messages"]]
    assert len(shown) == 1 and shown[0].startswith("unscoped has no domain check and chest check")
    version.refresh_from_db()
    assert not version.is_active


def test_it_records_the_shipped_checks_also_on_versions_registered_before_them(active_model) -> None:
    recorded = {name: getattr(active_model, name) for name in SCOPE_FIELDS}
    assert all(recorded.values())
    ModelVersion.objects.update(**dict.fromkeys(SCOPE_FIELDS, ""))

    models_prepare_all()

    for version in ModelVersion.objects.all():
        assert all(getattr(version, name) for name in SCOPE_FIELDS), version.name
    active_model.refresh_from_db()
    assert {name: getattr(active_model, name) for name in SCOPE_FIELDS} == recorded
