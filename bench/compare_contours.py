"""Contour point reduction, side by side, in one run (iPlan Note 8-3; issue 3).

Generates closed planar contours of 20,000 points each (organ-like outlines,
sampled finely, with 0.02 mm of digitisation noise, one axial plane each) and
reduces them to about 500 points with:

- rtforge, Visvalingam-Whyatt and Douglas-Peucker, through
  :func:`rtforge.io.rtstruct.reduce_for_contour_data`: coordinates rounded as
  Contour Data writes them, the 500-point budget, the 65534-byte Contour Data
  budget, no self-intersection, closure, and the per-contour report
  (Hausdorff distance, area change), on ``--threads`` Numba threads;
- the ``simplification`` package (Rust): RDP, VW, and its topology-preserving
  VW (``simplify_coords_vwp``);
- ``shapely.simplify`` (GEOS Douglas-Peucker) with and without
  ``preserve_topology``.

The reference tools take a tolerance, not a point count: each tolerance is
calibrated on a sample so that the tool keeps about 500 points on average.
The slow topology-preserving modes run on a subset (``--subset``).

Prints contours/s and ms per 1000 contours of each (the median of the
rounds), the ratios of rtforge to shapely, to ``simplification`` RDP and VW
and to the fastest reference, and, at the same point count (rtforge run again with each reference's own
per-contour point counts as budgets, same algorithm family), the mean and
worst Hausdorff distance of each, plus how many reference outputs
self-intersect.  Warm-up (JIT compilation) happens before any timing.

The machine may be shared: every method is timed in ``--repeat`` rounds,
interleaved (the order rotates from round to round), and the median round
counts (the best round is printed beside it); the load average is printed
before and after.

Numba's threads run as a user gets them (no ``OMP_WAIT_POLICY`` or other setting
is changed here); the threading layer and ``OMP_WAIT_POLICY`` are printed.

Usage::

    python bench/compare_contours.py [--contours 1000] [--points 20000] [--target 500]
                                     [--threads 2] [--subset 50] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable

import numba
import numpy as np
import shapely
from simplification.cutil import (
    simplify_coords_idx,
    simplify_coords_vw_idx,
    simplify_coords_vwp,
)

from rtforge.core import _contours_kernels as kernels
from rtforge.core.contours import hausdorff_distance, is_simple
from rtforge.io.rtstruct import (
    CONTOUR_DATA_MAX_BYTES,
    contour_data_encoding,
    reduce_for_contour_data,
)


def make_contours(count: int, points: int, seed: int = 20240517) -> list[np.ndarray]:
    """Organ-like closed outlines (radius 20-80 mm, harmonics 2-8, 0.02 mm noise)."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0.0, 2.0 * np.pi, points, endpoint=False)
    out = []
    for c in range(count):
        r = np.ones(points)
        for k in range(2, 9):
            r += rng.uniform(0.0, 0.3 / k) * np.sin(k * t + rng.uniform(0.0, 2.0 * np.pi))
        r = rng.uniform(20.0, 80.0) * r + rng.normal(0.0, 0.02, points)
        out.append(np.stack([r * np.cos(t), r * np.sin(t), np.full(points, 2.5 * c)], axis=1))
    return out


def keep_mask(original: np.ndarray, reduced2d: np.ndarray) -> np.ndarray:
    """Which original points a reference kept (its output is a subset, in order)."""
    orig = original[:, 0] + 1j * original[:, 1]
    red = reduced2d[:, 0] + 1j * reduced2d[:, 1]
    return np.isin(orig, red)


def hausdorff_of_masks(contours: list[np.ndarray], masks: list[np.ndarray]) -> np.ndarray:
    return np.array([np.sqrt(kernels.hausdorff2_kept(np.ascontiguousarray(c[:, 0]),
                                                     np.ascontiguousarray(c[:, 1]), m))
                     for c, m in zip(contours, masks, strict=True)])


def timed(run: Callable[[], object], count: int) -> tuple[float, object]:
    t0 = time.perf_counter()
    result = run()
    return count / (time.perf_counter() - t0), result


def calibrate(reduce_count: Callable[[np.ndarray, float], int], sample: list[np.ndarray],
              target: int, low: float, high: float) -> float:
    """Tolerance at which ``reduce_count`` keeps ``target`` points on average (bisection
    on a log scale)."""
    for _ in range(40):
        mid = float(np.sqrt(low * high))
        mean = np.mean([reduce_count(c, mid) for c in sample])
        if mean > target:
            low = mid
        else:
            high = mid
    return float(np.sqrt(low * high))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--contours", type=int, default=1000)
    parser.add_argument("--points", type=int, default=20000)
    parser.add_argument("--target", type=int, default=500)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--subset", type=int, default=50,
                        help="contours for the slow topology-preserving modes")
    parser.add_argument("--repeat", type=int, default=5,
                        help="timed rounds of every method, interleaved; the median counts")
    args = parser.parse_args()
    numba.set_num_threads(args.threads)
    contours = make_contours(args.contours, args.points)
    rings2d = [np.ascontiguousarray(np.vstack([c[:, :2], c[:1, :2]])) for c in contours]
    polygons = [shapely.Polygon(r) for r in rings2d]
    sample = contours[:20]
    n, target = len(contours), args.target
    # warm-up outside any timing
    reduce_for_contour_data(contours[:4], max_points=target, method="vw")
    reduce_for_contour_data(contours[:4], max_points=target, method="rdp")
    print(f"{n} contours x {args.points} points -> about {target} points; rtforge on "
          f"{numba.get_num_threads()} Numba thread(s), {numba.threading_layer()} layer, "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY')}")

    tol_dp = calibrate(lambda c, t: len(simplify_coords_idx(
        np.vstack([c[:, :2], c[:1, :2]]), t)) - 1, sample, target, 1e-4, 10.0)
    tol_vw = calibrate(lambda c, t: len(simplify_coords_vw_idx(
        np.vstack([c[:, :2], c[:1, :2]]), t)) - 1, sample, target, 1e-8, 100.0)
    tol_geos = calibrate(lambda c, t: len(shapely.simplify(shapely.Polygon(
        np.vstack([c[:, :2], c[:1, :2]])), t, preserve_topology=False).exterior.coords) - 1,
        sample, target, 1e-4, 10.0)
    print(f"calibrated: RDP tolerance {tol_dp:.4g} mm, VW area {tol_vw:.4g} mm2, "
          f"GEOS tolerance {tol_geos:.4g} mm")

    m = min(args.subset, n)

    def simplify(fn: Callable, tol: float, count: int) -> list:
        return [fn(r, tol) for r in rings2d[:count]]

    runs: dict[str, tuple[int, Callable[[], object]]] = {
        "rtforge VW (guaranteed)": (n, lambda: reduce_for_contour_data(
            contours, max_points=target, method="vw")),
        "rtforge RDP (guaranteed)": (n, lambda: reduce_for_contour_data(
            contours, max_points=target, method="rdp")),
        "simplification RDP": (n, lambda: simplify(simplify_coords_idx, tol_dp, n)),
        "simplification VW": (n, lambda: simplify(simplify_coords_vw_idx, tol_vw, n)),
        "simplification VWP (topology)": (m, lambda: simplify(simplify_coords_vwp, tol_vw, m)),
        "shapely DP": (n, lambda: shapely.simplify(polygons, tol_geos, preserve_topology=False)),
        "shapely DP (topology)": (m, lambda: shapely.simplify(polygons[:m], tol_geos,
                                                              preserve_topology=True)),
    }
    # Rounds of every method in turn (rotating the order), so that load from other
    # processes hits every method alike; each method's median round counts.
    print(f"load average before timing: {os.getloadavg()[0]:.2f}")
    rates: dict[str, list[float]] = {name: [] for name in runs}
    outputs: dict[str, object] = {}
    names = list(runs)
    for r in range(args.repeat):
        for name in names[r % len(names):] + names[:r % len(names)]:
            count, run = runs[name]
            rate, outputs[name] = timed(run, count)
            rates[name].append(rate)
    print(f"load average after timing: {os.getloadavg()[0]:.2f}")
    best = {name: float(np.median(r)) for name, r in rates.items()}
    top = {name: max(r) for name, r in rates.items()}

    rows: list[tuple[str, float, int, str]] = []
    results: dict[str, list[np.ndarray]] = {}
    for method in ("VW", "RDP"):
        name = f"rtforge {method} (guaranteed)"
        written, report = outputs[name]  # type: ignore[misc]
        sizes = np.array([len(w) for w in written])
        encoded = [int(contour_data_encoding(w)[1].sum()) - 1 for w in written]
        simple = sum(is_simple(w) for w in written)
        assert sizes.max() <= target and max(encoded) <= CONTOUR_DATA_MAX_BYTES
        rows.append((name, best[name], n,
                     f"mean {sizes.mean():.0f} points, all <= {target}, encoded <= "
                     f"{max(encoded)} B, {simple}/{n} simple, mean H "
                     f"{report.hausdorff_mm.mean():.4f} mm, worst {report.hausdorff_mm.max():.4f} mm"))
    for name in ("simplification RDP", "simplification VW"):
        results[name] = [np.asarray(i[:-1], dtype=np.intp) for i in outputs[name]]
    results["simplification VWP (topology)"] = [
        np.flatnonzero(keep_mask(c, o[:-1]))
        for c, o in zip(contours, outputs["simplification VWP (topology)"], strict=False)]
    for name in ("shapely DP", "shapely DP (topology)"):
        results[name] = [np.flatnonzero(keep_mask(c, np.asarray(g.exterior.coords)[:-1]))
                         for c, g in zip(contours, outputs[name], strict=False)]
    for name, (count, _) in runs.items():
        if not name.startswith("rtforge"):
            rows.append((name, best[name], count, f"subset of {count}" if count < n else ""))

    fastest = max(r for name, r, _, _ in rows if not name.startswith("rtforge"))
    print(f"\n{'method':<32} {'contours/s':>11} {'ms/1000':>9} {'best round':>11} "
          f"{'vs fastest ref':>15}  notes")
    for name, rate, count, note in rows:
        print(f"{name:<32} {rate:>11.1f} {1e6 / rate:>9.1f} {top[name]:>11.1f} "
              f"{rate / fastest:>14.2f}x  {note or f'{count} contours'}")
    print("\nratios (median rounds):")
    for ours in ("rtforge RDP (guaranteed)", "rtforge VW (guaranteed)"):
        print(f"  {ours}: " + ", ".join(
            f"{best[ours] / best[ref]:.2f}x {ref}"
            for ref in ("shapely DP", "simplification RDP", "simplification VW")))

    print("\nHausdorff distance (mm) at the same point count, per contour; rtforge run with "
          "each reference's own point counts as budgets:")
    print(f"{'reference':<32} {'points':>7} {'ref mean':>9} {'ref max':>8} {'rtforge':>8} "
          f"{'mean':>8} {'max':>8} {'ours <= ref':>12}  ref self-intersecting")
    for name, kept in results.items():
        family = "vw" if "VW" in name else "rdp"
        subset = contours[:len(kept)]
        masks = []
        for c, k in zip(subset, kept, strict=True):
            mask = np.zeros(len(c), dtype=np.bool_)
            mask[k] = True
            masks.append(mask)
        ref_h = hausdorff_of_masks(subset, masks)
        budgets = np.array([max(3, len(k)) for k in kept])
        ours, report = reduce_for_contour_data(subset, max_points=budgets, method=family)
        crossing = sum(not is_simple(c[m]) for c, m in zip(subset, masks, strict=True))
        # ours measured on the coordinates as given, the reference's too; 1 nm of slack
        not_worse = int(np.sum(report.hausdorff_mm <= ref_h + 1e-6))
        print(f"{name:<32} {budgets.mean():>7.0f} {ref_h.mean():>9.5f} {ref_h.max():>8.5f} "
              f"{family.upper():>8} {report.hausdorff_mm.mean():>8.5f} "
              f"{report.hausdorff_mm.max():>8.5f} {f'{not_worse}/{len(kept)}':>12}  "
              f"{crossing}/{len(kept)}")
    check = hausdorff_distance(contours[0], contours[0][::40])
    print(f"\n(check: Hausdorff of every 40th point of contour 0 = {check:.4f} mm)")


if __name__ == "__main__":
    main()
