"""pytest-benchmark suite of the DRR (regressions, not comparisons: see compare_drr.py).

Run::

    python -m pytest bench/bench_drr.py --benchmark-only

A 256x256x100 phantom (1.4 x 1.4 x 1.6 mm), 256x256 DRRs (1.5 mm pixels),
four gantry angles per call; the volume is prepared once, outside the timing,
as a service keeping a CT in memory would.
"""

from __future__ import annotations

import numpy as np
import pytest

from rtforge.core.beam import BeamGeometry
from rtforge.core.drr import Attenuation, DrrMethod, compute_drr, prepare_volume, quantize
from rtforge.core.geometry import Grid, Volume
from rtforge.core.phantom import axial_stack, sample_phantom


@pytest.fixture(scope="module")
def volume() -> Volume:
    stack = axial_stack(size=256, spacing=1.4, nslices=100, slice_spacing=1.6)
    hu = sample_phantom(stack)
    return Volume(hu, Grid(hu.shape, origin=stack.positions[0], spacing=(1.4, 1.4, 1.6)))


@pytest.fixture(scope="module")
def geometries() -> list[BeamGeometry]:
    return [BeamGeometry(g, (0, 0, 0), rows=256, columns=256, pixel_spacing=(1.5, 1.5))
            for g in (0, 45, 90, 135)]


@pytest.mark.parametrize("method", ["siddon", "trilinear"])
def test_drr_four_angles(benchmark, volume, geometries, method) -> None:  # noqa: ANN001
    prepared = prepare_volume(volume, Attenuation())
    compute_drr(prepared, geometries[:1], method=method)  # compile / load the cache
    out = benchmark(compute_drr, prepared, geometries, method=method)
    assert out.shape == (4, 256, 256) and out.max() > 1


def test_prepare_volume(benchmark, volume) -> None:  # noqa: ANN001
    def prepare() -> None:
        prepare_volume(volume, Attenuation(hu_window=(-500, 3000))).skip_map(DrrMethod.SIDDON)

    benchmark(prepare)


def test_quantize(benchmark) -> None:  # noqa: ANN001
    integrals = np.random.default_rng(0).uniform(0, 8, (512, 512)).astype(np.float32)
    q = benchmark(quantize, integrals)
    assert q.pixels.dtype == np.uint16
