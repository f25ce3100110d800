"""Reslice kernel against references from outside the code under test.

- Regular (evenly spaced, untilted) stacks: ``scipy.ndimage.map_coordinates``
  (order 1 and 0, ``mode="nearest"``, which is the edge value inside the
  half-voxel border) at the output centres' fractional input indices.
- Tilted and unevenly spaced stacks: :func:`per_slice_reference`, a plain
  NumPy statement of the per-slice method using 2-D ``map_coordinates`` on each
  slice.
- Exact re-index: the volume we started from, bit for bit.

Inputs are tiny (JIT cost dominates) and seeded.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from scipy.ndimage import map_coordinates
from scipy.spatial.transform import Rotation

from rtforge.core import _reslice_kernels
from rtforge.core.geometry import Grid, SliceStack
from rtforge.core.reslice import (
    Interpolation,
    default_output_grid,
    is_exact_reindex,
    reslice,
)
from rtforge.errors import GeometryError, InvalidInputError

FILL = -1000


# ---------------------------------------------------------------- helpers
def round_half_away(x: np.ndarray) -> np.ndarray:
    """Round to nearest, half away from zero."""
    return np.trunc(x + np.copysign(0.5, x))


def grid_points(grid: Grid) -> np.ndarray:
    """Patient positions of every voxel centre, in ``array.ravel()`` order."""
    k, j, i = np.meshgrid(*(np.arange(n) for n in grid.shape), indexing="ij")
    return grid.index_to_patient(np.stack([i, j, k], axis=-1).reshape(-1, 3))


def make_stack(rng: np.random.Generator, shape: tuple[int, int, int], *, tilt: float = 0.0,
               uneven: bool = False, rotate: bool = True) -> SliceStack:
    """A stack with random spacing, orientation (optional), gaps and tilt along the columns."""
    nk, nj, ni = shape
    rot = Rotation.random(random_state=rng).as_matrix() if rotate else np.eye(3)
    r, c, n = rot[:, 0], rot[:, 1], rot[:, 2]
    si, sj = rng.uniform(0.6, 1.4, size=2)
    gaps = rng.uniform(0.8, 3.0, size=nk - 1) if uneven else np.full(nk - 1, rng.uniform(1, 3))
    d = np.concatenate([[0.0], np.cumsum(gaps)])
    origin = rng.uniform(-50, 50, size=3)
    positions = origin + d[:, None] * n + (d * np.tan(np.radians(tilt)))[:, None] * c
    return SliceStack(positions, r, c, (si, sj), nj, ni)


def random_volume(rng: np.random.Generator, shape: tuple[int, int, int]) -> np.ndarray:
    return rng.integers(-1000, 2500, size=shape).astype(np.int16)


def padded_grid(stack: SliceStack, spacing: np.ndarray, margin: float) -> Grid:
    """Axis-aligned grid over the stack's centres plus ``margin`` mm each side."""
    g = stack.bounding_grid(spacing)
    extra = np.ceil(margin / g.spacing).astype(int)
    shape = tuple(int(n) for n in np.array(g.shape) + 2 * extra[::-1])
    return Grid(shape, g.origin - extra * g.spacing, g.spacing)


def regular_reference(volume: np.ndarray, stack: SliceStack, grid: Grid, order: int,
                      fill: int = FILL) -> np.ndarray:
    """map_coordinates at each output centre's index in the stack's own (regular) grid."""
    idx = stack.to_grid().patient_to_index(grid_points(grid))
    n = np.array(volume.shape[::-1])
    inside = np.all((idx >= -0.5) & (idx <= n - 0.5), axis=1)
    val = map_coordinates(volume.astype(np.float64), idx[:, ::-1].T, order=order,
                          mode="nearest")
    return np.where(inside, round_half_away(val), fill).reshape(grid.shape)


def per_slice_reference(volume: np.ndarray, stack: SliceStack, grid: Grid, order: int,
                        fill: int = FILL) -> np.ndarray:
    """The per-slice method, plainly.

    Bracket each point's offset along the normal between slices k and k+1;
    in each slice take its own in-plane coordinates of the point (projected
    along the normal); interpolate bilinearly in each (or take the nearest
    slice and pixel), then linearly between the two slices.
    """
    p = grid_points(grid)
    nk, nj, ni = volume.shape
    n, r, c = stack.normal, stack.row_direction, stack.column_direction
    si, sj = stack.pixel_spacing
    d = stack.positions @ n
    dp = p @ n
    k = np.clip(np.searchsorted(d, dp, side="right") - 1, 0, nk - 2)
    t = np.clip((dp - d[k]) / (d[k + 1] - d[k]), 0.0, 1.0)

    def inplane(kk: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rel = p - stack.positions[kk]
        return rel @ r / si, rel @ c / sj

    def sample(kk: np.ndarray, o: int) -> np.ndarray:
        u, v = inplane(kk)
        val = np.empty(len(p))
        for s in np.unique(kk):
            sel = kk == s
            val[sel] = map_coordinates(volume[s].astype(np.float64), [v[sel], u[sel]],
                                       order=o, mode="nearest")
        return val

    u0, v0 = inplane(k)
    u1, v1 = inplane(k + 1)
    ub, vb = (1 - t) * u0 + t * u1, (1 - t) * v0 + t * v1
    inside = ((dp >= d[0] - (d[1] - d[0]) / 2) & (dp <= d[-1] + (d[-1] - d[-2]) / 2)
              & (ub >= -0.5) & (ub <= ni - 0.5) & (vb >= -0.5) & (vb <= nj - 0.5))
    if order == 1:
        val = (1 - t) * sample(k, 1) + t * sample(k + 1, 1)
    else:
        val = sample(np.where(t >= 0.5, k + 1, k), 0)
    return np.where(inside, round_half_away(val), fill).reshape(grid.shape)


def point_grid(point: np.ndarray) -> Grid:
    """A one-voxel axis-aligned grid at ``point``."""
    return Grid((1, 1, 1), point, (1.0, 1.0, 1.0))


def sample_at(volume: np.ndarray, stack: SliceStack, point: np.ndarray, **kw: object) -> int:
    return int(reslice(volume, stack, point_grid(point), **kw)[0, 0, 0])


def axial_stack(shape: tuple[int, int, int], spacing=(1.0, 1.0), offsets=None,
                origin=(0.0, 0.0, 0.0)) -> SliceStack:
    nk, nj, ni = shape
    z = np.arange(nk, dtype=float) * 2.0 if offsets is None else np.asarray(offsets, float)
    positions = np.asarray(origin) + np.column_stack([np.zeros(nk), np.zeros(nk), z])
    return SliceStack(positions, (1, 0, 0), (0, 1, 0), spacing, nj, ni)


# ---------------------------------------------------------- against scipy
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("order", [1, 0])
def test_regular_oblique_matches_map_coordinates(seed: int, order: int) -> None:
    rng = np.random.default_rng(seed)
    shape = tuple(int(v) for v in rng.integers(4, 9, size=3))
    stack = make_stack(rng, shape)
    volume = random_volume(rng, shape)
    grid = padded_grid(stack, rng.uniform(0.4, 1.0, size=3), margin=2.0)
    interp = "linear" if order == 1 else "nearest"
    out = reslice(volume, stack, grid, interpolation=interp)
    assert out.dtype == np.int16 and out.shape == grid.shape
    expected = regular_reference(volume, stack, grid, order)
    np.testing.assert_array_equal(out, expected)
    assert (out != FILL).sum() > 300  # the comparison covered the inside


@pytest.mark.parametrize("tilt, uneven", [(15.0, False), (0.0, True), (-10.0, True)])
@pytest.mark.parametrize("order", [1, 0])
def test_tilted_and_uneven_match_per_slice_reference(tilt: float, uneven: bool,
                                                     order: int) -> None:
    rng = np.random.default_rng(int(abs(tilt)) + 7 * uneven + order)
    shape = (6, 5, 7)
    stack = make_stack(rng, shape, tilt=tilt, uneven=uneven)
    assert stack.is_tilted() == (tilt != 0) and stack.is_uneven() == uneven
    volume = random_volume(rng, shape)
    grid = padded_grid(stack, rng.uniform(0.5, 1.2, size=3), margin=2.0)
    out = reslice(volume, stack, grid, interpolation="linear" if order else "nearest")
    np.testing.assert_array_equal(out, per_slice_reference(volume, stack, grid, order))


def test_per_slice_reference_equals_trilinear_on_regular_stacks() -> None:
    """Sanity of the reference itself: untilted and even, projecting along n is trilinear."""
    rng = np.random.default_rng(11)
    stack = make_stack(rng, (5, 4, 6))
    volume = random_volume(rng, (5, 4, 6))
    grid = padded_grid(stack, np.full(3, 0.9), margin=1.0)
    np.testing.assert_array_equal(per_slice_reference(volume, stack, grid, 1),
                                  regular_reference(volume, stack, grid, 1))


@pytest.mark.parametrize("tilt", [0.0, 12.0])
def test_table_kernel_agrees_with_lattice_kernels(tilt: float) -> None:
    """Moving one slice by 1e-3 mm sends an evenly spaced stack (regular, or sheared by
    the tilt) to the per-slice table kernel; the results may differ only by that move."""
    rng = np.random.default_rng(5)
    stack = make_stack(rng, (6, 7, 8), tilt=tilt)
    volume = random_volume(rng, (6, 7, 8))
    grid = padded_grid(stack, np.full(3, 0.8), margin=1.0)
    positions = stack.positions.copy()
    positions[3] += 1e-3 * stack.normal
    nudged = SliceStack(positions, stack.row_direction, stack.column_direction,
                        stack.pixel_spacing, stack.rows, stack.columns)
    diff = reslice(volume, nudged, grid).astype(int) - reslice(volume, stack, grid)
    assert np.abs(diff).max() <= 4  # 1e-3 of a gap times <= 3500 HU, plus rounding
    assert np.mean(diff != 0) < 0.05


# ------------------------------------------------------------ exact re-index
def _signed_permutations() -> list[np.ndarray]:
    mats = []
    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            m = np.zeros((3, 3))
            m[list(perm), [0, 1, 2]] = signs
            mats.append(m)
    return mats


def _acquire(truth: np.ndarray, grid: Grid, axes: np.ndarray) -> tuple[np.ndarray, SliceStack]:
    """The truth volume as a series whose i, j, k axes point along the columns of ``axes``."""
    n_out = np.array(grid.shape[::-1])  # (NX, NY, NZ)
    perm = np.argmax(np.abs(axes), axis=0)  # patient axis of input axis a
    sign = axes[perm, [0, 1, 2]]
    n_in = n_out[perm]
    k, j, i = np.meshgrid(*(np.arange(n) for n in n_in[::-1]), indexing="ij")
    out_idx = [None, None, None]
    for a, idx in enumerate((i, j, k)):
        out_idx[perm[a]] = idx if sign[a] > 0 else n_out[perm[a]] - 1 - idx
    array = truth[out_idx[2], out_idx[1], out_idx[0]]
    start = np.where(sign > 0, 0, n_out[perm] - 1)
    corner = np.zeros(3)
    corner[perm] = start
    pos0 = grid.index_to_patient(corner)
    steps = grid.spacing[perm]
    positions = pos0 + np.arange(n_in[2])[:, None] * steps[2] * axes[:, 2]
    if np.linalg.det(axes) < 0:  # stacking against the normal: the reader sorts it reversed
        array, positions = array[::-1], positions[::-1]
    stack = SliceStack(positions, axes[:, 0], axes[:, 1], (steps[0], steps[1]),
                       int(n_in[1]), int(n_in[0]))
    return np.ascontiguousarray(array), stack


def test_exact_reindex_is_bit_identical_for_all_48_orientations() -> None:
    rng = np.random.default_rng(48)
    grid = Grid((4, 5, 6), (10.0, -20.0, 30.0), (0.5, 0.75, 2.0))
    truth = rng.integers(-32768, 32767, size=grid.shape, endpoint=True).astype(np.int16)
    for axes in _signed_permutations():
        array, stack = _acquire(truth, grid, axes)
        out_grid = default_output_grid(stack)
        assert out_grid == grid, axes
        assert is_exact_reindex(stack, out_grid)
        for interp in ("linear", "nearest"):
            out = reslice(array, stack, out_grid, interpolation=interp)
            assert out.dtype == np.int16
            assert out.tobytes() == truth.tobytes(), (axes, interp)


def test_interpolation_on_the_lattice_is_also_exact() -> None:
    """The interpolating kernel, given a coinciding lattice, returns the same bits."""
    rng = np.random.default_rng(3)
    grid = Grid((3, 4, 5), (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    truth = rng.integers(-32768, 32767, size=grid.shape, endpoint=True).astype(np.int16)
    axes = np.array([[0.0, 0, 1], [-1, 0, 0], [0, -1, 0]])
    array, stack = _acquire(truth, grid, axes)
    coords = np.zeros((4, 3))
    index_map = np.linalg.inv(stack.to_grid().affine) @ grid.affine
    coords[0] = index_map[:3, 3]
    coords[1:] = index_map[:3, :3].T
    out = np.empty(grid.shape, np.int16)
    _reslice_kernels.linear_regular(array, out, 0, coords, -32769, FILL, -32768, 32767)
    assert out.tobytes() == truth.tobytes()


def test_exact_reindex_detection() -> None:
    stack = axial_stack((3, 4, 5))
    grid = default_output_grid(stack)
    assert is_exact_reindex(stack, grid)
    shifted = Grid(grid.shape, grid.origin + [0.5, 0, 0], grid.spacing)
    assert not is_exact_reindex(stack, shifted)
    subsampled = Grid((2, 2, 3), grid.origin, (2.0, 2.0, 4.0))
    assert is_exact_reindex(stack, subsampled)
    assert not is_exact_reindex(axial_stack((1, 4, 5)), grid)  # no lattice along the normal
    rng = np.random.default_rng(0)
    oblique = make_stack(rng, (3, 4, 5))
    assert not is_exact_reindex(oblique, default_output_grid(oblique))
    volume = random_volume(rng, (3, 4, 5))
    out = reslice(volume, stack, subsampled)
    np.testing.assert_array_equal(out, volume[::2, ::2, ::2])


# ------------------------------------------------------------- outside rule
@pytest.mark.parametrize("axis", [0, 1, 2])
def test_half_voxel_border_takes_the_edge_value(axis: int) -> None:
    """Regular stack: within half a voxel beyond the outer centres, the edge value; beyond, fill."""
    spacing = np.array([1.0, 1.5, 2.0])  # x (columns), y (rows), z (slices)
    stack = axial_stack((3, 4, 5), spacing=(1.0, 1.5), offsets=[0.0, 2.0, 4.0])
    volume = np.arange(60, dtype=np.int16).reshape(3, 4, 5) * 10
    last = np.array([4, 3, 2])
    centre = np.array([2.0, 1.0, 1.0])  # (i, j, k) away from the other borders
    for index, inside in ((-0.4, True), (-0.6, False), (last[axis] + 0.4, True),
                          (last[axis] + 0.6, False)):
        ijk = centre.copy()
        ijk[axis] = index
        point = ijk * spacing
        edge = ijk.copy()
        edge[axis] = 0 if index < 0 else last[axis]
        expected = volume[int(edge[2]), int(edge[1]), int(edge[0])] if inside else FILL
        for interp in ("linear", "nearest"):
            assert sample_at(volume, stack, point, interpolation=interp) == expected, \
                (axis, index, interp)


def test_half_gap_beyond_first_and_last_slice_of_uneven_stack() -> None:
    stack = axial_stack((4, 3, 3), offsets=[0.0, 1.0, 4.0, 10.0])  # gaps 1, 3, 6
    assert stack.is_uneven()
    volume = np.stack([np.full((3, 3), v, np.int16) for v in (100, 200, 300, 400)])
    linear = [(-0.4, 100), (-0.6, FILL), (12.9, 400), (13.1, FILL), (2.5, 250), (1.0, 200),
              (7.0, 350)]
    nearest = [(-0.4, 100), (-0.6, FILL), (2.4, 200), (2.6, 300), (6.9, 300), (7.1, 400),
               (12.9, 400), (13.1, FILL)]
    for interp, cases in (("linear", linear), ("nearest", nearest)):
        for z, expected in cases:
            got = sample_at(volume, stack, np.array([1.0, 1.0, z]), interpolation=interp)
            assert got == expected, (interp, z)


def test_single_slice_is_a_slab_half_the_coarser_pixel_thick() -> None:
    stack = axial_stack((1, 3, 4), spacing=(0.8, 1.2), origin=(0, 0, 5.0))
    volume = np.arange(12, dtype=np.int16).reshape(1, 3, 4) + 50
    for dz, inside in ((0.0, True), (0.59, True), (-0.59, True), (0.61, False),
                       (-0.61, False)):
        got = sample_at(volume, stack, np.array([0.8, 1.2, 5.0 + dz]))
        assert got == (int(volume[0, 1, 1]) if inside else FILL), dz
    assert not stack.is_tilted() and default_output_grid(stack).shape == (1, 3, 4)


def test_tilted_stack_border_is_in_each_slice_own_frame() -> None:
    """Gantry tilt shifts slice k by k * 1 mm along the columns: its border moves with it."""
    positions = np.array([[0.0, k * 1.0, 2.0 * k] for k in range(3)])
    stack = SliceStack(positions, (1, 0, 0), (0, 1, 0), (1.0, 1.0), 4, 3)
    assert stack.is_tilted()
    volume = np.arange(36, dtype=np.int16).reshape(3, 4, 3) * 10
    # on slice 2's plane, its first row is at y = 2 and its last at y = 5
    assert sample_at(volume, stack, np.array([1.0, 1.6, 4.0])) == volume[2, 0, 1]
    assert sample_at(volume, stack, np.array([1.0, 1.4, 4.0])) == FILL
    assert sample_at(volume, stack, np.array([1.0, 5.4, 4.0])) == volume[2, 3, 1]
    assert sample_at(volume, stack, np.array([1.0, 5.6, 4.0])) == FILL
    # half-way between slices 0 and 1 the border is half-way too: row 0 at y = 0.5
    assert sample_at(volume, stack, np.array([1.0, -0.1, 1.0])) == FILL
    # inside; each slice is sampled in its own frame: slice 0 between its rows 0
    # and 1, slice 1 clamped to its row 0
    s0 = 0.8 * int(volume[0, 0, 1]) + 0.2 * int(volume[0, 1, 1])
    expected = round_half_away(0.5 * s0 + 0.5 * int(volume[1, 0, 1]))
    assert sample_at(volume, stack, np.array([1.0, 0.2, 1.0])) == expected


def test_fill_value_is_used_outside() -> None:
    stack = axial_stack((2, 2, 2))
    volume = np.full((2, 2, 2), 7, np.int16)
    assert sample_at(volume, stack, np.array([50.0, 0, 0]), fill=-1024) == -1024
    assert sample_at(volume, stack, np.array([0.3, 0.2, 0.5]), fill=-1024) == 7


# ------------------------------------------------------ rounding and clamp
@pytest.mark.parametrize("a, b, u, expected", [
    (2, 3, 0.5, 3), (-2, -3, 0.5, -3), (0, 5, 0.5, 3), (0, -5, 0.5, -3),
    (2, 3, 0.7, 3), (-2, -3, 0.7, -3), (2, 3, 0.3, 2), (-2, -3, 0.3, -2),
])
def test_rounds_half_away_from_zero_and_never_truncates(a: int, b: int, u: float,
                                                         expected: int) -> None:
    stack = axial_stack((1, 1, 2))
    volume = np.array([[[a, b]]], dtype=np.int16)
    assert sample_at(volume, stack, np.array([u, 0.0, 0.0])) == expected


def test_clamp_bounds_values_but_not_fill() -> None:
    stack = axial_stack((2, 2, 3))
    volume = np.array([[[-3000, 0, 5000]] * 2] * 2, dtype=np.int16)
    grid = Grid((1, 1, 5), (-1.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    out = reslice(volume, stack, grid, clamp=(-1000, 3095), fill=-2000)
    np.testing.assert_array_equal(out[0, 0], [-2000, -1000, 0, 3095, -2000])
    np.testing.assert_array_equal(reslice(volume, stack, grid)[0, 0],
                                  [FILL, -3000, 0, 5000, FILL])
    half = Grid((1, 1, 1), (1.5, 0.0, 0.0), (1.0, 1.0, 1.0))  # between 0 and 5000
    assert reslice(volume, stack, half, clamp=(-1000, 2000))[0, 0, 0] == 2000


def test_padding_value_is_outside_not_tissue() -> None:
    stack = axial_stack((2, 1, 2))
    volume = np.array([[[100, -3024]], [[100, -3024]]], dtype=np.int16)
    mid = np.array([0.5, 0.0, 1.0])
    assert sample_at(volume, stack, mid) == round_half_away((100 - 3024) / 2)
    assert sample_at(volume, stack, mid, padding_value=-3024) == (100 + FILL) / 2
    at_pad = np.array([1.0, 0.0, 0.0])
    assert sample_at(volume, stack, at_pad, padding_value=-3024,
                     interpolation="nearest") == FILL
    out = reslice(volume, stack, default_output_grid(stack), padding_value=-3024)
    np.testing.assert_array_equal(out, np.where(volume == -3024, FILL, volume))
    tilted = SliceStack([[0, 0, 0], [0, 0.5, 2]], (1, 0, 0), (0, 1, 0), (1.0, 1.0), 1, 2)
    assert sample_at(volume, tilted, np.array([0.5, 0.25, 1.0]), padding_value=-3024) == \
        (100 + FILL) / 2


# ------------------------------------------------------------- streaming
@pytest.mark.parametrize("kind", ["reindex", "regular", "tilted", "uneven"])
def test_k_range_streaming_equals_the_whole(kind: str) -> None:
    rng = np.random.default_rng(21)
    shape = (5, 6, 4)
    if kind == "reindex":
        stack = axial_stack(shape)
    else:
        stack = make_stack(rng, shape, tilt=12.0 if kind == "tilted" else 0.0,
                           uneven=kind == "uneven")
    volume = random_volume(rng, shape)
    grid = default_output_grid(stack)
    assert is_exact_reindex(stack, grid) == (kind == "reindex")
    whole = reslice(volume, stack, grid, clamp=(-1000, 2000))
    buf = np.empty((1,) + grid.shape[1:], np.int16)
    for k in range(grid.shape[0]):
        part = reslice(volume, stack, grid, clamp=(-1000, 2000), k_range=(k, k + 1), out=buf)
        assert part is buf
        np.testing.assert_array_equal(part, whole[k:k + 1])
    np.testing.assert_array_equal(reslice(volume, stack, grid, clamp=(-1000, 2000),
                                          k_range=(1, 3)), whole[1:3])
    assert reslice(volume, stack, grid, k_range=(2, 2)).shape == (0,) + grid.shape[1:]


def test_non_contiguous_input_and_enum_interpolation() -> None:
    rng = np.random.default_rng(8)
    stack = make_stack(rng, (4, 5, 6))
    volume = random_volume(rng, (4, 5, 6))
    grid = default_output_grid(stack)
    expected = reslice(volume, stack, grid, interpolation="nearest")
    fortran = np.asfortranarray(volume)
    np.testing.assert_array_equal(
        reslice(fortran, stack, grid, interpolation=Interpolation.NEAREST), expected)


def test_default_output_grid_covers_every_input_centre() -> None:
    rng = np.random.default_rng(2)
    stack = make_stack(rng, (4, 5, 6), tilt=10.0)
    grid = default_output_grid(stack)
    assert grid.is_axis_aligned
    assert np.allclose(grid.spacing, stack.default_output_spacing())
    idx = grid.patient_to_index(stack.corners())
    assert np.all(idx >= -1e-6) and np.all(idx <= np.array(grid.shape[::-1]) - 1 + 1e-6)
    custom = default_output_grid(stack, (0.5, 0.6, 0.7))
    assert np.allclose(custom.spacing, (0.5, 0.6, 0.7))


# ------------------------------------------------------------- bad input
def _bad_cases() -> list[tuple[str, dict, type, str]]:
    return [
        ("float", {"array": np.zeros((2, 3, 4), np.float32)}, InvalidInputError, "int16"),
        ("int32", {"array": np.zeros((2, 3, 4), np.int32)}, InvalidInputError, "int16"),
        ("2-D", {"array": np.zeros((3, 4), np.int16)}, InvalidInputError, "3-D"),
        ("shape", {"array": np.zeros((2, 4, 3), np.int16)}, InvalidInputError, "match"),
        ("list", {"array": [[[0]]]}, InvalidInputError, "NumPy"),
        ("oblique grid", {"grid": Grid((2, 2, 2), (0, 0, 0), (1, 1, 1),
                                       Rotation.from_euler("z", 10, degrees=True).as_matrix())},
         GeometryError, "axis-aligned"),
        ("not a grid", {"grid": "grid"}, InvalidInputError, "Grid"),
        ("not a stack", {"stack": np.zeros(3)}, InvalidInputError, "SliceStack"),
        ("interp", {"interpolation": "cubic"}, InvalidInputError, "interpolation"),
        ("fill range", {"fill": 40000}, InvalidInputError, "fill"),
        ("fill type", {"fill": -1000.5}, InvalidInputError, "fill"),
        ("clamp order", {"clamp": (100, -100)}, InvalidInputError, "clamp"),
        ("clamp form", {"clamp": (0,)}, InvalidInputError, "clamp"),
        ("k_range order", {"k_range": (2, 1)}, InvalidInputError, "k_range"),
        ("k_range past", {"k_range": (0, 99)}, InvalidInputError, "k_range"),
        ("k_range form", {"k_range": 3}, InvalidInputError, "k_range"),
        ("out dtype", {"out": np.zeros((2, 3, 4), np.int32)}, InvalidInputError, "out"),
        ("out shape", {"out": np.zeros((1, 3, 4), np.int16)}, InvalidInputError, "out"),
        ("out strided", {"out": np.zeros((2, 3, 8), np.int16)[:, :, ::2]}, InvalidInputError,
         "contiguous"),
        ("padding", {"padding_value": -40000}, InvalidInputError, "padding_value"),
        ("unsorted", {"stack": axial_stack((2, 3, 4), offsets=[2.0, 0.0])}, GeometryError,
         "increasing"),
        ("duplicate", {"stack": axial_stack((2, 3, 4), offsets=[1.0, 1.0])}, GeometryError,
         "duplicate"),
    ]


@pytest.mark.parametrize("name, change, error, words", _bad_cases(),
                         ids=[c[0] for c in _bad_cases()])
def test_bad_input_raises_a_clear_error(name: str, change: dict, error: type,
                                        words: str) -> None:
    stack = axial_stack((2, 3, 4))
    args = {"array": np.zeros((2, 3, 4), np.int16), "stack": stack,
            "grid": Grid((2, 3, 4), (0, 0, 0), (1.0, 1.0, 2.0))}
    kwargs = {}
    for key, value in change.items():
        (args if key in args else kwargs)[key] = value
    with pytest.raises(error, match=words):
        reslice(args["array"], args["stack"], args["grid"], **kwargs)


def test_helpers_name_a_wrong_argument() -> None:
    grid = Grid((2, 2, 2), (0, 0, 0), (1, 1, 1))
    with pytest.raises(InvalidInputError, match="stack"):
        default_output_grid(None)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="stack"):
        is_exact_reindex("stack", grid)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="grid"):
        is_exact_reindex(axial_stack((2, 2, 2)), None)  # type: ignore[arg-type]


def test_load_kernels_loads_exactly_what_reslice_runs() -> None:
    # A fresh interpreter: after load_kernels() no reslice call may add a signature
    # (the batch's forkserver relies on it to hand its workers loaded kernels).
    import subprocess
    import sys

    code = """
import importlib
import numpy as np
R = importlib.import_module("rtforge.core.reslice")
from rtforge.core import _reslice_kernels as K
from rtforge.core.geometry import SliceStack
from rtforge.core.phantom import oblique_stack
names = ("linear_regular", "nearest_regular", "linear_sheared", "linear_stack",
         "nearest_stack", "reindex")
R.load_kernels()
before = [len(getattr(K, n).signatures) for n in names]
regular = oblique_stack(size=12, spacing=1.5, nslices=6, slice_spacing=2.0)
shift = np.outer(np.arange(6), 0.4 * regular.column_direction)
tilted = SliceStack(positions=regular.positions + shift, row_direction=regular.row_direction,
                    column_direction=regular.column_direction,
                    pixel_spacing=regular.pixel_spacing, rows=12, columns=12)
uneven = SliceStack(positions=regular.positions + np.outer([0, 0, 0.7, 0.7, 1.2, 1.2],
                    np.cross(regular.row_direction, regular.column_direction)),
                    row_direction=regular.row_direction,
                    column_direction=regular.column_direction,
                    pixel_spacing=regular.pixel_spacing, rows=12, columns=12)
axial = SliceStack(positions=np.array([[0.0, 0.0, 3.0 * z] for z in range(6)]),
                   row_direction=(1.0, 0.0, 0.0), column_direction=(0.0, 1.0, 0.0),
                   pixel_spacing=(1.0, 1.0), rows=12, columns=12)
rng = np.random.default_rng(0)
for stack in (regular, tilted, uneven, axial):
    array = rng.integers(-1000, 2000, stack.shape).astype(np.int16)
    for method in ("linear", "nearest"):
        R.reslice(array, stack, R.default_output_grid(stack), interpolation=method)
after = [len(getattr(K, n).signatures) for n in names]
print(before, after)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[1, 1, 1, 1, 1, 1] [1, 1, 1, 1, 1, 1]"


def test_the_first_kernel_loads_without_numbas_blas_probe() -> None:
    # numba.np.arraymath probes for BLAS by importing scipy.linalg (0.1 s of a start);
    # no reslice kernel needs it, and BLAS stays available to code that does.
    import subprocess
    import sys

    code = (
        "import sys, numpy as np\n"
        "from rtforge.core.phantom import oblique_stack\n"
        "from rtforge.core.reslice import default_output_grid, reslice\n"
        "stack = oblique_stack(size=8, spacing=1.0, nslices=4, slice_spacing=1.0)\n"
        "out = reslice(np.zeros(stack.shape, np.int16), stack, default_output_grid(stack))\n"
        "assert (out == 0).any() and 'numba.np.arraymath' in sys.modules\n"
        "assert 'scipy.linalg' not in sys.modules\n"
        "from numba.np.arraymath import _HAVE_BLAS\n"
        "import scipy.linalg\n"
        "print(_HAVE_BLAS)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
