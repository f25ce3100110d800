"""Contours to masks (even-odd, any grid) and masks to contours (marching squares)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rtforge.core.contours import Contour
from rtforge.core.geometry import Grid
from rtforge.core.masks import contours_to_mask, mask_to_contours
from rtforge.errors import GeometryError, InvalidInputError


def naive_even_odd(polygons_ij: list[np.ndarray], nj: int, ni: int) -> np.ndarray:
    """Reference: a voxel centre is inside when a ray to +i crosses an odd
    number of edges (half-open in j), all polygons together."""
    out = np.zeros((nj, ni), dtype=np.uint8)
    for j in range(nj):
        for i in range(ni):
            inside = False
            for poly in polygons_ij:
                for a, b in zip(poly, np.roll(poly, -1, axis=0), strict=True):
                    (x0, y0), (x1, y1) = a, b
                    if (y0 <= j < y1) or (y1 <= j < y0):
                        xc = x0 + (j - y0) * (x1 - x0) / (y1 - y0)
                        if xc <= i:
                            inside = not inside
            out[j, i] = inside
    return out


def oblique_grid(shape=(4, 24, 30)) -> Grid:
    a, b = math.radians(20), math.radians(35)
    rot = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]]) @ \
        np.array([[math.cos(b), -math.sin(b), 0], [math.sin(b), math.cos(b), 0], [0, 0, 1]])
    return Grid(shape=shape, origin=(-12.3, 4.5, 7.0), spacing=(0.8, 1.1, 2.5), direction=rot)


def sheared_grid(shape=(4, 24, 30)) -> Grid:
    t = math.radians(15)  # gantry tilt: k axis leans along the column direction
    direction = np.array([[1, 0, 0], [0, math.cos(t), math.sin(t)], [0, -math.sin(t), math.cos(t)]]).T
    direction[:, 2] = [0, 0, 1]
    return Grid(shape=shape, origin=(-10, -12, -5), spacing=(0.9, 0.9, 2.0), direction=direction)


@pytest.mark.parametrize("make_grid", [lambda: Grid((3, 20, 25), (-12, -9, -2.5), (1, 1, 2.5)),
                                       oblique_grid, sheared_grid])
@pytest.mark.parametrize("seed", range(3))
def test_mask_contours_mask_round_trip(make_grid, seed: int) -> None:
    grid = make_grid()
    rng = np.random.default_rng(seed)
    mask = (rng.random(grid.shape) > 0.6).astype(np.uint8)
    mask[1, 5:15, 6:16] = 1
    mask[1, 8:11, 9:12] = 0  # a hole
    contours = mask_to_contours(mask, grid)
    np.testing.assert_array_equal(contours_to_mask(contours, grid), mask)
    for c in contours:
        assert c.shape[1] == 3 and not np.array_equal(c[0], c[-1])


def test_holes_come_back_as_separate_contours() -> None:
    grid = Grid((1, 12, 12), (0, 0, 0), (1, 1, 1))
    mask = np.zeros(grid.shape, dtype=bool)
    mask[0, 2:10, 2:10] = True
    mask[0, 5:7, 5:7] = False
    contours = mask_to_contours(mask, grid)
    assert len(contours) == 2
    areas = sorted(abs(0.5 * np.sum(c[:, 0] * np.roll(c[:, 1], -1) - np.roll(c[:, 0], -1) * c[:, 1]))
                   for c in contours)
    assert areas == pytest.approx([2 * 2 - 0.5, 8 * 8 - 0.5])  # corners cut by half a voxel


@pytest.mark.parametrize("seed", range(4))
def test_rasteriser_matches_naive_even_odd(seed: int) -> None:
    rng = np.random.default_rng(10 + seed)
    grid = Grid((2, 18, 22), (0.0, 0.0, 0.0), (1.0, 1.0, 3.0))
    polys = [np.column_stack([rng.uniform(-2, 24, 7), rng.uniform(-2, 20, 7), np.full(7, 3.0)])
             for _ in range(2)]
    got = contours_to_mask(polys, grid)
    assert got.dtype == np.uint8 and got.shape == grid.shape
    np.testing.assert_array_equal(got[1], naive_even_odd([p[:, :2] for p in polys], 18, 22))
    assert not got[0].any()


def test_supersampling_gives_partial_occupancy() -> None:
    grid = Grid((1, 40, 40), (-20, -20, 0), (1, 1, 1))
    t = np.linspace(0, 2 * np.pi, 2000, endpoint=False)
    circle = np.stack([12.3 * np.cos(t), 12.3 * np.sin(t), np.zeros_like(t)], axis=1)
    area = math.pi * 12.3**2
    binary = contours_to_mask([circle], grid)
    fraction = contours_to_mask([circle], grid, supersampling=16)
    assert fraction.dtype == np.float32 and 0 <= fraction.min() and fraction.max() <= 1
    assert abs(float(fraction.sum()) - area) < abs(float(binary.sum()) - area) + 1e-9
    assert float(fraction.sum()) == pytest.approx(area, rel=2e-3)
    partial = (fraction > 0) & (fraction < 1)
    assert partial.any() and np.all(binary[fraction == 1] == 1)


def test_contour_objects_and_slice_assignment() -> None:
    grid = Grid((3, 10, 10), (0, 0, 0), (1, 1, 2))
    square = np.array([[2, 2, 0.8], [7, 2, 0.8], [7, 7, 0.8], [2, 7, 0.8]], dtype=float)
    far = square + [0, 0, 0.9]  # nearer slice 1 than slice 0; slice 0 keeps the nearer plane
    point = Contour([[5, 5, 4]], "POINT")
    mask = contours_to_mask([Contour(square), point, square + [0, 0, 50]], grid)
    assert mask[0].sum() == 25 and mask[1:].sum() == 0
    assert contours_to_mask([square, square.copy()], grid)[0].sum() == 0  # even-odd
    bigger = np.array([[1, 1, 0.95], [9, 1, 0.95], [9, 9, 0.95], [1, 9, 0.95]], dtype=float)
    both = contours_to_mask([bigger, square], grid)
    assert both[0].sum() == 25 and both[1:].sum() == 0  # the nearer plane only
    assert contours_to_mask([far], grid)[1].sum() == 25


def test_bad_input() -> None:
    grid = Grid((2, 8, 8), (0, 0, 0), (1, 1, 1))
    tilted = np.array([[0, 0, 0], [5, 0, 1], [5, 5, 1], [0, 5, 0]], dtype=float)
    with pytest.raises(GeometryError, match="parallel"):
        contours_to_mask([tilted], grid)
    with pytest.raises(GeometryError, match=r"\(N, 3\)"):
        contours_to_mask([np.zeros((4, 2))], grid)
    with pytest.raises(GeometryError, match="NaN"):
        contours_to_mask([np.full((4, 3), np.nan)], grid)
    with pytest.raises(InvalidInputError, match="supersampling"):
        contours_to_mask([], grid, supersampling=0)
    with pytest.raises(InvalidInputError, match="shape"):
        mask_to_contours(np.zeros((1, 8, 8)), grid)
    with pytest.raises(InvalidInputError, match="dtype"):
        mask_to_contours(np.zeros(grid.shape, dtype=object), grid)
    assert contours_to_mask([], grid).sum() == 0
    assert mask_to_contours(np.zeros(grid.shape), grid) == []
