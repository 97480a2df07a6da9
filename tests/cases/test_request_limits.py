"""A limit on a whole request (PNEUMO_MAX_REQUEST_BYTES), answered before the body is read, and the files of a
request read one at a time.
"""

from __future__ import annotations

import io
import socket
import threading
import time
from wsgiref.simple_server import WSGIRequestHandler, make_server

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.wsgi import get_wsgi_application
from django.test import Client
from django.urls import reverse

from cases.ingest import IncomingFile, studies_ingest
from tests.dicom_factory import make_dicom

LIMIT = 64 * 1024


class UnreadableBody(io.RawIOBase):
    """A request body that fails the test if anything reads it."""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        raise AssertionError("the body of a too-large request was read")


@pytest.fixture
def limited(settings):
    settings.PNEUMO_MAX_REQUEST_BYTES = LIMIT
    return settings


def post_declaring(client: Client, path: str, length: int, **headers):
    return client.generic(
        "POST",
        path,
        b"",
        content_type="multipart/form-data; boundary=x",
        CONTENT_LENGTH=str(length),
        **{"wsgi.input": UnreadableBody()},
        **headers,
    )


@pytest.mark.parametrize("path", ["/api/v1/studies/", "/upload/files/"])
def test_it_answers_413_in_json_from_the_content_length_without_reading_the_body(limited, path) -> None:
    response = post_declaring(Client(), path, LIMIT + 1, HTTP_ACCEPT="application/json")
    assert response.status_code == 413
    assert "limit for one request" in response.json()["detail"]


def test_it_answers_413_as_a_page_to_a_browser(limited) -> None:
    response = post_declaring(Client(), reverse("login"), LIMIT + 1, HTTP_ACCEPT="text/html")
    assert response.status_code == 413
    assert response["Content-Type"].startswith("text/html")
    assert b"Request too large" in response.content


def test_it_lets_a_request_within_the_limit_through(limited, active_model, demo_site, tech) -> None:
    client = Client()
    client.force_login(tech)
    small = SimpleUploadedFile("a.dcm", make_dicom(0, shape=(32, 32)))
    big = SimpleUploadedFile("b.dcm", bytes(LIMIT))
    assert client.post(reverse("upload_files"), {"files": [small], "priority": "routine"}).status_code == 200
    refused = client.post(
        reverse("upload_files"), {"files": [big], "priority": "routine"}, HTTP_ACCEPT="application/json"
    )
    assert refused.status_code == 413 and "Nothing was stored" in refused.json()["detail"]


class QuietHandler(WSGIRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_it_answers_a_raw_request_declaring_a_huge_body_at_once(limited) -> None:
    # Given the site served over a real socket
    server = make_server("127.0.0.1", 0, get_wsgi_application(), handler_class=QuietHandler)
    thread = threading.Thread(target=server.handle_request, daemon=True)
    thread.start()
    try:
        # When a client declares a 10 GiB body and sends none of it
        with socket.create_connection(server.server_address, timeout=5) as client:
            started = time.monotonic()
            client.sendall(
                b"POST /api/v1/studies/ HTTP/1.1\r\nHost: localhost\r\n"
                b"Content-Type: multipart/form-data; boundary=x\r\nContent-Length: 10737418240\r\n\r\n"
            )
            answer = client.recv(65536)

        # Then it gets its 413 promptly, without the server waiting for the body
        assert answer.startswith(b"HTTP/1.0 413") or answer.startswith(b"HTTP/1.1 413"), answer[:100]
        assert time.monotonic() - started < 2
    finally:
        thread.join(5)
        server.server_close()


class RecordedFile(io.BytesIO):
    def __init__(self, data: bytes, name: str, log: list[str]) -> None:
        super().__init__(data)
        self.name_, self.log = name, log

    def close(self) -> None:
        if not self.closed:
            self.log.append(f"close {self.name_}")
        super().close()


def recorded(name: str, data: bytes, log: list[str]) -> IncomingFile:
    def opener() -> RecordedFile:
        log.append(f"open {name}")
        return RecordedFile(data, name, log)

    return IncomingFile(name, opener=opener)


@pytest.mark.django_db
def test_it_reads_the_files_of_an_upload_one_at_a_time_and_releases_each_before_the_next(
    active_model, demo_site, tech
) -> None:
    log: list[str] = []
    files = [recorded(f"{n}.dcm", make_dicom(n), log) for n in range(3)]
    report = studies_ingest(files=files, site=demo_site, user=tech)
    assert [f.status for f in report.files] == ["stored"] * 3
    assert log == ["open 0.dcm", "close 0.dcm", "open 1.dcm", "close 1.dcm", "open 2.dcm", "close 2.dcm"]


@pytest.mark.django_db
def test_it_refuses_a_file_over_the_size_limit_from_its_size_without_reading_it(
    settings, active_model, demo_site, tech
) -> None:
    settings.PNEUMO_MAX_UPLOAD_BYTES = 1000

    class Unread(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            # Its first bytes may be looked at (is it a zip?), not the file.
            assert size is not None and 0 <= size <= 8, "an oversized file was read"
            return super().read(size)

    report = studies_ingest(
        files=[IncomingFile("big.dcm", opener=lambda: Unread(bytes(1001)))], site=demo_site, user=tech
    )
    [outcome] = report.files
    assert outcome.status == "refused" and "larger than" in outcome.reason
