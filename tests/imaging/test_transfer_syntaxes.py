"""Every transfer syntax a modality or PACS is likely to send decodes to the pixels that were stored."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.data import get_testdata_file
from pydicom.uid import (
    JPEG2000,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGBaseline8Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEGLSNearLossless,
    RLELossless,
)

from cases.imaging import decode
from tests.dicom_factory import make_dicom, stored_pixels

LIMITS = {"max_bytes": 64 * 2**20, "max_pixels": 50_000_000}
LOSSLESS = [
    ImplicitVRLittleEndian,
    ExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    DeflatedExplicitVRLittleEndian,
    RLELossless,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSLossless,
    JPEG2000Lossless,
]


def decoded(data: bytes):
    return decode(data, filename="image.dcm", **LIMITS)


@pytest.mark.parametrize("bits", [8, 12, 16])
@pytest.mark.parametrize("syntax", LOSSLESS, ids=lambda uid: uid.name)
def test_it_decodes_lossless_syntaxes_to_exactly_the_stored_values(syntax: str, bits: int) -> None:
    image = decoded(make_dicom(transfer_syntax=syntax, bits=bits))

    assert image.metadata.transfer_syntax_uid == syntax
    np.testing.assert_array_equal(image.display_pixels, stored_pixels(bits=bits))


@pytest.mark.parametrize(
    ("syntax", "bits", "max_error", "mean_error"),
    # Errors in stored values: out of 255 for 8-bit, out of 4095 for 12-bit. JPEG-LS NEAR=2 bounds its error.
    [(JPEGBaseline8Bit, 8, 12, 1.0), (JPEGLSNearLossless, 12, 2, 1.5), (JPEG2000, 12, 160, 16.0)],
    ids=["jpeg-baseline", "jpeg-ls-near-lossless", "jpeg2000-lossy"],
)
def test_it_decodes_lossy_syntaxes_close_to_the_stored_values(
    syntax: str, bits: int, max_error: int, mean_error: float
) -> None:
    image = decoded(make_dicom(transfer_syntax=syntax, bits=bits))

    error = np.abs(image.display_pixels.astype(np.int64) - stored_pixels(bits=bits))
    assert error.max() <= max_error
    assert error.mean() <= mean_error


def test_it_decodes_12_bit_jpeg_extended() -> None:
    path = get_testdata_file("JPGExtended.dcm", download=False)
    if path is None:
        pytest.skip("pydicom's JPGExtended.dcm is not bundled here")
    with open(path, "rb") as handle:
        image = decoded(handle.read())

    assert image.metadata.transfer_syntax_uid == "1.2.840.10008.1.2.4.51"
    assert image.metadata.bits_stored == 12
    assert image.model_image.shape == (1024, 256)
    assert image.display_pixels.max() > 255  # all 12 bits came through, not a byte-scaled copy


@pytest.mark.parametrize("syntax", [ExplicitVRLittleEndian, JPEG2000Lossless, RLELossless], ids=lambda uid: uid.name)
def test_it_decodes_signed_16_bit_data_with_its_sign(syntax: str) -> None:
    image = decoded(make_dicom(transfer_syntax=syntax, bits=16, signed=True))

    assert image.display_pixels.dtype == np.int32
    assert image.display_pixels.min() < 0
    np.testing.assert_array_equal(image.display_pixels, stored_pixels(bits=16, signed=True))


def test_it_gives_the_same_model_image_for_every_lossless_syntax() -> None:
    images = [decoded(make_dicom(transfer_syntax=syntax, bits=12)).model_image for syntax in LOSSLESS]

    for image in images[1:]:
        np.testing.assert_array_equal(image, images[0])


def test_it_reduces_colour_secondary_captures_to_luminance() -> None:
    path = get_testdata_file("SC_rgb_rle.dcm", download=False)
    if path is None:
        pytest.skip("pydicom's SC_rgb_rle.dcm is not bundled here")
    with open(path, "rb") as handle:
        image = decoded(handle.read())

    assert image.model_image.ndim == 2
    assert image.model_image.shape == (100, 100)
    assert image.metadata.photometric_interpretation == "RGB"


def test_it_keeps_rows_and_columns_the_right_way_round() -> None:
    image = decoded(make_dicom(shape=(64, 48)))

    assert image.model_image.shape == (64, 48)
    assert (image.metadata.rows, image.metadata.columns) == (64, 48)
