"""The image-based scope checks: a distance of pooled Xception features from reference sets.

The first tests need no model and no data folder; the last ones (marked slow) run the real
served models and the shipped check files.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from inference.domain import (
    CHEST,
    FEATURE_CHANNELS,
    IN_DOMAIN,
    NOT_CHEST_XRAY,
    OUTSIDE_DOMAIN,
    VERSION,
    DomainCheck,
    domain_assess,
    domain_check_load,
    domain_check_save,
    pooled_features,
)
from inference.domain_fitting import (
    FeatureExtractor,
    check_with_limit,
    domain_check_fit,
    gradient_image,
    noise_image,
    page_image,
    photo_like_image,
    served_classifier_for_record,
    text_image,
)
from inference.model_package import packaged_sample_images


def _reference(seed: int, n: int = 300, centre: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    basis = rng.normal(size=(8, FEATURE_CHANNELS))
    return np.abs(centre + rng.normal(size=(n, 8)) @ basis * 0.1 + rng.normal(scale=0.02, size=(n, FEATURE_CHANNELS)))


@functools.cache
def _fitted(kind: str) -> DomainCheck:
    return domain_check_fit(_reference(1), kind=kind, preprocessing_version="rgb-bicubic224-xception-v1")


def _check(kind: str, *, limit: float) -> DomainCheck:
    check = _fitted(kind)
    return check_with_limit(check, limit)


def test_it_pools_a_feature_map_over_height_and_width() -> None:
    feature_map = np.arange(7 * 7 * FEATURE_CHANNELS, dtype=np.float32).reshape(7, 7, FEATURE_CHANNELS)

    pooled = pooled_features(feature_map)
    batch = pooled_features(np.stack([feature_map, feature_map * 2]))

    assert pooled.shape == (FEATURE_CHANNELS,) and pooled.dtype == np.float32
    np.testing.assert_allclose(pooled, feature_map.mean(axis=(0, 1)), rtol=1e-6)
    assert batch.shape == (2, FEATURE_CHANNELS)
    np.testing.assert_allclose(batch[1], 2 * pooled, rtol=1e-6)


def test_it_refuses_a_feature_map_of_the_wrong_shape() -> None:
    with pytest.raises(ValueError, match="2048"):
        pooled_features(np.zeros((7, 7, 1024), dtype=np.float32))


def test_it_scores_reference_like_features_lower_than_far_ones() -> None:
    check = _fitted(CHEST)
    near = _reference(1, n=20)
    far = np.abs(np.random.default_rng(2).normal(size=(20, FEATURE_CHANNELS)))

    assert check.scores(far).min() > 2 * check.scores(near).max()
    assert check.score(near[0]) == pytest.approx(check.scores(near[:1])[0])


def test_it_round_trips_a_check_through_its_file_byte_for_byte(tmp_path: Path) -> None:
    check = _check(VERSION, limit=12.5)
    probe = _reference(3, n=5)

    digest = domain_check_save(check, tmp_path / "domain.npz")
    loaded = domain_check_load(tmp_path / "domain.npz", sha256=digest)
    again = domain_check_save(loaded, tmp_path / "again.npz")

    assert (loaded.kind, loaded.preprocessing_version, loaded.limit) == (VERSION, "rgb-bicubic224-xception-v1", 12.5)
    assert loaded.n_fitted == 300
    np.testing.assert_allclose(loaded.scores(probe), check.scores(probe), rtol=5e-3)
    assert again == digest  # deterministic bytes: a refit of the same data gives the same sha256


def test_it_refuses_a_check_file_whose_sha256_differs(tmp_path: Path) -> None:
    path = tmp_path / "domain.npz"
    digest = domain_check_save(_check(VERSION, limit=1.0), path)

    with pytest.raises(ValueError, match="sha256"):
        domain_check_load(path, sha256="0" * 64)
    path.write_bytes(path.read_bytes() + b"x")
    with pytest.raises(ValueError, match="sha256"):
        domain_check_load(path, sha256=digest)


def test_it_refuses_a_file_that_is_not_a_check(tmp_path: Path) -> None:
    path = tmp_path / "domain.npz"
    path.write_bytes(b"not a zip")

    with pytest.raises(ValueError, match="not a readable domain check"):
        domain_check_load(path)


def test_it_asks_the_chest_check_first() -> None:
    far = np.abs(np.random.default_rng(4).normal(size=FEATURE_CHANNELS)).astype(np.float32)
    chest, version = _check(CHEST, limit=1e-3), _check(VERSION, limit=1e-3)

    verdict = domain_assess(far, chest=chest, version=version)

    assert verdict.domain == NOT_CHEST_XRAY
    assert verdict.reason == "this image does not look like a chest X-ray"
    assert verdict.limit == 1e-3 and verdict.score == pytest.approx(chest.score(far))


def test_it_respects_each_checks_limit() -> None:
    pooled = _reference(1, n=1)[0].astype(np.float32)
    scored = _check(VERSION, limit=0.0).score(pooled)

    outside = domain_assess(pooled, chest=_check(CHEST, limit=scored + 1), version=_check(VERSION, limit=scored * 0.99))
    inside = domain_assess(pooled, chest=_check(CHEST, limit=scored + 1), version=_check(VERSION, limit=scored))

    assert outside.domain == OUTSIDE_DOMAIN
    assert outside.reason == "it is unlike the images this model was validated on"
    assert (outside.score, outside.limit) == (pytest.approx(scored), pytest.approx(scored * 0.99))
    assert inside.domain == IN_DOMAIN and inside.score == pytest.approx(scored)


def test_it_refuses_checks_passed_in_the_wrong_order() -> None:
    pooled = _reference(1, n=1)[0].astype(np.float32)

    with pytest.raises(ValueError, match="chest and a version"):
        domain_assess(pooled, chest=_check(VERSION, limit=1.0), version=_check(CHEST, limit=1.0))


# --- With the real served models and the shipped check files ----------------------------------------

MODELS = Path(__file__).resolve().parents[2] / "models"
SHIPPED_SCOPES = ["pneumo-xception224-cal-v2", "pneumonia-xception-pkg-0.3.0"]
_extractors: dict[str, FeatureExtractor] = {}


@pytest.fixture
def scope(request: pytest.FixtureRequest, active_model, settings) -> tuple[FeatureExtractor, DomainCheck, DomainCheck]:
    """The version's served model (prepared like the worker's) and its two shipped checks, sha256 verified."""
    name = request.param
    record = json.loads((MODELS / name / "domain.json").read_text())
    if name not in _extractors:
        classifier = served_classifier_for_record(prepared_dir=Path(settings.PNEUMO_MODEL_DIR), record=record)
        _extractors[name] = FeatureExtractor(
            classifier,
            cache_dir=None,
            max_bytes=settings.PNEUMO_MAX_UPLOAD_BYTES,
            max_pixels=settings.PNEUMO_MAX_PIXELS,
        )
    chest = domain_check_load(MODELS / name / record["chest"]["file"], sha256=record["chest"]["sha256"])
    version = domain_check_load(MODELS / name / record["version"]["file"], sha256=record["version"]["sha256"])
    return _extractors[name], chest, version


def _domains(scope, files: list[tuple[str, bytes]]) -> list[str]:
    extractor, chest, version = scope
    return [domain_assess(p, chest=chest, version=version).domain for p in extractor.pooled_bytes(files)]


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.mark.slow
@pytest.mark.parametrize("scope", SHIPPED_SCOPES, indirect=True)
def test_it_finds_the_packaged_paediatric_samples_in_domain(scope) -> None:
    files = [(path.name, path.read_bytes()) for path, _ in packaged_sample_images()]

    domains = _domains(scope, files)

    assert domains[0] == IN_DOMAIN
    assert domains.count(IN_DOMAIN) >= 15, domains


def _made_images() -> dict[str, Image.Image]:
    rng = np.random.default_rng(2024)
    return {
        "noise": noise_image(rng, kind="uniform", size=300),
        "gaussian noise": noise_image(rng, kind="gaussian", colour=True),
        "gradient": gradient_image(direction="vertical"),
        "rendered text": text_image(rng),
        "page": page_image(rng),
        "photograph-like": photo_like_image(rng),
        "landscape": photo_like_image(rng, kind="landscape"),
    }


@pytest.mark.slow
@pytest.mark.parametrize("scope", ["pneumo-xception224-cal-v2"], indirect=True)
def test_it_says_images_made_here_are_not_chest_xrays(scope) -> None:
    made = _made_images()

    domains = _domains(scope, [(f"{name}.png", _png(image)) for name, image in made.items()])

    assert dict(zip(made, domains, strict=True)) == dict.fromkeys(made, NOT_CHEST_XRAY)


@pytest.mark.slow
@pytest.mark.parametrize("scope", ["pneumonia-xception-pkg-0.3.0"], indirect=True)
def test_it_never_finds_images_made_here_in_the_packaged_models_domain(scope) -> None:
    # At the packaged model's 150 px NEAREST input, noise, gradients and some photograph-like images
    # score inside its chest check (a known gap, see docs/model-card.md); its version check still mutes them.
    made = _made_images()

    domains = _domains(scope, [(f"{name}.png", _png(image)) for name, image in made.items()])

    verdicts = dict(zip(made, domains, strict=True))
    assert IN_DOMAIN not in domains, verdicts
    assert verdicts["rendered text"] == verdicts["page"] == NOT_CHEST_XRAY


@pytest.mark.slow
@pytest.mark.parametrize(
    ("scope", "rotations"),
    [
        ("pneumo-xception224-cal-v2", [Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180]),
        # The packaged model's check lets some films upside down through (docs/model-card.md, Scope check).
        ("pneumonia-xception-pkg-0.3.0", [Image.Transpose.ROTATE_90]),
    ],
    indirect=["scope"],
)
def test_it_never_finds_a_rotated_chest_film_in_domain(scope, rotations) -> None:
    path, _ = packaged_sample_images()[0]
    film = Image.open(path).convert("L")
    rotated = [film.transpose(rotation) for rotation in rotations]

    domains = _domains(scope, [(f"rotated-{i}.png", _png(image)) for i, image in enumerate(rotated)])

    assert IN_DOMAIN not in domains, domains


def test_it_scores_relative_to_a_background_and_keeps_it_through_the_file(tmp_path: Path) -> None:
    background = _fitted(CHEST)
    own = domain_check_fit(
        _reference(1, centre=1.3), kind=VERSION, preprocessing_version=background.preprocessing_version
    )
    check = check_with_limit(dataclasses.replace(own, background=background), 0.0)
    like_own, like_background = _reference(1, n=20, centre=1.3), _reference(1, n=20)

    loaded = domain_check_load(tmp_path / "domain.npz", sha256=domain_check_save(check, tmp_path / "domain.npz"))

    assert loaded.background is not None and loaded.background.n_fitted == 300
    assert loaded.scores(like_own).max() < 0 < loaded.scores(like_background).min()
