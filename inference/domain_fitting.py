"""Fitting the scope checks of ``inference.domain`` from pooled features (NumPy only).

Which reference images (the version's own split, NIH adults split by patient), their pooled
features through the served LiteRT model (decoded exactly as uploads are, cached), the fit
and the limits. No Django: ``manage.py fit_domain`` and ``bench/domain.py`` are thin callers.
"""

from __future__ import annotations

import collections
import csv
import dataclasses
import hashlib
import io
import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont, ImageOps

from inference.classifier import LiteRTClassifier, preprocess
from inference.domain import CHEST as CHEST_KIND
from inference.domain import FEATURE_CHANNELS, DomainCheck, domain_check_save, pooled_features
from inference.domain import VERSION as VERSION_KIND

DEFAULT_COMPONENTS = 256
DEFAULT_SHRINKAGE = 0.05
DEFAULT_POWER = 0.5


def domain_check_fit(
    features: np.ndarray,
    *,
    kind: str,
    preprocessing_version: str,
    n_components: int = DEFAULT_COMPONENTS,
    shrinkage: float = DEFAULT_SHRINKAGE,
    power: float = DEFAULT_POWER,
    residual_weight: float = 1.0,
    limit: float = float("inf"),
    weights: np.ndarray | None = None,
) -> DomainCheck:
    """A probabilistic-PCA Mahalanobis check of ``N x 2048`` reference features.

    Eigenvalues are shrunk toward their mean (``(1 - shrinkage) * l + shrinkage * mean(l)``),
    which keeps a direction seen with tiny variance in a few hundred images from making any
    small shift there look enormous. The variance outside the kept components is their mean
    (the PPCA noise variance). The limit is set later, on held-out images (``limit_for``).
    ``weights`` (one per row) let two sources of different sizes count equally.
    """
    if not 0.0 <= shrinkage < 1.0:
        raise ValueError("shrinkage must be in [0, 1)")
    probe = DomainCheck(
        kind=kind,
        preprocessing_version=preprocessing_version,
        limit=limit,
        mean=np.zeros(features.shape[1], dtype=np.float32),
        components=np.zeros((0, features.shape[1]), dtype=np.float32),
        eigenvalues=np.zeros(0, dtype=np.float32),
        residual_variance=1.0,
        power=power,
    )
    x = probe.transform(features).astype(np.float64)
    w = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=np.float64)
    w = w / w.sum()
    mean = w @ x
    centred = x - mean
    covariance = (centred * w[:, None]).T @ centred / max(1.0 - float((w**2).sum()), 1e-12)
    eigenvalues, vectors = np.linalg.eigh(covariance)
    order = np.argsort(eigenvalues)[::-1]
    eigenvalues, vectors = np.maximum(eigenvalues[order], 0.0), vectors[:, order]
    shrunk = (1.0 - shrinkage) * eigenvalues + shrinkage * eigenvalues.mean()
    k = min(n_components, len(x) - 1, x.shape[1] - 1)
    floor = max(float(shrunk.mean()) * 1e-6, 1e-12)
    return DomainCheck(
        kind=kind,
        preprocessing_version=preprocessing_version,
        limit=limit,
        mean=mean.astype(np.float32),
        # Rounded to float16 as they are saved, so the fitted and the loaded check score alike.
        components=vectors[:, :k].T.astype(np.float16).astype(np.float32),
        eigenvalues=np.maximum(shrunk[:k], floor).astype(np.float32),
        residual_variance=max(float(shrunk[k:].mean()), floor),
        power=power,
        residual_weight=residual_weight,
        n_fitted=len(x),
    )


def limit_for(scores: np.ndarray, *, inside: float) -> float:
    """The score below which a share ``inside`` of held-out reference images fall (linear interpolation)."""
    if not 0.0 < inside <= 1.0:
        raise ValueError("inside must be in (0, 1]")
    return float(np.quantile(np.asarray(scores, dtype=np.float64), inside))


def check_with_limit(check: DomainCheck, limit: float) -> DomainCheck:
    return dataclasses.replace(check, limit=float(limit))


# --- Reference data: which images, split how -------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    path: Path
    source: str  # "kermany" or "nih"
    group: str  # the patient, for a split that keeps a patient's films together
    sha256: str


@dataclass(frozen=True)
class ReferenceSplit:
    """Kermany by the version's recorded split; NIH adults by patient, seeded."""

    kermany_train: list[Sample]
    kermany_validation: list[Sample]
    nih_train: list[Sample]
    nih_validation: list[Sample]


def _manifest(root: Path) -> list[dict[str, str]]:
    with (root / "manifest.csv").open(newline="") as handle:
        return list(csv.DictReader(handle))


def kermany_samples(root: Path) -> list[Sample]:
    """``root`` is ``kermany-224``; paths in its manifest start with ``train/``."""
    rows = _manifest(root)
    return [Sample(root / row["path"], "kermany", row["path"], row["sha256"]) for row in rows]


def nih_samples(root: Path) -> list[Sample]:
    return [Sample(root / row["path"], "nih", row["patient_id"], row["sha256"]) for row in _manifest(root)]


def split_by_group(samples: list[Sample], *, held_out: float, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Whole groups (patients) in seeded random order to the held-out side until its share is reached."""
    groups = sorted({s.group for s in samples})
    order = np.random.default_rng(seed).permutation(len(groups))
    target, taken, chosen = round(held_out * len(samples)), 0, set()
    sizes = collections.Counter(s.group for s in samples)
    for index in order:
        if taken >= target:
            break
        chosen.add(groups[index])
        taken += sizes[groups[index]]
    return [s for s in samples if s.group not in chosen], [s for s in samples if s.group in chosen]


def reference_split(
    data: Path, *, validation_paths: list[str], nih_held_out: float = 0.3, seed: int = 1
) -> ReferenceSplit:
    kermany = kermany_samples(data / "kermany-224")
    validation = {f"train/{p}" for p in validation_paths}
    missing = validation - {s.group for s in kermany}
    if missing:
        raise ValueError(f"{len(missing)} validation paths of the version are not in {data / 'kermany-224'}")
    nih_train, nih_validation = split_by_group(nih_samples(data / "nih-adult-512"), held_out=nih_held_out, seed=seed)
    return ReferenceSplit(
        kermany_train=[s for s in kermany if s.group not in validation],
        kermany_validation=[s for s in kermany if s.group in validation],
        nih_train=nih_train,
        nih_validation=nih_validation,
    )


@dataclass(frozen=True)
class VersionSplit:
    """A version's own training and validation images, read back from its manifest's recorded split."""

    source: str  # names its parts in domain.json: "<source>_train", "<source>_validation"
    train: list[Sample]
    validation: list[Sample]


def version_split(data: Path, manifest: dict) -> VersionSplit:
    """The images a version trained and was validated on, from ``data / manifest["data"]["folder"]``.

    For a folder with a patient manifest (``inference.training.examples_from_manifest``, with the ages and
    views the version was trained for); both halves must match the digests its manifest recorded.
    """
    from inference.training import examples_from_manifest

    recorded = manifest["data"]
    folder = data / recorded["folder"]
    filters = recorded.get("filters", {})
    examples = examples_from_manifest(
        folder,
        ages=tuple(filters["ages"]) if filters.get("ages") else None,
        views=filters.get("views"),
        limit=manifest["split"].get("limit_per_class"),
    )
    validation_paths = set(manifest["split"]["validation_paths"])
    excluded = set(recorded.get("excluded_packaged_samples", []))
    source = "nih_adult" if manifest.get("population") == "adult" else folder.name.replace("-", "_")

    def samples(keep: Callable[[str], bool]) -> list[Sample]:
        return [Sample(folder / e.path, source, e.patient, e.sha256) for e in examples if keep(e.path)]

    split = VersionSplit(
        source=source,
        train=samples(lambda path: path not in validation_paths and path not in excluded),
        validation=samples(lambda path: path in validation_paths),
    )
    for part in ("train", "validation"):
        if samples_digest(getattr(split, part)) != manifest["split"][f"{part}_sha256_digest"]:
            raise ValueError(f"{folder} does not hold the {part} images {manifest['name']} recorded")
    return split


def samples_digest(samples: list[Sample]) -> str:
    """sha256 over the sorted sha256 digests of the images (names left out: the pixels are what was fitted)."""
    return hashlib.sha256("\n".join(sorted(s.sha256 for s in samples)).encode()).hexdigest()


# --- Features through the served model ------------------------------------------------------------


class FeatureExtractor:
    """Pooled features of the served LiteRT model, from file bytes decoded exactly as uploads are.

    Cached per image sha256 under ``cache_dir`` (one ``.npz`` per served model), so refits are instant.
    """

    def __init__(
        self, classifier: LiteRTClassifier, *, cache_dir: Path | None, max_bytes: int, max_pixels: int, batch: int = 16
    ) -> None:
        self.classifier = classifier
        self.max_bytes, self.max_pixels, self.batch = max_bytes, max_pixels, batch
        self.served_sha256 = hashlib.sha256(Path(classifier.tflite_path).read_bytes()).hexdigest()
        name = f"{self.served_sha256[:16]}-{classifier.preprocessing.name}.npz"
        self.cache_path = cache_dir / name if cache_dir else None
        self._cache: dict[str, np.ndarray] = {}
        if self.cache_path and self.cache_path.is_file():
            with np.load(self.cache_path, allow_pickle=False) as npz:
                self._cache = dict(zip(npz["sha256"].tolist(), npz["pooled"], strict=True))

    def model_image(self, data: bytes, filename: str) -> np.ndarray:
        from cases.imaging import decode  # the upload decoders; imported late like the worker does

        decoded = decode(data, filename=filename, max_bytes=self.max_bytes, max_pixels=self.max_pixels)
        if decoded.model_image is None:
            raise ValueError(f"{filename} has no single frame for the model")
        return decoded.model_image

    def pooled_images(self, images: list[np.ndarray]) -> np.ndarray:
        """Pooled features of already decoded 8-bit model images (the worker's input)."""
        out = []
        for start in range(0, len(images), self.batch):
            chunk = images[start : start + self.batch]
            batch = np.concatenate([preprocess(image, self.classifier.preprocessing) for image in chunk])
            feature_maps, _ = self.classifier.run(batch)
            out.append(pooled_features(feature_maps))
        return np.concatenate(out) if out else np.zeros((0, FEATURE_CHANNELS), dtype=np.float32)

    def pooled_files(self, samples: list[Sample], *, progress: Callable[[str], None] | None = None) -> np.ndarray:
        for sample in samples:  # cheap next to the model, and a cache keyed by digest needs the true digest
            if hashlib.sha256(sample.path.read_bytes()).hexdigest() != sample.sha256:
                raise ValueError(f"{sample.path} differs from the sha256 its manifest lists")
        return self.pooled_bytes([(s.path.name, s.path) for s in samples], progress=progress)

    def pooled_bytes(
        self, files: list[tuple[str, bytes | Path]], *, progress: Callable[[str], None] | None = None
    ) -> np.ndarray:
        """Pooled features of (file name, bytes or path) uploads, decoded as the worker does, cached by sha256."""

        def read(item: bytes | Path) -> bytes:
            return item.read_bytes() if isinstance(item, Path) else item

        keys = [hashlib.sha256(read(data)).hexdigest() for _, data in files]
        todo = [(key, name, data) for key, (name, data) in zip(keys, files, strict=True) if key not in self._cache]
        todo = list({key: (key, name, data) for key, name, data in todo}.values())
        for start in range(0, len(todo), 128):
            chunk = todo[start : start + 128]
            images = [self.model_image(read(data), name) for _, name, data in chunk]
            for (key, _, _), pooled in zip(chunk, self.pooled_images(images), strict=True):
                self._cache[key] = pooled
            self.save()  # after each chunk: an interrupted extraction keeps what it did
            if progress:
                progress(f"  features {start + len(chunk)}/{len(todo)} ({self.classifier.preprocessing.name})")
        return np.stack([self._cache[k] for k in keys]) if keys else np.zeros((0, FEATURE_CHANNELS), np.float32)

    def save(self) -> None:
        if self.cache_path is None:
            return
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        keys = sorted(self._cache)
        tmp = self.cache_path.with_suffix(".tmp.npz")
        np.savez(tmp, sha256=np.array(keys), pooled=np.stack([self._cache[k] for k in keys]))
        tmp.replace(self.cache_path)


def served_classifier(
    *, prepared_dir: Path, model_sha256: str, preprocessing_version: str, num_threads: int = 1
) -> LiteRTClassifier:
    """The prepared LiteRT conversion the worker serves for a ``.keras`` of ``model_sha256``.

    ``prepared_dir`` is ``PNEUMO_MODEL_DIR``; ``prepare_models`` writes each conversion to
    ``<sha256>-<preprocessing>/`` with a ``prepared.json`` naming its files and digests.
    """
    folder = prepared_dir / f"{model_sha256}-{preprocessing_version}"
    record_path = folder / "prepared.json"
    if not record_path.is_file():
        raise FileNotFoundError(f"{record_path} is missing: run `manage.py prepare_models` first")
    record = json.loads(record_path.read_text())
    tflite = folder / record["tflite"]
    if hashlib.sha256(tflite.read_bytes()).hexdigest() != record["tflite_sha256"]:
        raise ValueError(f"{tflite} differs from the sha256 in {record_path}")
    # The heatmap scale is irrelevant here (only feature maps are read) but must be positive.
    return LiteRTClassifier(
        tflite, folder / record["head"], heatmap_scale=1.0, num_threads=num_threads, preprocessing=preprocessing_version
    ).load()


def converted_classifier(model_dir: Path, *, cache_dir: Path, num_threads: int = 1) -> LiteRTClassifier:
    """A LiteRT conversion of a shipped version's rebuilt model, for a version ``prepare_models`` has not
    prepared yet; converted once and kept under ``cache_dir/converted/<model sha256>-<preprocessing>/``.

    The conversion is ``inference.conversion.convert_to_litert``, the one ``prepare_models`` runs, so the
    features (and the served model's sha256 recorded) are those the worker will serve. TensorFlow: only here.
    """
    from inference import shipped_model
    from inference.conversion import HEAD_NAME, TFLITE_NAME, convert_to_litert
    from inference.model_package import packaged_model_path

    manifest = json.loads((model_dir / shipped_model.MANIFEST_NAME).read_text())
    folder = cache_dir / "converted" / f"{manifest['rebuilt_keras_sha256']}-{manifest['preprocessing_version']}"
    if not (folder / TFLITE_NAME).is_file():
        keras_path = shipped_model.model_rebuild(
            packaged_model_path(),
            model_dir / manifest["weights"]["file"],
            folder / "model.keras",
            input_size=manifest["input_size"],
        )
        if hashlib.sha256(keras_path.read_bytes()).hexdigest() != manifest["rebuilt_keras_sha256"]:
            raise ValueError(f"the model rebuilt from {model_dir} differs from the sha256 its manifest records")
        convert_to_litert(keras_path, folder)
    return LiteRTClassifier(
        folder / TFLITE_NAME,
        folder / HEAD_NAME,
        heatmap_scale=1.0,
        num_threads=num_threads,
        preprocessing=manifest["preprocessing_version"],
    ).load()


# --- Images that are not chest X-rays, and chest films transformed, for judging the checks ----------


@dataclass(frozen=True)
class Probe:
    category: str
    name: str
    png: bytes  # encoded as an upload would be, decoded by the upload decoder before the model


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _blurred_noise(rng: np.random.Generator, size: tuple[int, int], sigma: float, channels: int) -> np.ndarray:
    noise = rng.random((size[1], size[0], channels)).astype(np.float32)
    image = Image.fromarray((noise * 255).astype(np.uint8).squeeze())
    return np.asarray(image.filter(ImageFilter.GaussianBlur(sigma)), dtype=np.float32) / 255


def _stretch(x: np.ndarray) -> np.ndarray:
    x = (x - x.min()) / max(float(x.max() - x.min()), 1e-6)
    return (x * 255).astype(np.uint8)


def noise_image(rng: np.random.Generator, *, kind: str, size: int = 256, colour: bool = False) -> Image.Image:
    shape = (size, size, 3) if colour else (size, size)
    values = rng.random(shape) * 255 if kind == "uniform" else rng.normal(128, 40, shape)
    return Image.fromarray(np.clip(values, 0, 255).astype(np.uint8))


def gradient_image(*, direction: str, size: int = 256) -> Image.Image:
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / (size - 1)
    field = {
        "horizontal": x,
        "vertical": y,
        "diagonal": (x + y) / 2,
        "radial": 1 - np.hypot(x - 0.5, y - 0.5) / np.hypot(0.5, 0.5),
    }[direction]
    return Image.fromarray((field * 255).astype(np.uint8))


def shapes_image(rng: np.random.Generator, *, size: int = 320, colour: bool = True) -> Image.Image:
    background = tuple(int(v) for v in rng.integers(0, 256, 3)) if colour else (int(rng.integers(0, 256)),) * 3
    image = Image.new("RGB", (size, size), background)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(4, 12))):
        fill = tuple(int(v) for v in rng.integers(0, 256, 3)) if colour else (int(rng.integers(0, 256)),) * 3
        x0, y0 = (int(v) for v in rng.integers(0, size * 3 // 4, 2))
        x1, y1 = x0 + int(rng.integers(20, size // 2)), y0 + int(rng.integers(20, size // 2))
        shape = int(rng.integers(0, 3))
        if shape == 0:
            draw.ellipse((x0, y0, x1, y1), fill=fill)
        elif shape == 1:
            draw.rectangle((x0, y0, x1, y1), fill=fill)
        else:
            draw.polygon([tuple(int(v) for v in rng.integers(0, size, 2)) for _ in range(3)], fill=fill)
    return image


_WORDS = [
    "patient",
    "study",
    "report",
    "chest",
    "radiograph",
    "lungs",
    "clear",
    "heart",
    "size",
    "normal",
    "no",
    "effusion",
    "pneumonia",
    "findings",
    "impression",
    "signed",
    "date",
    "hospital",
    "department",
    "page",
    "total",
    "amount",
    "invoice",
    "item",
    "quantity",
    "price",
    "the",
    "of",
    "and",
]


def _sentence(rng: np.random.Generator, n: int) -> str:
    return " ".join(_WORDS[int(i)] for i in rng.integers(0, len(_WORDS), n))


def text_image(rng: np.random.Generator, *, size: tuple[int, int] = (400, 300), font_size: int = 16) -> Image.Image:
    """Lines of rendered text, black on white, with PIL's default font."""
    image = Image.new("L", size, 255)
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=font_size)
    for row, y in enumerate(range(8, size[1] - font_size, int(font_size * 1.5))):
        draw.text((8, y), _sentence(rng, 8 + row % 3), fill=0, font=font)
    return image


def page_image(rng: np.random.Generator, *, size: tuple[int, int] = (600, 800), dark: bool = False) -> Image.Image:
    """A document page: a heading, paragraphs, a table and a logo box (or a dark-mode screenshot)."""
    paper, ink = (30, 230) if dark else (250, 20)
    image = Image.new("L", size, paper)
    draw = ImageDraw.Draw(image)
    heading, body = ImageFont.load_default(size=28), ImageFont.load_default(size=13)
    draw.rectangle((40, 30, 120, 90), outline=ink, width=3)
    draw.text((140, 40), _sentence(rng, 3).title(), fill=ink, font=heading)
    y = 120
    while y < size[1] - 200:
        for _ in range(int(rng.integers(3, 7))):
            draw.text((40, y), _sentence(rng, 11), fill=ink, font=body)
            y += 18
        y += 20
    for row in range(5):
        for column in range(4):
            x0, y0 = 40 + column * 130, size[1] - 180 + row * 28
            draw.rectangle((x0, y0, x0 + 130, y0 + 28), outline=ink)
            draw.text((x0 + 6, y0 + 7), _sentence(rng, 1), fill=ink, font=body)
    return image


def photo_like_image(rng: np.random.Generator, *, size: int = 384, kind: str = "blobs") -> Image.Image:
    """A procedural stand-in for a photograph: smooth colour blobs, or a landscape (sky, sun, hills)."""
    if kind == "blobs":
        field = _blurred_noise(rng, (size, size), sigma=size / 12, channels=3)
        detail = _blurred_noise(rng, (size, size), sigma=1.5, channels=3)
        return Image.fromarray(np.dstack([_stretch(field[..., c] + 0.08 * detail[..., c]) for c in range(3)]))
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    sky = np.dstack([90 + 80 * y, 140 + 60 * y, 230 - 30 * y])
    horizon = 0.55 + 0.08 * np.sin(x * rng.uniform(4, 9) + rng.uniform(0, 6)) + 0.03 * np.sin(x * 23)
    ground = np.dstack([40 + 60 * y, 110 + 50 * y, 30 + 20 * y])
    texture = _blurred_noise(rng, (size, size), sigma=2.0, channels=1)[..., 0][..., None] * 50 - 25
    image = np.where((y > horizon)[..., None], ground + texture, sky)
    sun = np.hypot(x - rng.uniform(0.2, 0.8), y - 0.2) < 0.07
    image[sun] = (255, 235, 150)
    return Image.fromarray(np.clip(image, 0, 255).astype(np.uint8))


def synthetic_probes(seed: int = 7, per_kind: int = 4) -> list[Probe]:
    """Images that are not chest X-rays, each as an upload's PNG bytes."""
    rng = np.random.default_rng(seed)
    probes: list[tuple[str, str, Image.Image]] = []
    for i in range(per_kind):
        probes += [
            ("noise", f"uniform-grey-{i}", noise_image(rng, kind="uniform", size=224 + 96 * i)),
            ("noise", f"uniform-colour-{i}", noise_image(rng, kind="uniform", colour=True)),
            ("noise", f"gaussian-grey-{i}", noise_image(rng, kind="gaussian", size=224 + 96 * i)),
            ("noise", f"gaussian-colour-{i}", noise_image(rng, kind="gaussian", colour=True)),
            ("shapes", f"shapes-colour-{i}", shapes_image(rng)),
            ("shapes", f"shapes-grey-{i}", shapes_image(rng, colour=False)),
            ("text", f"text-{i}", text_image(rng, font_size=12 + 4 * i)),
            ("page", f"page-{i}", page_image(rng)),
            ("page", f"screenshot-dark-{i}", page_image(rng, size=(800, 500), dark=True)),
            ("photo-like", f"blobs-{i}", photo_like_image(rng)),
            ("photo-like", f"landscape-{i}", photo_like_image(rng, kind="landscape")),
        ]
    for direction in ("horizontal", "vertical", "diagonal", "radial"):
        probes.append(("gradient", f"gradient-{direction}", gradient_image(direction=direction)))
        probes.append(
            ("gradient", f"gradient-{direction}-inverted", ImageOps.invert(gradient_image(direction=direction)))
        )
    for value in (0, 128, 255):
        probes.append(("blank", f"blank-{value}", Image.new("L", (256, 256), value)))
    return [Probe(category, name, _png(image)) for category, name, image in probes]


TRANSFORMS: dict[str, Callable[[Image.Image], Image.Image]] = {
    "rotated-90": lambda im: im.transpose(Image.Transpose.ROTATE_90),
    "rotated-180": lambda im: im.transpose(Image.Transpose.ROTATE_180),
    "rotated-270": lambda im: im.transpose(Image.Transpose.ROTATE_270),
    "flipped-left-right": lambda im: im.transpose(Image.Transpose.FLIP_LEFT_RIGHT),
    "flipped-top-bottom": lambda im: im.transpose(Image.Transpose.FLIP_TOP_BOTTOM),
    "inverted": lambda im: ImageOps.invert(im),
    "cropped-centre-50%": lambda im: im.crop((im.width // 4, im.height // 4, im.width * 3 // 4, im.height * 3 // 4)),
    "cropped-top-left-50%": lambda im: im.crop((0, 0, im.width // 2, im.height // 2)),
    "downscaled-to-32px": lambda im: im.resize((32, 32), Image.Resampling.BICUBIC),
    "downscaled-to-96px": lambda im: im.resize((96, 96), Image.Resampling.BICUBIC),
}


def transformed_probes(films: list[tuple[str, bytes]], transforms: list[str] | None = None) -> list[Probe]:
    """Chest films (name, file bytes) transformed, as grey PNG uploads."""
    probes = []
    for name, data in films:
        with Image.open(io.BytesIO(data)) as opened:
            film = opened.convert("L")
        for transform in transforms or list(TRANSFORMS):
            probes.append(Probe(transform, f"{name}:{transform}", _png(TRANSFORMS[transform](film))))
    return probes


# --- Orientation: the version's training films turned, to teach its check what "upright" is ------------

# A chest film turned by a quarter or half turn, or upside down, is still a chest film to ImageNet features,
# and some pass both distance checks; a linear probe on the same pooled features tells them apart.
ORIENTATION_TRANSFORMS = ("rotated-90", "rotated-180", "rotated-270", "flipped-top-bottom")
ORIENTATION_FILMS = 800


def orientation_subset(samples: list[Sample], *, n: int, seed: int) -> list[Sample]:
    """A seeded choice of ``n`` films, kept in their listed order."""
    chosen = np.random.default_rng(seed).choice(len(samples), size=min(n, len(samples)), replace=False)
    return [samples[i] for i in sorted(chosen)]


def orientation_features(
    extractor: FeatureExtractor,
    samples: list[Sample],
    *,
    transforms: tuple[str, ...] = ORIENTATION_TRANSFORMS,
    progress: Callable[[str], None] | None = None,
) -> dict[str, np.ndarray]:
    """Pooled features of each film turned by each transform (cached like any upload).

    The film is turned as the decoder gives it to the model (its 8-bit grey model image), then saved
    as a lossless PNG upload, so upright and turned films differ only in their orientation.
    """
    files: dict[str, list[tuple[str, bytes]]] = {name: [] for name in transforms}
    for sample in samples:
        film = Image.fromarray(extractor.model_image(sample.path.read_bytes(), sample.path.name))
        for name in transforms:
            files[name].append((f"{sample.path.stem}-{name}.png", _png(TRANSFORMS[name](film))))
    return {name: extractor.pooled_bytes(files[name], progress=progress) for name in transforms}


def orientation_probe_fit(
    check: DomainCheck, upright: np.ndarray, turned: dict[str, np.ndarray], *, shrinkage: float
) -> tuple[np.ndarray, np.ndarray]:
    """(weights, bias) of one shrinkage-LDA direction per transform, on ``check``'s transformed features.

    For each way of turning, the direction ``(S + a I)^-1 (mean turned - mean upright)``, with ``S`` the
    pooled within-class covariance shrunk by ``shrinkage`` toward its mean variance: closed-form, seed-free
    and stable with 2,048 features and a few hundred films a class. Each row is scaled so the upright
    training films score mean 0 and standard deviation 1 on it, which makes the rows' maximum comparable.
    """
    if not 0.0 < shrinkage < 1.0:
        raise ValueError("shrinkage must be in (0, 1)")
    up = check.transform(upright).astype(np.float64)
    weights, bias = [], []
    for name in sorted(turned):
        other = check.transform(turned[name]).astype(np.float64)
        centred = np.concatenate([up - up.mean(axis=0), other - other.mean(axis=0)])
        covariance = centred.T @ centred / (len(centred) - 2)
        covariance = (1.0 - shrinkage) * covariance + shrinkage * np.trace(covariance) / len(covariance) * np.eye(
            len(covariance)
        )
        direction = np.linalg.solve(covariance, other.mean(axis=0) - up.mean(axis=0))
        projected = up @ direction
        scale = 1.0 / projected.std()
        weights.append(direction * scale)
        bias.append(-projected.mean() * scale)
    return np.asarray(weights, dtype=np.float32), np.asarray(bias, dtype=np.float32)


# --- Fitting both checks of a version, and writing them -------------------------------------------

VERSION_FILE, CHEST_FILE, RECORD_FILE = "domain.npz", "chest.npz", "domain.json"
PERCENTILES = (50.0, 90.0, 95.0, 97.5, 99.0, 99.5, 100.0)


@dataclass(frozen=True)
class FitSettings:
    chest_components: int = DEFAULT_COMPONENTS
    # Two models of 128 components each keep the version file near 1 MB (float16).
    version_components: int = 128
    shrinkage: float = DEFAULT_SHRINKAGE
    power: float = DEFAULT_POWER
    relative: bool = True  # the version check scores relative to all chest films (its background)
    version_inside: float = 0.975  # share of the version's validation images inside its check
    chest_inside: float = 0.995  # share of each source's held-out chest films inside the chest check
    orientation_films: int = ORIENTATION_FILMS  # training films turned for the orientation probe (0: no probe)
    orientation_shrinkage: float = 0.1
    orientation_inside: float = 0.995  # share of the upright validation films the probe lets pass


@dataclass(frozen=True)
class FittedScope:
    version: DomainCheck
    chest: DomainCheck
    record: dict


def _summary(scores: np.ndarray, limit: float, samples: list[Sample]) -> dict:
    return {
        "n": len(scores),
        "sha256_digest": samples_digest(samples),
        "inside_share": round(float(np.mean(scores <= limit)), 4),
        "percentiles": {f"p{p:g}": round(float(np.percentile(scores, p)), 4) for p in PERCENTILES},
    }


def scope_checks_fit(
    *,
    features: dict[str, np.ndarray],
    split: ReferenceSplit,
    preprocessing_version: str,
    settings: FitSettings,
    orientation: dict[str, np.ndarray] | None = None,
    orientation_samples: list[Sample] | None = None,
) -> FittedScope:
    """The version check on the version's training images, the chest check on chest films of all ages.

    ``features`` holds the pooled features of each part of ``split`` (same names). Limits are
    chosen on held-out images only: the version's validation split, and for the chest check the
    held-out films of each source (the highest of their ``chest_inside`` quantiles, so that
    neither children nor adults lose more than ``1 - chest_inside`` of their films).
    ``orientation`` (features of ``orientation_samples``, training films: ``"upright"`` and one entry per
    transform) adds the orientation probe to the version check, its limit on the upright validation films.
    """
    common = {"shrinkage": settings.shrinkage, "power": settings.power, "preprocessing_version": preprocessing_version}
    chest_train = np.concatenate([features["kermany_train"], features["nih_train"]])
    n_child, n_adult = len(features["kermany_train"]), len(features["nih_train"])
    # Each source weighs half: otherwise 4,144 children would define "a chest X-ray" and 396 adults barely count.
    weights = np.concatenate([np.full(n_child, 0.5 / n_child), np.full(n_adult, 0.5 / n_adult)])
    chest = domain_check_fit(
        chest_train, kind=CHEST_KIND, weights=weights, n_components=settings.chest_components, **common
    )
    held_out = {name: chest.scores(features[name]) for name in ("kermany_validation", "nih_validation")}
    chest = check_with_limit(chest, max(limit_for(s, inside=settings.chest_inside) for s in held_out.values()))
    background = None
    if settings.relative:
        background = domain_check_fit(
            chest_train, kind=CHEST_KIND, weights=weights, n_components=settings.version_components, **common
        )
    samples = {name: getattr(split, name) for name in ("kermany_train", "kermany_validation", "nih_validation")}
    version, version_record = version_check_fit(
        features=features,
        samples=samples,
        own="kermany",
        others=("nih_validation",),
        background=background,
        preprocessing_version=preprocessing_version,
        settings=settings,
        orientation=orientation,
        orientation_samples=orientation_samples,
    )
    fit = dataclasses.asdict(settings)
    record = {
        "version": version_record,
        "chest": {
            "file": CHEST_FILE,
            "kind": CHEST_KIND,
            "score": "Mahalanobis distance (probabilistic PCA) from chest films of all ages",
            "n_fitted": chest.n_fitted,
            "limit": round(chest.limit, 6),
            "limit_rule": f"highest {settings.chest_inside:.1%} quantile of the held-out films of each source",
            "fit": {**fit, "weights": "each source half"},
            "fitted_on": {
                "kermany_train": split_parts_summary(split.kermany_train),
                "nih_train": split_parts_summary(split.nih_train),
            },
            "scores": {name: _summary(scores, chest.limit, getattr(split, name)) for name, scores in held_out.items()},
        },
    }
    return FittedScope(version=version, chest=chest, record=record)


def version_check_fit(
    *,
    features: dict[str, np.ndarray],
    samples: dict[str, list[Sample]],
    own: str,
    others: tuple[str, ...],
    background: DomainCheck | None,
    preprocessing_version: str,
    settings: FitSettings,
    orientation: dict[str, np.ndarray] | None = None,
    orientation_samples: list[Sample] | None = None,
) -> tuple[DomainCheck, dict]:
    """A version's check fitted on ITS OWN training images (``features[f"{own}_train"]``), with its record.

    The limit is the ``version_inside`` quantile of its own validation split (``f"{own}_validation"``);
    ``others`` are held-out sets of other sources, scored for the record only. ``background`` (the chest
    films of all ages) makes the score relative, as in ``scope_checks_fit``.
    """
    common = {"shrinkage": settings.shrinkage, "power": settings.power, "preprocessing_version": preprocessing_version}
    train, validation = f"{own}_train", f"{own}_validation"
    version = domain_check_fit(features[train], kind=VERSION_KIND, n_components=settings.version_components, **common)
    if background is not None:
        version = dataclasses.replace(version, background=background)
    version = check_with_limit(version, limit_for(version.scores(features[validation]), inside=settings.version_inside))
    orientation_record = None
    if orientation is not None:
        version, orientation_record = _with_orientation(
            version,
            orientation,
            features=features,
            samples=samples,
            own=own,
            others=others,
            turned_samples=orientation_samples or [],
            settings=settings,
        )
    record = {
        "file": VERSION_FILE,
        "kind": VERSION_KIND,
        "score": "relative Mahalanobis distance: d2(version training images) - d2(chest films of all ages)"
        if background is not None
        else "Mahalanobis distance from the version's training images",
        "n_fitted": version.n_fitted,
        "limit": round(version.limit, 6),
        "limit_rule": f"{settings.version_inside:.1%} quantile of the version's validation split",
        "fit": dataclasses.asdict(settings),
        "fitted_on": {train: split_parts_summary(samples[train])}
        | ({"background": "the chest check's images, each source half"} if background is not None else {}),
        "scores": {
            name: _summary(version.scores(features[name]), version.limit, samples[name])
            for name in (validation, *others)
        },
    } | ({"orientation": orientation_record} if orientation_record else {})
    return version, record


def _with_orientation(
    version: DomainCheck,
    orientation: dict[str, np.ndarray],
    *,
    features: dict[str, np.ndarray],
    samples: dict[str, list[Sample]],
    own: str,
    others: tuple[str, ...],
    turned_samples: list[Sample],
    settings: FitSettings,
) -> tuple[DomainCheck, dict]:
    validation_name = f"{own}_validation"
    turned = {name: pooled for name, pooled in orientation.items() if name != "upright"}
    weights, bias = orientation_probe_fit(
        version, orientation["upright"], turned, shrinkage=settings.orientation_shrinkage
    )
    probe = dataclasses.replace(version, orientation_weights=weights, orientation_bias=bias)
    validation = probe.orientation_scores(features[validation_name])
    probe = dataclasses.replace(probe, orientation_limit=limit_for(validation, inside=settings.orientation_inside))
    both = (version.scores(features[validation_name]) <= version.limit) & (validation <= probe.orientation_limit)
    record = {
        "score": "highest of one shrinkage-LDA direction per transform (upright training films: mean 0, sd 1)",
        "transforms": sorted(turned),
        "limit": round(probe.orientation_limit, 6),
        "limit_rule": f"{settings.orientation_inside:.1%} quantile of the upright films of the validation split",
        "fitted_on": {f"{own}_train_subset": split_parts_summary(turned_samples), "per_transform": len(turned_samples)},
        "scores": {
            validation_name: _summary(validation, probe.orientation_limit, samples[validation_name])
            | {"in_domain_share_with_version_check": round(float(both.mean()), 4)},
        }
        | {
            name: {
                "n": len(features[name]),
                "inside_share": round(
                    float(np.mean(probe.orientation_scores(features[name]) <= probe.orientation_limit)), 4
                ),
            }
            for name in others
        },
    }
    return probe, record


# --- Routing: which version's check finds an image most typical --------------------------------------


def routing_rank(pooled: np.ndarray, *, chest: DomainCheck, version: DomainCheck) -> tuple[int, float]:
    """The worker's rank of ``inference.domain.domain_assess``'s verdict (``domain_rank``): smaller routes."""
    from inference.domain import domain_assess, domain_rank

    return domain_rank(domain_assess(pooled, chest=chest, version=version))


def routing_shares(
    sets: dict[str, tuple[str, np.ndarray]], checks: dict[str, tuple[DomainCheck, DomainCheck]]
) -> dict[str, dict]:
    """For each set (name -> (the version it belongs to, pooled features)), the share routed to each version.

    ``checks`` maps a version to its (chest, version) checks; an image goes to the version with the smallest
    ``routing_rank``, as ``inference.routing.choose_by_domain`` routes it. Each set's entry gives ``n``,
    ``ties``, ``to_own_share`` and the share routed to each version.
    """
    names = sorted(checks)
    out = {}
    for set_name, (own, pooled) in sets.items():
        ranks = [[routing_rank(row, chest=checks[v][0], version=checks[v][1]) for v in names] for row in pooled]
        routed = [names[row.index(min(row))] for row in ranks]
        # A film the shared chest check refuses has the same verdict under every version: a tie, settled here
        # by name; counted, so that a reader knows how much of a share is such arbitrary routing.
        ties = sum(row.count(min(row)) > 1 for row in ranks)
        out[set_name] = {
            "n": len(pooled),
            "ties": ties,
            "belongs_to": own,
            "to_own_share": round(float(np.mean([r == own for r in routed])), 4) if routed else None,
            "routed_share": {v: round(float(np.mean([r == v for r in routed])), 4) for v in names} if routed else {},
        }
    return out


def split_parts_summary(samples: list[Sample]) -> dict:
    return {"n": len(samples), "sha256_digest": samples_digest(samples)}


def scope_checks_write(fitted: FittedScope, out: Path, *, about: dict) -> dict:
    """Write ``domain.npz``, ``chest.npz`` and ``domain.json`` (their sha256 and how they were made)."""
    out.mkdir(parents=True, exist_ok=True)
    record = {**about, **fitted.record}
    record["version"] = {**record["version"], "sha256": domain_check_save(fitted.version, out / VERSION_FILE)}
    record["chest"] = {**record["chest"], "sha256": domain_check_save(fitted.chest, out / CHEST_FILE)}
    (out / RECORD_FILE).write_text(json.dumps(record, indent=1) + "\n")
    return record


def served_classifier_for_record(
    *, prepared_dir: Path, record: dict, num_threads: int = 1, model_sha256: str | None = None
) -> LiteRTClassifier:
    """The prepared conversion whose model file has the ``served_model_sha256`` a ``domain.json`` names.

    With ``model_sha256`` (the registered model file's), that model's own conversion when no file has
    the recorded sha256: TensorFlow's converter can write other bytes on another CPU (its constant
    folding runs there), with features equal to about 1e-6, which is what workers serve then too.
    """
    for prepared in sorted(prepared_dir.glob("*/prepared.json")):
        data = json.loads(prepared.read_text())
        if data.get("tflite_sha256") == record["served_model_sha256"]:
            found_sha256, _, preprocessing = prepared.parent.name.partition("-")
            return served_classifier(
                prepared_dir=prepared_dir,
                model_sha256=found_sha256,
                preprocessing_version=preprocessing,
                num_threads=num_threads,
            )
    own = prepared_dir / f"{model_sha256}-{record['preprocessing_version']}" / "prepared.json"
    if model_sha256 and own.is_file():
        return served_classifier(
            prepared_dir=prepared_dir,
            model_sha256=model_sha256,
            preprocessing_version=record["preprocessing_version"],
            num_threads=num_threads,
        )
    raise FileNotFoundError(f"no prepared model in {prepared_dir} has sha256 {record['served_model_sha256']}")
