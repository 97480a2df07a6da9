"""The DICOM listener, spoken to by DCMTK's echoscu and storescu as a modality would, and by pynetdicom for statuses."""

from __future__ import annotations

import io
import subprocess
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, JPEGLosslessSV1, generate_uid
from pynetdicom import AE
from pynetdicom.sop_class import ComputedRadiographyImageStorage, DigitalXRayImageStorageForPresentation

from cases.models import AuditEvent, DicomPeer, Image, Site, Study
from tests.dicom.conftest import echoscu, storescu
from tests.dicom_factory import SOP_CLASSES, make_dicom, nested_sequence_dicom, rewrite_dicom


def _write(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def _study(index: int, **options) -> bytes:
    """One film of its own patient and study."""
    options.setdefault("patient_id", f"NET-{index:03d}")
    return make_dicom(index, study_uid=generate_uid(), sop_uid=generate_uid(), **options)


@pytest.fixture
def peer(transactional_db, demo_site) -> DicomPeer:
    return DicomPeer.objects.create(ae_title="XRAY1", site=demo_site, description="X-ray room 1")


def test_it_answers_c_echo_from_a_known_peer(start_listener, peer) -> None:
    result = echoscu(start_listener())

    assert result.returncode == 0, result.output
    assert "Received Echo Response (Success)" in result.output


def test_it_rejects_an_unknown_caller_as_calling_ae_title_not_recognised(start_listener, peer, tmp_path) -> None:
    listener = start_listener()

    result = storescu(listener, _write(tmp_path, "a.dcm", _study(1)), calling="STRANGER")

    assert result.returncode != 0
    assert "Rejected Permanent" in result.output
    assert "Calling AE Title Not Recognized" in result.output
    assert not Image.objects.exists()
    assert echoscu(listener).returncode == 0  # and it keeps serving the peers it knows


def test_it_refuses_every_caller_while_no_peer_is_configured(start_listener, transactional_db) -> None:
    result = echoscu(start_listener(), calling="XRAY1")

    assert result.returncode != 0
    assert "Calling AE Title Not Recognized" in result.output


def test_it_stores_an_unknown_callers_images_in_the_default_site(start_listener, demo_site, tmp_path) -> None:
    listener = start_listener(default_site="DEMO")

    result = storescu(listener, _write(tmp_path, "a.dcm", _study(1)), calling="ANYONE")

    assert result.returncode == 0, result.output
    image = Image.objects.get()
    assert (image.site, image.source_ae_title) == (demo_site, "ANYONE")


def test_it_reads_the_peer_mapping_at_each_association(start_listener, demo_site, north_site, tmp_path) -> None:
    listener = start_listener()
    assert echoscu(listener, calling="XRAY2").returncode != 0

    # When an admin maps the caller, then remaps it, no restart is needed.
    peer = DicomPeer.objects.create(ae_title="XRAY2", site=demo_site)
    assert storescu(listener, _write(tmp_path, "a.dcm", _study(1)), calling="XRAY2").returncode == 0
    peer.site = north_site
    peer.save()
    assert storescu(listener, _write(tmp_path, "b.dcm", _study(2)), calling="XRAY2").returncode == 0

    assert list(Image.objects.order_by("pk").values_list("site__code", flat=True)) == ["DEMO", "NORTH"]


@pytest.mark.slow
def test_it_stores_uncompressed_and_compressed_films_with_the_calling_ae_and_peer(start_listener, peer, tmp_path):
    listener = start_listener()
    films = {
        ExplicitVRLittleEndian: ((), _study(1)),
        JPEGLosslessSV1: (("-xs",), _study(2, transfer_syntax=JPEGLosslessSV1)),
        JPEG2000Lossless: (("-xv",), _study(3, transfer_syntax=JPEG2000Lossless, modality="DX")),
    }

    for syntax, (options, data) in films.items():
        result = storescu(listener, _write(tmp_path, f"{syntax}.dcm", data), extra=options)
        assert result.returncode == 0, result.output
        assert "Received Store Response (Success)" in result.output

    images = {image.transfer_syntax: image for image in Image.objects.select_related("study")}
    assert set(images) == set(films)
    for syntax, image in images.items():
        assert (image.source_ae_title, image.source_address) == ("XRAY1", "127.0.0.1")
        assert image.site == peer.site and image.kind == "dicom"
        assert image.study.study_instance_uid == dcmread(io.BytesIO(films[syntax][1])).StudyInstanceUID
        upload = AuditEvent.objects.get(action="upload", object_id=str(image.pk))
        assert upload.detail["source_ae_title"] == "XRAY1"
        assert upload.detail["source_address"] == "127.0.0.1"
    assert images[JPEG2000Lossless].sop_class_uid == SOP_CLASSES["DX"]
    assert Study.objects.count() == 3


def test_it_stores_the_good_films_of_an_association_and_refuses_a_broken_one(start_listener, peer, tmp_path) -> None:
    listener = start_listener()
    good = [_write(tmp_path, f"good{i}.dcm", _study(i)) for i in (1, 2)]
    broken = _write(tmp_path, "broken.dcm", _study(3, patient_id=None))  # ingest refuses a film with no patient ID

    result = storescu(listener, good[0], broken, good[1], extra=("-nh",))

    assert result.output.count("Received Store Response (Success)") == 2, result.output
    assert result.output.count("Received Store Response (Error: CannotUnderstand)") == 1
    assert Image.objects.count() == 2
    refusal = AuditEvent.objects.get(action="upload_refused")
    assert refusal.detail["reason"] == "The DICOM file has no patient ID (PatientID)"
    assert refusal.detail["source_ae_title"] == "XRAY1"
    assert echoscu(listener).returncode == 0  # the next association is served


# --- Statuses, read with pynetdicom as the sender ------------------------------------------------


@pytest.fixture
def files_sent_as_they_are(monkeypatch) -> None:
    """pynetdicom sends a file's bytes after its file meta without parsing them, as a PACS forwards a file."""
    from pynetdicom import _config

    monkeypatch.setattr(_config, "STORE_SEND_CHUNKED_DATASET", True)


def _send(listener, *items: bytes | Path, calling: str = "XRAY1", contexts=None) -> list[int]:
    """C-STORE each item in one association; the statuses (None where the association was lost)."""
    ae = AE(ae_title=calling)
    for context in contexts or (
        ComputedRadiographyImageStorage,
        DigitalXRayImageStorageForPresentation,
        SOP_CLASSES["MG"],
    ):
        ae.add_requested_context(context, [ExplicitVRLittleEndian])
    assoc = ae.associate("127.0.0.1", listener.port, ae_title=listener.ae_title)
    assert assoc.is_established
    statuses = []
    try:
        for item in items:
            dataset = dcmread(io.BytesIO(item)) if isinstance(item, bytes) else item
            status = assoc.send_c_store(dataset)
            statuses.append(int(status.Status) if "Status" in status else None)
    finally:
        assoc.release()
    return statuses


def test_it_answers_success_for_a_film_already_stored(start_listener, peer) -> None:
    listener = start_listener()
    data = _study(1)

    assert _send(listener, data) == [0x0000]
    assert _send(listener, data, data) == [0x0000, 0x0000]
    assert Image.objects.count() == 1


@pytest.mark.usefixtures("files_sent_as_they_are")
def test_it_answers_0xa900_when_the_dataset_is_not_of_the_sop_class_it_was_sent_as(start_listener, peer, tmp_path):
    # Sent as DX (its file meta says so, and a file is sent as it is) while the dataset itself says MG.
    data = _study(1, modality="DX")
    in_dataset = data.rindex(SOP_CLASSES["DX"].encode())  # the first is the file meta's
    data = data[:in_dataset] + SOP_CLASSES["MG"].encode() + data[in_dataset + len(SOP_CLASSES["MG"]) :]

    assert _send(start_listener(), _write(tmp_path, "a.dcm", data)) == [0xA900]
    assert not Image.objects.exists()


def test_it_answers_0xa700_while_storage_fails_so_that_the_sender_retries(start_listener, peer, settings, tmp_path):
    listener = start_listener()
    blocked = tmp_path / "not-a-folder"
    blocked.write_bytes(b"")  # the media "folder" is a file: every save fails with OSError, even for root
    data = _study(1)
    original = settings.STORAGES
    settings.STORAGES = {**original, "default": {**original["default"], "OPTIONS": {"location": str(blocked)}}}

    assert _send(listener, data) == [0xA700]
    assert not Image.objects.exists()

    settings.STORAGES = original
    assert _send(listener, data) == [0x0000]  # the sender's retry succeeds
    assert Image.objects.count() == 1


@pytest.mark.slow
@pytest.mark.usefixtures("files_sent_as_they_are")
def test_it_refuses_hostile_files_one_by_one_and_keeps_serving(start_listener, peer, tmp_path) -> None:
    listener = start_listener()
    good = _study(1)
    hostile = {
        "nested sequences": nested_sequence_dicom(200),
        "truncated": good[: len(good) - 5000],
        "lying dimensions": rewrite_dicom(_study(2), Rows=60000, Columns=60000),
        "no pixel data": rewrite_dicom(_study(3), remove=("PixelData",)),
        "garbage pixels": rewrite_dicom(_study(4), PixelData=b"\x00\x01" * 7),
    }
    paths = [_write(tmp_path, f"{i}.dcm", data) for i, data in enumerate(hostile.values())]

    # Sent as they are (pynetdicom reads only their file meta), among good films.
    statuses = _send(listener, _write(tmp_path, "good.dcm", good), *paths, _study(5))

    assert statuses[0] == 0x0000 and statuses[-1] == 0x0000
    assert all(status in (0xC000, 0xA900) for status in statuses[1:-1]), dict(zip(hostile, statuses[1:-1], strict=True))
    assert Image.objects.count() == 2
    assert echoscu(listener).returncode == 0


def test_it_accepts_but_does_not_ingest_pneumos_own_result_objects_sent_back(start_listener, peer) -> None:
    data = _study(1, extra={"Manufacturer": "Pneumo"})

    assert _send(start_listener(), data) == [0x0000]
    assert not Image.objects.exists()


def test_it_names_the_site_of_each_caller(transactional_db, demo_site) -> None:
    from cases.dicom.listener import caller_site

    DicomPeer.objects.create(ae_title="XRAY1", site=demo_site)
    other = Site.objects.create(code="OTHER", name="Other")

    assert caller_site(ae_title="XRAY1 ", default_site_code="") == demo_site
    assert caller_site(ae_title="NOBODY", default_site_code="") is None
    assert caller_site(ae_title="NOBODY", default_site_code="OTHER") == other
    assert caller_site(ae_title="NOBODY", default_site_code="MISSING") is None


@pytest.mark.slow
def test_it_speaks_dicom_tls_when_given_a_certificate_and_key(start_listener, peer, tmp_path) -> None:
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    self_signed = ("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1")
    subprocess.run(["openssl", *self_signed, "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    listener = start_listener(tls_cert_file=str(cert), tls_key_file=str(key))
    trusting = ("+tla", "+cf", str(cert))  # anonymous client, the listener's certificate as the trusted one

    stored = storescu(listener, _write(tmp_path, "a.dcm", _study(1)), extra=trusting)

    assert stored.returncode == 0, stored.output
    assert Image.objects.get().source_ae_title == "XRAY1"
    assert storescu(listener, _write(tmp_path, "b.dcm", _study(2))).returncode != 0  # plain TCP is not served
