"""Dose quantisation throughput (issue 4): rtforge against the NumPy expression.

Quantises a 400 x 400 x 300 float64 dose (384 MB) to 32-bit RT Dose pixels
and reports GB/s of dose read, for

- :func:`rtforge.core.dosegrid.quantize_dose`: one parallel scan (maximum,
  minimum, non-finite count) then one fused parallel pass (divide, round,
  store, largest error), on ``--threads`` Numba threads;
- the NumPy expression doing the same work: ``d.max()``, ``d.min()``,
  ``np.isfinite(d).all()``, ``np.rint(d / s).astype(np.uint32)`` and
  ``np.abs(q * s - d).max()``;
- the memory-bandwidth bound: the same traffic as rtforge's two passes
  (read the dose twice, write the pixels once), timed as a parallel Numba
  sum over the dose plus a parallel copy into a uint32 array.

Best of ``--repeat`` runs, after a warm-up run (JIT compilation) outside
the timing.

Usage::

    python bench/bench_dosegrid.py [--threads 2] [--repeat 5]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numba
import numpy as np
from numba import njit, prange

from rtforge.core.dosegrid import quantize_dose

SHAPE = (300, 400, 400)


@njit(cache=True, parallel=True)
def _read_write(values: np.ndarray, out: np.ndarray) -> float:
    total = 0.0
    for p in prange(values.shape[0]):
        total += values[p]
    for p in prange(values.shape[0]):
        out[p] = np.uint32(p)
    return total


def _best(run: Callable[[], object], repeat: int) -> float:
    run()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    numba.set_num_threads(args.threads)
    rng = np.random.default_rng(0)
    dose = rng.random(SHAPE) * 70.0
    flat = dose.reshape(-1)
    out = np.empty(flat.shape[0], dtype=np.uint32)
    scaling = quantize_dose(dose).scaling

    def numpy_expression() -> float:
        assert np.isfinite(flat).all() and flat.min() >= 0
        s = float(flat.max()) / (2**32 - 1)
        q = np.rint(flat / s).astype(np.uint32)
        return float(np.abs(q * s - flat).max())

    gb = dose.nbytes / 1e9
    rows = {
        "rtforge quantize_dose": _best(lambda: quantize_dose(dose, 32), args.repeat),
        "NumPy expression": _best(numpy_expression, args.repeat),
        "bandwidth bound (same traffic)": _best(lambda: _read_write(flat, out), args.repeat),
    }
    print(f"dose {SHAPE[2]} x {SHAPE[1]} x {SHAPE[0]} float64 ({gb * 1000:.0f} MB), "
          f"{args.threads} threads, scaling {scaling:.6g}")
    for name, seconds in rows.items():
        print(f"{name:<32} {seconds * 1000:8.1f} ms  {gb / seconds:6.2f} GB/s")
    rt, npx = rows["rtforge quantize_dose"], rows["NumPy expression"]
    bound = rows["bandwidth bound (same traffic)"]
    print(f"rtforge is {npx / rt:.1f} x the NumPy expression, at {bound / rt:.0%} of the bound")


if __name__ == "__main__":
    main()
