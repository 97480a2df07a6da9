"""Whether an image may go to the pneumonia model, decided from its metadata alone.

Three outcomes:

* ``not_eligible``: never sent to the model (not a radiograph, not the chest,
  a lateral view, a multi-frame object);
* ``outside_validated_use``: run, with a note, because a tag is missing (the
  age, the body part, the view: see ``caveats_outside_use``);
* ``eligible``: nothing in the metadata stands in the way.

An age or a view outside a version's validated use (``use_caveats``) depends
on the version the image is routed to, so it is a caveat of each prediction.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

from .types import ImageMetadata

EligibilityStatus = Literal["eligible", "outside_validated_use", "not_eligible"]
CaveatKind = Literal["missing_tag", "outside_use"]

RADIOGRAPH_MODALITIES = frozenset({"CR", "DX"})
SECONDARY_CAPTURE_MODALITIES = frozenset({"SC", "OT"})
SECONDARY_CAPTURE_SOP_PREFIX = "1.2.840.10008.5.1.4.1.1.7"
# CR, DX for presentation, DX for processing: a file missing its Modality still names its class.
RADIOGRAPH_SOP_CLASSES = frozenset(
    {"1.2.840.10008.5.1.4.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1", "1.2.840.10008.5.1.4.1.1.1.1.1"}
)
# Chest as BodyPartExamined is written across vendors and languages.
CHEST_TERMS = frozenset(
    {"CHEST", "THORAX", "THORACIC", "TORAX", "TORACE", "TORACICO", "LUNG", "LUNGS", "PECHO", "BRUST", "BRUSTKORB"}
    | {"POUMON", "POUMONS", "PULMON", "PULMONES", "THX"}
)
LATERAL_VIEWS = frozenset({"LL", "RL", "LAT", "LATERAL", "LLD", "RLD", "LLAT", "RLAT", "XTABLE", "CROSSTABLE"})
# The caveats that only say a tag is missing: shown as a note, they never mute a result. Every other caveat
# (an age outside the range, a view the model was not validated on) puts the image outside validated use.
AGE_UNKNOWN = "Patient age is unknown"
BODY_PART_NOT_RECORDED = "Body part is not recorded"
VIEW_NOT_RECORDED = "View position is not recorded"
MISSING_TAG_CAVEATS = frozenset({AGE_UNKNOWN, BODY_PART_NOT_RECORDED, VIEW_NOT_RECORDED})


@dataclass(frozen=True)
class EligibilityVerdict:
    status: EligibilityStatus
    reason: str  # human sentences (without semicolons) joined with "; ", empty when eligible

    @property
    def runs_model(self) -> bool:
        return self.status != "not_eligible"

    @property
    def caveat_kind(self) -> CaveatKind | None:
        """``outside_use`` when a caveat mutes the result, ``missing_tag`` when caveats are notes only."""
        if self.status != "outside_validated_use":
            return None
        return "outside_use" if caveats_outside_use(self.reason) else "missing_tag"


def caveats_outside_use(reason: str) -> list[str]:
    """The caveats of a reason that put an image outside validated use, not those that only say a tag is missing.

    Reasons are sentences without semicolons joined with "; ", so a stored reason splits back into its caveats.
    """
    caveats = [c.strip() for c in reason.split(";")]
    return [c for c in caveats if c and c not in MISSING_TAG_CAVEATS]


def assess_eligibility(meta: ImageMetadata) -> EligibilityVerdict:
    """What the metadata says whatever version reads the image: refused, noted (a tag missing), or eligible.

    Whether the age and the view lie inside a version's validated use depends on the version the
    image is routed to (``inference.routing``): ``use_caveats`` answers that, per prediction.
    """
    blocking = [r for r in (_modality_problem(meta), _body_part_problem(meta), _lateral_problem(meta)) if r]
    blocking += ["It is a multi-frame object, not a single radiograph"] if meta.is_multiframe else []
    if blocking:
        return EligibilityVerdict("not_eligible", "; ".join(blocking))
    caveats = ([AGE_UNKNOWN] if meta.age_years is None else []) + _tag_caveats(meta)
    if caveats:
        return EligibilityVerdict("outside_validated_use", "; ".join(caveats))
    return EligibilityVerdict("eligible", "")


def use_caveats(
    age_years: float | None,
    view: str | None,
    *,
    min_age: float | None,
    max_age: float | None,
    views: tuple[str, ...],
) -> list[str]:
    """The caveats that put an image outside one version's validated ages and views (none when unknown)."""
    caveats = []
    if age_years is not None and min_age is not None and max_age is not None:
        caveats.append(_age_caveat(age_years, min_age, max_age))
    if views:
        caveats.append(_view_caveat(view, views))
    return [c for c in caveats if c]


def _modality_problem(meta: ImageMetadata) -> str | None:
    if meta.kind != "dicom" or meta.modality in RADIOGRAPH_MODALITIES or _is_secondary_capture(meta):
        return None
    if meta.modality is None and meta.sop_class_uid in RADIOGRAPH_SOP_CLASSES:
        return None
    if meta.modality is None:
        return "The file does not say which modality produced it, so it cannot be confirmed as a radiograph"
    return f"Modality {meta.modality} is not a radiograph (CR, DX or secondary capture)"


def _is_secondary_capture(meta: ImageMetadata) -> bool:
    sop_class = meta.sop_class_uid or ""
    # The SC family is 1.2.840.10008.5.1.4.1.1.7 and .7.1 to .7.4; .77 is visible light, not SC.
    sc_class = sop_class == SECONDARY_CAPTURE_SOP_PREFIX or sop_class.startswith(SECONDARY_CAPTURE_SOP_PREFIX + ".")
    return meta.modality == "SC" or (sc_class and meta.modality in (None, *SECONDARY_CAPTURE_MODALITIES))


def _body_part_problem(meta: ImageMetadata) -> str | None:
    if not meta.body_part or is_chest(meta.body_part):
        return None
    return f"Body part is {meta.body_part}, not the chest"


def is_chest(body_part: str) -> bool:
    return bool(_tokens(body_part) & CHEST_TERMS) or _squashed(body_part) in CHEST_TERMS


def _lateral_problem(meta: ImageMetadata) -> str | None:
    if not meta.view_position or not is_lateral(meta.view_position):
        return None
    return f"View {meta.view_position} is a lateral view, and the model reads frontal views only"


def is_lateral(view: str) -> bool:
    return bool(_tokens(view) & LATERAL_VIEWS) or _squashed(view) in LATERAL_VIEWS


def _age_caveat(age_years: float, low: float, high: float) -> str | None:
    if low <= age_years <= high:
        return None
    return f"Patient is {describe_age(age_years)} old, outside the validated ages of {low:g} to {high:g} years"


def describe_age(age_years: float) -> str:
    if age_years < 2:
        months = round(age_years * 12)
        return f"{months} month{'s' if months != 1 else ''}"
    return f"{age_years:.0f} years" if age_years >= 10 else f"{age_years:.1f}".removesuffix(".0") + " years"


def _tag_caveats(meta: ImageMetadata) -> list[str]:
    caveats = [] if meta.body_part else [BODY_PART_NOT_RECORDED]
    return caveats + ([] if meta.view_position else [VIEW_NOT_RECORDED])


def _view_caveat(view: str | None, views: tuple[str, ...]) -> str | None:
    if not view or {v.upper() for v in views} & _tokens(view):
        return None
    named = " or ".join(views)
    return f"View {view} is not the validated {named} view"


def _tokens(text: str) -> set[str]:
    return set(re.split(r"[^A-Z0-9]+", _ascii_upper(text))) - {""}


def _squashed(text: str) -> str:
    return re.sub(r"[^A-Z0-9]+", "", _ascii_upper(text))


def _ascii_upper(text: str) -> str:
    # "Tórax" and "TORAX" are the same body part.
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).upper()
