"""Numba kernels of :mod:`rtforge.core.reslice` (private: call :func:`rtforge.core.reslice.reslice`).

Every function here takes arrays and scalars only; the front validates them
and chooses the kernel.

Conventions
-----------
- ``volume`` is the input CT, int16, C-contiguous, shape ``(nk, nj, ni)`` in
  stack order; ``out`` is a C-contiguous int16 slab ``(nks, NJ, NI)`` of the
  output grid starting at output slice ``k_start``.
- ``coords`` is float64 of shape (4, 3): row 0 holds the three input
  coordinates of output voxel ``[0, 0, 0]``, rows 1, 2 and 3 what they gain per
  output column (I), row (J) and slice (K).  The coordinates are fractional
  column and row indices ``(u, v)`` in slice 0's in-plane frame, and a normal
  coordinate: the slice index ``w`` for a lattice (regular or sheared), the
  offset ``d`` in mm from slice 0 for a general stack.  Slice ``k``'s own
  in-plane indices are ``u - shift_u(k)``, ``v - shift_v(k)``.
- Output rows are independent; ``prange`` runs over tasks of
  ``_ROWS_PER_TASK`` rows, so no two threads write one cell.  Along a row the
  coordinates are affine in I, so the columns inside the input are solved per
  row (exactly for a regular lattice; a superset, refined per voxel, when the
  in-plane frame moves between slices) and the rest is set to ``fill``.
- Linear interpolation runs in blocks of ``_BLOCK`` voxels: (1) coordinates,
  flat indices and weights, (2) the eight int16 reads, (3) the arithmetic.
  Steps 1 and 3 have no memory indirection and compile to SIMD (a general
  stack splits step 1 where the row crosses a slice, so each piece has one
  slice pair); step 2 is the only gather.  Arithmetic is float64: with AVX-512 it
  costs no more than float32 (the gather dominates) and leaves the result
  exact up to the final rounding.  Indices are intp.  No ``fastmath``.
- Rounding is to nearest, half away from zero; clamping to ``[lo, hi]`` comes
  before it and never applies to ``fill``.  Input voxels equal to ``pad``
  (Pixel Padding Value; any value outside int16 disables it) are read as
  ``fill``.  Ties of nearest-neighbour sampling go to the higher index.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

_BLOCK = 64  # voxels per linear-interpolation block (its buffers stay in L1)
_ROWS_PER_TASK = 32  # output rows per parallel task


# ------------------------------------------------------------------ helpers
@njit(cache=True, nogil=True)
def _clip_interval(a0, step, lo, hi, first, last):
    """Tighten ``[first, last]`` to the I where ``lo <= a0 + I * step <= hi``.

    Bounds stay floats (they may be infinite); the interval is empty when
    ``last < first``.
    """
    if step > 0.0:
        first = max(first, np.ceil((lo - a0) / step))
        last = min(last, np.floor((hi - a0) / step))
    elif step < 0.0:
        first = max(first, np.ceil((hi - a0) / step))
        last = min(last, np.floor((lo - a0) / step))
    elif not (lo <= a0 <= hi):
        last = first - 1.0
    return first, last


@njit(cache=True, nogil=True)
def _row_start(coords, kk, jj):
    """Input coordinates of the first voxel of output row ``(kk, jj)``."""
    return (coords[0, 0] + jj * coords[2, 0] + kk * coords[3, 0],
            coords[0, 1] + jj * coords[2, 1] + kk * coords[3, 1],
            coords[0, 2] + jj * coords[2, 2] + kk * coords[3, 2])


@njit(cache=True, nogil=True)
def _fill_outside(o, first, last, fill):
    """Write ``fill`` outside columns ``[first, last]``; return them as ints (empty: 0, -1)."""
    if last < first:
        o[:] = fill
        return 0, -1
    i_first = int(first)
    i_last = int(last)
    o[:i_first] = fill
    o[i_last + 1:] = fill
    return i_first, i_last


@njit(cache=True, nogil=True, inline="always")
def _gather(flat, p0, p1, nb, di, dj, g):
    """Step 2: the 2x2 neighbourhoods at ``p0`` (slice k) and ``p1`` (slice k+1)."""
    for m in range(nb):
        a = np.uintp(p0[m])
        b = np.uintp(p1[m])
        g[0, m] = flat[a]
        g[1, m] = flat[a + di]
        g[2, m] = flat[a + dj]
        g[3, m] = flat[a + dj + di]
        g[4, m] = flat[b]
        g[5, m] = flat[b + di]
        g[6, m] = flat[b + dj]
        g[7, m] = flat[b + dj + di]


@njit(cache=True, nogil=True, inline="always")
def _blend(g, wu0, wv0, wu1, wv1, wt, inside, nb, pad, fill, lo, hi, o):
    """Step 3: bilinear in each slice with its own weights, linear between them, rounded."""
    for m in range(nb):
        x0 = fill if g[0, m] == pad else g[0, m]
        x1 = fill if g[1, m] == pad else g[1, m]
        x2 = fill if g[2, m] == pad else g[2, m]
        x3 = fill if g[3, m] == pad else g[3, m]
        y0 = fill if g[4, m] == pad else g[4, m]
        y1 = fill if g[5, m] == pad else g[5, m]
        y2 = fill if g[6, m] == pad else g[6, m]
        y3 = fill if g[7, m] == pad else g[7, m]
        a = x0 + wu0[m] * (x1 - x0)
        b = x2 + wu0[m] * (x3 - x2)
        s0 = a + wv0[m] * (b - a)
        a = y0 + wu1[m] * (y1 - y0)
        b = y2 + wu1[m] * (y3 - y2)
        s1 = a + wv1[m] * (b - a)
        val = min(max(s0 + wt[m] * (s1 - s0), lo), hi)
        rounded = np.int16(val + 0.5 if val >= 0.0 else val - 0.5)
        o[m] = rounded if inside[m] else np.int16(fill)


@njit(cache=True, nogil=True)
def _stored(val, pad, fill, lo, hi):
    """An input value as written by the non-interpolating kernels."""
    return fill if val == pad else min(max(val, lo), hi)


# ------------------------------------------------------------------ kernels
@njit(cache=True, parallel=True, nogil=True)
def reindex(volume, out, k_start, index_map, pad, fill, lo, hi):
    """Exact re-index: every output centre is an input centre.

    Parameters
    ----------
    volume : ndarray of shape (nk, nj, ni), dtype int16
    out : ndarray of shape (nks, NJ, NI), dtype int16
    k_start : int
        Output slice of ``out[0]``.
    index_map : ndarray of shape (4, 3), dtype int64
        Input index ``(i, j, k)`` of output voxel ``[0, 0, 0]`` and its change
        per output column, row and slice.
    pad, fill, lo, hi : int
        Padding value (outside int16: none), outside value, clamp bounds.
    """
    nk, nj, ni = volume.shape
    nks, njo, nio = out.shape
    flat = volume.ravel()
    si, sj, sk = index_map[1, 0], index_map[1, 1], index_map[1, 2]
    dp = (sk * nj + sj) * ni + si
    nrows = nks * njo
    for task in prange((nrows + _ROWS_PER_TASK - 1) // _ROWS_PER_TASK):
        for row in range(task * _ROWS_PER_TASK, min(nrows, (task + 1) * _ROWS_PER_TASK)):
            kk = row // njo
            jj = row - kk * njo
            o = out[kk, jj]
            kg = kk + k_start
            i0 = index_map[0, 0] + jj * index_map[2, 0] + kg * index_map[3, 0]
            j0 = index_map[0, 1] + jj * index_map[2, 1] + kg * index_map[3, 1]
            k0 = index_map[0, 2] + jj * index_map[2, 2] + kg * index_map[3, 2]
            first, last = _clip_interval(float(i0), float(si), 0.0, ni - 1.0, 0.0, nio - 1.0)
            first, last = _clip_interval(float(j0), float(sj), 0.0, nj - 1.0, first, last)
            first, last = _clip_interval(float(k0), float(sk), 0.0, nk - 1.0, first, last)
            i_first, i_last = _fill_outside(o, first, last, fill)
            p = ((k0 + i_first * sk) * nj + j0 + i_first * sj) * ni + i0 + i_first * si
            for col in range(i_first, i_last + 1):
                o[col] = _stored(flat[np.uintp(p)], pad, fill, lo, hi)
                p += dp


@njit(cache=True, parallel=True, nogil=True)
def linear_regular(volume, out, k_start, coords, pad, fill, lo, hi):
    """Trilinear interpolation from an evenly spaced, untilted stack.

    Parameters
    ----------
    volume : ndarray of shape (nk, nj, ni), dtype int16
    out : ndarray of shape (nks, NJ, NI), dtype int16
    k_start : int
        Output slice of ``out[0]``.
    coords : ndarray of shape (4, 3), dtype float64
        Affine map from output index to input index ``(u, v, w)`` (see module).
    pad, fill, lo, hi : int
        Padding value (outside int16: none), outside value, clamp bounds.

    Notes
    -----
    Inside means every coordinate within half a voxel of the outermost
    centres, ``-0.5 <= u <= ni - 0.5`` (likewise ``v``, ``w``); coordinates
    are then clamped to the centres, so the half-voxel border takes the edge
    value.  For a single-slice stack the front scales ``w`` by the slab
    thickness.
    """
    nk, nj, ni = volume.shape
    nks, njo, nio = out.shape
    flat = volume.ravel()
    umax, vmax, wmax = ni - 1.0, nj - 1.0, nk - 1.0
    imax, jmax, kmax = max(ni - 2, 0), max(nj - 2, 0), max(nk - 2, 0)
    di = np.uintp(1 if ni > 1 else 0)
    dj = np.uintp(ni if nj > 1 else 0)
    dk = nj * ni if nk > 1 else 0
    padf, fillf, lof, hif = float(pad), float(fill), float(lo), float(hi)
    du, dv, dw = coords[1, 0], coords[1, 1], coords[1, 2]
    nrows = nks * njo
    for task in prange((nrows + _ROWS_PER_TASK - 1) // _ROWS_PER_TASK):
        g = np.empty((8, _BLOCK))
        wu = np.empty(_BLOCK)
        wv = np.empty(_BLOCK)
        wt = np.empty(_BLOCK)
        p0 = np.empty(_BLOCK, np.intp)
        p1 = np.empty(_BLOCK, np.intp)
        inside = np.ones(_BLOCK, np.bool_)
        for row in range(task * _ROWS_PER_TASK, min(nrows, (task + 1) * _ROWS_PER_TASK)):
            kk = row // njo
            jj = row - kk * njo
            o = out[kk, jj]
            u0, v0, w0 = _row_start(coords, kk + k_start, jj)
            first, last = _clip_interval(u0, du, -0.5, ni - 0.5, 0.0, nio - 1.0)
            first, last = _clip_interval(v0, dv, -0.5, nj - 0.5, first, last)
            first, last = _clip_interval(w0, dw, -0.5, nk - 0.5, first, last)
            i_first, i_last = _fill_outside(o, first, last, fill)
            for start in range(i_first, i_last + 1, _BLOCK):
                nb = min(_BLOCK, i_last + 1 - start)
                for m in range(nb):
                    col = start + m
                    uc = min(max(u0 + col * du, 0.0), umax)
                    vc = min(max(v0 + col * dv, 0.0), vmax)
                    wc = min(max(w0 + col * dw, 0.0), wmax)
                    i = min(np.intp(uc), imax)
                    j = min(np.intp(vc), jmax)
                    k = min(np.intp(wc), kmax)
                    wu[m] = uc - i
                    wv[m] = vc - j
                    wt[m] = wc - k
                    p0[m] = (k * nj + j) * ni + i
                    p1[m] = p0[m] + dk
                _gather(flat, p0, p1, nb, di, dj, g)
                _blend(g, wu, wv, wu, wv, wt, inside, nb, padf, fillf, lof, hif,
                       o[start:start + nb])


@njit(cache=True, parallel=True, nogil=True)
def nearest_regular(volume, out, k_start, coords, pad, fill, lo, hi):
    """Nearest-neighbour sampling from an evenly spaced, untilted stack.

    Parameters and inside rule are those of :func:`linear_regular`.
    """
    nk, nj, ni = volume.shape
    nks, njo, nio = out.shape
    flat = volume.ravel()
    du, dv, dw = coords[1, 0], coords[1, 1], coords[1, 2]
    nrows = nks * njo
    for task in prange((nrows + _ROWS_PER_TASK - 1) // _ROWS_PER_TASK):
        for row in range(task * _ROWS_PER_TASK, min(nrows, (task + 1) * _ROWS_PER_TASK)):
            kk = row // njo
            jj = row - kk * njo
            o = out[kk, jj]
            u0, v0, w0 = _row_start(coords, kk + k_start, jj)
            first, last = _clip_interval(u0, du, -0.5, ni - 0.5, 0.0, nio - 1.0)
            first, last = _clip_interval(v0, dv, -0.5, nj - 0.5, first, last)
            first, last = _clip_interval(w0, dw, -0.5, nk - 0.5, first, last)
            i_first, i_last = _fill_outside(o, first, last, fill)
            for col in range(i_first, i_last + 1):
                i = min(max(np.intp(np.floor(u0 + col * du + 0.5)), 0), ni - 1)
                j = min(max(np.intp(np.floor(v0 + col * dv + 0.5)), 0), nj - 1)
                k = min(max(np.intp(np.floor(w0 + col * dw + 0.5)), 0), nk - 1)
                o[col] = _stored(flat[np.uintp((k * nj + j) * ni + i)], pad, fill, lo, hi)


@njit(cache=True, parallel=True, nogil=True)
def linear_sheared(volume, out, k_start, coords, shear_u, shear_v, pad, fill, lo, hi):
    """Per-slice linear interpolation from an evenly spaced, tilted stack.

    Slice ``k`` is shifted in-plane by ``k * (shear_u, shear_v)`` pixels from
    slice 0 (gantry tilt); its own indices of a point are ``u - k * shear_u``
    and ``v - k * shear_v``.

    Parameters
    ----------
    volume, out, k_start, coords, pad, fill, lo, hi
        As in :func:`linear_regular` (at least two slices).
    shear_u, shear_v : float
        In-plane shift per slice, pixels.

    Notes
    -----
    Inside: ``-0.5 <= w <= nk - 0.5`` and the in-plane indices in the frame
    interpolated between the bracketing slices, ``u - w_c * shear_u`` with
    ``w`` clamped to ``[0, nk - 1]`` (likewise ``v``), within half a pixel of
    the outermost centres.  The row interval uses the unclamped ``w``,
    widened by half a shift, and each voxel is then tested.
    """
    nk, nj, ni = volume.shape
    nks, njo, nio = out.shape
    flat = volume.ravel()
    umax, vmax, wmax = ni - 1.0, nj - 1.0, nk - 1.0
    imax, jmax, kmax = max(ni - 2, 0), max(nj - 2, 0), nk - 2
    di = np.uintp(1 if ni > 1 else 0)
    dj = np.uintp(ni if nj > 1 else 0)
    padf, fillf, lof, hif = float(pad), float(fill), float(lo), float(hi)
    du, dv, dw = coords[1, 0], coords[1, 1], coords[1, 2]
    eu, ev = 0.5 * abs(shear_u), 0.5 * abs(shear_v)
    nrows = nks * njo
    for task in prange((nrows + _ROWS_PER_TASK - 1) // _ROWS_PER_TASK):
        g = np.empty((8, _BLOCK))
        wu0 = np.empty(_BLOCK)
        wv0 = np.empty(_BLOCK)
        wu1 = np.empty(_BLOCK)
        wv1 = np.empty(_BLOCK)
        wt = np.empty(_BLOCK)
        p0 = np.empty(_BLOCK, np.intp)
        p1 = np.empty(_BLOCK, np.intp)
        inside = np.empty(_BLOCK, np.bool_)
        for row in range(task * _ROWS_PER_TASK, min(nrows, (task + 1) * _ROWS_PER_TASK)):
            kk = row // njo
            jj = row - kk * njo
            o = out[kk, jj]
            u0, v0, w0 = _row_start(coords, kk + k_start, jj)
            first, last = _clip_interval(w0, dw, -0.5, nk - 0.5, 0.0, nio - 1.0)
            first, last = _clip_interval(u0 - w0 * shear_u, du - dw * shear_u, -0.5 - eu,
                                         ni - 0.5 + eu, first, last)
            first, last = _clip_interval(v0 - w0 * shear_v, dv - dw * shear_v, -0.5 - ev,
                                         nj - 0.5 + ev, first, last)
            i_first, i_last = _fill_outside(o, first, last, fill)
            for start in range(i_first, i_last + 1, _BLOCK):
                nb = min(_BLOCK, i_last + 1 - start)
                for m in range(nb):
                    col = start + m
                    u = u0 + col * du
                    v = v0 + col * dv
                    w = min(max(w0 + col * dw, 0.0), wmax)
                    k = min(np.intp(w), kmax)
                    wt[m] = w - k
                    ub = u - w * shear_u
                    vb = v - w * shear_v
                    inside[m] = (ub >= -0.5) & (ub <= ni - 0.5) & (vb >= -0.5) & (vb <= nj - 0.5)
                    u -= k * shear_u
                    v -= k * shear_v
                    uc = min(max(u, 0.0), umax)
                    vc = min(max(v, 0.0), vmax)
                    i = min(np.intp(uc), imax)
                    j = min(np.intp(vc), jmax)
                    wu0[m] = uc - i
                    wv0[m] = vc - j
                    p0[m] = (k * nj + j) * ni + i
                    uc = min(max(u - shear_u, 0.0), umax)
                    vc = min(max(v - shear_v, 0.0), vmax)
                    i = min(np.intp(uc), imax)
                    j = min(np.intp(vc), jmax)
                    wu1[m] = uc - i
                    wv1[m] = vc - j
                    p1[m] = ((k + 1) * nj + j) * ni + i
                _gather(flat, p0, p1, nb, di, dj, g)
                _blend(g, wu0, wv0, wu1, wv1, wt, inside, nb, padf, fillf, lof, hif,
                       o[start:start + nb])


@njit(cache=True, nogil=True)
def _bracket(d, slices, lookup, inv_bin):
    """Slices ``(k, k + 1)`` around offset ``d`` (clamped to the stack) and ``t`` in [0, 1]."""
    nk = slices.shape[0]
    dc = min(max(d, 0.0), slices[nk - 1, 0])
    k = lookup[min(np.intp(dc * inv_bin), lookup.shape[0] - 1)]
    while k < nk - 2 and dc >= slices[k + 1, 0]:
        k += 1
    t = min(max((dc - slices[k, 0]) * slices[k, 1], 0.0), 1.0)
    return k, t


@njit(cache=True, nogil=True)
def _inplane_inside(u, v, k, t, slices, ni, nj):
    """Half-pixel rule in the in-plane frame interpolated between slices k and k+1."""
    ub = u - (slices[k, 2] + t * (slices[k + 1, 2] - slices[k, 2]))
    vb = v - (slices[k, 3] + t * (slices[k + 1, 3] - slices[k, 3]))
    return -0.5 <= ub <= ni - 0.5 and -0.5 <= vb <= nj - 0.5


@njit(cache=True, nogil=True)
def _segment_end(seg, end, d0, dd, k, slices):
    """First column after ``seg`` (at most ``end``) whose offset leaves the bracket ``k, k+1``."""
    nk = slices.shape[0]
    if dd > 0.0 and k < nk - 2:
        bound = np.ceil((slices[k + 1, 0] - d0) / dd)
    elif dd < 0.0 and k > 0:
        bound = np.floor((slices[k, 0] - d0) / dd) + 1.0
    else:
        return end
    return int(min(max(bound, seg + 1.0), float(end)))


@njit(cache=True, nogil=True, inline="always")
def _stack_weights(u0, v0, d0, du, dv, dd, m_first, m_stop, start, k, slices, ni, nj,
                   wu0, wv0, wu1, wv1, wt, p0, p1, inside):
    """Step 1 for block entries ``m_first:m_stop``, which share the bracket ``k, k+1``."""
    umax, vmax = ni - 1.0, nj - 1.0
    imax, jmax = max(ni - 2, 0), max(nj - 2, 0)
    dk, inv_gap = slices[k, 0], slices[k, 1]
    su0, sv0, su1, sv1 = slices[k, 2], slices[k, 3], slices[k + 1, 2], slices[k + 1, 3]
    for m in range(m_first, m_stop):
        col = start + m
        u = u0 + col * du
        v = v0 + col * dv
        t = min(max((d0 + col * dd - dk) * inv_gap, 0.0), 1.0)
        wt[m] = t
        ub = u - (su0 + t * (su1 - su0))
        vb = v - (sv0 + t * (sv1 - sv0))
        inside[m] = (ub >= -0.5) & (ub <= ni - 0.5) & (vb >= -0.5) & (vb <= nj - 0.5)
        uc = min(max(u - su0, 0.0), umax)
        vc = min(max(v - sv0, 0.0), vmax)
        i = min(np.intp(uc), imax)
        j = min(np.intp(vc), jmax)
        wu0[m] = uc - i
        wv0[m] = vc - j
        p0[m] = (k * nj + j) * ni + i
        uc = min(max(u - su1, 0.0), umax)
        vc = min(max(v - sv1, 0.0), vmax)
        i = min(np.intp(uc), imax)
        j = min(np.intp(vc), jmax)
        wu1[m] = uc - i
        wv1[m] = vc - j
        p1[m] = ((k + 1) * nj + j) * ni + i


@njit(cache=True, nogil=True)
def _stack_row(coords, kk, jj, limits, ni, nj, nio):
    """Row start ``(u, v, d)`` and the superset column interval of a general stack."""
    u0, v0, d0 = _row_start(coords, kk, jj)
    du, dv, dd = coords[1, 0], coords[1, 1], coords[1, 2]
    first, last = _clip_interval(d0, dd, limits[0], limits[1], 0.0, nio - 1.0)
    first, last = _clip_interval(u0 - d0 * limits[2], du - dd * limits[2], -0.5 - limits[4],
                                 ni - 0.5 + limits[4], first, last)
    first, last = _clip_interval(v0 - d0 * limits[3], dv - dd * limits[3], -0.5 - limits[5],
                                 nj - 0.5 + limits[5], first, last)
    return u0, v0, d0, first, last


@njit(cache=True, parallel=True, nogil=True)
def linear_stack(volume, out, k_start, coords, slices, lookup, inv_bin, limits, pad, fill,
                 lo, hi):
    """Per-slice linear interpolation from any stack (uneven, tilted, or both).

    For each output point: find the slices ``k, k+1`` bracketing its offset
    ``d`` along the normal, interpolate bilinearly in each at the point's
    projection along the normal onto that slice (its own in-plane indices),
    then linearly with ``t = (d - d_k) / (d_{k+1} - d_k)``.

    Parameters
    ----------
    volume, out, k_start, pad, fill, lo, hi
        As in :func:`linear_regular` (at least two slices).
    coords : ndarray of shape (4, 3), dtype float64
        Affine map from output index to ``(u, v, d)`` (see module).
    slices : ndarray of shape (nk, 4), dtype float64
        Per slice: offset ``d_k`` (mm, ``d_0 = 0``, increasing), ``1 / gap``
        to the next slice (0 for the last), in-plane shift ``(su, sv)`` in
        pixels from slice 0.
    lookup : ndarray of shape (nbins,), dtype intp
        For bins of width ``1 / inv_bin`` mm from ``d = 0``: the last slice
        ``k <= nk - 2`` with ``d_k`` at or below the bin's lower edge.
    inv_bin : float
        Bins per mm.
    limits : ndarray of shape (6,), dtype float64
        ``d_lo, d_hi``: offsets bounding the inside along the normal (half of
        the first and last gap beyond the outer slices); ``slope_u, slope_v``:
        a linear model of the shifts, pixels per mm; ``err_u, err_v``: how far
        the clamped, interpolated shifts stray from it (bounds the superset
        row interval).
    """
    nk, nj, ni = volume.shape
    nks, njo, nio = out.shape
    flat = volume.ravel()
    di = np.uintp(1 if ni > 1 else 0)
    dj = np.uintp(ni if nj > 1 else 0)
    padf, fillf, lof, hif = float(pad), float(fill), float(lo), float(hi)
    du, dv, dd = coords[1, 0], coords[1, 1], coords[1, 2]
    nrows = nks * njo
    for task in prange((nrows + _ROWS_PER_TASK - 1) // _ROWS_PER_TASK):
        g = np.empty((8, _BLOCK))
        wu0 = np.empty(_BLOCK)
        wv0 = np.empty(_BLOCK)
        wu1 = np.empty(_BLOCK)
        wv1 = np.empty(_BLOCK)
        wt = np.empty(_BLOCK)
        p0 = np.empty(_BLOCK, np.intp)
        p1 = np.empty(_BLOCK, np.intp)
        inside = np.empty(_BLOCK, np.bool_)
        for row in range(task * _ROWS_PER_TASK, min(nrows, (task + 1) * _ROWS_PER_TASK)):
            kk = row // njo
            jj = row - kk * njo
            o = out[kk, jj]
            u0, v0, d0, first, last = _stack_row(coords, kk + k_start, jj, limits, ni, nj, nio)
            i_first, i_last = _fill_outside(o, first, last, fill)
            for start in range(i_first, i_last + 1, _BLOCK):
                nb = min(_BLOCK, i_last + 1 - start)
                seg = start
                while seg < start + nb:
                    k, _ = _bracket(d0 + seg * dd, slices, lookup, inv_bin)
                    seg_end = _segment_end(seg, start + nb, d0, dd, k, slices)
                    _stack_weights(u0, v0, d0, du, dv, dd, seg - start, seg_end - start, start,
                                   k, slices, ni, nj, wu0, wv0, wu1, wv1, wt, p0, p1, inside)
                    seg = seg_end
                _gather(flat, p0, p1, nb, di, dj, g)
                _blend(g, wu0, wv0, wu1, wv1, wt, inside, nb, padf, fillf, lof, hif,
                       o[start:start + nb])


@njit(cache=True, parallel=True, nogil=True)
def nearest_stack(volume, out, k_start, coords, slices, lookup, inv_bin, limits, pad, fill,
                  lo, hi):
    """Nearest slice along the normal, then the nearest pixel in that slice's own frame.

    Parameters and inside rule are those of :func:`linear_stack`.
    """
    nk, nj, ni = volume.shape
    nks, njo, nio = out.shape
    flat = volume.ravel()
    du, dv, dd = coords[1, 0], coords[1, 1], coords[1, 2]
    nrows = nks * njo
    for task in prange((nrows + _ROWS_PER_TASK - 1) // _ROWS_PER_TASK):
        for row in range(task * _ROWS_PER_TASK, min(nrows, (task + 1) * _ROWS_PER_TASK)):
            kk = row // njo
            jj = row - kk * njo
            o = out[kk, jj]
            u0, v0, d0, first, last = _stack_row(coords, kk + k_start, jj, limits, ni, nj, nio)
            i_first, i_last = _fill_outside(o, first, last, fill)
            for col in range(i_first, i_last + 1):
                u = u0 + col * du
                v = v0 + col * dv
                k, t = _bracket(d0 + col * dd, slices, lookup, inv_bin)
                if not _inplane_inside(u, v, k, t, slices, ni, nj):
                    o[col] = fill
                    continue
                if t >= 0.5:
                    k += 1
                i = min(max(np.intp(np.floor(u - slices[k, 2] + 0.5)), 0), ni - 1)
                j = min(max(np.intp(np.floor(v - slices[k, 3] + 0.5)), 0), nj - 1)
                o[col] = _stored(flat[np.uintp((k * nj + j) * ni + i)], pad, fill, lo, hi)
