"""Numba kernels behind :mod:`rtforge.core.contours` and :mod:`rtforge.core.masks`.

Only arrays and scalars cross this boundary.  Contours are passed many at a
time in CSR form: ``points`` of shape (N, 3) holds every contour's points one
after the other and ``offsets`` of shape (C + 1,) says where contour ``c``
starts and ends (``points[offsets[c]:offsets[c + 1]]``); or, for
:func:`reduce_list`, where they already are: one address and one size per
contour (the caller guarantees C-contiguous float64 arrays, kept alive for
the call), so that nothing is copied before the reduction.  Parallel
kernels give each thread whole contours (or whole mask slices), so no two
threads ever write one cell.

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
entries and ties go to the lower index.  ``fastmath`` is not used anywhere;
the hot loops that should vectorise are written for it instead (a
branch-free distance, maxima of non-negative floats taken over their bits
as integers).

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
from numba import carray, njit, prange, types
from numba.extending import intrinsic

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

#: Powers of ten, exact in float64 (to 10**22): digit counts by comparison.
_POW10 = np.array([10.0**p for p in range(23)])

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
    found = 0
    # Adjacent segments meet at their shared point; they touch elsewhere only
    # when the second turns straight back along the first.
    for s in range(k):
        a = comp[s - 1] if s > 0 else comp[k - 1]
        b = comp[s]
        d = comp[s + 1] if s + 1 < k else comp[0]
        if folds(x[a], y[a], x[b], y[b], x[d], y[d]):
            found += 1
            if not all_pairs:
                return found
            flags[where[s - 1] if s > 0 else where[k - 1]] = True
            flags[where[s]] = True
    # Other pairs: a sweep along x over the segments' bounding boxes, kept in
    # sweep order so that the inner loop reads memory in sequence.
    xmin = np.empty(k)
    for s in range(k):
        a = comp[s]
        b = comp[s + 1] if s + 1 < k else comp[0]
        xmin[s] = min(x[a], x[b])
    order = np.argsort(xmin, kind="mergesort")
    x0 = np.empty(k)
    x1 = np.empty(k)
    y0 = np.empty(k)
    y1 = np.empty(k)
    for o in range(k):
        s = order[o]
        a = comp[s]
        b = comp[s + 1] if s + 1 < k else comp[0]
        x0[o] = xmin[s]
        x1[o] = max(x[a], x[b])
        y0[o] = min(y[a], y[b])
        y1[o] = max(y[a], y[b])
    for oi in range(k):
        s = order[oi]
        sxmax = x1[oi]
        symin = y0[oi]
        symax = y1[oi]
        for oj in range(oi + 1, k):
            if x0[oj] > sxmax:
                break
            t = order[oj]
            dt = t - s
            # apart in y, or adjacent (checked above): one well-predicted branch
            if (y1[oj] < symin) | (y0[oj] > symax) | (dt == 1) | (dt == -1) | (dt == k - 1) \
                    | (dt == 1 - k):
                continue
            a = comp[s]
            b = comp[s + 1] if s + 1 < k else comp[0]
            c = comp[t]
            d = comp[t + 1] if t + 1 < k else comp[0]
            if segments_touch(x[a], y[a], x[b], y[b], x[c], y[c], x[d], y[d]):
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
    """Remove the smallest key; returns (key, new size).

    Floyd's variant: the hole left at the root moves down to a leaf along
    the smaller children, without comparing with the key that fills it
    (the last one, which belongs near the leaves), and that key then sifts
    up from there: fewer unpredictable branches than a plain sift-down.
    """
    key = hk[0]
    pos[key & mask] = -1
    size -= 1
    if size > 0:
        last = hk[size]
        i = 0
        while True:
            c = 4 * i + 1
            if c + 3 < size:
                k0 = hk[c]
                k1 = hk[c + 1]
                k2 = hk[c + 2]
                k3 = hk[c + 3]
                m01 = c if k0 < k1 else c + 1
                k01 = k0 if k0 < k1 else k1
                m23 = c + 2 if k2 < k3 else c + 3
                k23 = k2 if k2 < k3 else k3
                m = m01 if k01 < k23 else m23
                mk = k01 if k01 < k23 else k23
            elif c < size:
                m = c
                mk = hk[c]
                for d in range(c + 1, size):
                    if hk[d] < mk:
                        mk = hk[d]
                        m = d
            else:
                break
            hk[i] = mk
            pos[mk & mask] = i
            i = m
        hk[i] = last
        _sift_up(hk, pos, mask, i)
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


@njit(cache=True, inline="always")
def _scaled_dist2_select(px, py, ax, ay, dx, dy, ll):
    """:func:`_scaled_dist2` computed without branches (every case, then a
    select), so that loops over it vectorise; the same value bit for bit."""
    wx = px - ax
    wy = py - ay
    dot = wx * dx + wy * dy
    cross = wx * dy - wy * dx
    ex = wx - dx
    ey = wy - dy
    d = cross * cross
    if dot <= 0.0:
        d = (wx * wx + wy * wy) * ll
    if dot >= ll:
        d = (ex * ex + ey * ey) * ll
    return d


@njit(cache=True)
def _span_max2(x, y, a, b, n, scratch):
    """:func:`_span_dev2` of a span that does not wrap (``a < b <= n``), with
    no early stop: the same (dev2, index of the first maximum or -1).

    ``scratch`` (float64, at least ``b - a`` long) receives the scaled
    distances; they are non-negative, so their IEEE bits order as they do
    and the maximum is taken over the bits as integers (a reduction that
    vectorises without reordering any float arithmetic).
    """
    bb = b % n
    ax = x[a]
    ay = y[a]
    dx = x[bb] - ax
    dy = y[bb] - ay
    ll = dx * dx + dy * dy
    k = b - a - 1
    if k <= 0:
        return -1.0, -1
    bits = scratch.view(np.int64)
    top = np.int64(-1)
    if ll > 0.0:
        xs = x[a + 1:b]
        ys = y[a + 1:b]
        for i in range(k):
            scratch[i] = _scaled_dist2_select(xs[i], ys[i], ax, ay, dx, dy, ll)
            v = bits[i]
            top = v if v > top else top
    else:
        for i in range(k):
            scratch[i] = (x[a + 1 + i] - ax) ** 2 + (y[a + 1 + i] - ay) ** 2
            v = bits[i]
            top = v if v > top else top
    arg = 0
    while arg + 8 <= k and not (
            (bits[arg] == top) | (bits[arg + 1] == top) | (bits[arg + 2] == top)
            | (bits[arg + 3] == top) | (bits[arg + 4] == top) | (bits[arg + 5] == top)
            | (bits[arg + 6] == top) | (bits[arg + 7] == top)):
        arg += 8
    while bits[arg] != top:
        arg += 1
    best = scratch[arg]
    return (best / ll if ll > 0.0 else best), a + 1 + arg


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
    # The point farthest from point 0 (the first of equals), through the
    # non-negative distances' bits as in :func:`_span_max2`.
    dist = np.empty(n)
    bits = dist.view(np.int64)
    for i in range(1, n):
        dist[i] = (x[i] - x[0]) ** 2 + (y[i] - y[0]) ** 2
    top = np.int64(0)
    for i in range(1, n):
        v = bits[i]
        top = v if v > top else top
    if top == 0:
        return 1  # every point coincides with point 0
    far = 1
    while bits[far] != top:
        far += 1
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
    pos = np.empty(n, np.intp)  # written by the heap, never read: no key is updated
    size = 0
    for a, b in ((0, far), (far, n)):
        if b - a >= 2:
            dev, arg = _span_max2(x, y, a, b, n, dist)
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
                d, arg = _span_max2(x, y, s, e, n, dist)
                span_end[s] = e
                span_arg[s] = arg
                span_dev[s] = d
                key = (((top - _rank_key(d, 0, 0, scratch, bits)) >> shift) << shift) | s
                size = _heap_push(hk, pos, mask, size, key)
    return count


# ------------------------------------------------- repair and constrained trim
@njit(cache=True)
def _kept_indices(keep):
    """Increasing indices of the True entries of ``keep`` (branch-free scans)."""
    n = keep.shape[0]
    m = 0
    for i in range(n):
        m += keep[i]
    idx = np.empty(m + 1, np.intp)
    j = 0
    for i in range(n):
        idx[j] = i
        j += keep[i]
    return idx[:m]


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
    return _hausdorff2_idx(x, y, _kept_indices(keep))


@njit(cache=True)
def _hausdorff2_idx(x, y, idx):
    """:func:`hausdorff2_kept` with the kept points as increasing indices."""
    n = x.shape[0]
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
    :func:`seg_dist2` of its points (rounding).  The point farthest from its
    segment in the span of largest deviation is measured first; every span
    is then measured only when its deviation plus ``slack`` exceeds the
    running maximum (and in it, only the points farther than that from
    their segment).
    """
    return _hausdorff2_spans_idx(x, y, _kept_indices(keep), span_dev, slack)


@njit(cache=True)
def _hausdorff2_spans_idx(x, y, idx, span_dev, slack):
    """:func:`hausdorff2_spans` with the kept points as increasing indices."""
    n = x.shape[0]
    m = idx.shape[0]
    top = 0
    for s in range(1, m):
        if span_dev[idx[s]] > span_dev[idx[top]]:
            top = s
    a = idx[top]
    b = idx[top + 1] if top + 1 < m else idx[0] + n
    bb = b % n
    best = -1.0
    seed = -1
    for i in range(a + 1, b):
        j = i if i < n else i - n
        d = seg_dist2(x[j], y[j], x[a], y[a], x[bb], y[bb])
        if d > best:
            best = d
            seed = j
    h = 0.0
    if seed >= 0:
        h = _dist2_to_polygon(x[seed], y[seed], x, y, idx)
    for s in range(m):
        dev = span_dev[idx[s]]
        if dev >= 0.0 and dev + slack > h:
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
    return _area_idx(x, y, _kept_indices(keep))


@njit(cache=True)
def _area_idx(x, y, idx):
    """:func:`area_kept` with the kept points as increasing indices (a fan of
    triangles from the first)."""
    m = idx.shape[0]
    if m < 3:
        return 0.0
    x0 = x[idx[0]]
    y0 = y[idx[0]]
    total = 0.0
    for t in range(1, m - 1):
        p = idx[t]
        i = idx[t + 1]
        total += (x[p] - x0) * (y[i] - y0) - (x[i] - x0) * (y[p] - y0)
    return abs(total) / 2.0


@njit(cache=True)
def _area_all(x, y):
    """:func:`area_kept` with every point kept, in four interleaved partial sums
    (the same fan, summed in another order)."""
    m = x.shape[0]
    if m < 3:
        return 0.0
    x0 = x[0]
    y0 = y[0]
    t0 = 0.0
    t1 = 0.0
    t2 = 0.0
    t3 = 0.0
    p = 1
    while p + 4 < m:
        t0 += (x[p] - x0) * (y[p + 1] - y0) - (x[p + 1] - x0) * (y[p] - y0)
        t1 += (x[p + 1] - x0) * (y[p + 2] - y0) - (x[p + 2] - x0) * (y[p + 1] - y0)
        t2 += (x[p + 2] - x0) * (y[p + 3] - y0) - (x[p + 3] - x0) * (y[p + 2] - y0)
        t3 += (x[p + 3] - x0) * (y[p + 4] - y0) - (x[p + 4] - x0) * (y[p + 3] - y0)
        p += 4
    while p + 1 < m:
        t0 += (x[p] - x0) * (y[p + 1] - y0) - (x[p + 1] - x0) * (y[p] - y0)
        p += 1
    return abs((t0 + t1) + (t2 + t3)) / 2.0


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
def _reduce_one(x, y, cost, max_points, max_bytes, tol2, method, slack):
    """Reduce one deduplicated closed polygon.

    Returns ``(status, idx, h2)``: the status code, the kept positions
    (increasing; all of them when degenerate) and the squared Hausdorff
    distance of the result (:func:`hausdorff2_kept`; from the span
    deviations with ``slack`` as :func:`hausdorff2_spans` takes it when a
    Douglas-Peucker result needed no repair).
    """
    m = x.shape[0]
    keep = np.empty(m, np.bool_)
    span_dev = np.empty(m if method == METHOD_RDP else 0)
    if method == METHOD_RDP:
        count = _rdp_spans(x, y, cost, max_points, max_bytes, tol2, keep, span_dev)
    else:
        count = _vw(x, y, cost, max_points, max_bytes, tol2, keep)
    if count < 3:
        return DEGENERATE, np.arange(m), 0.0
    idx = _kept_indices(keep)
    flags = np.zeros(1, np.bool_)
    if _simple_or_offenders(x, y, idx, idx.shape[0], flags, False) == 0:
        if method == METHOD_RDP:
            return REDUCED, idx, _hausdorff2_spans_idx(x, y, idx, span_dev, slack)
        return REDUCED, idx, _hausdorff2_idx(x, y, idx)
    if not is_simple_polygon(x, y):
        return INPUT_NOT_SIMPLE, idx, _hausdorff2_idx(x, y, idx)
    _repair(x, y, keep)
    status = REPAIRED if _trim(x, y, cost, keep, max_points, max_bytes) >= 0 else STUCK
    idx = _kept_indices(keep)
    return status, idx, _hausdorff2_idx(x, y, idx)


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
def _reduce_contour(pts, costs, max_points, max_bytes, tol2, method, c, normal, extent2, finite,
                    spread, hausdorff, area_before, area_after, status):
    """Reduce the closed planar contour ``pts`` (float64 (n, 3)) and fill row
    ``c`` of the outputs (see :func:`reduce_many`).

    Returns ``(whole, idx)``: ``whole`` when every point is kept (the
    contour is within its budgets, degenerate or not finite), else the kept
    points' indices in ``pts``, increasing.
    """
    n = pts.shape[0]
    has_costs = costs.shape[0] > 0
    # One pass: finiteness, Newell normal, extent, encoded size, consecutive
    # duplicates dropped, and the projection on the axial frame (x, y), kept
    # when that is the plane's frame (otherwise a second pass projects again).
    x = np.empty(n)
    y = np.empty(n)
    cost = np.empty(n if has_costs else 0, np.int64)
    orig = np.empty(n, np.intp)
    ox = pts[0, 0]
    oy = pts[0, 1]
    oz = pts[0, 2]
    nx = 0.0
    ny = 0.0
    nz = 0.0
    far = 0.0
    poison = 0.0  # NaN once any coordinate is NaN or infinite
    total = 0
    px = 0.0
    py = 0.0
    pz = 0.0
    lo = np.inf
    hi = -np.inf
    lx = np.nan
    ly = np.nan
    lz = np.nan
    m = 0
    for i in range(n):
        j = i + 1 if i + 1 < n else 0
        qx = pts[j, 0] - ox
        qy = pts[j, 1] - oy
        qz = pts[j, 2] - oz
        poison += 0.0 * (qx + qy + qz)
        nx += (py - qy) * (pz + qz)
        ny += (pz - qz) * (px + qx)
        nz += (px - qx) * (py + qy)
        far = max(far, px * px + py * py + pz * pz)
        px = qx
        py = qy
        pz = qz
        rx = pts[i, 0]
        ry = pts[i, 1]
        rz = pts[i, 2]
        lo = min(lo, rz)
        hi = max(hi, rz)
        if has_costs:
            total += costs[i]
        if rx == lx and ry == ly and rz == lz:
            continue
        lx = rx
        ly = ry
        lz = rz
        x[m] = rx
        y[m] = ry
        if has_costs:
            cost[m] = costs[i]
        orig[m] = i
        m += 1
    finite[c] = poison == 0.0
    normal[c, 0] = nx
    normal[c, 1] = ny
    normal[c, 2] = nz
    extent2[c] = far
    hausdorff[c] = 0.0
    no_idx = np.empty(0, np.intp)
    if not finite[c]:
        status[c] = DEGENERATE
        spread[c] = 0.0
        area_before[c] = 0.0
        area_after[c] = 0.0
        return True, no_idx
    f = np.empty((3, 3))
    frame_of(nx, ny, nz, f)
    if not (f[0, 0] == 1.0 and f[0, 1] == 0.0 and f[0, 2] == 0.0
            and f[1, 0] == 0.0 and f[1, 1] == 1.0 and f[1, 2] == 0.0):
        # Not an axial plane: project the kept points on the plane's frame.
        lo = np.inf
        hi = -np.inf
        for i in range(n):
            h = pts[i, 0] * f[2, 0] + pts[i, 1] * f[2, 1] + pts[i, 2] * f[2, 2]
            lo = min(lo, h)
            hi = max(hi, h)
        for t in range(m):
            i = orig[t]
            x[t] = pts[i, 0] * f[0, 0] + pts[i, 1] * f[0, 1] + pts[i, 2] * f[0, 2]
            y[t] = pts[i, 0] * f[1, 0] + pts[i, 1] * f[1, 1] + pts[i, 2] * f[1, 2]
    while m > 1 and pts[orig[m - 1], 0] == ox and pts[orig[m - 1], 1] == oy \
            and pts[orig[m - 1], 2] == oz:
        m -= 1  # the first point repeated at the end
    if m < n:
        x = x[:m].copy()
        y = y[:m].copy()
        orig = orig[:m].copy()
        if has_costs:
            cost = cost[:m].copy()
    if not has_costs:
        cost = np.zeros(m, np.int64)
    spread[c] = hi - lo
    area_before[c] = _area_all(x, y)
    area_after[c] = area_before[c]
    if (n <= max_points and total - 1 <= max_bytes and tol2 < 0.0) or m < 3:
        status[c] = UNCHANGED if m >= 3 else DEGENERATE
        return True, no_idx
    # In-plane distances are at most the 3-D extent: |p - a|^2 + |b - a|^2
    # <= 8 * extent2, doubled for the projection's rounding.
    code, idx, h2 = _reduce_one(x, y, cost, max_points, max_bytes, tol2, method,
                                16.0 * _BOUND_SLACK * far)
    status[c] = code
    hausdorff[c] = np.sqrt(h2)
    area_after[c] = _area_idx(x, y, idx)
    for t in range(idx.shape[0]):
        idx[t] = orig[idx[t]]
    return False, idx


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
        whole, idx = _reduce_contour(points[s:e], costs[s:e] if has_costs else costs[:0],
                                     max_points[c], max_bytes, tol2, method, c, normal, extent2,
                                     finite, spread, hausdorff, area_before, area_after, status)
        if whole:
            keep[s:e] = True
            kept[c] = e - s
        else:
            keep[s:e] = False
            for t in range(idx.shape[0]):
                keep[s + idx[t]] = True
            kept[c] = idx.shape[0]


@intrinsic
def _float64_pointer(typingctx, address):
    """The integer ``address`` as a pointer to float64 (for :func:`numba.carray`)."""
    if not isinstance(address, types.Integer):
        return None

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], context.get_value_type(signature.return_type))

    return types.CPointer(types.float64)(address), codegen


@njit(cache=True, parallel=True)
def reduce_list(addresses, sizes, costs, cost_offsets, max_points, max_bytes, tol2, method,
                out_offsets, out_index, out_points, kept, normal, extent2, finite, spread,
                hausdorff, area_before, area_after, status):
    """:func:`reduce_many` of contours that stay where they are in memory,
    writing the kept points rather than a mask.

    Parameters
    ----------
    addresses : intp (C,)
        Address of each contour's float64 (n_c, 3) C-contiguous points; the
        caller keeps the arrays alive during the call.
    sizes : intp (C,)
        n_c.
    costs : int64 (sum n_c,) or (0,)
        As :func:`reduce_many`, CSR order by ``cost_offsets`` (C + 1,).
    out_offsets : intp (C + 1,)
        Room for contour c's kept points: ``out_offsets[c]`` to ``out_offsets[c + 1]``.
    out_index : intp (out_offsets[-1],), out
        Indices of the kept points in their contour, increasing.
    out_points : float64 (out_offsets[-1], 3), out
        The kept points.
    kept : int64 (C,), out
        Points kept per contour; where that exceeds the room, nothing is written.

    Other parameters are those of :func:`reduce_many`.
    """
    has_costs = costs.shape[0] > 0
    for c in prange(sizes.shape[0]):
        n = sizes[c]
        pts = carray(_float64_pointer(addresses[c]), (n, 3))
        cst = costs[cost_offsets[c]:cost_offsets[c + 1]] if has_costs else costs[:0]
        whole, idx = _reduce_contour(pts, cst, max_points[c], max_bytes, tol2, method, c, normal,
                                     extent2, finite, spread, hausdorff, area_before, area_after,
                                     status)
        count = n if whole else idx.shape[0]
        kept[c] = count
        o = out_offsets[c]
        if count > out_offsets[c + 1] - o:
            continue
        for t in range(count):
            i = t if whole else idx[t]
            out_index[o + t] = i
            out_points[o + t, 0] = pts[i, 0]
            out_points[o + t, 1] = pts[i, 1]
            out_points[o + t, 2] = pts[i, 2]


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
    # Written without branches (every d tried, the fewest digits kept; digits
    # counted by comparisons with exact powers of ten) so that it vectorises.
    for i in prange(values.shape[0]):
        v = values[i]
        chosen = max_decimals
        k = np.rint(v * scale[max_decimals])
        for d in range(max_decimals - 1, -1, -1):
            sv = v * scale[d]
            kd = np.rint(sv)
            ok = abs(kd - sv) <= tolerance * scale[d]
            chosen = d if ok else chosen
            k = kd if ok else k
        ak = abs(k)
        digits = 1
        for p in range(1, 19):
            digits += ak >= _POW10[p]
        length = digits if chosen == 0 else max(digits, chosen + 1) + 1
        length += k < 0.0
        quantized[i] = 0.0 if k == 0.0 else k / scale[chosen]
        nchars[i] = 1 if k == 0.0 else length


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
