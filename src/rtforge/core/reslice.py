"""Resample a CT slice stack onto an axis-aligned grid (trilinear or nearest).

Conventions are those of :mod:`rtforge.core.geometry`: arrays ``[k, j, i]``
(slice, row, column), index points ``(i, j, k)``, patient coordinates LPS in
mm, and a voxel index names the voxel's centre.

Method
------
- **Exact re-index.**  When every output voxel centre is an input voxel centre
  (within 1e-4 of a voxel: an axis-aligned series in another patient
  orientation whose lattice the output grid shares, up to flips, transposes or
  integer subsampling), values are copied, bit for bit, with no interpolation.
- **Per-slice geometry** otherwise.  Slices are parallel planes with normal
  ``n = row × column``; slice ``k`` lies at offset ``d_k = n · position_k``
  (increasing with k; gaps may be uneven, and the slices may shift in-plane
  from one to the next: gantry tilt).  An output point ``p`` at ``d = n · p``
  lies between slices ``k`` and ``k + 1``.  In each of the two it is projected
  along ``n`` and interpolated bilinearly at that slice's own fractional
  pixel indices ``u = (p - position_k) · row / si`` and
  ``v = (p - position_k) · column / sj``; the two values are blended linearly
  with ``t = (d - d_k) / (d_{k+1} - d_k)``.  Nearest takes the nearest slice
  along ``n`` and the nearest pixel in that slice's frame.  One sheared affine
  is never used for an uneven stack.  Evenly spaced, untilted stacks (a
  regular lattice), and linear interpolation of evenly spaced tilted ones (a
  sheared lattice), take faster kernels that compute the same thing without
  per-slice tables.

Outside rule
------------
A sample is inside the input when

- along the normal, ``d`` is at most half of the first gap before slice 0 or
  half of the last gap beyond the last slice (for a single-slice stack, half of
  ``max(si, sj)`` either side: the slice is taken as a slab as thick as its
  coarser pixel side); and
- in-plane, its column and row coordinates lie within half a pixel of the
  outermost column and row centres, ``-0.5 <= u <= columns - 0.5`` and
  ``-0.5 <= v <= rows - 0.5``, measured in the frame interpolated between the
  two bracketing slices (for an evenly tilted stack this is the sheared
  grid's own index; for an untilted one, simply the slices' frame).

Bounds are inclusive.  Inside the input, coordinates beyond the outermost
centres take the edge value: each voxel's own extent, as ITK samples (scipy's
``map_coordinates`` with ``mode="nearest"`` agrees there).  Outside, the
output is ``fill`` (air, -1000 HU).  Voxels equal to the series' Pixel Padding
Value, when given, count as outside: they are read as ``fill`` and never
blended into tissue.

Rounding is to nearest, half away from zero (2.5 -> 3, -2.5 -> -3), never
truncation, after the optional clamp to ``[lo, hi]`` (Oncentra stores
[-1000, 3095]).  ``fill`` is written as given, never clamped.  The input stays
int16; the output is int16.
"""

from __future__ import annotations

import logging
from enum import Enum
from typing import NamedTuple

import numpy as np

from rtforge import _gc
from rtforge.core._numba_start import import_numba, import_numba_np_without_blas_probe
from rtforge.core.geometry import Grid, SliceStack
from rtforge.errors import GeometryError, InvalidInputError

with _gc.paused():  # Numba's import (see rtforge._gc)
    import_numba()
    import numba
    from numba.core.dispatcher import Dispatcher

    from rtforge.core import _reslice_kernels as _k

__all__ = ["Interpolation", "default_output_grid", "is_exact_reindex", "reslice", "load_kernels"]

logger = logging.getLogger(__name__)

_EXACT_TOL = 1e-4  # voxel: an output centre this close to an input centre is that centre
_REGULAR_TOL = 1e-4  # voxel: deviation of slice positions still treated as a regular lattice
_NO_PAD = -32769  # outside int16: no input voxel equals it
_BINS_PER_SLICE = 4  # resolution of the offset -> slice lookup of uneven stacks
_INT16 = np.iinfo(np.int16)


class Interpolation(str, Enum):
    """Interpolation of :func:`reslice`."""

    LINEAR = "linear"
    NEAREST = "nearest"


class _StackFrame(NamedTuple):
    """A stack's slices in its own frame (see :func:`_stack_frame`)."""

    axes: np.ndarray  # (3, 3): rows are the row direction, column direction, normal
    offsets: np.ndarray  # (nk,): d_k - d_0 along the normal, mm
    shifts: np.ndarray  # (nk, 2): in-plane shift of each slice from slice 0, pixels
    lattice: bool  # evenly spaced, shifts linear in k: a regular (maybe sheared) lattice
    slab: float  # mm per unit of the lattice's slice coordinate
    shear: np.ndarray  # (2,): a lattice's shift per slice, pixels (0: untilted)


def _stack_frame(stack: SliceStack) -> _StackFrame:
    """Offsets and in-plane shifts of every slice, and whether they form a lattice.

    Deviations up to ``_REGULAR_TOL`` of a voxel are taken as rounding of the
    written positions.

    Raises
    ------
    GeometryError
        If the slices are not in strictly increasing order along the normal.
    """
    si, sj = stack.pixel_spacing
    axes = np.stack([stack.row_direction, stack.column_direction, stack.normal])
    rel = stack.positions - stack.positions[0]
    offsets = rel @ axes[2]
    shifts = np.column_stack([rel @ axes[0] / si, rel @ axes[1] / sj])
    gaps = np.diff(offsets)
    if np.any(gaps <= 0):
        bad = int(np.argmax(gaps <= 0))
        raise GeometryError(
            f"stack: slices {bad} and {bad + 1} are not in increasing order along the slice "
            f"normal (gap {gaps[bad]:.6g} mm); sort the slices by position along the normal and "
            "remove duplicate positions")
    nk = stack.nslices
    if nk == 1:
        return _StackFrame(axes, offsets, shifts, True, max(si, sj), np.zeros(2))
    k = np.arange(nk)
    gap = float(offsets[-1]) / (nk - 1)
    shear = shifts[-1] / (nk - 1)
    lattice = bool(np.abs(offsets - gap * k).max() <= _REGULAR_TOL * gap
                   and np.abs(shifts - k[:, None] * shear).max() <= _REGULAR_TOL)
    if np.abs(shifts).max() <= _REGULAR_TOL:
        shear = np.zeros(2)
    return _StackFrame(axes, offsets, shifts, lattice, gap, shear)


def _stack_tables(frame: _StackFrame) -> tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """``slices``, ``lookup``, ``inv_bin`` and ``limits`` of the general-stack kernels."""
    d = frame.offsets
    nk = d.size
    slices = np.empty((nk, 4))
    slices[:, 0] = d
    slices[:-1, 1] = 1.0 / np.diff(d)
    slices[-1, 1] = 0.0
    slices[:, 2:] = frame.shifts
    nbins = _BINS_PER_SLICE * nk
    inv_bin = nbins / float(d[-1])
    edges = np.arange(nbins) / inv_bin
    lookup = np.clip(np.searchsorted(d, edges, side="right") - 1, 0, nk - 2).astype(np.intp)
    half_first, half_last = 0.5 * float(d[1] - d[0]), 0.5 * float(d[-1] - d[-2])
    slope = frame.shifts[-1] / float(d[-1])
    err = (np.abs(frame.shifts - d[:, None] * slope).max(axis=0)
           + np.abs(slope) * max(half_first, half_last) + 1e-9)
    limits = np.array([-half_first, float(d[-1]) + half_last, slope[0], slope[1],
                       err[0], err[1]])
    return slices, lookup, inv_bin, limits


def _coordinates(frame: _StackFrame, stack: SliceStack, grid: Grid, normal_unit: float
                 ) -> np.ndarray:
    """(4, 3) affine map from output index to input ``(u, v, d / normal_unit)``.

    Row 0 is the value at output voxel ``[0, 0, 0]``; rows 1-3 its change per
    output column, row and slice.
    """
    si, sj = stack.pixel_spacing
    scale = np.array([si, sj, normal_unit])[:, None]
    to_input = frame.axes / scale
    coords = np.empty((4, 3))
    coords[0] = to_input @ (grid.origin - stack.positions[0])
    coords[1:] = (to_input @ (grid.direction * grid.spacing[None, :])).T
    return coords


def _exact_index_map(frame: _StackFrame, stack: SliceStack, grid: Grid) -> np.ndarray | None:
    """Integer (4, 3) output-to-input index map when every output centre is an input centre."""
    if not frame.lattice or frame.shear.any() or stack.nslices < 2:
        return None
    coords = _coordinates(frame, stack, grid, frame.slab)
    rounded = np.rint(coords)
    extent = np.array([1.0, grid.shape[2] - 1, grid.shape[1] - 1, grid.shape[0] - 1])
    worst = extent @ np.abs(coords - rounded)
    if np.any(worst > _EXACT_TOL):
        return None
    return rounded.astype(np.int64)


def default_output_grid(stack: SliceStack,
                        spacing: tuple[float, float, float] | None = None) -> Grid:
    """Axis-aligned grid covering every input voxel centre.

    Parameters
    ----------
    stack : SliceStack
        Geometry of the input series.
    spacing : tuple of float, optional
        ``(sx, sy, sz)`` in mm; default :meth:`SliceStack.default_output_spacing`
        (in-plane spacing from the input; slice spacing the table increment for
        a tilted series, the spacing along the normal otherwise).

    Returns
    -------
    Grid
        Identity direction (Image Orientation 1\\0\\0\\0\\1\\0), origin at
        ``(x_min, y_min, z_min)`` of the input voxel centres; output slice
        ``k`` is at ``z_min + k * sz``.

    Raises
    ------
    InvalidInputError
        If ``stack`` is not a SliceStack.
    GeometryError
        If ``spacing`` does not have three positive values.
    """
    _check_stack(stack)
    return stack.bounding_grid(stack.default_output_spacing() if spacing is None else spacing)


def is_exact_reindex(stack: SliceStack, grid: Grid) -> bool:
    """True when the output lattice coincides with the input lattice.

    That is: the stack is evenly spaced and untilted, has at least two slices,
    and every voxel centre of ``grid`` maps to an integer input index within
    1e-4 of a voxel (flips, transposes and integer subsampling of an
    axis-aligned series in another patient orientation).  :func:`reslice`
    then copies values exactly.

    Parameters
    ----------
    stack : SliceStack
        Geometry of the input series.
    grid : Grid
        Output grid.

    Returns
    -------
    bool

    Raises
    ------
    InvalidInputError
        If ``stack`` is not a SliceStack or ``grid`` not a Grid.
    GeometryError
        If the slices are not in increasing order along the normal.
    """
    _check_stack(stack)
    _check_grid(grid)
    return _exact_index_map(_stack_frame(stack), stack, grid) is not None


def _check_stack(stack: object) -> None:
    if not isinstance(stack, SliceStack):
        raise InvalidInputError(f"stack must be a SliceStack, got {type(stack).__name__}")


def _check_grid(grid: object) -> None:
    if not isinstance(grid, Grid):
        raise InvalidInputError(f"grid must be a Grid, got {type(grid).__name__}")


def _int16_value(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise InvalidInputError(f"{name} must be an integer, got {value!r}")
    if not _INT16.min <= int(value) <= _INT16.max:
        raise InvalidInputError(
            f"{name} must lie in the int16 range [{_INT16.min}, {_INT16.max}], got {value}")
    return int(value)


def _check_array(array: object, stack: SliceStack) -> np.ndarray:
    if not isinstance(array, np.ndarray):
        raise InvalidInputError(f"array must be a NumPy array, got {type(array).__name__}")
    if array.ndim != 3:
        raise InvalidInputError(
            f"array must be 3-D (slices, rows, columns), got {array.ndim}-D shape {array.shape}")
    if array.shape != stack.shape:
        raise InvalidInputError(
            f"array shape {array.shape} does not match the stack (slices, rows, columns) "
            f"{stack.shape}")
    if array.dtype != np.int16:
        raise InvalidInputError(
            f"array must be int16 HU, got {array.dtype}; apply Rescale Slope/Intercept and "
            "convert with np.rint(...).astype(np.int16) after checking the range")
    return np.ascontiguousarray(array)


def _check_k_range(k_range: object, n: int) -> tuple[int, int]:
    if k_range is None:
        return 0, n
    try:
        k0, k1 = (int(v) for v in k_range)  # type: ignore[attr-defined]
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"k_range must be two integers (first, stop), got {k_range!r}") from None
    if not 0 <= k0 <= k1 <= n:
        raise InvalidInputError(
            f"k_range {k_range!r} must satisfy 0 <= first <= stop <= {n} (output slices)")
    return k0, k1


def _check_out(out: object, shape: tuple[int, int, int]) -> np.ndarray:
    if out is None:
        return np.empty(shape, dtype=np.int16)
    if not isinstance(out, np.ndarray) or out.dtype != np.int16 or out.shape != shape:
        got = (f"{out.dtype} {out.shape}" if isinstance(out, np.ndarray)
               else type(out).__name__)
        raise InvalidInputError(f"out must be an int16 array of shape {shape}, got {got}")
    if not (out.flags.c_contiguous and out.flags.writeable):
        raise InvalidInputError("out must be C-contiguous and writeable")
    return out


def reslice(array: np.ndarray, stack: SliceStack, grid: Grid, *,
            interpolation: str | Interpolation = "linear", fill: int = -1000,
            clamp: tuple[int, int] | None = None, k_range: tuple[int, int] | None = None,
            out: np.ndarray | None = None, padding_value: int | None = None) -> np.ndarray:
    """Resample a CT series onto an axis-aligned grid.

    Parameters
    ----------
    array : ndarray of shape (nk, nj, ni), dtype int16
        HU, indexed ``[slice, row, column]`` in stack order.  Never upcast; a
        non-contiguous array is copied once, as int16.
    stack : SliceStack
        Geometry of ``array``: slices in increasing order along the normal
        (uneven spacing and gantry tilt allowed).
    grid : Grid
        Output grid; must be axis-aligned (direction identity).
    interpolation : {"linear", "nearest"} or Interpolation, optional
        Per-slice trilinear (default) or nearest neighbour.
    fill : int, optional
        Value outside the input (see the module's outside rule); default
        -1000 HU (air).  Never clamped.
    clamp : tuple of int, optional
        ``(lo, hi)``: clamp interpolated values to this range before rounding
        (Oncentra stores [-1000, 3095]).
    k_range : tuple of int, optional
        ``(first, stop)``: compute only output slices ``first:stop``, so a
        caller can stream slices to a writer and report progress.
    out : ndarray, optional
        C-contiguous int16 array of shape ``(stop - first, NJ, NI)`` to write
        into.
    padding_value : int, optional
        The series' Pixel Padding Value in HU: voxels equal to it are read as
        ``fill`` (outside), never blended into tissue.

    Returns
    -------
    ndarray of shape (stop - first, NJ, NI), dtype int16
        Output slices ``first:stop`` of ``grid`` (``out`` when given).

    Raises
    ------
    InvalidInputError
        If ``array`` is not a 3-D int16 array of the stack's shape, or
        ``interpolation``, ``fill``, ``clamp``, ``k_range``, ``out`` or
        ``padding_value`` is invalid.
    GeometryError
        If ``grid`` is not axis-aligned or the slices are not in increasing
        order along the normal.

    Notes
    -----
    Method, outside rule and rounding are described in the module docstring.
    """
    _check_stack(stack)
    _check_grid(grid)
    volume = _check_array(array, stack)
    if not grid.is_axis_aligned:
        raise GeometryError(
            "grid must be axis-aligned (direction identity, Image Orientation 1\\0\\0\\0\\1\\0); "
            "build it with default_output_grid() or bounding_grid()")
    try:
        method = Interpolation(interpolation)
    except ValueError:
        raise InvalidInputError(
            f"interpolation must be 'linear' or 'nearest', got {interpolation!r}") from None
    fill = _int16_value(fill, "fill")
    lo, hi = int(_INT16.min), int(_INT16.max)
    if clamp is not None:
        if not isinstance(clamp, (tuple, list)) or len(clamp) != 2:
            raise InvalidInputError(f"clamp must be (lo, hi), got {clamp!r}")
        lo, hi = _int16_value(clamp[0], "clamp lo"), _int16_value(clamp[1], "clamp hi")
        if lo > hi:
            raise InvalidInputError(f"clamp lo must not exceed hi, got {clamp!r}")
    pad = _NO_PAD if padding_value is None else _int16_value(padding_value, "padding_value")
    k0, k1 = _check_k_range(k_range, grid.shape[0])
    result = _check_out(out, (k1 - k0, grid.shape[1], grid.shape[2]))
    if result.size == 0:
        return result

    kernel, args = _kernel_call(volume, stack, grid, method, result, k0, pad, fill, lo, hi)
    if kernel.signatures:
        kernel(*args)
    else:  # its first call loads it, and the first of all loads Numba's registries
        with _gc.paused():  # (see rtforge._gc); only then: a pause may freeze what exists
            import_numba_np_without_blas_probe()  # before the first kernel loads
            kernel(*args)
    return result


def _kernel_call(volume: np.ndarray, stack: SliceStack, grid: Grid, method: Interpolation,
                 result: np.ndarray, k0: int, pad: int, fill: int, lo: int, hi: int
                 ) -> tuple[Dispatcher, tuple]:
    """The kernel that :func:`reslice` runs for this geometry, and its arguments."""
    frame = _stack_frame(stack)
    index_map = _exact_index_map(frame, stack, grid)
    linear = method is Interpolation.LINEAR
    if index_map is not None:
        logger.debug("reslice: exact re-index of %s onto %s", stack, grid)
        return _k.reindex, (volume, result, k0, index_map, pad, fill, lo, hi)
    if frame.lattice and not frame.shear.any():
        logger.debug("reslice: %s, regular lattice, %s onto %s", method.value, stack, grid)
        kernel = _k.linear_regular if linear else _k.nearest_regular
        return kernel, (volume, result, k0, _coordinates(frame, stack, grid, frame.slab),
                        pad, fill, lo, hi)
    if frame.lattice and linear:
        logger.debug("reslice: linear, sheared lattice (tilt), %s onto %s", stack, grid)
        return _k.linear_sheared, (
            volume, result, k0, _coordinates(frame, stack, grid, frame.slab),
            float(frame.shear[0]), float(frame.shear[1]), pad, fill, lo, hi)
    logger.debug("reslice: %s, per-slice tables, %s onto %s", method.value, stack, grid)
    slices, lookup, inv_bin, limits = _stack_tables(frame)
    per_slice = _k.linear_stack if linear else _k.nearest_stack
    return per_slice, (volume, result, k0, _coordinates(frame, stack, grid, 1.0), slices, lookup,
                       inv_bin, limits, pad, fill, lo, hi)


def load_kernels() -> None:
    """Load every reslice kernel from Numba's cache (compiling any that is missing)
    without running one.

    A process that forks workers calls this first so that each worker starts
    with the kernels loaded (about 0.3 s each otherwise); one process can call
    it while it reads its first series.  Nothing runs in parallel here, so no
    thread pool is started before a fork.  Numba starts without its BLAS probe
    (:func:`rtforge.core._numba_start.import_numba_np_without_blas_probe`).
    """
    from rtforge.core.phantom import oblique_stack

    import_numba_np_without_blas_probe()

    def examples() -> list[SliceStack]:
        regular = oblique_stack(size=4, spacing=1.0, nslices=3, slice_spacing=1.0)
        shift = np.outer(np.arange(3), 0.3 * regular.column_direction)
        tilted = SliceStack(positions=regular.positions + shift,
                            row_direction=regular.row_direction,
                            column_direction=regular.column_direction,
                            pixel_spacing=regular.pixel_spacing, rows=4, columns=4)
        uneven = SliceStack(positions=regular.positions * np.array([[1.0], [1.0], [1.5]]),
                            row_direction=regular.row_direction,
                            column_direction=regular.column_direction,
                            pixel_spacing=regular.pixel_spacing, rows=4, columns=4)
        axial = SliceStack(positions=np.array([[0.0, 0.0, z] for z in range(3)]),
                           row_direction=(1.0, 0.0, 0.0), column_direction=(0.0, 1.0, 0.0),
                           pixel_spacing=(1.0, 1.0), rows=4, columns=4)
        return [regular, tilted, uneven, axial]

    for stack in examples():
        grid = default_output_grid(stack)
        volume = np.zeros(stack.shape, dtype=np.int16)
        result = np.empty(grid.shape, dtype=np.int16)
        for method in Interpolation:
            kernel, args = _kernel_call(volume, stack, grid, method, result, 0, _NO_PAD, -1000,
                                        int(_INT16.min), int(_INT16.max))
            kernel.compile(tuple(numba.typeof(a) for a in args))
