"""decode_guarded: the same result as decode, from a child that cannot run long or grow large."""

from __future__ import annotations

import os
import time

import numpy as np
import pytest

from cases.imaging import (
    DecodeOutOfMemory,
    DecoderCrashed,
    DecodeTimeout,
    NotAnImage,
    TooLarge,
    Truncated,
    decode,
    decode_guarded,
)
from tests.dicom_factory import make_dicom, make_png
from tests.imaging import guard_targets

LIMITS = {"max_bytes": 64 * 2**20, "max_pixels": 50_000_000}


def test_it_returns_what_decode_returns() -> None:
    data = make_dicom(bits=12, window=(1500.0, 1000.0))

    guarded = decode_guarded(data, filename="a.dcm", **LIMITS)
    local = decode(data, filename="a.dcm", **LIMITS)

    assert guarded.metadata == local.metadata
    assert guarded.default_window == local.default_window
    np.testing.assert_array_equal(guarded.model_image, local.model_image)
    np.testing.assert_array_equal(guarded.display_pixels, local.display_pixels)
    assert guarded.pixel_sha256() == local.pixel_sha256()


def test_it_returns_writable_arrays() -> None:
    image = decode_guarded(make_png(), filename="a.png", **LIMITS)

    image.model_image[0, 0] = 7
    assert image.model_image[0, 0] == 7


def test_it_returns_multi_frame_metadata_without_arrays() -> None:
    image = decode_guarded(make_dicom(shape=(32, 32), frames=3), filename="cine.dcm", **LIMITS)

    assert image.is_multiframe and image.model_image is None


def test_it_passes_refusals_through_unchanged() -> None:
    data = make_dicom(shape=(32, 32))

    with pytest.raises(Truncated, match="truncated or damaged"):
        decode_guarded(data[:-10], filename="a.dcm", **LIMITS)
    with pytest.raises(NotAnImage, match="is a text file"):
        decode_guarded(b"hello\n" * 100, filename="a.dcm", **LIMITS)


def test_it_refuses_an_oversized_file_without_starting_a_child() -> None:
    with pytest.raises(TooLarge, match="over the limit"):
        decode_guarded(bytes(2000), filename="big.dcm", max_bytes=1000, max_pixels=10)


def test_it_stops_a_decode_that_runs_past_the_timeout() -> None:
    started = time.monotonic()

    with pytest.raises(DecodeTimeout) as caught:
        decode_guarded(b"x", filename="slow.dcm", **LIMITS, timeout_s=0.5, _decoder=guard_targets.sleep_forever)

    assert time.monotonic() - started < 5
    assert str(caught.value) == "Decoding took longer than 0.5 s and was stopped; the file may be damaged"


def test_it_stops_a_decode_that_outgrows_its_memory() -> None:
    with pytest.raises(DecodeOutOfMemory) as caught:
        decode_guarded(b"x", filename="hog.dcm", **LIMITS, memory_mb=128, _decoder=guard_targets.allocate_forever)

    assert "more than 128 MB of memory" in str(caught.value)


def test_it_refuses_a_genuine_image_too_big_for_the_memory_limit() -> None:
    data = make_dicom(shape=(2000, 2000), bits=16)

    with pytest.raises(DecodeOutOfMemory):
        decode_guarded(data, filename="huge.dcm", **LIMITS, memory_mb=8)


def test_it_reports_a_crashed_decoder() -> None:
    with pytest.raises(DecoderCrashed, match="stopped unexpectedly"):
        decode_guarded(b"x", filename="crash.dcm", **LIMITS, _decoder=guard_targets.die_abruptly)


def test_it_keeps_working_after_a_child_was_killed() -> None:
    with pytest.raises(DecodeTimeout):
        decode_guarded(b"x", filename="slow.dcm", **LIMITS, timeout_s=0.2, _decoder=guard_targets.sleep_forever)

    image = decode_guarded(make_png(), filename="a.png", **LIMITS)

    assert image.kind == "png"


def test_it_works_in_a_process_forked_after_it_was_used() -> None:
    # Celery's prefork pool forks workers from a parent that may already have decoded.
    data = make_png()
    decode_guarded(data, filename="a.png", **LIMITS)
    read_end, write_end = os.pipe()

    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the forked child
        outcome = b"fail"
        try:
            outcome = decode_guarded(data, filename="a.png", **LIMITS).kind.encode()
        finally:
            os.write(write_end, outcome)
            os._exit(0)
    os.close(write_end)
    os.waitpid(pid, 0)

    assert os.read(read_end, 16) == b"png"
