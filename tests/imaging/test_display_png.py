"""PNG renderings for the viewer: a windowed 8-bit picture and a lossless 16-bit source."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from cases.imaging import (
    VALUE_OFFSET_KEY,
    decode,
    decode_display_source,
    display_value_offset,
    encode_display_source,
    render_display_png,
    to_rgb_image,
)
from tests.dicom_factory import make_dicom

LIMITS = {"max_bytes": 64 * 2**20, "max_pixels": 50_000_000}


def decoded(**options):
    return decode(make_dicom(**options), filename="image.dcm", **LIMITS)


def test_it_renders_the_display_pixels_through_a_window_as_8_bit_png() -> None:
    image = decoded(bits=12, window=(1500.0, 1000.0))

    png = render_display_png(image.display_pixels, *image.default_window)

    with Image.open(io.BytesIO(png)) as rendered:
        assert rendered.format == "PNG" and rendered.mode == "L"
        np.testing.assert_array_equal(np.asarray(rendered), image.model_image)


def test_it_shrinks_the_rendering_to_fit_a_maximum_size() -> None:
    image = decoded(shape=(256, 320))

    png = render_display_png(image.display_pixels, *image.default_window, max_size=100)

    with Image.open(io.BytesIO(png)) as rendered:
        assert rendered.size == (100, 80)


def test_it_encodes_unsigned_display_pixels_losslessly_as_16_bit_png() -> None:
    image = decoded(bits=16)

    png = encode_display_source(image.display_pixels)

    with Image.open(io.BytesIO(png)) as source:
        assert source.mode.startswith("I;16") or source.mode == "I"
        assert source.text[VALUE_OFFSET_KEY] == "0"
        np.testing.assert_array_equal(np.asarray(source).astype(np.int64), image.display_pixels)


def test_it_shifts_signed_display_pixels_by_a_documented_offset() -> None:
    image = decoded(bits=12, rescale=(1.0, -1024.0))

    png = encode_display_source(image.display_pixels)

    offset = display_value_offset(image.display_pixels)
    assert offset == 1024
    with Image.open(io.BytesIO(png)) as source:
        assert int(source.text[VALUE_OFFSET_KEY]) == offset
        np.testing.assert_array_equal(np.asarray(source).astype(np.int64) - offset, image.display_pixels)
    np.testing.assert_array_equal(decode_display_source(png), image.display_pixels)


def test_it_converts_a_model_image_to_rgb() -> None:
    grey = np.arange(12, dtype=np.uint8).reshape(3, 4)

    rgb = to_rgb_image(grey)

    assert rgb.mode == "RGB" and rgb.size == (4, 3)
    assert np.asarray(rgb)[2, 3].tolist() == [11, 11, 11]
