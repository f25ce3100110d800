"""Contour reduction: kernels against plain-Python references, guarantees, metrics."""

from __future__ import annotations

import heapq
import logging
import math
from fractions import Fraction

import numba
import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from rtforge.core import _contours_kernels as K
from rtforge.core.contours import (
    Contour,
    ContourGeometricType,
    ReductionStatus,
    RTROIInterpretedType,
    Structure,
    contour_frames,
    hausdorff_distance,
    is_simple,
    pack_contours,
    polygon_area,
    reduce_contours,
    reduce_packed,
    shortest_decimals,
    structure_volume,
)
from rtforge.errors import GeometryError, InvalidInputError

NO_LIMIT = np.iinfo(np.int64).max


# ------------------------------------------------------------ references
def _rank_key(value: float, index: int, shift: int) -> int:
    bits = int(np.array([value], dtype=np.float64).view(np.int64)[0])
    return ((bits >> shift) << shift) | index


def _key_shift(n: int) -> int:
    shift = 1
    while (1 << shift) < n:
        shift += 1
    return shift


def _tri2(x, y, a, b, c):
    return abs((x[b] - x[a]) * (y[c] - y[a]) - (x[c] - x[a]) * (y[b] - y[a]))


def _scaled(px, py, ax, ay, dx, dy, ll):
    wx, wy = px - ax, py - ay
    dot = wx * dx + wy * dy
    if dot <= 0.0:
        return (wx * wx + wy * wy) * ll
    if dot >= ll:
        ex, ey = wx - dx, wy - dy
        return (ex * ex + ey * ey) * ll
    cross = wx * dy - wy * dx
    return cross * cross


def _span_dev2(x, y, n, a, b):
    """Full scan (no early exit): (dev2, first argmax)."""
    bb = b % n
    ax, ay = x[a], y[a]
    dx, dy = x[bb] - ax, y[bb] - ay
    ll = dx * dx + dy * dy
    scale = ll if ll > 0 else 1.0
    end = b if b > a else b + n
    best, arg = -1.0, -1
    for i in range(a + 1, end):
        j = i % n
        d = _scaled(x[j], y[j], ax, ay, dx, dy, ll) if ll > 0 else (x[j] - ax) ** 2 + (y[j] - ay) ** 2
        if d > best:
            best, arg = d, j
    return best / scale, arg


def ref_vw(x, y, cost, max_points, max_bytes, tol2):
    """Plain-Python Visvalingam-Whyatt with the kernel's rules (lazy-deletion heapq)."""
    x, y = [float(v) for v in x], [float(v) for v in y]
    n = len(x)
    shift = _key_shift(n)
    mask = (1 << shift) - 1
    prv = [(i - 1) % n for i in range(n)]
    nxt = [(i + 1) % n for i in range(n)]
    keep = [True] * n
    count, nbytes = n, int(sum(cost))

    def key(i):
        return _rank_key(_tri2(x, y, prv[i], i, nxt[i]), i, shift)

    def within():
        return count <= max_points and nbytes - 1 <= max_bytes

    if tol2 >= 0:
        current = {i: key(i) for i in range(n)}
        heap = list(current.values())
        heapq.heapify(heap)
        while heap and count > 3:
            k = heapq.heappop(heap)
            v = k & mask
            if current.get(v) != k:
                continue
            del current[v]
            a, b = prv[v], nxt[v]
            if _span_dev2(x, y, n, a, b)[0] > tol2:
                continue
            keep[v] = False
            count -= 1
            nbytes -= cost[v]
            nxt[a], prv[b] = b, a
            for w in (a, b):
                current[w] = key(w)
                heapq.heappush(heap, current[w])
    if within() or count <= 3:
        return np.array(keep)
    current = {i: key(i) for i in range(n) if keep[i]}
    heap = list(current.values())
    heapq.heapify(heap)
    while count > 3 and not within():
        k = heapq.heappop(heap)
        v = k & mask
        if current.get(v) != k:
            continue
        del current[v]
        a, b = prv[v], nxt[v]
        keep[v] = False
        count -= 1
        nbytes -= cost[v]
        nxt[a], prv[b] = b, a
        for w in (a, b):
            current[w] = key(w)
            heapq.heappush(heap, current[w])
    return np.array(keep)


def ref_rdp(x, y, cost, max_points, max_bytes, tol2):
    """Plain-Python Douglas-Peucker by insertion with the kernel's rules."""
    x, y = [float(v) for v in x], [float(v) for v in y]
    n = len(x)
    keep = [False] * n
    far, best = -1, 0.0
    for i in range(1, n):
        d = (x[i] - x[0]) ** 2 + (y[i] - y[0]) ** 2
        if d > best:
            best, far = d, i
    keep[0] = True
    if far < 0:
        return np.array(keep)
    keep[far] = True
    count, nbytes = 2, cost[0] + cost[far]
    shift = _key_shift(n)
    mask = (1 << shift) - 1
    top = _rank_key(math.inf, 0, 0)
    spans, heap = {}, []

    def push(a, b):
        if b - a >= 2:
            dev, arg = _span_dev2(x, y, n, a, b)
            spans[a] = (b, arg, dev)
            heapq.heappush(heap, (((top - _rank_key(dev, 0, 0)) >> shift) << shift) | a)

    push(0, far)
    push(far, n)
    while heap:
        a = heap[0] & mask
        b, p, dev = spans[a]
        if dev <= 0.0 or (tol2 >= 0 and dev <= tol2 and count >= 3):
            break
        if count >= 3 and not (count + 1 <= max_points and nbytes + cost[p] - 1 <= max_bytes):
            break
        heapq.heappop(heap)
        keep[p] = True
        count += 1
        nbytes += cost[p]
        push(a, p)
        push(p, b)
    return np.array(keep)


def ref_recursive_dp(x, y, tol):
    """Textbook recursive Douglas-Peucker of the closed ring split at point 0
    and the point farthest from it, with the kernel's distance metric."""
    n = len(x)
    keep = np.zeros(n, dtype=bool)
    far = int(np.argmax((np.asarray(x) - x[0]) ** 2 + (np.asarray(y) - y[0]) ** 2))
    keep[[0, far]] = True

    def split(a, b):
        if b - a < 2:
            return
        dev, arg = _span_dev2(list(x), list(y), n, a, b)
        if dev > tol * tol:
            keep[arg] = True
            split(a, arg)
            split(arg, b)

    split(0, far)
    split(far, n)
    return keep


def seg_dist(p, a, b):
    p, a, b = (np.asarray(v, dtype=np.float64) for v in (p, a, b))
    d = b - a
    ll = float(d @ d)
    t = 0.0 if ll == 0 else min(1.0, max(0.0, float((p - a) @ d) / ll))
    return float(np.linalg.norm(p - (a + t * d)))


def brute_hausdorff(original, reduced):
    """Largest distance from an original point to the closed reduced polygon (3-D)."""
    m = len(reduced)
    return max(min(seg_dist(p, reduced[s], reduced[(s + 1) % m]) for s in range(m))
               for p in original)


def shoelace(points):
    x, y = points[:, 0], points[:, 1]
    return abs(float(np.sum(x * np.roll(y, -1) - np.roll(x, -1) * y))) / 2


def exact_simple(points2d) -> bool:
    """Exact simplicity test (rational arithmetic), O(m^2)."""
    pts = [(Fraction(float(a)), Fraction(float(b))) for a, b in points2d]
    dedup = []
    for p in pts:
        if not dedup or p != dedup[-1]:
            dedup.append(p)
    while len(dedup) > 1 and dedup[-1] == dedup[0]:
        dedup.pop()
    m = len(dedup)
    if m < 3:
        return False

    def orient(a, b, c):
        v = (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])
        return (v > 0) - (v < 0)

    def on(a, b, p):
        return min(a[0], b[0]) <= p[0] <= max(a[0], b[0]) and \
            min(a[1], b[1]) <= p[1] <= max(a[1], b[1])

    segs = [(dedup[s], dedup[(s + 1) % m]) for s in range(m)]
    for s in range(m):
        for t in range(s + 1, m):
            (a, b), (c, d) = segs[s], segs[t]
            if t == s + 1 or (s == 0 and t == m - 1):
                # adjacent: shared vertex; overlap beyond it is a fold
                p, q, r = (a, b, d) if t == s + 1 else (c, a, b)
                if orient(p, q, r) == 0 and ((q[0] - p[0]) * (r[0] - q[0])
                                             + (q[1] - p[1]) * (r[1] - q[1])) < 0:
                    return False
                continue
            o1, o2, o3, o4 = orient(c, d, a), orient(c, d, b), orient(a, b, c), orient(a, b, d)
            if o1 * o2 < 0 and o3 * o4 < 0:
                return False
            if (o1 == 0 and on(c, d, a)) or (o2 == 0 and on(c, d, b)) \
                    or (o3 == 0 and on(a, b, c)) or (o4 == 0 and on(a, b, d)):
                return False
    return True


def star(rng: np.random.Generator, n: int, z: float = 2.5, noise: float = 0.0) -> np.ndarray:
    """A random simple (star-shaped) polygon of n points, axial at z."""
    angles = np.sort(rng.uniform(0, 2 * np.pi, n))
    radius = rng.uniform(5, 60) * (1 + 0.3 * rng.uniform(-1, 1, n))
    radius = radius + rng.normal(0, noise, n) if noise else radius
    return np.stack([radius * np.cos(angles) + 3.0, radius * np.sin(angles) - 7.0,
                     np.full(n, z)], axis=1)


# ------------------------------------------------------------ kernels vs references
@pytest.mark.parametrize("seed", range(12))
def test_vw_kernel_matches_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    pts = star(rng, int(rng.integers(8, 120)))
    x, y = np.ascontiguousarray(pts[:, 0]), np.ascontiguousarray(pts[:, 1])
    cost = rng.integers(6, 52, x.size).astype(np.int64)
    for max_points, max_bytes, tol in ((int(rng.integers(3, x.size)), NO_LIMIT, -1.0),
                                       (x.size, int(cost.sum()) // 2, -1.0),
                                       (x.size, NO_LIMIT, float(rng.uniform(0.1, 3.0)) ** 2),
                                       (5, NO_LIMIT, 0.5 ** 2)):
        keep = np.empty(x.size, dtype=np.bool_)
        count = K._vw(x, y, cost, max_points, max_bytes, tol, keep)
        expected = ref_vw(x, y, cost, max_points, max_bytes, tol)
        np.testing.assert_array_equal(keep, expected)
        assert count == int(expected.sum())


@pytest.mark.parametrize("seed", range(12))
def test_rdp_kernel_matches_reference(seed: int) -> None:
    rng = np.random.default_rng(100 + seed)
    pts = star(rng, int(rng.integers(8, 120)))
    x, y = np.ascontiguousarray(pts[:, 0]), np.ascontiguousarray(pts[:, 1])
    cost = rng.integers(6, 52, x.size).astype(np.int64)
    for max_points, max_bytes, tol in ((int(rng.integers(3, x.size)), NO_LIMIT, -1.0),
                                       (x.size, int(cost.sum()) // 2, -1.0),
                                       (x.size, NO_LIMIT, float(rng.uniform(0.1, 3.0)) ** 2)):
        keep = np.empty(x.size, dtype=np.bool_)
        count = K._rdp(x, y, cost, max_points, max_bytes, tol, keep)
        expected = ref_rdp(x, y, cost, max_points, max_bytes, tol)
        np.testing.assert_array_equal(keep, expected)
        assert count == int(expected.sum())


@pytest.mark.parametrize("seed", range(6))
def test_rdp_with_tolerance_is_recursive_douglas_peucker(seed: int) -> None:
    rng = np.random.default_rng(200 + seed)
    pts = star(rng, 150, noise=0.3)
    tol = float(rng.uniform(0.2, 2.0))
    keep = np.empty(150, dtype=np.bool_)
    K._rdp(np.ascontiguousarray(pts[:, 0]), np.ascontiguousarray(pts[:, 1]),
           np.zeros(150, np.int64), NO_LIMIT, NO_LIMIT, tol * tol, keep)
    np.testing.assert_array_equal(keep, ref_recursive_dp(pts[:, 0], pts[:, 1], tol))


@pytest.mark.parametrize("seed", range(8))
def test_hausdorff_and_area_kernels_match_brute_force(seed: int) -> None:
    rng = np.random.default_rng(300 + seed)
    pts = star(rng, 60)
    keep = np.zeros(60, dtype=np.bool_)
    keep[np.sort(rng.choice(60, size=int(rng.integers(3, 60)), replace=False))] = True
    x, y = np.ascontiguousarray(pts[:, 0]), np.ascontiguousarray(pts[:, 1])
    got = math.sqrt(K.hausdorff2_kept(x, y, keep))
    assert got == pytest.approx(brute_hausdorff(pts, pts[keep]), abs=1e-9)
    assert K.area_kept(x, y, keep) == pytest.approx(shoelace(pts[keep]), rel=1e-12)


@pytest.mark.parametrize("seed", range(10))
def test_simplicity_kernel_matches_exact_test(seed: int) -> None:
    rng = np.random.default_rng(400 + seed)
    pts = rng.uniform(-10, 10, (int(rng.integers(3, 12)), 2)) if seed % 2 \
        else star(rng, 30)[:, :2]
    x, y = np.ascontiguousarray(pts[:, 0]), np.ascontiguousarray(pts[:, 1])
    assert bool(K.is_simple_polygon(x, y)) == exact_simple(pts)


def test_predicates_edge_cases() -> None:
    assert K.orient(0.0, 0.0, 1.0, 0.0, 2.0, 0.0) == 0
    assert K.orient(0.0, 0.0, 1.0, 0.0, 1.0, 1.0) == 1
    assert K.segments_touch(0.0, 0.0, 2.0, 0.0, 1.0, 0.0, 1.0, 5.0)  # T junction
    assert K.segments_touch(0.0, 0.0, 2.0, 0.0, 1.0, 0.0, 3.0, 0.0)  # collinear overlap
    assert not K.segments_touch(0.0, 0.0, 1.0, 0.0, 2.0, 0.0, 3.0, 0.0)
    assert K.folds(0.0, 0.0, 2.0, 0.0, 1.0, 0.0)
    assert not K.folds(0.0, 0.0, 1.0, 0.0, 2.0, 0.0)


# ------------------------------------------------------------ the public reducer
def bytes_of(points_bytes: np.ndarray, kept: np.ndarray) -> int:
    return int(points_bytes[kept].sum()) - 1


def test_reduce_contours_guarantees_on_random_polygons() -> None:
    rng = np.random.default_rng(7)
    contours = [star(rng, int(n), z=float(k)) for k, n in enumerate(rng.integers(10, 300, 12))]
    costs = [rng.integers(6, 52, len(c)) for c in contours]
    for method in ("vw", "rdp"):
        result = reduce_contours(contours, max_points=9, max_bytes=600, point_bytes=costs,
                                 method=method)
        rep = result.report
        assert rep.points_before.dtype == np.int64 and rep.hausdorff_mm.dtype == np.float64
        for c, (orig, kept, red) in enumerate(zip(contours, result.kept, result.contours,
                                                  strict=True)):
            assert 3 <= kept.size <= 9 and np.all(np.diff(kept) > 0)
            assert bytes_of(costs[c], kept) <= 600
            np.testing.assert_array_equal(red, orig[kept])
            assert exact_simple(red[:, :2])
            assert rep.hausdorff_mm[c] == pytest.approx(brute_hausdorff(orig, red), abs=1e-9)
            assert rep.area_after_mm2[c] == pytest.approx(shoelace(red), rel=1e-9)
            assert rep.area_before_mm2[c] == pytest.approx(shoelace(orig), rel=1e-9)
            assert rep[c].status in (ReductionStatus.REDUCED, ReductionStatus.REPAIRED,
                                     ReductionStatus.UNCHANGED)


polygon_sizes = st.integers(min_value=3, max_value=70)


@st.composite
def simple_polygons(draw):
    n = draw(polygon_sizes)
    angles = sorted(set(draw(st.lists(st.floats(0, 2 * math.pi, exclude_max=True,
                                                allow_nan=False), min_size=n, max_size=n))))
    assume(len(angles) >= 3)
    radii = draw(st.lists(st.floats(0.5, 200.0), min_size=len(angles), max_size=len(angles)))
    z = draw(st.floats(-500, 500))
    pts = np.array([[r * math.cos(a), r * math.sin(a), z] for a, r in zip(angles, radii,
                                                                          strict=True)])
    assume(exact_simple(pts[:, :2]) and polygon_area(pts) > 1e-6)
    return pts


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.filter_too_much])
@given(pts=simple_polygons(), data=st.data())
def test_reduction_properties(pts: np.ndarray, data: st.DataObject) -> None:
    n = pts.shape[0]
    method = data.draw(st.sampled_from(["vw", "rdp"]))
    max_points = data.draw(st.integers(3, max(3, n)))
    cost = np.array(data.draw(st.lists(st.integers(6, 51), min_size=n, max_size=n)))
    max_bytes = data.draw(st.integers(3 * 51, max(3 * 51, int(cost.sum()))))
    tolerance = data.draw(st.one_of(st.none(), st.floats(0.0, 20.0)))
    result = reduce_contours([pts], max_points=max_points, max_bytes=max_bytes,
                             point_bytes=[cost], tolerance_mm=tolerance, method=method)
    kept, red, line = result.kept[0], result.contours[0], result.report[0]
    assert kept.size <= max_points and kept.size >= 3
    assert bytes_of(cost, kept) <= max_bytes
    assert np.all(np.diff(kept) > 0)
    assert exact_simple(red[:, :2])
    assert line.hausdorff_mm == pytest.approx(brute_hausdorff(pts, red), abs=1e-9)
    if tolerance is not None and line.status is ReductionStatus.REDUCED \
            and kept.size < max_points and bytes_of(cost, kept) + 51 <= max_bytes:
        assert line.hausdorff_mm <= tolerance + 1e-9


def test_unchanged_within_budget_and_report_rows() -> None:
    pts = star(np.random.default_rng(1), 40)
    result = reduce_contours([pts], max_points=40)
    assert result.report[0].status is ReductionStatus.UNCHANGED
    np.testing.assert_array_equal(result.contours[0], pts)
    assert result.report.worst(3) == []
    rows = list(reduce_contours([pts, pts], max_points=10).report)
    assert [r.points_after for r in rows] == [10, 10] and rows[0].area_change_percent < 0


def test_twenty_thousand_points_to_budget_both_methods() -> None:
    t = np.linspace(0, 2 * np.pi, 20000, endpoint=False)
    r = 80 + 6 * np.sin(5 * t) + 0.05 * np.sin(997 * t)
    pts = np.stack([r * np.cos(t), r * np.sin(t), np.full_like(t, -12.5)], axis=1)
    for method in ("vw", "rdp"):
        result = reduce_contours([pts], max_points=500, method=method)
        line = result.report[0]
        assert line.points_after == 500 and line.hausdorff_mm < 0.1
        assert abs(line.area_change_percent) < 0.05
        assert is_simple(result.contours[0])


def test_repair_when_plain_reduction_self_intersects() -> None:
    # The bottom edge dips 0.01 mm at x = 4; a notch from the top reaches
    # down to y = -0.005 at x = 5, inside the polygon.  Visvalingam-Whyatt
    # removes the dip first (smallest triangle), and the straightened bottom
    # edge then crosses the notch: the reducer must repair that.
    pts = np.array([[0, 0, 0], [4, -0.01, 0], [10, 0, 0], [10, 10, 0], [5.1, 10, 0],
                    [5, -0.005, 0], [4.9, 10, 0], [0, 10, 0]], dtype=float)
    assert exact_simple(pts[:, :2])
    plain = np.empty(8, dtype=np.bool_)
    K._vw(np.ascontiguousarray(pts[:, 0]), np.ascontiguousarray(pts[:, 1]),
          np.zeros(8, np.int64), 7, NO_LIMIT, -1.0, plain)
    assert not plain[1] and not exact_simple(pts[plain, :2])
    for method in ("vw", "rdp"):
        result = reduce_contours([pts], max_points=7, method=method)
        assert result.kept[0].size <= 7 and exact_simple(result.contours[0][:, :2])
    assert reduce_contours([pts], max_points=7).report[0].status is ReductionStatus.REPAIRED


def test_self_intersecting_input_is_flagged(caplog: pytest.LogCaptureFixture) -> None:
    t = np.linspace(0, 2 * np.pi, 400, endpoint=False)
    scale = np.where(np.sin(t) > 0, 1.6, 1.0)  # a figure eight with unequal lobes
    bowtie = np.stack([20 * np.sin(t) * scale, 10 * np.sin(2 * t) * scale, np.zeros_like(t)],
                      axis=1)
    with caplog.at_level(logging.WARNING, logger="rtforge.core.contours"):
        result = reduce_contours([bowtie], max_points=40)
    assert result.report[0].status is ReductionStatus.INPUT_NOT_SIMPLE
    assert result.kept[0].size <= 40
    assert "self-intersect" in caplog.text


def test_duplicates_and_closing_point_are_dropped() -> None:
    pts = star(np.random.default_rng(3), 30)
    doubled = np.repeat(pts, 2, axis=0)
    closed = np.vstack([doubled, doubled[:1]])
    result = reduce_contours([closed], max_points=10)
    red = result.contours[0]
    assert len(red) == 10 and len({tuple(p) for p in red}) == 10


def test_thread_count_does_not_change_results() -> None:
    rng = np.random.default_rng(11)
    contours = [star(rng, 200, z=float(k), noise=0.1) for k in range(6)]
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = reduce_contours(contours, max_points=25)
        numba.set_num_threads(max(1, min(2, numba.config.NUMBA_NUM_THREADS)))
        two = reduce_contours(contours, max_points=25)
    finally:
        numba.set_num_threads(before)
    for a, b in zip(one.kept, two.kept, strict=True):
        np.testing.assert_array_equal(a, b)


def test_oblique_contour_is_reduced_in_its_plane() -> None:
    rng = np.random.default_rng(5)
    flat = star(rng, 300, z=0.0, noise=0.2)
    a, b = math.radians(30), math.radians(50)
    rot = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]]) @ \
        np.array([[math.cos(b), -math.sin(b), 0], [math.sin(b), math.cos(b), 0], [0, 0, 1]])
    tilted = flat @ rot.T + np.array([10.0, -20.0, 30.0])
    ref = reduce_contours([flat], max_points=30)
    got = reduce_contours([tilted], max_points=30)
    np.testing.assert_array_equal(ref.kept[0], got.kept[0])
    assert got.report[0].hausdorff_mm == pytest.approx(ref.report[0].hausdorff_mm, rel=1e-6)
    assert got.report[0].hausdorff_mm == pytest.approx(
        brute_hausdorff(tilted, got.contours[0]), rel=1e-9)


# ------------------------------------------------------------ bad input
def test_bad_input_is_refused_with_the_reason() -> None:
    good = star(np.random.default_rng(0), 20)
    nan = good.copy()
    nan[4, 1] = np.nan
    with pytest.raises(GeometryError, match="not finite"):
        reduce_contours([nan], max_points=5)
    with pytest.raises(GeometryError, match="at least 3"):
        reduce_contours([good[:2]], max_points=5)
    with pytest.raises(GeometryError, match=r"shape \(N, 3\)"):
        reduce_contours([good[:, :2]], max_points=5)
    with pytest.raises(InvalidInputError, match="at least 3"):
        reduce_contours([good], max_points=2)
    with pytest.raises(InvalidInputError, match="'vw' or 'rdp'"):
        reduce_contours([good], max_points=5, method="fast")
    with pytest.raises(InvalidInputError, match="non-negative"):
        reduce_contours([good], tolerance_mm=-1.0)
    with pytest.raises(InvalidInputError, match="point_bytes"):
        reduce_contours([good], max_bytes=1000)
    with pytest.raises(InvalidInputError, match="three points"):
        reduce_contours([good], max_bytes=100, point_bytes=[np.full(20, 51)])
    bent = good.copy()
    bent[::2, 2] += 1.0
    with pytest.raises(GeometryError, match="not planar"):
        reduce_contours([bent], max_points=5)
    line = np.stack([np.arange(10.0), 2 * np.arange(10.0), np.zeros(10)], axis=1)
    with pytest.raises(GeometryError, match="one line"):
        reduce_contours([line], max_points=5)


# ------------------------------------------------------------ types and metrics
def test_contour_and_structure_validation() -> None:
    with pytest.raises(GeometryError, match="at least 3"):
        Contour(np.zeros((2, 3)))
    with pytest.raises(GeometryError, match="exactly one"):
        Contour(np.zeros((2, 3)), ContourGeometricType.POINT)
    with pytest.raises(InvalidInputError, match="geometric_type"):
        Contour(np.zeros((3, 3)), "CIRCLE")
    with pytest.raises(GeometryError, match="not finite"):
        Contour(np.array([[0, 0, 0], [1, 0, 0], [np.inf, 1, 0]]))
    point = Contour([[1, 2, 3]], "POINT")
    assert point.geometric_type is ContourGeometricType.POINT and not point.is_closed
    s = Structure(3, "PTV", (point,), interpreted_type="PTV", colour=(255, 0, 0))
    assert s.interpreted_type is RTROIInterpretedType.PTV and s.n_points == 1
    assert Structure(4, "x", interpreted_type="AXIS").interpreted_type == "AXIS"
    # PS3.3 C.8.8.5 asks only that ROI Numbers be unique: Oncentra and Elekta number from 0
    assert Structure(0, "zero").number == 0
    with pytest.raises(InvalidInputError, match="must be an integer"):
        Structure(1.5, "bad")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="0-255"):
        Structure(1, "bad", colour=(0, 0, 300))


def test_shortest_decimals_against_python() -> None:
    rng = np.random.default_rng(9)
    values = np.concatenate([rng.uniform(-500, 500, 500), np.round(rng.uniform(-500, 500, 200), 2),
                             [0.0, -0.0, 0.0004, -0.0004, 0.001, 1e-9, 123.4565, 99999.9999]])
    quantized, nchars = shortest_decimals(values)
    for v, q, n in zip(values, quantized, nchars, strict=True):
        for d in range(4):  # fewest fraction digits within 0.001
            scaled = float(v) * 10**d
            if d == 3 or abs(round(scaled) - scaled) <= 0.001 * 10**d:
                candidate = round(scaled) / 10**d
                break
        assert q == candidate and abs(q - v) <= 0.001 + 1e-12
        text = f"{candidate:.{d}f}"
        text = "0" if float(text) == 0 else text
        assert len(text) == n
    with pytest.raises(InvalidInputError, match="finite"):
        shortest_decimals([np.nan])
    with pytest.raises(InvalidInputError, match="positive"):
        shortest_decimals([1.0], tolerance=0.0)


def test_metrics_against_closed_forms() -> None:
    t = np.linspace(0, 2 * np.pi, 720, endpoint=False)
    circle = np.stack([10 * np.cos(t), 10 * np.sin(t), np.zeros_like(t)], axis=1)
    assert polygon_area(circle) == pytest.approx(0.5 * 720 * 100 * math.sin(2 * math.pi / 720))
    assert is_simple(circle)
    square = np.array([[0, 0, 0], [10, 0, 0], [10, 10, 0], [0, 10, 0]], dtype=float)
    assert hausdorff_distance(circle[::10], circle[::40]) == pytest.approx(
        brute_hausdorff(circle[::10], circle[::40]))
    shifted = np.roll(circle[::10], 5, axis=0)
    assert hausdorff_distance(circle[::10], shifted[::3]) == pytest.approx(
        brute_hausdorff(circle[::10], shifted[::3]))
    assert hausdorff_distance(square, square + [0, 0, 0]) == 0.0
    bowtie = np.array([[0, 0, 0], [1, 1, 0], [1, 0, 0], [0, 1, 0]], dtype=float)
    assert not is_simple(bowtie)
    _, frames, deviation = contour_frames(*pack_contours([square]))
    np.testing.assert_array_equal(frames[0], [[1, 0, 0], [0, 1, 0]])
    assert deviation[0] == 0.0


def test_structure_volume_closed_forms() -> None:
    t = np.linspace(0, 2 * np.pi, 360, endpoint=False)

    def ring(r: float, z: float) -> np.ndarray:
        return np.stack([r * np.cos(t), r * np.sin(t), np.full_like(t, z)], axis=1)

    area = 0.5 * 360 * math.sin(2 * math.pi / 360)
    cylinder = [ring(20, 2.5 * k) for k in range(8)]
    # Half end caps by default (the solid ends at the end planes): 7 spacings tall.
    assert structure_volume(cylinder) == pytest.approx(7 * 2.5 * 400 * area / 1000)
    assert structure_volume(cylinder, end_cap="full") == pytest.approx(8 * 2.5 * 400 * area / 1000)
    assert structure_volume(cylinder, end_cap="none") == pytest.approx(6 * 2.5 * 400 * area / 1000)
    annulus = [c for k in range(8) for c in (ring(20, 2.5 * k), ring(5, 2.5 * k)[::-1])]
    assert structure_volume(annulus) == pytest.approx(7 * 2.5 * (400 - 25) * area / 1000)
    assert structure_volume([ring(20, 0.0)]) is None
    assert structure_volume([ring(20, 0.0)], thickness_mm=3.0) == pytest.approx(
        3 * 400 * area / 1000)
    sagittal = ring(20, 0.0)[:, [2, 0, 1]]
    assert structure_volume([ring(20, 0.0), sagittal], thickness_mm=1.0) is None


@pytest.mark.parametrize("seed", range(8))
def test_hausdorff_from_rdp_spans_is_exact(seed: int) -> None:
    rng = np.random.default_rng(900 + seed)
    pts = star(rng, int(rng.integers(20, 400)), noise=float(rng.uniform(0.0, 0.5)))
    x, y = np.ascontiguousarray(pts[:, 0]), np.ascontiguousarray(pts[:, 1])
    keep = np.empty(x.size, dtype=np.bool_)
    span_dev = np.empty(x.size)
    K._rdp_spans(x, y, np.zeros(x.size, np.int64), int(rng.integers(3, x.size)), NO_LIMIT,
                 -1.0, keep, span_dev)
    assert np.all(span_dev[~keep] == -1.0)
    extent2 = float(np.max(np.sum((pts - pts[0]) ** 2, axis=1)))
    got = K.hausdorff2_spans(x, y, keep, span_dev, 16.0 * K._BOUND_SLACK * extent2)
    assert got == K.hausdorff2_kept(x, y, keep)
    assert math.sqrt(got) == pytest.approx(brute_hausdorff(pts, pts[keep]), abs=1e-9)


# ------------------------------------------------------------ building blocks vs references
@pytest.mark.parametrize("seed", range(6))
def test_span_max_matches_reference(seed: int) -> None:
    rng = np.random.default_rng(1000 + seed)
    pts = star(rng, int(rng.integers(5, 90)), noise=0.2)
    if seed % 2:  # exact ties and coincident span ends
        pts = np.round(pts, 0)
        pts[-1] = pts[0]
    x, y = np.ascontiguousarray(pts[:, 0]), np.ascontiguousarray(pts[:, 1])
    n = x.size
    scratch = np.empty(n)
    for a in range(n - 2):
        for b in range(a + 2, n + 1):
            assert K._span_max2(x, y, a, b, n, scratch) == _span_dev2(x, y, n, a, b)


def ref_offenders(x, y, idx):
    """Segments of the closed polygon ``idx`` in contact with another (positions in
    ``idx``), all pairs tried, with the kernel's predicates; None when degenerate."""
    comp, where = [], []
    for t, i in enumerate(idx):
        if comp and x[i] == x[comp[-1]] and y[i] == y[comp[-1]]:
            continue
        comp.append(int(i))
        where.append(t)
    while len(comp) > 1 and x[comp[-1]] == x[comp[0]] and y[comp[-1]] == y[comp[0]]:
        comp.pop()
    k = len(comp)
    if k < 3:
        return None
    flags = set()
    for s in range(k):
        for t in range(s + 1, k):
            a, b = comp[s], comp[(s + 1) % k]
            c, d = comp[t], comp[(t + 1) % k]
            if t == (s + 1) % k:
                hit = K.folds(x[a], y[a], x[b], y[b], x[d], y[d])
            elif s == (t + 1) % k:
                hit = K.folds(x[c], y[c], x[d], y[d], x[b], y[b])
            else:
                hit = K.segments_touch(x[a], y[a], x[b], y[b], x[c], y[c], x[d], y[d])
            if hit:
                flags.update((where[s], where[t]))
    return flags


@pytest.mark.parametrize("seed", range(12))
def test_offender_sweep_matches_all_pairs_reference(seed: int) -> None:
    rng = np.random.default_rng(1100 + seed)
    n = int(rng.integers(3, 40))
    if seed % 3 == 0:
        pts = rng.uniform(-10, 10, (n, 2))  # mostly self-intersecting
    elif seed % 3 == 1:
        pts = star(rng, n)[:, :2]
    else:  # a grid: collinear runs, folds, touching vertices and duplicates
        pts = rng.integers(0, 4, (n, 2)).astype(float)
    x, y = np.ascontiguousarray(pts[:, 0]), np.ascontiguousarray(pts[:, 1])
    idx = np.sort(rng.choice(n, size=int(rng.integers(min(3, n), n + 1)), replace=False))
    flags = np.zeros(idx.size, dtype=np.bool_)
    found = K._simple_or_offenders(x, y, idx, idx.size, flags, True)
    expected = ref_offenders(x, y, idx)
    if expected is None:
        assert found == 1 and not flags.any()
    else:
        assert set(np.flatnonzero(flags).tolist()) == expected
        assert (found == 0) == (not expected)
        first = np.zeros(idx.size, dtype=np.bool_)
        assert (K._simple_or_offenders(x, y, idx, idx.size, first, False) == 0) == (not expected)


def test_heap_pops_in_key_order() -> None:
    rng = np.random.default_rng(12)
    for n in (1, 2, 5, 17, 64, 300):
        shift = K._key_shift(n)
        mask = (1 << shift) - 1
        hk = (rng.integers(0, 1 << 20, n).astype(np.int64) << shift) | np.arange(n)
        live = {i: int(hk[i]) for i in range(n)}
        pos = np.full(n, -1, dtype=np.intp)
        K._heapify(hk, pos, mask, n)
        size = n
        for step in range(n):
            if step % 3 == 2 and size > 1:  # change a queued key, as the reducers do
                item = int(hk[size - 1] & mask)
                live[item] = (int(rng.integers(0, 1 << 20)) << shift) | item
                K._heap_update(hk, pos, mask, size, np.int64(live[item]))
            key, size = K._heap_pop(hk, pos, mask, size)
            assert int(key) == min(live.values())
            del live[int(key) & mask]
            assert pos[int(key) & mask] == -1
            assert all(pos[int(k) & mask] == i for i, k in enumerate(hk[:size]))
        assert size == 0 and not live


@pytest.mark.parametrize("seed", range(4))
def test_index_helpers_against_numpy(seed: int) -> None:
    rng = np.random.default_rng(1200 + seed)
    pts = star(rng, int(rng.integers(3, 200)))
    x, y = np.ascontiguousarray(pts[:, 0]), np.ascontiguousarray(pts[:, 1])
    keep = rng.random(x.size) < 0.5
    np.testing.assert_array_equal(K._kept_indices(keep), np.flatnonzero(keep))
    assert K._area_all(x, y) == pytest.approx(shoelace(pts), rel=1e-12)
    assert K._area_idx(x, y, np.arange(x.size)) == pytest.approx(shoelace(pts), rel=1e-12)


def _mixed_contours(rng: np.random.Generator) -> list[np.ndarray]:
    """Axial, oblique, duplicated, closed-again and tiny contours."""
    out = [star(rng, int(n), z=float(k), noise=0.1) for k, n in enumerate(rng.integers(4, 400, 8))]
    a = math.radians(35)
    rot = np.array([[1, 0, 0], [0, math.cos(a), -math.sin(a)], [0, math.sin(a), math.cos(a)]])
    out.append(star(rng, 250, z=0.0, noise=0.2) @ rot.T + [5.0, 1.0, -3.0])
    doubled = np.repeat(star(rng, 60), 2, axis=0)
    out.append(np.vstack([doubled, doubled[:1]]))
    out.append(star(rng, 3))
    return out


@pytest.mark.parametrize("method", ["vw", "rdp"])
@pytest.mark.parametrize("mode", ["points", "bytes", "tolerance"])
def test_list_and_packed_reducers_agree(method: str, mode: str) -> None:
    rng = np.random.default_rng(1300 + len(mode))
    contours = _mixed_contours(rng)
    costs = [rng.integers(6, 52, len(c)) for c in contours]
    options: dict = {"points": {"max_points": 12}, "bytes": {"max_bytes": 900, "point_bytes": costs},
                     "tolerance": {"tolerance_mm": 0.5, "max_points": 150}}[mode]
    result = reduce_contours(contours, method=method, **options)
    points, offsets = pack_contours(contours)
    packed = dict(options)
    if "point_bytes" in packed:
        packed["point_bytes"] = np.concatenate(costs)
    keep, report = reduce_packed(points, offsets, method=method, **packed)
    for name in ("points_before", "points_after", "hausdorff_mm", "area_before_mm2",
                 "area_after_mm2", "status"):
        np.testing.assert_array_equal(getattr(result.report, name), getattr(report, name))
    for c, orig in enumerate(contours):
        mask = keep[offsets[c]:offsets[c + 1]]
        np.testing.assert_array_equal(result.kept[c], np.flatnonzero(mask))
        np.testing.assert_array_equal(result.contours[c], orig[mask])
        assert result.contours[c].dtype == np.float64 and result.kept[c].dtype == np.intp


def test_reducer_takes_any_numeric_layout() -> None:
    rng = np.random.default_rng(14)
    base = np.round(star(rng, 300, noise=0.3), 0)
    expected = reduce_contours([base], max_points=20)
    readonly = base.copy()
    readonly.setflags(write=False)
    variants = [np.asfortranarray(base), base.astype(np.int32), base.astype(">f8"), readonly,
                np.repeat(base, 2, axis=0)[::2], np.hstack([base, base])[:, :3]]
    for arr in variants:
        got = reduce_contours([arr, base], max_points=20)
        np.testing.assert_array_equal(got.kept[0], expected.kept[0])
        np.testing.assert_array_equal(got.contours[0], expected.contours[0])
        assert got.report.hausdorff_mm[0] == expected.report.hausdorff_mm[0]
    with pytest.raises(InvalidInputError, match="point_bytes of contour 1"):
        reduce_contours([base, base], max_bytes=900, point_bytes=[np.full(300, 20), np.full(299, 20)])


def test_all_kept_contours_are_copies() -> None:
    pts = star(np.random.default_rng(15), 30)
    result = reduce_contours([pts, pts], max_points=[30, 10], tolerance_mm=None)
    assert result.report[0].status is ReductionStatus.UNCHANGED
    np.testing.assert_array_equal(result.contours[0], pts)
    np.testing.assert_array_equal(result.kept[0], np.arange(30))
    assert not np.shares_memory(result.contours[0], pts)
    assert result.kept[1].size == 10
