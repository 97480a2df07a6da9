"""The DICOM objects Pneumo writes back into a source study, for a PACS: built here, sent by the outbox.

Three builders, each taking the source image's pydicom Dataset (header and
pixels, as stored) and a small dataclass, and returning a new Dataset that
joins the source study (same StudyInstanceUID, patient and accession) in a
series of its own kind:

* ``ai_result_sr(source, result, pneumo_version=...)``: a Comprehensive 3D SR
  measurement report (TID 1500), VerificationFlag UNVERIFIED, series
  "Pneumo AI result". A result that counts states the finding pneumonia
  present or absent; a muted one (outside the domain or the validated use)
  states its probability and why it is not validated, never a finding; an
  image that is no chest X-ray states that there is no result, with no
  probability.
* ``heatmap_secondary_capture(source, result, pneumo_version=...)``: an RGB
  secondary capture (Modality OT) of the image as the viewer windows it, with
  the heatmap and "AI RESULT - NOT CONFIRMED - <model> - p=0.93" burned in
  (BurnedInAnnotation YES), series "Pneumo AI heatmap (not confirmed)"; None
  for an image that is no chest X-ray.
* ``report_sr(source, report, pneumo_version=...)``: the signed reading as a
  basic diagnostic imaging report (TID 2000 content in an Enhanced SR),
  VerificationFlag VERIFIED with the radiologist as verifying observer, series
  "Pneumo report"; an amendment names the SR it replaces in its Predecessor
  Documents Sequence.

``ai_result_from_prediction`` and ``signed_report_from_review`` turn the models
into the dataclasses (attributes of the passed objects only, no queries).
Every builder takes an optional ``sop_instance_uid``; without one the UID is
derived from what the object states, so building the same result twice gives
the same instance (a resend replaces, never duplicates) and a changed result a
new one. Series UIDs are derived from the study and the kind: all of a
study's AI result SRs share one series.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from copy import deepcopy
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

import highdicom as hd
import numpy as np
from highdicom.coding_schemes import CodingSchemeIdentificationItem
from highdicom.sr import CodedConcept
from highdicom.sr.templates import DEFAULT_LANGUAGE
from PIL import Image as PILImage
from PIL import ImageDraw, ImageFont
from pydicom import dcmwrite
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes
from pydicom.uid import ExplicitVRLittleEndian, generate_uid
from pydicom.valuerep import DT

from cases.imaging import decode
from cases.imaging.windowing import full_range_window, window_to_uint8
from cases.pictures import DEFAULT_OVERLAY_SIZE, MAX_OVERLAY_SIZE, heatmap_colours, upscale_bilinear
from inference import display
from inference.models import AiMode

if TYPE_CHECKING:
    from cases.models import Review, Site
    from inference.models import Prediction

MANUFACTURER = "Pneumo"
AI_RESULT_SERIES = "Pneumo AI result"
HEATMAP_SERIES = "Pneumo AI heatmap (not confirmed)"
REPORT_SERIES = "Pneumo report"
# Far above a modality's own series numbers, so that a viewer lists Pneumo's series last.
SERIES_NUMBERS = {AI_RESULT_SERIES: 9001, HEATMAP_SERIES: 9002, REPORT_SERIES: 9003}

IN_DOMAIN, OUTSIDE_DOMAIN, NOT_CHEST_XRAY = "in_domain", "outside_domain", "not_chest_xray"
NOT_CONFIRMED_TEXT = "AI result, not confirmed by a radiologist"

# --- Codes -------------------------------------------------------------------------------------

PNEUMONIA = CodedConcept("233604007", "SCT", "Pneumonia")
PRESENT = CodedConcept("52101004", "SCT", "Present")
ABSENT = CodedConcept("2667000", "SCT", "Absent")
INDETERMINATE = CodedConcept("82334004", "SCT", "Indeterminate")
CHEST_XRAY = CodedConcept("399208008", "SCT", "Plain chest X-ray")
PROBABILITY = CodedConcept("122157", "DCM", "Probability")
THRESHOLD = CodedConcept("122411", "DCM", "Threshold Value")
NO_UNITS = CodedConcept("1", "UCUM", "no units")
QUALITATIVE_EVALUATION = CodedConcept("C0034375", "UMLS", "Qualitative Evaluations")
SOURCE = CodedConcept("260753009", "SCT", "Source")
SOURCE_FOR_PROCESSING = CodedConcept("121322", "DCM", "Source image for image processing operation")
DIAGNOSTIC_IMAGING_REPORT = CodedConcept("18748-4", "LN", "Diagnostic Imaging Report")
FINDINGS = CodedConcept("59776-5", "LN", "Findings")
IMPRESSIONS = CodedConcept("19005-8", "LN", "Impressions")
FINDING = CodedConcept("121071", "DCM", "Finding")
IMPRESSION = CodedConcept("121073", "DCM", "Impression")
COMMENT = CodedConcept("121106", "DCM", "Comment")

# The scope outcome of a result has no standard code: Pneumo's own scheme, declared in each object.
LOCAL_SCHEME = "99PNEUMO"
SCOPE_OUTCOME = CodedConcept("SCOPE", LOCAL_SCHEME, "AI scope outcome")
SCOPE_CODES = {
    IN_DOMAIN: CodedConcept("IN_DOMAIN", LOCAL_SCHEME, "In domain"),
    OUTSIDE_DOMAIN: CodedConcept("OUTSIDE_DOMAIN", LOCAL_SCHEME, "Outside domain"),
    NOT_CHEST_XRAY: CodedConcept("NOT_CHEST_XRAY", LOCAL_SCHEME, "Not a chest X-ray"),
    None: CodedConcept("NOT_CHECKED", LOCAL_SCHEME, "Scope not checked"),
}
FINDING_CODES = {"pneumonia": PRESENT, "no_pneumonia": ABSENT, "indeterminate": INDETERMINATE}
FINDING_LABELS = {"pneumonia": "Pneumonia", "no_pneumonia": "No pneumonia", "indeterminate": "Indeterminate"}

# Type 2 attributes highdicom reads from the source, which real CR/DX headers often leave out.
TYPE2_HEADER = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)


@dataclass(frozen=True)
class AiResult:
    """One image's AI result as the objects state it (``inference.display`` decided ``muted``)."""

    probability: float | None
    threshold: float
    label: str  # an AiLabel value: "pneumonia" or "normal"; "" without a probability
    domain: str | None  # an AiDomain value, None for a result made before the scope check
    domain_reason: str
    model_name: str
    model_sha256: str
    heatmap: list[list[float]] | None
    muted: bool
    muted_reason: str = ""
    no_result_reason: str = ""  # why there is no probability (no chest X-ray, or withheld at the site)

    @property
    def has_result(self) -> bool:
        return self.domain != NOT_CHEST_XRAY and self.probability is not None and not self.no_result_reason


@dataclass(frozen=True)
class SignedReport:
    """A signed reading; ``amends`` is the report SR of the version it replaces."""

    finding: str  # a Finding value
    report_text: str
    radiologist_name: str
    signed_at: datetime
    organization: str  # the site: DICOM requires a verifying organisation
    version: int = 1
    amendment_reason: str = ""
    amends: Dataset | None = None
    model_name: str = ""  # the AI's model version at signing, if there was one
    model_sha256: str = ""


# --- Adapters from the models ------------------------------------------------------------------


def ai_result_from_prediction(prediction: Prediction, *, site: Site | None = None) -> AiResult:
    """The dataclass of a succeeded prediction, as ``inference.display`` shows it at ``site``.

    ``site`` defaults to the image's: a site that runs no AI outside validated use
    gets its muted results as no result here too (no probability, no capture).
    Reads the prediction's attributes, its model version and that site only.
    """
    version = prediction.model_version
    if site is None and prediction.image_id is not None:
        site = prediction.image.site
    shown = display.prediction_shown(prediction, site=site) if site is not None else None
    withheld = shown is not None and shown.kind == display.WITHHELD
    no_result = display.prediction_has_no_result(prediction) or withheld
    muted = display.prediction_is_muted(prediction) and not withheld
    return AiResult(
        probability=None if no_result else prediction.probability,
        threshold=prediction.threshold if prediction.threshold is not None else version.threshold,
        label="" if no_result else prediction.label,
        domain=prediction.domain,
        domain_reason=prediction.domain_reason,
        model_name=version.name,
        model_sha256=version.sha256,
        heatmap=None if no_result else prediction.heatmap or None,
        muted=muted,
        muted_reason=display.prediction_muted_reason(prediction) if muted else "",
        no_result_reason=(display.NO_RESULT_OUTSIDE_USE if withheld else display.NO_RESULT_NOT_CHEST)
        if no_result
        else "",
    )


def _no_result_reason(*, no_result: bool, withheld: bool) -> str:
    if not no_result:
        return ""
    return display.NO_RESULT_OUTSIDE_USE if withheld else display.NO_RESULT_NOT_CHEST


def signed_report_from_review(review: Review, *, amends: Dataset | None = None) -> SignedReport:
    """The dataclass of a signed review (reads its radiologist, site and model version; no queries of its own).

    A reading made in shadow mode was made without the AI: its report names no model.
    """
    version = review.model_version if review.ai_mode != AiMode.SHADOW else None
    return SignedReport(
        finding=review.finding,
        report_text=review.report_text,
        radiologist_name=review.radiologist.signature_name,
        signed_at=review.signed_at,
        organization=review.study.site.name,
        version=review.version,
        amendment_reason=review.amendment_reason,
        amends=amends,
        model_name=version.name if version else "",
        model_sha256=version.sha256 if version else "",
    )


# --- The AI result SR --------------------------------------------------------------------------


def ai_result_sr(
    source: Dataset, result: AiResult, *, pneumo_version: str, sop_instance_uid: str | None = None
) -> Dataset:
    """A TID 1500 measurement report of one image's AI result, unverified."""
    header = evidence_header(source)
    group = hd.sr.MeasurementsAndQualitativeEvaluations(
        tracking_identifier=hd.sr.TrackingIdentifier(
            uid=_derived_uid(source.SOPInstanceUID, "tracking", result.model_sha256), identifier=AI_RESULT_SERIES
        ),
        finding_type=PNEUMONIA if result.has_result else None,
        algorithm_id=hd.sr.AlgorithmIdentification(
            name=result.model_name, version=result.model_sha256, manufacturer=MANUFACTURER
        ),
        measurements=_ai_measurements(result),
        qualitative_evaluations=_ai_evaluations(result),
        source_images=[hd.sr.SourceImageForMeasurementGroup.from_source_image(header)],
    )
    _ai_notes(group, result)
    report = hd.sr.MeasurementReport(
        observation_context=_device_context(result),
        procedure_reported=CHEST_XRAY,
        imaging_measurements=[group],
        referenced_images=[header] if _library_describable(header) else None,
    )
    uid = sop_instance_uid or _derived_uid(
        source.SOPInstanceUID, AI_RESULT_SERIES, result.model_sha256, result.probability, result.domain, result.muted
    )
    with _quiet():
        sr = hd.sr.Comprehensive3DSR(
            evidence=[header],
            content=report[0],
            is_complete=True,
            coding_schemes=[CodingSchemeIdentificationItem(LOCAL_SCHEME, name="Pneumo local codes")],
            **_series(header, AI_RESULT_SERIES, uid),
            **_identification(result.model_name, result.model_sha256, pneumo_version),
        )
    return sr


def _ai_measurements(result: AiResult) -> list[hd.sr.Measurement]:
    threshold = hd.sr.Measurement(name=THRESHOLD, value=result.threshold, unit=NO_UNITS)
    if not result.has_result:
        return [threshold]
    return [hd.sr.Measurement(name=PROBABILITY, value=result.probability, unit=NO_UNITS), threshold]


def _ai_evaluations(result: AiResult) -> list[hd.sr.QualitativeEvaluation]:
    scope = hd.sr.QualitativeEvaluation(name=SCOPE_OUTCOME, value=SCOPE_CODES[_scope_key(result.domain)])
    # A muted result is stored and shown greyed, never as a finding (inference.display): nor here.
    if not result.has_result or result.muted:
        return [scope]
    present = result.label == "pneumonia" if result.label else result.probability >= result.threshold
    return [hd.sr.QualitativeEvaluation(name=PNEUMONIA, value=PRESENT if present else ABSENT), scope]


def _ai_notes(group: hd.sr.MeasurementsAndQualitativeEvaluations, result: AiResult) -> None:
    """Free-text qualitative evaluations (TID 1501 allows TEXT ones): why a result is muted, or absent."""
    notes = [NOT_CONFIRMED_TEXT]
    if not result.has_result:
        notes.append(result.no_result_reason or display.NO_RESULT_NOT_CHEST)
    elif result.muted:
        notes.append(result.muted_reason or "AI not validated for this image")
    if result.domain_reason:
        notes.append(result.domain_reason)
    for note in notes:
        group[0].ContentSequence.append(
            hd.sr.TextContentItem(
                name=QUALITATIVE_EVALUATION, value=note, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS
            )
        )


def _scope_key(domain: str | None) -> str | None:
    return domain if domain in SCOPE_CODES else None


def _device_context(result: AiResult) -> hd.sr.ObservationContext:
    device = hd.sr.DeviceObserverIdentifyingAttributes(
        uid=_derived_uid("device", result.model_sha256),
        name=MANUFACTURER,
        manufacturer_name=MANUFACTURER,
        model_name=result.model_name,
    )
    return hd.sr.ObservationContext(
        observer_device_context=hd.sr.ObserverContext(
            observer_type=codes.DCM.Device, observer_identifying_attributes=device
        )
    )


def _library_describable(header: Dataset) -> bool:
    """highdicom's image library reads a projection image's orientation and spacing: only when both are there."""
    if header.get("Modality") not in ("CR", "DX", "IO", "MG", "PX", "RF", "RG", "XA"):
        return False
    return len(header.get("PatientOrientation") or []) == 2 and len(header.get("ImagerPixelSpacing") or []) == 2


# --- The heatmap secondary capture ---------------------------------------------------------------


def heatmap_secondary_capture(
    source: Dataset, result: AiResult, *, pneumo_version: str, sop_instance_uid: str | None = None
) -> Dataset | None:
    """The image with the heatmap and the unconfirmed notice burned in, for viewers that show no SR."""
    if not result.has_result:
        return None
    header = evidence_header(source)
    pixels = _burned_in(_viewer_grey(source), result)
    uid = sop_instance_uid or _derived_uid(
        source.SOPInstanceUID, HEATMAP_SERIES, result.model_sha256, result.probability, result.domain, result.muted
    )
    series = _series(header, HEATMAP_SERIES, uid)
    with _quiet():
        sc = hd.sc.SCImage.from_ref_dataset(
            ref_dataset=header,
            pixel_array=pixels,
            photometric_interpretation="RGB",
            bits_allocated=8,
            coordinate_system="PATIENT",
            # highdicom insists on an orientation here; the source's own (or none) replaces it below.
            patient_orientation=("A", "F"),
            transfer_syntax_uid=ExplicitVRLittleEndian,
            **series,
            **_identification(result.model_name, result.model_sha256, pneumo_version),
        )
        sc.copy_patient_and_study_information(header)
    sc.PatientOrientation = header.get("PatientOrientation", "")
    sc.Laterality = header.get("Laterality", "")  # Type 2C in the General Series: empty unless the source says
    sc.BurnedInAnnotation = "YES"
    sc.ImageComments = heatmap_caption(result)
    sc.DerivationDescription = "Windowed as Pneumo's viewer shows it; AI heatmap and notice burned in"
    sc.SourceImageSequence = [_source_reference(header)]
    return sc


def heatmap_caption(result: AiResult) -> str:
    """ "AI RESULT - NOT CONFIRMED - <model> - p=0.93", or "AI NOT VALIDATED FOR THIS IMAGE - ..." when muted."""
    head = "AI NOT VALIDATED FOR THIS IMAGE" if result.muted else "AI RESULT"
    return f"{head} - NOT CONFIRMED - {result.model_name} - p={result.probability:.2f}"


def _viewer_grey(source: Dataset) -> np.ndarray:
    """The image in 8 bits under its default window, as ``cases.pictures.render_image_png`` draws it."""
    data = _part10_bytes(source)
    rows, columns = int(source.Rows), int(source.Columns)
    # The source was decoded, guarded, when it was stored: its own size and area are its limits.
    decoded = decode(data, filename="source.dcm", max_bytes=len(data), max_pixels=rows * columns)
    if decoded.display_pixels is None:
        raise ValueError("A multi-frame image has no secondary capture.")
    center, width = decoded.default_window or full_range_window(decoded.display_pixels)
    return window_to_uint8(decoded.display_pixels, center, max(width, 1.0))


def _burned_in(grey: np.ndarray, result: AiResult) -> np.ndarray:
    picture = PILImage.fromarray(grey).convert("RGB")
    if max(picture.size) > MAX_OVERLAY_SIZE:
        picture.thumbnail((MAX_OVERLAY_SIZE, MAX_OVERLAY_SIZE), PILImage.Resampling.LANCZOS, reducing_gap=2.0)
    if result.heatmap:
        picture = _with_heatmap(picture, result.heatmap)
    return np.asarray(_with_caption(picture, heatmap_caption(result)))


def _with_heatmap(picture: PILImage.Image, heatmap: list[list[float]]) -> PILImage.Image:
    grid = np.clip(np.nan_to_num(np.asarray(heatmap, dtype=np.float64), nan=0.0), 0.0, 1.0)
    # The grid is a handful of cells upscaled bilinearly: coloured at viewer size and resized, it looks the
    # same as coloured pixel by pixel, at a tenth of the cost on a 2048-pixel capture.
    scale = min(1.0, DEFAULT_OVERLAY_SIZE / max(picture.size))
    height, width = max(round(picture.height * scale), 1), max(round(picture.width * scale), 1)
    overlay = PILImage.fromarray(heatmap_colours(upscale_bilinear(grid, height, width)))
    overlay = overlay.resize(picture.size, PILImage.Resampling.BILINEAR)
    return PILImage.alpha_composite(picture.convert("RGBA"), overlay).convert("RGB")


def _with_caption(picture: PILImage.Image, caption: str) -> PILImage.Image:
    """The caption in a black band above the image, so that it hides no anatomy; wrapped on a narrow image."""
    size = max(10, picture.width // 48)
    font = ImageFont.load_default(size=size)
    lines = _wrapped(caption, font, picture.width - size)
    line_height = round(size * 1.4)
    band = line_height * len(lines) + size // 2
    canvas = PILImage.new("RGB", (picture.width, picture.height + band), (0, 0, 0))
    canvas.paste(picture, (0, band))
    draw = ImageDraw.Draw(canvas)
    for row, line in enumerate(lines):
        draw.text((size // 2, size // 4 + row * line_height), line, fill=(255, 255, 0), font=font)
    return canvas


def _wrapped(caption: str, font: ImageFont.FreeTypeFont, width: float) -> list[str]:
    lines: list[str] = []
    for part in caption.split(" - "):
        joined = f"{lines[-1]} - {part}" if lines else part
        if lines and font.getlength(joined) <= width:
            lines[-1] = joined
        else:
            lines.append(part)
    return lines


def _source_reference(header: Dataset) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = header.SOPClassUID
    item.ReferencedSOPInstanceUID = header.SOPInstanceUID
    item.PurposeOfReferenceCodeSequence = [SOURCE_FOR_PROCESSING]
    return item


# --- The signed report SR ----------------------------------------------------------------------


def report_sr(
    source: Dataset, report: SignedReport, *, pneumo_version: str, sop_instance_uid: str | None = None
) -> Dataset:
    """The signed reading as a basic diagnostic imaging report (TID 2000), verified by the radiologist."""
    header = evidence_header(source)
    name = person_name(report.radiologist_name)
    uid = sop_instance_uid or _derived_uid(
        header.StudyInstanceUID, REPORT_SERIES, report.version, report.signed_at.isoformat()
    )
    with _quiet():
        sr = hd.sr.EnhancedSR(
            evidence=[header],
            content=_report_content(header, report, name),
            is_complete=True,
            is_final=True,
            is_verified=True,
            verifying_observer_name=name,
            verifying_organization=report.organization[:64],
            previous_versions=[report.amends] if report.amends is not None else None,
            **_series(header, REPORT_SERIES, uid, instance_number=report.version),
            **_identification(report.model_name, report.model_sha256, pneumo_version),
            content_date=report.signed_at.date(),
            content_time=report.signed_at.time(),
        )
    sr.VerifyingObserverSequence[0].VerificationDateTime = DT(report.signed_at)
    return sr


def _report_content(header: Dataset, report: SignedReport, name: str) -> Dataset:
    rel = hd.sr.RelationshipTypeValues
    root = hd.sr.ContainerContentItem(name=DIAGNOSTIC_IMAGING_REPORT, template_id="2000")
    person = hd.sr.ObserverContext(
        observer_type=codes.DCM.Person,
        observer_identifying_attributes=hd.sr.PersonObserverIdentifyingAttributes(
            name=name, organization_name=report.organization[:64]
        ),
    )
    root.ContentSequence = hd.sr.ContentSequence(
        [
            *hd.sr.LanguageOfContentItemAndDescendants(DEFAULT_LANGUAGE),
            *hd.sr.ObservationContext(observer_person_context=person),
            hd.sr.CodeContentItem(
                name=codes.DCM.ProcedureReported, value=CHEST_XRAY, relationship_type=rel.HAS_CONCEPT_MOD
            ),
            _section(FINDINGS, _findings(header, report)),
            _section(IMPRESSIONS, _impressions(report)),
        ]
    )
    return root


def _findings(header: Dataset, report: SignedReport) -> list[hd.sr.ContentItem]:
    rel = hd.sr.RelationshipTypeValues.CONTAINS
    items: list[hd.sr.ContentItem] = []
    if report.report_text.strip():
        items.append(hd.sr.TextContentItem(name=FINDING, value=report.report_text, relationship_type=rel))
    items.append(
        hd.sr.ImageContentItem(
            name=SOURCE,
            referenced_sop_class_uid=header.SOPClassUID,
            referenced_sop_instance_uid=header.SOPInstanceUID,
            relationship_type=rel,
        )
    )
    return items


def _impressions(report: SignedReport) -> list[hd.sr.ContentItem]:
    rel = hd.sr.RelationshipTypeValues.CONTAINS
    items: list[hd.sr.ContentItem] = [
        hd.sr.CodeContentItem(name=PNEUMONIA, value=FINDING_CODES[report.finding], relationship_type=rel),
        hd.sr.TextContentItem(name=IMPRESSION, value=FINDING_LABELS[report.finding], relationship_type=rel),
    ]
    if report.amendment_reason.strip():
        text = f"Amended (version {report.version}): {report.amendment_reason}"
        items.append(hd.sr.TextContentItem(name=COMMENT, value=text, relationship_type=rel))
    return items


def _section(name: CodedConcept, items: Sequence[hd.sr.ContentItem]) -> hd.sr.ContainerContentItem:
    section = hd.sr.ContainerContentItem(name=name, relationship_type=hd.sr.RelationshipTypeValues.CONTAINS)
    section.ContentSequence = hd.sr.ContentSequence(list(items))
    return section


def person_name(name: str) -> str:
    """A display name ("Dr A. Smith") as a DICOM person name: the whole of it as the family name component."""
    name = name.strip()[:64]
    return name if "^" in name else f"{name}^"


# --- Shared ------------------------------------------------------------------------------------


def evidence_header(source: Dataset) -> Dataset:
    """A copy of the source's header without its pixels, with the Type 2 attributes highdicom reads present.

    Missing ones are added empty, never invented (PatientOrientation included: it is copied only when there).
    """
    header = deepcopy(Dataset({element.tag: element for element in source if element.tag.group != 0x7FE0}))
    for keyword in TYPE2_HEADER:
        if keyword not in header:
            setattr(header, keyword, "")
    return header


def _series(header: Dataset, kind: str, sop_instance_uid: str, *, instance_number: int = 1) -> dict:
    return {
        "series_instance_uid": _derived_uid(header.StudyInstanceUID, kind),
        "series_number": SERIES_NUMBERS[kind],
        "sop_instance_uid": sop_instance_uid,
        "instance_number": instance_number,
        "series_description": kind,
    }


def _identification(model_name: str, model_sha256: str, pneumo_version: str) -> dict:
    """Manufacturer Pneumo, the model version's name as the model, and every version string that applies."""
    if not model_name:  # a report signed with no AI result: Pneumo alone made it
        return {
            "manufacturer": MANUFACTURER,
            "manufacturer_model_name": MANUFACTURER,
            "software_versions": pneumo_version,
        }
    return {
        "manufacturer": MANUFACTURER,
        "manufacturer_model_name": model_name[:64],
        "software_versions": [pneumo_version, model_name[:64], model_sha256],
    }


def _derived_uid(*parts: object) -> str:
    return generate_uid(entropy_srcs=[str(p) for p in parts])


def _part10_bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    return buffer.getvalue()


class _quiet(warnings.catch_warnings):
    """highdicom warns about single-component person names; DICOM allows them and hospitals send them."""

    def __enter__(self) -> None:
        super().__enter__()
        warnings.filterwarnings("ignore", message=r"The string .* is unlikely to represent", category=UserWarning)
