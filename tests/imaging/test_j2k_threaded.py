"""The threaded JPEG 2000 path gives exactly what pydicom's own decoders give."""

from __future__ import annotations

import io

import numpy as np
import pydicom
import pytest
from pydicom.uid import JPEG2000, JPEG2000Lossless

from cases.imaging.dicom import _j2k_threaded
from tests.dicom_factory import make_dicom


@pytest.mark.parametrize("bits", [8, 12, 16])
@pytest.mark.parametrize("signed", [False, True])
@pytest.mark.parametrize("syntax", [JPEG2000Lossless, JPEG2000], ids=["lossless", "lossy"])
def test_it_decodes_jpeg2000_like_pydicom(bits: int, signed: bool, syntax: str) -> None:
    ds = pydicom.dcmread(io.BytesIO(make_dicom(bits=bits, signed=signed, transfer_syntax=syntax)))
    fast = _j2k_threaded(ds, ds.file_meta.TransferSyntaxUID, 2)
    assert fast is not None
    assert fast.dtype == ds.pixel_array.dtype and np.array_equal(fast, ds.pixel_array)


def test_it_leaves_multi_frame_jpeg2000_to_pydicom() -> None:
    ds = pydicom.dcmread(io.BytesIO(make_dicom(frames=2, transfer_syntax=JPEG2000Lossless)))
    assert _j2k_threaded(ds, ds.file_meta.TransferSyntaxUID, 2) is None
