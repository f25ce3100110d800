"""``reslice_folder``: every series under a folder, all or nothing, from Python."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rtforge.errors import InvalidInputError, RtforgeError
from rtforge.io.series import discover_series
from rtforge.workflows.reconvert import ReconvertOptions
from rtforge.workflows.reslice import reslice_folder

OPTIONS = ReconvertOptions(durable=False)


def _dcm_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.dcm")) if root.exists() else []


def _good_then_bad(phantom_patient, tmp_path: Path) -> tuple[Path, Path]:
    """Both phantom series under one folder; the one discovered second cut in half."""
    src = tmp_path / "src"
    for n, series in enumerate(phantom_patient):
        shutil.copytree(series.folder, src / f"s{n}")
    second = discover_series(src).series[1]
    bad = Path(second.paths[4])
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    return src, bad


def test_one_after_another_removes_the_series_it_wrote_when_a_later_one_fails(
        phantom_patient, tmp_path) -> None:
    src, bad = _good_then_bad(phantom_patient, tmp_path)
    out = tmp_path / "out"
    finished: set[int] = set()

    def progress(index: int, count: int, done: int, total: int) -> None:
        if done == total:
            finished.add(index)

    with pytest.raises(RtforgeError, match=bad.parent.name):
        reslice_folder(src, out, OPTIONS, workers=1, on_series_slices=progress)
    assert finished == {1}  # the first series was written in full by this call...
    assert _dcm_files(out) == []  # ...and removed with the failure of the second


def test_in_workers_removes_the_series_it_wrote_when_one_fails(phantom_patient, tmp_path) -> None:
    src, bad = _good_then_bad(phantom_patient, tmp_path)
    out = tmp_path / "out"
    on_disk: list[int] = []

    def series_done(done: int, total: int) -> None:
        if done == total:  # every series has run to its end; the good one is in place
            on_disk.append(len(_dcm_files(out)))

    with pytest.raises(RtforgeError, match=bad.parent.name):
        reslice_folder(src, out, OPTIONS, workers=2, on_series=series_done)
    assert len(on_disk) == 1 and on_disk[0] > 0, on_disk  # written by this call...
    assert _dcm_files(out) == []  # ...and removed


@pytest.mark.parametrize("workers", [1, 2])
def test_series_complete_before_the_run_are_kept(phantom_patient, tmp_path, workers) -> None:
    src, _ = _good_then_bad(phantom_patient, tmp_path)
    good = discover_series(src, strict=False).series[0]
    out = tmp_path / "out"
    first = reslice_folder(good.paths[0], out, OPTIONS)  # one file: its whole series
    before = {p: p.read_bytes() for p in _dcm_files(out)}
    assert len(first.reports) == 1 and before
    with pytest.raises(RtforgeError):
        reslice_folder(src, out, OPTIONS, workers=workers)
    assert {p: p.read_bytes() for p in _dcm_files(out)} == before


def test_every_series_is_reported_in_discovery_order(phantom_root, tmp_path) -> None:
    result = reslice_folder(phantom_root, tmp_path / "out", OPTIONS, workers=1)
    found = discover_series(phantom_root).series
    assert [r.source_series_uid for r in result.reports] == [s.series_uid for s in found]
    assert all(Path(r.output_dir).is_dir() and not r.skipped for r in result.reports)
    assert result.to_dict()["ignored_files"] == []


def test_an_output_root_that_is_a_file_is_refused(phantom_root, tmp_path) -> None:
    out = tmp_path / "out"
    out.write_text("a file")
    with pytest.raises(InvalidInputError, match="OUT must be a folder"):
        reslice_folder(phantom_root, out, OPTIONS)
    assert out.read_text() == "a file"


@pytest.mark.parametrize("workers", [1, 2])
def test_on_discovered_is_told_the_number_of_series_before_any_is_resliced(
        phantom_patient, phantom_root, tmp_path, workers) -> None:
    told: list[tuple[int, bool]] = []

    def discovered(out: Path):
        return lambda count: told.append((count, bool(_dcm_files(out))))

    one = phantom_patient[0].folder
    reslice_folder(one, tmp_path / "one", OPTIONS, workers=workers,
                   on_discovered=discovered(tmp_path / "one"))
    reslice_folder(phantom_root, tmp_path / "two", OPTIONS, workers=workers,
                   on_discovered=discovered(tmp_path / "two"))
    assert told == [(1, False), (2, False)]  # called once each, before anything was written
    assert len(_dcm_files(tmp_path / "two")) > len(_dcm_files(tmp_path / "one")) > 0
