"""Both shipped versions served by one real worker process: a child's film, an adult's, and one of unknown age."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage

from cases.ingest import IncomingFile, ManualPatient, studies_ingest
from inference.classifier import head_logits, softmax
from inference.models import Population, Prediction, Routing
from inference.registry import active_model_versions
from tests.dicom_factory import make_dicom
from tests.inference.test_worker import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]
ADULT_FILM = Path(__file__).resolve().parents[1] / "fixtures" / "adult" / "PNEUMONIA" / "00000398_002.png"


def test_one_worker_process_serves_both_populations(celery_worker, demo_site, tech) -> None:
    actives = active_model_versions()
    assert set(actives) == {Population.PAEDIATRIC, Population.ADULT}
    assert actives[Population.PAEDIATRIC].features_key == actives[Population.ADULT].features_key != ""
    adult_pixels = np.asarray(PILImage.open(ADULT_FILM).convert("L"))

    studies_ingest(files=[IncomingFile("child.dcm", make_dicom(8, patient_id="CHILD-1"))], site=demo_site, user=tech)
    studies_ingest(
        files=[
            IncomingFile(
                "adult.dcm",
                make_dicom(adult_pixels, shape=adult_pixels.shape, patient_id="AD-1", patient_age="058Y", view="PA"),
            )
        ],
        site=demo_site,
        user=tech,
    )
    studies_ingest(
        files=[IncomingFile("adult.png", ADULT_FILM.read_bytes())],
        site=demo_site,
        user=tech,
        manual=ManualPatient(patient_id="AD-2"),
    )

    wait_for(lambda: Prediction.objects.filter(status="succeeded").count() == 3, what="three results")
    found = {p.image.study.patient.patient_id: p for p in Prediction.objects.select_related("image__study__patient")}
    assert found["CHILD-1"].model_version == actives[Population.PAEDIATRIC]
    assert found["CHILD-1"].routing == Routing.AGE and not found["CHILD-1"].outside_validated_use
    assert found["AD-1"].model_version == actives[Population.ADULT]
    assert found["AD-1"].routing_reason == "age 58 years: adult model"
    assert found["AD-2"].model_version == actives[Population.ADULT]
    assert found["AD-2"].routing == Routing.DOMAIN
    assert found["AD-2"].routing_reason == "age unknown: image most like the adult training images"
    assert found["AD-2"].threshold == actives[Population.ADULT].threshold
    hosts = {p.worker_host for p in found.values()}
    assert len(hosts) == 1  # one worker (its pool) served both versions


def test_the_shared_pass_gives_each_head_its_own_probability(active_model) -> None:
    from inference import runtime

    actives = active_model_versions()
    child, adult = actives[Population.PAEDIATRIC], actives[Population.ADULT]
    image = np.asarray(PILImage.open(ADULT_FILM).convert("L"))
    own, other = runtime.classifier_for(child).predict_heads(image, heads=[runtime.head_for(adult)], heatmap=True)
    alone = runtime.classifier_load(adult).predict(image, heatmap=True)  # on an interpreter of its own

    # The adult head on the paediatric pass equals the adult version's own conversion.
    assert other.probability == pytest.approx(alone.probability, abs=1e-4)
    assert np.allclose(other.heatmap, alone.heatmap, atol=1e-3)
    expected = softmax(head_logits(own.pooled_features[np.newaxis], runtime.head_for(adult).head))[0, 1]
    assert other.probability == pytest.approx(float(expected))


def test_a_worker_process_loads_one_interpreter_and_one_chest_check_for_both_versions(active_model) -> None:
    from inference import runtime
    from inference.classifier import LiteRTClassifier

    actives = active_model_versions()
    child, adult = actives[Population.PAEDIATRIC], actives[Population.ADULT]
    image = np.asarray(PILImage.open(ADULT_FILM).convert("L"))
    caches = (runtime._loaded, runtime._scope_loaded, runtime._checks_read)
    for cache in caches:
        cache.clear()  # a new pool process's
    try:
        runtime.versions_preload([adult, child])  # as a pool process does after the fork (by population)
        first, second = runtime.classifier_for(adult), runtime.classifier_for(child)
        child_checks, adult_checks = runtime.scope_checks_for(child), runtime.scope_checks_for(adult)
        served = runtime.classifier_for(child).predict(image, heatmap=True)
        own = runtime.classifier_load(child).predict(image, heatmap=True)
    finally:
        for cache in caches:
            cache.clear()

    # The paediatric version's result: its own head on the adult version's pass, as its own conversion gives it.
    assert isinstance(first, LiteRTClassifier)
    assert isinstance(second, runtime.HeadOnSharedBase) and second.base is first
    assert served.probability == pytest.approx(own.probability, abs=1e-4)
    assert np.allclose(served.heatmap, own.heatmap, atol=1e-3)
    assert served.input_sha256 == own.input_sha256
    # Their one chest check file is read once; each keeps its own domain check.
    assert child.chest_check_sha256 == adult.chest_check_sha256
    assert child_checks.chest is adult_checks.chest and child_checks.version is not adult_checks.version
