"""``rtforge validate`` over folders as a user runs it: what is skipped, counted and failed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from rtforge.cli import main
from tests.datafiles import pydicom_file
from tests.io.test_validate import ct_file, fake_dciodvfy


def test_a_folder_run_reports_every_file_past_a_broken_one(tmp_path: Path, capsys) -> None:
    folder = tmp_path / "mixed"
    good = ct_file(folder / "good")
    shutil.copy(pydicom_file("meta_missing_tsyntax.dcm"), folder / "a-broken.dcm")
    shutil.copy(pydicom_file("rtstruct.dcm"), folder / "no-meta.dcm")
    shutil.copy(pydicom_file("badVR.dcm"), folder / "bad-vr.dcm")  # Number of Frames '1A'

    (folder / "preview.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(64))
    assert main(["validate", "--json", str(folder)]) == 1
    report = json.loads(capsys.readouterr().out)
    files = {Path(f["path"]).name: f for f in report["files"]}
    assert set(files) == {good.name, "a-broken.dcm", "no-meta.dcm", "bad-vr.dcm"}
    assert files["bad-vr.dcm"]["errors"]  # its values are findings, not a crash
    assert report["skipped_non_dicom"] == 1
    assert "file meta has no Transfer Syntax UID" in files["a-broken.dcm"]["errors"]
    assert files["no-meta.dcm"]["kind"] == "RT Structure Set Storage"
    assert files["no-meta.dcm"]["warnings"][0].startswith("no Part 10 file meta")
    assert files[good.name]["errors"] == []


def test_not_verified_is_a_warning_unless_strict(tmp_path: Path, monkeypatch, capsys) -> None:
    fake_dciodvfy(tmp_path / "bin", "echo 'CTImage' >&2\nkill -ABRT $$\n", monkeypatch)
    path = ct_file(tmp_path / "ct")
    assert main(["validate", str(path)]) == 0
    text = capsys.readouterr().out
    assert f"{path}: not verified" in text and "1 not verified by dciodvfy" in text
    assert main(["validate", "--strict", str(path)]) == 1
    capsys.readouterr()


def test_quiet_shows_only_problems(tmp_path: Path, monkeypatch, capsys) -> None:
    fake_dciodvfy(tmp_path / "bin", "echo 'CTImage' >&2\n", monkeypatch)  # finds nothing
    good = ct_file(tmp_path / "good")
    bad = tmp_path / "bad.dcm"
    bad.write_bytes(b"not dicom at all")
    assert main(["validate", "--quiet", str(good), str(bad)]) == 1
    text = capsys.readouterr().out
    assert str(good) not in text and f"{bad}: ERROR" in text
    assert "2 files, 1 with errors" in text


def test_a_folder_without_dicom_is_a_clear_error(tmp_path: Path, capsys) -> None:
    (tmp_path / "notes.txt").write_text("hello")
    assert main(["validate", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "no DICOM files to validate (1 non-DICOM files)" in err and len(err.splitlines()) == 1
