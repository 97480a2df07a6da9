"""Walk a DICOM file's element structure before pydicom parses it.

pydicom trusts lengths and recurses into sequences, so a hostile file can make
it read past the end, allocate what a length field promises, or recurse until
the interpreter gives up. This walker is iterative (an explicit stack, never
the call stack), checks every length against its enclosing container, counts
sequence depth and elements, and bounds inflation of deflated datasets. Only a
file that passes is handed to pydicom.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass
from typing import Literal

from pydicom.datadict import dictionary_VR

from .errors import CorruptImage, TooComplex, TooLarge, Truncated
from .sniff import DICOM_PREAMBLE_LENGTH

EXPLICIT_VR_BIG_ENDIAN = "1.2.840.10008.1.2.2"
DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN = "1.2.840.10008.1.2.1.99"

MAX_SEQUENCE_DEPTH = 12
MAX_ELEMENTS = 200_000
MAX_META_ELEMENTS = 1_000  # the file meta group has about ten

UNDEFINED_LENGTH = 0xFFFFFFFF
ITEM = (0xFFFE, 0xE000)
ITEM_END = (0xFFFE, 0xE00D)
SEQUENCE_END = (0xFFFE, 0xE0DD)
PIXEL_DATA = (0x7FE0, 0x0010)
TRANSFER_SYNTAX = (0x0002, 0x0010)
# Explicit VRs written with two reserved bytes and a 32-bit length.
_LONG_VRS = frozenset({b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"})

_VALID_VRS = _LONG_VRS | frozenset(
    {b"AE", b"AS", b"AT", b"CS", b"DA", b"DS", b"DT", b"FD", b"FL", b"IS", b"LO", b"LT", b"PN", b"SH", b"SL"}
    | {b"SS", b"ST", b"TM", b"UI", b"UL", b"US"}
)

TRUNCATED = "DICOM file is truncated or damaged"
LYING_LENGTH = "DICOM file is damaged: an element claims to be longer than the data that contains it"

ContainerKind = Literal["dataset", "sequence", "fragments"]


@dataclass(frozen=True)
class PixelDataLayout:
    encapsulated: bool
    length: int | None  # None when encapsulated with undefined length


@dataclass(frozen=True)
class DicomLayout:
    transfer_syntax_uid: str
    pixel_data: PixelDataLayout | None
    max_depth: int
    elements: int


@dataclass
class _Container:
    kind: ContainerKind
    end: int | None  # None: undefined length, closed by a delimiter item
    implicit: bool


@dataclass(frozen=True)
class _Header:
    tag: tuple[int, int]
    vr: bytes | None  # None for the item and delimiter tags, which carry no VR
    length: int
    size: int


def scan_dicom(
    data: bytes,
    *,
    max_inflated: int,
    max_depth: int = MAX_SEQUENCE_DEPTH,
    max_elements: int = MAX_ELEMENTS,
) -> DicomLayout:
    """Check the structure of a Part 10 file; raise a ``DecodeError`` where it lies or goes too deep."""
    syntax, start = read_transfer_syntax(data)
    body = data
    if syntax == DEFLATED_EXPLICIT_VR_LITTLE_ENDIAN:
        body, start = inflate_bounded(data[start:], max_inflated), 0
    walker = _Walker(body, big_endian=syntax == EXPLICIT_VR_BIG_ENDIAN, max_depth=max_depth, max_elements=max_elements)
    walker.walk(start, implicit=not _starts_explicit(body, start))
    return DicomLayout(syntax, walker.pixel_data, walker.deepest, walker.elements)


def _starts_explicit(body: bytes, start: int) -> bool:
    # Like pydicom, trust the first element over the declared syntax: writers get this wrong.
    return body[start + 4 : start + 6] in _VALID_VRS


def read_transfer_syntax(data: bytes) -> tuple[str, int]:
    """The transfer syntax UID from the file meta group, and where the dataset starts."""
    pos, syntax = DICOM_PREAMBLE_LENGTH + 4, None
    for _ in range(MAX_META_ELEMENTS):
        if pos + 8 > len(data) or struct.unpack_from("<H", data, pos)[0] != 0x0002:
            break
        start, length = _meta_element(data, pos)
        if struct.unpack_from("<HH", data, pos) == TRANSFER_SYNTAX:
            syntax = data[start : start + length].rstrip(b"\x00 ").decode("ascii", "replace")
        pos = start + length
    else:
        raise TooComplex(f"DICOM file header has more than {MAX_META_ELEMENTS} elements")
    if pos > len(data):
        raise Truncated(TRUNCATED)
    if not syntax:
        raise CorruptImage("DICOM file header does not say how the image is encoded (no transfer syntax)")
    return syntax, pos


def _meta_element(data: bytes, pos: int) -> tuple[int, int]:
    # The file meta group is always explicit VR little endian.
    if data[pos + 4 : pos + 6] in _LONG_VRS:
        if pos + 12 > len(data):
            raise Truncated(TRUNCATED)
        return pos + 12, struct.unpack_from("<L", data, pos + 8)[0]
    return pos + 8, struct.unpack_from("<H", data, pos + 6)[0]


def inflate_bounded(body: bytes, max_inflated: int) -> bytes:
    """Inflate a deflated dataset, refusing a zip bomb before it fills memory."""
    inflater = zlib.decompressobj(-zlib.MAX_WBITS)
    try:
        inflated = inflater.decompress(body, max_inflated)
    except zlib.error as exc:
        raise CorruptImage("Compressed (deflated) DICOM file is damaged") from exc
    if inflater.unconsumed_tail:
        raise TooLarge(f"Compressed (deflated) DICOM file expands beyond {max_inflated // 2**20} MB")
    return inflated


class _Walker:
    def __init__(self, data: bytes, *, big_endian: bool, max_depth: int, max_elements: int) -> None:
        self.data, self.pos = data, 0
        self.order = ">" if big_endian else "<"
        self.max_depth, self.max_elements = max_depth, max_elements
        self.stack: list[_Container] = []
        self.depth = self.deepest = self.elements = 0
        self.pixel_data: PixelDataLayout | None = None

    def walk(self, start: int, *, implicit: bool) -> None:
        self.pos = start
        self.stack.append(_Container("dataset", len(self.data), implicit))
        while self.stack:
            top = self.stack[-1]
            if top.end is not None and self.pos >= top.end:
                self._close(top)
            elif len(self.stack) == 1 and len(self.data) - self.pos < 8:
                return  # a few bytes of trailing padding after the last element
            else:
                self._count()
                self._step(top)

    def _close(self, top: _Container) -> None:
        if self.pos > top.end:
            raise CorruptImage(LYING_LENGTH)
        self._pop()

    def _count(self) -> None:
        self.elements += 1
        if self.elements > self.max_elements:
            raise TooComplex(f"DICOM file has more than {self.max_elements} elements; it is not an X-ray image")

    def _step(self, top: _Container) -> None:
        if self.pos >= len(self.data):
            raise Truncated(TRUNCATED)
        header = self._header(top.implicit)
        if top.kind == "sequence":
            self._sequence_item(top, header)
        elif top.kind == "fragments":
            self._fragment(header)
        else:
            self._element(top, header)

    def _element(self, top: _Container, header: _Header) -> None:
        start = self.pos + header.size
        if header.vr is None:
            self._item_end(top, header, start)
        elif self._opens_sequence(header, top.implicit):
            self._push_sequence(header, start, implicit=top.implicit or header.vr == b"UN")
        elif header.length == UNDEFINED_LENGTH:
            self._push_fragments(header, start)
        else:
            self._skip_value(header, start)

    def _item_end(self, top: _Container, header: _Header, start: int) -> None:
        if header.tag != ITEM_END or top.end is not None or len(self.stack) == 1:
            raise CorruptImage("DICOM file is damaged: unexpected sequence delimiter")
        self.pos = start
        self._pop()

    def _opens_sequence(self, header: _Header, implicit: bool) -> bool:
        if header.vr == b"SQ":
            return True
        if header.tag == PIXEL_DATA:
            return False
        # pydicom parses these as sequences too: undefined-length UN, and UN whose tag is known as SQ.
        undefined = header.length == UNDEFINED_LENGTH
        return (undefined and (implicit or header.vr == b"UN")) or (header.vr == b"UN" and _known_vr(header) == b"SQ")

    def _push_sequence(self, header: _Header, start: int, *, implicit: bool) -> None:
        self.depth += 1
        self.deepest = max(self.deepest, self.depth)
        if self.depth > self.max_depth:
            raise TooComplex(f"DICOM file nests sequences deeper than {self.max_depth} levels")
        self._push("sequence", header, start, implicit)

    def _push_fragments(self, header: _Header, start: int) -> None:
        if header.tag != PIXEL_DATA:
            raise CorruptImage("DICOM file is damaged: an element has no length")
        if len(self.stack) == 1:
            self.pixel_data = PixelDataLayout(encapsulated=True, length=None)
        self._push("fragments", header, start, implicit=False)

    def _skip_value(self, header: _Header, start: int) -> None:
        self._check_fits(start, header.length)
        if header.tag == PIXEL_DATA and len(self.stack) == 1:
            self.pixel_data = PixelDataLayout(encapsulated=False, length=header.length)
        self.pos = start + header.length

    def _sequence_item(self, top: _Container, header: _Header) -> None:
        start = self.pos + header.size
        if header.tag == ITEM:
            self._push("dataset", header, start, top.implicit)
        elif header.tag == SEQUENCE_END and top.end is None:
            self.pos = start
            self._pop()
        else:
            raise CorruptImage("DICOM file is damaged: a sequence holds something other than items")

    def _fragment(self, header: _Header) -> None:
        start = self.pos + header.size
        if header.tag == SEQUENCE_END:
            self.pos = start
            self._pop()
        elif header.tag == ITEM and header.length != UNDEFINED_LENGTH:
            self._check_fits(start, header.length)
            self.pos = start + header.length
        else:
            raise CorruptImage("DICOM file is damaged: compressed pixel data is malformed")

    def _push(self, kind: ContainerKind, header: _Header, start: int, implicit: bool) -> None:
        end = None
        if header.length != UNDEFINED_LENGTH:
            self._check_fits(start, header.length)
            end = start + header.length
        self.stack.append(_Container(kind, end, implicit))
        self.pos = start

    def _pop(self) -> None:
        if self.stack.pop().kind == "sequence":
            self.depth -= 1

    def _check_fits(self, start: int, length: int) -> None:
        top_end = self.stack[-1].end
        limit = len(self.data) if top_end is None else top_end
        if start + length <= limit:
            return
        raise Truncated(TRUNCATED) if start + length > len(self.data) else CorruptImage(LYING_LENGTH)

    def _header(self, implicit: bool) -> _Header:
        self._need(8)
        group, element = struct.unpack_from(self.order + "HH", self.data, self.pos)
        if group == 0xFFFE or implicit:
            length = struct.unpack_from(self.order + "L", self.data, self.pos + 4)[0]
            vr = None if group == 0xFFFE else _implicit_vr((group, element))
            return _Header((group, element), vr, length, 8)
        return self._explicit_header((group, element))

    def _explicit_header(self, tag: tuple[int, int]) -> _Header:
        vr = self.data[self.pos + 4 : self.pos + 6]
        if vr in _LONG_VRS:
            self._need(12)
            return _Header(tag, vr, struct.unpack_from(self.order + "L", self.data, self.pos + 8)[0], 12)
        if not (vr.isalpha() and vr.isupper()):
            raise CorruptImage("DICOM file is damaged: an element has an invalid value representation")
        return _Header(tag, vr, struct.unpack_from(self.order + "H", self.data, self.pos + 6)[0], 8)

    def _need(self, size: int) -> None:
        if self.pos + size > len(self.data):
            raise Truncated(TRUNCATED)


def _implicit_vr(tag: tuple[int, int]) -> bytes:
    if tag == PIXEL_DATA:
        return b"OW"
    return _dictionary_vr(tag)


def _known_vr(header: _Header) -> bytes:
    return _dictionary_vr(header.tag)


def _dictionary_vr(tag: tuple[int, int]) -> bytes:
    try:
        return dictionary_VR((tag[0] << 16) | tag[1]).encode("ascii")[:2]
    except KeyError:
        return b"UN"
