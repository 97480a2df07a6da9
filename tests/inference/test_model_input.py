"""What the model is fed: the grid kept at ingest, or the original decoded again."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from cases.imaging import DecodeError
from inference.classifier import BICUBIC_224, NEAREST_150, preprocess
from inference.model_input import DecodeLimits, InputGrid, input_grid_make, model_image_load, original_model_image

LIMITS = DecodeLimits(max_bytes=10 * 2**20, max_pixels=10_000_000)


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def xray() -> np.ndarray:
    return np.random.default_rng(7).integers(0, 256, (300, 260), dtype=np.uint8)


def _unreadable() -> bytes:
    raise AssertionError("the original was read although the kept grid fits")


def test_it_feeds_the_kept_grid_without_reading_the_original(xray: np.ndarray) -> None:
    grid = input_grid_make(xray, BICUBIC_224.name)

    fed = model_image_load(
        grid=grid, preprocessing_version=BICUBIC_224.name, read_original=_unreadable, filename="x.png", limits=LIMITS
    )

    assert grid is not None and grid.preprocessing_version == BICUBIC_224.name
    assert fed.shape == (224, 224)
    np.testing.assert_array_equal(preprocess(fed, BICUBIC_224), preprocess(xray, BICUBIC_224))


def test_it_decodes_the_original_when_the_grid_was_made_for_another_preprocessing(xray: np.ndarray) -> None:
    grid = input_grid_make(xray, NEAREST_150.name)

    fed = model_image_load(
        grid=grid,
        preprocessing_version=BICUBIC_224.name,
        read_original=lambda: _png(xray),
        filename="x.png",
        limits=LIMITS,
    )

    np.testing.assert_array_equal(fed, xray)


def test_it_makes_the_packaged_models_grid_when_no_version_is_active(xray: np.ndarray) -> None:
    grid = input_grid_make(xray, None)

    assert grid is not None and grid.preprocessing_version == NEAREST_150.name
    with Image.open(io.BytesIO(grid.png)) as picture:
        assert picture.size == (150, 150)


def test_it_keeps_no_grid_for_a_preprocessing_it_does_not_know(xray: np.ndarray) -> None:
    assert input_grid_make(xray, "rgb-lanczos999-v9") is None
    assert input_grid_make(None, BICUBIC_224.name) is None


def test_it_refuses_an_original_with_nothing_for_the_model() -> None:
    with pytest.raises(DecodeError):
        original_model_image(b"not an image at all", filename="x.png", limits=LIMITS)


def test_it_ignores_an_empty_grid(xray: np.ndarray) -> None:
    fed = model_image_load(
        grid=InputGrid(b"", BICUBIC_224.name),
        preprocessing_version=BICUBIC_224.name,
        read_original=lambda: _png(xray),
        filename="x.png",
        limits=LIMITS,
    )

    np.testing.assert_array_equal(fed, xray)


def test_training_reads_a_dicom_file_as_the_worker_does(tmp_path) -> None:
    # A site's de-identified export is DICOM: train_model and the conversion read it like uploads.
    import numpy as np

    from inference.model_input import DecodeLimits, original_model_image, training_image_open
    from inference.model_package import packaged_sample_images
    from tests.dicom_factory import make_dicom

    path = tmp_path / "IM0001.dcm"
    path.write_bytes(make_dicom(3, bits=12))
    expected = original_model_image(path.read_bytes(), filename=path.name, limits=DecodeLimits(2**28, 60_000_000))

    assert np.array_equal(np.asarray(training_image_open(path)), expected)
    jpeg = packaged_sample_images()[0][0]
    from PIL import Image as PILImage

    with PILImage.open(jpeg) as original:
        assert training_image_open(jpeg).size == original.size
