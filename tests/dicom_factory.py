"""Build DICOM, PNG and JPEG files for tests from the 16 real labelled sample images.

No Django here: upload, API and worker tests can all use it.

    from tests.dicom_factory import make_dicom, make_jpeg, make_png, stored_pixels

    data = make_dicom()                                   # 8-bit CR chest, explicit VR LE
    data = make_dicom(1, transfer_syntax=JPEG2000Lossless, bits=12, patient_age="004Y")
    data = make_dicom(modality="CT", body_part="KNEE", frames=3)
    data = rewrite_dicom(data, remove=("PatientAge",), Rows=4096)
    png = make_png(bits=16); jpeg = make_jpeg(exif_orientation=6)

``source`` picks the picture: an index into ``packaged_sample_images()`` (0-15;
0-7 are NORMAL, 8-15 PNEUMONIA), a path, or an array. Pictures are resized to
``shape`` (rows, columns), small by default so tests stay fast. What
``make_dicom`` stores is exactly ``stored_pixels(...)`` with the same
arguments, so lossless round trips can be compared value for value.

Supported transfer syntaxes: implicit/explicit VR little endian, explicit VR
big endian, deflated, RLE, JPEG baseline (Pillow), JPEG lossless process 14
and SV1 (a small encoder below: no library here encodes it), JPEG-LS lossless
and near-lossless, JPEG 2000 lossless and lossy.
"""

from __future__ import annotations

import io
import warnings
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.sequence import Sequence
from pydicom.uid import (
    JPEG2000,
    PYDICOM_IMPLEMENTATION_UID,
    UID,
    DeflatedExplicitVRLittleEndian,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLossless,
    JPEGLosslessSV1,
    JPEGLSNearLossless,
    generate_uid,
)

from inference.model_package import packaged_sample_images

DEFAULT_SHAPE = (256, 320)  # rows, columns: not square, so a transposition would show
UNCOMPRESSED = (ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian, DeflatedExplicitVRLittleEndian)
SOP_CLASSES = {
    "CR": "1.2.840.10008.5.1.4.1.1.1",
    "DX": "1.2.840.10008.5.1.4.1.1.1.1",
    "SC": "1.2.840.10008.5.1.4.1.1.7",
    "OT": "1.2.840.10008.5.1.4.1.1.7",
    "CT": "1.2.840.10008.5.1.4.1.1.2",
    "MR": "1.2.840.10008.5.1.4.1.1.4",
    "US": "1.2.840.10008.5.1.4.1.1.6.1",
    "MG": "1.2.840.10008.5.1.4.1.1.1.2",
}
MULTIFRAME_SC = "1.2.840.10008.5.1.4.1.1.7.4"  # Multi-frame True Color SC; any multi-frame class will do
Source = int | Path | np.ndarray


# ---- pictures ------------------------------------------------------------------------------------


def sample_image(index: int = 0) -> Path:
    return _samples()[index][0]


@lru_cache(maxsize=1)
def _samples() -> tuple[tuple[Path, str], ...]:
    return tuple(packaged_sample_images())


def sample_pixels(source: Source = 0, *, shape: tuple[int, int] = DEFAULT_SHAPE) -> np.ndarray:
    """The picture as 8-bit greyscale, ``shape`` (rows, columns)."""
    if isinstance(source, np.ndarray):
        return source
    path = sample_image(source) if isinstance(source, int) else Path(source)
    return _resized_grey(path, shape).copy()


@lru_cache(maxsize=64)
def _resized_grey(path: Path, shape: tuple[int, int]) -> np.ndarray:
    with Image.open(path) as image:
        grey = image.convert("L")
        return np.asarray(grey.resize((shape[1], shape[0]), Image.Resampling.BILINEAR))


def stored_pixels(
    source: Source = 0,
    *,
    shape: tuple[int, int] = DEFAULT_SHAPE,
    bits: int = 8,
    signed: bool = False,
    photometric: str = "MONOCHROME2",
) -> np.ndarray:
    """Exactly what ``make_dicom`` stores for these arguments.

    8-bit grey is spread over ``bits`` (12-bit: v*16 + v//16, 16-bit: v*257);
    signed data is shifted down by 2**(bits-1); MONOCHROME1 is stored inverted,
    so every variant *looks* the same once correctly decoded. An array source
    that is not uint8 is taken as stored values as they are.
    """
    if isinstance(source, np.ndarray) and source.dtype != np.uint8:
        return source
    grey = sample_pixels(source, shape=shape).astype(np.int64)
    values = {8: grey, 12: grey * 16 + grey // 16, 16: grey * 257}[bits]
    if photometric == "MONOCHROME1":
        values = (1 << bits) - 1 - values
    if signed:
        values = values - (1 << (bits - 1))
    return values.astype(_stored_dtype(bits, signed))


def _stored_dtype(bits: int, signed: bool) -> np.dtype:
    if bits <= 8:
        return np.dtype(np.int8 if signed else np.uint8)
    return np.dtype(np.int16 if signed else np.uint16)


def default_voi_lut(bits: int) -> tuple[int, np.ndarray]:
    """A square-root VOI LUT over the middle half of the stored range: ``(first_mapped, table)``, 12-bit output."""
    first, entries = (1 << bits) // 4, (1 << bits) // 2
    table = np.rint(np.sqrt(np.linspace(0.0, 1.0, entries)) * 4095).astype(np.uint16)
    return first, table


# ---- DICOM ---------------------------------------------------------------------------------------


def make_dicom(
    source: Source = 0,
    *,
    transfer_syntax: str = ExplicitVRLittleEndian,
    shape: tuple[int, int] = DEFAULT_SHAPE,
    modality: str | None = "CR",
    sop_class: str | None = None,
    bits: int = 8,
    signed: bool = False,
    photometric: str = "MONOCHROME2",
    window: tuple[float, float] | list[tuple[float, float]] | None = None,
    voi_function: str | None = None,
    voi_lut: bool = False,
    rescale: tuple[float, float] | None = None,
    frames: int = 1,
    patient_id: str | None = "PID-0001",
    patient_name: str | None = "TEST^PATIENT",
    charset: str | list[str] | None = None,
    birth_date: str | None = None,
    sex: str | None = "F",
    patient_age: str | None = "003Y",
    study_date: str | None = "20240115",
    study_uid: str | None = None,
    series_uid: str | None = None,
    sop_uid: str | None = None,
    accession_number: str | None = "ACC0001",
    study_description: str | None = "XR CHEST 1 VIEW",
    body_part: str | None = "CHEST",
    view: str | None = "AP",
    pixel_spacing: tuple[float, float] | None = (0.143, 0.143),
    quality: int = 95,
    lossy_ratio: float | None = None,
    preamble: bytes = b"",
    extra: dict[str, Any] | None = None,
) -> bytes:
    """A DICOM Part 10 file as bytes. ``None`` leaves an attribute out.

    ``window`` is (center, width), or a list of pairs written as multi-valued
    attributes; ``rescale`` is (slope, intercept); ``voi_lut`` adds
    ``default_voi_lut(bits)``; ``lossy_ratio`` sets the JPEG 2000 compression
    ratio or the JPEG-LS NEAR value; ``preamble`` fills the 128-byte preamble;
    ``extra`` sets any further attributes by keyword.
    """
    pixels = stored_pixels(source, shape=shape, bits=bits, signed=signed, photometric=photometric)
    ds = _base_dataset(modality, sop_class or _sop_class(modality, frames), sop_uid)
    _set_patient(ds, charset, patient_id, patient_name, birth_date, sex, patient_age)
    _set_study(ds, study_uid, series_uid, accession_number, study_date, study_description)
    ds.BodyPartExamined, ds.ViewPosition = body_part, view
    _set_image(ds, pixels, bits=bits, signed=signed, photometric=photometric, frames=frames)
    _set_presentation(ds, bits, window, voi_function, voi_lut, rescale, pixel_spacing)
    for keyword, value in (extra or {}).items():
        setattr(ds, keyword, value)
    _drop_empty(ds)
    _encode_pixels(ds, UID(transfer_syntax), np.stack([pixels] * frames), bits, quality, lossy_ratio)
    return dataset_bytes(ds, preamble=preamble)


def dataset_bytes(ds: Dataset, *, preamble: bytes = b"") -> bytes:
    """Serialise a dataset as a Part 10 file, in the transfer syntax its file meta names."""
    buffer = io.BytesIO()
    ds.preamble = preamble.ljust(128, b"\x00")[:128]
    ds.save_as(buffer, enforce_file_format=True)
    return buffer.getvalue()


def rewrite_dicom(data: bytes, *, remove: tuple[str, ...] = (), **attributes: Any) -> bytes:
    """The file with attributes set (by keyword) or removed, pixel data untouched: for lying headers.

    rewrite_dicom(make_dicom(), Rows=60000, Columns=60000)
    rewrite_dicom(make_dicom(), remove=("PixelData",))
    """
    ds = dcmread(io.BytesIO(data))
    for keyword in remove:
        delattr(ds, keyword)
    for keyword, value in attributes.items():
        setattr(ds, keyword, value)
    return dataset_bytes(ds, preamble=ds.preamble or b"")


def _sop_class(modality: str | None, frames: int) -> str:
    if frames > 1 and modality in ("SC", "OT", None):
        return MULTIFRAME_SC
    return SOP_CLASSES.get(modality or "SC", SOP_CLASSES["SC"])


def _base_dataset(modality: str | None, sop_class: str, sop_uid: str | None) -> Dataset:
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.MediaStorageSOPClassUID = sop_class
    ds.file_meta.MediaStorageSOPInstanceUID = sop_uid or generate_uid()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, ds.file_meta.MediaStorageSOPInstanceUID
    ds.Modality = modality
    return ds


def _set_patient(
    ds: Dataset,
    charset: str | list[str] | None,
    patient_id: str | None,
    patient_name: str | None,
    birth_date: str | None,
    sex: str | None,
    patient_age: str | None,
) -> None:
    if charset is not None:
        ds.SpecificCharacterSet = charset  # before the names, which pydicom encodes with it on writing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tests pass malformed dates and ages on purpose
        ds.PatientID, ds.PatientName, ds.PatientBirthDate = patient_id, patient_name, birth_date
        ds.PatientSex, ds.PatientAge = sex, patient_age


def _set_study(
    ds: Dataset,
    study_uid: str | None,
    series_uid: str | None,
    accession_number: str | None,
    study_date: str | None,
    study_description: str | None,
) -> None:
    ds.StudyInstanceUID = study_uid or generate_uid()
    ds.SeriesInstanceUID = series_uid or generate_uid()
    ds.AccessionNumber, ds.StudyDate, ds.StudyDescription = accession_number, study_date, study_description
    ds.StudyTime, ds.SeriesNumber, ds.InstanceNumber = "101500", 1, 1


def _set_image(ds: Dataset, pixels: np.ndarray, *, bits: int, signed: bool, photometric: str, frames: int) -> None:
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated = 8 if bits <= 8 else 16
    ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits, bits - 1, int(signed)
    if frames > 1:
        ds.NumberOfFrames = frames


def _set_presentation(
    ds: Dataset,
    bits: int,
    window: tuple[float, float] | list[tuple[float, float]] | None,
    voi_function: str | None,
    voi_lut: bool,
    rescale: tuple[float, float] | None,
    pixel_spacing: tuple[float, float] | None,
) -> None:
    if window is not None:
        pairs = window if isinstance(window, list) else [window]
        ds.WindowCenter = [c for c, _ in pairs] if len(pairs) > 1 else pairs[0][0]
        ds.WindowWidth = [w for _, w in pairs] if len(pairs) > 1 else pairs[0][1]
    ds.VOILUTFunction = voi_function
    if voi_lut:
        ds.VOILUTSequence = Sequence([_voi_lut_item(bits)])
    if rescale is not None:
        ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = rescale[0], rescale[1], "US"
    ds.ImagerPixelSpacing = list(pixel_spacing) if pixel_spacing else None


def _voi_lut_item(bits: int) -> Dataset:
    first, table = default_voi_lut(bits)
    item = Dataset()
    item.LUTDescriptor = [len(table), first, 12]
    item.LUTData = table.tolist()
    item["LUTData"].VR = "US"
    return item


def _drop_empty(ds: Dataset) -> None:
    for keyword in [elem.keyword for elem in ds if elem.value is None and elem.keyword]:
        del ds[keyword]


def _encode_pixels(
    ds: Dataset, syntax: UID, frames: np.ndarray, bits: int, quality: int, lossy_ratio: float | None
) -> None:
    ds.file_meta.TransferSyntaxUID = syntax
    array = frames[0] if len(frames) == 1 else frames
    if syntax in UNCOMPRESSED:
        _set_native(ds, array, big_endian=syntax == ExplicitVRBigEndian)
    elif syntax == JPEGBaseline8Bit:
        _set_encapsulated(ds, [_pillow_jpeg(frame, quality) for frame in frames], lossy=True)
    elif syntax in (JPEGLossless, JPEGLosslessSV1):
        _set_encapsulated(ds, [encode_jpeg_lossless(frame, bits) for frame in frames], lossy=False)
    else:
        _compress(ds, syntax, array, lossy_ratio)


def _set_native(ds: Dataset, array: np.ndarray, *, big_endian: bool) -> None:
    ds.PixelData = array.astype(array.dtype.newbyteorder(">" if big_endian else "<")).tobytes()
    ds["PixelData"].VR = "OB" if array.dtype.itemsize == 1 else "OW"


def _set_encapsulated(ds: Dataset, fragments: list[bytes], *, lossy: bool) -> None:
    ds.PixelData = encapsulate(fragments)
    ds["PixelData"].VR = "OB"
    ds.LossyImageCompression = "01" if lossy else "00"


def _compress(ds: Dataset, syntax: UID, array: np.ndarray, lossy_ratio: float | None) -> None:
    options: dict[str, Any] = {}
    if syntax == JPEG2000:
        options["j2k_cr"] = [lossy_ratio or 10]
    if syntax == JPEGLSNearLossless:
        options["jls_error"] = int(lossy_ratio or 2)
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.compress(syntax, array, generate_instance_uid=False, **options)


def _pillow_jpeg(frame: np.ndarray, quality: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(frame.astype(np.uint8)).save(buffer, format="JPEG", quality=quality)
    return buffer.getvalue()


# ---- lossless JPEG (process 14, first-order prediction) -----------------------------------------


def encode_jpeg_lossless(pixels: np.ndarray, precision: int) -> bytes:
    """Lossless JPEG, selection value 1, of a 2-D unsigned array: valid for JPEG Lossless and SV1."""
    rows, columns = pixels.shape
    categories, extra = _sv1_symbols(pixels.astype(np.int64), precision)
    entropy = _pack_codes(categories, extra)
    sof3 = b"\xff\xc3" + _u16(11) + bytes([precision]) + _u16(rows) + _u16(columns) + b"\x01\x01\x11\x00"
    # All 17 difference categories get a 5-bit code: canonical codes 0..16 in order.
    dht = b"\xff\xc4" + _u16(36) + b"\x00" + bytes([0, 0, 0, 0, 17] + [0] * 11) + bytes(range(17))
    sos = b"\xff\xda" + _u16(8) + b"\x01\x01\x00\x01\x00\x00"
    return b"\xff\xd8" + sof3 + dht + sos + entropy.replace(b"\xff", b"\xff\x00") + b"\xff\xd9"


def _sv1_symbols(x: np.ndarray, precision: int) -> tuple[np.ndarray, np.ndarray]:
    prediction = np.empty_like(x)
    prediction[0, 0] = 1 << (precision - 1)
    prediction[0, 1:] = x[0, :-1]
    prediction[1:, 0] = x[:-1, 0]
    prediction[1:, 1:] = x[1:, :-1]
    diff = ((x - prediction) % 65536).ravel()
    diff[diff > 32768] -= 65536
    categories = np.where(diff == 0, 0, np.floor(np.log2(np.abs(diff) + 0.5)).astype(np.int64) + 1)
    categories[diff == 32768] = 16
    extra = np.where(diff >= 0, diff, diff + (1 << categories) - 1)
    extra[categories == 16] = 0
    return categories, extra


def _pack_codes(categories: np.ndarray, extra: np.ndarray) -> bytes:
    lengths = 5 + np.where(categories == 16, 0, categories)
    values = (categories << (lengths - 5)) | extra
    shifts = np.arange(20, -1, -1)
    bits = ((values[:, None] >> shifts) & 1).astype(np.uint8)
    stream = bits[shifts[None, :] < lengths[:, None]]
    padding = (-len(stream)) % 8
    return np.packbits(np.concatenate([stream, np.ones(padding, np.uint8)])).tobytes()


def _u16(value: int) -> bytes:
    return int(value).to_bytes(2, "big")


# ---- PNG, JPEG and impostors ---------------------------------------------------------------------


def make_png(
    source: Source = 0, *, bits: int = 8, shape: tuple[int, int] = DEFAULT_SHAPE, mode: str | None = None
) -> bytes:
    """A greyscale PNG (8 or 16 bits; 16-bit holds v*257), or the picture converted to ``mode`` (e.g. 'RGB')."""
    grey = sample_pixels(source, shape=shape)
    image = Image.fromarray(grey.astype(np.uint16) * 257) if bits == 16 else Image.fromarray(grey)
    return _save(image.convert(mode) if mode else image, "PNG")


def make_jpeg(
    source: Source = 0,
    *,
    shape: tuple[int, int] = DEFAULT_SHAPE,
    quality: int = 95,
    mode: str = "L",
    exif_orientation: int | None = None,
) -> bytes:
    """A JPEG; with ``exif_orientation`` the pixels are stored rotated so that the tag undoes it.

    Orientation 6 means "rotate 90 degrees clockwise to display": the stored
    picture is the upright one turned 90 degrees counter-clockwise.
    """
    image = Image.fromarray(sample_pixels(source, shape=shape)).convert(mode)
    if exif_orientation is None:
        return _save(image, "JPEG", quality=quality)
    stored = image.transpose(_UNDO_ORIENTATION[exif_orientation]) if exif_orientation != 1 else image
    exif = Image.Exif()
    exif[0x0112] = exif_orientation
    return _save(stored, "JPEG", quality=quality, exif=exif.tobytes())


# How to store an upright picture so that EXIF orientation N displays it upright again.
_UNDO_ORIENTATION = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_90,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_270,
}


def make_other_image(fmt: str, source: Source = 0, *, shape: tuple[int, int] = (64, 64)) -> bytes:
    """The picture as GIF, TIFF, WEBP or BMP, to be renamed .png in refusal tests."""
    image = Image.fromarray(sample_pixels(source, shape=shape))
    return _save(image.convert("RGB") if fmt.upper() == "WEBP" else image, fmt.upper())


def _save(image: Image.Image, fmt: str, **options: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


# ---- hostile DICOM -------------------------------------------------------------------------------


def nested_sequence_dicom(depth: int) -> bytes:
    """A valid small image whose dataset also holds ``depth`` sequences nested in each other.

    Written by hand (undefined lengths, explicit VR LE), because pydicom
    itself would recurse once per level to write it.
    """
    data = make_dicom(shape=(16, 16))
    sequence_open = b"\x08\x00\x15\x11SQ\x00\x00\xff\xff\xff\xff"  # (0008,1115) Referenced Series Sequence
    item_open = b"\xfe\xff\x00\xe0\xff\xff\xff\xff"
    item_close = b"\xfe\xff\x0d\xe0\x00\x00\x00\x00"
    sequence_close = b"\xfe\xff\xdd\xe0\x00\x00\x00\x00"
    nested = (sequence_open + item_open) * depth + (item_close + sequence_close) * depth
    at = _first_tag_offset(data, b"\x10\x00\x10\x00")  # insert in tag order, before (0010,0010)
    return data[:at] + nested + data[at:]


def _first_tag_offset(data: bytes, tag: bytes) -> int:
    at = data.find(tag, 132 + 12)
    if at < 0:
        raise ValueError("tag not found")
    return at
