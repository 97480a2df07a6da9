"""A study as a FHIR R4 Bundle (type ``collection``), for the hospital's EHR and integration engines.

``study_bundle(study=..., images=..., predictions=..., reviews=...)`` reads only
the objects it is given (the view fetches them through the selectors) and
returns plain JSON data:

* **Patient** and **ImagingStudy** (the DICOM UIDs, accession, series and instances);
* a **Device** per model version that made a current prediction (deviceName
  the version's name, version its sha256);
* an **Observation** per image with a finished AI result, referencing its
  Device. Whether it counts comes from ``inference.display``: a result that
  counts carries its probability and a positive or negative interpretation; a
  muted one carries its probability with the interpretation "not validated",
  never a finding; an image that is no chest X-ray (or a result withheld at its
  site) carries no probability, only why;
* a **DiagnosticReport** whose status is ``registered`` while there is neither
  an AI result nor a signature, ``preliminary`` while unconfirmed, ``final``
  once signed and ``amended`` after an amendment.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence

from cases.models import Finding, Image, Review, Study
from inference.display import NONE, RESULT, WITHHELD, AiShown, prediction_shown
from inference.models import AiLabel, ModelVersion, Prediction

UCUM = "http://unitsofmeasure.org"
SNOMED = "http://snomed.info/sct"
LOINC = "http://loinc.org"
DICOM_DCM = "http://dicom.nema.org/resources/ontology/DCM"
INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
DATA_ABSENT = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
DIAGNOSTIC_SERVICE = "http://terminology.hl7.org/CodeSystem/v2-0074"
IDENTIFIER_TYPE = "http://terminology.hl7.org/CodeSystem/v2-0203"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
# Stable fullUrls: the same object is the same urn:uuid in every bundle.
NAMESPACE = uuid.UUID("9b2f6c1e-2f43-4c1d-9a59-6f2d1c0e5a11")

NOT_CONFIRMED_NOTICE = "AI result: decision support only, unconfirmed until a radiologist signs the study"
PNEUMONIA = {"system": SNOMED, "code": "233604007", "display": "Pneumonia"}
GENDERS = {"F": "female", "M": "male", "O": "other"}


def study_bundle(
    *, study: Study, images: Sequence[Image], predictions: dict[int, Prediction], reviews: Sequence[Review]
) -> dict:
    """The Bundle; ``predictions`` is each image's current one by image id, ``reviews`` in version order."""
    shown = {
        image.pk: (predictions[image.pk], prediction_shown(predictions[image.pk], site=study.site))
        for image in images
        if image.pk in predictions
    }
    results = {pk: pair for pk, pair in shown.items() if pair[1].kind != NONE}
    versions = _distinct_versions(prediction for prediction, _ in results.values())
    signed = reviews[-1] if reviews else None
    observations = [_observation(study, p, s, signed) for p, s in results.values()]
    resources = [
        _patient(study),
        _imaging_study(study, images),
        *(_device(version) for version in versions),
        *observations,
        _diagnostic_report(study, observations, signed, has_ai_result=bool(results)),
    ]
    return {
        "resourceType": "Bundle",
        "type": "collection",
        "entry": [{"fullUrl": _full_url(r["resourceType"], r["id"]), "resource": r} for r in resources],
    }


def report_status(*, has_ai_result: bool, signed: Review | None) -> str:
    if signed is not None:
        return "amended" if signed.version > 1 else "final"
    return "preliminary" if has_ai_result else "registered"


# --- Resources ---------------------------------------------------------------------------------


def _patient(study: Study) -> dict:
    patient = study.patient
    resource = {
        "resourceType": "Patient",
        "id": f"patient-{patient.pk}",
        "identifier": [{"system": _site_system(study, "patient-id"), "value": patient.patient_id}],
        "gender": GENDERS.get(patient.sex, "unknown"),
    }
    if patient.name:
        resource["name"] = [_human_name(patient.name)]
    if patient.birth_date:
        resource["birthDate"] = patient.birth_date.isoformat()
    return resource


def _human_name(name: str) -> dict:
    """Ingest keeps DICOM names readable ("Family, Given"); older rows and tests hold "Family^Given"."""
    if "^" in name:
        family, _, rest = name.partition("^")
        given = rest.split("^")[0]
    elif name.count(",") == 1 and " = " not in name:  # one alphabetic group: the comma is readable_person_name's
        family, _, given = name.partition(",")
    else:  # free text from the upload form, or ideographic groups: shown as written
        return {"text": name}
    family, given = family.strip(), given.strip()
    parts = {"family": family} if family else {}
    if given:
        parts["given"] = given.split()
    return {"text": " ".join(p for p in (given, family) if p), **parts}


def _imaging_study(study: Study, images: Sequence[Image]) -> dict:
    resource = {
        "resourceType": "ImagingStudy",
        "id": f"study-{study.pk}",
        "status": "available",
        "subject": _ref("Patient", f"patient-{study.patient_id}"),
        "identifier": [{"system": "urn:dicom:uid", "value": f"urn:oid:{study.study_instance_uid}"}],
        "numberOfInstances": len(images),
    }
    if study.accession_number:
        resource["identifier"].append(_accession(study))
    if study.study_date:
        resource["started"] = study.study_date.isoformat()
    if study.description:
        resource["description"] = study.description
    series = _series(images)
    if series:
        resource["series"] = series
        resource["numberOfSeries"] = len(series)
    return resource


def _accession(study: Study) -> dict:
    return {
        "type": {"coding": [{"system": IDENTIFIER_TYPE, "code": "ACSN"}]},
        "system": _site_system(study, "accession"),
        "value": study.accession_number,
    }


def _series(images: Iterable[Image]) -> list[dict]:
    """DICOM images by series; PNG and JPEG uploads have no DICOM series to name."""
    series: dict[str, dict] = {}
    for image in images:
        if image.kind != "dicom" or not image.series_instance_uid or not image.sop_class_uid:
            continue
        entry = series.setdefault(
            image.series_instance_uid,
            {
                "uid": image.series_instance_uid,
                "modality": {"system": DICOM_DCM, "code": image.modality or "OT"},
                "instance": [],
            },
        )
        entry["instance"].append(
            {"uid": image.sop_instance_uid, "sopClass": {"system": "urn:ietf:rfc:3986", "code": _oid(image)}}
        )
    for entry in series.values():
        entry["numberOfInstances"] = len(entry["instance"])
    return list(series.values())


def _oid(image: Image) -> str:
    return f"urn:oid:{image.sop_class_uid}"


def _device(version: ModelVersion) -> dict:
    return {
        "resourceType": "Device",
        "id": f"device-{version.pk}",
        "manufacturer": "Pneumo",
        "deviceName": [{"name": version.name, "type": "model-name"}],
        "version": [{"value": version.sha256}],
        "type": {"text": "AI pneumonia classifier for chest X-rays"},
    }


def _observation(study: Study, prediction: Prediction, shown: AiShown, signed: Review | None) -> dict:
    resource = {
        "resourceType": "Observation",
        "id": f"observation-{prediction.pk}",
        # The AI's number does not change when a radiologist signs; only then is it read and closed.
        "status": "final" if signed is not None else "preliminary",
        "category": [{"coding": [{"system": OBSERVATION_CATEGORY, "code": "imaging"}]}],
        "code": {"coding": [PNEUMONIA], "text": "AI probability of pneumonia"},
        "subject": _ref("Patient", f"patient-{study.patient_id}"),
        "derivedFrom": [_ref("ImagingStudy", f"study-{study.pk}")],
        "device": _ref("Device", f"device-{prediction.model_version_id}"),
        "note": _notes(shown, signed),
    }
    if prediction.finished_at:
        resource["issued"] = prediction.finished_at.isoformat()
    if shown.shows_probability:
        resource["valueQuantity"] = _unitless(prediction.probability)
        resource["interpretation"] = [_interpretation(prediction, shown)]
        if prediction.threshold is not None:
            resource["referenceRange"] = [{"high": _unitless(prediction.threshold), "text": "AI threshold"}]
    else:
        reason = "not-permitted" if shown.kind == WITHHELD else "not-applicable"
        resource["dataAbsentReason"] = {"coding": [{"system": DATA_ABSENT, "code": reason}], "text": shown.message}
    if prediction.domain:
        resource["method"] = {"text": f"Scope check: {prediction.get_domain_display()}"}
    return resource


def _interpretation(prediction: Prediction, shown: AiShown) -> dict:
    if shown.kind != RESULT:  # muted: stored and shown, never a finding
        return {"text": shown.message or "AI not validated for this image"}
    positive = prediction.label == AiLabel.PNEUMONIA
    code, display = ("POS", "Positive") if positive else ("NEG", "Negative")
    return {"coding": [{"system": INTERPRETATION, "code": code, "display": display}]}


def _notes(shown: AiShown, signed: Review | None) -> list[dict]:
    notes = [] if signed is not None else [{"text": NOT_CONFIRMED_NOTICE}]
    if shown.message:
        notes.append({"text": shown.message})
    return notes or [{"text": "AI result; the study has been read and signed by a radiologist"}]


def _diagnostic_report(study: Study, observations: list[dict], signed: Review | None, *, has_ai_result: bool) -> dict:
    resource = {
        "resourceType": "DiagnosticReport",
        "id": f"report-{study.pk}",
        "status": report_status(has_ai_result=has_ai_result, signed=signed),
        "category": [{"coding": [{"system": DIAGNOSTIC_SERVICE, "code": "RAD", "display": "Radiology"}]}],
        "code": {"coding": [{"system": LOINC, "code": "18748-4", "display": "Diagnostic imaging study"}]},
        "subject": _ref("Patient", f"patient-{study.patient_id}"),
        "imagingStudy": [_ref("ImagingStudy", f"study-{study.pk}")],
        "performer": [{"display": study.site.name}],
    }
    if observations:
        resource["result"] = [_ref("Observation", o["id"]) for o in observations]
    if signed is None:
        if has_ai_result:
            resource["conclusion"] = NOT_CONFIRMED_NOTICE
        return resource
    resource["issued"] = signed.signed_at.isoformat()
    resource["resultsInterpreter"] = [{"display": signed.radiologist.signature_name}]
    resource["conclusion"] = _conclusion(signed)
    if signed.finding == Finding.PNEUMONIA:
        resource["conclusionCode"] = [{"coding": [PNEUMONIA]}]
    return resource


def _conclusion(review: Review) -> str:
    parts = [Finding(review.finding).label]
    if review.report_text.strip():
        parts.append(review.report_text.strip())
    if review.version > 1 and review.amendment_reason.strip():
        parts.append(f"Amended (version {review.version}): {review.amendment_reason.strip()}")
    return "\n\n".join(parts)


# --- Shared ------------------------------------------------------------------------------------


def _distinct_versions(predictions: Iterable[Prediction]) -> list[ModelVersion]:
    versions: dict[int, ModelVersion] = {}
    for prediction in predictions:
        versions.setdefault(prediction.model_version_id, prediction.model_version)
    return list(versions.values())


def _unitless(value: float) -> dict:
    return {"value": round(float(value), 4), "unit": "1", "system": UCUM, "code": "1"}


def _site_system(study: Study, what: str) -> str:
    return f"urn:pneumo:site:{study.site.code}:{what}"


def _full_url(resource_type: str, resource_id: str) -> str:
    return f"urn:uuid:{uuid.uuid5(NAMESPACE, f'{resource_type}/{resource_id}')}"


def _ref(resource_type: str, resource_id: str) -> dict:
    return {"reference": _full_url(resource_type, resource_id)}
