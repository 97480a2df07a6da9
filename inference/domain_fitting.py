"""Fitting the scope checks of ``inference.domain`` from pooled features (NumPy only).

The data handling (which images, through which served model) lives in
``inference.domain_data``; this module only turns feature matrices into checks and limits.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from inference.domain import DomainCheck

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
) -> DomainCheck:
    """A probabilistic-PCA Mahalanobis check of ``N x 2048`` reference features.

    Eigenvalues are shrunk toward their mean (``(1 - shrinkage) * l + shrinkage * mean(l)``),
    which keeps a direction seen with tiny variance in a few hundred images from making any
    small shift there look enormous. The variance outside the kept components is their mean
    (the PPCA noise variance). The limit is set later, on held-out images (``limit_for``).
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
    mean = x.mean(axis=0)
    centred = x - mean
    covariance = centred.T @ centred / max(len(x) - 1, 1)
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
