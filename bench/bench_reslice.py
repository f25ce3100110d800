"""pytest-benchmark suite of the reslice kernel on a 256x256x80 CT.

Run with ``NUMBA_NUM_THREADS=2 python -m pytest bench/bench_reslice.py``
(benchmarks are never part of the test run).  Each case is warmed up (JIT
compiled) outside the timing.  For same-run ratios against SimpleITK and
scipy, use ``bench/compare_reslice.py``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest

from compare_reslice import make_case
from rtforge.core.geometry import SliceStack
from rtforge.core.reslice import default_output_grid, is_exact_reindex, reslice

SMALL = {"size": 256, "nslices": 80, "pixel": 1.5, "gap": 3.0}


def _axial_flipped(array: np.ndarray, stack: SliceStack) -> tuple[np.ndarray, SliceStack]:
    """The same voxels as a head-first-prone-like series: rows and columns reversed."""
    nk, nj, ni = array.shape
    si, sj = stack.pixel_spacing
    z = np.arange(nk) * 3.0
    positions = np.column_stack([np.full(nk, (ni - 1) * si), np.full(nk, (nj - 1) * sj), z])
    flipped = SliceStack(positions, (-1, 0, 0), (0, -1, 0), (si, sj), nj, ni)
    return np.ascontiguousarray(array[:, ::-1, ::-1]), flipped


CASES: dict[str, Callable[[], tuple[np.ndarray, SliceStack]]] = {
    "oblique": lambda: make_case(**SMALL),
    "tilted": lambda: make_case(tilt=15.0, **SMALL),
    "uneven": lambda: make_case(uneven=True, **SMALL),
    "reindex": lambda: _axial_flipped(*make_case(angles=(0.0, 0.0), **SMALL)),
}


@pytest.mark.parametrize("interpolation", ["linear", "nearest"])
@pytest.mark.parametrize("case", list(CASES))
def test_reslice(benchmark, case: str, interpolation: str) -> None:
    array, stack = CASES[case]()
    grid = default_output_grid(stack)
    assert is_exact_reindex(stack, grid) == (case == "reindex")
    out = np.empty(grid.shape, np.int16)
    reslice(array, stack, grid, interpolation=interpolation, out=out)  # JIT warm-up
    benchmark.extra_info["mvoxels"] = grid.size / 1e6
    benchmark(reslice, array, stack, grid, interpolation=interpolation, out=out)
