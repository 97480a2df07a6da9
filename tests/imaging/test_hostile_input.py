"""Files that are not what they claim, damaged, or built to hurt: each gets a clear refusal, fast."""

from __future__ import annotations

import io
import struct
import time
import tracemalloc
import zlib

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.uid import JPEGBaseline8Bit

from cases.imaging import (
    CorruptImage,
    DecodeError,
    EmptyFile,
    NoPixelData,
    NotAnImage,
    TooComplex,
    TooLarge,
    Truncated,
    UnsupportedFormat,
    decode,
    zero_preamble,
)
from tests.dicom_factory import dataset_bytes, make_dicom, nested_sequence_dicom, rewrite_dicom

LIMITS = {"max_bytes": 16 * 2**20, "max_pixels": 50_000_000}
ELF_HEADER = b"\x7fELF\x02\x01\x01\x00" + bytes(8) + b"\x02\x00\x3e\x00"
MZ_HEADER = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00"


def refusal(data: bytes, filename: str = "upload.dcm", **limits) -> DecodeError:
    with pytest.raises(DecodeError) as caught:
        decode(data, filename=filename, **{**LIMITS, **limits})
    return caught.value


def test_it_refuses_an_empty_file() -> None:
    error = refusal(b"")

    assert isinstance(error, EmptyFile)
    assert str(error) == "The file is empty"


def test_it_refuses_a_file_over_the_size_limit_before_reading_it() -> None:
    error = refusal(make_dicom(shape=(64, 64)), max_bytes=1000)

    assert isinstance(error, TooLarge)
    assert "over the limit of 0" in str(error)


@pytest.mark.parametrize(
    ("data", "words"),
    [
        (b"Patient: Jane Doe\nFinding: none\n" * 20, "is a text file"),
        (b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n", "is a PDF document"),
        (ELF_HEADER + bytes(200), "is a Linux program"),
        (MZ_HEADER + bytes(200), "is a Windows program"),
        (b"PK\x03\x04" + bytes(100), "is a ZIP archive"),
        (bytes(range(256)) * 4, "Not a DICOM, PNG or JPEG file"),
    ],
    ids=["text", "pdf", "elf", "mz", "zip", "noise"],
)
def test_it_refuses_files_that_are_not_images_saying_what_they_are(data: bytes, words: str) -> None:
    error = refusal(data, filename="chest.dcm")

    assert isinstance(error, NotAnImage)
    assert words in str(error)


def test_it_refuses_a_dataset_written_without_the_part_10_header() -> None:
    data = make_dicom(shape=(16, 16))
    error = refusal(data[128 + 4 + _meta_length(data) :])

    assert isinstance(error, UnsupportedFormat)
    assert "without the standard 'DICM' header" in str(error)


def _meta_length(data: bytes) -> int:
    # (0002,0000) group length: 12-byte element whose value is the rest of the meta group's length.
    return 12 + struct.unpack_from("<L", data, 132 + 8)[0]


@pytest.mark.parametrize("header", [MZ_HEADER, ELF_HEADER], ids=["mz", "elf"])
def test_it_decodes_a_dicom_whose_preamble_carries_an_executable_header(header: bytes) -> None:
    data = make_dicom(shape=(32, 32), preamble=header)

    image = decode(data, filename="polyglot.dcm", **LIMITS)

    assert image.model_image.shape == (32, 32)


def test_it_zeroes_the_preamble_without_changing_the_image() -> None:
    data = make_dicom(shape=(32, 32), preamble=MZ_HEADER)

    clean = zero_preamble(data)

    assert clean[:128] == bytes(128)
    assert clean[128:] == data[128:]
    original = decode(data, filename="a.dcm", **LIMITS)
    np.testing.assert_array_equal(decode(clean, filename="a.dcm", **LIMITS).display_pixels, original.display_pixels)


def test_it_leaves_non_dicom_bytes_alone_when_asked_to_zero_a_preamble() -> None:
    assert zero_preamble(MZ_HEADER) == MZ_HEADER


@pytest.mark.parametrize(
    "keep",
    [140, 200, 400, 0.5, -1000, -1],
    ids=["meta", "meta-value", "dataset", "pixels-half", "pixels-end", "last-byte"],
)
def test_it_refuses_a_dicom_truncated_anywhere(keep: float) -> None:
    data = make_dicom(shape=(64, 64))
    cut = data[: int(len(data) * keep)] if isinstance(keep, float) else data[:keep]

    error = refusal(cut)

    assert isinstance(error, Truncated | CorruptImage)
    assert "truncated or damaged" in str(error)


def test_it_refuses_a_dicom_without_pixel_data() -> None:
    error = refusal(rewrite_dicom(make_dicom(shape=(16, 16)), remove=("PixelData",)))

    assert isinstance(error, NoPixelData)
    assert str(error) == "DICOM file has no pixel data"


def test_it_refuses_pixel_data_shorter_than_rows_and_columns_promise() -> None:
    error = refusal(rewrite_dicom(make_dicom(shape=(64, 64)), Rows=128))

    assert isinstance(error, Truncated)
    assert "less pixel data than its header promises" in str(error)


def test_it_refuses_an_element_length_that_runs_past_the_end_of_the_file() -> None:
    data = bytearray(make_dicom(shape=(16, 16)))
    at = data.rfind(b"\xe0\x7f\x10\x00OW") if b"\xe0\x7f\x10\x00OW" in data else data.rfind(b"\xe0\x7f\x10\x00OB")
    struct.pack_into("<L", data, at + 8, 0x7FFFFFF0)

    error = refusal(bytes(data))

    assert isinstance(error, Truncated)


def test_it_refuses_an_element_longer_than_the_item_that_holds_it() -> None:
    ds = dcmread(io.BytesIO(make_dicom(shape=(16, 16), voi_lut=True)))
    ds["VOILUTSequence"].is_undefined_length = False  # explicit lengths, so the item's end is known
    ds.VOILUTSequence[0].is_undefined_length_sequence_item = False
    data = bytearray(dataset_bytes(ds))
    at = data.find(b"\x28\x00\x02\x30")  # (0028,3002) LUT Descriptor, inside the VOI LUT item
    struct.pack_into("<H", data, at + 6, 300)  # past the ~280-byte item, not past the file

    error = refusal(bytes(data))

    assert isinstance(error, CorruptImage)
    assert "claims to be longer" in str(error)


def test_it_refuses_dimensions_promising_gigabytes_before_allocating_anything() -> None:
    data = rewrite_dicom(make_dicom(shape=(16, 16)), Rows=60000, Columns=60000)

    tracemalloc.start()
    try:
        error = refusal(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert isinstance(error, TooLarge)
    assert str(error) == "Image dimensions 60000x60000 exceed the limit of 50 megapixels"
    assert peak < 8 * 2**20


def test_it_refuses_frame_counts_promising_gigabytes() -> None:
    error = refusal(rewrite_dicom(make_dicom(shape=(1024, 1024)), NumberOfFrames=10_000))

    assert isinstance(error, TooLarge)
    assert "10000 frames of 1024x1024" in str(error)


def test_it_refuses_compressed_frames_larger_than_the_header_says() -> None:
    data = make_dicom(shape=(64, 64), transfer_syntax=JPEGBaseline8Bit)

    error = refusal(rewrite_dicom(data, Rows=32, Columns=32))

    assert isinstance(error, CorruptImage)
    assert "compressed image is 64x64 but its header says 32x32" in str(error)


@pytest.mark.parametrize("depth", [13, 100_000])
def test_it_refuses_deeply_nested_sequences_quickly_and_without_recursion(depth: int) -> None:
    data = nested_sequence_dicom(depth)
    started = time.perf_counter()

    error = refusal(data)

    assert isinstance(error, TooComplex)
    assert str(error) == "DICOM file nests sequences deeper than 12 levels"
    assert time.perf_counter() - started < 2.0


def test_it_accepts_sequences_nested_up_to_the_limit() -> None:
    image = decode(nested_sequence_dicom(12), filename="deep.dcm", **LIMITS)

    assert image.model_image.shape == (16, 16)


def test_it_refuses_a_deflated_dicom_that_inflates_beyond_its_budget() -> None:
    data = make_dicom(shape=(16, 16))
    meta_end = 132 + _meta_length(data)
    deflated_syntax = b"1.2.840.10008.1.2.1.99\x00"
    meta = _with_transfer_syntax(data[:meta_end], deflated_syntax)
    bomb = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    body = b"".join(bomb.compress(bytes(2**20)) for _ in range(24)) + bomb.flush()

    error = refusal(meta + body, max_bytes=2**20, max_pixels=1000)

    assert isinstance(error, TooLarge)
    assert "expands beyond" in str(error)


def _with_transfer_syntax(meta: bytes, syntax: bytes) -> bytes:
    at = meta.find(b"\x02\x00\x10\x00UI")
    old_length = struct.unpack_from("<H", meta, at + 6)[0]
    element = meta[at : at + 6] + struct.pack("<H", len(syntax)) + syntax
    rebuilt = meta[:at] + element + meta[at + 8 + old_length :]
    group_length = len(rebuilt) - 132 - 12
    return rebuilt[:140] + struct.pack("<L", group_length) + rebuilt[144:]


def test_it_refuses_a_transfer_syntax_it_cannot_decode() -> None:
    data = make_dicom(shape=(64, 64), transfer_syntax=JPEGBaseline8Bit)
    mpeg2 = b"1.2.840.10008.1.2.4.100"
    meta_end = 132 + _meta_length(data)

    error = refusal(_with_transfer_syntax(data[:meta_end], mpeg2) + data[meta_end:])

    assert isinstance(error, UnsupportedFormat)
    assert "MPEG2" in str(error)


def test_it_refuses_bit_depths_it_does_not_support() -> None:
    error = refusal(rewrite_dicom(make_dicom(shape=(16, 16), bits=16), BitsAllocated=32, BitsStored=32, HighBit=31))

    assert isinstance(error, UnsupportedFormat)
    assert str(error) == "DICOM images with 32 bits per pixel are not supported"


def test_it_reports_multi_frame_objects_without_decoding_them() -> None:
    image = decode(make_dicom(shape=(64, 64), frames=4), filename="cine.dcm", **LIMITS)

    assert image.is_multiframe
    assert image.metadata.number_of_frames == 4
    assert image.model_image is None and image.display_pixels is None and image.default_window is None
    assert image.pixel_sha256() is None


def test_it_refuses_garbage_after_a_dicom_prefix() -> None:
    error = refusal(bytes(128) + b"DICM" + bytes(range(256)) * 8)

    assert isinstance(error, CorruptImage | Truncated)
