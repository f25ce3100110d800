"""Reading series ahead of their reconversion."""

from __future__ import annotations

import threading

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

import rtforge.workflows.reconvert as reconvert
from rtforge.core.geometry import SliceStack
from rtforge.errors import InvalidInputError, RtforgeError
from rtforge.workflows.reconvert import read_ahead, source_slice_ranges


def test_read_ahead_keeps_order_delivers_errors_and_reads_one_ahead(phantom_patient, tmp_path,
                                                                    monkeypatch) -> None:
    good = [sorted(s.folder.glob("*.dcm")) for s in phantom_patient]
    bad = [tmp_path / "missing.dcm"]
    lock = threading.Lock()
    started: list[int] = []
    real = reconvert.read_series

    def counting(paths):  # the real reader, recording when each read starts
        with lock:
            started.append(len(paths))
        return real(paths)

    monkeypatch.setattr(reconvert, "read_series", counting)
    sources = [good[0], bad, good[1], good[0]]
    handles = read_ahead(sources)
    first = next(handles)
    series = first()
    assert series.series_uid == phantom_patient[0].series_uid
    # While the first is in use only the next one may be read: never two ahead.
    assert len(started) <= 2
    with pytest.raises(InvalidInputError, match="missing.dcm"):
        next(handles)()
    assert next(handles)().series_uid == phantom_patient[1].series_uid
    last = next(handles)
    assert last().series_uid == phantom_patient[0].series_uid
    with pytest.raises(StopIteration):
        next(handles)
    assert started == [len(s) for s in sources]
    with pytest.raises(RtforgeError, match="already taken"):
        last()


def test_read_ahead_of_nothing_yields_nothing() -> None:
    assert list(read_ahead([])) == []


def test_worker_preload_loads_kernels_without_the_blas_probe_and_keeps_blas_usable() -> None:
    import os
    import subprocess
    import sys

    code = (
        "import gc, os, sys\n"
        "import rtforge.workflows._worker_preload\n"
        "assert os.environ['OPENBLAS_NUM_THREADS'] == '1'\n"
        "assert gc.isenabled() and gc.get_freeze_count() > 10000, gc.get_freeze_count()\n"
        "from rtforge.core import _reslice_kernels as k\n"
        "assert k.linear_regular.signatures, 'kernels not loaded'\n"
        "assert 'scipy.linalg' not in sys.modules, 'the BLAS probe ran'\n"
        "import numpy as np, numba\n"
        "dot = numba.njit(lambda a, b: np.dot(a, b))\n"
        "a = np.arange(6.0).reshape(2, 3)\n"
        "assert np.array_equal(dot(a, a.T), a @ a.T)\n"
        "assert 'scipy.linalg' in sys.modules\n"
    )
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    # A user's own BLAS setting is kept.
    check = "import os, rtforge.workflows._worker_preload; print(os.environ['OPENBLAS_NUM_THREADS'])"
    proc = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True,
                          env={**env, "OPENBLAS_NUM_THREADS": "3"}, check=True)
    assert proc.stdout.strip() == "3"


@pytest.mark.parametrize("chunk", [1, 3, 64])
def test_reconverted_slices_equal_one_reslice_whatever_the_chunking(phantom_patient, tmp_path,
                                                                    chunk) -> None:
    import numpy as np

    from rtforge.core.reslice import default_output_grid, reslice
    from rtforge.io.series import read_series

    source = phantom_patient[0].folder
    report = reconvert.reconvert_series(
        source, tmp_path, reconvert.ReconvertOptions(chunk=chunk, durable=False))
    series = read_series(source)
    expected = reslice(series.array, series.stack, default_output_grid(series.stack))
    written = read_series(report.output_dir)
    assert written.array.shape == expected.shape
    # Slabs cycle through three buffers: a buffer reused before its slices were written
    # would show here as slices of another chunk.
    assert np.array_equal(written.array, expected)


def _slices_crossed(stack, grid, k: int) -> tuple[int, int]:
    """Reference for source_slice_ranges: one output slice, from its four corners."""
    nk, nj, ni = grid.shape
    corners = np.array([[i, j, k] for j in (0, nj - 1) for i in (0, ni - 1)], dtype=float)
    d = grid.index_to_patient(corners) @ stack.normal
    lo = int(np.searchsorted(stack.offsets, d.min(), side="right")) - 1
    hi = int(np.searchsorted(stack.offsets, d.max(), side="left"))
    n = stack.nslices - 1
    return max(0, min(lo, n)), max(0, min(hi, n))


@pytest.mark.parametrize("seed", range(4))
def test_source_slice_ranges_match_the_per_slice_corners(seed: int) -> None:
    rng = np.random.default_rng(seed)
    rot = Rotation.random(random_state=seed).as_matrix() if seed else np.eye(3)
    nk = int(rng.integers(1, 12))
    d = np.concatenate([[0.0], np.cumsum(rng.uniform(0.5, 3.0, nk - 1))])
    tilt = rng.uniform(-0.3, 0.3)  # in-plane shift per mm along the normal (gantry tilt)
    positions = d[:, None] * rot[:, 2] + (tilt * d)[:, None] * rot[:, 1]
    stack = SliceStack(positions, rot[:, 0], rot[:, 1], (0.8, 1.1), 7, 5)
    grid = stack.bounding_grid(tuple(rng.uniform(0.5, 2.0, 3)))
    ranges = source_slice_ranges(stack, grid)
    assert ranges.shape == (grid.shape[0], 2)
    assert [tuple(int(v) for v in row) for row in ranges] == \
        [_slices_crossed(stack, grid, k) for k in range(grid.shape[0])]
    assert np.all(ranges[:, 0] <= ranges[:, 1])
