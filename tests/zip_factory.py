"""Zip files built byte by byte with ``struct`` and ``zlib``, for tests and benchmarks (no Django here).

Deflate blocks of zeros and a little noise, repeated after a full flush, give
a stream of any inflated size in milliseconds and a few kilobytes per MiB.
"""

from __future__ import annotations

import io
import os
import struct
import zipfile
import zlib
from dataclasses import dataclass

MIB = 2**20


@dataclass(frozen=True)
class Entry:
    """One central-directory entry: where its local header is, and what it says of its data."""

    name: bytes
    offset: int
    compressed: int
    size: int
    crc: int


def deflated(mebibytes: int, *, noise: int = 6000) -> tuple[bytes, int]:
    """A raw deflate stream of ``mebibytes`` MiB (each MiB zeros after ``noise`` random bytes) and its CRC.

    With 6,000 bytes of noise per MiB the ratio is about 170: under the 200-fold limit on one entry.
    """
    chunk = os.urandom(noise) + bytes(MIB - noise)
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    # After a full flush the compressor holds no history, so the same block may be repeated as is.
    block = packer.compress(chunk) + packer.flush(zlib.Z_FULL_FLUSH)
    crc = 0
    for _ in range(mebibytes):
        crc = zlib.crc32(chunk, crc)
    return block * mebibytes + packer.flush(), crc


def local_header(entry: Entry) -> bytes:
    return struct.pack(
        "<IHHHHHIIIHH", 0x04034B50, 20, 0, 8, 0, 0, entry.crc, entry.compressed, entry.size, len(entry.name), 0
    )


def central_directory(entries: list[Entry], start: int) -> bytes:
    records = b"".join(
        struct.pack(
            "<IHHHHHHIIIHHHHHII",
            0x02014B50,
            20,
            20,
            0,
            8,
            0,
            0,
            entry.crc,
            entry.compressed,
            entry.size,
            len(entry.name),
            0,
            0,
            0,
            0,
            0,
            entry.offset,
        )
        + entry.name
        for entry in entries
    )
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(entries), len(entries), len(records), start, 0)
    return records + end


def overlapping_bomb(entries: int, mebibytes: int) -> bytes:
    """One local file and its deflate stream, and ``entries`` central entries all pointing at it (Fifield's bomb)."""
    stream, crc = deflated(mebibytes)
    kernel = Entry(b"IM0001.dcm", 0, len(stream), mebibytes * MIB, crc)
    body = local_header(kernel) + kernel.name + stream
    return body + central_directory([kernel] * entries, len(body))


def quoted_overlap_bomb() -> bytes:
    """Two entries at different offsets, the second starting inside the first one's compressed data."""
    stream, crc = deflated(4)
    first = Entry(b"IM0001.dcm", 0, len(stream), 4 * MIB, crc)
    body = local_header(first) + first.name + stream
    second = Entry(b"IM0001.dcm", 30 + len(first.name) + 100, len(stream) - 100, 4 * MIB, crc)
    return body + central_directory([first, second], len(body))


def understated_member(mebibytes: int, declared: int) -> bytes:
    """A member whose headers say it inflates to ``declared`` bytes while its stream holds ``mebibytes`` MiB."""
    stream, crc = deflated(mebibytes, noise=0)
    member = Entry(b"IM0001.dcm", 0, len(stream), declared, crc)
    body = local_header(member) + member.name + stream
    return body + central_directory([member], len(body))


def plain_zip(*members: tuple[str, bytes], directories: tuple[str, ...] = ()) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for directory in directories:
            archive.mkdir(directory)
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()
