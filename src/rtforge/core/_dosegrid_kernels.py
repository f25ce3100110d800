"""Numba kernels of :mod:`rtforge.core.dosegrid`: arrays and scalars only.

Arrays are flat (C order) or ``[k, j, i]``; every parallel loop writes whole
chunks or whole output slices, and reductions go through per-chunk partials
reduced at the end.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

#: Elements per chunk of the flat parallel loops.
CHUNK = 1 << 16


@njit(cache=True, parallel=True)
def scan(values: np.ndarray) -> tuple[float, float, int]:
    """Largest and smallest value and the count of non-finite values of a flat array."""
    n = values.shape[0]
    chunks = (n + CHUNK - 1) // CHUNK
    hi = np.full(chunks, -np.inf)
    lo = np.full(chunks, np.inf)
    bad = np.zeros(chunks, dtype=np.intp)
    for c in prange(chunks):
        start = c * CHUNK
        stop = min(n, start + CHUNK)
        h = -np.inf
        m = np.inf
        b = 0
        for p in range(start, stop):
            v = float(values[p])
            if not np.isfinite(v):
                b += 1
            else:
                if v > h:
                    h = v
                if v < m:
                    m = v
        hi[c] = h
        lo[c] = m
        bad[c] = b
    return hi.max(), lo.min(), int(bad.sum())


@njit(cache=True, parallel=True)
def quantize(values: np.ndarray, scaling: float, out: np.ndarray) -> float:
    """``out = rint(values / scaling)`` (half to even, values >= 0); returns the
    largest ``|out * scaling - values|``.  One pass over memory."""
    n = values.shape[0]
    chunks = (n + CHUNK - 1) // CHUNK
    err = np.zeros(chunks)
    for c in prange(chunks):
        start = c * CHUNK
        stop = min(n, start + CHUNK)
        e = 0.0
        for p in range(start, stop):
            v = float(values[p])
            q = np.rint(v / scaling)
            out[p] = q
            d = abs(q * scaling - v)
            if d > e:
                e = d
        err[c] = e
    return err.max()


@njit(cache=True, parallel=True)
def dequantize(pixels: np.ndarray, scaling: float, out: np.ndarray) -> None:
    """``out = pixels * scaling``."""
    n = pixels.shape[0]
    chunks = (n + CHUNK - 1) // CHUNK
    for c in prange(chunks):
        start = c * CHUNK
        stop = min(n, start + CHUNK)
        for p in range(start, stop):
            out[p] = pixels[p] * scaling


@njit(cache=True, parallel=True)
def accumulate_trilinear(src: np.ndarray, matrix: np.ndarray, weight: float,
                         out: np.ndarray) -> None:
    """Add ``weight`` times ``src`` sampled trilinearly at every voxel of ``out``.

    ``matrix`` (3, 4) maps an output index point ``(i, j, k, 1)`` to a
    fractional source index point.  Points within half a voxel of the
    outermost source centres take the edge value; beyond that they add
    nothing (no dose is known there).  Each thread owns whole output slices.
    """
    nk, nj, ni = out.shape
    sk, sj, si = src.shape
    for k in prange(nk):
        for j in range(nj):
            for i in range(ni):
                u = matrix[0, 0] * i + matrix[0, 1] * j + matrix[0, 2] * k + matrix[0, 3]
                v = matrix[1, 0] * i + matrix[1, 1] * j + matrix[1, 2] * k + matrix[1, 3]
                w = matrix[2, 0] * i + matrix[2, 1] * j + matrix[2, 2] * k + matrix[2, 3]
                if u < -0.5 or v < -0.5 or w < -0.5 or u > si - 0.5 or v > sj - 0.5 \
                        or w > sk - 0.5:
                    continue
                u = min(max(u, 0.0), si - 1.0)
                v = min(max(v, 0.0), sj - 1.0)
                w = min(max(w, 0.0), sk - 1.0)
                i0 = min(int(u), si - 2) if si > 1 else 0
                j0 = min(int(v), sj - 2) if sj > 1 else 0
                k0 = min(int(w), sk - 2) if sk > 1 else 0
                i1 = min(i0 + 1, si - 1)
                j1 = min(j0 + 1, sj - 1)
                k1 = min(k0 + 1, sk - 1)
                fu = u - i0
                fv = v - j0
                fw = w - k0
                c00 = src[k0, j0, i0] * (1.0 - fu) + src[k0, j0, i1] * fu
                c01 = src[k0, j1, i0] * (1.0 - fu) + src[k0, j1, i1] * fu
                c10 = src[k1, j0, i0] * (1.0 - fu) + src[k1, j0, i1] * fu
                c11 = src[k1, j1, i0] * (1.0 - fu) + src[k1, j1, i1] * fu
                c0 = c00 * (1.0 - fv) + c01 * fv
                c1 = c10 * (1.0 - fv) + c11 * fv
                out[k, j, i] += weight * (c0 * (1.0 - fw) + c1 * fw)
