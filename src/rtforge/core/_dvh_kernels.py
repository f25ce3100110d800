"""Numba kernels of :mod:`rtforge.core.dvh`: arrays and scalars only.

The DVH kernel integrates dose over the solid the planar contours define
(a prism per contour plane), with

- x exact: the even-odd spans of the contours on a strip's centre line are
  exact intervals, cut at the dose column centres, between which the dose is
  linear in x;
- y by the midpoint rule on strips aligned to the dose rows (the area); the
  dose is linear in y within a strip too;
- z exact: within a slab the dose is linear between dose planes.

Each box (span piece x strip x slab piece) holds a dose linear in x, y and
z, the sum of three uniform spreads about its exact mean.  With at most two
non-zero spreads that distribution is a trapezoid, deposited exactly bin by
bin (whole bins through difference arrays of order one); a third spread is
merged into the smaller one with the same variance (moment-matched), and the
cross terms of trilinear interpolation (zero for a linear field) are
averaged into the spreads.

Each task (one contour plane, one strip) runs on one thread; every thread
owns a private histogram, difference array and accumulators (row ``c`` of
the per-chunk arrays), reduced by the front.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

#: Accumulator slots per chunk.
SUM_VOLUME = 0  # mm3 inside the dose grid
SUM_DOSE = 1  # mm3 * Gy
SUM_OUTSIDE = 2  # mm3 outside the dose grid
MIN_DOSE = 3
MAX_DOSE = 4
N_ACC = 5


@njit(cache=True)
def _segment(hist: np.ndarray, diff: np.ndarray, bin_width: float, lo: float, hi: float,
             rho: float, slope: float) -> None:
    """Add the mass of the density ``rho + slope * (d - lo)`` on ``[lo, hi]`` to the bins.

    Bins wholly inside get a mass linear in the bin index, added through the
    difference arrays ``diff[0]`` (constant) and ``diff[1]`` (coefficient of
    the bin index); the two end bins get their exact partial integrals.  Mass
    below 0 Gy (the moment-matched spreads of a box whose trilinear cross terms
    are large can reach below its lowest corner) goes to the first bin.
    """
    nb = hist.shape[0]
    blo = min(max(int(lo / bin_width), 0), nb - 1)
    bhi = min(max(int(hi / bin_width), 0), nb - 1)
    if blo == bhi:
        hist[blo] += rho * (hi - lo) + 0.5 * slope * (hi - lo) ** 2
        return
    a = (blo + 1) * bin_width - lo
    hist[blo] += rho * a + 0.5 * slope * a * a
    b0 = bhi * bin_width - lo
    b1 = hi - lo
    hist[bhi] += rho * (b1 - b0) + 0.5 * slope * (b1 * b1 - b0 * b0)
    if bhi > blo + 1:
        # mass of bin b: rho * w + slope * w * (b * w - lo + w / 2)
        c0 = rho * bin_width + slope * bin_width * (0.5 * bin_width - lo)
        c1 = slope * bin_width * bin_width
        diff[0, blo + 1] += c0
        diff[0, bhi] -= c0
        diff[1, blo + 1] += c1
        diff[1, bhi] -= c1


@njit(cache=True)
def _deposit(hist: np.ndarray, diff: np.ndarray, bin_width: float, mean: float, ax: float,
             az: float, w: float) -> None:
    """Add volume ``w`` whose dose is ``mean + U(-ax/2, ax/2) + U(-az/2, az/2)``.

    The sum of two uniform spreads (the dose linear along x within a cell and
    along z within a slab piece) has a trapezoidal density.
    """
    small = min(ax, az)
    large = max(ax, az)
    tiny = 1e-6 * bin_width
    d0 = mean - 0.5 * (ax + az)
    if large <= tiny:
        nb = hist.shape[0]
        hist[min(int(mean / bin_width), nb - 1)] += w
        return
    height = w / large
    if small <= tiny:
        _segment(hist, diff, bin_width, d0, d0 + large, height, 0.0)
        return
    slope = height / small
    _segment(hist, diff, bin_width, d0, d0 + small, 0.0, slope)
    _segment(hist, diff, bin_width, d0 + small, d0 + large, height, 0.0)
    _segment(hist, diff, bin_width, d0 + large, d0 + large + small, height, -slope)


@njit(cache=True)
def _crossings(points: np.ndarray, poly_start: np.ndarray, p0: int, p1: int, y: float,
               out: np.ndarray) -> int:
    """x of every crossing of the horizontal line at ``y`` with the polygons
    ``p0 .. p1 - 1`` (half-open rule on y), sorted; returns the count."""
    n = 0
    for p in range(p0, p1):
        s = poly_start[p]
        e = poly_start[p + 1]
        m = e - s
        for a in range(m):
            ax = points[s + a, 0]
            ay = points[s + a, 1]
            b = s + (a + 1) % m
            bx = points[b, 0]
            by = points[b, 1]
            if (ay <= y) != (by <= y):
                out[n] = ax + (y - ay) * (bx - ax) / (by - ay)
                n += 1
    # insertion sort: few crossings per line
    for a in range(1, n):
        v = out[a]
        b = a - 1
        while b >= 0 and out[b] > v:
            out[b + 1] = out[b]
            b -= 1
        out[b + 1] = v
    return n


@njit(cache=True)
def _plane_dose(dose: np.ndarray, k: int, u: float, v: float) -> tuple[float, float]:
    """Bilinear dose of dose plane ``k`` at clamped fractional (column u, row v),
    and its derivative along v (Gy per row)."""
    nj = dose.shape[1]
    ni = dose.shape[2]
    i0 = min(int(u), ni - 2) if ni > 1 else 0
    j0 = min(int(v), nj - 2) if nj > 1 else 0
    i1 = min(i0 + 1, ni - 1)
    j1 = min(j0 + 1, nj - 1)
    fu = u - i0
    fv = v - j0
    top = dose[k, j0, i0] * (1.0 - fu) + dose[k, j0, i1] * fu
    bottom = dose[k, j1, i0] * (1.0 - fu) + dose[k, j1, i1] * fu
    return top * (1.0 - fv) + bottom * fv, bottom - top


@njit(cache=True, parallel=True)
def dvh_histogram(dose: np.ndarray, origin: np.ndarray, spacing: np.ndarray,
                  points: np.ndarray, poly_start: np.ndarray, plane_poly: np.ndarray,
                  plane_rows: np.ndarray, row_y0: np.ndarray, strip: float,
                  x_lo: np.ndarray, cell: float,
                  piece_start: np.ndarray, piece_z: np.ndarray, piece_k: np.ndarray,
                  piece_t: np.ndarray, bin_width: float, n_chunks: int,
                  hist: np.ndarray, diff: np.ndarray, acc: np.ndarray) -> None:
    """Per-chunk dose histograms of the solid planar contours define.

    Parameters (all mm, Gy; index conventions of :mod:`rtforge.core.geometry`)
    ----------
    dose : (nk, nj, ni) float64, an axis-aligned grid at ``origin``/``spacing``.
    points : (N, 2) in-plane x, y of every polygon; polygons of plane ``p`` are
        ``plane_poly[p] .. plane_poly[p + 1] - 1``, polygon ``q`` is
        ``points[poly_start[q]:poly_start[q + 1]]``.
    plane_rows : (P + 1,) task offsets: plane ``p`` has strips
        ``plane_rows[p] .. plane_rows[p + 1] - 1``; strip ``r`` of plane ``p`` is
        centred at ``row_y0[p] + (r - plane_rows[p] + 0.5) * strip``.
    x_lo : (P,) left edge of plane ``p``'s cell lattice, a dose column centre; cells
        are ``cell`` wide (the column spacing: the dose is linear in x within one).
    piece_* : z pieces of plane ``p``: ``piece_start[p] .. piece_start[p + 1] - 1``;
        piece ``q`` spans ``piece_z[q, 0] .. piece_z[q, 1]``, its dose at each end
        is ``(1 - t) * D[k0] + t * D[k1]`` with ``piece_k[q] = (k0, k1)``,
        ``piece_t[q] = (t_start, t_end)``; ``k0 < 0`` marks a piece outside the grid.
    hist, diff : (n_chunks, nbins) and (n_chunks, 2, nbins + 1), zeroed; bin ``b``
        holds ``hist[b] + cumsum(diff[0])[b] + b * cumsum(diff[1])[b]``.
    acc : (n_chunks, N_ACC), zeroed except MIN_DOSE = +inf, MAX_DOSE = -inf.
    """
    n_tasks = plane_rows[plane_rows.shape[0] - 1]
    nj = dose.shape[1]
    ni = dose.shape[2]
    strip_rows = strip / spacing[1]
    ext_lo = origin[0] - 0.5 * spacing[0]
    ext_hi = origin[0] + (ni - 0.5) * spacing[0]
    thickness = np.zeros(piece_start.shape[0] - 1)
    for p in range(thickness.shape[0]):
        for q in range(piece_start[p], piece_start[p + 1]):
            thickness[p] += piece_z[q, 1] - piece_z[q, 0]
    max_cross = points.shape[0] + 2
    for c in prange(n_chunks):
        xs = np.empty(max_cross)
        h = hist[c]
        d = diff[c]
        plane = 0
        for task in range(c, n_tasks, n_chunks):
            while plane_rows[plane + 1] <= task:
                plane += 1
            y = row_y0[plane] + (task - plane_rows[plane] + 0.5) * strip
            n = _crossings(points, poly_start, plane_poly[plane], plane_poly[plane + 1], y, xs)
            v = (y - origin[1]) / spacing[1]
            row_inside = -0.5 <= v <= nj - 0.5
            v = min(max(v, 0.0), nj - 1.0)
            for s in range(0, n - 1, 2):
                xa = xs[s]
                xb = xs[s + 1]
                if xb <= xa:
                    continue
                # Beyond the grid's extent (half a voxel past the outer centres): no dose.
                off = max(0.0, min(xb, ext_lo) - xa) + max(0.0, xb - max(xa, ext_hi))
                xa = max(xa, ext_lo)
                xb = min(xb, ext_hi)
                if not row_inside and xb > xa:
                    off += xb - xa
                if off > 0.0:
                    acc[c, SUM_OUTSIDE] += off * strip * thickness[plane]
                if xb <= xa or not row_inside:
                    continue
                first = int(np.floor((xa - x_lo[plane]) / cell))
                last = int(np.floor((xb - x_lo[plane]) / cell))
                for m in range(first, last + 1):
                    ca = max(xa, x_lo[plane] + m * cell)
                    cb = min(xb, x_lo[plane] + (m + 1) * cell)
                    length = cb - ca
                    if length <= 0.0:
                        continue
                    ua = min(max((ca - origin[0]) / spacing[0], 0.0), ni - 1.0)
                    ub = min(max((cb - origin[0]) / spacing[0], 0.0), ni - 1.0)
                    area = length * strip
                    for q in range(piece_start[plane], piece_start[plane + 1]):
                        w = area * (piece_z[q, 1] - piece_z[q, 0])
                        k0 = piece_k[q, 0]
                        if k0 < 0:
                            acc[c, SUM_OUTSIDE] += w
                            continue
                        k1 = piece_k[q, 1]
                        a0, ga0 = _plane_dose(dose, k0, ua, v)
                        b0, gb0 = _plane_dose(dose, k0, ub, v)
                        if k1 == k0:
                            a1, ga1, b1, gb1 = a0, ga0, b0, gb0
                        else:
                            a1, ga1 = _plane_dose(dose, k1, ua, v)
                            b1, gb1 = _plane_dose(dose, k1, ub, v)
                        t0 = piece_t[q, 0]
                        t1 = piece_t[q, 1]
                        # dose at the four corners (x start/end, z start/end) of the piece
                        aa = a0 + t0 * (a1 - a0)
                        ba = b0 + t0 * (b1 - b0)
                        az = a0 + t1 * (a1 - a0)
                        bz = b0 + t1 * (b1 - b0)
                        mean = 0.25 * (aa + ba + az + bz)
                        spread_x = abs(0.5 * ((ba - aa) + (bz - az)))
                        spread_z = abs(0.5 * ((az - aa) + (bz - ba)))
                        tm = 0.5 * (t0 + t1)
                        spread_y = abs(0.5 * ((ga0 + gb0) * (1.0 - tm) + (ga1 + gb1) * tm)) \
                            * strip_rows
                        # Three uniform spreads: the largest kept, the other two merged into
                        # one of the same variance (exact when at most two are non-zero).
                        large = max(spread_x, max(spread_y, spread_z))
                        small = math.sqrt(spread_x * spread_x + spread_y * spread_y
                                          + spread_z * spread_z - large * large)
                        _deposit(h, d, bin_width, mean, large, small, w)
                        acc[c, SUM_VOLUME] += w
                        acc[c, SUM_DOSE] += w * mean
                        lo = min(min(aa, ba), min(az, bz))
                        hi = max(max(aa, ba), max(az, bz))
                        if lo < acc[c, MIN_DOSE]:
                            acc[c, MIN_DOSE] = lo
                        if hi > acc[c, MAX_DOSE]:
                            acc[c, MAX_DOSE] = hi


@njit(cache=True)
def merge_bins(cumulative: np.ndarray, tolerance: float, differential: bool) -> np.ndarray:
    """Edges kept when merging histogram bins (greedy, left to right).

    ``cumulative[e]`` is the volume at or above edge ``e`` (``E`` edges,
    ``E - 1`` bins).  A merged bin ``[a, b)`` is read back as the step
    ``cumulative[a]`` (cumulative DVH Data) or as a straight line from
    ``cumulative[a]`` to ``cumulative[b]`` (differential: uniform density);
    a bin grows while every edge it swallows is read back within
    ``tolerance``.  Returns the kept edge indices, first 0, last ``E - 1``.
    """
    n = cumulative.shape[0]
    keep = np.empty(n, dtype=np.intp)
    keep[0] = 0
    count = 1
    a = 0
    b = 1
    while b < n - 1:
        ok = True
        nb = b + 1
        for e in range(a + 1 if differential else b, nb):
            if differential:
                t = (e - a) / (nb - a)
                read = cumulative[a] + t * (cumulative[nb] - cumulative[a])
            else:
                read = cumulative[a]
            if abs(read - cumulative[e]) > tolerance:
                ok = False
                break
        if ok:
            b = nb
        else:
            keep[count] = b
            count += 1
            a = b
            b = a + 1
    keep[count] = n - 1
    return keep[:count + 1]
