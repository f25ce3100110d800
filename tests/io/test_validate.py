"""validate_file: our own checks and the dciodvfy runner."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread
from pydicom.dataelem import DataElement
from pydicom.fileset import FileSet
from pydicom.uid import generate_uid

from rtforge.core.geometry import SliceStack
from rtforge.io.ct import CTSeriesWriter, write_ct_series
from rtforge.io.fileset import write_dataset_file
from rtforge.io.validate import dciodvfy_available, is_dicom_file, run_dciodvfy, validate_file
from tests.datafiles import pydicom_file

ROWS, COLUMNS = 16, 20


def ct_file(folder: Path, transfer_syntax: str = "explicit") -> Path:
    """One small CT slice written by rtforge."""
    stack = SliceStack(positions=[[0.0, 0.0, 0.0]], row_direction=(1, 0, 0),
                       column_direction=(0, 1, 0), pixel_spacing=(1.0, 1.0), rows=ROWS,
                       columns=COLUMNS)
    hu = np.zeros(stack.shape, dtype=np.int16)
    report = write_ct_series(hu, stack, folder, derived=False, fsync=False,
                             transfer_syntax=transfer_syntax,
                             overrides={"PatientID": "V1", "PatientName": "Valid^Ation"})
    return report.paths[0]


def rewrite(path: Path, edit) -> Path:
    """Read ``path``, apply ``edit`` to the data set, write it back the plain pydicom way."""
    ds = dcmread(path)
    edit(ds)
    ds.save_as(path, enforce_file_format=False)
    return path


@pytest.mark.parametrize("name", ["explicit", "implicit", "big"])
def test_own_checks_pass_on_our_output(tmp_path: Path, name: str) -> None:
    result = validate_file(ct_file(tmp_path, name), dciodvfy=False)
    assert result.ok and result.errors == [] and result.warnings == []
    assert not result.dciodvfy_ran


def test_not_dicom(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    result = validate_file(path)
    assert not result.ok and "not a DICOM Part 10 file" in result.errors[0]
    assert not result.dciodvfy_ran


def test_truncated_file(tmp_path: Path) -> None:
    path = ct_file(tmp_path)
    path.write_bytes(path.read_bytes()[:-100])
    result = validate_file(path, dciodvfy=False)
    assert any("Pixel Data" in e for e in result.errors), result.errors


@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the bad values we set
def test_long_ds_and_bad_strings(tmp_path: Path) -> None:
    def edit(ds):
        ds["SliceLocation"] = DataElement(0x00201041, "DS", "1.23456789012345678")
        ds["StudyID"] = DataElement(0x00200010, "SH", "X" * 17)
        ds["InstanceNumber"] = DataElement(0x00200013, "IS", "1.5")

    path = rewrite(ct_file(tmp_path), edit)
    errors = validate_file(path, dciodvfy=False).errors
    assert any("(0020,1041) SliceLocation" in e and "DS allows 16" in e for e in errors), errors
    assert any("StudyID" in e and "SH allows 16" in e for e in errors), errors
    assert any("InstanceNumber" in e and "integer" in e for e in errors), errors


def test_sop_uids_must_match_file_meta(tmp_path: Path) -> None:
    path = rewrite(ct_file(tmp_path), lambda ds: setattr(ds, "SOPInstanceUID", generate_uid()))
    errors = validate_file(path, dciodvfy=False).errors
    assert any("MediaStorageSOPInstanceUID" in e for e in errors), errors


def test_private_element_without_creator(tmp_path: Path) -> None:
    path = rewrite(ct_file(tmp_path), lambda ds: ds.__delitem__(0x00090010))
    errors = validate_file(path, dciodvfy=False).errors
    assert any("(0009,1001)" in e and "Private Creator" in e for e in errors), errors


def with_un_element(path: Path) -> Path:
    """Add Protocol Name (0018,1030) encoded with VR UN (pydicom would write LO)."""
    def add(ds):
        ds.ProtocolName = "PROTOCOL"

    data = rewrite(path, add).read_bytes()
    lo = b"\x18\x00\x30\x10LO\x08\x00PROTOCOL"
    un = b"\x18\x00\x30\x10UN\x00\x00\x08\x00\x00\x00PROTOCOL"
    assert data.count(lo) == 1
    path.write_bytes(data.replace(lo, un))
    return path


def test_un_elements(tmp_path: Path) -> None:
    ours = with_un_element(ct_file(tmp_path / "a"))
    errors = validate_file(ours, dciodvfy=False).errors
    assert errors == ["(0018,1030) ProtocolName: VR UN"]
    theirs = with_un_element(rewrite(ct_file(tmp_path / "b"), lambda ds: setattr(
        ds.file_meta, "ImplementationClassUID", "1.2.3.4")))
    result = validate_file(theirs, dciodvfy=False)
    assert result.errors == [] and result.warnings == ["(0018,1030) ProtocolName: VR UN"]


# --------------------------------------------------------- dciodvfy runner
def fake_dciodvfy(folder: Path, script: str, monkeypatch) -> None:
    """Put a stand-in ``dciodvfy`` first on the PATH."""
    folder.mkdir(exist_ok=True)
    program = folder / "dciodvfy"
    program.write_text("#!/bin/sh\n" + script)
    program.chmod(program.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ.get('PATH', '')}")


def test_runner_parses_errors_and_warnings(tmp_path: Path, monkeypatch) -> None:
    fake_dciodvfy(tmp_path / "bin", (
        "echo 'CTImage' >&2\n"
        "echo 'Error - Missing attribute Type 1 Required Element=<Rows> Module=<ImagePixel>' >&2\n"
        "echo 'Warning - Value is zero for value 1 of attribute <Patient'\"'\"'s Weight>' >&2\n"
        "exit 1\n"), monkeypatch)
    assert dciodvfy_available()
    errors, warnings, iod, failure = run_dciodvfy(tmp_path / "any.dcm")
    assert failure is None and iod == "CTImage"
    assert errors == ["dciodvfy: Error - Missing attribute Type 1 Required Element=<Rows> "
                      "Module=<ImagePixel>"]
    assert warnings == ["dciodvfy: Warning - Value is zero for value 1 of attribute "
                        "<Patient's Weight>"]


@pytest.mark.parametrize("script", ["kill -ABRT $$\n", "exit 134\n"])
def test_runner_reports_a_crash_not_a_pass(tmp_path: Path, monkeypatch, script: str) -> None:
    fake_dciodvfy(tmp_path / "bin", "echo 'CTImage' >&2\n" + script, monkeypatch)
    run = run_dciodvfy(tmp_path / "any.dcm")
    assert not run.completed and run.iod is None and run.errors == []
    assert "crashed" in run.failure
    # A file dciodvfy could not check is "not verified": a warning, neither an error nor a pass.
    result = validate_file(ct_file(tmp_path / "ct"))
    assert result.ok and not result.dciodvfy_ran and "crashed" in result.not_verified
    assert any(w.startswith("not verified by dciodvfy: ") for w in result.warnings)


def test_runner_silent_failure_is_an_error(tmp_path: Path, monkeypatch) -> None:
    fake_dciodvfy(tmp_path / "bin", "exit 3\n", monkeypatch)
    run = run_dciodvfy(tmp_path / "any.dcm")
    assert run.completed and run.errors == ["dciodvfy: exit status 3 without an error message"]


def test_validate_without_dciodvfy_on_path(tmp_path: Path, monkeypatch) -> None:
    path = ct_file(tmp_path)
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert not dciodvfy_available()
    result = validate_file(path)
    assert result.ok and not result.dciodvfy_ran and "not installed" in result.not_verified


@pytest.mark.interop
@pytest.mark.skipif(not dciodvfy_available(), reason="dciodvfy (dicom3tools) not installed")
@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the bad DS we set
def test_real_dciodvfy_error_and_crash(tmp_path: Path) -> None:
    bad = rewrite(ct_file(tmp_path / "a"), lambda ds: ds.__setitem__(
        0x00201041, DataElement(0x00201041, "DS", "1.23456789012345678")))
    result = validate_file(bad)
    assert result.dciodvfy_ran and result.iod == "CTImage"
    assert any(e.startswith("dciodvfy: Error - ") and "Slice Location" in e
               for e in result.errors), result.errors
    # 32-bit Pixel Data aborts the Debian build of dciodvfy: the other modules are still
    # verified on a copy with a 16-bit pixel module, and the result says so.
    writer = CTSeriesWriter(SliceStack(positions=[[0.0, 0.0, 0.0]], row_direction=(1, 0, 0),
                                       column_direction=(0, 1, 0), pixel_spacing=(1.0, 1.0),
                                       rows=2, columns=2),
                            tmp_path / "b", derived=False, fsync=False)
    ds = writer.instance_dataset(0, np.zeros((2, 2), dtype=np.int16))
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 32, 32, 31
    ds.PixelData = np.zeros(4, dtype="<u4").tobytes()
    path = write_dataset_file(ds, tmp_path / "b" / "x32.dcm", fsync=False)
    assert not run_dciodvfy(path).completed  # the abort this works around
    result = validate_file(path)
    assert result.dciodvfy_ran and result.not_verified is None and result.iod == "CTImage"
    assert any("16-bit pixel module" in w for w in result.warnings), result.warnings
    # A module error elsewhere in such a file is still found.
    del ds.Modality
    result = validate_file(write_dataset_file(ds, tmp_path / "b" / "y32.dcm", fsync=False))
    assert any("Modality" in e for e in result.errors), result.errors


# ------------------------------------------------------ what others write
def test_data_set_without_file_meta_is_read_and_said(tmp_path: Path) -> None:
    result = validate_file(pydicom_file("rtstruct.dcm"), dciodvfy=False)
    assert result.kind == "RT Structure Set Storage"
    assert result.warnings[0].startswith("no Part 10 file meta")
    assert "Implicit VR Little Endian" in result.warnings[0]
    assert not any("differs from the file meta" in e for e in result.errors)


def test_meta_without_transfer_syntax_is_a_finding_not_a_crash() -> None:
    result = validate_file(pydicom_file("meta_missing_tsyntax.dcm"), dciodvfy=False)
    assert "file meta has no Transfer Syntax UID" in result.errors


def test_is_dicom_file(tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(200))
    (tmp_path / "empty").write_bytes(b"")
    (tmp_path / "notes.txt").write_text("hello " * 100)
    assert not any(is_dicom_file(tmp_path / n) for n in ("a.png", "empty", "notes.txt"))
    assert is_dicom_file(ct_file(tmp_path / "ct")) and is_dicom_file(pydicom_file("rtstruct.dcm"))


def dicomdir_set(folder: Path) -> Path:
    """A File-set of one CT slice with its DICOMDIR, written by pydicom."""
    ds = dcmread(ct_file(folder / "src"))
    ds.StudyDate, ds.StudyTime, ds.StudyID = "20240101", "120000", "1"  # DICOMDIR needs them
    ds.SeriesNumber = 1
    fs = FileSet()
    fs.add(ds)
    fs.write(folder / "media")
    return folder / "media" / "DICOMDIR"


def test_dicomdir_is_checked_as_a_media_storage_directory(tmp_path: Path) -> None:
    dicomdir = dicomdir_set(tmp_path)
    result = validate_file(dicomdir)
    assert result.ok, result.errors
    assert result.kind == "Media Storage Directory Storage"
    if dciodvfy_available():
        assert result.iod == "BasicDirectory"
    # A record whose file is gone is an error naming it.
    referenced = next(p for p in dicomdir.parent.rglob("*") if p.is_file() and p != dicomdir)
    referenced.unlink()
    errors = validate_file(dicomdir, dciodvfy=False).errors
    assert len(errors) == 1 and "missing" in errors[0] and referenced.name in errors[0], errors


@pytest.mark.interop
@pytest.mark.skipif(not dciodvfy_available(), reason="dciodvfy (dicom3tools) not installed")
def test_our_private_block_is_known_to_validate(tmp_path: Path) -> None:
    path = ct_file(tmp_path)
    # The raw runner sees dciodvfy's note on our private Export Platform Name ...
    assert any("(0x0009,0x1001)" in w for w in run_dciodvfy(path).warnings)
    # ... which validate_file knows to be ours; another vendor's unknown block keeps it.
    assert not any("0x0009" in w for w in validate_file(path).warnings)
    other = rewrite(ct_file(tmp_path / "other"), lambda ds: setattr(
        ds[0x00090010], "value", "OTHER_VENDOR"))
    assert any("(0x0009,0x1001)" in w for w in validate_file(other).warnings)
