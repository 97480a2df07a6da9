"""Which images may go to the model, and which are flagged as outside its validated use."""

from __future__ import annotations

from dataclasses import replace

import pytest

from cases.imaging import ImageMetadata, assess_eligibility
from cases.imaging.eligibility import use_caveats

CHEST_AP_TODDLER = ImageMetadata(
    kind="dicom",
    rows=2048,
    columns=2048,
    bits_allocated=16,
    bits_stored=12,
    modality="CR",
    sop_class_uid="1.2.840.10008.5.1.4.1.1.1",
    body_part="CHEST",
    view_position="AP",
    age_years=3.0,
)
SECONDARY_CAPTURE = "1.2.840.10008.5.1.4.1.1.7"


def assess(**changes):
    return assess_eligibility(replace(CHEST_AP_TODDLER, **changes))


def test_it_finds_an_ap_chest_radiograph_of_a_three_year_old_eligible() -> None:
    result = assess()

    assert result.status == "eligible"
    assert result.reason == ""
    assert result.runs_model


@pytest.mark.parametrize(
    ("modality", "sop_class"),
    [
        ("CR", None),
        ("DX", None),
        ("SC", None),
        ("OT", SECONDARY_CAPTURE),
        (None, SECONDARY_CAPTURE),
        (None, "1.2.840.10008.5.1.4.1.1.1.1"),
    ],
)
def test_it_accepts_radiographs_and_secondary_captures(modality: str | None, sop_class: str | None) -> None:
    assert assess(modality=modality, sop_class_uid=sop_class).status == "eligible"


@pytest.mark.parametrize("modality", ["CT", "MR", "US", "MG", "NM"])
def test_it_refuses_other_modalities(modality: str) -> None:
    result = assess(modality=modality, sop_class_uid="1.2.840.10008.5.1.4.1.1.2")

    assert result.status == "not_eligible"
    assert f"Modality {modality} is not a radiograph" in result.reason
    assert not result.runs_model


def test_it_refuses_other_capture_modalities_without_a_secondary_capture_class() -> None:
    assert assess(modality="OT", sop_class_uid="1.2.840.10008.5.1.4.1.1.2").status == "not_eligible"
    assert assess(modality="OT", sop_class_uid="1.2.840.10008.5.1.4.1.1.77.1.4").status == "not_eligible"
    assert assess(modality=None, sop_class_uid=None).status == "not_eligible"


@pytest.mark.parametrize("body_part", ["CHEST", "Chest", "THORAX", "LUNG", "TORAX", "Tórax", "chest pa", "THORACIC"])
def test_it_recognises_the_chest_however_it_is_spelled(body_part: str) -> None:
    assert assess(body_part=body_part).status == "eligible"


@pytest.mark.parametrize("body_part", ["KNEE", "ABDOMEN", "HAND", "SKULL"])
def test_it_refuses_other_body_parts(body_part: str) -> None:
    result = assess(body_part=body_part)

    assert result.status == "not_eligible"
    assert result.reason == f"Body part is {body_part}, not the chest"


@pytest.mark.parametrize("view", ["LL", "RL", "LAT", "LATERAL", "LLD", "RLD", "Left Lateral", "lat"])
def test_it_refuses_lateral_views(view: str) -> None:
    result = assess(view_position=view)

    assert result.status == "not_eligible"
    assert "lateral view" in result.reason


def test_it_refuses_multi_frame_objects() -> None:
    result = assess(number_of_frames=12)

    assert result.status == "not_eligible"
    assert "multi-frame" in result.reason


def test_it_joins_every_blocking_reason() -> None:
    result = assess(modality="CT", body_part="KNEE", view_position="LAT")

    assert result.reason.count("; ") == 2


@pytest.mark.parametrize(
    ("age", "words"),
    [
        (0.5, "Patient is 6 months old"),
        (0.99, "Patient is 12 months old"),
        (5.5, "Patient is 5.5 years old"),
        (40.0, "Patient is 40 years old"),
    ],
)
def test_it_flags_ages_outside_one_to_five_years(age: float, words: str) -> None:
    caveats = use_caveats(age, "AP", min_age=1.0, max_age=5.0, views=("AP",))

    assert caveats == [f"{words}, outside the validated ages of 1 to 5 years"]


def test_it_leaves_the_validated_ages_to_the_routed_version() -> None:
    # Whether 40 years is inside validated use depends on the version the image is routed to.
    assert assess(age_years=40.0).status == "eligible"
    assert use_caveats(40.0, "PA", min_age=18.0, max_age=85.0, views=("AP", "PA")) == []


@pytest.mark.parametrize("age", [1.0, 2.5, 5.0])
def test_it_accepts_the_ends_of_the_age_range(age: float) -> None:
    assert assess(age_years=age).status == "eligible"
    assert use_caveats(age, "AP", min_age=1.0, max_age=5.0, views=("AP",)) == []


def test_it_flags_an_unknown_age() -> None:
    assert assess(age_years=None).reason == "Patient age is unknown"


def test_it_honours_a_different_intended_age_range() -> None:
    assert use_caveats(8.0, "AP", min_age=1.0, max_age=10.0, views=("AP",)) == []


@pytest.mark.parametrize("view", ["PA", "RLO", "AP?"])
def test_it_flags_frontal_views_other_than_ap(view: str) -> None:
    caveats = use_caveats(3.0, view, min_age=1.0, max_age=5.0, views=("AP",))

    assert caveats == ([] if view == "AP?" else [f"View {view} is not the validated AP view"])
    assert assess(view_position=view).status == "eligible"


def test_it_accepts_every_validated_view_of_a_version() -> None:
    assert use_caveats(40.0, "PA", min_age=18.0, max_age=85.0, views=("AP", "PA")) == []
    assert use_caveats(40.0, "RLO", min_age=18.0, max_age=85.0, views=("AP", "PA")) == [
        "View RLO is not the validated AP or PA view"
    ]


def test_it_flags_missing_body_part_and_view_tags() -> None:
    result = assess(body_part=None, view_position=None)

    assert result.status == "outside_validated_use"
    assert result.reason == "Body part is not recorded; View position is not recorded"


def test_it_treats_png_and_jpeg_as_secondary_captures_lacking_tags() -> None:
    png = ImageMetadata(kind="png", rows=512, columns=512, bits_allocated=8, bits_stored=8, age_years=2.0)

    result = assess_eligibility(png)

    assert result.status == "outside_validated_use"
    assert result.reason == "Body part is not recorded; View position is not recorded"


def test_it_lists_every_caveat_of_an_image_outside_validated_use() -> None:
    result = assess(age_years=None, body_part=None)

    assert result.reason == "Patient age is unknown; Body part is not recorded"
