"""Pneumo's result objects stored by the outbox are instances of their study in QIDO-RS and WADO-RS."""

from __future__ import annotations

import io
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.urls import reverse
from django.utils import timezone
from pydicom import Dataset, dcmread

from cases.dicom.results import AiResult, ai_result_sr, heatmap_secondary_capture
from cases.models import OutboxItem, ResultDestination, ResultObject
from tests.api.conftest import World

pytestmark = pytest.mark.django_db

RESULT = AiResult(probability=0.93, threshold=0.5, label="pneumonia", domain="in_domain", domain_reason="",
                  model_name="test-model", model_sha256="ab" * 32, heatmap=[[0.0, 1.0], [0.5, 0.2]],
                  muted=False)  # fmt: skip


def _queued(world_site, kind: str, ds: Dataset, destinations: list[ResultDestination]) -> bytes:
    """The object as the outbox keeps it: one file, one item per destination."""
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    name = default_storage.save(f"outbox/test/{ds.SOPInstanceUID}.dcm", ContentFile(buffer.getvalue()))
    now = timezone.now()
    for destination in destinations:
        OutboxItem.objects.create(destination=destination, kind=kind, site=world_site.site, study=world_site.awaiting,
                                  image=world_site.image, sop_instance_uid=ds.SOPInstanceUID,
                                  sop_class_uid=ds.SOPClassUID, file=name, next_attempt_at=now,
                                  retry_from=now - timedelta(seconds=1))  # fmt: skip
    return buffer.getvalue()


@pytest.fixture
def results(world: World) -> dict[str, tuple[Dataset, bytes]]:
    """DEMO's awaiting study with its AI result SR (queued for two PACS) and heatmap capture."""
    image = world.demo.image
    image.series_instance_uid = "1.2.826.0.1.3680043.12.1"
    image.save(update_fields=["series_instance_uid"])
    with default_storage.open(image.file.name, "rb") as handle:
        source = dcmread(handle)
    source.StudyInstanceUID = world.demo.awaiting.study_instance_uid  # the stored file as ingest would have it
    source.SOPInstanceUID = world.demo.image.sop_instance_uid
    pacs = [ResultDestination.objects.create(ae_title=f"PACS{n}", host="127.0.0.1", port=104 + n) for n in (1, 2)]
    sr = ai_result_sr(source, RESULT, pneumo_version="test")
    sc = heatmap_secondary_capture(source, RESULT, pneumo_version="test")
    return {
        "sr": (sr, _queued(world.demo, ResultObject.AI_SR, sr, pacs)),
        "sc": (sc, _queued(world.demo, ResultObject.SECONDARY_CAPTURE, sc, pacs[:1])),
    }


def test_it_lists_each_stored_result_object_once_in_its_own_series(api, rad, world: World, results) -> None:
    study_uid = world.demo.awaiting.study_instance_uid
    sr, _ = results["sr"]

    # The study (found by its results' modality) counts the image and both objects, in three series
    [found] = api(rad).get(reverse("dicomweb:studies"), {"ModalitiesInStudy": "SR"}).json()
    study = Dataset.from_json(found)
    assert study.StudyInstanceUID == study_uid and study.ModalitiesInStudy == ["CR", "OT", "SR"]
    assert (study.NumberOfStudyRelatedSeries, study.NumberOfStudyRelatedInstances) == (3, 3)

    # The AI result series is described as highdicom wrote it, and lists its one SR
    series = {Dataset.from_json(s).SeriesInstanceUID: Dataset.from_json(s)
              for s in api(rad).get(reverse("dicomweb:series", kwargs={"study": study_uid})).json()}  # fmt: skip
    assert series[sr.SeriesInstanceUID].SeriesDescription == sr.SeriesDescription
    assert series[sr.SeriesInstanceUID].Modality == "SR"
    listed = api(rad).get(reverse("dicomweb:instances", kwargs={"study": study_uid, "series": sr.SeriesInstanceUID}))
    assert [Dataset.from_json(i).SOPInstanceUID for i in listed.json()] == [sr.SOPInstanceUID]


def test_it_retrieves_result_objects_and_hides_them_from_other_sites(api, rad, north_rad, world: World,
                                                                     results) -> None:  # fmt: skip
    sc, stored = results["sc"]
    address = {"study": sc.StudyInstanceUID, "series": sc.SeriesInstanceUID, "instance": sc.SOPInstanceUID}

    as_stored = api(rad).get(reverse("dicomweb:instance", kwargs=address),
                             HTTP_ACCEPT='multipart/related; type="application/dicom"; transfer-syntax=*')  # fmt: skip
    assert stored in b"".join(as_stored.streaming_content)
    metadata = api(rad).get(reverse("dicomweb:instance-metadata", kwargs=address)).json()[0]
    assert metadata["00080070"]["Value"] == ["Pneumo"] and "7FE00010" not in metadata
    assert api(north_rad).get(reverse("dicomweb:instance", kwargs=address)).status_code == 404
    assert api(north_rad).get(reverse("dicomweb:studies"), {"ModalitiesInStudy": "SR"}).json() == []
