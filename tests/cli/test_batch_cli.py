"""``rtforge batch``: parallel, resumable, atomic per series."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pydicom
import pytest

from rtforge.cli import main
from rtforge.workflows.batch import MANIFEST_NAME
from rtforge.workflows.demo import make_phantom_patient


def _series_dirs(out: Path) -> list[Path]:
    return sorted(p for p in out.glob("*/*/*") if p.is_dir())


def _partials(out: Path) -> list[Path]:
    return sorted(out.glob("*/*/.partial-*"))


def _check_complete(out: Path, expected_series: int) -> None:
    dirs = _series_dirs(out)
    assert len([d for d in dirs if not d.name.startswith(".")]) == expected_series
    assert not _partials(out)
    for d in dirs:
        files = sorted(d.glob("*.dcm"))
        numbers = sorted(int(pydicom.dcmread(f, stop_before_pixels=True).InstanceNumber)
                         for f in files)
        assert numbers == list(range(1, len(files) + 1)), d  # complete, no duplicates
    lines = (out / MANIFEST_NAME).read_text().splitlines()
    uids = [json.loads(x)["output_series_uid"] for x in lines]
    assert len(uids) == len(set(uids)) == expected_series


def test_batch_two_workers_then_rerun_skips(phantom_root, tmp_path, capsys) -> None:
    out = tmp_path / "out"
    assert main(["batch", str(phantom_root), str(out), "--workers", "2", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert len(first["done"]) == 2 and not first["failed"]
    _check_complete(out, 2)
    assert main(["batch", str(phantom_root), str(out), "--json"]) == 0
    second = json.loads(capsys.readouterr().out)
    assert len(second["skipped"]) == 2 and not second["done"]
    _check_complete(out, 2)


def test_batch_scans_a_large_archive_with_its_workers(phantom_root, tmp_path, capsys,
                                                     monkeypatch) -> None:
    # An archive counts as large from 16 chunks of files; here one file per chunk, so that
    # the phantom's 32 files are scanned by this process and the workers together.
    import rtforge.io.series as series_module

    monkeypatch.setattr(series_module, "_SCAN_CHUNK", 1)
    monkeypatch.setattr(series_module, "_PARALLEL_SCAN_CHUNKS", 2)
    submitted: list[int] = []
    real = series_module._scan_chunks

    def counting(chunks, wanted, executor):
        submitted.append(0 if executor is None else len(chunks))
        yield from real(chunks, wanted, executor)

    monkeypatch.setattr(series_module, "_scan_chunks", counting)
    out = tmp_path / "out"
    assert main(["batch", str(phantom_root), str(out), "--workers", "2", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["done"]) == 2 and not report["failed"]
    assert submitted and submitted[0] >= 32  # scanned with the workers as an executor
    _check_complete(out, 2)


@pytest.mark.parametrize("workers", ["1", "auto"])  # in this process (reading ahead) and a pool
def test_batch_reports_a_bad_series_and_goes_on(phantom_patient, tmp_path, capsys,
                                                workers) -> None:
    src = tmp_path / "src"
    shutil.copytree(phantom_patient[0].folder, src / "good")
    shutil.copytree(phantom_patient[1].folder, src / "bad")
    victim = sorted((src / "bad").glob("*.dcm"))[5]
    victim.write_bytes(victim.read_bytes()[:-3000])  # truncated pixel data
    out = tmp_path / "out"
    assert main(["batch", str(src), str(out), "--json", "--workers", workers]) == 1
    captured = capsys.readouterr()
    report = json.loads(captured.out)
    assert len(report["done"]) == 1 and len(report["failed"]) == 1
    assert report["failed"][0]["source_series_uid"] == phantom_patient[1].series_uid
    assert phantom_patient[1].series_uid in captured.err
    _check_complete(out, 1)


def test_batch_interrupted_then_rerun_completes(tmp_path) -> None:
    """Kill the batch while a series is half written; the re-run finishes the job
    with no duplicate and no partial series."""
    src = tmp_path / "src"
    # Four series (two phantom patients), large enough that a series takes a while.
    make_phantom_patient(src / "a", size=160, nslices=40)
    make_phantom_patient(src / "b", size=160, nslices=40)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "rtforge", "batch", str(src), str(out), "-q"],
                            start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if out.exists() and any(any(p.glob("*.dcm")) for p in _partials(out)):
                break
            time.sleep(0.005)
        assert proc.poll() is None, "batch finished before it could be interrupted"
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
    assert _partials(out), "the kill should leave a partial series behind"
    # Re-run to completion.
    assert main(["batch", str(src), str(out), "-q"]) == 0
    _check_complete(out, 4)


def test_auto_workers_is_bounded_by_cpus_series_and_memory() -> None:
    from rtforge.io.series import SeriesInfo
    from rtforge.workflows.batch import WORKER_BASE_BYTES, WORKER_VOLUMES, auto_workers

    def series(n: int, voxels: int) -> list[SeriesInfo]:
        return [SeriesInfo(f"1.2.{i}", "CT", "1.2", "P", (), "", voxels) for i in range(n)]

    assert auto_workers(series(8, 0), cpus=4) == 4
    assert auto_workers(series(3, 0), cpus=4) == 3
    assert auto_workers([], cpus=4) == 1
    per_worker = WORKER_BASE_BYTES + WORKER_VOLUMES * 2 * 512 * 512 * 200
    assert auto_workers(series(8, 512 * 512 * 200), cpus=8, available=3 * per_worker + 1) == 3
    assert auto_workers(series(8, 512 * 512 * 200), cpus=8, available=per_worker // 2) == 1


def test_batch_rejects_bad_worker_counts(phantom_root, tmp_path, capsys) -> None:
    for bad in ("0", "-1", "two"):
        assert main(["batch", str(phantom_root), str(tmp_path / "out"), "--workers", bad]) == 2
        assert "--workers" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("flags, message", [
    (["--worker-timeout", "0"], "--worker-timeout: must be more than 0"),
    (["--worker-timeout", "soon"], "--worker-timeout: must be more than 0"),
    (["--connect-timeout", "-1"], "--connect-timeout: must be more than 0"),
    (["--dashboard", "http://x"], "--dashboard: dashboard must be HOST:PORT"),
    (["--scheduler", "tcp://127.0.0.1:8786", "--dashboard", "127.0.0.1:8787"],
     "--dashboard needs --scheduler local:N"),
    (["--dashboard", "127.0.0.1:8787"], "--dashboard needs --scheduler local:N")])
def test_batch_rejects_bad_dask_flags(phantom_root, tmp_path, capsys, flags, message) -> None:
    """Bad Dask flags, and a dashboard for anything but a local cluster: usage errors."""
    assert main(["batch", str(phantom_root), str(tmp_path / "out"), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
