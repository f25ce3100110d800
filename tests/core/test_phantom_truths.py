"""Phantom truths: things at known patient positions land where they belong.

The truth comes from the analytic phantom (positions in mm), never from our
own output.
"""

from __future__ import annotations

import numpy as np
import pytest

from rtforge.core.geometry import Grid, SliceStack
from rtforge.core.phantom import (
    MARKERS,
    ROD_AXIS,
    oblique_stack,
    sample_phantom,
    tilted_stack,
    uneven_stack,
)
from rtforge.core.reslice import default_output_grid, reslice


def _marker_centroids(volume: np.ndarray, grid: Grid) -> np.ndarray:
    """HU-weighted centroid of the dense voxels within 8 mm of each true marker."""
    nk, nj, ni = grid.shape
    kk, jj, ii = np.meshgrid(np.arange(nk), np.arange(nj), np.arange(ni), indexing="ij")
    found = []
    for m in MARKERS:
        idx = grid.patient_to_index(m)
        lo = np.maximum(np.floor(idx - 8.0 / grid.spacing).astype(int), 0)
        hi = np.minimum(np.ceil(idx + 8.0 / grid.spacing).astype(int) + 1, [ni, nj, nk])
        sl = (slice(lo[2], hi[2]), slice(lo[1], hi[1]), slice(lo[0], hi[0]))
        v = volume[sl].astype(np.float64)
        w = np.where(v > 1600, v - 1600, 0.0)
        assert w.sum() > 0, f"marker at {m} not found"
        ijk = np.stack([ii[sl], jj[sl], kk[sl]], axis=-1).reshape(-1, 3)
        c = (ijk * w.reshape(-1, 1)).sum(axis=0) / w.sum()
        found.append(grid.index_to_patient(c))
    return np.array(found)


def _small(stack_fn, **kw) -> SliceStack:
    return stack_fn(size=240, spacing=1.5, nslices=70, **kw)


@pytest.mark.parametrize("name, stack", [
    ("oblique", _small(oblique_stack, slice_spacing=2.0)),
    ("tilted", _small(tilted_stack, table_increment=2.0, tilt=15.0)),
])
def test_markers_land_within_half_a_voxel(name: str, stack: SliceStack) -> None:
    array = sample_phantom(stack)
    grid = default_output_grid(stack)
    out = reslice(array, stack, grid)
    found = _marker_centroids(out, grid)
    last = grid.index_to_patient(np.array(grid.shape[::-1]) - 1)
    inside = [i for i, m in enumerate(MARKERS) if np.all((m >= grid.origin) & (m <= last))]
    assert len(inside) >= 4, name
    err = np.abs(found[inside] - MARKERS[inside])
    assert np.all(err <= grid.spacing / 2), f"{name}: marker errors (mm) {err}"


def test_tilted_rod_comes_out_straight() -> None:
    """A rod along z acquired with 15 degrees of tilt is straight after reslicing:
    its centre is at the true (x, y) in every output slice, first and last included."""
    stack = _small(tilted_stack, table_increment=2.0, tilt=15.0)
    grid = default_output_grid(stack)
    out = reslice(sample_phantom(stack), stack, grid)
    rx, ry = ROD_AXIS
    ci = int(round((rx - grid.origin[0]) / grid.spacing[0]))
    cj = int(round((ry - grid.origin[1]) / grid.spacing[1]))
    r = 6
    jj, ii = np.meshgrid(np.arange(cj - r, cj + r + 1), np.arange(ci - r, ci + r + 1),
                         indexing="ij")
    # Where the acquisition covers the rod: each input plane n.p = d_k crosses the
    # rod's axis at z_k; output slices strictly between the first and last z_k must
    # all show the rod.
    n = stack.normal
    z_cross = (stack.offsets - n[0] * rx - n[1] * ry) / n[2]
    zs = grid.origin[2] + np.arange(grid.shape[0]) * grid.spacing[2]
    covered = (zs > z_cross.min()) & (zs < z_cross.max())
    assert covered.sum() > 50
    centres = []
    for k in np.flatnonzero(covered):
        v = out[k, cj - r:cj + r + 1, ci - r:ci + r + 1].astype(np.float64)
        w = np.where(v > 900, np.minimum(v, 1500) - 900, 0.0)
        assert w.sum() > 0, f"rod missing from output slice {k} (z = {zs[k]:.1f} mm)"
        x = grid.origin[0] + (ii * w).sum() / w.sum() * grid.spacing[0]
        y = grid.origin[1] + (jj * w).sum() / w.sum() * grid.spacing[1]
        centres.append((x, y))
    centres = np.array(centres)
    assert np.all(np.abs(centres[:, 0] - rx) <= grid.spacing[0] / 2)
    assert np.all(np.abs(centres[:, 1] - ry) <= grid.spacing[1] / 2)


def test_uneven_spacing_interpolates_a_linear_field_exactly() -> None:
    """Linear interpolation between unevenly spaced slices reproduces a field
    linear in z (HU = 10 z) to within rounding."""
    stack = uneven_stack(size=32, spacing=4.0, gaps=(2.0,) * 5 + (5.0,) * 4 + (1.0,) * 6)
    z = stack.positions[:, 2]
    array = np.repeat(np.round(10 * z).astype(np.int16)[:, None, None], 32 * 32).reshape(stack.shape)
    # exact input values: make z multiples of 0.1 mm so 10 z is an integer
    assert np.allclose(10 * z, np.round(10 * z))
    grid = default_output_grid(stack, spacing=(4.0, 4.0, 0.7))
    out = reslice(array, stack, grid)
    zs = grid.origin[2] + np.arange(grid.shape[0]) * grid.spacing[2]
    inside = (zs >= z.min()) & (zs <= z.max())
    expect = np.round(10 * zs[inside])
    got = out[inside][:, 16, 16].astype(np.float64)
    assert np.all(np.abs(got - expect) <= 1.0)
