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
    image_is_blank,
    image_not_chest_by_pixels,
    pooled_features,
)
from inference.domain_fitting import (
    FeatureExtractor,
    check_with_limit,
    domain_check_fit,
    gradient_image,
    noise_image,
    orientation_probe_fit,
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


def _with_probe(check: DomainCheck, *, limit: float) -> DomainCheck:
    """``check`` with an orientation probe telling its reference (upright) from features shifted along it."""
    upright = _reference(1)
    turned = {"rotated-180": _reference(5, centre=1.4)}
    weights, bias = orientation_probe_fit(check, upright, turned, shrinkage=0.1)
    return dataclasses.replace(check, orientation_weights=weights, orientation_bias=bias, orientation_limit=limit)


def test_it_calls_a_film_that_looks_turned_outside_the_domain_with_its_reason() -> None:
    upright = _reference(1, n=1)[0].astype(np.float32)
    turned = _reference(5, n=1, centre=1.4)[0].astype(np.float32)
    chest = _check(CHEST, limit=1e9)
    version = _with_probe(_check(VERSION, limit=1e9), limit=3.0)

    as_turned, as_upright = (domain_assess(p, chest=chest, version=version) for p in (turned, upright))

    assert version.orientation_score(turned) > 3.0 >= version.orientation_score(upright)
    assert as_turned.domain == OUTSIDE_DOMAIN
    assert as_turned.reason == "it looks rotated or flipped: unlike the images this model was validated on"
    assert (as_turned.score, as_turned.limit) == (pytest.approx(version.orientation_score(turned)), 3.0)
    assert as_upright.domain == IN_DOMAIN


def test_it_keeps_the_orientation_probe_through_the_file_and_reads_files_without_one(tmp_path: Path) -> None:
    probed = _with_probe(_check(VERSION, limit=12.5), limit=2.5)
    probe = _reference(3, n=5)

    loaded = domain_check_load(tmp_path / "p.npz", sha256=domain_check_save(probed, tmp_path / "p.npz"))
    plain = domain_check_load(
        tmp_path / "q.npz", sha256=domain_check_save(_check(VERSION, limit=1e9), tmp_path / "q.npz")
    )

    assert loaded.checks_orientation and loaded.orientation_limit == 2.5
    np.testing.assert_allclose(loaded.orientation_scores(probe), probed.orientation_scores(probe), rtol=1e-5)
    assert not plain.checks_orientation and plain.orientation_score(probe[0]) is None
    assert domain_assess(probe[0], chest=_check(CHEST, limit=1e9), version=plain).domain == IN_DOMAIN


def test_it_calls_a_blank_or_nearly_uniform_image_no_chest_xray_without_a_score() -> None:
    pooled = _reference(1, n=1)[0].astype(np.float32)  # features that pass both checks
    chest, version = _check(CHEST, limit=1e9), _check(VERSION, limit=1e9)
    nearly_white = np.full((300, 300), 255, np.uint8)
    nearly_white[:2, :200] = 0  # < 1 % of the pixels differ
    film = np.asarray(Image.open(packaged_sample_images()[0][0]).convert("L"))

    for blank in (np.zeros((256, 256), np.uint8), np.full((64, 80), 128, np.uint8), nearly_white):
        verdict = domain_assess(pooled, chest=chest, version=version, image=blank)
        assert (verdict.domain, verdict.score, verdict.limit) == (NOT_CHEST_XRAY, None, None)
        assert verdict.reason == "this image does not look like a chest X-ray"
    assert not image_is_blank(film)
    assert domain_assess(pooled, chest=chest, version=version, image=film).domain == IN_DOMAIN


def test_it_calls_pixel_noise_and_text_no_chest_xray_by_their_pixels_but_not_a_film() -> None:
    rng = np.random.default_rng(3)
    film = np.asarray(Image.open(packaged_sample_images()[0][0]).convert("L"))
    large_film = np.asarray(Image.fromarray(film).resize((2000, 2400), Image.Resampling.BICUBIC))

    assert image_not_chest_by_pixels(np.asarray(noise_image(rng, kind="uniform", size=400)))
    assert image_not_chest_by_pixels(np.asarray(noise_image(rng, kind="gaussian", colour=True)))
    assert image_not_chest_by_pixels(np.asarray(text_image(rng)))
    assert not image_not_chest_by_pixels(film) and not image_not_chest_by_pixels(large_film)


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
        from inference.models import ModelVersion

        registered = ModelVersion.objects.get(name=name).sha256  # prepare_models registered it (active_model)
        classifier = served_classifier_for_record(
            prepared_dir=Path(settings.PNEUMO_MODEL_DIR), record=record, model_sha256=registered
        )
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
    """Each upload's domain as the worker decides it: from its pooled features and its model image."""
    extractor, chest, version = scope
    images = [extractor.model_image(data, name) for name, data in files]
    return [
        domain_assess(p, chest=chest, version=version, image=image).domain
        for p, image in zip(extractor.pooled_bytes(files), images, strict=True)
    ]


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
    # At the packaged model's 150 px NEAREST input, gradients and some photograph-like images score inside
    # its chest check (a known gap, see docs/model-card.md); its version check still mutes them. Noise is
    # caught by its pixels.
    made = _made_images()

    domains = _domains(scope, [(f"{name}.png", _png(image)) for name, image in made.items()])

    verdicts = dict(zip(made, domains, strict=True))
    assert IN_DOMAIN not in domains, verdicts
    assert {verdicts[name] for name in ("noise", "gaussian noise", "rendered text", "page")} == {NOT_CHEST_XRAY}


@pytest.mark.slow
@pytest.mark.parametrize("scope", SHIPPED_SCOPES, indirect=True)
def test_it_says_a_blank_image_is_no_chest_xray(scope) -> None:
    blanks = {value: Image.new("L", (256, 256), value) for value in (0, 128, 255)}

    domains = _domains(scope, [(f"blank-{value}.png", _png(image)) for value, image in blanks.items()])

    assert domains == [NOT_CHEST_XRAY] * 3


@pytest.mark.slow
@pytest.mark.parametrize("scope", SHIPPED_SCOPES, indirect=True)
def test_it_never_finds_a_rotated_or_upside_down_chest_film_in_domain(scope) -> None:
    turns = [
        Image.Transpose.ROTATE_90,
        Image.Transpose.ROTATE_180,
        Image.Transpose.ROTATE_270,
        Image.Transpose.FLIP_TOP_BOTTOM,
    ]
    films = [Image.open(path).convert("L") for path, _ in packaged_sample_images()[:2]]
    turned = [film.transpose(turn) for film in films for turn in turns]

    domains = _domains(scope, [(f"turned-{i}.png", _png(image)) for i, image in enumerate(turned)])

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
