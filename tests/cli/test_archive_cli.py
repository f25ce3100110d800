"""``rtforge store | file | restore | media``, in process."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydicom import dcmread

from rtforge.cli import main
from tests.datafiles import pydicom_file
from tests.net.archive_peers import Archive, archive_config, phantom_store
from tests.net.peers import LOCALHOST, free_port

PATIENT = "RTF-PHANTOM-001"


@pytest.fixture
def config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty configuration, so the user's never leaks in."""
    path = tmp_path / "config.toml"
    path.write_text("")
    monkeypatch.setenv("RTFORGE_CONFIG", str(path))
    return path


def _json(capsys: pytest.CaptureFixture[str], argv: list[str], code: int = 0) -> object:
    assert main(argv) == code
    return json.loads(capsys.readouterr().out)


def test_store_import_and_ls(tmp_path: Path, config: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    files = phantom_store(store)
    report = _json(capsys, ["store", "import", str(store), "--store", str(store), "--json"])
    assert report["added"] == len(files)
    cases = _json(capsys, ["store", "ls", "--store", str(store), "--json"])
    assert [(c["patient_id"], c["instances"], c["states"]) for c in cases] == \
        [(PATIENT, len(files), {"local": len(files)})]
    (case,) = _json(capsys, ["store", "ls", "--store", str(store), "--patient", PATIENT,
                             "--json"])
    assert len(case["instances_detail"]) == len(files)
    assert main(["store", "ls", "--store", str(store)]) == 0
    out = capsys.readouterr().out
    assert PATIENT in out and "1 case" in out


def test_usage_and_failures(tmp_path: Path, config: Path,
                            capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["file", PATIENT]) == 2  # --to or --to-folder is required
    assert main(["store", "import", str(tmp_path / "nope"), "--store", str(tmp_path)]) == 1
    assert main(["file", PATIENT, "--to-folder", str(tmp_path / "media"), "--store",
                 str(tmp_path)]) == 1
    assert main(["restore", PATIENT, "--store", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "no such file or folder" in err and "no local instances" in err \
        and "no filed instances" in err


def test_file_to_folder_and_restore(tmp_path: Path, config: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    store = tmp_path / "store"
    files = {p: p.read_bytes() for p in phantom_store(store)}
    assert main(["store", "import", str(store), "--store", str(store), "-q"]) == 0
    report = _json(capsys, ["file", PATIENT, "--to-folder", str(tmp_path / "usb"), "--store",
                            str(store), "--json"])
    assert report["ok"] and report["deleted"] == len(files)
    assert not any(p.exists() for p in files)
    assert main(["restore", PATIENT, "--store", str(store), "--port", str(free_port())]) == 0
    assert f"{len(files)} of {len(files)} restored" in capsys.readouterr().out
    assert all(p.read_bytes() == data for p, data in files.items())
    assert main(["file", PATIENT, "--to-folder", str(tmp_path / "usb2"), "--store",
                 str(store)]) == 0
    assert f"{len(files)} local files deleted" in capsys.readouterr().out


@pytest.mark.interop
def test_file_and_restore_with_orthanc(tmp_path: Path, archive: Archive,
                                       capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    store = tmp_path / "store"
    monkeypatch.setenv("RTFORGE_CONFIG",
                       str(archive_config(archive, tmp_path / "config.toml", store=store)))
    files = {p: p.read_bytes() for p in phantom_store(store)}
    assert main(["store", "import", str(store), "-q"]) == 0
    study = next(iter(_json(capsys, ["store", "ls", "--patient", PATIENT, "--json"])[0]
                      ["instances_detail"]))["study_uid"]
    report = _json(capsys, ["file", PATIENT, "--to", "archive", "--study", study, "--json"])
    assert report["ok"] and report["verified"] == len(files)
    (case,) = _json(capsys, ["store", "ls", "--json"])
    assert case["states"] == {"filed": len(files)} and case["archives"] == [
        f"ORTHANC@{LOCALHOST}:{archive.port}"]
    report = _json(capsys, ["restore", PATIENT, "--bind", LOCALHOST, "--json"])
    assert report["ok"], report
    assert all(p.read_bytes() == data for p, data in files.items())


def test_media_import_and_export(tmp_path: Path, config: Path,
                                 capsys: pytest.CaptureFixture[str]) -> None:
    files = phantom_store(tmp_path / "source")
    store = tmp_path / "store"
    report = _json(capsys, ["media", "import", str(tmp_path / "source"), "--store", str(store),
                            "--json"])
    assert report["imported"] == len(files) and report["dicomdir"] is None
    exported = _json(capsys, ["media", "export", PATIENT, str(tmp_path / "cd"), "--dicomdir",
                              "--store", str(store), "--json"])
    assert exported["dicomdir"] == str(tmp_path / "cd" / "DICOMDIR")
    assert len(exported["files"]) == len(files)
    again = _json(capsys, ["media", "import", str(tmp_path / "cd"), "--store",
                           str(tmp_path / "store2"), "--json"])
    assert again["dicomdir"] and not again["missed_by_dicomdir"]
    assert again["imported"] == len(files)
    assert main(["media", "export", "NOBODY", str(tmp_path / "x"), "--store", str(store)]) == 1
    assert "not in the catalog" in capsys.readouterr().err


def test_media_import_keeps_a_conflicting_copy_beside_the_first(
        tmp_path: Path, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Media holding another version of a SOP Instance UID the store has: it used to be
    copied over the store's file (the first version lost); now it is kept beside, listed."""
    first = dcmread(pydicom_file("CT_small.dcm"))
    edited = dcmread(pydicom_file("CT_small.dcm"))
    edited.SeriesDescription = "EDITED ON ANOTHER SYSTEM"
    for name, ds in (("cd1", first), ("cd2", edited)):
        (tmp_path / name).mkdir()
        ds.save_as(tmp_path / name / "IM1", enforce_file_format=True)
    store = tmp_path / "store"
    assert main(["media", "import", str(tmp_path / "cd1"), "--store", str(store), "-q"]) == 0
    (kept,) = store.rglob("*.dcm")
    before = kept.read_bytes()
    report = _json(capsys, ["media", "import", str(tmp_path / "cd2"), "--store", str(store),
                            "--json"])
    assert kept.read_bytes() == before
    beside = kept.with_name(f"{first.SOPInstanceUID}_2.dcm")
    assert dcmread(beside).SeriesDescription == "EDITED ON ANOTHER SYSTEM"
    (copy,) = report["conflicting_copies"]
    assert (copy["path"], copy["copy_of"]) == (str(beside), str(kept))
    assert main(["media", "import", str(tmp_path / "cd2"), "--store", str(store)]) == 0
    assert sorted(store.rglob("*.dcm")) == [kept, beside]  # the same copy is not written again
    (line,) = [line for line in capsys.readouterr().err.splitlines() if "conflicting" in line]
    assert str(kept) in line and str(beside) in line
    exported = _json(capsys, ["media", "export", first.PatientID, str(tmp_path / "out"),
                              "--store", str(store), "--json"])
    assert [Path(p).read_bytes() for p in exported["files"]] == [before]  # never the copy
    assert main(["media", "export", first.PatientID, str(tmp_path / "out2"), "--store",
                 str(store)]) == 0
    assert f"left out: conflicting copy of SOP Instance UID {first.SOPInstanceUID}" in \
        capsys.readouterr().err
