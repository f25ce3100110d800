"""DVH kernels against plain Python/NumPy references on seeded random and edge-case inputs.

- ``_deposit`` (one box's trapezoidal dose spread into the bins) against the
  closed-form CDF of the sum of two uniform spreads;
- ``dvh_histogram``'s volume, outside volume and dose integral against a
  scalar re-implementation of the strip decomposition (even-odd spans on each
  strip's centre line, cut at dose column centres, z pieces cut at dose
  planes; the dose of each box is the clamped trilinear interpolation at its
  centre, ``scipy.ndimage.map_coordinates``);
- the whole-voxel fast path against the strip-by-strip path of the same
  kernel: identical volumes and means everywhere, identical histograms
  where the dose has no y gradient (both are then exact), close otherwise.
"""

from __future__ import annotations

import math

import numba
import numpy as np
import pytest
from scipy import ndimage

from rtforge.core import _dvh_kernels as _k
from rtforge.core import dvh as dvh_module
from rtforge.core.contours import Contour, Structure
from rtforge.core.dvh import compute_dvh, compute_dvhs
from rtforge.core.geometry import Grid, Volume


# ------------------------------------------------------------------ _deposit
def _trapezoid_cdf(t: np.ndarray, d0: float, a: float, b: float) -> np.ndarray:
    """CDF of ``d0 + U(0, a) + U(0, b)`` (a point mass or a uniform when a spread is 0)."""
    x = np.asarray(t, dtype=np.float64) - d0
    if a == 0 and b == 0:
        return (x >= 0).astype(np.float64)
    if a == 0 or b == 0:
        return np.clip(x / max(a, b), 0.0, 1.0)
    r = [np.maximum(x - s, 0.0) ** 2 for s in (0.0, a, b, a + b)]
    return (r[0] - r[1] - r[2] + r[3]) / (2 * a * b)


def _reference_bins(nb: int, width: float, mean: float, ax: float, az: float,
                    w: float) -> np.ndarray:
    edges = np.arange(nb + 1) * width
    cdf = _trapezoid_cdf(edges, mean - 0.5 * (ax + az), ax, az)
    cdf[0], cdf[-1] = 0.0, 1.0  # below 0 Gy: first bin; beyond the top: last bin
    return w * np.diff(cdf)


def _read_bins(hist: np.ndarray, diff: np.ndarray) -> np.ndarray:
    nb = hist.shape[0]
    ramps = np.cumsum(diff, axis=1)[:, :nb]
    return hist + ramps[0] + np.arange(nb) * ramps[1]


DEPOSIT_EDGES = [
    # (mean, ax, az): inside one bin, on a bin edge, one spread zero, equal spreads,
    # reaching below 0 Gy, beyond the top bin, a point mass
    (0.55, 0.02, 0.03),
    (0.50, 0.1, 0.0),
    (0.50, 0.0, 0.25),
    (1.234, 0.3, 0.3),
    (0.02, 0.2, 0.05),
    (1.95, 0.3, 0.1),
    (0.777, 0.0, 0.0),
    (3.5, 0.1, 0.1),
]


@pytest.mark.parametrize("case", range(len(DEPOSIT_EDGES) + 40))
def test_deposit_matches_trapezoid_cdf(case: int) -> None:
    nb, width = 200, 0.01
    if case < len(DEPOSIT_EDGES):
        mean, ax, az = DEPOSIT_EDGES[case]
    else:
        rng = np.random.default_rng(case)
        mean = float(rng.uniform(0.0, 2.0))
        ax, az = (float(s) for s in rng.uniform(0.0, 0.4, 2) * (rng.random(2) > 0.2))
    w = 3.7
    hist = np.zeros(nb)
    diff = np.zeros((2, nb + 1))
    _k._deposit(hist, diff, width, mean, ax, az, w)
    got = _read_bins(hist, diff)
    np.testing.assert_allclose(got, _reference_bins(nb, width, mean, ax, az, w), atol=1e-9)
    assert got.dtype == np.float64
    assert got.sum() == pytest.approx(w, rel=1e-12)


# ------------------------------------------------------------------ dvh_histogram
def _crossings(polys: list[np.ndarray], y: float) -> list[float]:
    xs: list[float] = []
    for p in polys:
        for a in range(p.shape[0]):
            (ax, ay), (bx, by) = p[a, :2], p[(a + 1) % p.shape[0], :2]
            if (ay <= y) != (by <= y):
                xs.append(ax + (y - ay) * (bx - ax) / (by - ay))
    return sorted(xs)


def _common_reference(spans: list[list[tuple[float, float]]]) -> list[tuple[float, float]]:
    """Intersection of interval sets, by cutting at every end point (scalar)."""
    cuts = sorted({x for strip in spans for span in strip for x in span})
    out: list[tuple[float, float]] = []
    for a, b in zip(cuts[:-1], cuts[1:], strict=True):
        mid = 0.5 * (a + b)
        if all(any(lo < mid < hi for lo, hi in strip) for strip in spans):
            if out and out[-1][1] == a:
                out[-1] = (out[-1][0], b)
            else:
                out.append((a, b))
    return out


@pytest.mark.parametrize("seed", range(20))
def test_band_crossings_and_common_spans_match_scalar_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sub = int(rng.choice([2, 4, 6, 10]))
    strip = float(rng.choice([0.25, 0.5, 1.0]))
    y_first = 0.5 * strip
    polys = [_star(rng, *rng.uniform(-3, 3, 2), float(rng.uniform(1, 6)), int(rng.integers(3, 16)))
             for _ in range(int(rng.integers(1, 4)))]
    if seed % 4 == 0:  # edge cases: vertices and a horizontal edge on strip lines
        polys[0][:, 1] = np.round(polys[0][:, 1] / strip - 0.5) * strip + 0.5 * strip
    points = np.ascontiguousarray(np.concatenate(polys))
    poly_start = np.zeros(len(polys) + 1, dtype=np.intp)
    np.cumsum([p.shape[0] for p in polys], out=poly_start[1:])
    n = points.shape[0] + 2
    xs = np.empty((sub, n))
    count = np.zeros(sub, dtype=np.intp)
    _k._band_crossings(points, poly_start, 0, len(polys), y_first, strip, sub, xs, count)
    spans = []
    for s in range(sub):
        expected = _crossings(polys, y_first + s * strip)
        np.testing.assert_allclose(xs[s, :count[s]], expected, rtol=0, atol=1e-12)
        spans.append([(a, b) for a, b in zip(expected[0::2], expected[1::2], strict=False)
                      if b > a])
    ia, ib, ja, jb = (np.empty(n) for _ in range(4))
    m = _k._common_spans(xs, count, sub, ia, ib, ja, jb)
    got = list(zip(ia[:m], ib[:m], strict=True))
    want = _common_reference(spans)
    assert len(got) == len(want)
    np.testing.assert_allclose(np.array(got).reshape(-1, 2), np.array(want).reshape(-1, 2),
                               rtol=0, atol=1e-12)


def _reference_integrals(dose: np.ndarray, origin: np.ndarray, spacing: np.ndarray,
                         planes: list[tuple[float, list[np.ndarray]]], cs: float,
                         sub: int, end_cap: str = "full") -> tuple[float, float, float]:
    """Volume with a dose, its dose integral and the volume outside (mm3, mm3 Gy), scalar.

    The planes are ``cs`` apart; each spans ``z +- cs/2`` but the first and last, whose
    outer side reaches ``cs/2`` (full), 0 (half) or ``-cs/2`` (none: no slab) beyond them."""
    end = {"full": cs / 2, "half": 0.0, "none": -cs / 2}[end_cap]
    nk, nj, ni = dose.shape
    strip = spacing[1] / sub
    ext = [(origin[a] - spacing[a] / 2, origin[a] + (n - 0.5) * spacing[a])
           for a, n in enumerate((ni, nj, nk))]
    volume = dose_sum = outside = 0.0
    for p, (z, polys) in enumerate(planes):
        z0 = z - end if p == 0 and len(planes) > 1 else z - cs / 2
        z1 = z + end if p == len(planes) - 1 and len(planes) > 1 else z + cs / 2
        if z1 <= z0:
            continue
        zc = sorted({z0, z1, *ext[2], *(origin[2] + k * spacing[2] for k in range(nk))})
        zc = [c for c in zc if z0 <= c <= z1]
        ys = np.concatenate([p[:, 1] for p in polys])
        for n in range(math.floor((ys.min() - origin[1]) / strip) - 1,
                       math.ceil((ys.max() - origin[1]) / strip) + 1):
            y = origin[1] + (n + 0.5) * strip
            xs = _crossings(polys, y)
            for xa, xb in zip(xs[0::2], xs[1::2], strict=False):
                xc = sorted({xa, xb, *ext[0], *(origin[0] + i * spacing[0] for i in range(ni))})
                xc = [c for c in xc if xa <= c <= xb]
                for ca, cb in zip(xc[:-1], xc[1:], strict=True):
                    for za, zb in zip(zc[:-1], zc[1:], strict=True):
                        w = (cb - ca) * strip * (zb - za)
                        centre = (0.5 * (ca + cb), y, 0.5 * (za + zb))
                        if not all(lo <= c <= hi for c, (lo, hi) in zip(centre, ext, strict=True)):
                            outside += w
                            continue
                        kji = [[(centre[a] - origin[a]) / spacing[a]] for a in (2, 1, 0)]
                        value = ndimage.map_coordinates(dose, kji, order=1, mode="nearest")[0]
                        volume += w
                        dose_sum += w * float(value)
    return volume, dose_sum, outside


def _star(rng: np.random.Generator, cx: float, cy: float, r: float, n: int) -> np.ndarray:
    t = np.sort(rng.uniform(0, 2 * np.pi, n))
    radius = r * rng.uniform(0.5, 1.0, n)
    return np.c_[cx + radius * np.cos(t), cy + radius * np.sin(t)]


def _random_case(seed: int) -> tuple[Volume, list[tuple[float, list[np.ndarray]]], float]:
    """A small random grid (spacings 1.5 .. 3 mm, random origin: the structure may leave
    it) and 2 .. 5 planes of star polygons: islands, holes, strips with many crossings."""
    rng = np.random.default_rng(seed)
    spacing = rng.choice([1.5, 2.0, 2.5, 3.0], 3)
    shape = tuple(int(n) for n in rng.integers(6, 14, 3))  # (nk, nj, ni)
    origin = np.r_[rng.uniform(-18, -8, 2), rng.uniform(-12, -4)]
    grid = Grid(shape, origin=tuple(origin), spacing=tuple(spacing))
    dose = rng.uniform(0.0, 30.0, shape)
    cs = float(rng.choice([1.0, 2.0, 2.5]))
    z_first = float(rng.uniform(-8, 0))
    planes = []
    for p in range(int(rng.integers(2, 6))):
        z = z_first + p * cs
        polys = [_star(rng, *rng.uniform(-6, 6, 2), float(rng.uniform(4, 14)), int(rng.integers(3, 24)))]
        if rng.random() < 0.4:  # a hole (or an overlapping island: even-odd either way)
            cx, cy = polys[0].mean(axis=0)
            polys.append(_star(rng, cx, cy, 2.0, 8)[::-1])
        if rng.random() < 0.3:
            polys.append(_star(rng, *rng.uniform(-20, 20, 2), 3.0, 6))
        planes.append((z, [np.c_[poly, np.full(poly.shape[0], z)] for poly in polys]))
    return Volume(dose, grid), planes, cs


def _compute(dose: Volume, planes: list[tuple[float, list[np.ndarray]]], cs: float, sub: int,
             fast: bool, monkeypatch: pytest.MonkeyPatch, end_cap: str = "full") -> dvh_module.DVH:
    monkeypatch.setattr(dvh_module, "_FAST", fast)
    structure = Structure(1, "random", tuple(Contour(p) for _, polys in planes for p in polys))
    return compute_dvh(dose, structure, subdivisions=sub, contour_spacing_mm=cs, bin_width_gy=0.05,
                       end_cap=end_cap)


@pytest.mark.parametrize("seed", range(12))
def test_histogram_integrals_match_scalar_reference(seed: int,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    dose, planes, cs = _random_case(seed)
    sub = 2 + 2 * (seed % 3)
    end_cap = ("full", "half", "none", "full")[seed // 3]  # each convention, each strip count
    volume, dose_sum, outside = _reference_integrals(
        dose.array, np.array(dose.grid.origin), np.array(dose.grid.spacing), planes, cs, sub,
        end_cap)
    for fast in (True, False):
        dvh = _compute(dose, planes, cs, sub, fast, monkeypatch, end_cap)
        # the volume is the histogram's sum: the difference arrays' rounding, about 1e-9
        assert dvh.volume_cm3 == pytest.approx(volume / 1000, rel=1e-7, abs=1e-12)
        assert dvh.volume_outside_cm3 == pytest.approx(outside / 1000, rel=1e-9, abs=1e-12)
        if volume > 0:
            assert dvh.mean_gy == pytest.approx(dose_sum / volume, rel=1e-9)
            assert dose.array.min() - 1e-9 <= dvh.min_gy <= dvh.mean_gy
            assert dvh.mean_gy <= dvh.max_gy <= dose.array.max() + 1e-9
        assert dvh.differential.dtype == np.float64
        assert np.all(dvh.differential >= -1e-9 * max(dvh.volume_cm3, 1e-12))


@pytest.mark.parametrize("seed", range(12))
def test_fast_path_matches_strip_path(seed: int, monkeypatch: pytest.MonkeyPatch) -> None:
    dose, planes, cs = _random_case(seed)
    sub = 2 + 2 * (seed % 3)
    fast = _compute(dose, planes, cs, sub, True, monkeypatch)
    slow = _compute(dose, planes, cs, sub, False, monkeypatch)
    assert fast.volume_cm3 == pytest.approx(slow.volume_cm3, rel=1e-7, abs=1e-12)
    assert fast.volume_outside_cm3 == pytest.approx(slow.volume_outside_cm3, rel=1e-12, abs=1e-15)
    assert fast.mean_gy == pytest.approx(slow.mean_gy, rel=1e-12, abs=1e-12)
    # whole voxels reach their corners, strips only their centre lines
    assert fast.min_gy <= slow.min_gy + 1e-12 and fast.max_gy >= slow.max_gy - 1e-12
    # a random field is far from linear within a voxel: the two box models differ a little
    scale = max(slow.volume_cm3, 1e-12)
    assert np.abs(fast.cumulative - slow.cumulative).max() <= 0.05 * scale

    # No y gradient: both paths are exact and must agree bin by bin.
    grid = dose.grid
    k, j, i = np.meshgrid(*[np.arange(n) for n in grid.shape], indexing="ij")
    linear = Volume(3.0 + 0.4 * i + 0.7 * k, grid)
    fast = _compute(linear, planes, cs, sub, True, monkeypatch)
    slow = _compute(linear, planes, cs, sub, False, monkeypatch)
    np.testing.assert_allclose(fast.cumulative, slow.cumulative, rtol=0,
                               atol=1e-9 * max(slow.volume_cm3, 1e-12))
    # A gradient along all three axes: three spreads, the two smaller merged (moment-matched).
    linear = Volume(3.0 + 0.4 * i + 0.9 * j + 0.7 * k, grid)
    fast = _compute(linear, planes, cs, sub, True, monkeypatch)
    slow = _compute(linear, planes, cs, sub, False, monkeypatch)
    assert np.abs(fast.cumulative - slow.cumulative).max() <= 1e-3 * scale


def test_structure_covering_the_whole_grid(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every cell of every band is whole: the fast path does all the inside work, the
    # strips only the rim between the outer centres and the grid's extent.
    grid = Grid((3, 4, 5), origin=(0.0, 0.0, 0.0), spacing=(2.0, 2.0, 2.0))
    dose = Volume(np.arange(60, dtype=np.float64).reshape(3, 4, 5) / 4, grid)
    square = np.array([[-5.0, -5.0], [20.0, -5.0], [20.0, 20.0], [-5.0, 20.0]])
    planes = [(z, [np.c_[square, np.full(4, z)]]) for z in (0.0, 2.0, 4.0)]
    volume, dose_sum, outside = _reference_integrals(
        dose.array, np.zeros(3), np.full(3, 2.0), planes, 2.0, 4)
    for fast in (True, False):
        dvh = _compute(dose, planes, 2.0, 4, fast, monkeypatch)
        assert dvh.volume_cm3 == pytest.approx(volume / 1000, rel=1e-12)
        assert dvh.volume_cm3 == pytest.approx(10 * 8 * 6 / 1000, rel=1e-12)
        assert dvh.volume_outside_cm3 == pytest.approx(outside / 1000, rel=1e-12)
        assert dvh.mean_gy == pytest.approx(dose_sum / volume, rel=1e-12)


def test_one_call_for_many_structures_matches_one_call_each(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # compute_dvhs without progress runs every structure in one kernel call (their tasks
    # split over chunks of about equal work); with progress, one call per structure.
    dose, planes, cs = _random_case(3)
    rng = np.random.default_rng(5)
    structures: list[Structure] = []
    for n in range(6):
        keep = [pl for pl in planes if rng.random() < 0.8] or planes[:1]
        shift = np.r_[rng.uniform(-4, 4, 2), 0.0]
        structures.append(Structure(n + 1, f"s{n}", tuple(Contour(p + shift) for _, polys in keep
                                                           for p in polys)))
    structures.append(Structure(9, "empty", ()))
    together = compute_dvhs(dose, structures, contour_spacing_mm=cs)
    ticks: list[tuple[int, int]] = []
    alone = compute_dvhs(dose, structures, contour_spacing_mm=cs,
                         progress=lambda done, total: ticks.append((done, total)))
    assert ticks == [(n + 1, len(structures)) for n in range(len(structures))]
    for a, b, s in zip(together, alone, structures, strict=True):
        assert a.name == b.name == s.name and a.roi_number == s.number
        np.testing.assert_array_equal(a.edges, b.edges)
        scale = max(b.volume_cm3, 1e-12)
        np.testing.assert_allclose(a.cumulative, b.cumulative, rtol=0, atol=1e-9 * scale)
        assert a.mean_gy == pytest.approx(b.mean_gy, rel=1e-12, abs=1e-12)
        assert (a.min_gy, a.max_gy) == (b.min_gy, b.max_gy)
        assert a.volume_outside_cm3 == pytest.approx(b.volume_outside_cm3, rel=1e-12, abs=1e-15)
    assert together[-1].volume_cm3 == 0.0 and together[-1].mean_gy == 0.0
    # a histogram budget that fits few structures per call: the same DVHs
    n_bins = together[0].differential.shape[0]
    monkeypatch.setattr(dvh_module, "_HISTOGRAM_BUDGET", 24 * n_bins * (2 + 8 * numba.get_num_threads()))
    grouped = compute_dvhs(dose, structures, contour_spacing_mm=cs)
    for a, b in zip(grouped, together, strict=True):
        assert a.name == b.name
        np.testing.assert_allclose(a.cumulative, b.cumulative, rtol=0,
                                   atol=1e-9 * max(b.volume_cm3, 1e-12))


@pytest.mark.parametrize("seed", range(3))
def test_float32_dose_is_read_as_is(seed: int) -> None:
    # float32 dose goes to the kernel unconverted; each value is read as float64
    # (the two compiled variants round differently: the difference arrays, about 1e-12).
    dose, planes, cs = _random_case(seed)
    single = Volume(dose.array.astype(np.float32), dose.grid)
    double = Volume(single.array.astype(np.float64), dose.grid)
    structure = Structure(1, "random", tuple(Contour(p) for _, polys in planes for p in polys))
    a = compute_dvh(single, structure, contour_spacing_mm=cs)
    b = compute_dvh(double, structure, contour_spacing_mm=cs)
    np.testing.assert_allclose(a.cumulative, b.cumulative, rtol=0,
                               atol=1e-9 * max(b.volume_cm3, 1e-12))
    for x, y in ((a.mean_gy, b.mean_gy), (a.min_gy, b.min_gy), (a.max_gy, b.max_gy)):
        assert x == pytest.approx(y, rel=1e-12)
