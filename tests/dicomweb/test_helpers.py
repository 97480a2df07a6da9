"""DICOMweb's pure helpers: the multipart parser and writer, transfer syntaxes, Accept headers, DICOM JSON."""

from __future__ import annotations

import io

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import (
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLSLossless,
    RLELossless,
)

from cases.dicomweb import multipart, qido, transcode
from cases.dicomweb.json_model import header_uids, metadata_json, person_name
from cases.dicomweb.views import wanted_syntaxes
from tests.dicom_factory import make_dicom, nested_sequence_dicom


def _parts(body: bytes, boundary: str = "B", limit: int = 10**7) -> list[tuple[dict, bytes, bool]]:
    return [(p.headers, p.file.read(), p.too_large) for p in multipart.iter_parts(io.BytesIO(body), boundary,
            part_limit=limit)]  # fmt: skip


def test_it_reads_back_what_it_writes_even_when_a_part_holds_boundary_like_bytes() -> None:
    big = b"\r\n--BOUND" + bytes(range(256)) * 3000  # a near-delimiter, and more than one read (256 kB) long
    body = b"".join(multipart.encode_parts([("application/dicom", [big]), ("application/dicom", [b"x"])], "BOUNDARY"))
    assert _parts(body, "BOUNDARY") == [({"content-type": "application/dicom"}, big, False),
                            ({"content-type": "application/dicom"}, b"x", False)]  # fmt: skip


def test_it_reads_a_preamble_padding_and_dicomweb_clients_leading_crlf() -> None:
    body = b"preamble\r\n--B  \r\nContent-Type: application/dicom\r\n\r\nAAA\r\n--B--\r\nepilogue"
    assert _parts(body) == [({"content-type": "application/dicom"}, b"AAA", False)]
    assert _parts(b"\r\n--B\r\n\r\nno headers\r\n--B--") == [({}, b"no headers", False)]


def test_it_flags_a_part_over_the_limit_without_keeping_it() -> None:
    body = b"--B\r\nContent-Type: application/dicom\r\n\r\n" + b"x" * 100 + b"\r\n--B--"
    assert _parts(body, limit=99) == [({"content-type": "application/dicom"}, b"", True)]


@pytest.mark.parametrize(
    "body",
    [b"no boundary here", b"--B\r\nContent-Type: a\r\n\r\nnever closed", b"--B\r\nno colon\r\n\r\nx\r\n--B--"],
)
def test_it_refuses_malformed_bodies(body: bytes) -> None:
    with pytest.raises(multipart.MultipartError):
        _parts(body)


def test_it_reads_media_types_and_their_parameters() -> None:
    assert multipart.media_type_of('Multipart/Related; type="application/dicom"; boundary="a b"') == (
        "multipart/related", {"type": "application/dicom", "boundary": "a b"})  # fmt: skip


@pytest.mark.parametrize(
    "stored", [ImplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian, RLELossless, JPEGLSLossless]
)
@pytest.mark.parametrize("wanted", [ExplicitVRLittleEndian, ImplicitVRLittleEndian])
def test_it_writes_every_stored_syntax_uncompressed_with_the_same_pixels(stored: str, wanted: str) -> None:
    data = make_dicom(2, transfer_syntax=stored, bits=12)
    out = dcmread(io.BytesIO(transcode.in_syntax(data, str(wanted))))
    source = dcmread(io.BytesIO(data))
    assert out.file_meta.TransferSyntaxUID == wanted
    assert np.array_equal(out.pixel_array, source.pixel_array)
    assert out.SOPInstanceUID == source.SOPInstanceUID


def test_it_hands_back_the_stored_bytes_and_refuses_to_compress() -> None:
    data = make_dicom(transfer_syntax=RLELossless)
    assert transcode.in_syntax(data, "*") == data and transcode.in_syntax(data, str(RLELossless)) == data
    assert transcode.producible(str(RLELossless), str(RLELossless))
    assert not transcode.producible(str(ExplicitVRLittleEndian), str(JPEGBaseline8Bit))
    with pytest.raises(transcode.NotProducible):
        transcode.in_syntax(data, str(JPEGBaseline8Bit))


@pytest.mark.parametrize(
    ("accept", "syntaxes"),
    [
        ("", [str(ExplicitVRLittleEndian)]),
        ("*/*", [str(ExplicitVRLittleEndian)]),
        ('multipart/related; type="application/dicom"', [str(ExplicitVRLittleEndian)]),
        ('multipart/related; type="application/dicom"; transfer-syntax=*', ["*"]),
        (
            'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2.4.50; q=0.5, '
            'multipart/related; type="application/dicom"; transfer-syntax=1.2.840.10008.1.2',
            ["1.2.840.10008.1.2", "1.2.840.10008.1.2.4.50"],
        ),
        ('multipart/related; type="application/octet-stream"', []),
        ("image/png", []),
    ],
)
def test_it_reads_the_transfer_syntaxes_an_accept_header_allows(accept: str, syntaxes: list[str]) -> None:
    assert wanted_syntaxes(accept) == syntaxes


def test_it_names_a_refused_part_by_its_header_and_survives_hostile_ones() -> None:
    data = make_dicom()
    ds = dcmread(io.BytesIO(data))
    assert header_uids(data[:16384]) == (ds.SOPClassUID, ds.SOPInstanceUID)
    assert header_uids(b"\x00" * 300) == ("", "")
    assert header_uids(nested_sequence_dicom(5000)[:16384]) in {("", ""), header_uids(nested_sequence_dicom(5000))}


def test_it_leaves_pixel_data_out_of_metadata() -> None:
    metadata = metadata_json(make_dicom())
    assert "7FE00010" not in metadata and metadata["00100020"]["Value"] == ["PID-0001"]


def test_it_turns_readable_names_back_into_dicom_person_names() -> None:
    assert person_name("DOE, JANE MARIE") == "DOE^JANE MARIE"
    assert person_name("DOE^JANE") == "DOE^JANE"
    assert person_name("Yamada, Tarou = 山田, 太郎") == "Yamada^Tarou=山田^太郎"
    assert person_name("") == ""


@pytest.mark.parametrize("text", ["2024-01-01", "2024010", "20241301", "-"])
def test_it_refuses_dates_it_cannot_read(text: str) -> None:
    with pytest.raises(qido.QueryError):
        qido.date_range(text)


def test_it_reads_attributes_by_keyword_or_tag_and_lists() -> None:
    values = qido.query_values({"0020000D": ["1.2,1.3"], "ModalitiesInStudy": ["CR\\DX"], "limit": ["5"]})
    assert values == {"StudyInstanceUID": ["1.2", "1.3"], "ModalitiesInStudy": ["CR", "DX"], "limit": ["5"]}
    assert qido.paging({"limit": ["5000"]}) == (qido.MAX_LIMIT, 0)
