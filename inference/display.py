"""What an AI result means to its reader: counted, muted or no result. One rule, one place.

Every page, the API, the worklist, the stats, the alerts and the study's AI
summary ask here whether a prediction counts:

* a result **counts** when it succeeded with a probability, inside the
  domain (or made before the scope check existed: "not checked") and without
  a caveat that puts the image outside validated use;
* it is **muted** when the image is unlike the version's validation images
  (``outside_domain``) or a caveat says it is outside validated use (an age
  outside the range, a view the model was not validated on): stored, shown
  greyed as "AI not validated for this image", never a flag, never a rank,
  never an alert. A caveat that only says a tag is missing is a note;
* an image that is **not a chest X-ray** has no result at all.

A site that does not run the AI outside validated use (``Site.ai_outside_validated_use``
off) shows its muted results as no result either: it asked not to see such numbers.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from cases.ai_modes import study_ai_shadowed
from cases.imaging.eligibility import caveats_outside_use
from inference.models import AiDomain, Prediction, PredictionStatus

if TYPE_CHECKING:
    from cases.models import Site, Study

MUTED_PREFIX = "AI not validated for this image: "
MUTED_OUTSIDE_DOMAIN = MUTED_PREFIX + "it is unlike the images this model was validated on"
MUTED_OUTSIDE_USE = "it is outside the model's validated use"
NO_RESULT_NOT_CHEST = "No AI result: this image does not look like a chest X-ray"
NO_RESULT_OUTSIDE_USE = "No AI result: this image is outside the model's validated use"
NOT_CHECKED = "not checked"

# What a display shows of a result.
RESULT = "result"  # the probability, flagged or not
MUTED = "muted"  # the probability greyed, with why it does not count
WITHHELD = "withheld"  # a muted result at a site that does not run the AI outside validated use
NO_RESULT = "no_result"  # not a chest X-ray: nothing to show
NONE = "none"  # no finished result (none yet, or the AI failed)
HIDDEN = "hidden"  # shadow mode before signing (cases.ai_modes): no trace of the AI at all


def domain_label(domain: str | None) -> str:
    """ "In domain", "Outside domain", "Not a chest X-ray", or "not checked" for older predictions."""
    return AiDomain(domain).label if domain in AiDomain.values else NOT_CHECKED


def _succeeded(prediction: Prediction | None) -> bool:
    return prediction is not None and prediction.status == PredictionStatus.SUCCEEDED


def prediction_has_no_result(prediction: Prediction | None) -> bool:
    """Succeeded, but on an image that is no chest X-ray (or without a probability): nothing to show or count."""
    return _succeeded(prediction) and (prediction.domain == AiDomain.NOT_CHEST_XRAY or prediction.probability is None)


def outside_use_caveats(domain: str | None, outside_validated_use: bool, reason: str) -> list[str]:
    """The caveats of a result's outside-use reason that put it outside validated use (not mere notes)."""
    # Predictions made before the scope check (domain null) keep today's display: their caveat is a note.
    if not outside_validated_use or domain is None:
        return []
    return caveats_outside_use(reason)


def result_is_muted(domain: str | None, outside_validated_use: bool, reason: str) -> bool:
    """A probability that must not act as one, from a result's stored fields (aggregates read them as rows)."""
    return domain == AiDomain.OUTSIDE_DOMAIN or bool(outside_use_caveats(domain, outside_validated_use, reason))


def _caveats_outside_use(prediction: Prediction) -> list[str]:
    return outside_use_caveats(
        prediction.domain, prediction.outside_validated_use, prediction.outside_validated_use_reason
    )


def prediction_is_muted(prediction: Prediction | None) -> bool:
    """A stored probability that must not act as one: outside the domain, or outside validated use."""
    if not _succeeded(prediction) or prediction_has_no_result(prediction):
        return False
    return result_is_muted(prediction.domain, prediction.outside_validated_use, prediction.outside_validated_use_reason)


def prediction_counts(prediction: Prediction | None) -> bool:
    """Whether the result may flag, rank, alert and be counted."""
    return _succeeded(prediction) and not prediction_has_no_result(prediction) and not prediction_is_muted(prediction)


def prediction_muted_reason(prediction: Prediction) -> str:
    if prediction.domain == AiDomain.OUTSIDE_DOMAIN:
        return MUTED_OUTSIDE_DOMAIN
    return MUTED_PREFIX + "; ".join(_caveats_outside_use(prediction))


@dataclass(frozen=True)
class AiShown:
    kind: str  # RESULT | MUTED | WITHHELD | NO_RESULT | NONE | HIDDEN
    message: str = ""

    @property
    def shows_probability(self) -> bool:
        return self.kind in (RESULT, MUTED)

    @property
    def counts(self) -> bool:
        return self.kind == RESULT

    @property
    def muted(self) -> bool:
        return self.kind == MUTED


def prediction_shown(prediction: Prediction | None, *, site: Site) -> AiShown:
    """How every page shows one image's result."""
    if not _succeeded(prediction):
        return AiShown(NONE)
    if prediction_has_no_result(prediction):
        return AiShown(NO_RESULT, NO_RESULT_NOT_CHEST)
    if prediction_is_muted(prediction):
        if not site.ai_outside_validated_use:
            return AiShown(WITHHELD, NO_RESULT_OUTSIDE_USE)
        return AiShown(MUTED, prediction_muted_reason(prediction))
    return AiShown(RESULT)


# --- A study's summary -------------------------------------------------------------------------


@dataclass(frozen=True)
class AiSummary:
    probability: float | None  # the highest result that counts: the study's AI probability
    muted_probability: float | None  # the highest muted one, shown greyed, never counted
    domain: str | None  # the domain of the result the study shows (see ``predictions_summary``)


def predictions_summary(predictions: Iterable[Prediction]) -> AiSummary:
    """A study's AI from its predictions: what counts comes from the results that count only.

    Its domain is that of the result it shows: the highest that counts, else the
    highest muted one, else ``not_chest_xray`` when the only results are no result.
    """
    done = [p for p in predictions if _succeeded(p)]
    counted = sorted((p for p in done if prediction_counts(p)), key=lambda p: p.probability, reverse=True)
    muted = sorted((p for p in done if prediction_is_muted(p)), key=lambda p: p.probability, reverse=True)
    if counted:
        domain = counted[0].domain
    elif muted:
        domain = muted[0].domain
    else:
        domain = AiDomain.NOT_CHEST_XRAY if any(p.domain == AiDomain.NOT_CHEST_XRAY for p in done) else None
    return AiSummary(
        probability=counted[0].probability if counted else None,
        muted_probability=muted[0].probability if muted else None,
        domain=domain,
    )


def study_is_muted(study: Study) -> bool:
    """The study's only results are muted: no probability counts, and a reading has nothing to agree with."""
    return study.ai_probability is None and study.ai_muted_probability is not None


def study_shown(study: Study, *, caveat: str = "") -> AiShown:
    """How a study's row shows its AI, from its stored summary (``caveat``: an outside-use reason, if known)."""
    if study_ai_shadowed(study):
        return AiShown(HIDDEN)
    if study.ai_probability is not None:
        return AiShown(RESULT)
    if study.ai_muted_probability is not None:
        if not study.site.ai_outside_validated_use:
            return AiShown(WITHHELD, NO_RESULT_OUTSIDE_USE)
        reasons = caveats_outside_use(caveat)
        if study.ai_domain == AiDomain.OUTSIDE_DOMAIN:
            return AiShown(MUTED, MUTED_OUTSIDE_DOMAIN)
        return AiShown(MUTED, MUTED_PREFIX + ("; ".join(reasons) if reasons else MUTED_OUTSIDE_USE))
    if study.ai_domain == AiDomain.NOT_CHEST_XRAY:
        return AiShown(NO_RESULT, NO_RESULT_NOT_CHEST)
    return AiShown(NONE)
