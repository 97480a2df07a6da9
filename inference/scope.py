"""Does the model apply to an image? One decision for the worker and for ``scope_report``.

First the metadata (``cases.imaging.assess_eligibility``: another modality, a
lateral view or a multi-frame object never reaches the model), then the
pixels: the version's chest check and domain check (``inference.domain``) on
the pooled features of the forward pass that serves the prediction, so the
check costs no second network run. The worker stores what ``result_fields``
says; ``scope_report`` runs a folder through ``file_scope`` to show what the
worker would decide for each file.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from django.conf import settings

from inference import runtime
from inference.classifier import ClassifierOutput
from inference.domain import IN_DOMAIN, NOT_CHEST_XRAY, OUTSIDE_DOMAIN, DomainVerdict, domain_assess
from inference.models import AiLabel, ModelVersion
from inference.registry import ScopeChecks
from inference.routing import Route, choose_by_domain, route_image, route_requested

if TYPE_CHECKING:
    from cases.imaging import EligibilityVerdict, ImageMetadata

NOT_ELIGIBLE = "not_eligible"
OUTCOMES = (IN_DOMAIN, OUTSIDE_DOMAIN, NOT_CHEST_XRAY, NOT_ELIGIBLE)


@dataclass(frozen=True)
class ScopedOutput:
    output: ClassifierOutput
    verdict: DomainVerdict


def scope_verdict(
    output: ClassifierOutput, checks: ScopeChecks, *, model_image: np.ndarray | None = None
) -> DomainVerdict:
    """With ``model_image``, its pixel rules too (a blank, noise or text image is no chest X-ray)."""
    if output.pooled_features is None:
        raise ValueError("the classifier gave no pooled features, so the scope of the image cannot be checked")
    return domain_assess(output.pooled_features, chest=checks.chest, version=checks.version, image=model_image)


def image_scope(model_image: np.ndarray, *, version: ModelVersion, heatmap: bool = True) -> ScopedOutput:
    """The version's result on the 8-bit model image, with its domain verdict from the same forward pass."""
    output = runtime.classifier_for(version).predict(model_image, heatmap=heatmap)
    verdict = scope_verdict(output, runtime.scope_checks_for(version), model_image=model_image)
    return ScopedOutput(output, verdict)


def image_scopes(
    model_image: np.ndarray, *, versions: Sequence[ModelVersion], heatmap: bool = True
) -> list[tuple[ModelVersion, ScopedOutput]]:
    """Every version's scoped result, with one forward pass per distinct feature map (``features_key``)."""
    groups: dict[str, list[ModelVersion]] = {}
    for version in versions:
        groups.setdefault(version.features_key or f"own:{version.pk}", []).append(version)
    results = []
    for members in groups.values():
        heads = [runtime.head_for(other) for other in members[1:]]
        outputs = runtime.classifier_for(members[0]).predict_heads(model_image, heads=heads, heatmap=heatmap)
        for version, output in zip(members, outputs, strict=True):
            verdict = scope_verdict(output, runtime.scope_checks_for(version), model_image=model_image)
            results.append((version, ScopedOutput(output, verdict)))
    return results


@dataclass(frozen=True)
class RoutedOutput:
    version: ModelVersion
    scoped: ScopedOutput
    reason: str


def image_scope_routed(model_image: np.ndarray, *, route: Route, heatmap: bool = True) -> RoutedOutput:
    """The routed version's scoped result; with the age unknown, the version whose domain fits best (one pass)."""
    if route.decided:
        return RoutedOutput(
            route.version, image_scope(model_image, version=route.version, heatmap=heatmap), route.reason
        )
    scopes = image_scopes(model_image, versions=route.candidates, heatmap=heatmap)
    version, reason = choose_by_domain([(v, scoped.verdict) for v, scoped in scopes])
    return RoutedOutput(version, {v.pk: sc for v, sc in scopes}[version.pk], reason)


def result_fields(scoped: ScopedOutput, *, threshold: float) -> dict[str, Any]:
    """What a prediction keeps of a scoped result.

    An image that is no chest X-ray keeps no probability, label or heatmap: a
    number that means nothing must not be shown, counted or flag anything.
    """
    verdict, output = scoped.verdict, scoped.output
    fields: dict[str, Any] = {
        "domain": verdict.domain,
        "domain_score": verdict.score,
        "domain_limit": verdict.limit,
        "domain_reason": verdict.reason,
    }
    if verdict.domain == NOT_CHEST_XRAY:
        return {**fields, "probability": None, "label": "", "heatmap": None}
    heatmap = None if output.heatmap is None else [[round(float(v), 5) for v in row] for row in output.heatmap]
    return {
        **fields,
        "probability": output.probability,
        "label": AiLabel.of(output.probability, threshold),
        "heatmap": heatmap,
    }


def eligibility_for(meta: ImageMetadata) -> EligibilityVerdict:
    """The metadata check that depends on no version (the routed version's caveats come per prediction)."""
    from cases.imaging import assess_eligibility

    return assess_eligibility(meta)


@dataclass(frozen=True)
class FileScope:
    path: str  # relative to the folder examined
    domain: str  # one of OUTCOMES
    model: str | None  # the version that judged the pixels; None when the metadata refused the image
    domain_score: float | None
    domain_limit: float | None
    reason: str


@dataclass(frozen=True)
class Undecodable:
    path: str
    reason: str


@dataclass
class ScopeReport:
    files: list[FileScope] = field(default_factory=list)
    undecodable_files: list[Undecodable] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        found = Counter(row.domain for row in self.files)
        return {outcome: found.get(outcome, 0) for outcome in OUTCOMES}

    def as_json(self) -> dict[str, Any]:
        files = sorted(self.files, key=lambda row: row.path)
        undecodable = sorted(self.undecodable_files, key=lambda row: row.path)
        return {
            "n": len(files) + len(undecodable),
            "undecodable": len(undecodable),
            "counts": self.counts(),
            "routed": dict(sorted(Counter(row.model for row in files if row.model).items())),
            "files": [asdict(row) for row in files],
            "undecodable_files": [asdict(row) for row in undecodable],
        }


class NotDecodable(Exception):
    """The file is chosen as an image by its first bytes but yields nothing the model could read."""


def file_scope(
    data: bytes, *, filename: str, version: ModelVersion | None = None, actives: dict | None = None
) -> tuple[str | None, DomainVerdict]:
    """(the version that judged the pixels, the verdict) of one file decoded as uploads are.

    With ``version`` that version judges every file; otherwise each file is routed among the
    ``actives`` (population -> version) as the worker routes it. The verdict's domain is one of
    ``OUTCOMES``; ``NotDecodable`` says why there is none.
    """
    from cases.imaging import DecodeError, decode_guarded

    try:
        decoded = decode_guarded(
            data,
            filename=filename,
            max_bytes=settings.PNEUMO_MAX_UPLOAD_BYTES,
            max_pixels=settings.PNEUMO_MAX_PIXELS,
            decode_threads=settings.PNEUMO_DECODE_THREADS,
        )
    except DecodeError as exc:
        raise NotDecodable(str(exc)) from exc
    eligibility = eligibility_for(decoded.metadata)
    if not eligibility.runs_model:
        return None, DomainVerdict(NOT_ELIGIBLE, None, None, eligibility.reason)
    if decoded.model_image is None:
        raise NotDecodable("The image has no single frame the AI can read")
    route = route_requested(version) if version is not None else route_image(decoded.metadata.age_years, actives or {})
    if route is None:
        raise NotDecodable("No model version is active")
    routed = image_scope_routed(decoded.model_image, route=route, heatmap=False)
    return routed.version.name, routed.scoped.verdict


def scope_report_make(*, root: Path, version: ModelVersion | None = None) -> ScopeReport:
    """Every image file under ``root`` (chosen by its first bytes, never its name) through the worker's decisions.

    Without ``version``, each file is routed among the active versions as the site routes it.
    """
    from inference.evaluation import image_files
    from inference.registry import active_model_versions

    actives = active_model_versions() if version is None else None
    report = ScopeReport()
    for path in image_files(root):
        relative = path.relative_to(root).as_posix()
        try:
            model, verdict = file_scope(path.read_bytes(), filename=path.name, version=version, actives=actives)
        except (NotDecodable, OSError) as exc:
            report.undecodable_files.append(Undecodable(relative, str(exc)))
            continue
        report.files.append(FileScope(relative, verdict.domain, model, verdict.score, verdict.limit, verdict.reason))
    return report
