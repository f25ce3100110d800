"""Media: folders with a complete, an incomplete or no DICOMDIR; export with a DICOMDIR."""

from __future__ import annotations

import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from pydicom import dcmread
from pydicom.fileset import FileSet

from rtforge.errors import InvalidInputError
from rtforge.io.media import DICOMDIR, copy_into, export_media, scan_media
from rtforge.io.validate import validate_file
from rtforge.workflows.demo import make_phantom_patient

DCMDUMP = "/usr/bin/dcmdump"
DCMFTEST = "/usr/bin/dcmftest"


@pytest.fixture
def phantom(tmp_path: Path) -> list[Path]:
    """Six phantom CT files (two series of three slices)."""
    make_phantom_patient(tmp_path / "phantom", size=16, nslices=3)
    return sorted((tmp_path / "phantom").rglob("*.dcm"))


def _uids(paths: list[Path]) -> set[str]:
    return {str(dcmread(p, stop_before_pixels=True).SOPInstanceUID) for p in paths}


def test_folder_with_complete_dicomdir(tmp_path: Path, phantom: list[Path]) -> None:
    report = export_media(phantom, tmp_path / "cd", dicomdir=True)
    scan = scan_media(tmp_path / "cd")
    assert scan.dicomdir == tmp_path / "cd" / DICOMDIR and scan.complete
    assert _uids(scan.files) == _uids(phantom) and len(report.files) == len(phantom)
    assert not scan.skipped


def test_folder_whose_dicomdir_misses_files(tmp_path: Path, phantom: list[Path]) -> None:
    export_media(phantom[:4], tmp_path / "cd", dicomdir=True)
    extra = tmp_path / "cd" / "EXTRA"
    extra.mkdir()
    for path in phantom[4:]:
        shutil.copy(path, extra / path.name[-8:])
    gone = next(p for p in (tmp_path / "cd").rglob("IM*"))
    gone.unlink()
    (tmp_path / "cd" / "README.TXT").write_text("not DICOM")
    scan = scan_media(tmp_path / "cd")
    assert not scan.complete
    assert sorted(p.name for p in scan.missed_by_dicomdir) == sorted(p.name[-8:]
                                                                     for p in phantom[4:])
    assert scan.dangling == [gone.resolve()]
    assert [p.name for p in scan.skipped] == ["README.TXT"]
    assert len(scan.files) == len(phantom) - 1


def test_folder_without_dicomdir(tmp_path: Path, phantom: list[Path]) -> None:
    scan = scan_media(tmp_path / "phantom")
    assert scan.dicomdir is None and not scan.missed_by_dicomdir
    assert _uids(scan.files) == _uids(phantom)


def test_unreadable_dicomdir_falls_back_to_the_files(tmp_path: Path,
                                                      phantom: list[Path]) -> None:
    folder = tmp_path / "phantom"
    (folder / DICOMDIR).write_bytes(b"\0" * 300)
    scan = scan_media(folder)
    assert scan.dicomdir is None and scan.dicomdir_error
    assert _uids(scan.files) == _uids(phantom)


def test_export_without_dicomdir_uses_generated_names(tmp_path: Path,
                                                      phantom: list[Path]) -> None:
    report = export_media(phantom, tmp_path / "usb")
    assert report.dicomdir is None and not (tmp_path / "usb" / DICOMDIR).exists()
    relative = sorted(str(p.relative_to(tmp_path / "usb")) for p in report.files)
    assert relative[0] == "P0000001/S0000001/E0000001/I0000001"
    assert len({str(Path(r).parent) for r in relative}) == 2
    assert all(len(part) == 8 for r in relative for part in Path(r).parts)
    assert sorted(p.read_bytes() for p in report.files) == sorted(p.read_bytes()
                                                                  for p in phantom)


def test_export_refuses_a_folder_that_is_not_empty(tmp_path: Path,
                                                   phantom: list[Path]) -> None:
    (tmp_path / "usb").mkdir()
    (tmp_path / "usb" / "old").write_text("x")
    with pytest.raises(InvalidInputError, match="new or empty"):
        export_media(phantom, tmp_path / "usb")


def test_copy_into_the_store_layout(tmp_path: Path, phantom: list[Path]) -> None:
    copied = copy_into(phantom, tmp_path / "store")
    assert [p.read_bytes() for p in copied] == [p.read_bytes() for p in phantom]
    assert all(p.relative_to(tmp_path / "store").parts[0] == "RTF-PHANTOM-001" for p in copied)


@pytest.mark.interop
def test_exported_dicomdir_reads_with_fileset_and_dcmtk(tmp_path: Path,
                                                        phantom: list[Path]) -> None:
    for tool in (DCMDUMP, DCMFTEST):
        if not Path(tool).exists():
            pytest.skip(f"{tool} not installed (Debian package dcmtk)")
    report = export_media(phantom, tmp_path / "cd", dicomdir=True)
    fileset = FileSet(dcmread(report.dicomdir))
    assert len(fileset) == len(phantom)
    assert {str(i.SOPInstanceUID) for i in fileset} == _uids(phantom)
    dump = subprocess.run([DCMDUMP, "-q", str(report.dicomdir)], capture_output=True, text=True,
                          timeout=30)
    assert dump.returncode == 0, dump.stderr
    assert "DirectoryRecordSequence" in dump.stdout and dump.stdout.count("IMAGE") >= len(phantom)
    check = subprocess.run([DCMFTEST, *map(str, report.files)], capture_output=True, text=True,
                           timeout=30)
    assert check.returncode == 0 and check.stdout.count("yes:") == len(phantom), check.stdout


def _lowercase_tree(root: Path) -> None:
    """Rename every file and folder under ``root`` but the DICOMDIR to lower case (a CD
    mounted with ``map=lower``)."""
    for path in sorted(root.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.name != DICOMDIR:
            path.rename(path.with_name(path.name.lower()))


def test_lowercase_mounted_cd_resolves_file_ids_quietly(tmp_path: Path, phantom: list[Path],
                                                       caplog: pytest.LogCaptureFixture) -> None:
    export_media(phantom, tmp_path / "cd", dicomdir=True)
    _lowercase_tree(tmp_path / "cd")
    assert not list((tmp_path / "cd").rglob("IM*"))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scan = scan_media(tmp_path / "cd")
    assert scan.complete and not scan.dangling and not scan.missed_by_dicomdir
    assert _uids(scan.files) == _uids(phantom)
    assert all(p.name.startswith("im") for p in scan.files)
    assert not caught, [str(w.message) for w in caught]
    assert not [r for r in caplog.records if r.name.startswith("pydicom")]
    assert validate_file(tmp_path / "cd" / DICOMDIR).errors == []


def test_media_import_of_a_lowercase_cd_prints_no_pydicom_warning(tmp_path: Path,
                                                                  phantom: list[Path]) -> None:
    export_media(phantom, tmp_path / "cd", dicomdir=True)
    _lowercase_tree(tmp_path / "cd")
    done = subprocess.run([sys.executable, "-m", "rtforge", "media", "import",
                           str(tmp_path / "cd"), "--store", str(tmp_path / "store"),
                           "--catalog", str(tmp_path / "catalog.sqlite")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""
    assert f"imported {len(phantom)} file(s)" in done.stdout and "missing" not in done.stdout
