"""Contours to voxel masks and back, on any :class:`~rtforge.core.geometry.Grid`.

Conventions
-----------
Masks are indexed ``[k, j, i]`` (slice, row, column) like every rtforge
array; contour points are patient coordinates ``(x, y, z)`` in mm (LPS).
Voxel ``[k, j, i]`` is centred at ``grid.index_to_patient((i, j, k))``.

:func:`contours_to_mask` fills closed planar contours slice by slice with
the even-odd rule, so a contour inside another is a hole, whatever the
point order.  Each contour belongs to the grid slice whose plane is nearest
(within half a slice); contours must lie in planes parallel to the grid's
slices.  By default a voxel is inside when its centre is (``uint8`` 0/1);
with ``supersampling=s`` each voxel is sampled on an ``s x s`` in-plane
lattice and the result is the inside fraction (``float32``), the partial
occupancy a DVH weights dose with.

:func:`mask_to_contours` is the inverse: marching squares
(:func:`skimage.measure.find_contours`) at level 0.5 on each slice, the
contours in patient coordinates, holes as separate contours.  For a 0/1
mask the contours pass halfway between inside and outside voxel centres,
so filling them again gives back the same mask.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from numpy.typing import ArrayLike
from skimage import measure

from rtforge.core import _contours_kernels as _k
from rtforge.core.contours import Contour
from rtforge.core.geometry import Grid
from rtforge.errors import GeometryError, InvalidInputError

__all__ = ["contours_to_mask", "mask_to_contours"]

#: Largest distance (mm) of a contour point from the plane of the grid slice it is put on,
#: beyond the distance of the contour's own plane.
_PLANE_TOLERANCE_MM = 0.05


def _closed_points(contours: Sequence[ArrayLike | Contour]) -> list[np.ndarray]:
    out = []
    for n, c in enumerate(contours):
        if isinstance(c, Contour):
            if not c.is_closed:
                continue
            pts = c.points
        else:
            pts = np.asarray(c, dtype=np.float64)
            if pts.ndim != 2 or pts.shape[1] != 3:
                raise GeometryError(f"contour {n} must have shape (N, 3), got {pts.shape}")
            if not np.all(np.isfinite(pts)):
                raise GeometryError(f"contour {n} holds a NaN or infinite coordinate")
        if pts.shape[0] >= 3:
            out.append(pts)
    return out


def contours_to_mask(contours: Sequence[ArrayLike | Contour], grid: Grid, *,
                     supersampling: int = 1) -> np.ndarray:
    """Rasterise closed planar contours onto a grid with the even-odd rule.

    Parameters
    ----------
    contours : sequence of array_like of shape (N, 3) or Contour
        Closed planar contours in mm.  :class:`Contour` objects of other
        geometric types (POINT, OPEN_PLANAR) are skipped.
    grid : Grid
        The output lattice (may be oblique or sheared).
    supersampling : int, optional
        Samples per voxel along each in-plane axis (default 1: the voxel centre).

    Returns
    -------
    ndarray of shape grid.shape
        ``uint8`` 0/1 when ``supersampling == 1``, else ``float32`` inside
        fractions in [0, 1].  Contours whose nearest slice lies outside the
        grid contribute nothing.

    Raises
    ------
    GeometryError
        If a contour is not (N, 3), not finite, or not in a plane parallel
        to the grid's slices.
    InvalidInputError
        If ``supersampling`` is not a positive integer.

    Notes
    -----
    When contours from several planes fall on one grid slice (contours finer
    than the grid), only the plane nearest the slice is used.
    """
    if isinstance(supersampling, bool) or int(supersampling) != supersampling \
            or supersampling < 1:
        raise InvalidInputError(f"supersampling must be a positive integer, got {supersampling!r}")
    nk, nj, ni = grid.shape
    normal = grid.slice_normal
    slab = float(grid.spacing[2] * abs(grid.direction[:, 2] @ normal))
    by_slice: dict[int, tuple[float, list[np.ndarray]]] = {}
    for n, pts in enumerate(_closed_points(contours)):
        ijk = grid.patient_to_index(pts)
        k = ijk[:, 2]
        level = float(np.mean(k))
        if (float(np.max(k)) - float(np.min(k))) * slab > 2 * _PLANE_TOLERANCE_MM:
            raise GeometryError(f"contour {n} does not lie in a plane parallel to the grid's "
                                "slices; resample the contours or choose a grid aligned with them")
        slice_k = int(np.floor(level + 0.5))
        if not 0 <= slice_k < nk:
            continue
        distance = abs(level - slice_k)
        held = by_slice.get(slice_k)
        if held is None or distance < held[0] - 1e-9:
            by_slice[slice_k] = (distance, [ijk[:, :2]])
        elif abs(distance - held[0]) <= 1e-9:
            held[1].append(ijk[:, :2])
    dtype = np.uint8 if supersampling == 1 else np.float32
    if not by_slice:
        return np.zeros(grid.shape, dtype=dtype)
    slices = np.array(sorted(by_slice), dtype=np.intp)
    polys = [p for k in slices for p in by_slice[int(k)][1]]
    poly_offsets = np.zeros(len(polys) + 1, dtype=np.intp)
    np.cumsum([p.shape[0] for p in polys], out=poly_offsets[1:])
    slice_polys = np.zeros(slices.shape[0] + 1, dtype=np.intp)
    np.cumsum([len(by_slice[int(k)][1]) for k in slices], out=slice_polys[1:])
    ij = np.ascontiguousarray(np.concatenate(polys))
    out = np.zeros(grid.shape, dtype=np.float32)
    _k.rasterize_slices(ij, poly_offsets, slice_polys, slices, nj, ni, int(supersampling), out)
    if supersampling == 1:
        return out.astype(np.uint8)
    return out


def mask_to_contours(mask: ArrayLike, grid: Grid, *, level: float = 0.5) -> list[np.ndarray]:
    """Closed contours of a mask, slice by slice, in patient coordinates.

    Parameters
    ----------
    mask : array_like of shape grid.shape
        Binary (bool, 0/1) or fractional occupancy, indexed ``[k, j, i]``.
    grid : Grid
        Where the voxels are.
    level : float, optional
        Iso-level between outside and inside (default 0.5).

    Returns
    -------
    list of ndarray of shape (N, 3)
        Closed contours (the first point not repeated), in slice order then
        in :func:`skimage.measure.find_contours` order; outer boundaries
        and hole boundaries are separate contours.  Each lies in its
        slice's plane.

    Raises
    ------
    InvalidInputError
        If the mask's shape differs from the grid's or it is not numeric.
    """
    arr = np.asarray(mask)
    if arr.shape != grid.shape:
        raise InvalidInputError(f"mask shape {arr.shape} differs from the grid's {grid.shape}")
    if arr.dtype.kind not in "biuf":
        raise InvalidInputError(f"mask must be boolean or numeric, got dtype {arr.dtype}")
    out: list[np.ndarray] = []
    for k in np.flatnonzero(arr.reshape(arr.shape[0], -1).any(axis=1)):
        # A border of zeros closes the contours of regions touching the edge.
        padded = np.pad(arr[k].astype(np.float64), 1)
        for rc in measure.find_contours(padded, level):
            if rc.shape[0] > 1 and np.array_equal(rc[0], rc[-1]):
                rc = rc[:-1]
            if rc.shape[0] < 3:
                continue
            ijk = np.empty((rc.shape[0], 3))
            ijk[:, 0] = rc[:, 1] - 1.0
            ijk[:, 1] = rc[:, 0] - 1.0
            ijk[:, 2] = float(k)
            out.append(grid.index_to_patient(ijk))
    return out
