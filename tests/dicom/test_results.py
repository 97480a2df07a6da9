"""The DICOM objects Pneumo writes back (AI result SR, heatmap secondary capture, report SR), checked by dciodvfy.

Every object is built from a DICOM made of a packaged sample image, written as
a Part 10 file, read back with pydicom and validated by dicom3tools'
``dciodvfy``, which must print no line beginning with ``Error``.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset
from pydicom.uid import JPEG2000Lossless

from cases.dicom.results import (
    AI_RESULT_SERIES,
    HEATMAP_SERIES,
    REPORT_SERIES,
    AiResult,
    SignedReport,
    ai_result_from_prediction,
    ai_result_sr,
    heatmap_caption,
    heatmap_secondary_capture,
    report_sr,
)
from inference.models import ModelVersion, Prediction
from tests.dicom_factory import make_dicom, rewrite_dicom

DCIODVFY = "/usr/bin/dciodvfy"
VERSION = "0.1.0"
MODEL = "pneumonia-xception-pkg-0.3.0"
SHA = "ab" * 32
HEATMAP = [[0.0, 0.4, 0.2], [0.3, 1.0, 0.8]]


def _result(**fields) -> AiResult:
    values = {
        "probability": 0.93,
        "threshold": 0.5,
        "label": "pneumonia",
        "domain": "in_domain",
        "domain_reason": "",
        "model_name": MODEL,
        "model_sha256": SHA,
        "heatmap": HEATMAP,
        "muted": False,
    } | fields
    return AiResult(**values)


RESULTS = {
    "positive": _result(),
    "negative": _result(probability=0.12, label="normal"),
    "outside_domain": _result(
        domain="outside_domain",
        domain_reason="feature distance 3.10 above the limit 2.00",
        muted=True,
        muted_reason="AI not validated for this image: it is unlike the images this model was validated on",
    ),
    "not_chest_xray": _result(probability=None, label="", domain="not_chest_xray", heatmap=None),
}


def _report(**fields) -> SignedReport:
    values = {
        "finding": "pneumonia",
        "report_text": "Consolidation in the right lower lobe.",
        "radiologist_name": "Dr A. Smith",
        "signed_at": datetime(2026, 12, 1, 10, 30, tzinfo=UTC),
        "organization": "Demo General",
        "model_name": MODEL,
        "model_sha256": SHA,
    } | fields
    return SignedReport(**values)


# Sources: a full CR header; a CR header without StudyID, AccessionNumber, PatientBirthDate, PatientSex and
# StudyTime (as real ones come); a DX with an orientation, 12 bits, MONOCHROME1 and a window of its own;
# a CR in JPEG 2000, as many PACS store them.
SOURCES = {
    "cr-j2k": {"source": 10, "transfer_syntax": JPEG2000Lossless, "bits": 12},
    "cr": {"source": 9},
    "cr-bare": {"source": 3, "accession_number": None, "sex": None, "remove": ("StudyTime",)},
    "dx-mono1": {
        "source": 12,
        "modality": "DX",
        "bits": 12,
        "photometric": "MONOCHROME1",
        "window": (2048.0, 4096.0),
        "birth_date": "20210101",
        "extra": {"PatientOrientation": ["L", "F"], "StudyID": "S1"},
    },
}


def _source(name: str) -> Dataset:
    options = dict(SOURCES[name])
    remove = options.pop("remove", ())
    data = make_dicom(options.pop("source"), **options)
    return dcmread(io.BytesIO(rewrite_dicom(data, remove=remove)))


def _needs_dciodvfy() -> None:
    if shutil.which(DCIODVFY) is None:
        if os.environ.get("CI") == "true":
            pytest.fail("dciodvfy is missing under CI: scripts/ensure_test_tools.sh should have installed it")
        pytest.skip("dciodvfy (dicom3tools) is not installed")


def _written(ds: Dataset, tmp_path: Path, name: str) -> Path:
    path = tmp_path / f"{name}.dcm"
    ds.save_as(path, enforce_file_format=True)
    return path


def _dciodvfy_errors(path: Path) -> tuple[list[str], list[str]]:
    run = subprocess.run([DCIODVFY, str(path)], capture_output=True, text=True, timeout=60)
    lines = (run.stdout + run.stderr).splitlines()
    return [line for line in lines if line.startswith("Error")], [line for line in lines if line.startswith("Warn")]


def _items(ds: Dataset) -> Iterator[Dataset]:
    for item in ds.get("ContentSequence", []):
        yield item
        yield from _items(item)


def _coded(ds: Dataset) -> dict[str, str]:
    """Concept name code -> code value of every CODE item in the tree."""
    return {
        i.ConceptNameCodeSequence[0].CodeValue: i.ConceptCodeSequence[0].CodeValue
        for i in _items(ds)
        if i.ValueType == "CODE"
    }


def _numbers(ds: Dataset) -> dict[str, tuple[float, str]]:
    return {
        i.ConceptNameCodeSequence[0].CodeValue: (
            float(i.MeasuredValueSequence[0].NumericValue),
            i.MeasuredValueSequence[0].MeasurementUnitsCodeSequence[0].CodeValue,
        )
        for i in _items(ds)
        if i.ValueType == "NUM"
    }


def _concepts(ds: Dataset) -> set[str]:
    return {i.ConceptNameCodeSequence[0].CodeValue for i in _items(ds)}


def _texts(ds: Dataset) -> list[str]:
    return [i.TextValue for i in _items(ds) if i.ValueType == "TEXT"]


def _assert_joins_source(written: Dataset, source: Dataset, *, modality: str, series: str) -> None:
    assert written.StudyInstanceUID == source.StudyInstanceUID
    assert written.PatientID == source.PatientID
    assert written.PatientName == source.PatientName
    assert written.get("AccessionNumber", "") == source.get("AccessionNumber", "")
    assert written.SeriesInstanceUID != source.SeriesInstanceUID
    assert written.SOPInstanceUID != source.SOPInstanceUID
    assert (written.Modality, written.SeriesDescription, written.Manufacturer) == (modality, series, "Pneumo")


def _evidence_uids(sr: Dataset) -> set[str]:
    return {
        ref.ReferencedSOPInstanceUID
        for study in sr.CurrentRequestedProcedureEvidenceSequence
        for series in study.ReferencedSeriesSequence
        for ref in series.ReferencedSOPSequence
    }


# --- dciodvfy, every variant -------------------------------------------------------------------


def _every_object() -> list[tuple[str, str, str]]:
    cases = [(s, "sr", r) for s in SOURCES for r in RESULTS]
    cases += [(s, "sc", r) for s in SOURCES for r in RESULTS if r != "not_chest_xray"]
    cases += [(s, kind, "") for s in SOURCES for kind in ("report", "amendment")]
    return cases


def _build(source: Dataset, kind: str, result: str) -> Dataset:
    if kind == "sr":
        return ai_result_sr(source, RESULTS[result], pneumo_version=VERSION)
    if kind == "sc":
        return heatmap_secondary_capture(source, RESULTS[result], pneumo_version=VERSION)
    first = report_sr(source, _report(), pneumo_version=VERSION)
    if kind == "report":
        return first
    amendment = _report(finding="no_pneumonia", version=2, amendment_reason="Second look", amends=first)
    return report_sr(source, amendment, pneumo_version=VERSION)


@pytest.mark.parametrize(("source_name", "kind", "result"), _every_object(), ids=lambda v: v or "-")
def test_it_writes_objects_that_dciodvfy_accepts(source_name: str, kind: str, result: str, tmp_path: Path) -> None:
    _needs_dciodvfy()
    # Given an object built from a sample DICOM
    source = _source(source_name)
    path = _written(_build(source, kind, result), tmp_path, f"{source_name}-{kind}-{result}")

    # When dciodvfy checks it, and pydicom reads it back
    errors, warnings = _dciodvfy_errors(path)
    written = dcmread(path)

    # Then no line is an error, and it joins the source's study
    assert not errors, "\n".join(errors + warnings)
    series = {"sr": AI_RESULT_SERIES, "sc": HEATMAP_SERIES}.get(kind, REPORT_SERIES)
    _assert_joins_source(written, source, modality="OT" if kind == "sc" else "SR", series=series)


# --- The AI result SR ---------------------------------------------------------------------------


def test_it_states_a_positive_result_as_pneumonia_present_with_its_probability() -> None:
    source = _source("cr")
    sr = dcmread(io.BytesIO(_bytes(ai_result_sr(source, RESULTS["positive"], pneumo_version=VERSION))))

    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.34"  # Comprehensive 3D SR
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "1500"
    assert sr.VerificationFlag == "UNVERIFIED"
    assert (sr.ManufacturerModelName, list(sr.SoftwareVersions)) == (MODEL, [VERSION, MODEL, SHA])
    assert _coded(sr)["233604007"] == "52101004"  # pneumonia: present
    assert _coded(sr)["SCOPE"] == "IN_DOMAIN"
    assert _numbers(sr) == {"122157": (0.93, "1"), "122411": (0.5, "1")}  # probability and threshold, UCUM 1
    assert MODEL in _texts(sr) and SHA in _texts(sr)  # the algorithm's name and version
    assert source.SOPInstanceUID in _evidence_uids(sr)
    image_refs = [i.ReferencedSOPSequence[0].ReferencedSOPInstanceUID for i in _items(sr) if i.ValueType == "IMAGE"]
    assert source.SOPInstanceUID in image_refs
    assert not [i for i in _items(sr) if i.ValueType in ("SCOORD3D", "SCOORD")]  # a CR has no frame of reference


def test_it_states_a_negative_result_as_pneumonia_absent() -> None:
    sr = ai_result_sr(_source("cr"), RESULTS["negative"], pneumo_version=VERSION)

    assert _coded(sr)["233604007"] == "2667000"
    assert _numbers(sr)["122157"] == (0.12, "1")


def test_it_states_an_outside_domain_result_without_a_finding() -> None:
    sr = ai_result_sr(_source("cr"), RESULTS["outside_domain"], pneumo_version=VERSION)

    assert _coded(sr)["SCOPE"] == "OUTSIDE_DOMAIN"
    assert "233604007" not in _coded(sr)  # muted: never a finding
    assert _numbers(sr)["122157"] == (0.93, "1")
    assert RESULTS["outside_domain"].muted_reason in _texts(sr)


def test_it_states_no_result_for_an_image_that_is_no_chest_xray() -> None:
    sr = ai_result_sr(_source("cr"), RESULTS["not_chest_xray"], pneumo_version=VERSION)

    assert _coded(sr)["SCOPE"] == "NOT_CHEST_XRAY"
    assert "122157" not in _numbers(sr)  # no probability
    assert "233604007" not in _coded(sr)
    assert any(text.startswith("No AI result") for text in _texts(sr))


def test_it_adds_missing_type_2_attributes_empty_and_invents_no_orientation() -> None:
    source = _source("cr-bare")
    assert "StudyTime" not in source and "AccessionNumber" not in source and "PatientOrientation" not in source

    sr = ai_result_sr(source, RESULTS["positive"], pneumo_version=VERSION)
    sc = heatmap_secondary_capture(source, RESULTS["positive"], pneumo_version=VERSION)

    assert (sr.StudyTime, sr.AccessionNumber, sr.StudyID, sr.PatientSex) == ("", "", "", "")
    assert sc.AccessionNumber == "" and sc.PatientOrientation == ""


def test_it_copies_the_sources_orientation_and_describes_it_in_an_image_library() -> None:
    source = _source("dx-mono1")
    sc = heatmap_secondary_capture(source, RESULTS["positive"], pneumo_version=VERSION)
    sr = ai_result_sr(source, RESULTS["positive"], pneumo_version=VERSION)
    bare = ai_result_sr(_source("cr"), RESULTS["positive"], pneumo_version=VERSION)

    assert list(sc.PatientOrientation) == ["L", "F"]
    library = "111028"  # DCM Image Library: highdicom's needs the orientation, so only when the source has one
    assert library in _concepts(sr) and library not in _concepts(bare)


def test_it_gives_the_same_result_the_same_instance_and_a_changed_one_a_new_one() -> None:
    source = _source("cr")
    first = ai_result_sr(source, RESULTS["positive"], pneumo_version=VERSION)
    again = ai_result_sr(source, RESULTS["positive"], pneumo_version=VERSION)
    changed = ai_result_sr(source, _result(probability=0.94), pneumo_version=VERSION)

    assert first.SOPInstanceUID == again.SOPInstanceUID != changed.SOPInstanceUID
    assert first.SeriesInstanceUID == changed.SeriesInstanceUID  # one series per kind in the study


# --- The secondary capture ---------------------------------------------------------------------


def test_it_burns_the_heatmap_and_the_unconfirmed_notice_into_an_rgb_capture() -> None:
    source = _source("cr")
    sc = dcmread(io.BytesIO(_bytes(heatmap_secondary_capture(source, RESULTS["positive"], pneumo_version=VERSION))))

    assert (sc.Modality, sc.BurnedInAnnotation, sc.PhotometricInterpretation) == ("OT", "YES", "RGB")
    assert sc.ImageComments == f"AI RESULT - NOT CONFIRMED - {MODEL} - p=0.93"
    assert sc.SourceImageSequence[0].ReferencedSOPInstanceUID == source.SOPInstanceUID
    pixels = sc.pixel_array.astype(int)
    band = sc.Rows - source.Rows
    assert band > 0 and sc.Columns == source.Columns  # the notice sits in a band above the image
    assert (pixels[:band, :, 0] > 200).any()  # yellow text
    image = pixels[band:]
    assert (np.abs(image[..., 0] - image[..., 2]) > 40).any()  # coloured: the heatmap is there


def test_it_says_not_validated_on_the_capture_of_a_muted_result() -> None:
    sc = heatmap_secondary_capture(_source("cr"), RESULTS["outside_domain"], pneumo_version=VERSION)

    assert sc.ImageComments == f"AI NOT VALIDATED FOR THIS IMAGE - NOT CONFIRMED - {MODEL} - p=0.93"
    assert heatmap_caption(RESULTS["outside_domain"]) == sc.ImageComments


def test_it_makes_no_capture_for_an_image_that_is_no_chest_xray() -> None:
    assert heatmap_secondary_capture(_source("cr"), RESULTS["not_chest_xray"], pneumo_version=VERSION) is None


def test_it_windows_the_capture_as_the_viewer_does() -> None:
    # A MONOCHROME1 source shows air dark once decoded: the capture must too (not inverted, not raw).
    source = _source("dx-mono1")
    plain = _result(heatmap=None)
    sc = heatmap_secondary_capture(source, plain, pneumo_version=VERSION)
    grey = sc.pixel_array[sc.Rows - source.Rows :, :, 0].astype(int)
    reference = make_dicom(12, bits=8)  # the same picture, 8-bit MONOCHROME2 as it looks
    expected = dcmread(io.BytesIO(reference)).pixel_array.astype(int)

    assert np.abs(grey - expected).mean() < 3


# --- The report SR -----------------------------------------------------------------------------


def test_it_writes_the_signed_reading_verified_by_the_radiologist() -> None:
    source = _source("cr")
    sr = dcmread(io.BytesIO(_bytes(report_sr(source, _report(), pneumo_version=VERSION))))

    assert sr.SOPClassUID == "1.2.840.10008.5.1.4.1.1.88.22"  # Enhanced SR
    assert sr.ConceptNameCodeSequence[0].CodeValue == "18748-4"
    assert sr.ContentTemplateSequence[0].TemplateIdentifier == "2000"
    assert (sr.VerificationFlag, sr.CompletionFlag, sr.PreliminaryFlag) == ("VERIFIED", "COMPLETE", "FINAL")
    assert str(sr.VerifyingObserverSequence[0].VerifyingObserverName) == "Dr A. Smith^"
    assert sr.VerifyingObserverSequence[0].VerificationDateTime.startswith("20261201103000")
    assert _coded(sr)["233604007"] == "52101004"
    assert "Consolidation in the right lower lobe." in _texts(sr) and "Pneumonia" in _texts(sr)
    assert source.SOPInstanceUID in _evidence_uids(sr)
    assert "PredecessorDocumentsSequence" not in sr


def test_it_writes_an_amendment_as_a_new_sr_naming_the_one_it_replaces() -> None:
    source = _source("cr")
    first = report_sr(source, _report(), pneumo_version=VERSION)
    amended = report_sr(
        source,
        _report(finding="no_pneumonia", version=2, amendment_reason="Second look", amends=first),
        pneumo_version=VERSION,
    )

    assert amended.SOPInstanceUID != first.SOPInstanceUID
    assert amended.SeriesInstanceUID == first.SeriesInstanceUID
    predecessor = amended.PredecessorDocumentsSequence[0].ReferencedSeriesSequence[0].ReferencedSOPSequence[0]
    assert predecessor.ReferencedSOPInstanceUID == first.SOPInstanceUID
    assert _coded(amended)["233604007"] == "2667000"
    assert any("Second look" in text for text in _texts(amended))


def test_it_identifies_pneumo_alone_on_a_report_signed_without_ai() -> None:
    sr = report_sr(_source("cr"), _report(model_name="", model_sha256=""), pneumo_version=VERSION)

    assert (sr.Manufacturer, sr.ManufacturerModelName, sr.SoftwareVersions) == ("Pneumo", "Pneumo", VERSION)


# --- From the models ---------------------------------------------------------------------------


def _prediction(**fields) -> Prediction:
    version = ModelVersion(name=MODEL, sha256=SHA, threshold=0.5)
    values = {"status": "succeeded", "probability": 0.93, "label": "pneumonia", "threshold": 0.5} | fields
    return Prediction(model_version=version, heatmap=HEATMAP, **values)


def test_it_reads_a_prediction_with_the_display_rule() -> None:
    counted = ai_result_from_prediction(_prediction(domain="in_domain"))
    muted = ai_result_from_prediction(_prediction(domain="outside_domain"))
    nothing = ai_result_from_prediction(_prediction(domain="not_chest_xray"))

    assert (counted.muted, counted.probability, counted.model_sha256) == (False, 0.93, SHA)
    assert muted.muted and muted.muted_reason.startswith("AI not validated for this image")
    assert nothing.probability is None and not nothing.has_result


def _bytes(ds: Dataset) -> bytes:
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def test_it_gives_no_result_where_the_site_withholds_muted_results(tmp_path: Path) -> None:
    # A site that runs no AI outside validated use sees a muted result as no result: so does its PACS.
    from cases.models import Site

    site = Site(code="X", name="X", ai_outside_validated_use=False)
    result = ai_result_from_prediction(_prediction(domain="outside_domain"), site=site)
    source = _source("cr")

    sr = ai_result_sr(source, result, pneumo_version=VERSION)

    assert result.probability is None and not result.has_result and not result.muted
    assert heatmap_secondary_capture(source, result, pneumo_version=VERSION) is None
    assert "122157" not in _numbers(sr) and "233604007" not in _coded(sr)
    assert any(text.startswith("No AI result: this image is outside") for text in _texts(sr))
    if shutil.which(DCIODVFY):
        assert not _dciodvfy_errors(_written(sr, tmp_path, "withheld"))[0]
