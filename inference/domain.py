"""Is the model meant for this image? Distances of pooled Xception features from reference sets.

Two one-class checks run on the pooled features of the forward pass that serves the
prediction (no second network run):

- the *chest* check: is this a chest X-ray at all (fitted on chest films of all ages);
- the *version* check: is it like the training images of this model version.

Each check is a Mahalanobis distance in a probabilistic-PCA model of the reference
features: the top principal components with shrunk eigenvalues, plus the residual
outside them scaled by its mean variance, so that an image far off the reference
subspace (noise, a page of text) scores high even when its projection looks ordinary.
A version check may carry a background model (chest films of all ages) and then scores
the relative distance, which separates, say, adults from children far better than a
distance from the children alone (both are chest films to ImageNet features).
The fitted statistics are small (float16 components, at most a few hundred) and are
saved as a plain ``.npz`` (no pickle) whose sha256 the registry records.

No Django and no TensorFlow here: the worker imports this module.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

IN_DOMAIN, OUTSIDE_DOMAIN, NOT_CHEST_XRAY = "in_domain", "outside_domain", "not_chest_xray"
DOMAINS = (IN_DOMAIN, OUTSIDE_DOMAIN, NOT_CHEST_XRAY)
CHEST, VERSION = "chest", "version"
KINDS = (CHEST, VERSION)
FEATURE_CHANNELS = 2048
FORMAT = "pneumo-domain-check-v1"

REASON_NOT_CHEST = "this image does not look like a chest X-ray"
REASON_OUTSIDE = "it is unlike the images this model was validated on"
REASON_TURNED = "it looks rotated or flipped: unlike the images this model was validated on"
REASON_IN = "like the images this model was validated on"

# A model image whose grey levels barely vary (blank, or nearly so) is no radiograph: every real film
# examined has a spread of tens of grey levels (docs/model-card.md), and a blank image's pooled features
# sit near chest films' mean, where no distance check can call it "not a chest X-ray".
BLANK_MAX_STD = 2.0  # grey levels on the 0-255 model image
BLANK_MIN_MODE_SHARE = 0.99  # or this share of pixels on one grey level
_BLANK_SAMPLE_PIXELS = 65_536
# Pixel noise and rendered text: at 224 x 224, neighbouring pixels of a radiograph are nearly equal (their
# correlation was 0.976 to 0.999 on 2,648 paediatric and adult films), those of noise or a page are not
# (noise 0.26 at most, pages 0.77). The packaged model's 150 px NEAREST input hides noise from its chest check.
TEXTURE_SIZE = 224
TEXTURE_MIN_NEIGHBOUR_CORRELATION = 0.85


@dataclass(frozen=True, eq=False)
class DomainCheck:
    """One fitted check: ``score`` is a distance of pooled features from a reference set."""

    kind: str
    preprocessing_version: str
    limit: float  # scores above it are outside
    mean: np.ndarray  # (2048,) float32, of the transformed features
    components: np.ndarray  # (k, 2048) float32, orthonormal rows
    eigenvalues: np.ndarray  # (k,) float32, shrunk variances along the components
    residual_variance: float  # mean variance per dimension outside the components
    power: float = 1.0  # features are raised to this power first (they are >= 0: ReLU outputs)
    residual_weight: float = 1.0
    n_fitted: int = 0
    # Optional: the same model of a broader reference (chest films of all ages). With it the score is the
    # *relative* Mahalanobis distance d^2(reference) - d^2(background) (Ren et al., 2021), which can be
    # negative: what makes an image unlike this version's images, beyond what all chest films vary in.
    background: DomainCheck | None = None
    # Optional (version checks fitted since the orientation probe): linear scores of the transformed features,
    # one row per way a film can be turned (rotated 90/180/270 degrees, upside down); the highest is the
    # orientation score, above ``orientation_limit`` the film looks turned. Files without them check no orientation.
    orientation_weights: np.ndarray | None = None  # (m, 2048) float32
    orientation_bias: np.ndarray | None = None  # (m,) float32
    orientation_limit: float = float("inf")
    _scale: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown domain check kind {self.kind!r}; known: {', '.join(KINDS)}")
        k = self.components.shape[0]
        if self.mean.shape != (FEATURE_CHANNELS,) or self.components.shape != (k, FEATURE_CHANNELS):
            raise ValueError(f"bad domain check shapes: mean {self.mean.shape}, components {self.components.shape}")
        if self.eigenvalues.shape != (k,) or not np.all(self.eigenvalues > 0) or not self.residual_variance > 0:
            raise ValueError("domain check variances must be positive, one per component")
        for name in ("mean", "components", "eigenvalues"):
            object.__setattr__(self, name, np.ascontiguousarray(getattr(self, name), dtype=np.float32))
        if self.background is not None and self.background.preprocessing_version != self.preprocessing_version:
            raise ValueError("a domain check's background must be fitted on the same preprocessing")
        if (self.orientation_weights is None) != (self.orientation_bias is None):
            raise ValueError("a domain check's orientation probe needs both its weights and its bias")
        if self.orientation_weights is not None:
            weights = np.ascontiguousarray(self.orientation_weights, dtype=np.float32)
            bias = np.ascontiguousarray(self.orientation_bias, dtype=np.float32).reshape(-1)
            if weights.ndim != 2 or weights.shape[1] != FEATURE_CHANNELS or bias.shape != (weights.shape[0],):
                raise ValueError(f"bad orientation probe shapes: weights {weights.shape}, bias {bias.shape}")
            object.__setattr__(self, "orientation_weights", weights)
            object.__setattr__(self, "orientation_bias", bias)
        # Whitening folded into the components once, so a score is one matrix-vector product.
        object.__setattr__(self, "_scale", (1.0 / np.sqrt(self.eigenvalues)).astype(np.float32))

    def transform(self, pooled: np.ndarray) -> np.ndarray:
        x = np.asarray(pooled, dtype=np.float32)
        if x.shape[-1] != FEATURE_CHANNELS:
            raise ValueError(f"expected pooled features of {FEATURE_CHANNELS} channels, got {x.shape}")
        x = np.maximum(x, 0.0)
        return x if self.power == 1.0 else np.power(x, np.float32(self.power))

    def squared_distances(self, pooled: np.ndarray) -> np.ndarray:
        """Squared PPCA Mahalanobis distances of an ``N x 2048`` batch (float64), background left out."""
        centred = self.transform(np.atleast_2d(pooled)) - self.mean
        projected = centred @ self.components.T
        inside = ((projected * self._scale) ** 2).sum(axis=1, dtype=np.float64)
        residual = (centred**2).sum(axis=1, dtype=np.float64) - (projected**2).sum(axis=1, dtype=np.float64)
        residual = np.maximum(residual, 0.0) / self.residual_variance
        return inside + self.residual_weight * residual

    def scores(self, pooled: np.ndarray) -> np.ndarray:
        """Scores of an ``N x 2048`` batch (float64): the distance, or the relative one with a background."""
        squared = self.squared_distances(pooled)
        if self.background is None:
            return np.sqrt(squared)
        return squared - self.background.squared_distances(pooled)

    def score(self, pooled: np.ndarray) -> float:
        return float(self.scores(_one(pooled))[0])

    @property
    def checks_orientation(self) -> bool:
        return self.orientation_weights is not None

    def orientation_scores(self, pooled: np.ndarray) -> np.ndarray:
        """Orientation scores of an ``N x 2048`` batch (float64); higher looks more turned. Needs the probe."""
        if self.orientation_weights is None or self.orientation_bias is None:
            raise ValueError("this domain check has no orientation probe")
        logits = self.transform(np.atleast_2d(pooled)) @ self.orientation_weights.T + self.orientation_bias
        return logits.max(axis=1).astype(np.float64)

    def orientation_score(self, pooled: np.ndarray) -> float | None:
        """The orientation score of one image, or ``None`` for a check without the probe."""
        return float(self.orientation_scores(_one(pooled))[0]) if self.checks_orientation else None


def _one(pooled: np.ndarray) -> np.ndarray:
    x = np.asarray(pooled)
    if x.shape != (FEATURE_CHANNELS,):
        raise ValueError(f"expected pooled features of shape ({FEATURE_CHANNELS},), got {x.shape}")
    return x


def pooled_features(feature_map: np.ndarray) -> np.ndarray:
    """The global average (over H and W) of an ``HxWx2048`` or ``NxHxWx2048`` feature map, as float32."""
    a = np.asarray(feature_map)
    if a.ndim not in (3, 4) or a.shape[-1] != FEATURE_CHANNELS:
        raise ValueError(f"expected an HxWx{FEATURE_CHANNELS} or NxHxWx{FEATURE_CHANNELS} feature map, got {a.shape}")
    # float64 sum then float32, as the Grad-CAM head computes its pooled input.
    return a.mean(axis=(-3, -2), dtype=np.float64).astype(np.float32)


def _arrays(check: DomainCheck) -> dict[str, np.ndarray]:
    arrays = _own_arrays(check)
    if check.background is not None:
        arrays |= {f"background.{name}": array for name, array in _own_arrays(check.background).items()}
    if check.orientation_weights is not None and check.orientation_bias is not None:
        arrays |= {
            "orientation.weights": check.orientation_weights.astype(np.float32),
            "orientation.bias": check.orientation_bias.astype(np.float32),
            "orientation.limit": np.array(check.orientation_limit, dtype=np.float64),
        }
    return arrays


def _own_arrays(check: DomainCheck) -> dict[str, np.ndarray]:
    return {
        "format": np.array(FORMAT),
        "kind": np.array(check.kind),
        "preprocessing_version": np.array(check.preprocessing_version),
        "limit": np.array(check.limit, dtype=np.float64),
        "mean": check.mean.astype(np.float32),
        # float16 halves the file; the scores it gives differ from float32's by ~1e-3 relative.
        "components": check.components.astype(np.float16),
        "eigenvalues": check.eigenvalues.astype(np.float32),
        "residual_variance": np.array(check.residual_variance, dtype=np.float64),
        "power": np.array(check.power, dtype=np.float64),
        "residual_weight": np.array(check.residual_weight, dtype=np.float64),
        "n_fitted": np.array(check.n_fitted, dtype=np.int64),
    }


def domain_check_bytes(check: DomainCheck) -> bytes:
    """The ``.npz`` bytes of a check, byte-identical for the same statistics (fixed zip dates)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, array in _arrays(check).items():
            member = io.BytesIO()
            np.lib.format.write_array(member, np.asarray(array, order="C"), allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, member.getvalue())
    return buffer.getvalue()


def domain_check_save(check: DomainCheck, path: Path) -> str:
    """Write the check as ``.npz`` (no pickle); return the file's sha256."""
    data = domain_check_bytes(check)
    Path(path).write_bytes(data)
    return hashlib.sha256(data).hexdigest()


def _check_from(npz: Mapping[str, np.ndarray], prefix: str = "") -> DomainCheck:
    if str(npz[f"{prefix}format"]) != FORMAT:
        raise ValueError(f"not a domain check file (format {str(npz[f'{prefix}format'])!r}, expected {FORMAT!r})")
    return DomainCheck(
        kind=str(npz[f"{prefix}kind"]),
        preprocessing_version=str(npz[f"{prefix}preprocessing_version"]),
        limit=float(npz[f"{prefix}limit"]),
        mean=npz[f"{prefix}mean"],
        components=npz[f"{prefix}components"].astype(np.float32),
        eigenvalues=npz[f"{prefix}eigenvalues"],
        residual_variance=float(npz[f"{prefix}residual_variance"]),
        power=float(npz[f"{prefix}power"]),
        residual_weight=float(npz[f"{prefix}residual_weight"]),
        n_fitted=int(npz[f"{prefix}n_fitted"]),
        background=_check_from(npz, "background.") if not prefix and "background.format" in npz else None,
        **(_orientation_from(npz) if not prefix and "orientation.weights" in npz else {}),
    )


def _orientation_from(npz: Mapping[str, np.ndarray]) -> dict:
    return {
        "orientation_weights": npz["orientation.weights"],
        "orientation_bias": npz["orientation.bias"],
        "orientation_limit": float(npz["orientation.limit"]),
    }


def domain_check_from_bytes(data: bytes) -> DomainCheck:
    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return _check_from({name: npz[name] for name in npz.files})


def domain_check_load(path: Path, *, sha256: str | None = None) -> DomainCheck:
    """Read a check; with ``sha256``, refuse a file whose digest differs (``ValueError``)."""
    data = Path(path).read_bytes()
    actual = hashlib.sha256(data).hexdigest()
    if sha256 is not None and actual != sha256.lower():
        raise ValueError(
            f"domain check {path} has sha256 {actual}, expected {sha256}: the file was changed or replaced"
        )
    try:
        if not data.startswith(b"PK"):
            raise ValueError("no .npz (zip) signature")
        return domain_check_from_bytes(data)
    except (KeyError, OSError, ValueError, zipfile.BadZipFile) as exc:
        raise ValueError(f"domain check {path} is not a readable domain check file: {exc}") from exc


@dataclass(frozen=True)
class DomainVerdict:
    domain: str
    score: float | None
    limit: float | None
    reason: str


# Which verdict routes an image (inference.routing) and counts in the routing figures fit_domain records.
_DOMAIN_ORDER = {IN_DOMAIN: 0, OUTSIDE_DOMAIN: 1, NOT_CHEST_XRAY: 2}


def relative_score(verdict: DomainVerdict) -> float:
    """How atypical an image is for a version: its check's distance over that check's limit (below 1: inside)."""
    if verdict.score is None or verdict.limit is None:
        return float("inf")
    if verdict.limit > 0:
        return verdict.score / verdict.limit
    return verdict.score - verdict.limit + 1.0


def domain_rank(verdict: DomainVerdict) -> tuple[int, float]:
    """Inside a domain beats outside, which beats "no chest X-ray"; then the most typical wins."""
    return (_DOMAIN_ORDER.get(verdict.domain, 3), relative_score(verdict))


def image_is_blank(image: np.ndarray) -> bool:
    """Does the model image (8-bit grey, 0-255) barely vary: blank black, white or grey, or nearly so?"""
    a = np.asarray(image)
    if a.size == 0:
        return True
    # A regular subsample: a 3000 px film costs what a 256 px one does, and a uniform image stays uniform.
    step = max(1, int(np.ceil(np.sqrt(a.size / _BLANK_SAMPLE_PIXELS))))
    sample = (a[::step, ::step] if a.ndim >= 2 else a[::step]).reshape(-1)
    if sample.dtype == np.uint8:  # the model image: a histogram is far cheaper than a sort
        counts = np.bincount(sample, minlength=256).astype(np.float64)
        levels = np.arange(256, dtype=np.float64)
        mean = counts @ levels / sample.size
        std = float(np.sqrt(max(counts @ (levels - mean) ** 2 / sample.size, 0.0)))
        most = float(counts.max())
    else:
        std = float(sample.std(dtype=np.float64))
        most = float(np.unique(sample, return_counts=True)[1].max())
    return not std >= BLANK_MAX_STD or most > BLANK_MIN_MODE_SHARE * sample.size  # NaN counts as blank


def neighbour_correlation(image: np.ndarray) -> float:
    """Mean correlation of horizontally and vertically adjacent pixels of the image at 224 x 224 (bilinear)."""
    a = np.asarray(image)
    if a.ndim == 3:
        a = a.mean(axis=2)
    # A large film is first taken every n-th pixel down to at least twice the size: a few ms saved, and
    # noise stays noise while a radiograph stays smooth at that scale.
    step = max(1, min(a.shape[:2]) // (2 * TEXTURE_SIZE))
    resized = Image.fromarray(np.asarray(a[::step, ::step], dtype=np.uint8)).resize(
        (TEXTURE_SIZE, TEXTURE_SIZE), Image.Resampling.BILINEAR
    )
    x = np.asarray(resized, dtype=np.float32)

    def correlation(left: np.ndarray, right: np.ndarray) -> float:
        left, right = left - left.mean(), right - right.mean()
        norm = float(np.sqrt(float((left * left).sum()) * float((right * right).sum())))
        return float((left * right).sum()) / norm if norm > 0 else 1.0

    return (correlation(x[:, :-1], x[:, 1:]) + correlation(x[:-1], x[1:])) / 2


def image_not_chest_by_pixels(image: np.ndarray) -> bool:
    """The cheap pixel rules: a blank image, or pixel noise or text (no radiograph is either)."""
    return image_is_blank(image) or not neighbour_correlation(image) >= TEXTURE_MIN_NEIGHBOUR_CORRELATION


def domain_assess(
    pooled: np.ndarray, *, chest: DomainCheck, version: DomainCheck, image: np.ndarray | None = None
) -> DomainVerdict:
    """The chest check (is it a chest X-ray at all), the pixel rules (a blank, noise or text ``image``, when
    given), then this version's check and, where its file has one, its orientation probe."""
    if chest.kind != CHEST or version.kind != VERSION:
        raise ValueError(f"expected a chest and a version check, got {chest.kind!r} and {version.kind!r}")
    chest_score = chest.score(pooled)
    if not chest_score <= chest.limit:  # NaN counts as outside
        return DomainVerdict(NOT_CHEST_XRAY, chest_score, chest.limit, REASON_NOT_CHEST)
    # After the chest check, so that what it refuses keeps its score; what the pixels refuse has none.
    if image is not None and image_not_chest_by_pixels(image):
        return DomainVerdict(NOT_CHEST_XRAY, None, None, REASON_NOT_CHEST)
    version_score = version.score(pooled)
    if not version_score <= version.limit:
        return DomainVerdict(OUTSIDE_DOMAIN, version_score, version.limit, REASON_OUTSIDE)
    orientation_score = version.orientation_score(pooled)
    if orientation_score is not None and not orientation_score <= version.orientation_limit:
        return DomainVerdict(OUTSIDE_DOMAIN, orientation_score, version.orientation_limit, REASON_TURNED)
    return DomainVerdict(IN_DOMAIN, version_score, version.limit, REASON_IN)
