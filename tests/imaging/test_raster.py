"""PNG and JPEG uploads: sniffed, bounded, upright, greyscale, and never half-read."""

from __future__ import annotations

import struct
import zlib

import numpy as np
import pytest
from PIL import ImageFile

from cases.imaging import CorruptImage, DecodeError, TooLarge, Truncated, UnsupportedFormat, decode
from tests.dicom_factory import make_jpeg, make_other_image, make_png, sample_pixels

LIMITS = {"max_bytes": 16 * 2**20, "max_pixels": 50_000_000}


def decoded(data: bytes, filename: str = "chest.png", **limits):
    return decode(data, filename=filename, **{**LIMITS, **limits})


def refusal(data: bytes, filename: str = "chest.png", **limits) -> DecodeError:
    with pytest.raises(DecodeError) as caught:
        decoded(data, filename, **limits)
    return caught.value


def test_it_decodes_an_8_bit_png_unchanged() -> None:
    image = decoded(make_png())

    assert image.kind == "png" and image.metadata.kind == "png"
    np.testing.assert_array_equal(image.model_image, sample_pixels())
    assert image.default_window == (128.0, 256.0)
    assert image.display_pixels.dtype == np.uint16


def test_it_keeps_all_16_bits_of_a_16_bit_png_for_display() -> None:
    image = decoded(make_png(bits=16))

    expected = sample_pixels().astype(np.uint16) * 257
    np.testing.assert_array_equal(image.display_pixels, expected)
    assert image.metadata.bits_stored == 16
    assert np.abs(image.model_image.astype(int) - decoded(make_png()).model_image).max() <= 1


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "P", "LA"])
def test_it_converts_colour_pngs_to_greyscale(mode: str) -> None:
    image = decoded(make_png(mode=mode))

    assert image.model_image.ndim == 2
    assert np.abs(image.model_image.astype(int) - sample_pixels()).mean() < 2


def test_it_decodes_a_jpeg_to_greyscale() -> None:
    image = decoded(make_jpeg(mode="RGB"), filename="chest.jpg")

    assert image.kind == "jpeg"
    assert image.model_image.shape == sample_pixels().shape
    assert np.abs(image.model_image.astype(int) - sample_pixels()).mean() < 2


@pytest.mark.parametrize("orientation", [1, 3, 6, 8])
def test_it_applies_the_exif_orientation(orientation: int) -> None:
    image = decoded(make_jpeg(exif_orientation=orientation), filename="phone.jpg")

    upright = sample_pixels()
    assert image.model_image.shape == upright.shape
    assert (image.metadata.rows, image.metadata.columns) == upright.shape
    assert np.abs(image.model_image.astype(int) - upright).mean() < 2


def test_png_and_jpeg_carry_no_patient_metadata() -> None:
    meta = decoded(make_png()).metadata

    assert meta.patient_id is None and meta.patient_name is None and meta.age_years is None
    assert meta.body_part is None and meta.view_position is None and meta.modality is None


@pytest.mark.parametrize(
    ("fmt", "what"),
    [("GIF", "a GIF image"), ("TIFF", "a TIFF image"), ("WEBP", "a WebP image"), ("BMP", "a BMP image")],
)
def test_it_refuses_other_image_formats_renamed_png(fmt: str, what: str) -> None:
    error = refusal(make_other_image(fmt), filename="chest.png")

    assert isinstance(error, UnsupportedFormat)
    assert str(error) == f"The file (named .png) is {what}; only DICOM, PNG and JPEG images are accepted"


def test_it_refuses_a_truncated_jpeg() -> None:
    data = make_jpeg()

    error = refusal(data[: len(data) // 2], filename="chest.jpg")

    assert isinstance(error, Truncated)
    assert "The JPEG file is truncated" in str(error)


def test_it_refuses_a_truncated_png() -> None:
    data = make_png()

    error = refusal(data[: len(data) // 2])

    assert isinstance(error, Truncated | CorruptImage)


def test_it_never_lets_pillow_load_truncated_images() -> None:
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    data = make_jpeg()
    ImageFile.LOAD_TRUNCATED_IMAGES = True
    try:
        assert isinstance(refusal(data[: len(data) // 2], filename="chest.jpg"), Truncated)
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = False


def png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">L", len(body)) + kind + body + struct.pack(">L", zlib.crc32(kind + body))


def zero_png(width: int, height: int) -> bytes:
    """A black greyscale PNG: tiny on disk, ``width * height`` bytes once decoded."""
    header = png_chunk(b"IHDR", struct.pack(">LLBBBBB", width, height, 8, 0, 0, 0, 0))
    deflate = zlib.compressobj(9)
    row = bytes(width + 1)  # filter byte + pixels
    body = b"".join(deflate.compress(row) for _ in range(height)) + deflate.flush()
    return b"\x89PNG\r\n\x1a\n" + header + png_chunk(b"IDAT", body) + png_chunk(b"IEND", b"")


def test_it_refuses_a_png_decompression_bomb() -> None:
    bomb = zero_png(3000, 3000)  # ~9 megapixels from a few kilobytes

    error = refusal(bomb, max_pixels=4_000_000)

    assert len(bomb) < 20_000
    assert isinstance(error, TooLarge)
    assert str(error) == "Image dimensions 3000x3000 exceed the limit of 4 megapixels"


def test_it_refuses_a_png_header_promising_gigapixels_before_decoding() -> None:
    header = png_chunk(b"IHDR", struct.pack(">LLBBBBB", 100_000, 100_000, 8, 0, 0, 0, 0))
    data = b"\x89PNG\r\n\x1a\n" + header + png_chunk(b"IDAT", zlib.compress(b"")) + png_chunk(b"IEND", b"")

    error = refusal(data)

    assert isinstance(error, TooLarge)
    assert "100000x100000" in str(error)


def test_it_turns_pillows_bomb_warning_into_a_refusal() -> None:
    # Between MAX_IMAGE_PIXELS and twice that, Pillow only warns; we refuse.
    error = refusal(zero_png(1100, 1000), max_pixels=1_000_000)

    assert isinstance(error, TooLarge)


def test_it_restores_pillows_global_limits_afterwards() -> None:
    from PIL import Image

    before = Image.MAX_IMAGE_PIXELS
    decoded(make_png(), max_pixels=1_000_000)

    assert before == Image.MAX_IMAGE_PIXELS


def test_it_refuses_a_png_with_a_damaged_chunk() -> None:
    data = bytearray(make_png())
    data[40] ^= 0xFF  # inside IHDR/IDAT: the CRC no longer matches

    assert isinstance(refusal(bytes(data)), CorruptImage | Truncated)
