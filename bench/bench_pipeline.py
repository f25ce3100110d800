"""pytest-benchmark: one CT series reconverted end to end (read, reslice, write).

Run with ``python -m pytest bench/bench_pipeline.py --benchmark-only``; the
side-by-side comparison with SimpleITK and plastimatch is
``bench/compare_pipeline.py``.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from rtforge.core.phantom import oblique_stack, sample_phantom
from rtforge.io.ct import write_ct_series
from rtforge.workflows.reconvert import ReconvertOptions, reconvert_series


@pytest.fixture(scope="module")
def oblique_series(tmp_path_factory: pytest.TempPathFactory) -> Path:
    stack = oblique_stack(size=256, spacing=1.4, nslices=100, slice_spacing=1.6)
    root = tmp_path_factory.mktemp("src")
    return write_ct_series(sample_phantom(stack), stack, root, derived=False).series_dir


def test_reconvert_series(benchmark, oblique_series: Path, tmp_path: Path) -> None:
    options = ReconvertOptions()
    counter = iter(range(10**6))

    def run() -> None:
        out = tmp_path / str(next(counter))
        reconvert_series(oblique_series, out, options)
        shutil.rmtree(out)

    run()  # JIT warm-up outside the timing
    benchmark.pedantic(run, rounds=5, iterations=1)
    assert benchmark.stats is not None
