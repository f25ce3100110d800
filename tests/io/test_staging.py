"""All-or-nothing output folders: a failure leaves OUT as it was, success merges into it."""

from __future__ import annotations

import os
from pathlib import Path

import pydicom
import pytest
from pydicom.uid import JPEGBaseline8Bit

from rtforge.errors import InvalidInputError
from rtforge.io.staging import staged_output, write_objects
from tests.datafiles import pydicom_file


def _tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): p.read_text() for p in sorted(root.rglob("*"))
            if p.is_file()}


def _write(stage: Path, fail: bool) -> None:
    (stage / "P" / "S").mkdir(parents=True)
    (stage / "P" / "S" / "a.dcm").write_text("new a")
    (stage / "b.dcm").write_text("new b")
    if fail:
        raise OSError(28, "No space left on device")


@pytest.mark.parametrize("exists", [False, True])
def test_failure_leaves_nothing(tmp_path: Path, exists: bool) -> None:
    out = tmp_path / "deep" / "out" if not exists else tmp_path / "out"
    if exists:
        (out / "P").mkdir(parents=True)
        (out / "P" / "old.dcm").write_text("old")
    with pytest.raises(OSError, match="No space"), staged_output(out) as stage:
        _write(stage, fail=True)
    if exists:
        assert sorted(p.name for p in out.rglob("*")) == ["P", "old.dcm"]  # no staging left
    else:
        assert list(tmp_path.iterdir()) == []  # not even the parent it created


def test_success_merges_into_an_existing_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    (out / "P").mkdir(parents=True)
    (out / "P" / "old.dcm").write_text("old")
    (out / "b.dcm").write_text("old b")
    with staged_output(out) as stage:
        _write(stage, fail=False)
    assert _tree(out) == {"P/S/a.dcm": "new a", "P/old.dcm": "old", "b.dcm": "new b"}
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []


def test_success_into_a_new_folder_and_a_file_in_the_way(tmp_path: Path) -> None:
    with staged_output(tmp_path / "new") as stage:
        _write(stage, fail=False)
    assert _tree(tmp_path / "new") == {"P/S/a.dcm": "new a", "b.dcm": "new b"}
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="not a folder"), staged_output(tmp_path / "file"):
        pass


def test_a_killed_runs_staging_folder_is_removed_by_the_next_run(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    dead = out / ".rtforge-partial-999999999-x"  # no such process
    (dead / "P").mkdir(parents=True)
    (dead / "P" / "half.dcm").write_text("half")
    alive = out / f".rtforge-partial-{os.getppid()}-y"  # a running process's: kept
    alive.mkdir()
    with staged_output(out) as stage:
        _write(stage, fail=False)
    assert not dead.exists() and alive.is_dir()
    assert _tree(out) == {"P/S/a.dcm": "new a", "b.dcm": "new b"}


def _objects() -> list:
    return [pydicom.dcmread(pydicom_file(name)) for name in ("rtplan.dcm", "rtdose.dcm")]


def test_write_objects_lands_the_objects_and_the_files_beside_them(tmp_path: Path) -> None:
    objects = _objects()
    paths = write_objects(objects, tmp_path / "out", beside={tmp_path / "map.csv": b"a,b\n"})
    assert [p.is_file() for p in paths] == [True, True]
    assert all(p.is_relative_to(tmp_path / "out") for p in paths)
    assert (tmp_path / "map.csv").read_bytes() == b"a,b\n"


def test_write_objects_that_cannot_land_leave_no_file_beside_them(tmp_path: Path) -> None:
    objects = _objects()
    out = tmp_path / "out"
    out.mkdir()
    # A file where the first object's patient folder must go: the move into place fails
    # after everything (the map included) was written.
    (out / str(objects[0].PatientID)).write_text("in the way")
    with pytest.raises(OSError):
        write_objects(objects, out, beside={tmp_path / "map.csv": b"a,b\n"})
    assert not (tmp_path / "map.csv").exists()
    assert _tree(out) == {str(objects[0].PatientID): "in the way"}


def test_write_objects_refuses_a_compressed_object_before_writing(tmp_path: Path) -> None:
    objects = _objects()
    objects[1].file_meta.TransferSyntaxUID = JPEGBaseline8Bit
    with pytest.raises(InvalidInputError, match="only uncompressed objects"):
        write_objects(objects, tmp_path / "out", beside={tmp_path / "map.csv": b""})
    assert not (tmp_path / "out").exists() and not (tmp_path / "map.csv").exists()
