"""A corpus of hostile and malformed uploads, every file built by code (no fixture files).

    from tests.security.hostile import corpus
    for entry in corpus():
        entry.name, entry.data, entry.outcome, entry.reason

Each entry says what ingest must do with it: ``stored`` (a valid image, however
odd; a zip of one valid image counts), ``refused`` with a reason matching
``reason`` (a regular expression, case-insensitive), or ``skipped`` (a zip
member not unpacked, such as a name with '..'), with a reason too. ``raster`` entries are
PNG/JPEG files, stored only when a patient ID is typed with them. ``xss_field``
names the stored attribute carrying a script payload, which every page must
show escaped. ``known_bug`` says why today's code does not yet do what the
entry expects; tests expect those to fail until the bug is fixed.

No Django here: the corpus can be built and inspected alone
(``python -m tests.security.hostile`` prints it).
"""

from __future__ import annotations

import contextlib
import io
import random
import struct
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache

from pydicom import config as pydicom_config
from pydicom.uid import JPEGBaseline8Bit

from tests.dicom_factory import (
    make_dicom,
    make_jpeg,
    make_other_image,
    make_png,
    nested_sequence_dicom,
    rewrite_dicom,
)

STORED, REFUSED, SKIPPED = "stored", "refused", "skipped"
DAMAGED = r"truncated|damaged|encoded|not a dicom"
MZ_HEADER = b"MZ\x90\x00\x03\x00\x00\x00\x04\x00\x00\x00\xff\xff\x00\x00"
ELF_HEADER = b"\x7fELF\x02\x01\x01\x00" + bytes(8) + b"\x02\x00\x3e\x00"
PREAMBLE = 128
OVERLONG_BUG = (
    "cases/ingest.py stores DICOM values longer than their columns: PostgreSQL raises DataError (a 500 that "
    "aborts the rest of the batch), SQLite stores them over-long"
)
ZIP_REASON_BUG = "cases/ingest.py _zip_member refuses an oversized zip member as 'The file is empty'"


@dataclass(frozen=True)
class Hostile:
    name: str
    data: bytes
    outcome: str
    category: str
    reason: str = ""
    raster: bool = False
    xss_field: str = ""
    known_bug: str = ""

    def __str__(self) -> str:
        return self.name


@contextlib.contextmanager
def _lenient_pydicom() -> Iterator[None]:
    """pydicom refuses to write values that break their VR's rules: hostile files must hold them anyway."""
    saved = pydicom_config.settings.writing_validation_mode, pydicom_config.settings.reading_validation_mode
    pydicom_config.settings.writing_validation_mode = pydicom_config.IGNORE
    pydicom_config.settings.reading_validation_mode = pydicom_config.IGNORE
    try:
        yield
    finally:
        pydicom_config.settings.writing_validation_mode, pydicom_config.settings.reading_validation_mode = saved


def _dicom(n: int, **kwargs) -> bytes:
    """A small valid DICOM of its own patient, so that stored entries never share an identity."""
    kwargs.setdefault("shape", (64, 64))
    kwargs.setdefault("patient_id", f"HOSTILE-{n:03d}")
    kwargs.setdefault("patient_name", f"Corpus^Entry{n}")
    with _lenient_pydicom():
        return make_dicom(n % 16, **kwargs)


def _rewrite(data: bytes, **attributes) -> bytes:
    with _lenient_pydicom():
        return rewrite_dicom(data, **attributes)


# ---- byte surgery on explicit VR little endian files ----------------------------------------------

_LONG_VRS = {b"OB", b"OD", b"OF", b"OL", b"OV", b"OW", b"SQ", b"SV", b"UC", b"UN", b"UR", b"UT", b"UV"}


def _element_at(data: bytes, group: int, element: int) -> int:
    meta_end = PREAMBLE + 4 + 12 + struct.unpack_from("<L", data, PREAMBLE + 4 + 8)[0]
    at = data.find(struct.pack("<HH", group, element), meta_end)
    if at < 0:
        raise ValueError(f"({group:04X},{element:04X}) not found")
    return at


def _with_length(data: bytes, group: int, element: int, length: int) -> bytes:
    out = bytearray(data)
    at = _element_at(data, group, element)
    if bytes(out[at + 4 : at + 6]) in _LONG_VRS:
        struct.pack_into("<L", out, at + 8, length)
    else:
        struct.pack_into("<H", out, at + 6, length)
    return bytes(out)


def _with_vr(data: bytes, group: int, element: int, vr: bytes, value: bytes | None = None) -> bytes:
    out = bytearray(data)
    at = _element_at(data, group, element)
    out[at + 4 : at + 6] = vr
    if value is not None:
        out[at + 8 : at + 8 + len(value)] = value
    return bytes(out)


# ---- PNG, JPEG and zip builders ---------------------------------------------------------------------


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">L", len(body)) + kind + body + struct.pack(">L", zlib.crc32(kind + body))


def _png(width: int, height: int, bit_depth: int, idat: bytes) -> bytes:
    ihdr = struct.pack(">LLBBBBB", width, height, bit_depth, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def png_bomb(side: int = 30_000) -> bytes:
    """A real 1-bit PNG of ``side`` x ``side`` black pixels: ~140 kB that inflate to ~112 MB (900 Mpx as 8-bit)."""
    row = bytes(1 + side // 8)
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row * 1000) for _ in range(side // 1000)) + packer.flush()
    return _png(side, side, 1, idat)


def png_lying_header(side: int = 100_000) -> bytes:
    """IHDR promises ``side`` x ``side`` 8-bit pixels; the data holds a few rows."""
    return _png(side, side, 8, zlib.compress(bytes(4 * (side + 1))))


def _png_idat(*, crc_only: bool) -> bytes:
    """A PNG whose IDAT checksum is wrong (the pixels intact), or whose compressed pixels are noise."""
    data = bytearray(make_png(6, shape=(64, 64)))
    at = data.find(b"IDAT")
    length = struct.unpack_from(">L", data, at - 4)[0]
    if crc_only:
        data[at + 4 + length] ^= 0xFF
        return bytes(data)
    noise = bytes(random.Random(7).getrandbits(8) for _ in range(length))
    return bytes(data[: at - 4]) + _png_chunk(b"IDAT", noise) + bytes(data[at + 8 + length :])


def _jpeg_sof(width: int, height: int) -> bytes:
    data = bytearray(make_jpeg(shape=(64, 64)))
    sof = next(i for i in range(2, len(data) - 9) if data[i] == 0xFF and data[i + 1] in (0xC0, 0xC2))
    struct.pack_into(">HH", data, sof + 5, height, width)
    return bytes(data)


def _zip(*members: tuple[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for name, data in members:
            archive.writestr(name, data)
    return buffer.getvalue()


def zip_bomb(megabytes: int = 64) -> bytes:
    """One member of ``megabytes`` MB of zeros, deflated about 1000:1."""
    buffer = io.BytesIO()
    with (
        zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive,
        archive.open("IM0001.dcm", "w", force_zip64=True) as member,
    ):
        for _ in range(megabytes):
            member.write(bytes(2**20))
    return buffer.getvalue()


def _zip_patched(data: bytes, *, central_offset: int, local_offset: int, value: int, size: int) -> bytes:
    out = bytearray(data)
    fmt = "<L" if size == 4 else "<H"
    struct.pack_into(fmt, out, out.find(b"PK\x01\x02") + central_offset, value)
    struct.pack_into(fmt, out, out.find(b"PK\x03\x04") + local_offset, value)
    return bytes(out)


def _zip_declaring_size(megabytes: int) -> bytes:
    data = _zip(("IM0001.dcm", _dicom(90)), method=zipfile.ZIP_STORED)
    return _zip_patched(data, central_offset=24, local_offset=22, value=megabytes * 2**20, size=4)


def _zip_encrypted_flag() -> bytes:
    data = _zip(("IM0001.dcm", _dicom(91)), method=zipfile.ZIP_STORED)
    return _zip_patched(data, central_offset=8, local_offset=6, value=1, size=2)


def _zip_bad_crc() -> bytes:
    member = _dicom(92)
    data = bytearray(_zip(("IM0001.dcm", member), method=zipfile.ZIP_STORED))
    data[data.find(member) + len(member) // 2] ^= 0xFF
    return bytes(data)


def _zip_many(count: int) -> bytes:
    return _zip(*[(f"IM{i:05d}", b"x") for i in range(count)], method=zipfile.ZIP_STORED)


def _deflated_dicom_bomb(megabytes: int = 600) -> bytes:
    """A deflated-syntax DICOM whose body inflates to ``megabytes`` MB of zeros (built in ~0.1 s)."""
    head = _dicom(93)
    meta_end = PREAMBLE + 4 + 12 + struct.unpack_from("<L", head, PREAMBLE + 4 + 8)[0]
    meta = _meta_with_syntax(head[:meta_end], b"1.2.840.10008.1.2.1.99\x00")
    packer = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    chunk = bytes(2**20)
    first = packer.compress(chunk) + packer.flush(zlib.Z_FULL_FLUSH)
    # After a full flush the compressor holds no history: the same block may be repeated as is.
    repeat = packer.compress(chunk) + packer.flush(zlib.Z_FULL_FLUSH)
    return meta + first + repeat * (megabytes - 1) + packer.flush()


def _meta_with_syntax(meta: bytes, syntax: bytes) -> bytes:
    at = meta.find(b"\x02\x00\x10\x00UI")
    old = struct.unpack_from("<H", meta, at + 6)[0]
    rebuilt = meta[:at] + meta[at : at + 6] + struct.pack("<H", len(syntax)) + syntax + meta[at + 8 + old :]
    return rebuilt[:140] + struct.pack("<L", len(rebuilt) - 144) + rebuilt[144:]


# ---- the corpus ---------------------------------------------------------------------------------------

XSS = {
    # attribute of the stored rows -> (DICOM keyword for make_dicom, payload)
    "patient.name": ("patient_name", '<script>alert("name")</script>'),
    "patient.patient_id": ("patient_id", "<script>alert(1)</script>"),
    "study.description": ("study_description", '<script>alert("desc")</script><img src=x onerror=alert(2)>'),
    "study.accession_number": ("accession_number", "<script>x</script>"),
    "image.body_part": ("body_part", "<script>b</script>"),
    "image.view_position": ("view", '"><svg onload=1>'),
    "image.modality": ("modality", '"><img src=x>'),
}


def _truncated() -> list[Hostile]:
    base = _dicom(1)
    pixels = _element_at(base, 0x7FE0, 0x0010)
    cuts = {
        "1-byte": 1,
        "mid-preamble": 64,
        "preamble-only": PREAMBLE,
        "magic-only": PREAMBLE + 4,
        "mid-meta": PREAMBLE + 30,
        "mid-dataset": _element_at(base, 0x0010, 0x0010) + 3,
        "pixel-header": pixels + 6,
        "pixels-quarter": pixels + 12 + 1024,
        "pixels-half": pixels + 12 + 2048,
        "last-byte": len(base) - 1,
    }
    return [
        Hostile(f"truncated-{label}.dcm", base[:at], REFUSED, "truncated", DAMAGED + r"|no pixel data")
        for label, at in cuts.items()
    ]


def _lying_lengths() -> list[Hostile]:
    lut = _lut_descriptor_past_item()
    return [
        Hostile(
            "length-pixels-past-eof.dcm",
            _with_length(_dicom(2), 0x7FE0, 0x0010, 0x7FFFFFF0),
            REFUSED,
            "lying-length",
            "truncated",
        ),
        Hostile(
            "length-name-past-eof.dcm",
            _with_length(_dicom(3, shape=(8, 8)), 0x0010, 0x0010, 0xFFFF),
            REFUSED,
            "lying-length",
            "truncated",
        ),
        Hostile("length-odd-name.dcm", _with_length(_dicom(4), 0x0010, 0x0010, 13), REFUSED, "lying-length", DAMAGED),
        Hostile(
            "length-odd-pixels.dcm",
            _with_length(_dicom(5), 0x7FE0, 0x0010, 4095),
            REFUSED,
            "lying-length",
            "less pixel data",
        ),
        Hostile("length-past-item.dcm", lut, REFUSED, "lying-length", "claims to be longer"),
        Hostile("pixels-short-for-rows.dcm", _rewrite(_dicom(6), Rows=128), REFUSED, "lying-length", "less pixel data"),
    ]


def _lut_descriptor_past_item() -> bytes:
    from pydicom import dcmread

    from tests.dicom_factory import dataset_bytes

    ds = dcmread(io.BytesIO(_dicom(7, shape=(16, 16), voi_lut=True)))
    ds["VOILUTSequence"].is_undefined_length = False
    ds.VOILUTSequence[0].is_undefined_length_sequence_item = False
    data = bytearray(dataset_bytes(ds))
    at = data.find(b"\x28\x00\x02\x30")  # (0028,3002) LUT Descriptor, inside the item
    struct.pack_into("<H", data, at + 6, 300)  # past the item's end, not past the file
    return bytes(data)


def _huge() -> list[Hostile]:
    too_large = r"exceed|limit|megapixels"
    return [
        Hostile("rows-columns-60000.dcm", _rewrite(_dicom(8), Rows=60000, Columns=60000), REFUSED, "huge", too_large),
        Hostile(
            "rows-columns-65535-16bit.dcm",
            _rewrite(_dicom(9, bits=16), Rows=65535, Columns=65535),
            REFUSED,
            "huge",
            too_large,
        ),
        Hostile(
            "frames-10000-of-1024.dcm",
            _rewrite(_dicom(10), Rows=1024, Columns=1024, NumberOfFrames=10_000),
            REFUSED,
            "huge",
            too_large,
        ),
        Hostile("png-header-100000.png", png_lying_header(), REFUSED, "huge", too_large, raster=True),
        Hostile("jpeg-sof-65535.jpg", _jpeg_sof(65535, 65535), REFUSED, "huge", too_large, raster=True),
        Hostile(
            "jpeg-frame-bigger-than-header.dcm",
            _rewrite(_dicom(11, transfer_syntax=JPEGBaseline8Bit), Rows=32, Columns=32),
            REFUSED,
            "huge",
            "header says",
        ),
    ]


def _nesting() -> list[Hostile]:
    deeper = "deeper than"
    with _lenient_pydicom():
        return [
            Hostile("nested-500.dcm", nested_sequence_dicom(500), REFUSED, "nesting", deeper),
            Hostile("nested-100000.dcm", nested_sequence_dicom(100_000), REFUSED, "nesting", deeper),
            Hostile("nested-13.dcm", nested_sequence_dicom(13), REFUSED, "nesting", deeper),
        ]


def _preambles() -> list[Hostile]:
    html = b"<html><body><script>alert(document.cookie)</script></body></html>"
    return [
        Hostile("preamble-windows-exe.dcm", _dicom(12, preamble=MZ_HEADER + bytes(112)), STORED, "preamble"),
        Hostile("preamble-linux-elf.dcm", _dicom(13, preamble=ELF_HEADER), STORED, "preamble"),
        Hostile("preamble-html.dcm", _dicom(14, preamble=html), STORED, "preamble"),
    ]


def _polyglots() -> list[Hostile]:
    pdf = b"%PDF-1.4\n1 0 obj << /Type /Catalog >> endobj\ntrailer << /Root 1 0 R >>\n%%EOF\n"
    inner = _zip(("IM0001.dcm", _dicom(15)))
    html_tag = "<html><script>alert(document.cookie)</script></html>"
    return [
        Hostile("pdf-zip.dcm", pdf + inner, REFUSED, "polyglot", "PDF"),
        Hostile("gif-zip.png", make_other_image("GIF") + inner, REFUSED, "polyglot", "GIF"),
        Hostile("dicom-zip.dcm", _dicom(16) + _zip(("x.txt", b"hello")), REFUSED, "polyglot", DAMAGED),
        Hostile("jpeg-zip.jpg", make_jpeg(2, shape=(64, 64)) + inner, STORED, "polyglot", raster=True),
        Hostile(
            "html-in-description.dcm",
            _dicom(17, study_description=html_tag),
            STORED,
            "polyglot",
            xss_field="study.description",
        ),
        Hostile(
            "html-document.dcm",
            b"<!DOCTYPE html><html><script>alert(1)</script></html>\n",
            REFUSED,
            "polyglot",
            "text file",
        ),
        Hostile(
            "svg-script.png",
            b'<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>\n',
            REFUSED,
            "polyglot",
            "text file",
        ),
    ]


def _bombs() -> list[Hostile]:
    return [
        Hostile("png-bomb-30000.png", png_bomb(), REFUSED, "bomb", r"exceed|limit", raster=True),
        Hostile("deflated-dicom-bomb.dcm", _deflated_dicom_bomb(), REFUSED, "bomb", "expands beyond"),
        Hostile("zip-bomb.zip", zip_bomb(), REFUSED, "bomb", r"bomb|limit|large"),
    ]


def _zips() -> list[Hostile]:
    return [
        Hostile("zip-path-traversal.zip", _zip(("../../etc/passwd", _dicom(18))), SKIPPED, "zip", r"'\.\.'"),
        Hostile("zip-absolute-path.zip", _zip(("/etc/cron.d/pneumo", b"* * * * * root id\n")), REFUSED, "zip", "text"),
        Hostile("zip-5001-members.zip", _zip_many(5001), REFUSED, "zip", "more than 5000"),
        Hostile("zip-encrypted.zip", _zip_encrypted_flag(), REFUSED, "zip", r"not a dicom|unreadable|encrypted"),
        Hostile("zip-bad-crc.zip", _zip_bad_crc(), REFUSED, "zip", r"not a dicom|unreadable|damaged"),
        Hostile("zip-in-zip.zip", _zip(("inner.zip", _zip(("IM1", _dicom(19))))), REFUSED, "zip", "ZIP"),
        Hostile("zip-truncated.zip", _zip(("IM1", _dicom(20)))[:300], REFUSED, "zip", "ZIP"),
        Hostile(
            "zip-declares-300mb.zip",
            _zip_declaring_size(300),
            REFUSED,
            "zip",
            r"limit|large",
        ),
    ]


def _impostors() -> list[Hostile]:
    entries = []
    for fmt in ("GIF", "TIFF", "WEBP", "BMP"):
        for ext in ("png", "dcm"):
            entries.append(Hostile(f"{fmt.lower()}-as.{ext}", make_other_image(fmt), REFUSED, "impostor", fmt))
    entries += [
        Hostile("pdf.dcm", b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n" * 8, REFUSED, "impostor", "PDF"),
        Hostile("windows-exe.dcm", MZ_HEADER + bytes(600), REFUSED, "impostor", "Windows program"),
        Hostile("linux-elf.png", ELF_HEADER + bytes(600), REFUSED, "impostor", "Linux program"),
    ]
    return entries


def _damaged_rasters() -> list[Hostile]:
    png, jpeg = make_png(3, shape=(64, 64)), make_jpeg(4, shape=(64, 64))
    return [
        Hostile("truncated.png", png[: len(png) // 2], REFUSED, "raster", DAMAGED, raster=True),
        Hostile("truncated.jpg", jpeg[: len(jpeg) // 2], REFUSED, "raster", DAMAGED, raster=True),
        # Pillow checks the CRCs of the chunks it parses, not of the pixel data it inflates: the pixels are intact.
        Hostile("png-bad-idat-crc.png", _png_idat(crc_only=True), STORED, "raster", raster=True),
        Hostile("png-noise-idat.png", _png_idat(crc_only=False), REFUSED, "raster", DAMAGED, raster=True),
        Hostile("png-16bit.png", make_png(5, bits=16, shape=(64, 64)), STORED, "raster", raster=True),
    ]


def _garbage() -> list[Hostile]:
    rng = random.Random(20240601)
    return [
        Hostile("zero-bytes.dcm", b"", REFUSED, "garbage", "empty"),
        Hostile("random-bytes.dcm", bytes(rng.getrandbits(8) for _ in range(4096)), REFUSED, "garbage", "not a"),
        Hostile("text.dcm", b"Patient is coughing since Tuesday\n" * 30, REFUSED, "garbage", "text file"),
        Hostile("nul-bytes.png", bytes(10_000), REFUSED, "garbage", "not a"),
        Hostile("dicm-then-noise.dcm", bytes(128) + b"DICM" + bytes(range(256)) * 8, REFUSED, "garbage", DAMAGED),
    ]


def _xss() -> list[Hostile]:
    entries = []
    for n, (field, (keyword, payload)) in enumerate(XSS.items(), start=30):
        kwargs = {keyword: payload}
        if keyword != "patient_id":
            kwargs["patient_id"] = f"XSS-{n}"
        entries.append(
            Hostile(f"xss-{field.replace('.', '-')}.dcm", _dicom(n, **kwargs), STORED, "xss", xss_field=field)
        )
    return entries


def _multiframe() -> list[Hostile]:
    return [
        Hostile(
            "frames-10000-declared.dcm",
            _rewrite(_dicom(21), NumberOfFrames=10_000),
            REFUSED,
            "multiframe",
            "less pixel data",
        ),
        Hostile(
            "frames-2147483647.dcm",
            _rewrite(_dicom(22), NumberOfFrames=2_147_483_647),
            REFUSED,
            "multiframe",
            r"exceed|limit",
        ),
        Hostile("frames-10000-real.dcm", _dicom(23, shape=(4, 4), frames=10_000), STORED, "multiframe"),
    ]


def _wrong_vrs() -> list[Hostile]:
    return [
        Hostile(
            "vr-rows-signed-minus-one.dcm",
            _with_vr(_dicom(24), 0x0028, 0x0010, b"SS", b"\xff\xff"),
            REFUSED,
            "wrong-vr",
            "image size",
        ),
        Hostile("vr-rows-as-text.dcm", _with_vr(_dicom(25), 0x0028, 0x0010, b"LO", b"ab"), REFUSED, "wrong-vr", "size"),
        Hostile(
            "vr-lowercase.dcm",
            _with_vr(_dicom(26), 0x0010, 0x0010, b"pn"),
            REFUSED,
            "wrong-vr",
            "value representation",
        ),
        Hostile("vr-name-unknown.dcm", _with_vr(_dicom(27), 0x0008, 0x0050, b"XX"), STORED, "wrong-vr"),
    ]


def _overlong() -> list[Hostile]:
    return [
        Hostile(
            "overlong-patient-id.dcm",
            _dicom(40, patient_id="P" * 100),
            REFUSED,
            "overlong",
            r"patient ?id",
        ),
        Hostile(
            "overlong-sop-uid.dcm",
            _dicom(41, sop_uid="1.2." + "3" * 100),
            REFUSED,
            "overlong",
            "UID",
        ),
        Hostile("overlong-view-position.dcm", _dicom(42, view="V" * 40), STORED, "overlong"),
        Hostile(
            "overlong-description.dcm",
            _dicom(43, study_description="D" * 300),
            STORED,
            "overlong",
        ),
    ]


BUILDERS: tuple[Callable[[], list[Hostile]], ...] = (
    _truncated,
    _lying_lengths,
    _huge,
    _nesting,
    _preambles,
    _polyglots,
    _bombs,
    _zips,
    _impostors,
    _damaged_rasters,
    _garbage,
    _xss,
    _multiframe,
    _wrong_vrs,
    _overlong,
)


@lru_cache(maxsize=1)
def corpus() -> tuple[Hostile, ...]:
    """Every entry, built once per process (stored entries keep their UIDs, so a replay finds duplicates)."""
    entries = tuple(entry for build in BUILDERS for entry in build())
    names = Counter(entry.name for entry in entries)
    duplicates = [name for name, count in names.items() if count > 1]
    if duplicates:
        raise ValueError(f"corpus names must be unique: {duplicates}")
    return entries


def replayable() -> tuple[Hostile, ...]:
    """The entries today's code handles as expected: batches, the API and import_studies replay these."""
    return tuple(entry for entry in corpus() if not entry.known_bug)


def summary() -> str:
    entries = corpus()
    categories = Counter(entry.category for entry in entries)
    outcomes = Counter(entry.outcome for entry in entries)
    size = sum(len(entry.data) for entry in entries)
    parts = ", ".join(f"{name} {count}" for name, count in categories.items())
    return (
        f"{len(entries)} files ({outcomes[STORED]} stored, {outcomes[REFUSED]} refused, {outcomes[SKIPPED]} skipped; "
        f"{size / 2**20:.1f} MB): {parts}"
    )


if __name__ == "__main__":
    for entry in corpus():
        print(f"{entry.category:<13} {entry.outcome:<8} {len(entry.data):>10}  {entry.name}")
    print(summary())
