"""scope_report: every image under a folder, chosen by content, through the worker's scope decisions."""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from cases.imaging.sniff import PNG_SIGNATURE
from inference.evaluation import image_files, looks_like_image
from tests.dicom_factory import make_dicom, sample_image


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """Films, refusals and impostors, some nested, some misnamed."""
    root = tmp_path / "incoming"
    (root / "ward" / "night").mkdir(parents=True)
    (root / "chest.dcm").write_bytes(make_dicom(8))
    (root / "ward" / "night" / "IM0001").write_bytes(make_dicom(3))
    shutil.copy(sample_image(0), root / "ward" / "exported.jpeg")
    shutil.copy(sample_image(1), root / "ward" / "photo.txt")  # a JPEG by its content
    (root / "lateral.dcm").write_bytes(make_dicom(8, view="LL"))
    (root / "ct.dcm").write_bytes(make_dicom(8, modality="CT"))
    noise = np.random.default_rng(6).integers(0, 256, size=(384, 384), dtype=np.uint8)
    (root / "ward" / "noise.png").write_bytes(_png(noise))
    (root / "readme.dcm").write_text("Not an image, whatever its name says.\n")
    (root / "cut.png").write_bytes(PNG_SIGNATURE + b"\0\0\0\rIHDR cut short")
    return root


def test_it_chooses_files_by_their_first_bytes_never_their_names(folder: Path) -> None:
    chosen = [path.relative_to(folder).as_posix() for path in image_files(folder)]

    assert chosen == [
        "chest.dcm",
        "ct.dcm",
        "cut.png",
        "lateral.dcm",
        "ward/exported.jpeg",
        "ward/night/IM0001",
        "ward/noise.png",
        "ward/photo.txt",
    ]


def test_it_takes_a_dicom_meta_header_without_its_preamble_as_an_image() -> None:
    bare = make_dicom(8)[128 + 4 :]

    assert bare.startswith(b"\x02\x00") and looks_like_image(bare[:132])
    assert not looks_like_image(b"%PDF-1.7") and not looks_like_image(b"")


def test_it_counts_every_outcome_and_writes_the_json_report(active_model, folder: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "scope.json"

    call_command("scope_report", str(folder), "--json", str(out))

    report = json.loads(out.read_text())
    assert set(report) == {"n", "undecodable", "counts", "routed", "files", "undecodable_files"}
    assert sum(report["routed"].values()) == 5  # every file the pixels judged names its routed version
    assert report["counts"] == {"in_domain": 4, "outside_domain": 0, "not_chest_xray": 1, "not_eligible": 2}
    assert report["n"] == 8 == len(report["files"]) + report["undecodable"]
    assert [row["path"] for row in report["undecodable_files"]] == ["cut.png"]
    rows = {row["path"]: row for row in report["files"]}
    assert list(rows) == sorted(rows)
    assert "readme.dcm" not in rows
    for path in ("chest.dcm", "ward/night/IM0001", "ward/exported.jpeg", "ward/photo.txt"):
        row = rows[path]
        assert row["domain"] == "in_domain" and row["model"] == active_model.name
        assert row["domain_score"] <= row["domain_limit"]
    assert rows["ward/noise.png"]["domain"] == "not_chest_xray"
    assert rows["ward/noise.png"]["domain_score"] > rows["ward/noise.png"]["domain_limit"]
    for path, words in (("lateral.dcm", "lateral view"), ("ct.dcm", "Modality CT")):
        row = rows[path]
        assert row["domain"] == "not_eligible" and row["model"] is None and row["domain_score"] is None
        assert words in row["reason"]
    printed = capsys.readouterr().out
    assert "not_chest_xray  1" in printed and "cut.png:" in printed


def test_it_needs_a_folder(active_model, tmp_path: Path) -> None:
    with pytest.raises(CommandError, match="is not a folder"):
        call_command("scope_report", str(tmp_path / "missing"))
