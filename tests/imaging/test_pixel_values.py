"""Real pixel values: modality LUT, VOI LUT or window, MONOCHROME1, bit depths, and the model image."""

from __future__ import annotations

import numpy as np
import pytest
from pydicom.uid import JPEG2000Lossless

from cases.imaging import decode
from tests.dicom_factory import default_voi_lut, make_dicom, sample_pixels, stored_pixels

LIMITS = {"max_bytes": 64 * 2**20, "max_pixels": 50_000_000}


def decoded(**options):
    return decode(make_dicom(**options), filename="image.dcm", **LIMITS)


def linear_window(values: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM PS3.3 C.11.2.1.2.1, written out the slow way."""
    x = values.astype(np.float64)
    unit = np.clip((x - (center - 0.5)) / (width - 1) + 0.5, 0.0, 1.0)
    return np.floor(unit * 255 + 0.5).astype(np.uint8)


@pytest.mark.parametrize("bits", [8, 12, 16])
def test_it_stretches_the_full_range_when_the_file_has_no_window(bits: int) -> None:
    image = decoded(bits=bits)
    stored = stored_pixels(bits=bits)

    low, high = int(stored.min()), int(stored.max())
    assert image.default_window == ((low + high + 1) / 2, high - low + 1)
    assert image.metadata.window_source == "full_range"
    assert image.model_image.min() == 0 and image.model_image.max() == 255
    assert image.model_image.dtype == np.uint8


def test_it_gives_the_model_the_same_picture_whatever_the_bit_depth() -> None:
    eight, twelve, sixteen = (decoded(bits=bits).model_image for bits in (8, 12, 16))

    assert np.abs(eight.astype(int) - twelve).max() <= 1
    assert np.abs(eight.astype(int) - sixteen).max() <= 1


def test_it_applies_the_files_window() -> None:
    image = decoded(bits=12, window=(1500.0, 1000.0))

    assert image.default_window == (1500.0, 1000.0)
    assert image.metadata.window_source == "window"
    assert (image.metadata.window_center, image.metadata.window_width) == (1500.0, 1000.0)
    np.testing.assert_array_equal(image.model_image, linear_window(stored_pixels(bits=12), 1500.0, 1000.0))


def test_it_uses_the_first_window_when_several_are_given() -> None:
    image = decoded(bits=12, window=[(1500.0, 1000.0), (2048.0, 4096.0)])

    assert image.default_window == (1500.0, 1000.0)


def test_it_ignores_a_window_narrower_than_one_value() -> None:
    image = decoded(bits=12, window=(1500.0, 0.5))

    assert image.metadata.window_source == "full_range"


def test_it_honours_a_sigmoid_voi_lut_function() -> None:
    image = decoded(bits=12, window=(2048.0, 1000.0), voi_function="SIGMOID")

    x = stored_pixels(bits=12).astype(np.float64)
    expected = np.rint(255 / (1 + np.exp(-4 * (x - 2048.0) / 1000.0))).astype(np.uint8)
    assert image.metadata.voi_lut_function == "SIGMOID"
    assert np.abs(image.model_image.astype(int) - expected).max() <= 1


def test_it_applies_the_rescale_slope_and_intercept_before_windowing() -> None:
    image = decoded(bits=12, rescale=(1.0, -1024.0), window=(0.0, 2000.0))

    real = stored_pixels(bits=12).astype(np.int64) - 1024
    np.testing.assert_array_equal(image.display_pixels, real)
    np.testing.assert_array_equal(image.model_image, linear_window(real, 0.0, 2000.0))


def test_it_keeps_fractional_rescales_exact_for_the_model_and_rounded_for_display() -> None:
    image = decoded(bits=12, rescale=(0.5, 10.0), window=(700.0, 800.0))

    real = stored_pixels(bits=12) * 0.5 + 10.0
    np.testing.assert_array_equal(image.display_pixels, np.rint(real))
    assert np.abs(image.model_image.astype(int) - linear_window(real, 700.0, 800.0)).max() <= 1


def test_it_applies_a_voi_lut_sequence() -> None:
    image = decoded(bits=12, voi_lut=True)

    first, table = default_voi_lut(12)
    index = np.clip(stored_pixels(bits=12).astype(np.int64) - first, 0, len(table) - 1)
    mapped = table[index].astype(np.float64)
    expected = np.rint((mapped - mapped.min()) / (mapped.max() - mapped.min()) * 255)
    assert image.metadata.window_source == "voi_lut"
    assert np.abs(image.model_image.astype(int) - expected).max() <= 1


@pytest.mark.parametrize("bits", [8, 12, 16])
def test_it_inverts_monochrome1_so_that_bone_is_white(bits: int) -> None:
    monochrome2 = decoded(bits=bits)
    monochrome1 = decoded(bits=bits, photometric="MONOCHROME1")

    np.testing.assert_array_equal(monochrome1.model_image, monochrome2.model_image)


def test_it_inverts_monochrome1_under_the_files_own_window() -> None:
    monochrome1 = decoded(bits=12, photometric="MONOCHROME1", window=(2500.0, 1200.0))

    # Window the stored values as the file says, then invert the picture.
    expected = 255 - linear_window(stored_pixels(bits=12, photometric="MONOCHROME1"), 2500.0, 1200.0)
    assert np.abs(monochrome1.model_image.astype(int) - expected).max() <= 1


def test_it_inverts_monochrome1_display_pixels_and_moves_the_window_with_them() -> None:
    image = decoded(bits=12, photometric="MONOCHROME1", window=(2500.0, 1200.0))

    stored = stored_pixels(bits=12, photometric="MONOCHROME1").astype(np.int64)
    mirror = stored.min() + stored.max()
    np.testing.assert_array_equal(image.display_pixels, mirror - stored)
    assert image.default_window == (mirror - 2500.0 + 1, 1200.0)


def test_it_inverts_a_monochrome1_voi_lut_picture_too() -> None:
    plain = decoded(bits=12, voi_lut=True)
    inverted = decoded(bits=12, voi_lut=True, photometric="MONOCHROME1", source=stored_pixels(bits=12))

    np.testing.assert_array_equal(inverted.model_image, 255 - plain.model_image)


@pytest.mark.parametrize("signed", [False, True])
def test_it_treats_signed_and_unsigned_12_bit_data_alike(signed: bool) -> None:
    image = decoded(bits=12, signed=signed, transfer_syntax=JPEG2000Lossless)

    reference = decoded(bits=12).model_image
    np.testing.assert_array_equal(image.model_image, reference)


def test_it_stores_display_pixels_as_uint16_when_they_fit_and_int32_when_negative() -> None:
    assert decoded(bits=16).display_pixels.dtype == np.uint16
    assert decoded(bits=12, rescale=(1.0, -1024.0)).display_pixels.dtype == np.int32


def test_it_shows_8_bit_pictures_unchanged_when_they_span_the_full_range() -> None:
    pixels = sample_pixels()
    pixels[0, 0], pixels[0, 1] = 0, 255
    image = decoded(source=pixels)

    np.testing.assert_array_equal(image.model_image, pixels)
    assert image.default_window == (128.0, 256.0)


def test_it_offers_the_model_image_as_rgb() -> None:
    image = decoded()

    rgb = image.model_image_rgb()
    assert rgb.mode == "RGB" and rgb.size == (image.metadata.columns, image.metadata.rows)
    np.testing.assert_array_equal(np.asarray(rgb)[..., 1], image.model_image)


def test_it_hashes_equal_pixels_equally_and_different_pixels_differently() -> None:
    first, again, other = decoded(), decoded(patient_id="OTHER"), decoded(source=3)

    assert first.pixel_sha256() == again.pixel_sha256()
    assert first.pixel_sha256() != other.pixel_sha256()
    assert len(first.pixel_sha256()) == 64
