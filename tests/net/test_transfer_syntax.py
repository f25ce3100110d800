"""Re-encoding between uncompressed transfer syntaxes: pixels must survive Big Endian.

Truth from outside our code: pydicom's bundled big-endian files (written by
other tools) hold the same images as their little-endian twins.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.filebase import DicomBytesIO
from pydicom.filereader import read_dataset
from pydicom.filewriter import write_dataset
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from rtforge.net import encode_for_transfer_syntax
from tests.datafiles import pydicom_file

#: (little-endian file, the same object in Explicit VR Big Endian, by another tool)
TWINS = [("MR_small.dcm", "MR_small_bigendian.dcm"),  # 16-bit
         ("rtdose.dcm", "rtdose_expb.dcm"),  # 32-bit, Implicit VR source
         ("SC_rgb_small_odd.dcm", "SC_rgb_small_odd_big_endian.dcm")]  # 8-bit RGB in OW


def _decode(data: bytes, transfer_syntax: str) -> Dataset:
    ts = transfer_syntax
    ds = read_dataset(io.BytesIO(data), ts == ImplicitVRLittleEndian, ts != ExplicitVRBigEndian)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ts
    return ds


@pytest.mark.parametrize(("little", "big"), TWINS)
def test_big_endian_matches_the_reference_file(little: str, big: str) -> None:
    original = dcmread(pydicom_file(little))
    reference = dcmread(pydicom_file(big))
    converted = _decode(encode_for_transfer_syntax(dcmread(pydicom_file(little)),
                                                   ExplicitVRBigEndian), ExplicitVRBigEndian)
    assert converted.PixelData == reference.PixelData
    assert np.array_equal(converted.pixel_array, original.pixel_array)
    got, want = converted.pixel_array.dtype, original.pixel_array.dtype
    assert (got.kind, got.itemsize) == (want.kind, want.itemsize)
    for elem in original:
        if elem.tag != 0x7FE00010:
            assert converted[elem.tag].value == elem.value, elem.keyword


@pytest.mark.parametrize(("little", "big"), TWINS)
def test_big_endian_back_to_little_endian(little: str, big: str) -> None:
    original = dcmread(pydicom_file(little))
    for target in (ExplicitVRLittleEndian, ImplicitVRLittleEndian):
        converted = _decode(encode_for_transfer_syntax(dcmread(pydicom_file(big)), target), target)
        assert converted.PixelData == original.PixelData
        assert np.array_equal(converted.pixel_array, original.pixel_array)


def test_a_naive_change_of_byte_order_corrupts_pixels() -> None:
    """Why the swap exists: pydicom alone writes OW values unchanged."""
    ds = dcmread(pydicom_file("CT_small.dcm"))
    fp = DicomBytesIO()
    fp.is_little_endian = False
    fp.is_implicit_VR = False
    write_dataset(fp, ds)
    naive = _decode(fp.getvalue(), ExplicitVRBigEndian)
    assert not np.array_equal(naive.pixel_array, ds.pixel_array)
    ours = _decode(encode_for_transfer_syntax(dcmread(pydicom_file("CT_small.dcm")),
                                              ExplicitVRBigEndian), ExplicitVRBigEndian)
    assert np.array_equal(ours.pixel_array, ds.pixel_array)


def test_implicit_to_explicit_keeps_every_value() -> None:
    original = dcmread(pydicom_file("rtplan.dcm"))
    converted = _decode(encode_for_transfer_syntax(dcmread(pydicom_file("rtplan.dcm")),
                                                   ExplicitVRLittleEndian), ExplicitVRLittleEndian)
    assert converted == original
