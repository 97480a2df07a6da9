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

IN_DOMAIN, OUTSIDE_DOMAIN, NOT_CHEST_XRAY = "in_domain", "outside_domain", "not_chest_xray"
DOMAINS = (IN_DOMAIN, OUTSIDE_DOMAIN, NOT_CHEST_XRAY)
CHEST, VERSION = "chest", "version"
KINDS = (CHEST, VERSION)
FEATURE_CHANNELS = 2048
FORMAT = "pneumo-domain-check-v1"

REASON_NOT_CHEST = "this image does not look like a chest X-ray"
REASON_OUTSIDE = "it is unlike the images this model was validated on"
REASON_IN = "like the images this model was validated on"


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
        x = np.asarray(pooled)
        if x.shape != (FEATURE_CHANNELS,):
            raise ValueError(f"expected pooled features of shape ({FEATURE_CHANNELS},), got {x.shape}")
        return float(self.scores(x)[0])


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
    )


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


def domain_assess(pooled: np.ndarray, *, chest: DomainCheck, version: DomainCheck) -> DomainVerdict:
    """The chest check first (is it a chest X-ray at all), then this version's check."""
    if chest.kind != CHEST or version.kind != VERSION:
        raise ValueError(f"expected a chest and a version check, got {chest.kind!r} and {version.kind!r}")
    chest_score = chest.score(pooled)
    if not chest_score <= chest.limit:  # NaN counts as outside
        return DomainVerdict(NOT_CHEST_XRAY, chest_score, chest.limit, REASON_NOT_CHEST)
    version_score = version.score(pooled)
    if not version_score <= version.limit:
        return DomainVerdict(OUTSIDE_DOMAIN, version_score, version.limit, REASON_OUTSIDE)
    return DomainVerdict(IN_DOMAIN, version_score, version.limit, REASON_IN)
