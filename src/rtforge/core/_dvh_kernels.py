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

Whole voxels (the fast path): the strips between two dose row centres form a
band; a cell (between two dose column centres) that every strip of the band
covers whole is one box, the whole dose voxel between four row and column
centres, instead of one box per strip: the same volume, the same exact mean
(the trilinear dose at the box centre), and the same distribution where the
dose has no y gradient; otherwise its y spread is a third spread, merged as
above.  Only the cells at the contours' edges and outside the grid's outer
centres go strip by strip.  Most of a large structure is whole voxels, so
the work scales with its volume in voxels plus its outline in strips.

A task is one contour plane's band; the tasks of one structure are dealt to
chunks, each with a private histogram, difference array and accumulators
(row ``c`` of the per-chunk arrays), reduced by the front; the chunks of all
structures are dealt to one worker per thread by estimated work.  No two
threads write one cell.
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


@njit(cache=True, inline="always")  # at Numba IR level: LLVM alone does not inline it
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


@njit(cache=True, inline="always")  # at Numba IR level: LLVM alone does not inline it
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


@njit(cache=True, nogil=True, inline="always")
def _deposit3(hist: np.ndarray, diff: np.ndarray, bin_width: float, mean: float, sx: float,
              sy: float, sz: float, weight: float) -> None:
    """:func:`_deposit` of a box whose dose spreads uniformly by ``sx``, ``sy`` and ``sz``:
    the largest spread is kept and the other two merged into one of the same variance
    (exact when at most two are non-zero)."""
    large = max(sx, max(sy, sz))
    small = math.sqrt(max(sx * sx + sy * sy + sz * sz - large * large, 0.0))
    _deposit(hist, diff, bin_width, mean, large, small, weight)


@njit(cache=True)
def _band_crossings(points: np.ndarray, poly_start: np.ndarray, p0: int, p1: int, y_first: float,
                    strip: float, sub: int, xs: np.ndarray, count: np.ndarray) -> None:
    """Crossings of the centre lines of ``sub`` strips with the polygons ``p0 .. p1 - 1``.

    Strip ``s`` is the line ``y = y_first + s * strip``; its crossings (half-open
    rule on y) go to ``xs[s, :count[s]]``, sorted.  An edge is tested against
    the strips only when its y range meets the band.
    """
    for s in range(sub):
        count[s] = 0
    y_last = y_first + (sub - 1) * strip
    for p in range(p0, p1):
        start = poly_start[p]
        m = poly_start[p + 1] - start
        for a in range(m):
            b = start + a + 1 if a + 1 < m else start
            ay = points[start + a, 1]
            by = points[b, 1]
            if (ay > y_last and by > y_last) or (ay <= y_first and by <= y_first):
                continue
            ax = points[start + a, 0]
            bx = points[b, 0]
            for s in range(sub):
                y = y_first + s * strip
                if (ay <= y) != (by <= y):
                    xs[s, count[s]] = ax + (y - ay) * (bx - ax) / (by - ay)
                    count[s] += 1
    # insertion sort: few crossings per line
    for s in range(sub):
        for a in range(1, count[s]):
            v = xs[s, a]
            b = a - 1
            while b >= 0 and xs[s, b] > v:
                xs[s, b + 1] = xs[s, b]
                b -= 1
            xs[s, b + 1] = v


@njit(cache=True)
def _common_spans(xs: np.ndarray, count: np.ndarray, sub: int, ia: np.ndarray, ib: np.ndarray,
                  ja: np.ndarray, jb: np.ndarray) -> int:
    """Intersection of the even-odd spans of all ``sub`` strips: ``n`` intervals
    ``ia[:n] .. ib[:n]``, sorted and disjoint; returns ``n``."""
    n = 0
    for t in range(0, count[0] - 1, 2):
        if xs[0, t + 1] > xs[0, t]:
            ia[n] = xs[0, t]
            ib[n] = xs[0, t + 1]
            n += 1
    for s in range(1, sub):
        if n == 0:
            return 0
        kept = 0
        u = 0
        t = 0
        while u < n and t < count[s] - 1:
            a = max(ia[u], xs[s, t])
            b = min(ib[u], xs[s, t + 1])
            if b > a:
                ja[kept] = a
                jb[kept] = b
                kept += 1
            if ib[u] < xs[s, t + 1]:
                u += 1
            else:
                t += 2
        for u in range(kept):
            ia[u] = ja[u]
            ib[u] = jb[u]
        n = kept
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
    top = np.float64(dose[k, j0, i0]) * (1.0 - fu) + np.float64(dose[k, j0, i1]) * fu
    bottom = np.float64(dose[k, j1, i0]) * (1.0 - fu) + np.float64(dose[k, j1, i1]) * fu
    return top * (1.0 - fv) + bottom * fv, bottom - top


@njit(cache=True, parallel=True)
def dvh_histogram(dose: np.ndarray, origin: np.ndarray, spacing: np.ndarray,
                  points: np.ndarray, poly_start: np.ndarray, plane_poly: np.ndarray,
                  plane_bands: np.ndarray, band0: np.ndarray, plane_sub: np.ndarray,
                  col0: np.ndarray, fast: bool,
                  piece_start: np.ndarray, piece_z: np.ndarray, piece_k: np.ndarray,
                  piece_t: np.ndarray, roi_plane: np.ndarray, chunk_roi: np.ndarray,
                  chunk_part: np.ndarray, roi_parts: np.ndarray, worker_start: np.ndarray,
                  bin_width: float, hist: np.ndarray, diff: np.ndarray, acc: np.ndarray) -> None:
    """Per-chunk dose histograms of the solids planar contours define, several ROIs at once.

    Parameters (all mm, Gy; index conventions of :mod:`rtforge.core.geometry`)
    ----------
    dose : (nk, nj, ni) float32 or float64, an axis-aligned grid at ``origin``/``spacing``.
    points : (N, 2) in-plane x, y of every polygon; polygons of plane ``p`` are
        ``plane_poly[p] .. plane_poly[p + 1] - 1``, polygon ``q`` is
        ``points[poly_start[q]:poly_start[q + 1]]``.
    plane_bands : (P + 1,) task offsets: plane ``p`` has the row bands (y from row
        centre ``j`` to ``j + 1``) ``j = band0[p] + t - plane_bands[p]`` for tasks
        ``t = plane_bands[p] .. plane_bands[p + 1] - 1``; each band holds
        ``plane_sub[p]`` strips, strip ``s`` centred at row ``j + (s + 0.5) / plane_sub[p]``.
    col0 : (P,) dose column whose centre is the left edge of plane ``p``'s cell lattice;
        cells are a column spacing wide (the dose is linear in x within one).
    fast : bool
        Integrate the cells that every strip of a band covers whole (the whole
        dose voxel between four row and column centres) as one box each; False:
        strip by strip everywhere (the reference path).
    piece_* : z pieces of plane ``p``: ``piece_start[p] .. piece_start[p + 1] - 1``;
        piece ``q`` spans ``piece_z[q, 0] .. piece_z[q, 1]``, its dose at each end
        is ``(1 - t) * D[k0] + t * D[k1]`` with ``piece_k[q] = (k0, k1)``,
        ``piece_t[q] = (t_start, t_end)``; ``k0 < 0`` marks a piece outside the grid.
    roi_plane : (R + 1,) planes of ROI ``r``: ``roi_plane[r] .. roi_plane[r + 1] - 1``.
    chunk_roi, chunk_part : (C,) chunk ``c`` takes every ``roi_parts[r]``-th task of ROI
        ``r = chunk_roi[c]``, from its first task plus ``chunk_part[c]``.
    worker_start : (W + 1,) worker ``w`` (one prange iteration, one thread) runs chunks
        ``worker_start[w] .. worker_start[w + 1] - 1`` in turn: the front balances the
        workers' estimated work (a static split; Numba's prange has no work stealing).
    hist, diff : (C, nbins) and (C, 2, nbins + 1), zeroed; bin ``b``
        holds ``hist[b] + cumsum(diff[0])[b] + b * cumsum(diff[1])[b]``.
    acc : (C, N_ACC), written.
    """
    n_planes = piece_start.shape[0] - 1
    nj = dose.shape[1]
    ni = dose.shape[2]
    cell = spacing[0]
    band_h = spacing[1]
    ext_lo = origin[0] - 0.5 * spacing[0]
    ext_hi = origin[0] + (ni - 0.5) * spacing[0]
    thickness = np.zeros(n_planes)
    max_cross = 2
    max_sub = 1
    for p in range(n_planes):
        for q in range(piece_start[p], piece_start[p + 1]):
            thickness[p] += piece_z[q, 1] - piece_z[q, 0]
        max_cross = max(max_cross, poly_start[plane_poly[p + 1]] - poly_start[plane_poly[p]] + 2)
        max_sub = max(max_sub, plane_sub[p])
    for w in prange(worker_start.shape[0] - 1):
        xs = np.empty((max_sub, max_cross))
        count = np.zeros(max_sub, dtype=np.intp)
        ia = np.empty(max_cross)
        ib = np.empty(max_cross)
        ja = np.empty(max_cross)
        jb = np.empty(max_cross)
        f_lo = np.empty(max_cross, dtype=np.intp)
        f_hi = np.empty(max_cross, dtype=np.intp)
        for c in range(worker_start[w], worker_start[w + 1]):
            h = hist[c]
            d = diff[c]
            volume = 0.0
            dose_sum = 0.0
            outside = 0.0
            d_min = np.inf
            d_max = -np.inf
            roi = chunk_roi[c]
            plane = roi_plane[roi]
            first_task = plane_bands[plane] + chunk_part[c]
            for task in range(first_task, plane_bands[roi_plane[roi + 1]], roi_parts[roi]):
                while plane_bands[plane + 1] <= task:
                    plane += 1
                j = band0[plane] + task - plane_bands[plane]
                sub = plane_sub[plane]
                strip = band_h / sub
                x_lo = origin[0] + col0[plane] * cell
                y_first = origin[1] + (j + 0.5 / sub) * band_h
                _band_crossings(points, poly_start, plane_poly[plane], plane_poly[plane + 1],
                                y_first, strip, sub, xs, count)
                # Cells every strip covers whole, inside the grid: one box per z piece.
                nf = 0
                if fast and 0 <= j and j + 1 < nj:
                    n_common = _common_spans(xs, count, sub, ia, ib, ja, jb)
                    m_min = -col0[plane]
                    m_max = ni - 2 - col0[plane]
                    for u in range(n_common):
                        lo_m = max(int(math.ceil((ia[u] - x_lo) / cell)), m_min)
                        hi_m = min(int(math.floor((ib[u] - x_lo) / cell)) - 1, m_max)
                        if hi_m >= lo_m:
                            f_lo[nf] = lo_m
                            f_hi[nf] = hi_m
                            nf += 1
                for f in range(nf):
                    for m in range(f_lo[f], f_hi[f] + 1):
                        i0 = col0[plane] + m
                        for q in range(piece_start[plane], piece_start[plane + 1]):
                            w = cell * band_h * (piece_z[q, 1] - piece_z[q, 0])
                            k0 = piece_k[q, 0]
                            if k0 < 0:
                                outside += w
                                continue
                            k1 = piece_k[q, 1]
                            t0 = piece_t[q, 0]
                            t1 = piece_t[q, 1]
                            # corners (row r, column c, z end e): v_rce
                            p00 = np.float64(dose[k0, j, i0])
                            p01 = np.float64(dose[k0, j, i0 + 1])
                            p10 = np.float64(dose[k0, j + 1, i0])
                            p11 = np.float64(dose[k0, j + 1, i0 + 1])
                            g00 = np.float64(dose[k1, j, i0]) - p00
                            g01 = np.float64(dose[k1, j, i0 + 1]) - p01
                            g10 = np.float64(dose[k1, j + 1, i0]) - p10
                            g11 = np.float64(dose[k1, j + 1, i0 + 1]) - p11
                            v000 = p00 + t0 * g00
                            v001 = p00 + t1 * g00
                            v010 = p01 + t0 * g01
                            v011 = p01 + t1 * g01
                            v100 = p10 + t0 * g10
                            v101 = p10 + t1 * g10
                            v110 = p11 + t0 * g11
                            v111 = p11 + t1 * g11
                            mean = 0.125 * (v000 + v001 + v010 + v011 + v100 + v101 + v110 + v111)
                            spread_x = abs(0.25 * ((v010 + v011 + v110 + v111)
                                                   - (v000 + v001 + v100 + v101)))
                            spread_y = abs(0.25 * ((v100 + v101 + v110 + v111)
                                                   - (v000 + v001 + v010 + v011)))
                            spread_z = abs(0.25 * (t1 - t0) * (g00 + g01 + g10 + g11))
                            _deposit3(h, d, bin_width, mean, spread_x, spread_y, spread_z, w)
                            volume += w
                            dose_sum += w * mean
                            lo = min(min(min(v000, v001), min(v010, v011)),
                                     min(min(v100, v101), min(v110, v111)))
                            hi = max(max(max(v000, v001), max(v010, v011)),
                                     max(max(v100, v101), max(v110, v111)))
                            d_min = min(d_min, lo)
                            d_max = max(d_max, hi)
                # Everything else strip by strip.
                for s in range(sub):
                    y = y_first + s * strip
                    n = count[s]
                    v = (y - origin[1]) / spacing[1]
                    row_inside = -0.5 <= v <= nj - 0.5
                    v = min(max(v, 0.0), nj - 1.0)
                    ptr = 0
                    for t in range(0, n - 1, 2):
                        xa = xs[s, t]
                        xb = xs[s, t + 1]
                        if xb <= xa:
                            continue
                        # Beyond the grid's extent (half a voxel past the outer centres): no dose.
                        off = max(0.0, min(xb, ext_lo) - xa) + max(0.0, xb - max(xa, ext_hi))
                        xa = max(xa, ext_lo)
                        xb = min(xb, ext_hi)
                        if not row_inside and xb > xa:
                            off += xb - xa
                        if off > 0.0:
                            outside += off * strip * thickness[plane]
                        if xb <= xa or not row_inside:
                            continue
                        first = int(np.floor((xa - x_lo) / cell))
                        last = int(np.floor((xb - x_lo) / cell))
                        m = first
                        while m <= last:
                            while ptr < nf and f_hi[ptr] < m:
                                ptr += 1
                            if ptr < nf and f_lo[ptr] <= m:
                                m = f_hi[ptr] + 1
                                continue
                            ca = max(xa, x_lo + m * cell)
                            cb = min(xb, x_lo + (m + 1) * cell)
                            m += 1
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
                                    outside += w
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
                                spread_y = abs(0.5 * ((ga0 + gb0) * (1.0 - tm)
                                                      + (ga1 + gb1) * tm)) / sub
                                _deposit3(h, d, bin_width, mean, spread_x, spread_y, spread_z, w)
                                volume += w
                                dose_sum += w * mean
                                lo = min(min(aa, ba), min(az, bz))
                                hi = max(max(aa, ba), max(az, bz))
                                d_min = min(d_min, lo)
                                d_max = max(d_max, hi)
            acc[c, SUM_VOLUME] = volume
            acc[c, SUM_DOSE] = dose_sum
            acc[c, SUM_OUTSIDE] = outside
            acc[c, MIN_DOSE] = d_min
            acc[c, MAX_DOSE] = d_max


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
