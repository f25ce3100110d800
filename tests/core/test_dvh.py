"""DVH kernel against analytic truths of contoured solids in linear dose fields.

Truth = the exact DVH of the contoured solid (the stack of prisms the contours
define, :mod:`rtforge.core.dvh` convention) in a linear dose field, derived
here independently of the kernel: for a plane's even-odd cross-section, the
chord length ``L(u)`` along the in-plane gradient direction is piecewise linear
between vertex abscissae, so the area above a level, ``A(s) = ∫_s L``, is
piecewise quadratic and its integral ``F(s) = ∫_s A`` piecewise cubic: both
are integrated exactly (trapezoid, Simpson).  A slab ``z0..z1`` in the dose
``G u + gz z + c`` has ``V(D) = (G / gz) [F(s(z1)) - F(s(z0))]`` with
``s(z) = (D - c - gz z) / G`` (or the limits when ``G`` or ``gz`` is 0).  A
trilinear interpolation of a linear field is the field itself, so the dose
grid holds the truth's dose exactly.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import pytest
from scipy.optimize import brentq

from rtforge.core.contours import Contour, Structure
from rtforge.core.dvh import (
    DVH,
    EndCap,
    compute_dvh,
    compute_dvhs,
    conformity_indices,
    contour_spacing,
    merge_bins,
)
from rtforge.core.geometry import Grid, Volume
from rtforge.errors import GeometryError, InvalidInputError

N_POINTS = 128


def _circle(r: float, z: float, cx: float = 0.0, cy: float = 0.0) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, N_POINTS, endpoint=False)
    return np.c_[cx + r * np.cos(t), cy + r * np.sin(t), np.full(N_POINTS, z)]


# ------------------------------------------------------------------ the truth
class _Section:
    """Exact area functions of one plane's even-odd cross-section along u."""

    def __init__(self, polys: list[np.ndarray], direction: np.ndarray) -> None:
        self.u = [p[:, :2] @ direction for p in polys]
        self.v = [p[:, :2] @ np.array([-direction[1], direction[0]]) for p in polys]
        self.breaks = np.unique(np.concatenate(self.u))
        lo, hi = self.breaks[:-1], self.breaks[1:]
        l1, l2 = self._chord(lo + (hi - lo) / 3), self._chord(lo + 2 * (hi - lo) / 3)
        self.left = 2 * l1 - l2  # L just right of each break
        self.right = 2 * l2 - l1  # L just left of the next break
        pieces = 0.5 * (self.left + self.right) * (hi - lo)
        self.a_at = np.append(np.cumsum(pieces[::-1])[::-1], 0.0)  # A at each break
        mid = self._area_in(np.arange(len(lo)), 0.5 * (lo + hi))
        simpson = (hi - lo) / 6 * (self.a_at[:-1] + 4 * mid + self.a_at[1:])
        self.f_at = np.append(np.cumsum(simpson[::-1])[::-1], 0.0)

    def _chord(self, x: np.ndarray) -> np.ndarray:
        out = np.zeros_like(x)
        for n, xv in enumerate(x):
            ys = []
            for u, v in zip(self.u, self.v, strict=True):
                ub, vb = np.roll(u, -1), np.roll(v, -1)
                hit = (u <= xv) != (ub <= xv)
                ys.append(v[hit] + (xv - u[hit]) * (vb[hit] - v[hit]) / (ub[hit] - u[hit]))
            y = np.sort(np.concatenate(ys))
            out[n] = float(np.sum(y[1::2] - y[0::2]))
        return out

    def _area_in(self, i: np.ndarray, s: np.ndarray) -> np.ndarray:
        lo, hi = self.breaks[i], self.breaks[i + 1]
        t = (s - lo) / (hi - lo)
        ls = self.left[i] + t * (self.right[i] - self.left[i])
        return self.a_at[i + 1] + 0.5 * (ls + self.right[i]) * (hi - s)

    def area(self, s: float) -> float:
        if s <= self.breaks[0]:
            return float(self.a_at[0])
        if s >= self.breaks[-1]:
            return 0.0
        i = np.searchsorted(self.breaks, s, side="right") - 1
        return float(self._area_in(np.array([i]), np.array([s]))[0])

    def f(self, s: float) -> float:
        if s <= self.breaks[0]:
            return float(self.f_at[0] + self.a_at[0] * (self.breaks[0] - s))
        if s >= self.breaks[-1]:
            return 0.0
        i = int(np.searchsorted(self.breaks, s, side="right") - 1)
        hi = self.breaks[i + 1]
        mid = 0.5 * (s + hi)
        return float(self.f_at[i + 1] + (hi - s) / 6 * (self.area(s) + 4 * self.area(mid)
                                                         + self.a_at[i + 1]))


@dataclass
class Truth:
    """Exact cumulative DVH (cm3) of slabs in ``dose = g . (x, y, z) + c``."""

    sections: list[_Section]
    slabs: np.ndarray
    g_plane: float
    gz: float
    c: float

    @property
    def volume(self) -> float:
        return sum(s.a_at[0] * (z1 - z0) for s, (z0, z1) in zip(self.sections, self.slabs,
                                                                    strict=True)) / 1000

    def v(self, dose: float) -> float:
        total = 0.0
        for sec, (z0, z1) in zip(self.sections, self.slabs, strict=True):
            if self.g_plane == 0:
                if self.gz == 0:
                    total += sec.a_at[0] * (z1 - z0) * (self.c >= dose)
                    continue
                zc = (dose - self.c) / self.gz
                inside = (z1 - max(z0, zc)) if self.gz > 0 else (min(z1, zc) - z0)
                total += sec.a_at[0] * min(max(inside, 0.0), z1 - z0)
            elif self.gz == 0:
                total += (z1 - z0) * sec.area((dose - self.c) / self.g_plane)
            else:
                s0 = (dose - self.c - self.gz * z0) / self.g_plane
                s1 = (dose - self.c - self.gz * z1) / self.g_plane
                total += self.g_plane / self.gz * (sec.f(s1) - sec.f(s0))
        return total / 1000

    def dose_at(self, percent: float, lo: float, hi: float) -> float:
        target = self.volume * percent / 100
        return brentq(lambda d: self.v(d) - target, lo, hi, xtol=1e-7)


def _solid(planes: list[tuple[float, list[np.ndarray]]], spacing: float) -> np.ndarray:
    z = np.array([p[0] for p in planes])
    gaps = np.diff(z)
    below = np.concatenate([[spacing / 2], np.minimum(gaps, spacing) / 2])
    above = np.concatenate([np.minimum(gaps, spacing) / 2, [spacing / 2]])
    return np.stack([z - below, z + above], axis=1)


def _plane_levels(lo: float, hi: float, spacing: float, offset: float) -> np.ndarray:
    first = math.ceil((lo - offset) / spacing + 1e-9)
    last = math.floor((hi - offset) / spacing - 1e-9)
    return offset + spacing * np.arange(first, last + 1)


def sphere(r: float, cs: float, offset: float) -> list[tuple[float, list[np.ndarray]]]:
    return [(z, [_circle(math.sqrt(r * r - z * z), z)])
            for z in _plane_levels(-r, r, cs, offset)]


def cylinder(r: float, h: float, cs: float, offset: float) -> list[tuple[float, list[np.ndarray]]]:
    return [(z, [_circle(r, z)]) for z in _plane_levels(-h, h, cs, offset)]


def cone(r: float, h: float, cs: float, offset: float) -> list[tuple[float, list[np.ndarray]]]:
    return [(z, [_circle(r * (1 - (z + h / 2) / h), z)])
            for z in _plane_levels(-h / 2, h / 2, cs, offset)]


def ring(outer: float, inner: float, h: float, cs: float,
         offset: float) -> list[tuple[float, list[np.ndarray]]]:
    return [(z, [_circle(outer, z), _circle(inner, z)[::-1]])
            for z in _plane_levels(-h, h, cs, offset)]


def _dose(gradient: tuple[float, float, float], c: float, spacing: float,
          z_offset: float, half: float = 32.0) -> Volume:
    n = int(math.ceil(2 * half / spacing)) + 1
    origin = (-half - 0.29, -half + 0.17, -half + z_offset)
    grid = Grid((n, n, n), origin=origin, spacing=(spacing, spacing, spacing))
    k, j, i = np.meshgrid(*[np.arange(m) for m in grid.shape], indexing="ij")
    xyz = grid.index_to_patient(np.stack([i, j, k], axis=-1).astype(np.float64))
    return Volume(xyz @ np.asarray(gradient) + c, grid)


CASES = {
    # name: (planes, contour spacing, dose spacing, dose z offset, gradient (Gy/mm))
    "sphere20_z_cs2.5_dg2.5": (sphere(20, 2.5, 0.4), 2.5, 2.5, 0.37, (0.0, 0.0, 0.5)),
    "sphere20_x_cs1_dg1": (sphere(20, 1.0, 0.3), 1.0, 1.0, 0.37, (0.6, 0.0, 0.0)),
    "sphere20_xyz_cs2.5_dg1": (sphere(20, 2.5, 0.0), 2.5, 1.0, 0.5, (0.3, -0.2, 0.4)),
    "sphere5_x_cs1_dg2.5": (sphere(5, 1.0, 0.2), 1.0, 2.5, 0.37, (1.0, 0.0, 0.0)),
    "sphere5_y_cs1_dg2.5": (sphere(5, 1.0, 0.0), 1.0, 2.5, 0.37, (0.0, 1.0, 0.0)),
    "sphere5_xz_cs2.5_dg2.5": (sphere(5, 2.5, 0.0), 2.5, 2.5, 1.1, (0.7, 0.0, 0.7)),
    "cylinder_z_cs2.5_dg1": (cylinder(10, 15, 2.5, 0.0), 2.5, 1.0, 0.37, (0.0, 0.0, 1.0)),
    "cylinder_z_cs1_dg2.5": (cylinder(10, 15, 1.0, 0.5), 1.0, 2.5, 0.0, (0.0, 0.0, 1.0)),
    "cone_xz_cs1_dg2.5": (cone(15, 25, 1.0, 0.0), 1.0, 2.5, 0.37, (0.5, 0.0, 0.8)),
    "ring_x_cs2.5_dg2.5": (ring(15, 7, 10, 2.5, 0.0), 2.5, 2.5, 0.37, (1.0, 0.0, 0.0)),
    # large: strips widened to extent / MIN_STRIPS (0.6 mm); grid +-130 mm
    "cylinder120_xy_cs2.5_dg2.5": (cylinder(120, 5, 2.5, 0.0), 2.5, 2.5, 0.37, (0.1, 0.2, 0.0)),
    "ring_xz_cs1_dg1": (ring(15, 7, 10, 1.0, 0.5), 1.0, 1.0, 0.0, (0.5, 0.3, 0.5)),
}


def _truth(planes: list[tuple[float, list[np.ndarray]]], cs: float,
           gradient: tuple[float, float, float], c: float) -> Truth:
    g = np.asarray(gradient, dtype=np.float64)
    g_plane = float(np.hypot(g[0], g[1]))
    direction = g[:2] / g_plane if g_plane > 0 else np.array([1.0, 0.0])
    sections = [_Section(polys, direction) for _, polys in planes]
    return Truth(sections, _solid(planes, cs), g_plane, float(g[2]), c)


@pytest.mark.parametrize("name", sorted(CASES))
def test_dvh_matches_analytic_truth(name: str) -> None:
    planes, cs, dg, z_offset, gradient = CASES[name]
    half = 130.0 if name.startswith("cylinder120") else 32.0
    c = 5.0 + (half + 1) * float(np.abs(gradient).sum())  # dose positive over the whole grid
    truth = _truth(planes, cs, gradient, c)
    dose = _dose(gradient, c, dg, z_offset, half)
    structure = Structure(1, name, tuple(Contour(p) for _, polys in planes for p in polys))
    dvh = compute_dvh(dose, structure, end_cap="full")  # the truth's solid: full end slabs
    assert dvh.name == name and dvh.roi_number == 1
    assert dvh.volume_outside_cm3 == 0.0
    volume_tolerance = 0.005 if truth.volume < 1 else 0.002
    assert dvh.volume_cm3 == pytest.approx(truth.volume, rel=volume_tolerance)
    lo, hi = dvh.min_gy - 1, dvh.max_gy + 1
    doses = np.linspace(max(lo, 0), hi, 120)
    errors = [abs(dvh.volume_at_dose(d) - truth.v(d)) for d in doses]
    assert max(errors) <= 0.01 * truth.volume  # target 1 % of the ROI volume
    assert max(errors) <= 0.003 * truth.volume  # aim 0.3 %
    for percent in (99, 95, 50, 5, 1):
        assert dvh.dose_at_volume(percent) == pytest.approx(
            truth.dose_at(percent, lo, hi), abs=0.10), percent
    grid = np.linspace(0, hi, 4001)
    mean = np.trapezoid([truth.v(d) for d in grid], grid) / truth.volume
    assert dvh.mean_gy == pytest.approx(mean, abs=0.01)


def test_structure_partly_outside_the_grid_is_reported() -> None:
    dose = _dose((0.0, 0.0, 0.0), 5.0, 2.0, 0.0)  # z centres -32 .. 32, extent to 33
    planes = cylinder(5, 8, 1.0, 0.5)
    shifted = [p + np.array([0.0, 0.0, 30.0]) for _, polys in planes for p in polys]
    dvh = compute_dvh(dose, shifted, end_cap=EndCap.FULL)
    area = 0.5 * N_POINTS * 25 * math.sin(2 * math.pi / N_POINTS)
    # solid z 22 .. 38 (full end slabs); the grid ends at 33
    # in-plane area by the midpoint rule on 0.25 mm strips
    assert dvh.volume_cm3 == pytest.approx(area * 11 / 1000, rel=5e-4)
    assert dvh.volume_outside_cm3 == pytest.approx(area * 5 / 1000, rel=5e-4)
    assert dvh.min_gy == dvh.max_gy == pytest.approx(5.0)
    assert dvh.dose_at_volume(50) == pytest.approx(5.0)


def test_end_caps_and_single_plane() -> None:
    dose = _dose((0.0, 0.0, 0.0), 5.0, 2.0, 0.0)
    planes = cylinder(5, 4, 2.0, 0.0)
    contours = [p for _, polys in planes for p in polys]
    area = 0.5 * N_POINTS * 25 * math.sin(2 * math.pi / N_POINTS)
    n = len(planes)
    full = compute_dvh(dose, contours, end_cap=EndCap.FULL)
    half = compute_dvh(dose, contours)  # the default: what planning systems store
    none = compute_dvh(dose, contours, end_cap="none")
    assert full.volume_cm3 == pytest.approx(area * n * 2 / 1000, rel=5e-4)
    assert half.volume_cm3 == pytest.approx(area * (n - 1) * 2 / 1000, rel=5e-4)
    assert none.volume_cm3 == pytest.approx(area * (n - 2) * 2 / 1000, rel=5e-4)
    with pytest.raises(InvalidInputError, match="end_cap must be one of"):
        compute_dvh(dose, contours, end_cap="quarter")
    with pytest.raises(InvalidInputError, match="contour_spacing_mm"):
        compute_dvh(dose, contours[:1])
    for cap in EndCap:  # one plane: one slab centred on it, whatever the end cap
        one = compute_dvh(dose, contours[:1], contour_spacing_mm=3.0, end_cap=cap)
        assert one.volume_cm3 == pytest.approx(area * 3 / 1000, rel=5e-4)


def test_slab_is_the_structure_sets_spacing() -> None:
    # dicompyler-core's case: an ROI on planes 45 mm and 3 mm apart gets the set's 3 mm
    # slabs, not its own median gap (24 mm); a one-plane ROI beside it gets them too
    dose = _dose((0.0, 0.0, 0.0), 5.0, 2.0, 0.0)
    area = 0.5 * N_POINTS * 25 * math.sin(2 * math.pi / N_POINTS)
    sparse = Structure(1, "sparse", tuple(Contour(_circle(5, z)) for z in (-24.0, 21.0, 24.0)))
    dense = Structure(2, "dense", tuple(Contour(_circle(5, z)) for z in np.arange(-24, 25, 3.0)))
    single = Structure(0, "single", (Contour(_circle(5, 0.0)),))
    assert contour_spacing([sparse, dense, single]) == pytest.approx(3.0)
    sagittal = Structure(3, "sagittal", (Contour(_circle(5, 0.0)[:, [2, 0, 1]]),))
    assert contour_spacing([sparse, dense, sagittal]) == pytest.approx(3.0)  # left out
    assert contour_spacing([single]) is None
    got = compute_dvhs(dose, [sparse, dense, single], end_cap="full")
    assert got[0].volume_cm3 == pytest.approx(area * 3 * 3 / 1000, rel=5e-4)
    assert got[2].volume_cm3 == pytest.approx(area * 3 / 1000, rel=5e-4)
    assert got[2].roi_number == 0


def test_queries_and_indices() -> None:
    dvh = DVH.from_bins([1.0, 1.0, 1.0], [0.0, 2.0, 2.0], cumulative=False)
    assert dvh.volume_cm3 == 4.0
    assert dvh.dose_at_volume(50) == pytest.approx(2.0)
    assert dvh.dose_at_volume(2, percent=False) == pytest.approx(2.0)
    assert dvh.volume_at_dose(1.5) == pytest.approx(3.0)
    assert dvh.volume_at_dose(2.5, percent=True) == pytest.approx(25.0)
    assert dvh.homogeneity_index() == pytest.approx((2.96 - 1.04) / 2.0)
    cum = DVH.from_bins([1.0, 1.0, 1.0], [4.0, 4.0, 2.0], cumulative=True)
    np.testing.assert_allclose(cum.differential, [0.0, 2.0, 2.0])
    body = DVH.from_bins([1.0, 1.0, 1.0], [0.0, 4.0, 6.0], cumulative=False)
    rtog, paddick = conformity_indices(dvh, body, 2.0)
    assert rtog == pytest.approx(6.0 / 4.0) and paddick == pytest.approx(2.0**2 / (4 * 6))
    with pytest.raises(InvalidInputError):
        dvh.dose_at_volume(-1)


def test_merge_bins_respects_tolerance() -> None:
    rng = np.random.default_rng(1)
    dvh = DVH(np.arange(501) * 0.01, rng.random(500), 0.0, 2.5, 5.0)
    for differential in (False, True):
        keep = merge_bins(dvh, 0.5, differential=differential)
        assert keep[0] == 0 and keep[-1] == 500 and np.all(np.diff(keep) > 0)
        cum = dvh.cumulative
        for a, b in zip(keep[:-1], keep[1:], strict=True):
            e = np.arange(a, b + 1)
            read = cum[a] + (e - a) / (b - a) * (cum[b] - cum[a]) if differential \
                else np.full(e.shape, cum[a])
            if not differential:
                read[-1] = cum[b]
            assert np.abs(read - cum[e]).max() <= 0.5 + 1e-12
    assert len(merge_bins(dvh, 0.0)) == 501


def test_bad_inputs() -> None:
    dose = _dose((0.0, 0.0, 0.0), 5.0, 2.0, 0.0)
    with pytest.raises(GeometryError, match="axial"):
        compute_dvh(dose, [np.array([[0, 0, 0], [1, 0, 1], [0, 1, 0]], dtype=float)])
    with pytest.raises(InvalidInputError, match="subdivisions"):
        compute_dvh(dose, [_circle(3, 0)], subdivisions=3, contour_spacing_mm=1)
    tilted = Grid((2, 2, 2), origin=(0, 0, 0), spacing=(1, 1, 1),
                  direction=[[0.6, 0.8, 0], [-0.8, 0.6, 0], [0, 0, 1]])
    with pytest.raises(GeometryError, match="oblique"):
        compute_dvh(Volume(np.ones(tilted.shape), tilted), [_circle(3, 0)])


def test_dose_near_zero_with_cross_terms_stays_in_range() -> None:
    # One hot voxel in a zero field: the trilinear cross terms around it make
    # the boxes' moment-matched spreads reach below 0 Gy; that mass belongs to
    # the first bin, never (as a negative bin index did) to the top of the histogram.
    dose = np.zeros((5, 9, 9))
    dose[2, 4, 4] = 50.0
    grid = Grid(dose.shape, origin=(-10.0, -10.0, -5.0), spacing=(2.5, 2.5, 2.5))
    planes = [Contour(np.c_[[-8.0, 8.0, 8.0, -8.0], [-8.0, -8.0, 8.0, 8.0], [z] * 4])
              for z in (-2.5, 0.0, 2.5)]
    dvh = compute_dvh(Volume(dose, grid), Structure(1, "box", tuple(planes)), end_cap="full")
    assert dvh.volume_cm3 == pytest.approx(16 * 16 * 7.5 / 1000, rel=1e-6)
    assert np.all(dvh.differential >= -1e-12)
    assert dvh.cumulative[0] == pytest.approx(dvh.volume_cm3, rel=1e-9)
    assert 0.0 <= dvh.dose_at_volume(50) <= dvh.max_gy


def _decubitus(dose: Volume) -> Volume:
    """The same voxels as a left-decubitus grid stores them (Image Orientation 0\\1\\0\\-1\\0\\0)."""
    direction = np.array([[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    grid = dose.grid
    # index (i, j, k) of the decubitus grid: i runs along +y, j along -x
    shape = (grid.shape[0], grid.shape[2], grid.shape[1])
    origin = (grid.origin[0] + (grid.shape[2] - 1) * grid.spacing[0], grid.origin[1],
              grid.origin[2])
    array = np.ascontiguousarray(np.flip(np.transpose(dose.array, (0, 2, 1)), axis=1))
    out = Volume(array, Grid(shape, origin, (grid.spacing[1], grid.spacing[0], grid.spacing[2]),
                             direction=direction))
    k, j, i = 1, 2, 3  # spot check: one voxel, the same place and value in both
    xyz = out.grid.index_to_patient(np.array([i, j, k], dtype=float))
    back = np.rint(grid.patient_to_index(xyz)).astype(int)
    assert out.array[k, j, i] == dose.array[back[2], back[1], back[0]]
    return out


def test_a_decubitus_dose_gives_the_same_dvh() -> None:
    planes, cs, dg, z_offset, gradient = CASES["sphere20_xyz_cs2.5_dg1"]
    dose = _dose(gradient, 40.0, dg, z_offset)
    structure = Structure(1, "s", tuple(Contour(p) for _, polys in planes for p in polys))
    supine = compute_dvh(dose, structure)
    decubitus = compute_dvh(_decubitus(dose), structure)
    assert decubitus.volume_cm3 == supine.volume_cm3
    assert np.array_equal(decubitus.differential, supine.differential)
