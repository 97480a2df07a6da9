"""The result outbox: objects queued per destination and sent by C-STORE to a real Orthanc, retried while it is down."""

from __future__ import annotations

import io
from datetime import timedelta

import numpy as np
import pytest
import requests
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import default_storage
from django.utils import timezone
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from cases.dicom import outbox
from cases.dicom.outbox import ResultDicom, outbox_queue, outbox_resend, outbox_send, outbox_sweep
from cases.ingest import IncomingFile, studies_ingest
from cases.models import (
    AuditEvent,
    DicomPeer,
    OutboxItem,
    OutboxState,
    ResultDestination,
    ResultObject,
    Review,
    Study,
)
from inference.models import Prediction, PredictionStatus
from tests.dicom.conftest import ORTHANC_AE, storescu
from tests.dicom_factory import make_dicom, make_png

pytestmark = pytest.mark.slow  # Orthanc is started once per session, in a second or two


def _capture(study: Study) -> Dataset:
    """A minimal secondary capture joining ``study``: the outbox sends whatever results.py builds."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = generate_uid()
    ds.StudyInstanceUID, ds.SeriesInstanceUID = study.study_instance_uid, generate_uid()
    ds.PatientID, ds.PatientName, ds.Modality, ds.ConversionType = study.patient.patient_id, "TEST^P", "OT", "WSD"
    ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.Rows, ds.Columns = 1, "MONOCHROME2", 8, 8
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    ds.PixelData = np.arange(64, dtype=np.uint8).tobytes()
    return ds


@pytest.fixture
def study(db, demo_site) -> Study:
    report = studies_ingest(files=[IncomingFile("a.dcm", make_dicom(0, patient_id="OUT-1"))], site=demo_site, user=None)
    return Study.objects.get(pk=report.study_ids[0])


@pytest.fixture
def to_orthanc(db, orthanc, demo_site) -> ResultDestination:
    destination = ResultDestination.objects.create(ae_title=ORTHANC_AE, host="127.0.0.1", port=orthanc.dicom_port)
    destination.sites.add(demo_site)
    return destination


def _queued(study: Study) -> OutboxItem:
    [item] = outbox_queue(
        study=study, image=study.images.first(), objects=[ResultDicom("secondary_capture", _capture(study))]
    )
    return item


def test_it_sends_a_queued_object_to_orthanc(study, to_orthanc, orthanc) -> None:
    item = _queued(study)
    assert (item.state, item.attempts, item.destination) == (OutboxState.PENDING, 0, to_orthanc)

    assert outbox_send(item_id=item.pk) == OutboxState.SENT

    item.refresh_from_db()
    assert item.state == OutboxState.SENT and item.sent_at is not None and item.attempts == 1
    assert orthanc.instance_uids() == {item.sop_instance_uid}
    assert AuditEvent.objects.filter(action="result_sent", object_id=str(item.pk)).exists()
    assert outbox_send(item_id=item.pk) == "skipped"  # a second message for it is a no-op


def test_it_keeps_the_object_pending_with_backoff_while_orthanc_is_down_and_sends_it_when_back(
    study, to_orthanc, orthanc
) -> None:
    item = _queued(study)
    orthanc.stop()
    start = timezone.now()

    # Given Orthanc is down, each try fails with the reason and waits twice as long as the one before.
    assert outbox_send(item_id=item.pk, now=start) == OutboxState.PENDING
    item.refresh_from_db()
    assert "could not be reached" in item.last_error and str(to_orthanc) in item.last_error
    assert item.next_attempt_at == start + timedelta(seconds=10)
    assert outbox_send(item_id=item.pk, now=start + timedelta(seconds=5)) == "skipped"  # not due yet
    assert outbox_send(item_id=item.pk, now=start + timedelta(seconds=10)) == OutboxState.PENDING
    item.refresh_from_db()
    assert (item.attempts, item.next_attempt_at) == (2, start + timedelta(seconds=30))

    # When Orthanc is back, the next try sends it.
    orthanc.start()
    assert outbox_send(item_id=item.pk, now=start + timedelta(seconds=30)) == OutboxState.SENT
    assert orthanc.instance_uids() == {item.sop_instance_uid}


def test_it_gives_up_after_the_retry_hours_and_a_resend_sends_it(study, to_orthanc, orthanc, admin_user) -> None:
    item = _queued(study)
    orthanc.stop()
    late = item.retry_from + timedelta(hours=72)

    assert outbox_send(item_id=item.pk, now=late) == OutboxState.FAILED
    item.refresh_from_db()
    assert item.state == OutboxState.FAILED and "gave up after 1 attempts" in item.last_error

    orthanc.start()
    assert outbox_resend(items=OutboxItem.objects.filter(pk=item.pk), user=admin_user) == 1
    item.refresh_from_db()
    assert (item.state, item.attempts) == (OutboxState.PENDING, 0)
    assert AuditEvent.objects.get(action="result_resend").username == admin_user.username
    assert outbox_send(item_id=item.pk) == OutboxState.SENT
    assert item.sop_instance_uid in orthanc.instance_uids()


def test_it_caps_the_backoff_at_the_retry_max_seconds(settings) -> None:
    settings.PNEUMO_RESULT_RETRY_MAX_SECONDS = 300

    assert [outbox._retry_delay(n) for n in range(1, 8)] == [10, 20, 40, 80, 160, 300, 300]


@pytest.mark.parametrize(
    ("status", "outcome"),
    [(0x0000, "sent"), (0xB000, "sent"), (0xA700, "retry"), (0xA7FF, "retry"), (0xC000, "failed"), (None, "retry")],
)
def test_it_reads_the_destinations_answer(status, outcome) -> None:
    answer = Dataset()
    if status is not None:
        answer.Status = status
    destination = ResultDestination(ae_title="PACS", host="pacs", port=104)

    if outcome == "sent":
        outbox._status_check(answer, destination)
        return
    with pytest.raises(outbox.NotDelivered) as caught:
        outbox._status_check(answer, destination)
    assert caught.value.retry is (outcome == "retry")
    assert "PACS@pacs:104" in str(caught.value)


def test_it_queues_only_for_the_destinations_of_the_site_and_kind(study, db, demo_site, north_site) -> None:
    ours = ResultDestination.objects.create(ae_title="PACS", host="pacs", port=104, send_secondary_capture=False)
    ours.sites.add(demo_site)
    ResultDestination.objects.create(ae_title="NORTHPACS", host="north", port=104).sites.add(north_site)
    everyone = ResultDestination.objects.create(ae_title="ARCHIVE", host="archive", port=104, all_sites=True)
    ResultDestination.objects.create(ae_title="OFF", host="off", port=104, all_sites=True, active=False)

    sr, capture = _capture(study), _capture(study)
    items = outbox_queue(
        study=study, image=None, objects=[ResultDicom("ai_sr", sr), ResultDicom("secondary_capture", capture)]
    )

    assert {(item.kind, item.destination.ae_title) for item in items} == {
        ("ai_sr", "PACS"),
        ("ai_sr", "ARCHIVE"),
        ("secondary_capture", "ARCHIVE"),
    }
    # The same object again queues nothing; each object is stored once, whatever the number of destinations.
    assert outbox_queue(study=study, image=None, objects=[ResultDicom("ai_sr", sr)]) == []
    stored = {item.file.name for item in items if item.kind == "ai_sr"}
    assert len(stored) == 1
    assert dcmread(default_storage.open(stored.pop())).SOPInstanceUID == sr.SOPInstanceUID
    assert everyone.outbox.count() == 2


def test_it_registers_the_destinations_of_the_setting_idempotently(db, settings, study) -> None:
    settings.PNEUMO_RESULT_DESTINATIONS = "PACS@pacs.example:104, ARCHIVE@10.0.0.5:11112"

    assert outbox.destinations_register() == 2
    assert outbox.destinations_register() == 2
    assert {str(d) for d in ResultDestination.objects.filter(active=True, all_sites=True, from_settings=True)} == {
        "PACS@pacs.example:104",
        "ARCHIVE@10.0.0.5:11112",
    }

    settings.PNEUMO_RESULT_DESTINATIONS = "PACS@pacs.example:104"
    outbox.destinations_for(study=study, kind="report_sr")  # the first queueing in a process registers them
    assert list(ResultDestination.objects.filter(active=True).values_list("ae_title", flat=True)) == ["PACS"]

    settings.PNEUMO_RESULT_DESTINATIONS = "PACS@pacs.example"
    with pytest.raises(ImproperlyConfigured, match=r"PNEUMO_RESULT_DESTINATIONS: 'PACS@pacs\.example'"):
        outbox.destinations_register()


def test_it_sweeps_due_objects_whose_message_was_lost_but_not_those_being_sent(study, db) -> None:
    ResultDestination.objects.create(ae_title="PACS", host="127.0.0.1", port=9, all_sites=True)
    lost, sending = (_queued(study), _queued(study))
    now = timezone.now() + timedelta(minutes=1)
    OutboxItem.objects.filter(pk=sending.pk).update(lease_until=now + timedelta(minutes=1))

    assert outbox_sweep(now=now) == 1
    OutboxItem.objects.filter(pk=lost.pk).update(state=OutboxState.SENT)
    assert outbox_sweep(now=now) == 0


# --- The real result objects ----------------------------------------------------------------------


def _succeeded(image, version, **fields) -> Prediction:
    defaults = {
        "probability": 0.93,
        "label": "pneumonia",
        "threshold": 0.5,
        "domain": "in_domain",
        "heatmap": [[0.0, 0.5], [1.0, 0.2]],
    }
    return Prediction.objects.create(
        image=image,
        model_version=version,
        preprocessing_version=version.preprocessing_version,
        status=PredictionStatus.SUCCEEDED,
        **{**defaults, **fields},
    )


def test_it_sends_the_ai_result_sr_and_the_heatmap_capture_of_a_prediction(
    study, to_orthanc, orthanc, make_model_version
) -> None:
    image = study.images.get()
    prediction = _succeeded(image, make_model_version())

    items = outbox.outbox_queue_for_prediction(prediction)

    assert sorted(item.kind for item in items) == [ResultObject.AI_SR, ResultObject.SECONDARY_CAPTURE]
    assert outbox.outbox_queue_for_prediction(prediction) == []  # once per prediction
    for item in items:
        assert outbox_send(item_id=item.pk) == OutboxState.SENT
    assert orthanc.instance_uids() == {item.sop_instance_uid for item in items}
    series = {orthanc.get(f"/series/{key}")["MainDicomTags"].get("Modality") for key in orthanc.get("/series")}
    assert series == {"SR", "OT"}
    [orthanc_study] = orthanc.get("/studies")
    assert orthanc.get(f"/studies/{orthanc_study}")["MainDicomTags"]["StudyInstanceUID"] == study.study_instance_uid


def test_it_sends_nothing_for_a_png_upload_or_an_unfinished_prediction(db, demo_site, make_model_version) -> None:
    ResultDestination.objects.create(ae_title="PACS", host="127.0.0.1", port=9, all_sites=True)
    from cases.ingest import ManualPatient

    report = studies_ingest(
        files=[IncomingFile("a.png", make_png())], site=demo_site, user=None, manual=ManualPatient(patient_id="PNG-1")
    )
    png_image = Study.objects.get(pk=report.study_ids[0]).images.get()
    version = make_model_version()

    assert outbox.outbox_queue_for_prediction(_succeeded(png_image, version)) == []
    assert not OutboxItem.objects.exists()


def test_it_sends_the_signed_report_sr_after_signing(study, to_orthanc, orthanc, rad) -> None:
    review = Review.objects.create(
        study=study,
        radiologist=rad,
        finding="pneumonia",
        agreement="no_ai",
        report_text="Right lower lobe consolidation.",
        signed_at=timezone.now(),
    )

    [item] = outbox.outbox_queue_for_review(review)

    assert item.kind == ResultObject.REPORT_SR
    assert outbox_send(item_id=item.pk) == OutboxState.SENT
    assert item.sop_instance_uid in orthanc.instance_uids()


def test_it_sends_an_amendment_as_a_new_report_sr_naming_the_one_it_replaces(study, to_orthanc, orthanc, rad):
    signed = {"study": study, "radiologist": rad, "agreement": "no_ai", "signed_at": timezone.now()}
    first = Review.objects.create(finding="pneumonia", report_text="Consolidation.", **signed)
    [sent_first] = outbox.outbox_queue_for_review(first)
    amendment = Review.objects.create(
        finding="no_pneumonia", version=2, supersedes=first, amendment_reason="Re-read", **signed
    )

    [sent_amendment] = outbox.outbox_queue_for_review(amendment)

    assert sent_amendment.sop_instance_uid != sent_first.sop_instance_uid
    written = dcmread(default_storage.open(sent_amendment.file.name))
    predecessors = {
        ref.ReferencedSOPInstanceUID
        for study_ref in written.PredecessorDocumentsSequence
        for series in study_ref.ReferencedSeriesSequence
        for ref in series.ReferencedSOPSequence
    }
    assert predecessors == {sent_first.sop_instance_uid}
    for item in (sent_first, sent_amendment):
        assert outbox_send(item_id=item.pk) == OutboxState.SENT
    assert orthanc.instance_uids() == {sent_first.sop_instance_uid, sent_amendment.sop_instance_uid}


def test_it_stops_start_up_on_a_destination_it_cannot_read() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", "import pneumo.settings"],
        env={"PATH": "/usr/bin:/bin", "DEBUG": "1", "PNEUMO_RESULT_DESTINATIONS": "PACS@pacs:104,ARCHIVE@archive"},
        cwd=settings_root(),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert done.returncode != 0
    assert "PNEUMO_RESULT_DESTINATIONS: 'ARCHIVE@archive' is not AET@host:port" in done.stderr


def settings_root():
    from django.conf import settings

    return settings.BASE_DIR


def test_it_resends_from_the_admin_and_audits_it(study, db, client, admin_user) -> None:
    admin_user.is_superuser = True
    admin_user.save()
    ResultDestination.objects.create(ae_title="PACS", host="127.0.0.1", port=9, all_sites=True)
    item = _queued(study)
    OutboxItem.objects.filter(pk=item.pk).update(state=OutboxState.FAILED, attempts=9, last_error="refused")
    client.force_login(admin_user)

    listing = client.get("/admin/cases/outboxitem/")
    response = client.post("/admin/cases/outboxitem/", {"action": "resend", "_selected_action": [item.pk]}, follow=True)

    assert listing.status_code == 200 and "refused" in listing.content.decode()
    assert response.status_code == 200
    item.refresh_from_db()
    assert (item.state, item.attempts) == (OutboxState.PENDING, 0)
    assert AuditEvent.objects.filter(action="result_resend", object_id=str(item.pk)).exists()


# --- Orthanc as the sender ------------------------------------------------------------------------


def test_orthanc_sends_a_study_to_the_listener_which_stores_it(start_listener, orthanc, demo_site) -> None:
    listener = start_listener()
    DicomPeer.objects.create(ae_title=ORTHANC_AE, site=demo_site, description="the PACS")
    data = make_dicom(3, patient_id="FROM-PACS")
    instance = requests.post(f"{orthanc.url}/instances", data=data, timeout=30).json()
    requests.put(
        f"{orthanc.url}/modalities/pneumo",
        json={"AET": listener.ae_title, "Host": "127.0.0.1", "Port": listener.port},
        timeout=30,
    ).raise_for_status()

    response = requests.post(
        f"{orthanc.url}/modalities/pneumo/store", json={"Resources": [instance["ParentStudy"]]}, timeout=60
    )

    assert response.ok, response.text
    study = Study.objects.get(patient__patient_id="FROM-PACS")
    image = study.images.get()
    assert (image.source_ae_title, image.site) == (ORTHANC_AE, demo_site)
    assert image.sop_instance_uid == dcmread(io.BytesIO(data)).SOPInstanceUID


def test_a_film_sent_by_storescu_goes_on_to_orthanc_as_results(start_listener, orthanc, demo_site, tmp_path) -> None:
    """Both directions at once: a modality sends, Pneumo stores, its result objects reach the PACS."""
    listener = start_listener(default_site="DEMO")
    ResultDestination.objects.create(ae_title=ORTHANC_AE, host="127.0.0.1", port=orthanc.dicom_port, all_sites=True)
    path = tmp_path / "film.dcm"
    path.write_bytes(make_dicom(9, patient_id="ROUND-TRIP"))

    assert storescu(listener, path, calling="MODALITY").returncode == 0
    study = Study.objects.get(patient__patient_id="ROUND-TRIP")
    [item] = outbox_queue(study=study, image=None, objects=[ResultDicom("secondary_capture", _capture(study))])

    assert outbox_send(item_id=item.pk) == OutboxState.SENT
    assert orthanc.instance_uids() == {item.sop_instance_uid}


def _wait_for(condition, timeout: float = 60) -> None:
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_a_worker_sends_the_outbox_retrying_while_orthanc_is_down(celery_worker, orthanc, demo_site, make_study):
    study = make_study(demo_site)
    ResultDestination.objects.create(ae_title=ORTHANC_AE, host="127.0.0.1", port=orthanc.dicom_port, all_sites=True)
    orthanc.stop()

    [item] = outbox_queue(study=study, image=None, objects=[ResultDicom("secondary_capture", _capture(study))])

    # The worker's first try fails while Orthanc is down; its retry, 10 s later, finds Orthanc back.
    _wait_for(lambda: OutboxItem.objects.filter(pk=item.pk, attempts=1).exclude(last_error="").exists())
    orthanc.start()
    _wait_for(lambda: OutboxItem.objects.filter(pk=item.pk, state=OutboxState.SENT).exists(), timeout=60)
    assert orthanc.instance_uids() == {item.sop_instance_uid}
    assert OutboxItem.objects.get(pk=item.pk).attempts == 2


def test_a_film_from_a_modality_comes_back_to_the_pacs_as_an_sr_and_a_capture(
    celery_worker, start_listener, orthanc, demo_site, tmp_path
) -> None:
    """The whole loop with real parts: storescu -> listener -> ingest -> worker (model) -> outbox -> Orthanc."""
    listener = start_listener(default_site="DEMO")
    ResultDestination.objects.create(ae_title=ORTHANC_AE, host="127.0.0.1", port=orthanc.dicom_port, all_sites=True)
    film = tmp_path / "film.dcm"
    film.write_bytes(make_dicom(12, shape=(512, 512), patient_id="LOOP-1"))

    assert storescu(listener, film, calling="MODALITY").returncode == 0

    _wait_for(lambda: OutboxItem.objects.filter(state=OutboxState.SENT).count() == 2, timeout=120)
    kinds = set(OutboxItem.objects.values_list("kind", flat=True))
    assert kinds == {ResultObject.AI_SR, ResultObject.SECONDARY_CAPTURE}
    assert orthanc.instance_uids() == set(OutboxItem.objects.values_list("sop_instance_uid", flat=True))
    prediction = Prediction.objects.get()
    assert prediction.status == PredictionStatus.SUCCEEDED and prediction.image.source_ae_title == "MODALITY"
