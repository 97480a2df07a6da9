"""Stand-in decoders for decode_guarded's test hook; they run in the child process."""

from __future__ import annotations

import os
import signal
import time

from cases.imaging import DecodedImage


def sleep_forever(data: bytes, *, filename: str, max_bytes: int, max_pixels: int, decode_threads: int) -> DecodedImage:
    time.sleep(3600)
    raise AssertionError("unreachable")


def allocate_forever(
    data: bytes, *, filename: str, max_bytes: int, max_pixels: int, decode_threads: int
) -> DecodedImage:
    hoard = []
    while True:
        hoard.append(bytearray(64 * 2**20))


def die_abruptly(data: bytes, *, filename: str, max_bytes: int, max_pixels: int, decode_threads: int) -> DecodedImage:
    os.kill(os.getpid(), signal.SIGSEGV)
    raise AssertionError("unreachable")
