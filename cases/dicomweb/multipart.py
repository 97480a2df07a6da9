"""``multipart/related`` (RFC 2387) bodies: parsing a request in bounded memory, and writing a response.

Pure: no Django. A part is spooled to a temporary file once it passes
``SPOOL_BYTES``, so a STOW-RS request of many large instances never sits in
memory whole; a part longer than ``part_limit`` is cut off and flagged, not
read on.
"""

from __future__ import annotations

import tempfile
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from typing import BinaryIO, Protocol

SPOOL_BYTES = 1 << 20
_CHUNK = 256 * 1024
_MAX_HEADER_BYTES = 16 * 1024


class MultipartError(ValueError):
    """The body is not the multipart message its Content-Type says; the message is for the client."""


class Readable(Protocol):
    def read(self, size: int = ..., /) -> bytes: ...


@dataclass
class Part:
    headers: dict[str, str]  # lower-cased names
    file: BinaryIO  # rewound, positioned at the part's first byte
    size: int
    too_large: bool = False

    @property
    def media_type(self) -> str:
        return media_type_of(self.headers.get("content-type", ""))[0]


def media_type_of(value: str) -> tuple[str, dict[str, str]]:
    """``'multipart/related; type="application/dicom"'`` -> ``('multipart/related', {'type': 'application/dicom'})``."""
    message = Message()
    message["content-type"] = value or "application/octet-stream"
    params = {k.lower(): v for k, v in message.get_params(failobj=[])[1:]}
    return message.get_content_type(), params


@dataclass
class _Reader:
    stream: Readable
    buffer: bytearray = field(default_factory=bytearray)
    done: bool = False

    def fill(self) -> bool:
        if self.done:
            return False
        chunk = self.stream.read(_CHUNK)
        if not chunk:
            self.done = True
            return False
        self.buffer += chunk
        return True


def iter_parts(stream: Readable, boundary: str, *, part_limit: int) -> Iterator[Part]:
    """The parts of a multipart body, one at a time; the caller closes each ``part.file``."""
    if not boundary or len(boundary) > 70:
        raise MultipartError("The Content-Type's boundary parameter is missing or longer than 70 characters.")
    reader = _Reader(stream)
    _skip_preamble(reader, b"--" + boundary.encode("latin-1"))
    delimiter = b"\r\n--" + boundary.encode("latin-1")
    while True:
        if _at_close(reader):
            return
        headers = _headers(reader)
        yield _body(reader, delimiter, headers, part_limit)


def _skip_preamble(reader: _Reader, dash_boundary: bytes) -> None:
    while True:
        start = reader.buffer.find(dash_boundary)
        if start >= 0 and (start == 0 or reader.buffer[start - 2 : start] == b"\r\n"):
            del reader.buffer[: start + len(dash_boundary)]
            return
        if len(reader.buffer) > _MAX_HEADER_BYTES or not reader.fill():
            raise MultipartError("The body does not start with the boundary of its Content-Type.")


def _at_close(reader: _Reader) -> bool:
    """After a delimiter: ``--`` ends the message; otherwise the rest of the line is padding before the headers."""
    while len(reader.buffer) < 2 and reader.fill():
        pass
    if reader.buffer[:2] == b"--":
        return True
    while (end := reader.buffer.find(b"\r\n")) < 0:
        if len(reader.buffer) > _MAX_HEADER_BYTES or not reader.fill():
            raise MultipartError("The body ends inside a part's headers.")
    del reader.buffer[: end + 2]
    return False


def _headers(reader: _Reader) -> dict[str, str]:
    while True:
        if reader.buffer.startswith(b"\r\n"):
            del reader.buffer[:2]
            return {}
        end = reader.buffer.find(b"\r\n\r\n")
        if end >= 0:
            break
        if len(reader.buffer) > _MAX_HEADER_BYTES or not reader.fill():
            raise MultipartError("A part's headers are too long or never end.")
    lines = bytes(reader.buffer[:end]).decode("latin-1").split("\r\n")
    del reader.buffer[: end + 4]
    headers = {}
    for line in lines:
        name, sep, value = line.partition(":")
        if not sep:
            raise MultipartError("A part's header line has no colon.")
        headers[name.strip().lower()] = value.strip()
    return headers


def _body(reader: _Reader, delimiter: bytes, headers: dict[str, str], part_limit: int) -> Part:
    spool = tempfile.SpooledTemporaryFile(max_size=SPOOL_BYTES)  # noqa: SIM115 - handed to the caller
    size, too_large = 0, False
    while True:
        found = reader.buffer.find(delimiter)
        # Keep a delimiter's length back: it may straddle two reads.
        usable = found if found >= 0 else max(0, len(reader.buffer) - len(delimiter))
        if usable:
            if size + usable > part_limit:
                too_large = True
            elif not too_large:
                spool.write(reader.buffer[:usable])
            size += usable
            del reader.buffer[:usable]
        if found >= 0:
            del reader.buffer[: len(delimiter)]
            spool.seek(0)
            return Part(headers, spool, size, too_large)
        if not reader.fill():
            spool.close()
            raise MultipartError("The body ends before its closing boundary.")


def new_boundary() -> str:
    return uuid.uuid4().hex


def encode_parts(parts: Iterable[tuple[str, Iterable[bytes]]], boundary: str) -> Iterator[bytes]:
    """A multipart body, streamed: each part is its Content-Type and its bytes in chunks."""
    for content_type, chunks in parts:
        yield f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode("latin-1")
        yield from chunks
        yield b"\r\n"
    yield f"--{boundary}--\r\n".encode("latin-1")
