"""Part 10 output: transfer syntaxes, layout, atomic writes, whole data sets, encoding."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from pydicom import Dataset, dcmread
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import dcmwrite
from pydicom.uid import (
    CTImageStorage,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
)

from rtforge.errors import ConformanceError, InvalidInputError
from rtforge.io import fileset
from rtforge.io.fileset import (
    IMPLEMENTATION_CLASS_UID,
    NO_PATIENT_ID,
    DatasetTemplate,
    Part10Prefix,
    atomic_write,
    file_meta,
    instance_path,
    parse_transfer_syntax,
    patient_folder_name,
    series_dir,
    write_dataset_file,
)


# ------------------------------------------------------------ transfer syntax
@pytest.mark.parametrize(("name", "uid"), [
    ("explicit", ExplicitVRLittleEndian), ("Implicit", ImplicitVRLittleEndian),
    ("BIG", ExplicitVRBigEndian), (" explicit ", ExplicitVRLittleEndian),
    (str(ImplicitVRLittleEndian), ImplicitVRLittleEndian),
    (str(ExplicitVRBigEndian), ExplicitVRBigEndian),
])
def test_parse_transfer_syntax(name: str, uid: str) -> None:
    assert parse_transfer_syntax(name) == uid


@pytest.mark.parametrize("name", ["jpeg", "", str(JPEGBaseline8Bit), "little"])
def test_parse_transfer_syntax_rejects_others(name: str) -> None:
    with pytest.raises(InvalidInputError, match="explicit"):
        parse_transfer_syntax(name)


# ------------------------------------------------------------------- layout
def test_patient_folder_name() -> None:
    assert patient_folder_name("PAT-001_a.b") == "PAT-001_a.b"
    assert patient_folder_name("") == NO_PATIENT_ID
    assert patient_folder_name("   ") == NO_PATIENT_ID
    for unsafe in ("A/B", "..", "../etc", "a b", "C:\\x", ".hidden", "Ünïcode"):
        name = patient_folder_name(unsafe)
        assert "/" not in name and "\\" not in name and not name.startswith(".")
        assert name.isascii()
    # Different IDs never share a folder, even when their safe forms would.
    assert patient_folder_name("A/B") != patient_folder_name("A_B")
    assert patient_folder_name("A/B") != patient_folder_name("A:B")


def test_series_dir_and_instance_path(tmp_path: Path) -> None:
    ds = Dataset()
    ds.PatientID = "P/1"
    ds.StudyInstanceUID = "1.2.3"
    ds.SeriesInstanceUID = "1.2.3.4"
    ds.SOPInstanceUID = "1.2.3.4.5"
    path = instance_path(tmp_path, ds)
    assert path == tmp_path / patient_folder_name("P/1") / "1.2.3" / "1.2.3.4" / "1.2.3.4.5.dcm"
    del ds.PatientID
    assert instance_path(tmp_path, ds).parts[-4] == NO_PATIENT_ID
    with pytest.raises(ConformanceError, match="SeriesInstanceUID"):
        series_dir(tmp_path, "P", "1.2", "../x")


# ------------------------------------------------------------ atomic write
def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_atomic_write_writes_all_chunks(tmp_path: Path) -> None:
    big = np.arange(100_000, dtype=np.uint16)
    target = tmp_path / "a.dcm"
    atomic_write(target, [b"ab", memoryview(b"cd"), big, b"e"])
    assert target.read_bytes() == b"abcd" + big.tobytes() + b"e"
    assert _leftovers(tmp_path) == ["a.dcm"]
    atomic_write(target, [b"new"], fsync=False)  # replaces
    assert target.read_bytes() == b"new"


def test_atomic_write_failure_mid_write_leaves_nothing(tmp_path: Path) -> None:
    def chunks():
        yield b"x" * 1000
        yield np.zeros(70_000, dtype=np.uint8)
        raise RuntimeError("encoder failed")

    with pytest.raises(RuntimeError, match="encoder failed"):
        atomic_write(tmp_path / "a.dcm", chunks())
    assert _leftovers(tmp_path) == []


def test_atomic_write_failed_rename_keeps_old_file(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "a.dcm"
    target.write_bytes(b"old")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(fileset.os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        atomic_write(target, [b"new"])
    assert target.read_bytes() == b"old"
    assert _leftovers(tmp_path) == ["a.dcm"]


def test_atomic_write_failed_fsync_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    def fail(fd):
        raise OSError("I/O error")

    monkeypatch.setattr(fileset.os, "fsync", fail)
    with pytest.raises(OSError, match="I/O error"):
        atomic_write(tmp_path / "a.dcm", [b"data"])
    assert _leftovers(tmp_path) == []


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root ignores folder permissions")
def test_atomic_write_read_only_folder(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o555)
    try:
        with pytest.raises(PermissionError):
            atomic_write(folder / "a.dcm", [b"data"])
        assert _leftovers(folder) == []
    finally:
        folder.chmod(0o755)


def test_atomic_write_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        atomic_write(tmp_path / "missing" / "a.dcm", [b"data"])
    assert _leftovers(tmp_path) == []


# ------------------------------------------------------ whole data sets
def _image_dataset() -> Dataset:
    ds = Dataset()
    ds.SOPClassUID = CTImageStorage
    ds.SOPInstanceUID = "1.2.3.4.5.6"
    ds.PatientName = "Doe^Jane"
    ds.Rows, ds.Columns = 3, 4
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.arange(12, dtype="<u2").tobytes()
    ds["PixelData"].VR = "OW"
    return ds


@pytest.mark.parametrize("name", ["explicit", "implicit", "big"])
def test_write_dataset_file_round_trip(tmp_path: Path, name: str) -> None:
    ds = _image_dataset()
    original_pixels = ds.PixelData
    path = write_dataset_file(ds, tmp_path / "sub" / "x.dcm", name)
    back = dcmread(path)
    assert back.file_meta.TransferSyntaxUID == parse_transfer_syntax(name)
    assert back.file_meta.MediaStorageSOPInstanceUID == ds.SOPInstanceUID
    assert back.file_meta.ImplementationClassUID == IMPLEMENTATION_CLASS_UID
    assert back.PatientName == "Doe^Jane"
    order = ">" if name == "big" else "<"
    assert np.array_equal(np.frombuffer(back.PixelData, f"{order}u2"), np.arange(12))
    assert np.array_equal(back.pixel_array, np.arange(12).reshape(3, 4))
    assert ds.PixelData == original_pixels and not hasattr(ds, "file_meta")
    assert _leftovers(tmp_path / "sub") == ["x.dcm"]


def test_write_dataset_file_needs_sop_uids(tmp_path: Path) -> None:
    ds = _image_dataset()
    del ds.SOPInstanceUID
    with pytest.raises(ConformanceError, match="SOPInstanceUID"):
        write_dataset_file(ds, tmp_path / "x.dcm")


def test_write_dataset_file_refuses_unswappable_big_endian(tmp_path: Path) -> None:
    ds = _image_dataset()
    ds.RedPaletteColorLookupTableData = b"\x00\x01"
    ds["RedPaletteColorLookupTableData"].VR = "OW"
    with pytest.raises(ConformanceError, match="Little Endian"):
        write_dataset_file(ds, tmp_path / "x.dcm", "big")
    assert _leftovers(tmp_path) == []


# ---------------------------------------------------------------- encoding
@pytest.mark.parametrize("name", ["explicit", "implicit", "big"])
def test_prefix_and_template_match_dcmwrite(name: str) -> None:
    ds = _image_dataset()
    ds.file_meta = file_meta(ds.SOPClassUID, ds.SOPInstanceUID, name)
    if name == "big":
        ds.PixelData = np.frombuffer(ds.PixelData, "<u2").astype(">u2").tobytes()
    buffer = DicomBytesIO()
    dcmwrite(buffer, ds, enforce_file_format=True)
    variable = (0x00080018, 0x7FE00010)
    constant = Dataset()
    for elem in ds:
        if elem.tag not in variable:
            constant.add(elem)
    template = DatasetTemplate(constant, variable, name)
    ts = parse_transfer_syntax(name)
    encoded = {
        0x00080018: [fileset.encode_text_element(0x00080018, "UI", ds.SOPInstanceUID, ts)],
        0x7FE00010: [fileset.element_header(0x7FE00010, "OW", len(ds.PixelData), ts),
                     ds.PixelData],
    }
    prefix = Part10Prefix(ds.SOPClassUID, name).encode(ds.SOPInstanceUID)
    assert prefix + b"".join(bytes(c) for c in template.join(encoded)) == buffer.getvalue()
    with pytest.raises(ValueError, match="variable"):
        DatasetTemplate(ds, variable, name)


def test_writeback_then_sync_files_flushes_only_those_files(tmp_path, monkeypatch) -> None:
    from rtforge.io import fileset

    started: list[tuple[int, int]] = []
    real_range = fileset._sync_file_range
    if real_range is not None:  # Linux: the real system call must accept what we pass
        def recording(fd, offset, nbytes, flags):
            rc = real_range(fd, offset, nbytes, flags)
            started.append((rc, flags))
            return rc

        monkeypatch.setattr(fileset, "_sync_file_range", recording)
    paths = [fileset.atomic_write(tmp_path / f"{n}.dcm", [b"x" * 10], fsync=False,
                                  writeback=True) for n in range(3)]
    fileset.atomic_write(tmp_path / "plain.dcm", [b"y"], fsync=False)  # no write-back asked
    if real_range is not None:
        assert started == [(0, fileset._SYNC_FILE_RANGE_WRITE)] * 3
    calls: list[int] = []
    real_fsync = os.fsync
    monkeypatch.setattr(fileset.os, "fsync", lambda fd: (calls.append(fd), real_fsync(fd)))
    fileset.sync_files(tmp_path, paths)
    assert len(calls) == 4  # each file, then the folder; never the whole file system
    assert all(p.read_bytes() == b"x" * 10 for p in paths)
