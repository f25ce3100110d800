"""Numba kernels of :mod:`rtforge.core.drr` (see there for conventions).

Ray bodies
----------
:func:`siddon_ray` and :func:`trilinear_ray` trace one ray.  They are plain
Python over scalars and flat arrays, compiled twice from this one source: with
``@njit`` here (``_siddon_ray_cpu``, ``_trilinear_ray_cpu``) and as CUDA device
functions in :mod:`rtforge.core.drr_cuda`, so both devices compute the same
thing.  They take:

- ``mu``: the attenuation volume raveled from ``[k, j, i]`` (C order), float32, 1/mm;
- ``occ``: block occupancy raveled from ``[bk, bj, bi]``, uint8, 1 where the
  block of ``2**shift`` voxels a side may hold a non-zero value (for
  trilinear, within one voxel of it), 0 where every sample is zero;
- ``ni, nj, nk``, ``nbi, nbj``: volume and block-grid sizes;
- ``lo_*, hi_*``: a clipping box (voxel planes, see below) outside which every
  sample is zero;
- the ray ``p(t) = s + t d``, ``t >= 0``, in *plane coordinates*: index
  coordinates shifted by one half, so voxel ``i`` spans ``[i, i + 1]`` and the
  volume ``[0, ni] x [0, nj] x [0, nk]``.

They return the integral of ``mu`` over ``t`` from the source to infinity; the
caller multiplies by the ray's length in mm per unit ``t``.

Every plane crossing time is computed as ``(plane - s) * inv_d`` with the
same operands wherever it is used (box clipping, block and voxel crossings),
so a voxel crossing and the block or box boundary on the same plane are equal
bit for bit and an index never leaves the block it is read in.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

__all__ = ["siddon_ray", "trilinear_ray", "drr_siddon", "drr_trilinear", "hu_to_mu",
           "block_occupancy"]

_INF = math.inf


def siddon_ray(mu, occ, ni, nj, nk, nbi, nbj, shift, lo_i, lo_j, lo_k, hi_i, hi_j, hi_k,
               s_i, s_j, s_k, d_i, d_j, d_k):  # noqa: ANN001, ANN201 - compiled for two targets
    """Exact radiological path (Siddon 1985, Jacobs et al. 1998 incremental form)
    with two-level traversal: empty blocks are crossed in one step."""
    # Clip t to the box, axis by axis; a ray parallel to a face outside it misses.
    t0 = 0.0
    t1 = _INF
    inv_i = 0.0
    inv_j = 0.0
    inv_k = 0.0
    if d_i != 0.0:
        inv_i = 1.0 / d_i
        ta = (lo_i - s_i) * inv_i
        tb = (hi_i - s_i) * inv_i
        t0 = max(t0, min(ta, tb))
        t1 = min(t1, max(ta, tb))
    elif s_i < lo_i or s_i > hi_i:
        return 0.0
    if d_j != 0.0:
        inv_j = 1.0 / d_j
        ta = (lo_j - s_j) * inv_j
        tb = (hi_j - s_j) * inv_j
        t0 = max(t0, min(ta, tb))
        t1 = min(t1, max(ta, tb))
    elif s_j < lo_j or s_j > hi_j:
        return 0.0
    if d_k != 0.0:
        inv_k = 1.0 / d_k
        ta = (lo_k - s_k) * inv_k
        tb = (hi_k - s_k) * inv_k
        t0 = max(t0, min(ta, tb))
        t1 = min(t1, max(ta, tb))
    elif s_k < lo_k or s_k > hi_k:
        return 0.0
    if not t0 < t1:
        return 0.0
    block = 1 << shift
    step_i = 1 if d_i > 0.0 else -1
    step_j = 1 if d_j > 0.0 else -1
    step_k = 1 if d_k > 0.0 else -1
    # Offset from a voxel index to the plane it leaves through: +1 forward, 0 backward.
    off_i = 1 if d_i > 0.0 else 0
    off_j = 1 if d_j > 0.0 else 0
    off_k = 1 if d_k > 0.0 else 0
    stride_j = ni
    stride_k = ni * nj
    t = t0
    acc = 0.0
    # Block (coarse) state.
    bi = min(max(int(math.floor(s_i + t * d_i)), int(lo_i)), int(hi_i) - 1) >> shift
    bj = min(max(int(math.floor(s_j + t * d_j)), int(lo_j)), int(hi_j) - 1) >> shift
    bk = min(max(int(math.floor(s_k + t * d_k)), int(lo_k)), int(hi_k) - 1) >> shift
    tb_i = _INF
    tb_j = _INF
    tb_k = _INF
    seeded = False
    i = 0
    j = 0
    k = 0
    idx = 0
    tn_i = _INF
    tn_j = _INF
    tn_k = _INF
    while t < t1:
        # The block's exit time (recomputed from its planes, never accumulated).
        if d_i != 0.0:
            tb_i = ((bi + off_i) * block - s_i) * inv_i
        if d_j != 0.0:
            tb_j = ((bj + off_j) * block - s_j) * inv_j
        if d_k != 0.0:
            tb_k = ((bk + off_k) * block - s_k) * inv_k
        t_exit = min(min(tb_i, tb_j), min(tb_k, t1))
        if occ[(bk * nbj + bj) * nbi + bi] != 0:
            if not seeded:
                # The voxel at time t (its exit plane after t; floor() may be off
                # by one ulp's worth), kept inside this block.
                i = int(math.floor(s_i + t * d_i))
                if d_i != 0.0 and (i + off_i - s_i) * inv_i <= t:
                    i += step_i
                i = min(max(i, bi * block), min(bi * block + block, ni) - 1)
                j = int(math.floor(s_j + t * d_j))
                if d_j != 0.0 and (j + off_j - s_j) * inv_j <= t:
                    j += step_j
                j = min(max(j, bj * block), min(bj * block + block, nj) - 1)
                k = int(math.floor(s_k + t * d_k))
                if d_k != 0.0 and (k + off_k - s_k) * inv_k <= t:
                    k += step_k
                k = min(max(k, bk * block), min(bk * block + block, nk) - 1)
                idx = k * stride_k + j * stride_j + i
                if d_i != 0.0:
                    tn_i = (i + off_i - s_i) * inv_i
                if d_j != 0.0:
                    tn_j = (j + off_j - s_j) * inv_j
                if d_k != 0.0:
                    tn_k = (k + off_k - s_k) * inv_k
                seeded = True
            while True:
                # The nearest plane crossing decides: axis i, j or k.
                if tn_i <= tn_j and tn_i <= tn_k:
                    if tn_i >= t_exit:
                        break
                    acc += mu[idx] * (tn_i - t)
                    t = tn_i
                    i += step_i
                    idx += step_i
                    tn_i = (i + off_i - s_i) * inv_i
                elif tn_j <= tn_k:
                    if tn_j >= t_exit:
                        break
                    acc += mu[idx] * (tn_j - t)
                    t = tn_j
                    j += step_j
                    idx += step_j * stride_j
                    tn_j = (j + off_j - s_j) * inv_j
                else:
                    if tn_k >= t_exit:
                        break
                    acc += mu[idx] * (tn_k - t)
                    t = tn_k
                    k += step_k
                    idx += step_k * stride_k
                    tn_k = (k + off_k - s_k) * inv_k
            acc += mu[idx] * (t_exit - t)
        else:
            seeded = False
        t = t_exit
        if t >= t1:
            break
        # Into the next block; the voxel state follows on the axes crossed.
        if tb_i == t_exit:
            bi += step_i
            if seeded:
                i += step_i
                idx += step_i
                tn_i = (i + off_i - s_i) * inv_i
        if tb_j == t_exit:
            bj += step_j
            if seeded:
                j += step_j
                idx += step_j * stride_j
                tn_j = (j + off_j - s_j) * inv_j
        if tb_k == t_exit:
            bk += step_k
            if seeded:
                k += step_k
                idx += step_k * stride_k
                tn_k = (k + off_k - s_k) * inv_k
    return acc


def trilinear_ray(mu, occ, ni, nj, nk, nbi, nbj, shift, lo_i, lo_j, lo_k, hi_i, hi_j, hi_k,
                  s_i, s_j, s_k, d_i, d_j, d_k, dt):  # noqa: ANN001, ANN201
    """Fixed-step trilinear sampling (midpoint rule).

    The chord through the whole volume ``[0, n]`` is cut into
    ``max(1, round(length / dt))`` equal steps and sampled at their midpoints,
    so the sample positions do not depend on the clipping box or on skipping;
    samples outside the box or in empty blocks are zero and are skipped.
    Values between the outermost voxel centres and the volume faces are the
    edge voxels' (clamped interpolation).
    """
    v0 = 0.0
    v1 = _INF
    c0 = 0.0
    c1 = _INF
    inv_i = 0.0
    inv_j = 0.0
    inv_k = 0.0
    if d_i != 0.0:
        inv_i = 1.0 / d_i
        ta = (0.0 - s_i) * inv_i
        tb = (ni - s_i) * inv_i
        v0 = max(v0, min(ta, tb))
        v1 = min(v1, max(ta, tb))
        ta = (lo_i - s_i) * inv_i
        tb = (hi_i - s_i) * inv_i
        c0 = max(c0, min(ta, tb))
        c1 = min(c1, max(ta, tb))
    elif s_i < lo_i or s_i > hi_i:
        return 0.0
    if d_j != 0.0:
        inv_j = 1.0 / d_j
        ta = (0.0 - s_j) * inv_j
        tb = (nj - s_j) * inv_j
        v0 = max(v0, min(ta, tb))
        v1 = min(v1, max(ta, tb))
        ta = (lo_j - s_j) * inv_j
        tb = (hi_j - s_j) * inv_j
        c0 = max(c0, min(ta, tb))
        c1 = min(c1, max(ta, tb))
    elif s_j < lo_j or s_j > hi_j:
        return 0.0
    if d_k != 0.0:
        inv_k = 1.0 / d_k
        ta = (0.0 - s_k) * inv_k
        tb = (nk - s_k) * inv_k
        v0 = max(v0, min(ta, tb))
        v1 = min(v1, max(ta, tb))
        ta = (lo_k - s_k) * inv_k
        tb = (hi_k - s_k) * inv_k
        c0 = max(c0, min(ta, tb))
        c1 = min(c1, max(ta, tb))
    elif s_k < lo_k or s_k > hi_k:
        return 0.0
    if not (v0 < v1 and c0 < c1):
        return 0.0
    n = max(1, int(math.floor((v1 - v0) / dt + 0.5)))
    h = (v1 - v0) / n
    # Samples m with v0 + (m + 0.5) h in [c0, c1].
    m = max(0, int(math.ceil((c0 - v0) / h - 0.5)))
    m_end = min(n, int(math.floor((c1 - v0) / h - 0.5)) + 1)
    off_i = 1 if d_i > 0.0 else 0
    off_j = 1 if d_j > 0.0 else 0
    off_k = 1 if d_k > 0.0 else 0
    stride_j = ni
    stride_k = ni * nj
    # Neighbour offsets (0 along an axis of one voxel) and the last cell origin.
    di = 1 if ni > 1 else 0
    dj = stride_j if nj > 1 else 0
    dk = stride_k if nk > 1 else 0
    last_i = max(ni - 2, 0)
    last_j = max(nj - 2, 0)
    last_k = max(nk - 2, 0)
    top_i = ni - 1.0
    top_j = nj - 1.0
    top_k = nk - 1.0
    acc = 0.0
    while m < m_end:
        # The block holding sample m (plane coordinates, clamped) and its exit time.
        t = v0 + (m + 0.5) * h
        bi = min(max(int(math.floor(s_i + t * d_i)), 0), ni - 1) >> shift
        bj = min(max(int(math.floor(s_j + t * d_j)), 0), nj - 1) >> shift
        bk = min(max(int(math.floor(s_k + t * d_k)), 0), nk - 1) >> shift
        t_exit = _INF
        if d_i != 0.0:
            t_exit = min(t_exit, (((bi + off_i) << shift) - s_i) * inv_i)
        if d_j != 0.0:
            t_exit = min(t_exit, (((bj + off_j) << shift) - s_j) * inv_j)
        if d_k != 0.0:
            t_exit = min(t_exit, (((bk + off_k) << shift) - s_k) * inv_k)
        # The first sample at or after the exit; rounding may put it one sample
        # off, which only moves a sample to the neighbouring run (the block of
        # each run's first sample is looked up), never loses one.
        m_next = max(m + 1, int(math.ceil((t_exit - v0) / h - 0.5)))
        if occ[(bk * nbj + bj) * nbi + bi] == 0:
            m = m_next - 1 if m_next - 1 > m else m_next
            continue
        m_stop = min(m_end, m_next)
        while m < m_stop:
            t = v0 + (m + 0.5) * h
            # Index coordinates (voxel centres at integers), clamped to the centres' hull.
            u_i = min(max(s_i + t * d_i - 0.5, 0.0), top_i)
            u_j = min(max(s_j + t * d_j - 0.5, 0.0), top_j)
            u_k = min(max(s_k + t * d_k - 0.5, 0.0), top_k)
            i0 = min(int(u_i), last_i)
            j0 = min(int(u_j), last_j)
            k0 = min(int(u_k), last_k)
            f_i = u_i - i0
            f_j = u_j - j0
            f_k = u_k - k0
            base = k0 * stride_k + j0 * stride_j + i0
            c00 = mu[base] + f_i * (mu[base + di] - mu[base])
            c01 = mu[base + dj] + f_i * (mu[base + dj + di] - mu[base + dj])
            c10 = mu[base + dk] + f_i * (mu[base + dk + di] - mu[base + dk])
            c11 = mu[base + dk + dj] + f_i * (mu[base + dk + dj + di] - mu[base + dk + dj])
            c0_ = c00 + f_j * (c01 - c00)
            c1_ = c10 + f_j * (c11 - c10)
            acc += c0_ + f_k * (c1_ - c0_)
            m += 1
    return acc * h


_siddon_ray_cpu = njit(cache=True)(siddon_ray)
_trilinear_ray_cpu = njit(cache=True)(trilinear_ray)


@njit(cache=True)
def _ray(frames: np.ndarray, d: int, r: int, c: int) -> tuple[float, float, float, float, float,
                                                                float]:
    """Source and direction (plane coordinates) of pixel (r, c) of DRR ``d``."""
    s_i = frames[d, 0, 0]
    s_j = frames[d, 0, 1]
    s_k = frames[d, 0, 2]
    d_i = frames[d, 1, 0] + c * frames[d, 2, 0] + r * frames[d, 3, 0] - s_i
    d_j = frames[d, 1, 1] + c * frames[d, 2, 1] + r * frames[d, 3, 1] - s_j
    d_k = frames[d, 1, 2] + c * frames[d, 2, 2] + r * frames[d, 3, 2] - s_k
    return s_i, s_j, s_k, d_i, d_j, d_k


@njit(cache=True)
def _length(metric: np.ndarray, d_i: float, d_j: float, d_k: float) -> float:
    """mm per unit t of direction ``d`` (index units): ``sqrt(dᵀ M d)``."""
    q = (metric[0, 0] * d_i * d_i + metric[1, 1] * d_j * d_j + metric[2, 2] * d_k * d_k
         + 2.0 * (metric[0, 1] * d_i * d_j + metric[0, 2] * d_i * d_k + metric[1, 2] * d_j * d_k))
    return math.sqrt(q)


@njit(cache=True, parallel=True)
def drr_siddon(mu: np.ndarray, occ: np.ndarray, shape: np.ndarray, shift: int, box: np.ndarray,
               frames: np.ndarray, metric: np.ndarray, out: np.ndarray) -> None:
    """Exact line integrals of every pixel of every DRR, parallel over detector rows.

    Parameters
    ----------
    mu : ndarray of shape (nk * nj * ni,), float32
    occ : ndarray of shape (nbk * nbj * nbi,), uint8
    shape : ndarray of int64 ``(ni, nj, nk, nbi, nbj, nbk)``
    shift : int
        Blocks are ``2**shift`` voxels a side.
    box : ndarray of float64 ``(lo_i, lo_j, lo_k, hi_i, hi_j, hi_k)``, plane coordinates
    frames : ndarray of shape (n, 4, 3), float64
        Per DRR: source, pixel (0, 0), column step, row step (plane coordinates).
    metric : ndarray of shape (3, 3), float64
        ``Aᵀ A`` of the index-to-patient matrix ``A``.
    out : ndarray of shape (n, rows, columns), float32
        Line integrals ∫μ dl (dimensionless), written.
    """
    n, rows, cols = out.shape
    ni, nj, nk, nbi, nbj = shape[0], shape[1], shape[2], shape[3], shape[4]
    for task in prange(n * rows):
        d = task // rows
        r = task - d * rows
        for c in range(cols):
            s_i, s_j, s_k, d_i, d_j, d_k = _ray(frames, d, r, c)
            value = _siddon_ray_cpu(mu, occ, ni, nj, nk, nbi, nbj, shift, box[0], box[1], box[2],
                                    box[3], box[4], box[5], s_i, s_j, s_k, d_i, d_j, d_k)
            out[d, r, c] = value * _length(metric, d_i, d_j, d_k)


@njit(cache=True, parallel=True)
def drr_trilinear(mu: np.ndarray, occ: np.ndarray, shape: np.ndarray, shift: int,
                  box: np.ndarray, frames: np.ndarray, metric: np.ndarray, step_mm: float,
                  out: np.ndarray) -> None:
    """Fixed-step trilinear line integrals, parallel over detector rows.

    Parameters as :func:`drr_siddon`, plus ``step_mm``: the sampling step in mm
    (adjusted per ray so the steps tile the ray's chord through the volume).
    """
    n, rows, cols = out.shape
    ni, nj, nk, nbi, nbj = shape[0], shape[1], shape[2], shape[3], shape[4]
    for task in prange(n * rows):
        d = task // rows
        r = task - d * rows
        for c in range(cols):
            s_i, s_j, s_k, d_i, d_j, d_k = _ray(frames, d, r, c)
            length = _length(metric, d_i, d_j, d_k)
            value = _trilinear_ray_cpu(mu, occ, ni, nj, nk, nbi, nbj, shift, box[0], box[1],
                                       box[2], box[3], box[4], box[5], s_i, s_j, s_k, d_i, d_j,
                                       d_k, step_mm / length)
            out[d, r, c] = value * length


@njit(cache=True, parallel=True)
def hu_to_mu(hu: np.ndarray, lut: np.ndarray, out: np.ndarray) -> None:
    """``out[n] = lut[hu[n] + 32768]`` over raveled arrays (int16 in, float32 out)."""
    for n in prange(hu.size):
        out[n] = lut[hu[n] + 32768]


@njit(cache=True, parallel=True)
def block_occupancy(mu: np.ndarray, block: int, halo: int, occ: np.ndarray) -> None:
    """Mark blocks holding a non-zero voxel within ``halo`` voxels of them.

    Parameters
    ----------
    mu : ndarray of shape (nk, nj, ni), float32
    block : int
        Block edge in voxels.
    halo : int
        0 for exact traversal, 1 for trilinear sampling (a sample reads the
        voxels around it).
    occ : ndarray of shape (nbk, nbj, nbi), uint8
        Written: 1 where a block is occupied.
    """
    nk, nj, ni = mu.shape
    nbk, nbj, nbi = occ.shape
    for task in prange(nbk * nbj):
        bk = task // nbj
        bj = task - bk * nbj
        k_lo = max(bk * block - halo, 0)
        k_hi = min((bk + 1) * block + halo, nk)
        j_lo = max(bj * block - halo, 0)
        j_hi = min((bj + 1) * block + halo, nj)
        for bi in range(nbi):
            i_lo = max(bi * block - halo, 0)
            i_hi = min((bi + 1) * block + halo, ni)
            found = 0
            for k in range(k_lo, k_hi):
                for j in range(j_lo, j_hi):
                    for i in range(i_lo, i_hi):
                        if mu[k, j, i] != 0.0:
                            found = 1
                            break
                    if found:
                        break
                if found:
                    break
            occ[bk, bj, bi] = found
