"""A stored DICOM instance in the transfer syntax a WADO-RS client asks for.

Pure: no Django. Uncompressed instances are rewritten in the other
uncompressed syntax; compressed ones are decoded with pydicom's pixel handlers
(pylibjpeg, openjpeg, RLE) and written as Explicit VR Little Endian. Nothing
is ever compressed here: a client asking for a compressed syntax the file is
not already in gets 406, which ``producible`` tells the view beforehand.
"""

from __future__ import annotations

import io

from pydicom import dcmread, dcmwrite
from pydicom.uid import (
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
)

ANY = "*"
DEFAULT = str(ExplicitVRLittleEndian)
WRITABLE = frozenset({str(ExplicitVRLittleEndian), str(ImplicitVRLittleEndian)})
_NATIVE = frozenset(
    {ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian}
)


class NotProducible(Exception):
    """The instance cannot be written in the asked syntax."""


def producible(stored_syntax: str, wanted: str) -> bool:
    return wanted in (ANY, stored_syntax) or wanted in WRITABLE


def in_syntax(data: bytes, wanted: str) -> bytes:
    """``data`` (a stored Part 10 file) written in ``wanted``; the stored bytes for ``*`` or the file's own syntax."""
    ds = dcmread(io.BytesIO(data))
    stored = UID(ds.file_meta.get("TransferSyntaxUID", ImplicitVRLittleEndian))
    if wanted in (ANY, str(stored)):
        return data
    if wanted not in WRITABLE:
        raise NotProducible(wanted)
    if "PixelData" in ds and stored not in _NATIVE:
        # To Explicit VR Little Endian, photometric interpretation updated (YBR -> RGB). A change of transfer
        # syntax is the same instance (PS3.5 8.2): pydicom would otherwise give it a new SOP Instance UID.
        ds.decompress(generate_instance_uid=False)
    elif "PixelData" in ds and stored == ExplicitVRBigEndian:
        ds.PixelData = ds.pixel_array.astype(ds.pixel_array.dtype.newbyteorder("<")).tobytes()
    ds.file_meta.TransferSyntaxUID = UID(wanted)
    out = io.BytesIO()
    # pydicom re-encodes a big endian file's values only when forced (and then cannot also enforce the format:
    # the file meta read with the file is written as it is, with its new syntax).
    big = stored == ExplicitVRBigEndian
    dcmwrite(out, ds, enforce_file_format=not big, implicit_vr=wanted == str(ImplicitVRLittleEndian),
             little_endian=True, force_encoding=big)  # fmt: skip
    return out.getvalue()
