"""DICOMweb's edges in-process: limits, malformed bodies, media types, and the result-object extension point."""

from __future__ import annotations

import io
import zipfile

import pytest
from django.urls import reverse
from pydicom import Dataset, dcmread
from pydicom.uid import generate_uid

from cases.dicomweb import instances
from cases.dicomweb.multipart import encode_parts
from cases.models import Image, Study
from tests.dicom_factory import make_dicom, make_png

BOUNDARY = "test-boundary-0f3cf5c0"
STOW_TYPE = f'multipart/related; type="application/dicom"; boundary={BOUNDARY}'


def _body(*parts: tuple[str, bytes]) -> bytes:
    return b"".join(encode_parts([(content_type, [data]) for content_type, data in parts], BOUNDARY))


def _stow(client, body: bytes, **extra):
    return client.post(reverse("dicomweb:studies"), body, content_type=STOW_TYPE, **extra)


def _failures(response) -> list[Dataset]:
    return list(Dataset.from_json(response.json()).get("FailedSOPSequence", []))


@pytest.mark.django_db
def test_it_fails_parts_that_are_no_dicom_instance_before_ingest(api, demo_site, tech) -> None:
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("a.dcm", make_dicom())
    good = make_dicom(1)
    body = _body(("application/dicom", good), ("image/png", make_png()), ("application/dicom", archive.getvalue()))

    response = _stow(api(tech), body)

    assert response.status_code == 202 and response["Content-Type"] == "application/dicom+json"
    assert [f.FailureReason for f in _failures(response)] == [0xC000, 0xC000]
    assert list(Image.objects.values_list("sop_instance_uid", flat=True)) == [dcmread(io.BytesIO(good)).SOPInstanceUID]


@pytest.mark.django_db
def test_it_keeps_the_upload_limits(api, demo_site, tech, settings) -> None:
    # A part over the file limit fails (nothing else stored: 409); a request over the request limit is 413 unread
    settings.PNEUMO_MAX_UPLOAD_BYTES = 10_000
    response = _stow(api(tech), _body(("application/dicom", make_dicom())))
    assert response.status_code == 409 and len(_failures(response)) == 1
    settings.PNEUMO_MAX_REQUEST_BYTES = 1_000
    too_large = _stow(api(tech), _body(("application/dicom", make_dicom())))
    assert too_large.status_code == 413 and "PNEUMO_MAX_REQUEST_BYTES" not in too_large.json()["detail"]
    assert not Image.objects.exists()


@pytest.mark.django_db
def test_it_answers_a_malformed_body_with_400_or_with_what_it_stored(api, demo_site, tech) -> None:
    assert _stow(api(tech), b"not multipart at all").status_code == 400
    # One whole part, then a part cut off before its closing boundary
    head = f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    response = _stow(api(tech), head + make_dicom(2) + b"\r\n" + head + make_dicom(3)[:5000])
    assert response.status_code == 202, response.content
    assert [f.ReferencedSOPInstanceUID for f in _failures(response)] == [""]
    assert Image.objects.count() == 1


@pytest.mark.django_db
def test_it_refuses_a_chunked_body_it_cannot_read_and_answers_406_for_other_media(api, demo_site, tech) -> None:
    response = api(tech).post(
        reverse("dicomweb:studies"), b"", content_type=STOW_TYPE, HTTP_TRANSFER_ENCODING="chunked"
    )
    assert response.status_code == 411
    search = api(tech).get(reverse("dicomweb:studies"), HTTP_ACCEPT="application/dicom+xml")
    assert search.status_code == 406 and "detail" in search.json()
    assert api(tech).get(reverse("dicomweb:studies"), {"StudyDate": "2024-01-01"}).status_code == 400
    assert api(tech).get("/dicomweb/nothing/here").status_code == 404
    assert api(None).get("/dicomweb/nothing/here").status_code == 401


@pytest.mark.django_db
def test_it_stores_for_a_browser_session_with_its_csrf_token(demo_site, tech) -> None:
    from django.test import Client

    browser = Client(enforce_csrf_checks=True)
    browser.force_login(tech)
    body = _body(("application/dicom", make_dicom()))
    refused = _stow(browser, body)  # no CSRF token: refused before the body is read
    assert refused.status_code == 403 and "CSRF" in refused.json()["detail"]
    secret = "a" * 32  # the CSRF cookie a page of the site would have set
    browser.cookies["csrftoken"] = secret
    response = _stow(browser, body, HTTP_X_CSRFTOKEN=secret)
    assert response.status_code == 200, response.content


@pytest.fixture
def result_source(db):
    """A registered source of one result object (an SR-like secondary capture) per study: the outbox's stand-in."""
    objects: dict[int, tuple[str, str, bytes]] = {}

    def result_instances(study_ids):
        for study in Study.objects.filter(pk__in=[pk for pk in study_ids if pk in objects]):
            series_uid, sop_uid, data = objects[study.pk]
            yield instances.Instance(study=study, series_uid=series_uid, sop_uid=sop_uid,
                                     sop_class_uid="1.2.840.10008.5.1.4.1.1.88.34", modality="SR",
                                     transfer_syntax="1.2.840.10008.1.2.1", series_description="Pneumo AI result",
                                     opener=lambda data=data: data)  # fmt: skip

    def result_study_ids(modalities):
        return list(objects) if not modalities or "SR" in modalities else []

    instances.register_instance_source(
        instances.InstanceSource("test-results", result_instances, study_ids_with_modality=result_study_ids)
    )
    yield objects
    instances.unregister_instance_source("test-results")


@pytest.mark.django_db
def test_it_lists_and_serves_registered_result_objects_in_their_study(api, demo_site, tech, rad, north_rad,
                                                                      result_source) -> None:  # fmt: skip
    # Given a stored CR study and a result object of it
    source = dcmread(io.BytesIO(make_dicom()))
    assert _stow(api(tech), _body(("application/dicom", make_dicom(0, study_uid=source.StudyInstanceUID)))
                 ).status_code == 200  # fmt: skip
    study = Study.objects.get()
    series_uid, sop_uid = generate_uid(), generate_uid()
    sr = make_dicom(0, study_uid=study.study_instance_uid, series_uid=series_uid, sop_uid=sop_uid, modality="OT")
    result_source[study.pk] = (series_uid, sop_uid, sr)
    client = api(rad)

    # Then QIDO counts it in the study, lists its series and finds the study by its modality
    [found] = client.get(reverse("dicomweb:studies"), {"ModalitiesInStudy": "SR"}).json()
    assert Dataset.from_json(found).ModalitiesInStudy == ["CR", "SR"]
    assert Dataset.from_json(found).NumberOfStudyRelatedInstances == 2
    series = client.get(reverse("dicomweb:series", kwargs={"study": study.study_instance_uid})).json()
    described = {Dataset.from_json(s).SeriesInstanceUID: Dataset.from_json(s) for s in series}
    assert described[series_uid].SeriesDescription == "Pneumo AI result"

    # And WADO-RS serves its bytes and metadata; it is not drawn; another site's user finds nothing
    address = {"study": study.study_instance_uid, "series": series_uid, "instance": sop_uid}
    retrieved = client.get(reverse("dicomweb:instance", kwargs=address), HTTP_ACCEPT='multipart/related; '
                           'type="application/dicom"; transfer-syntax=*')  # fmt: skip
    assert sr in b"".join(retrieved.streaming_content)
    metadata = client.get(reverse("dicomweb:instance-metadata", kwargs=address)).json()
    assert metadata[0]["00080018"]["Value"] == [sop_uid]
    assert client.get(reverse("dicomweb:instance-rendered", kwargs=address)).status_code == 404
    assert api(north_rad).get(reverse("dicomweb:instance", kwargs=address)).status_code == 404
    assert api(north_rad).get(reverse("dicomweb:studies"), {"ModalitiesInStudy": "SR"}).json() == []


@pytest.mark.django_db
def test_it_queues_the_ai_for_stored_instances_and_leaves_png_uploads_out(api, demo_site, tech, model_version) -> None:
    from cases.ingest import IncomingFile, ManualPatient, studies_ingest
    from inference.models import Prediction

    # Given a PNG uploaded with typed patient details (no DICOM header, no series)
    studies_ingest(files=[IncomingFile("chest.png", make_png())], site=demo_site, user=tech,
                   manual=ManualPatient(patient_id="PNG-1"))  # fmt: skip

    # When a DICOM instance is stored through STOW-RS
    assert _stow(api(tech), _body(("application/dicom", make_dicom()))).status_code == 200

    # Then its AI result is queued as for an upload, and only it is a DICOMweb instance
    image = Image.objects.get(kind="dicom")
    assert Prediction.objects.filter(image=image, model_version=model_version, status="pending").exists()
    [found] = api(tech).get(reverse("dicomweb:studies")).json()
    assert Dataset.from_json(found).StudyInstanceUID == image.study.study_instance_uid
