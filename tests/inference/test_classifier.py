"""The served LiteRT path against plain Keras, on the real packaged model and its 16 sample images."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest
from PIL import Image

from inference.classifier import (
    BICUBIC_224,
    HEATMAP_SCALES,
    NEAREST_150,
    PACKAGED_MODEL_HEATMAP_SCALE,
    PREPROCESSINGS,
    Head,
    LiteRTClassifier,
    preprocess,
    raw_gradcam,
    scale_heatmap,
)
from inference.conversion import (
    ConversionResult,
    build_two_output_model,
    gradient_tape_gradcam,
    head_from_model,
    keras_probabilities,
    parity_check,
)
from inference.model_package import sha256_file

if TYPE_CHECKING:
    import keras

pytestmark = pytest.mark.slow

REPO_ROOT = Path(__file__).resolve().parents[2]
PARITY_TOLERANCE = 1e-4


def _keras_training_input(path: Path) -> np.ndarray:
    """What ImageDataGenerator.flow_from_dataframe fed the model during training."""
    import keras

    image = keras.utils.load_img(path, color_mode="rgb", target_size=(150, 150), interpolation="nearest")
    return keras.applications.xception.preprocess_input(keras.utils.img_to_array(image))[np.newaxis]


def _auc(scores: np.ndarray, positive: np.ndarray) -> float:
    pos, neg = scores[positive], scores[~positive]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(wins / (len(pos) * len(neg)))


def test_it_preprocesses_exactly_like_keras_load_img_and_preprocess_input(
    samples: list[tuple[Path, str]], sample_images: list[Image.Image]
) -> None:
    for (path, _), image in zip(samples, sample_images, strict=True):
        expected = _keras_training_input(path)
        served = preprocess(image)
        assert served.dtype == np.float32 and served.shape == (1, 150, 150, 3)
        np.testing.assert_array_equal(served, expected)


@pytest.mark.parametrize("preprocessing", PREPROCESSINGS.values(), ids=list(PREPROCESSINGS))
def test_it_preprocesses_the_ingest_grayscale_array_like_the_image(
    sample_images: list[Image.Image], preprocessing
) -> None:
    for image in sample_images:
        grayscale = np.asarray(image.convert("L"))
        assert grayscale.dtype == np.uint8 and grayscale.ndim == 2
        np.testing.assert_array_equal(preprocess(grayscale, preprocessing), preprocess(image, preprocessing))


def test_it_resizes_to_224_with_pillows_antialiased_bicubic() -> None:
    # A one-pixel grid shrunk 10x: NEAREST keeps stripes (aliasing), bicubic averages them to grey.
    stripes = np.zeros((2240, 2240), dtype=np.uint8)
    stripes[:, ::2] = 255
    smooth = preprocess(stripes, BICUBIC_224)
    assert smooth.shape == (1, 224, 224, 3)
    assert np.abs(smooth[0, 10:-10, 10:-10] - (127.5 / 127.5 - 1.0)).max() < 0.05
    assert set(np.unique(preprocess(stripes, NEAREST_150))) <= {-1.0, 1.0}


def test_it_rejects_non_uint8_arrays() -> None:
    with pytest.raises(ValueError, match="uint8"):
        preprocess(np.zeros((20, 20), dtype=np.float32))


def test_it_serves_probabilities_equal_to_keras_predict(
    classifier: LiteRTClassifier,
    keras_model: keras.Model,
    sample_images: list[Image.Image],
    sample_batch: np.ndarray,
) -> None:
    expected = keras_probabilities(keras_model, sample_batch)
    served = np.array([classifier.predict(image).probability for image in sample_images])
    np.testing.assert_allclose(served, expected, rtol=0, atol=PARITY_TOLERANCE)


def test_it_passes_the_parity_gate(
    keras_path: Path, converted: ConversionResult, sample_images: list[Image.Image]
) -> None:
    assert parity_check(keras_path, converted.tflite_path, converted.head_path, sample_images) <= PARITY_TOLERANCE


def test_it_serves_a_batch_like_single_images(classifier: LiteRTClassifier, sample_images: list[Image.Image]) -> None:
    singles = [classifier.predict(image) for image in sample_images]
    batched = classifier.predict_batch(sample_images)
    for single, batch in zip(singles, batched, strict=True):
        assert batch.probability == pytest.approx(single.probability, abs=1e-6)
        np.testing.assert_allclose(batch.heatmap, single.heatmap, atol=1e-5)
        assert batch.input_sha256 == single.input_sha256


def test_it_returns_the_pooled_features_of_the_same_forward_pass(
    classifier: LiteRTClassifier, sample_images: list[Image.Image]
) -> None:
    outputs = classifier.predict_batch(sample_images[:3], heatmap=False)

    feature_maps, _ = classifier.run(np.concatenate([preprocess(image) for image in sample_images[:3]]))
    for output, feature_map in zip(outputs, feature_maps, strict=True):
        assert output.pooled_features.shape == (2048,) and output.pooled_features.dtype == np.float32
        np.testing.assert_allclose(output.pooled_features, feature_map.mean(axis=(0, 1)), rtol=1e-5, atol=1e-6)
    assert classifier.predict(sample_images[0]).pooled_features == pytest.approx(outputs[0].pooled_features, abs=1e-5)


def test_it_converts_without_quantization(converted: ConversionResult) -> None:
    from ai_edge_litert.interpreter import Interpreter

    interpreter = Interpreter(model_path=str(converted.tflite_path))
    dtypes = {detail["dtype"] for detail in interpreter.get_tensor_details()}
    assert dtypes <= {np.float32, np.int32}
    assert converted.tflite_sha256 == sha256_file(converted.tflite_path)


def test_it_saves_the_head_weights_of_the_keras_model(converted: ConversionResult, keras_model: keras.Model) -> None:
    saved, expected = Head.load(converted.head_path), head_from_model(keras_model)
    for name in ("w1", "b1", "w2", "b2"):
        np.testing.assert_array_equal(getattr(saved, name), getattr(expected, name))


def test_it_computes_gradcam_exactly_like_gradient_tape_on_the_same_feature_map(
    keras_model: keras.Model, converted: ConversionResult, sample_batch: np.ndarray
) -> None:
    two_output = build_two_output_model(keras_model)
    feature_maps, _ = two_output(sample_batch, training=False)
    head = Head.load(converted.head_path)
    numpy_cams = np.stack([raw_gradcam(fm, head) for fm in np.asarray(feature_maps)])
    tape_cams = gradient_tape_gradcam(two_output, sample_batch)
    np.testing.assert_allclose(numpy_cams, tape_cams, rtol=1e-4, atol=1e-7)


def test_it_serves_gradcam_matching_gradient_tape(
    classifier: LiteRTClassifier, keras_model: keras.Model, sample_batch: np.ndarray
) -> None:
    tape_cams = gradient_tape_gradcam(keras_model, sample_batch)
    feature_maps, _ = classifier.run(sample_batch)
    served_cams = np.stack([raw_gradcam(fm, classifier.head) for fm in feature_maps])
    assert np.corrcoef(served_cams.ravel(), tape_cams.ravel())[0, 1] > 0.99
    np.testing.assert_allclose(
        scale_heatmap(served_cams, PACKAGED_MODEL_HEATMAP_SCALE),
        scale_heatmap(tape_cams, PACKAGED_MODEL_HEATMAP_SCALE),
        atol=1e-3,
    )
    for served, tape in zip(served_cams, tape_cams, strict=True):
        if tape.max() > 1e-6:
            np.testing.assert_allclose(served / served.max(), tape / tape.max(), atol=1e-3)
            assert np.corrcoef(served.ravel(), tape.ravel())[0, 1] > 0.99


def test_it_returns_a_5x5_heatmap_in_unit_range(classifier: LiteRTClassifier, sample_images: list[Image.Image]) -> None:
    for prediction in classifier.predict_batch(sample_images):
        heatmap = prediction.heatmap
        assert heatmap is not None
        assert heatmap.shape == (5, 5) and heatmap.dtype == np.float32
        assert heatmap.min() >= 0.0 and heatmap.max() <= 1.0
        assert prediction.preprocess_ms >= 0 and prediction.inference_ms > 0 and prediction.heatmap_ms >= 0


def test_it_skips_the_heatmap_when_not_asked(classifier: LiteRTClassifier, sample_images: list[Image.Image]) -> None:
    prediction = classifier.predict(sample_images[0], heatmap=False)
    assert prediction.heatmap is None
    assert prediction.probability == pytest.approx(classifier.predict(sample_images[0]).probability, abs=1e-7)


def test_it_scales_heatmaps_by_a_fixed_constant_not_the_image_max() -> None:
    raw = np.full((5, 5), 0.001, dtype=np.float32)
    np.testing.assert_allclose(scale_heatmap(raw, 0.01), 0.1)
    assert scale_heatmap(raw * 100, 0.01).max() == 1.0


def test_it_hashes_the_preprocessed_input(classifier: LiteRTClassifier, sample_images: list[Image.Image]) -> None:
    image = sample_images[0]
    expected = hashlib.sha256(preprocess(image).tobytes()).hexdigest()
    assert classifier.predict(image).input_sha256 == expected
    assert classifier.predict(np.asarray(image.convert("L"))).input_sha256 == expected


def test_it_knows_the_heatmap_scale_of_the_packaged_model(keras_path: Path) -> None:
    # Fails when the packaged model changes: re-measure the scale with measure_heatmap_scale().
    assert HEATMAP_SCALES[sha256_file(keras_path)] == PACKAGED_MODEL_HEATMAP_SCALE


def test_it_ranks_pneumonia_above_normal_on_the_packaged_images(
    classifier: LiteRTClassifier, samples: list[tuple[Path, str]], sample_images: list[Image.Image]
) -> None:
    # Guards the [NORMAL, PNEUMONIA] logit order: swapped classes would give an AUC near 0.1.
    probabilities = np.array([p.probability for p in classifier.predict_batch(sample_images, heatmap=False)])
    positive = np.array([label == "PNEUMONIA" for _, label in samples])
    assert _auc(probabilities, positive) > 0.5


WORKER_SCRIPT = """
import json, os, sys
import numpy as np
from PIL import Image
from inference.classifier import PACKAGED_MODEL_HEATMAP_SCALE, LiteRTClassifier

tflite_path, head_path, image_path = sys.argv[1:4]
classifier = LiteRTClassifier(tflite_path, head_path, heatmap_scale=PACKAGED_MODEL_HEATMAP_SCALE)
image = np.asarray(Image.open(image_path).convert("L"))
parent = classifier.predict(image).probability
read_end, write_end = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(read_end)
    child = classifier.predict(image).probability
    os.write(write_end, json.dumps([child, classifier._owner_pid == os.getpid()]).encode())
    os._exit(0)
os.close(write_end)
child, fresh = json.loads(os.read(read_end, 4096))
os.waitpid(pid, 0)
heavy = sorted(m for m in sys.modules if m.split(".")[0] in {"tensorflow", "keras", "tf_keras", "django"})
print(json.dumps({"heavy": heavy, "parent": parent, "child": child, "fresh": fresh}))
"""


def test_it_serves_without_importing_tensorflow_and_after_fork(
    converted: ConversionResult, samples: list[tuple[Path, str]], classifier: LiteRTClassifier
) -> None:
    image_path = samples[0][0]
    completed = subprocess.run(
        [
            sys.executable,
            "-c",
            WORKER_SCRIPT,
            str(converted.tflite_path),
            str(converted.head_path),
            str(image_path),
        ],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    result = json.loads(completed.stdout.strip().splitlines()[-1])
    assert result["heavy"] == []
    expected = classifier.predict(Image.open(image_path)).probability
    assert result["parent"] == pytest.approx(expected, abs=1e-7)
    assert result["child"] == pytest.approx(expected, abs=1e-7)
    assert result["fresh"] is True


@pytest.mark.parametrize("preprocessing", PREPROCESSINGS.values(), ids=list(PREPROCESSINGS))
def test_it_gives_the_model_the_same_input_from_the_small_grid_kept_at_ingest(preprocessing) -> None:
    from cases.imaging import decode
    from inference.classifier import reduce_to_input_grid
    from tests.dicom_factory import make_dicom

    for index, shape in ((0, (1024, 1024)), (9, (733, 611)), (12, (2500, 2048))):
        image = decode(
            make_dicom(index, shape=shape, bits=12), filename="x.dcm", max_bytes=2**28, max_pixels=60_000_000
        ).model_image
        grid = reduce_to_input_grid(image, preprocessing)
        assert grid.shape == (preprocessing.size, preprocessing.size)
        assert np.array_equal(preprocess(grid, preprocessing), preprocess(image, preprocessing))
