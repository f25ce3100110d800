"""``rtforge batch --scheduler``: the local batch's per-series step on Dask distributed."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pydicom
import pytest

from rtforge.batch import MANIFEST_NAME, run_batch
from rtforge.cli import main
from rtforge.demo import make_phantom_patient
from rtforge.distributed import parse_scheduler
from rtforge.errors import InvalidInputError

distributed = pytest.importorskip("distributed")


def _series(out: Path) -> dict[str, list[pydicom.Dataset]]:
    """Every finished output series, keyed by its folder relative to ``out``."""
    found = {}
    for folder in sorted(p for p in out.glob("*/*/*") if p.is_dir()):
        assert not folder.name.startswith("."), f"partial series left: {folder}"
        datasets = [pydicom.dcmread(f) for f in folder.glob("*.dcm")]
        found[str(folder.relative_to(out))] = sorted(datasets, key=lambda ds: int(ds.InstanceNumber))
    return found


def _check_complete(out: Path, expected: int) -> None:
    series = _series(out)
    assert len(series) == expected
    for name, datasets in series.items():
        numbers = [int(ds.InstanceNumber) for ds in datasets]
        assert numbers == list(range(1, len(datasets) + 1)), name  # complete, no duplicates
    uids = [json.loads(x)["output_series_uid"]
            for x in (out / MANIFEST_NAME).read_text().splitlines()]
    assert len(uids) == len(set(uids)) == expected


@pytest.fixture(scope="module")
def four_series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two phantom patients: four series (oblique and tilted), small."""
    src = tmp_path_factory.mktemp("four") / "src"
    make_phantom_patient(src / "a", size=48, nslices=12)
    make_phantom_patient(src / "b", size=48, nslices=12)
    return src


@pytest.mark.parametrize("text, expected", [("local:2", 2), ("tcp://127.0.0.1:8786",
                                                              "tcp://127.0.0.1:8786")])
def test_parse_scheduler(text: str, expected: str | int) -> None:
    assert parse_scheduler(text) == expected


@pytest.mark.parametrize("text", ["local:0", "local:x", "127.0.0.1:8786", "tcp://host", ""])
def test_parse_scheduler_rejects(text: str) -> None:
    with pytest.raises(InvalidInputError, match="--scheduler"):
        parse_scheduler(text)


def test_bad_scheduler_fails_before_touching_anything(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="--scheduler"):
        run_batch(tmp_path / "nowhere", tmp_path / "out", scheduler="tcp:/oops")
    assert not (tmp_path / "out").exists()


def test_cli_bad_scheduler_is_usage_error(four_series: Path, tmp_path: Path, capsys) -> None:
    assert main(["batch", str(four_series), str(tmp_path / "out"), "--scheduler", "local:0"]) == 2
    assert "--scheduler" in capsys.readouterr().err


def test_local_cluster_equals_local_batch(four_series: Path, tmp_path: Path, capsys) -> None:
    local, dask = tmp_path / "local", tmp_path / "dask"
    assert main(["batch", str(four_series), str(local), "-q", "--no-fsync"]) == 0
    capsys.readouterr()
    assert main(["batch", str(four_series), str(dask), "--scheduler", "local:2", "--json",
                 "--no-fsync"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert len(report["done"]) == 4 and not report["failed"]
    _check_complete(dask, 4)
    expected, got = _series(local), _series(dask)
    assert got.keys() == expected.keys()
    for name in expected:
        for a, b in zip(expected[name], got[name], strict=True):
            assert a.SOPInstanceUID == b.SOPInstanceUID
            for keyword in ("ImagePositionPatient", "ImageOrientationPatient", "PixelSpacing",
                            "SliceThickness", "Rows", "Columns"):
                assert a[keyword].value == b[keyword].value, (name, keyword)
            np.testing.assert_array_equal(a.pixel_array, b.pixel_array)
    # A re-run on Dask finds everything done.
    assert main(["batch", str(four_series), str(dask), "--scheduler", "local:2", "--json"]) == 0
    again = json.loads(capsys.readouterr().out)
    assert len(again["skipped"]) == 4 and not again["done"]


def test_worker_killed_mid_series_is_redone(tmp_path: Path) -> None:
    """SIGKILL a worker while it writes a series: the series is redone, and a re-run
    completes the job with nothing duplicated and no partial series."""
    src, out = tmp_path / "src", tmp_path / "out"
    make_phantom_patient(src / "a", size=128, nslices=32)
    make_phantom_patient(src / "b", size=128, nslices=32)
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  host="127.0.0.1", dashboard_address=None) as cluster, \
            distributed.Client(cluster) as client:
        pids = set(client.run(os.getpid).values())
        outcome: dict = {}
        slices: list[int] = []
        series: list[tuple[int, int]] = []
        runner = threading.Thread(target=lambda: outcome.update(result=run_batch(
            src, out, scheduler=cluster.scheduler_address, on_slices=slices.append,
            on_series=lambda done, total: series.append((done, total)))))
        runner.start()
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and runner.is_alive():
            if any(any(p.glob("*.dcm")) for p in out.glob("*/*/.partial-*")):
                break
            time.sleep(0.005)
        assert runner.is_alive(), "the batch finished before a worker could be killed"
        os.kill(sorted(pids)[0], signal.SIGKILL)
        runner.join(timeout=180)
        assert not runner.is_alive()
    result = outcome["result"]
    assert series[-1] == (4, 4) and sum(slices) > 0  # progress from the workers
    assert len(result.done) + len(result.failed) == 4
    # Whatever the first run managed, a re-run finishes it.
    rerun = run_batch(src, out)
    assert not rerun.failed
    assert len(rerun.done) == len(result.failed)
    _check_complete(out, 4)
