"""Numba kernels behind :mod:`rtforge.core.contours` and :mod:`rtforge.core.masks`.

Only arrays and scalars cross this boundary.  Contours are passed many at a
time in CSR form: ``points`` of shape (N, 3) holds every contour's points one
after the other and ``offsets`` of shape (C + 1,) says where contour ``c``
starts and ends (``points[offsets[c]:offsets[c + 1]]``).  Parallel kernels
give each thread whole contours (or whole mask slices), so no two threads
ever write one cell.

Geometry inside the reducer is 2-D: each contour is projected on an
orthonormal frame ``(u, v)`` of its plane (for an axial contour exactly
``x, y``).  Triangle areas, distances and orientation tests use the squared
quantities (one square root per reported number).  The orientation test is
Shewchuk's filtered ``orient2d``: a turn too close to call in float64 counts
as collinear, which makes every intersection test conservative (a touch it
cannot rule out is a touch).  The priority queues (Visvalingam-Whyatt
removals, Douglas-Peucker insertions) are 4-ary heaps of int64 keys: a
non-negative float's IEEE bits, which order as the floats do, with the low
bits replaced by the point's index, so one integer comparison ranks two
entries and ties go to the lower index.  ``fastmath`` is not used anywhere.

References
----------
M. Visvalingam and J. D. Whyatt, "Line generalisation by repeated
elimination of points", The Cartographic Journal 30(1), 1993.
D. H. Douglas and T. K. Peucker, "Algorithms for the reduction of the
number of points required to represent a digitized line or its
caricature", Cartographica 10(2), 1973.
J. R. Shewchuk, "Adaptive precision floating-point arithmetic and fast
robust geometric predicates", Discrete & Computational Geometry 18, 1997.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

# Per-contour status codes of the reducer (mirrored by contours.ReductionStatus).
UNCHANGED = 0  # within every budget and no tolerance asked: all points kept
REDUCED = 1  # reduced; the result is simple
REPAIRED = 2  # the plain result self-intersected: points re-inserted, then trimmed with checks
INPUT_NOT_SIMPLE = 3  # the input self-intersects: reduced without the guarantee
STUCK = 4  # a simple result within the budget could not be found (degenerate geometry)
DEGENERATE = 5  # all points coincide or are collinear: nothing to reduce to

METHOD_VW = 0
METHOD_RDP = 1

#: A unit normal component this close to 1 makes the plane a patient-axis plane.
AXIS_TOLERANCE = 1e-12

#: Relative slack of the Hausdorff pruning bound (see ``hausdorff2_kept``):
#: about 450 units of float64 rounding.
_BOUND_SLACK = 1e-13

# Shewchuk's ccwerrboundA, (3 + 16 eps) eps with eps = 2**-53.
_CCW_ERRBOUND = (3.0 + 16.0 * 2.0**-53) * 2.0**-53


# ------------------------------------------------------------ predicates
@njit(cache=True, inline="always")
def orient(ax, ay, bx, by, cx, cy):
    """Sign of the turn a -> b -> c: 1 left, -1 right, 0 collinear or too close to call."""
    detleft = (ax - cx) * (by - cy)
    detright = (ay - cy) * (bx - cx)
    det = detleft - detright
    bound = _CCW_ERRBOUND * (abs(detleft) + abs(detright))
    if det > bound:
        return 1
    if -det > bound:
        return -1
    return 0


@njit(cache=True, inline="always")
def _in_box(ax, ay, bx, by, px, py):
    """True when p lies in the closed bounding box of segment a-b."""
    return min(ax, bx) <= px <= max(ax, bx) and min(ay, by) <= py <= max(ay, by)


@njit(cache=True)
def segments_touch(px, py, qx, qy, rx, ry, sx, sy):
    """True when closed segments p-q and r-s share any point (or may, within rounding)."""
    d1 = orient(rx, ry, sx, sy, px, py)
    d2 = orient(rx, ry, sx, sy, qx, qy)
    d3 = orient(px, py, qx, qy, rx, ry)
    d4 = orient(px, py, qx, qy, sx, sy)
    if d1 * d2 < 0 and d3 * d4 < 0:
        return True
    if d1 == 0 and _in_box(rx, ry, sx, sy, px, py):
        return True
    if d2 == 0 and _in_box(rx, ry, sx, sy, qx, qy):
        return True
    if d3 == 0 and _in_box(px, py, qx, qy, rx, ry):
        return True
    return d4 == 0 and _in_box(px, py, qx, qy, sx, sy)


@njit(cache=True)
def folds(ax, ay, bx, by, cx, cy):
    """True when segments a-b and b-c overlap beyond b (c turns straight back)."""
    if orient(ax, ay, bx, by, cx, cy) != 0:
        return False
    return (bx - ax) * (cx - bx) + (by - ay) * (cy - by) < 0.0


@njit(cache=True, inline="always")
def seg_dist2(px, py, ax, ay, bx, by):
    """Squared distance from p to the closed segment a-b (a point when a == b)."""
    dx = bx - ax
    dy = by - ay
    wx = px - ax
    wy = py - ay
    ll = dx * dx + dy * dy
    if ll > 0.0:
        t = (wx * dx + wy * dy) / ll
        if t >= 1.0:
            wx = px - bx
            wy = py - by
        elif t > 0.0:
            wx -= t * dx
            wy -= t * dy
    return wx * wx + wy * wy


@njit(cache=True, inline="always")
def _tri2(x, y, a, b, c):
    """Twice the area of triangle a, b, c (the Visvalingam-Whyatt key)."""
    return abs((x[b] - x[a]) * (y[c] - y[a]) - (x[c] - x[a]) * (y[b] - y[a]))


# ------------------------------------------------------ simple polygons
@njit(cache=True)
def _simple_or_offenders(x, y, idx, m, flags, all_pairs):
    """Check the closed polygon ``idx[:m]`` (indices into x, y) for self-contact.

    Consecutive duplicate points are skipped.  With ``all_pairs`` every
    segment in contact with another is flagged in ``flags`` (by position of
    its first point in ``idx``); otherwise the search stops at the first.
    Returns the number of contacts found (0: simple).  Fewer than three
    distinct points count as one contact (degenerate).
    """
    comp = np.empty(m, np.intp)
    where = np.empty(m, np.intp)
    k = 0
    for t in range(m):
        i = idx[t]
        if k > 0 and x[i] == x[comp[k - 1]] and y[i] == y[comp[k - 1]]:
            continue
        comp[k] = i
        where[k] = t
        k += 1
    while k > 1 and x[comp[k - 1]] == x[comp[0]] and y[comp[k - 1]] == y[comp[0]]:
        k -= 1
    if k < 3:
        return 1
    xmin = np.empty(k)
    for s in range(k):
        a = comp[s]
        b = comp[(s + 1) % k]
        xmin[s] = min(x[a], x[b])
    order = np.argsort(xmin, kind="mergesort")
    found = 0
    for oi in range(k):
        s = order[oi]
        a = comp[s]
        b = comp[(s + 1) % k]
        sxmax = max(x[a], x[b])
        symin = min(y[a], y[b])
        symax = max(y[a], y[b])
        for oj in range(oi + 1, k):
            t = order[oj]
            if xmin[t] > sxmax:
                break
            c = comp[t]
            d = comp[(t + 1) % k]
            if max(y[c], y[d]) < symin or min(y[c], y[d]) > symax:
                continue
            if t == (s + 1) % k:
                hit = folds(x[a], y[a], x[b], y[b], x[d], y[d])
            elif s == (t + 1) % k:
                hit = folds(x[c], y[c], x[d], y[d], x[b], y[b])
            else:
                hit = segments_touch(x[a], y[a], x[b], y[b], x[c], y[c], x[d], y[d])
            if hit:
                found += 1
                if not all_pairs:
                    return found
                flags[where[s]] = True
                flags[where[t]] = True
    return found


@njit(cache=True, parallel=True)
def simple_many(points, offsets, frames, out):
    """``out[c]``: True when packed contour c, projected on ``frames[c]`` (u, v),
    is simple (one thread per contour)."""
    for c in prange(offsets.shape[0] - 1):
        s = offsets[c]
        e = offsets[c + 1]
        x = np.empty(e - s)
        y = np.empty(e - s)
        for i in range(s, e):
            x[i - s] = points[i, 0] * frames[c, 0, 0] + points[i, 1] * frames[c, 0, 1] \
                + points[i, 2] * frames[c, 0, 2]
            y[i - s] = points[i, 0] * frames[c, 1, 0] + points[i, 1] * frames[c, 1, 1] \
                + points[i, 2] * frames[c, 1, 2]
        out[c] = is_simple_polygon(x, y)


@njit(cache=True)
def is_simple_polygon(x, y):
    """True when the closed polygon through all points of x, y is simple."""
    n = x.shape[0]
    idx = np.arange(n)
    flags = np.zeros(n, np.bool_)
    return _simple_or_offenders(x, y, idx, n, flags, False) == 0


# ------------------------------------------------------------ 4-ary heap
# A min-heap of int64 keys that carry their item: ``key & mask`` is the item
# (a point index below ``mask + 1``) and the bits above rank it, so keys are
# unique and compare with one integer comparison.  ``pos[item]`` is the
# item's slot, or -1 when it is not in the heap.
@njit(cache=True)
def _key_shift(n):
    """Bits that hold an index below n (at least 1)."""
    shift = 1
    while (1 << shift) < n:
        shift += 1
    return shift


@njit(cache=True, inline="always")
def _rank_key(value, index, shift, scratch, scratch_bits):
    """Key ranking a non-negative float ``value`` then ``index``: the value's
    IEEE bits (monotone for non-negative floats) with the low ``shift`` bits
    replaced by the index."""
    scratch[0] = value
    return ((scratch_bits[0] >> shift) << shift) | index


@njit(cache=True, inline="always")
def _sift_down(hk, pos, mask, i, size):
    k = hk[i]
    while True:
        c = 4 * i + 1
        if c >= size:
            break
        m = c
        mk = hk[c]
        end = min(c + 4, size)
        for d in range(c + 1, end):
            if hk[d] < mk:
                mk = hk[d]
                m = d
        if mk >= k:
            break
        hk[i] = mk
        pos[mk & mask] = i
        i = m
    hk[i] = k
    pos[k & mask] = i


@njit(cache=True, inline="always")
def _sift_up(hk, pos, mask, i):
    k = hk[i]
    while i > 0:
        p = (i - 1) // 4
        pk = hk[p]
        if pk <= k:
            break
        hk[i] = pk
        pos[pk & mask] = i
        i = p
    hk[i] = k
    pos[k & mask] = i


@njit(cache=True, inline="always")
def _heap_push(hk, pos, mask, size, key):
    hk[size] = key
    _sift_up(hk, pos, mask, size)
    return size + 1


@njit(cache=True, inline="always")
def _heap_pop(hk, pos, mask, size):
    """Remove the smallest key; returns (key, new size)."""
    key = hk[0]
    pos[key & mask] = -1
    size -= 1
    if size > 0:
        hk[0] = hk[size]
        _sift_down(hk, pos, mask, 0, size)
    return key, size


@njit(cache=True, inline="always")
def _heap_update(hk, pos, mask, size, key):
    """Give the item of ``key`` (in the heap) its new key."""
    p = pos[key & mask]
    old = hk[p]
    hk[p] = key
    if key < old:
        _sift_up(hk, pos, mask, p)
    else:
        _sift_down(hk, pos, mask, p, size)


@njit(cache=True)
def _heapify(hk, pos, mask, size):
    for i in range(size):
        pos[hk[i] & mask] = i
    for i in range((size - 2) // 4, -1, -1):
        _sift_down(hk, pos, mask, i, size)


# ------------------------------------------------------------- budgets
@njit(cache=True, inline="always")
def _within(count, nbytes, max_points, max_bytes):
    """Budget test; ``nbytes`` is the sum of the kept points' costs (each
    with its separator), so the encoded length is ``nbytes - 1``."""
    return count <= max_points and nbytes - 1 <= max_bytes


@njit(cache=True, inline="always")
def _scaled_dist2(px, py, ax, ay, dx, dy, ll):
    """Squared distance from p to the segment from a to a + d, times
    ``ll = |d|^2 > 0`` (no division: one scale per segment)."""
    wx = px - ax
    wy = py - ay
    dot = wx * dx + wy * dy
    if dot <= 0.0:
        return (wx * wx + wy * wy) * ll
    if dot >= ll:
        ex = wx - dx
        ey = wy - dy
        return (ex * ex + ey * ey) * ll
    cross = wx * dy - wy * dx
    return cross * cross


@njit(cache=True)
def _span_dev2(x, y, n, a, b, limit2):
    """Largest squared distance of the points strictly between a and b
    (cyclic: ``b`` may be ``a + n``, or below ``a``) to segment a-b, compared
    through :func:`_scaled_dist2`; stops early once above ``limit2``.
    Returns (dev2, index of the first maximum or -1)."""
    bb = b % n
    ax = x[a]
    ay = y[a]
    dx = x[bb] - ax
    dy = y[bb] - ay
    ll = dx * dx + dy * dy
    scale = ll if ll > 0.0 else 1.0
    lim = limit2 * scale
    end = b if b > a else b + n
    best = -1.0
    arg = -1
    for i in range(a + 1, min(end, n)):
        if ll > 0.0:
            d = _scaled_dist2(x[i], y[i], ax, ay, dx, dy, ll)
        else:
            d = (x[i] - ax) ** 2 + (y[i] - ay) ** 2
        if d > best:
            best = d
            arg = i
            if best > lim:
                return best / scale, arg
    for i in range(0, end - n):
        if ll > 0.0:
            d = _scaled_dist2(x[i], y[i], ax, ay, dx, dy, ll)
        else:
            d = (x[i] - ax) ** 2 + (y[i] - ay) ** 2
        if d > best:
            best = d
            arg = i
            if best > lim:
                break
    return best / scale, arg


@njit(cache=True)
def _span_max2(x, y, a, b, n):
    """:func:`_span_dev2` of a span that does not wrap (``a < b <= n``), with
    no early stop: the same (dev2, index of the first maximum or -1)."""
    bb = b % n
    ax = x[a]
    ay = y[a]
    dx = x[bb] - ax
    dy = y[bb] - ay
    ll = dx * dx + dy * dy
    best = -1.0
    arg = -1
    if ll > 0.0:
        for i in range(a + 1, b):
            d = _scaled_dist2(x[i], y[i], ax, ay, dx, dy, ll)
            if d > best:
                best = d
                arg = i
        return best / ll, arg
    for i in range(a + 1, b):
        d = (x[i] - ax) ** 2 + (y[i] - ay) ** 2
        if d > best:
            best = d
            arg = i
    return best, arg


# ------------------------------------------------- Visvalingam-Whyatt
@njit(cache=True)
def _vw(x, y, cost, max_points, max_bytes, tol2, keep):
    """Visvalingam-Whyatt on the closed polygon x, y (no intersection checks).

    Repeatedly removes the point of smallest (triangle area, index), the
    area compared through :func:`_rank_key`.  With ``tol2 >= 0`` a first
    phase removes only points whose removal keeps every original point
    between the new neighbours within sqrt(tol2) of the new segment (a point
    whose removal would not is set aside until a neighbour changes); then,
    whatever the phase, points are removed until the budgets hold.  Returns
    the number of points kept.
    """
    n = x.shape[0]
    shift = _key_shift(n)
    mask = (1 << shift) - 1
    scratch = np.empty(1)
    bits = scratch.view(np.int64)
    prv = np.empty(n, np.intp)
    nxt = np.empty(n, np.intp)
    for i in range(n):
        prv[i] = i - 1 if i > 0 else n - 1
        nxt[i] = i + 1 if i < n - 1 else 0
        keep[i] = True
    count = n
    nbytes = 0
    for i in range(n):
        nbytes += cost[i]
    hk = np.empty(n, np.int64)
    pos = np.full(n, -1, np.intp)
    if tol2 >= 0.0:
        for i in range(n):
            hk[i] = _rank_key(_tri2(x, y, prv[i], i, nxt[i]), i, shift, scratch, bits)
        size = n
        _heapify(hk, pos, mask, size)
        while size > 0 and count > 3:
            key, size = _heap_pop(hk, pos, mask, size)
            v = key & mask
            a = prv[v]
            b = nxt[v]
            dev, _ = _span_dev2(x, y, n, a, b, tol2)
            if dev > tol2:
                continue  # set aside: queued again when a neighbour changes
            keep[v] = False
            count -= 1
            nbytes -= cost[v]
            nxt[a] = b
            prv[b] = a
            for w in (a, b):
                key = _rank_key(_tri2(x, y, prv[w], w, nxt[w]), w, shift, scratch, bits)
                if pos[w] >= 0:
                    _heap_update(hk, pos, mask, size, key)
                else:
                    size = _heap_push(hk, pos, mask, size, key)
    if _within(count, nbytes, max_points, max_bytes) or count <= 3:
        return count
    size = 0
    for i in range(n):
        pos[i] = -1
        if keep[i]:
            hk[size] = _rank_key(_tri2(x, y, prv[i], i, nxt[i]), i, shift, scratch, bits)
            size += 1
    _heapify(hk, pos, mask, size)
    while count > 3 and not _within(count, nbytes, max_points, max_bytes):
        key, size = _heap_pop(hk, pos, mask, size)
        v = key & mask
        a = prv[v]
        b = nxt[v]
        keep[v] = False
        count -= 1
        nbytes -= cost[v]
        nxt[a] = b
        prv[b] = a
        _heap_update(hk, pos, mask, size,
                     _rank_key(_tri2(x, y, prv[a], a, b), a, shift, scratch, bits))
        _heap_update(hk, pos, mask, size,
                     _rank_key(_tri2(x, y, a, b, nxt[b]), b, shift, scratch, bits))
    return count


# -------------------------------------------------------- Douglas-Peucker
@njit(cache=True)
def _rdp(x, y, cost, max_points, max_bytes, tol2, keep):
    """:func:`_rdp_spans` without its span deviations."""
    return _rdp_spans(x, y, cost, max_points, max_bytes, tol2, keep, np.empty(x.shape[0]))


@njit(cache=True)
def _rdp_spans(x, y, cost, max_points, max_bytes, tol2, keep, span_dev):
    """Douglas-Peucker on the closed polygon x, y, by insertion in order of deviation.

    Starts from point 0 and the point farthest from it (the ring's first
    split, as GEOS does), then repeatedly inserts the point farthest from
    its current segment (largest first; ties by position), while that
    distance exceeds sqrt(tol2) (with ``tol2 >= 0``), the point and byte
    budgets allow one more point, and any point lies off its segment.  The
    kept set equals recursive Douglas-Peucker at the tolerance where it
    stops.  Returns the number of points kept: fewer than three when every
    point lies on one line through point 0.  ``span_dev[a]`` (out) is, for
    each kept point ``a`` with points between it and the next kept one, the
    largest squared distance of those points to their segment as
    :func:`_span_max2` measures it, and -1 for every other point.
    """
    n = x.shape[0]
    for i in range(n):
        keep[i] = False
        span_dev[i] = -1.0
    far = -1
    best = 0.0
    for i in range(1, n):
        dx = x[i] - x[0]
        dy = y[i] - y[0]
        d = dx * dx + dy * dy
        if d > best:
            best = d
            far = i
    if far < 0:
        return 1
    keep[0] = True
    keep[far] = True
    count = 2
    nbytes = cost[0] + cost[far]
    # Spans are identified by their first point; the heap ranks the largest
    # deviation first (its bits subtracted from those of infinity).
    shift = _key_shift(n)
    mask = (1 << shift) - 1
    scratch = np.empty(1)
    bits = scratch.view(np.int64)
    top = _rank_key(np.inf, 0, 0, scratch, bits)
    span_end = np.empty(n, np.intp)
    span_arg = np.empty(n, np.intp)
    hk = np.empty(n, np.int64)
    pos = np.full(n, -1, np.intp)
    size = 0
    for a, b in ((0, far), (far, n)):
        if b - a >= 2:
            dev, arg = _span_max2(x, y, a, b, n)
            span_end[a] = b
            span_arg[a] = arg
            span_dev[a] = dev
            key = (((top - _rank_key(dev, 0, 0, scratch, bits)) >> shift) << shift) | a
            size = _heap_push(hk, pos, mask, size, key)
    while size > 0:
        a = hk[0] & mask
        dev = span_dev[a]
        if dev <= 0.0:
            break
        if tol2 >= 0.0 and dev <= tol2 and count >= 3:
            break
        p = span_arg[a]
        if count >= 3 and not _within(count + 1, nbytes + cost[p], max_points, max_bytes):
            break
        _, size = _heap_pop(hk, pos, mask, size)
        b = span_end[a]
        span_dev[a] = -1.0
        keep[p] = True
        count += 1
        nbytes += cost[p]
        for s, e in ((a, p), (p, b)):
            if e - s >= 2:
                d, arg = _span_max2(x, y, s, e, n)
                span_end[s] = e
                span_arg[s] = arg
                span_dev[s] = d
                key = (((top - _rank_key(d, 0, 0, scratch, bits)) >> shift) << shift) | s
                size = _heap_push(hk, pos, mask, size, key)
    return count


# ------------------------------------------------- repair and constrained trim
@njit(cache=True)
def _kept_indices(keep):
    m = 0
    for i in range(keep.shape[0]):
        if keep[i]:
            m += 1
    idx = np.empty(m, np.intp)
    m = 0
    for i in range(keep.shape[0]):
        if keep[i]:
            idx[m] = i
            m += 1
    return idx


@njit(cache=True)
def _repair(x, y, keep):
    """Re-insert points until the kept polygon is simple (the full polygon
    is).  Each round splits every segment in contact with another at its
    farthest original point.  Returns the number of points kept."""
    n = x.shape[0]
    while True:
        idx = _kept_indices(keep)
        m = idx.shape[0]
        flags = np.zeros(m, np.bool_)
        if _simple_or_offenders(x, y, idx, m, flags, True) == 0:
            return m
        inserted = 0
        for s in range(m):
            if not flags[s]:
                continue
            a = idx[s]
            b = idx[s + 1] if s + 1 < m else idx[0] + n
            if b - a >= 2:
                _, arg = _span_dev2(x, y, n, a, b, np.inf)
                keep[arg] = True
                inserted += 1
        if inserted == 0:
            return m


@njit(cache=True)
def _removal_keeps_simple(x, y, prv, nxt, a, b):
    """True when replacing a -> v -> b by the segment a-b leaves the kept
    polygon simple (it was simple before and has more than three points)."""
    pa = prv[a]
    nb = nxt[b]
    ax = x[a]
    ay = y[a]
    bx = x[b]
    by = y[b]
    if folds(x[pa], y[pa], ax, ay, bx, by) or folds(ax, ay, bx, by, x[nb], y[nb]):
        return False
    s = nb
    while s != pa:
        t = nxt[s]
        if segments_touch(ax, ay, bx, by, x[s], y[s], x[t], y[t]):
            return False
        s = t
    return True


@njit(cache=True)
def _trim(x, y, cost, keep, max_points, max_bytes):
    """Remove kept points, smallest triangle first, until the budgets hold,
    taking only removals that keep the polygon simple.  Returns the number
    of points kept, or -1 when no allowed removal is left."""
    n = x.shape[0]
    idx = _kept_indices(keep)
    m = idx.shape[0]
    prv = np.empty(n, np.intp)
    nxt = np.empty(n, np.intp)
    nbytes = 0
    for s in range(m):
        prv[idx[s]] = idx[s - 1] if s > 0 else idx[m - 1]
        nxt[idx[s]] = idx[s + 1] if s + 1 < m else idx[0]
        nbytes += cost[idx[s]]
    shift = _key_shift(n)
    mask = (1 << shift) - 1
    scratch = np.empty(1)
    bits = scratch.view(np.int64)
    hk = np.empty(n, np.int64)
    pos = np.full(n, -1, np.intp)
    blocked = np.zeros(n, np.bool_)
    size = 0
    for s in range(m):
        i = idx[s]
        key = _rank_key(_tri2(x, y, prv[i], i, nxt[i]), i, shift, scratch, bits)
        size = _heap_push(hk, pos, mask, size, key)
    count = m
    progress = False
    while not _within(count, nbytes, max_points, max_bytes):
        if count <= 3:
            return -1
        if size == 0:
            if not progress:
                return -1
            progress = False
            for i in range(n):
                if blocked[i] and keep[i]:
                    blocked[i] = False
                    key = _rank_key(_tri2(x, y, prv[i], i, nxt[i]), i, shift, scratch, bits)
                    size = _heap_push(hk, pos, mask, size, key)
            continue
        key, size = _heap_pop(hk, pos, mask, size)
        v = key & mask
        a = prv[v]
        b = nxt[v]
        if not _removal_keeps_simple(x, y, prv, nxt, a, b):
            blocked[v] = True
            continue
        keep[v] = False
        count -= 1
        nbytes -= cost[v]
        nxt[a] = b
        prv[b] = a
        progress = True
        for w in (a, b):
            key = _rank_key(_tri2(x, y, prv[w], w, nxt[w]), w, shift, scratch, bits)
            if pos[w] >= 0:
                _heap_update(hk, pos, mask, size, key)
            else:
                blocked[w] = False
                size = _heap_push(hk, pos, mask, size, key)
    return count


# ------------------------------------------------------------- metrics
@njit(cache=True)
def _dist2_to_polygon(px, py, x, y, idx):
    m = idx.shape[0]
    best = np.inf
    for s in range(m):
        a = idx[s]
        b = idx[s + 1] if s + 1 < m else idx[0]
        d = seg_dist2(px, py, x[a], y[a], x[b], y[b])
        if d < best:
            best = d
    return best


@njit(cache=True)
def hausdorff2_kept(x, y, keep):
    """Squared largest distance from any point of x, y to the closed polygon
    of the kept points.

    Each point's distance to the segment that replaced it bounds its true
    distance from above, so only points whose bound exceeds the running
    maximum are measured against every segment.  The bound is computed
    without a division per point and raised by ``_BOUND_SLACK * (|p - a|^2 +
    |b - a|^2)``, far above the rounding of either computation, so it is
    never below :func:`seg_dist2` and the result is the exact maximum.
    """
    n = x.shape[0]
    idx = _kept_indices(keep)
    m = idx.shape[0]
    if m == n:
        return 0.0
    bound = np.zeros(n)
    for s in range(m):
        a = idx[s]
        b = idx[s + 1] if s + 1 < m else idx[0] + n
        bb = b % n
        ax = x[a]
        ay = y[a]
        dx = x[bb] - ax
        dy = y[bb] - ay
        ll = dx * dx + dy * dy
        inv = 1.0 / ll if ll > 0.0 else 0.0
        for i in range(a + 1, b):
            j = i if i < n else i - n
            wx = x[j] - ax
            wy = y[j] - ay
            w2 = wx * wx + wy * wy
            dot = wx * dx + wy * dy
            if dot <= 0.0 or ll == 0.0:
                d = w2
            elif dot >= ll:
                ex = wx - dx
                ey = wy - dy
                d = ex * ex + ey * ey
            else:
                cross = wx * dy - wy * dx
                d = cross * cross * inv
            bound[j] = d + _BOUND_SLACK * (w2 + ll)
    first = np.argmax(bound)
    h = _dist2_to_polygon(x[first], y[first], x, y, idx)
    for i in range(n):
        if bound[i] > h:
            d = _dist2_to_polygon(x[i], y[i], x, y, idx)
            if d > h:
                h = d
    return h


@njit(cache=True, inline="always")
def _span_hausdorff2(x, y, idx, s, h):
    """Raise ``h`` to the squared distance to the kept polygon ``idx`` of any
    point between kept points ``idx[s]`` and the next whose distance to
    their segment exceeds ``h``."""
    n = x.shape[0]
    m = idx.shape[0]
    a = idx[s]
    b = idx[s + 1] if s + 1 < m else idx[0] + n
    bb = b % n
    for i in range(a + 1, b):
        j = i if i < n else i - n
        if seg_dist2(x[j], y[j], x[a], y[a], x[bb], y[bb]) > h:
            d = _dist2_to_polygon(x[j], y[j], x, y, idx)
            if d > h:
                h = d
    return h


@njit(cache=True)
def hausdorff2_spans(x, y, keep, span_dev, slack):
    """:func:`hausdorff2_kept` of a Douglas-Peucker result, exactly, from
    the span deviations of :func:`_rdp_spans`.

    ``slack`` bounds how far a span deviation may lie below the
    :func:`seg_dist2` of its points (rounding).  The span of largest
    deviation is measured first; every other span is measured only when
    its deviation plus ``slack`` exceeds the running maximum.
    """
    idx = _kept_indices(keep)
    m = idx.shape[0]
    top = 0
    for s in range(1, m):
        if span_dev[idx[s]] > span_dev[idx[top]]:
            top = s
    h = _span_hausdorff2(x, y, idx, top, 0.0)
    for s in range(m):
        dev = span_dev[idx[s]]
        if s != top and dev >= 0.0 and dev + slack > h:
            h = _span_hausdorff2(x, y, idx, s, h)
    return h


@njit(cache=True)
def hausdorff2_brute(x, y, rx, ry):
    """Squared largest distance from points x, y to the closed polygon rx, ry."""
    idx = np.arange(rx.shape[0])
    h = 0.0
    for i in range(x.shape[0]):
        d = _dist2_to_polygon(x[i], y[i], rx, ry, idx)
        if d > h:
            h = d
    return h


@njit(cache=True)
def area_kept(x, y, keep):
    """Absolute shoelace area of the closed polygon of the kept points."""
    n = x.shape[0]
    first = -1
    prev = -1
    total = 0.0
    for i in range(n):
        if not keep[i]:
            continue
        if first < 0:
            first = i
        elif prev >= 0:
            total += ((x[prev] - x[first]) * (y[i] - y[first])
                      - (x[i] - x[first]) * (y[prev] - y[first]))
        prev = i
    return abs(total) / 2.0


@njit(cache=True)
def point_in_polygon(px, py, x, y):
    """Even-odd test: True when (px, py) is inside the closed polygon x, y."""
    inside = False
    n = x.shape[0]
    j = n - 1
    for i in range(n):
        if (y[i] > py) != (y[j] > py):
            xc = x[j] + (py - y[j]) * (x[i] - x[j]) / (y[i] - y[j])
            if px < xc:
                inside = not inside
        j = i
    return inside


# ------------------------------------------------------------ the reducer
@njit(cache=True)
def _reduce_one(x, y, cost, max_points, max_bytes, tol2, method, keep, span_dev):
    """Reduce one deduplicated closed polygon; returns a status code.
    ``span_dev`` (out) as :func:`_rdp_spans` fills it (Douglas-Peucker only)."""
    if method == METHOD_RDP:
        count = _rdp_spans(x, y, cost, max_points, max_bytes, tol2, keep, span_dev)
    else:
        count = _vw(x, y, cost, max_points, max_bytes, tol2, keep)
    if count < 3:
        keep[:] = True
        return DEGENERATE
    idx = _kept_indices(keep)
    flags = np.zeros(1, np.bool_)
    if _simple_or_offenders(x, y, idx, idx.shape[0], flags, False) == 0:
        return REDUCED
    if not is_simple_polygon(x, y):
        return INPUT_NOT_SIMPLE
    _repair(x, y, keep)
    if _trim(x, y, cost, keep, max_points, max_bytes) < 0:
        return STUCK
    return REPAIRED


@njit(cache=True)
def frame_of(nx, ny, nz, f):
    """In-plane orthonormal u, v and normal w (rows of ``f``, 3 x 3) of the plane
    with normal (nx, ny, nz): exactly two patient axes when the plane is a
    patient-axis plane (u = x, v = y for axial), Gram-Schmidt from the axis
    least along the normal otherwise.  A zero normal gives the axial frame."""
    length = np.sqrt(nx * nx + ny * ny + nz * nz)
    if length > 0.0:
        nx /= length
        ny /= length
        nz /= length
    else:
        nx, ny, nz = 0.0, 0.0, 1.0
    f[:, :] = 0.0
    if abs(nz) >= 1.0 - AXIS_TOLERANCE:
        f[0, 0] = 1.0
        f[1, 1] = 1.0
    elif abs(nx) >= 1.0 - AXIS_TOLERANCE:
        f[0, 1] = 1.0
        f[1, 2] = 1.0
    elif abs(ny) >= 1.0 - AXIS_TOLERANCE:
        f[0, 0] = 1.0
        f[1, 2] = 1.0
    else:
        n = np.array((nx, ny, nz))
        seed = np.zeros(3)
        seed[np.argmin(np.abs(n))] = 1.0
        u = seed - (seed @ n) * n
        u /= np.sqrt(u @ u)
        f[0, :] = u
        f[1, 0] = ny * u[2] - nz * u[1]
        f[1, 1] = nz * u[0] - nx * u[2]
        f[1, 2] = nx * u[1] - ny * u[0]
    f[2, 0] = f[0, 1] * f[1, 2] - f[0, 2] * f[1, 1]
    f[2, 1] = f[0, 2] * f[1, 0] - f[0, 0] * f[1, 2]
    f[2, 2] = f[0, 0] * f[1, 1] - f[0, 1] * f[1, 0]


@njit(cache=True)
def frames_of(normal, frames):
    """:func:`frame_of` of each row of ``normal`` (C, 3) into ``frames`` (C, 3, 3)."""
    for c in range(normal.shape[0]):
        frame_of(normal[c, 0], normal[c, 1], normal[c, 2], frames[c])


@njit(cache=True)
def _same(points, i, j):
    return points[i, 0] == points[j, 0] and points[i, 1] == points[j, 1] \
        and points[i, 2] == points[j, 2]


@njit(cache=True, parallel=True)
def reduce_many(points, offsets, costs, max_points, max_bytes, tol2, method,
                keep, kept, normal, extent2, finite, spread, hausdorff, area_before, area_after,
                status):
    """Reduce many closed planar contours at once (one thread per contour).

    Parameters
    ----------
    points : float64 (N, 3)
        Every contour's points, CSR order.
    offsets : intp (C + 1,)
    costs : int64 (N,) or (0,)
        Encoded bytes of each point including its separator; empty: no byte budget.
    max_points : int64 (C,)
        Point budget of each contour.
    max_bytes : int64
        Largest encoded length of one contour.
    tol2 : float64
        Squared tolerance, or negative for none.
    method : int
        ``METHOD_VW`` or ``METHOD_RDP``.
    keep : bool (N,), out
    kept : int64 (C,), out
        Points kept per contour.
    normal : float64 (C, 3), out
        Newell normal (length twice the area, relative to the first point).
    extent2 : float64 (C,), out
        Largest squared distance of a point from the first point.
    finite : bool (C,), out
        False when a coordinate is NaN or infinite (the contour is left alone).
    spread : float64 (C,), out
        Largest minus smallest offset of the points along the normal (mm).
    hausdorff, area_before, area_after : float64 (C,), out
        Largest distance (mm) and shoelace areas (mm2).
    status : int8 (C,), out
    """
    has_costs = costs.shape[0] > 0
    for c in prange(offsets.shape[0] - 1):
        s = offsets[c]
        e = offsets[c + 1]
        n = e - s
        # Pass 1: finiteness, Newell normal, extent, encoded size.
        ox = points[s, 0]
        oy = points[s, 1]
        oz = points[s, 2]
        nx = 0.0
        ny = 0.0
        nz = 0.0
        far = 0.0
        poison = 0.0  # NaN once any coordinate is NaN or infinite
        total = 0
        px = points[s, 0] - ox
        py = points[s, 1] - oy
        pz = points[s, 2] - oz
        for i in range(s, e):
            j = i + 1 if i + 1 < e else s
            qx = points[j, 0] - ox
            qy = points[j, 1] - oy
            qz = points[j, 2] - oz
            poison += 0.0 * (qx + qy + qz)
            nx += (py - qy) * (pz + qz)
            ny += (pz - qz) * (px + qx)
            nz += (px - qx) * (py + qy)
            far = max(far, px * px + py * py + pz * pz)
            if has_costs:
                total += costs[i]
            px = qx
            py = qy
            pz = qz
        finite[c] = poison == 0.0
        normal[c, 0] = nx
        normal[c, 1] = ny
        normal[c, 2] = nz
        extent2[c] = far
        hausdorff[c] = 0.0
        kept[c] = n
        if not finite[c]:
            for i in range(s, e):
                keep[i] = True
            status[c] = DEGENERATE
            spread[c] = 0.0
            area_before[c] = 0.0
            area_after[c] = 0.0
            continue
        f = np.empty((3, 3))
        frame_of(nx, ny, nz, f)
        # Pass 2: project on the plane, drop consecutive duplicates, measure flatness.
        x = np.empty(n)
        y = np.empty(n)
        cost = np.zeros(n, np.int64)
        orig = np.empty(n, np.intp)
        lo = np.inf
        hi = -np.inf
        m = 0
        for i in range(s, e):
            px = points[i, 0]
            py = points[i, 1]
            pz = points[i, 2]
            h = px * f[2, 0] + py * f[2, 1] + pz * f[2, 2]
            lo = min(lo, h)
            hi = max(hi, h)
            if i > s and _same(points, i, i - 1):
                continue
            x[m] = px * f[0, 0] + py * f[0, 1] + pz * f[0, 2]
            y[m] = px * f[1, 0] + py * f[1, 1] + pz * f[1, 2]
            if has_costs:
                cost[m] = costs[i]
            orig[m] = i - s
            m += 1
        while m > 1 and _same(points, s + orig[m - 1], s):
            m -= 1  # the first point repeated at the end
        if m < n:
            x = x[:m].copy()
            y = y[:m].copy()
            cost = cost[:m].copy()
            orig = orig[:m].copy()
        spread[c] = hi - lo
        kk = np.ones(m, np.bool_)
        area_before[c] = area_kept(x, y, kk)
        area_after[c] = area_before[c]
        if (n <= max_points[c] and total - 1 <= max_bytes and tol2 < 0.0) or m < 3:
            for i in range(s, e):
                keep[i] = True
            status[c] = UNCHANGED if m >= 3 else DEGENERATE
            continue
        span_dev = np.empty(m if method == METHOD_RDP else 0)
        status[c] = _reduce_one(x, y, cost, max_points[c], max_bytes, tol2, method, kk,
                                span_dev)
        for i in range(s, e):
            keep[i] = False
        kept[c] = 0
        for j in range(m):
            if kk[j]:
                keep[s + orig[j]] = True
                kept[c] += 1
        if method == METHOD_RDP and status[c] == REDUCED:
            # In-plane distances are at most the 3-D extent: |p - a|^2 + |b - a|^2
            # <= 8 * extent2, doubled for the projection's rounding.
            hausdorff[c] = np.sqrt(hausdorff2_spans(x, y, kk, span_dev,
                                                    16.0 * _BOUND_SLACK * far))
        else:
            hausdorff[c] = np.sqrt(hausdorff2_kept(x, y, kk))
        area_after[c] = area_kept(x, y, kk)


@njit(cache=True, parallel=True)
def gather_kept(points, offsets, keep, kept_offsets, out):
    """Copy the kept points of each contour to ``out[kept_offsets[c]:...]``."""
    for c in prange(offsets.shape[0] - 1):
        j = kept_offsets[c]
        for i in range(offsets[c], offsets[c + 1]):
            if keep[i]:
                out[j, 0] = points[i, 0]
                out[j, 1] = points[i, 1]
                out[j, 2] = points[i, 2]
                j += 1


@njit(cache=True, parallel=True)
def contour_planes(points, offsets, normal, centroid, deviation):
    """Newell normal (length = twice the area), centroid and largest
    out-of-plane distance of each contour (0 normal: degenerate)."""
    for c in prange(offsets.shape[0] - 1):
        s = offsets[c]
        e = offsets[c + 1]
        n = e - s
        cx = 0.0
        cy = 0.0
        cz = 0.0
        for i in range(s, e):
            cx += points[i, 0]
            cy += points[i, 1]
            cz += points[i, 2]
        cx /= n
        cy /= n
        cz /= n
        nx = 0.0
        ny = 0.0
        nz = 0.0
        for i in range(s, e):
            j = i + 1 if i + 1 < e else s
            px = points[i, 0] - cx
            py = points[i, 1] - cy
            pz = points[i, 2] - cz
            qx = points[j, 0] - cx
            qy = points[j, 1] - cy
            qz = points[j, 2] - cz
            nx += (py - qy) * (pz + qz)
            ny += (pz - qz) * (px + qx)
            nz += (px - qx) * (py + qy)
        normal[c, 0] = nx
        normal[c, 1] = ny
        normal[c, 2] = nz
        centroid[c, 0] = cx
        centroid[c, 1] = cy
        centroid[c, 2] = cz
        length = np.sqrt(nx * nx + ny * ny + nz * nz)
        worst = 0.0
        if length > 0.0:
            for i in range(s, e):
                d = abs((points[i, 0] - cx) * nx + (points[i, 1] - cy) * ny
                        + (points[i, 2] - cz) * nz) / length
                if d > worst:
                    worst = d
        deviation[c] = worst


# ------------------------------------------------------ decimal notation
@njit(cache=True, inline="always")
def _digits(k):
    """Number of decimal digits of the non-negative integer k (1 for 0)."""
    d = 1
    p = 10
    while k >= p and d < 19:
        d += 1
        p *= 10
    return d


@njit(cache=True, parallel=True)
def shortest_decimals(values, tolerance, max_decimals, quantized, nchars):
    """For each value v, the decimal with the fewest fraction digits d (0 to
    ``max_decimals``) within ``tolerance`` of it: its value and its length in
    characters (sign, digits and point; no exponent).

    The candidate with ``d`` digits is ``k = rint(v * 10**d)``, accepted when
    ``|k - v * 10**d| <= tolerance * 10**d``; its value ``k / 10**d`` (two
    exact integers divided) is the float the decimal string reads back as.
    """
    scale = np.empty(max_decimals + 1)
    for d in range(max_decimals + 1):
        scale[d] = 10.0**d
    for i in prange(values.shape[0]):
        v = values[i]
        chosen = max_decimals
        k = np.rint(v * scale[max_decimals])
        for d in range(max_decimals):
            sv = v * scale[d]
            kd = np.rint(sv)
            if abs(kd - sv) <= tolerance * scale[d]:
                chosen = d
                k = kd
                break
        if k == 0.0:
            quantized[i] = 0.0
            nchars[i] = 1
            continue
        quantized[i] = k / scale[chosen]
        digits = _digits(np.int64(abs(k)))
        length = digits if chosen == 0 else max(digits, chosen + 1) + 1
        if k < 0.0:
            length += 1
        nchars[i] = length


# --------------------------------------------------------- rasterising
@njit(cache=True, parallel=True)
def rasterize_slices(ij, poly_offsets, slice_polys, slices, nj, ni, samples, out):
    """Even-odd fill of polygons, slice by slice (one thread per slice).

    Parameters
    ----------
    ij : float64 (N, 2)
        Polygon vertices as fractional (i, j) indices (voxel centres at integers).
    poly_offsets : intp (P + 1,)
        Polygon p is ``ij[poly_offsets[p]:poly_offsets[p + 1]]`` (closed implicitly).
    slice_polys : intp (S + 1,)
        Polygons of the s-th listed slice: ``slice_polys[s]`` to ``slice_polys[s + 1]``.
    slices : intp (S,)
        Output slice index k of each listed slice.
    nj, ni : int
    samples : int
        Sample points per voxel along i and along j (1: the voxel centre).
    out : float32 (nk, nj, ni), out
        Fraction of each voxel's samples inside (rows of listed slices are overwritten).

    Notes
    -----
    Sample ``(a, b)`` of voxel ``(i, j)`` is at ``(i + (a + 0.5) / samples - 0.5,
    j + (b + 0.5) / samples - 0.5)``.  An edge counts for a sample row ``y``
    when ``y`` lies in ``[min(y0, y1), max(y0, y1))``; a sample at ``X`` is
    inside when an odd number of crossings lie at or left of ``X``.
    """
    inv = 1.0 / (samples * samples)
    for t in prange(slices.shape[0]):
        k = slices[t]
        p0 = slice_polys[t]
        p1 = slice_polys[t + 1]
        nedges = poly_offsets[p1] - poly_offsets[p0]
        xs = np.empty(nedges)
        counts = np.zeros(ni * samples, np.int32)
        for j in range(nj):
            for q in range(ni):
                out[k, j, q] = 0.0
            for b in range(samples):
                yy = j + (b + 0.5) / samples - 0.5
                nx = 0
                for p in range(p0, p1):
                    e0 = poly_offsets[p]
                    e1 = poly_offsets[p + 1]
                    for e in range(e0, e1):
                        f = e + 1 if e + 1 < e1 else e0
                        y0 = ij[e, 1]
                        y1 = ij[f, 1]
                        if (y0 <= yy < y1) or (y1 <= yy < y0):
                            x0 = ij[e, 0]
                            xc = x0 + (yy - y0) * (ij[f, 0] - x0) / (y1 - y0)
                            # insertion sort: rows cross few edges
                            r = nx
                            while r > 0 and xs[r - 1] > xc:
                                xs[r] = xs[r - 1]
                                r -= 1
                            xs[r] = xc
                            nx += 1
                for r in range(0, nx - 1, 2):
                    # samples X = (q + 0.5) / samples - 0.5 with xs[r] <= X < xs[r + 1]
                    qa = int(np.ceil((xs[r] + 0.5) * samples - 0.5))
                    qb = int(np.ceil((xs[r + 1] + 0.5) * samples - 0.5))
                    qa = max(qa, 0)
                    qb = min(qb, ni * samples)
                    for q in range(qa, qb):
                        counts[q] += 1
            for q in range(ni * samples):
                if counts[q]:
                    out[k, j, q // samples] += counts[q] * inv
                    counts[q] = 0
