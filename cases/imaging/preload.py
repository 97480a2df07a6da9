"""Imported once by the decoding forkserver so that every child starts with all of this loaded.

pydicom imports its codec plugins lazily, on the first image of each transfer
syntax; importing them here moves that cost out of every upload.
"""

from __future__ import annotations

import importlib
import io
import logging
import warnings

from PIL import Image, ImageOps, PngImagePlugin  # noqa: F401 - imported to be inherited
from pydicom import dcmread  # noqa: F401
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.pixels import get_decoder
from pydicom.uid import UID, ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

from . import decoding as _decoding
from . import dicom as _dicom  # noqa: F401
from . import raster as _raster  # noqa: F401

_PLUGIN_MODULES = ("pylibjpeg", "libjpeg", "openjpeg", "rle", "jpeg_ls", "PIL.JpegImagePlugin", "PIL.Jpeg2KImagePlugin")
_COMPRESSED_SYNTAXES = (
    "1.2.840.10008.1.2.1.99",
    "1.2.840.10008.1.2.4.50",
    "1.2.840.10008.1.2.4.51",
    "1.2.840.10008.1.2.4.57",
    "1.2.840.10008.1.2.4.70",
    "1.2.840.10008.1.2.4.80",
    "1.2.840.10008.1.2.4.81",
    "1.2.840.10008.1.2.4.90",
    "1.2.840.10008.1.2.4.91",
    "1.2.840.10008.1.2.5",
)


def _import_plugins() -> None:
    for name in _PLUGIN_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:
            continue


def _load_decoders() -> None:
    for syntax in _COMPRESSED_SYNTAXES:
        try:
            get_decoder(UID(syntax)).available_plugins  # noqa: B018 - resolves the plugins now
        except (NotImplementedError, ValueError):
            continue


def _decode_tiny_image() -> None:
    # Runs the native pipeline once, filling pydicom's lazily built tables.
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.Rows = ds.Columns = 2
    ds.SamplesPerPixel, ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 1, 8, 8, 7, 0
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.PixelData = bytes(4)
    buffer = io.BytesIO()
    ds.save_as(buffer, enforce_file_format=True)
    _decoding.decode(buffer.getvalue(), filename="warm-up.dcm", max_bytes=1 << 20, max_pixels=16)


def _warm_up() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _import_plugins()
        _load_decoders()
        Image.init()
        _decode_tiny_image()


# Anything but ImportError escaping a preload module kills the forkserver, and with it every upload.
try:
    _warm_up()
except Exception:
    logging.getLogger(__name__).warning("decoder warm-up failed; children will import lazily", exc_info=True)
