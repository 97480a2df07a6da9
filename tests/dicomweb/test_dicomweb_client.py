"""DICOMweb against the real dicomweb-client over real HTTP (the live server), with API tokens."""

from __future__ import annotations

import io
from collections.abc import Callable

import numpy as np
import pytest
import requests
from dicomweb_client import DICOMwebClient
from django.core.files.storage import default_storage
from pydicom import Dataset, dcmread
from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, generate_uid

from cases.api.tokens import token_create
from cases.models import AuditEvent, Image, Study, User
from tests.dicom_factory import make_dicom, rewrite_dicom

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

EXPLICIT = "1.2.840.10008.1.2.1"
DICOM_EXPLICIT = (("application/dicom", EXPLICIT),)


def dataset(data: bytes) -> Dataset:
    return dcmread(io.BytesIO(data))


@pytest.fixture
def client_for(live_server) -> Callable[[User | None], DICOMwebClient]:
    def make(user: User | None) -> DICOMwebClient:
        headers = {"Authorization": f"Token {token_create(user=user)[0]}"} if user else {}
        return DICOMwebClient(url=f"{live_server.url}/dicomweb", headers=headers)

    return make


def _stored(client: DICOMwebClient, *files: bytes, site: str = "") -> Dataset:
    return client.store_instances([dataset(f) for f in files], additional_params={"site": site} if site else None)


def _status(call: Callable[[], object]) -> int:
    with pytest.raises(requests.HTTPError) as error:
        call()
    return error.value.response.status_code


def test_it_stores_a_study_and_answers_200_with_its_references(client_for, demo_site, tech) -> None:
    # Given two radiographs of one study
    study_uid = generate_uid()
    files = [make_dicom(i, study_uid=study_uid) for i in (0, 9)]

    # When a technician stores them with STOW-RS
    answer = _stored(client_for(tech), *files)

    # Then both are stored at their site, referenced with their RetrieveURL, and audited as uploads
    study = Study.objects.get(study_instance_uid=study_uid, site=demo_site)
    assert study.images.count() == 2
    refs = {item.ReferencedSOPInstanceUID: item for item in answer.ReferencedSOPSequence}
    assert set(refs) == {dataset(f).SOPInstanceUID for f in files}
    assert "FailedSOPSequence" not in answer
    assert answer.RetrieveURL.endswith(f"/dicomweb/studies/{study_uid}")
    some = dataset(files[0])
    assert refs[some.SOPInstanceUID].RetrieveURL.endswith(
        f"/studies/{study_uid}/series/{some.SeriesInstanceUID}/instances/{some.SOPInstanceUID}"
    )
    assert AuditEvent.objects.filter(action="upload", user=tech).count() == 2

    # When the same instances come again, Then they count as stored (duplicates)
    again = _stored(client_for(tech), *files)
    assert len(again.ReferencedSOPSequence) == 2 and study.images.count() == 2


def test_it_answers_202_with_the_failed_part_and_409_when_nothing_is_stored(client_for, demo_site, tech) -> None:
    # Given a good radiograph and one without a patient ID (ingest refuses it)
    good, broken = make_dicom(1), rewrite_dicom(make_dicom(2), remove=("PatientID",))
    client = client_for(tech)

    # When both are stored, Then the answer is 202 and names the refused instance with 0xC000
    answer = _stored(client, good, broken)
    [failure] = answer.FailedSOPSequence
    assert failure.ReferencedSOPInstanceUID == dataset(broken).SOPInstanceUID
    assert failure.FailureReason == 0xC000
    assert [item.ReferencedSOPInstanceUID for item in answer.ReferencedSOPSequence] == [dataset(good).SOPInstanceUID]

    # When only refused instances are sent, Then the answer is 409 with every failure
    with pytest.raises(requests.HTTPError) as error:
        _stored(client, broken, rewrite_dicom(make_dicom(3), remove=("PatientID",)))
    assert error.value.response.status_code == 409
    assert len(Dataset.from_json(error.value.response.json()).FailedSOPSequence) == 2
    assert Image.objects.count() == 1


def test_it_refuses_other_content_types_roles_and_ambiguous_sites(
    client_for, live_server, demo_site, north_site, tech, rad, admin_user
) -> None:
    url = f"{live_server.url}/dicomweb/studies"
    key = token_create(user=tech)[0]

    # A single application/dicom body, or a form upload, is 415
    for content_type in ("application/dicom", "multipart/form-data; boundary=x"):
        response = requests.post(url, data=make_dicom(), headers={"Authorization": f"Token {key}",
                                 "Content-Type": content_type}, timeout=30)  # fmt: skip
        assert response.status_code == 415, response.text

    # A radiologist may not store; an admin (every site) must name one; another's site is not found
    assert _status(lambda: _stored(client_for(rad), make_dicom())) == 403
    assert _status(lambda: _stored(client_for(admin_user), make_dicom())) == 400
    assert _stored(client_for(admin_user), make_dicom(4), site="NORTH").ReferencedSOPSequence
    assert _status(lambda: _stored(client_for(tech), make_dicom(5), site="NORTH")) == 404
    assert _status(lambda: _stored(client_for(None), make_dicom())) == 401


@pytest.fixture
def two_studies(client_for, demo_site, tech) -> dict[str, bytes]:
    """A CR study of PID-A (15 Jan 2024, ACC-A) and a DX study of PID-B (20 Mar 2024, ACC-B), stored through STOW."""
    files = {
        "a": make_dicom(0, patient_id="PID-A", study_date="20240115", accession_number="ACC-A", modality="CR"),
        "b": make_dicom(9, patient_id="PID-B", study_date="20240320", accession_number="ACC-B", modality="DX"),
    }
    _stored(client_for(tech), *files.values())
    return files


def _uids(results: list[dict]) -> set[str]:
    return {Dataset.from_json(r).StudyInstanceUID for r in results}


def test_it_searches_studies_with_each_filter(client_for, two_studies, rad) -> None:
    client = client_for(rad)
    a, b = (dataset(two_studies[k]).StudyInstanceUID for k in ("a", "b"))

    assert _uids(client.search_for_studies()) == {a, b}
    assert _uids(client.search_for_studies(search_filters={"PatientID": "PID-A"})) == {a}
    assert _uids(client.search_for_studies(search_filters={"PatientID": "PID-*"})) == {a, b}
    assert _uids(client.search_for_studies(search_filters={"StudyDate": "20240320"})) == {b}
    assert _uids(client.search_for_studies(search_filters={"StudyDate": "20240101-20240201"})) == {a}
    assert _uids(client.search_for_studies(search_filters={"StudyDate": "20240201-"})) == {b}
    assert _uids(client.search_for_studies(search_filters={"AccessionNumber": "ACC-B"})) == {b}
    assert _uids(client.search_for_studies(search_filters={"StudyInstanceUID": a})) == {a}
    assert _uids(client.search_for_studies(search_filters={"ModalitiesInStudy": "DX"})) == {b}
    assert len(client.search_for_studies(limit=1)) == 1
    assert _uids(client.search_for_studies(limit=1, offset=1)) | _uids(client.search_for_studies(limit=1)) == {a, b}
    assert client.search_for_studies(search_filters={"PatientID": "NOBODY"}) == []

    # Each study carries the required return keys from the database
    [found] = client.search_for_studies(search_filters={"PatientID": "PID-A"})
    study = Dataset.from_json(found)
    assert (study.PatientID, study.StudyDate, study.AccessionNumber, study.ModalitiesInStudy) == (
        "PID-A", "20240115", "ACC-A", "CR")  # fmt: skip
    assert (study.NumberOfStudyRelatedSeries, study.NumberOfStudyRelatedInstances) == (1, 1)
    assert str(study.PatientName) == "TEST^PATIENT" and "StudyTime" in study and "StudyID" in study
    assert AuditEvent.objects.filter(action="dicomweb_search", user=rad, detail__level="study").exists()


def test_it_searches_series_and_instances(client_for, two_studies, rad) -> None:
    client = client_for(rad)
    a = dataset(two_studies["a"])

    [series] = client.search_for_series(a.StudyInstanceUID)
    series = Dataset.from_json(series)
    assert (series.SeriesInstanceUID, series.Modality, series.NumberOfSeriesRelatedInstances) == (
        a.SeriesInstanceUID, "CR", 1)  # fmt: skip
    assert client.search_for_series(a.StudyInstanceUID, search_filters={"Modality": "DX"}) == []

    [instance] = client.search_for_instances(a.StudyInstanceUID, a.SeriesInstanceUID)
    instance = Dataset.from_json(instance)
    assert (instance.SOPInstanceUID, instance.SOPClassUID, instance.Rows, instance.Columns) == (
        a.SOPInstanceUID, a.SOPClassUID, a.Rows, a.Columns)  # fmt: skip
    assert instance.RetrieveURL.endswith(f"/instances/{a.SOPInstanceUID}")


def test_it_retrieves_instances_in_explicit_vr_or_as_stored(client_for, live_server, demo_site, tech, rad) -> None:
    # Given a JPEG 2000 lossless radiograph (12 bits) stored through STOW-RS
    original = make_dicom(3, transfer_syntax=JPEG2000Lossless, bits=12)
    ds = dataset(original)
    _stored(client_for(tech), original)
    client, address = client_for(rad), (ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID)

    # When it is retrieved by default (Explicit VR Little Endian), Then its pixels are the same, decompressed
    plain = client.retrieve_instance(*address, media_types=DICOM_EXPLICIT)
    assert plain.file_meta.TransferSyntaxUID == EXPLICIT
    assert np.array_equal(plain.pixel_array, ds.pixel_array)
    assert (plain.PatientID, plain.SOPInstanceUID) == (ds.PatientID, ds.SOPInstanceUID)

    # When it is retrieved with transfer-syntax=*, Then the stored bytes come back
    image = Image.objects.get(sop_instance_uid=ds.SOPInstanceUID)
    as_stored = client.retrieve_instance(*address, media_types=(("application/dicom", "*"),))
    assert as_stored.file_meta.TransferSyntaxUID == JPEG2000Lossless and as_stored.PixelData == ds.PixelData
    raw = requests.get(f"{live_server.url}/dicomweb/studies/{address[0]}/series/{address[1]}/instances/{address[2]}",
                       headers={**client._session.headers, "Accept": 'multipart/related; type="application/dicom"; '
                                'transfer-syntax=*'}, timeout=30)  # fmt: skip
    with default_storage.open(image.file.name, "rb") as handle:
        assert handle.read() in raw.content
    assert f"transfer-syntax={JPEG2000Lossless}" in raw.text[:400]

    # A compressed syntax the file is not in cannot be produced: 406
    assert _status(lambda: client.retrieve_instance(*address, media_types=(("application/dicom", JPEGBaseline8Bit),)))
    assert _status(lambda: client.retrieve_instance(*address, media_types=(("application/dicom", JPEGBaseline8Bit),
                   ))) == 406  # fmt: skip

    # The whole study and the series are retrievable too
    assert [d.SOPInstanceUID for d in client.retrieve_study(ds.StudyInstanceUID, media_types=DICOM_EXPLICIT)] == [
        ds.SOPInstanceUID]  # fmt: skip
    assert len(client.retrieve_series(ds.StudyInstanceUID, ds.SeriesInstanceUID, media_types=DICOM_EXPLICIT)) == 1
    assert AuditEvent.objects.filter(action="download_image", object_id=str(image.pk), detail__via="dicomweb").exists()


def test_it_serves_metadata_without_pixels_and_a_rendered_png(client_for, two_studies, rad) -> None:
    client = client_for(rad)
    a = dataset(two_studies["a"])
    address = (a.StudyInstanceUID, a.SeriesInstanceUID, a.SOPInstanceUID)

    metadata = client.retrieve_instance_metadata(*address)
    assert "7FE00010" not in metadata
    assert Dataset.from_json(metadata).PatientID == "PID-A"

    png = client.retrieve_instance_rendered(*address, media_types=("image/png",))
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert AuditEvent.objects.filter(action="view_image", detail__rendering="dicomweb-rendered").exists()


def test_it_hides_other_sites_studies_and_refuses_anonymous_calls(
    client_for, demo_site, north_site, tech, north_tech, rad, admin_user
) -> None:
    # Given a study of NORTH
    data = make_dicom(6)
    theirs = dataset(data)
    _stored(client_for(north_tech), data)
    address = (theirs.StudyInstanceUID, theirs.SeriesInstanceUID, theirs.SOPInstanceUID)
    client = client_for(rad)

    # Then DEMO's radiologist neither finds it nor reaches any of it; an admin does
    assert client.search_for_studies() == []
    assert _status(lambda: client.search_for_series(address[0])) == 404
    assert _status(lambda: client.search_for_instances(*address[:2])) == 404
    assert _status(lambda: client.retrieve_instance(*address, media_types=DICOM_EXPLICIT)) == 404
    assert _status(lambda: client.retrieve_instance_metadata(*address)) == 404
    assert _status(lambda: client.retrieve_instance_rendered(*address, media_types=("image/png",))) == 404
    admin = client_for(admin_user)
    assert _uids(admin.search_for_studies()) == {address[0]}
    assert admin.retrieve_instance(*address, media_types=DICOM_EXPLICIT).SOPInstanceUID == address[2]
    assert _status(lambda: admin.retrieve_instance(*address, media_types=DICOM_EXPLICIT,
                   additional_params={"site": "DEMO"})) == 404  # fmt: skip

    # And an anonymous client gets 401 everywhere
    anonymous = client_for(None)
    assert _status(lambda: anonymous.search_for_studies()) == 401
    assert _status(lambda: anonymous.retrieve_instance(*address, media_types=DICOM_EXPLICIT)) == 401
