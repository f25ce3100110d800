"""The receiver's structure check: pydicom's own test files are the truth (good and broken)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from pydicom.filereader import read_dataset, read_preamble
from pydicom.uid import UID

from rtforge.net import StorageSCP, send
from rtforge.net._structure import check_data_set
from tests.datafiles import pydicom_file
from tests.net.peers import received_files, scp_node

#: Files whose data set is well formed, in every encoding the receiver accepts.
GOOD = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm", "rtdose.dcm", "MR_small_bigendian.dcm",
        "rtdose_expb.dcm", "SC_rgb_jpeg_dcmtk.dcm", "SC_rgb_jpeg_gdcm.dcm", "MR_small_RLE.dcm",
        "MR_small_jp2klossless.dcm", "nested_priv_SQ.dcm", "reportsi.dcm", "waveform_ecg.dcm"]
#: pydicom's deliberately truncated files, and one whose bytes are not its transfer syntax.
BROKEN = ["MR_truncated.dcm", "rtplan_truncated.dcm", "SC_rgb_jpeg.dcm"]


def _data_set(name: str) -> tuple[memoryview, bool, bool]:
    path = pydicom_file(name)
    raw = path.read_bytes()
    with open(path, "rb") as fp:
        read_preamble(fp, False)
        meta = read_dataset(fp, False, True, stop_when=lambda tag, vr, length: tag.group != 2)
        offset = fp.tell()
    ts = UID(meta.TransferSyntaxUID)
    return memoryview(raw)[offset:], ts.is_implicit_VR, ts.is_little_endian


@pytest.mark.parametrize("name", GOOD)
def test_well_formed_files_pass(name: str) -> None:
    assert check_data_set(*_data_set(name)) is None  # raises ValueError when malformed


@pytest.mark.parametrize("name", BROKEN)
def test_broken_files_fail(name: str) -> None:
    with pytest.raises(ValueError):
        check_data_set(*_data_set(name))


def _element(group: int, element: int, vr: bytes, value: bytes) -> bytes:
    if vr in (b"OB", b"SQ", b"UN"):
        return struct.pack("<HH2sHL", group, element, vr, 0, len(value)) + value
    return struct.pack("<HH2sH", group, element, vr, len(value)) + value


UID_ELEMENT = _element(0x0008, 0x0018, b"UI", b"1.2.3\x00")
ITEM_OPEN = struct.pack("<HHL", 0xFFFE, 0xE000, 0xFFFFFFFF)
ITEM_END = struct.pack("<HHL", 0xFFFE, 0xE00D, 0)
SEQUENCE_END = struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)
OPEN_SEQUENCE = struct.pack("<HH2sHL", 0x300A, 0x00B0, b"SQ", 0, 0xFFFFFFFF)


@pytest.mark.parametrize(("data", "words"), [
    (UID_ELEMENT + b"\x01\x02\x03", "stray bytes"),
    (UID_ELEMENT[:-2], "runs past the end"),
    (b"\x08\x00\x18\x00u1\x06\x00" + b"1.2.3\x00", "invalid VR"),
    (OPEN_SEQUENCE + ITEM_OPEN + UID_ELEMENT, "without its delimitation"),
    (OPEN_SEQUENCE + ITEM_OPEN + UID_ELEMENT + ITEM_END, "stray bytes"),
    (OPEN_SEQUENCE + ITEM_OPEN + UID_ELEMENT + ITEM_END + ITEM_END, "expected an item"),
    (UID_ELEMENT + ITEM_END, "unexpected (FFFE,E00D)"),
    (struct.pack("<HH2sHL", 0x0009, 0x1010, b"OB", 0, 0xFFFFFFFF) + SEQUENCE_END,
     "undefined length for VR OB"),
    (struct.pack("<HH2sHL", 0x7FE0, 0x0010, b"OB", 0, 0xFFFFFFFF) + ITEM_OPEN, "Pixel Data"),
])
def test_malformed_structures(data: bytes, words: str) -> None:
    with pytest.raises(ValueError, match=words.replace("(", r"\(").replace(")", r"\)")):
        check_data_set(memoryview(data), implicit=False, little=True)


def test_well_formed_nesting() -> None:
    nested = OPEN_SEQUENCE + ITEM_OPEN + UID_ELEMENT + ITEM_END + SEQUENCE_END
    # check_data_set raises ValueError on any malformed structure, returns None otherwise.
    assert check_data_set(memoryview(UID_ELEMENT + nested), implicit=False, little=True) is None
    defined_item = struct.pack("<HHL", 0xFFFE, 0xE000, len(UID_ELEMENT)) + UID_ELEMENT
    defined = _element(0x300A, 0x00B0, b"SQ", defined_item)
    assert check_data_set(memoryview(defined), implicit=False, little=True) is None
    unknown = _element(0x0009, 0x1010, b"UN", b"")[:-4] + b"\xff\xff\xff\xff"
    implicit_item = ITEM_OPEN + struct.pack("<HHL", 0x0008, 0x0018, 6) + b"1.2.3\x00" + ITEM_END
    assert check_data_set(memoryview(unknown + implicit_item + SEQUENCE_END), implicit=False,
                          little=True) is None


def test_the_receiver_refuses_a_truncated_object(scp: StorageSCP) -> None:
    report = send([pydicom_file("rtplan_truncated.dcm")], scp_node(scp))
    assert report.failed is not None and report.failed.status == 0xC000
    assert "(300A,00B0) of 976 bytes runs past" in report.failed.reason
    assert received_files(scp.out_dir) == []
    assert not any((Path(scp.out_dir) / ".incoming").iterdir())
