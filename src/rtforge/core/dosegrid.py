"""Dose grids: quantisation to DICOM pixels and back, resampling and summation.

Conventions are those of :mod:`rtforge.core.geometry`: arrays ``[k, j, i]``
(slice, row, column), patient coordinates ``(x, y, z)`` in mm (LPS), a voxel
index names the voxel's centre.  Dose is in Gy.

Quantisation (PS3.3 C.8.8.3, Dose Grid Scaling (3004,000E))
-----------------------------------------------------------
RT Dose pixels are unsigned integers; dose in Gy is ``pixel * scaling``.
:func:`quantize_dose` picks the smallest scaling that lets the largest dose
fit ``2**bits - 1``, *as the decimal string that will be written* (at most
16 characters, the DS limit), then computes the pixels from that exact value,
rounding to nearest.  Readers therefore reconstruct exactly the dose the
error bound is computed for.  (plastimatch writes the scaling with ``%g``,
six significant digits: a 2.6e-6 relative error on 32-bit doses;
dicompyler-core and pymedphys truncate instead of rounding.)  The largest
absolute error is at most half a scaling step; it is measured, not assumed.

Resampling and summation
------------------------
:func:`resample_dose` samples a dose trilinearly at the voxel centres of
another grid (points within half a voxel of the source's outermost centres
take the edge value, points beyond have no dose: 0 Gy, and the number of
output voxels without dose is reported).  :func:`sum_doses` adds doses that
need not share a grid (BEAM doses to a PLAN dose, plans to a COMPOSITE), each
times its weight (e.g. a fraction-count ratio), on a chosen grid.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from enum import Enum
from typing import NamedTuple

import numpy as np
from numpy.typing import ArrayLike

from rtforge.core import _dosegrid_kernels as _k
from rtforge.core._decimal import compact_decimal
from rtforge.core.geometry import Grid, Volume, axis_aligned_view, bounding_grid
from rtforge.errors import GeometryError, InvalidInputError

__all__ = [
    "DS_MAX_CHARS",
    "QuantizedDose",
    "GridChoice",
    "scaling_text",
    "quantize_dose",
    "dequantize_dose",
    "resample_dose",
    "sum_doses",
]

#: Largest number of characters of a Decimal String value (PS3.5 table 6.2-1).
DS_MAX_CHARS = 16

_PIXEL_DTYPES = {16: np.uint16, 32: np.uint32}


class QuantizedDose(NamedTuple):
    """A dose as RT Dose pixels.

    Attributes
    ----------
    pixels : ndarray, dtype uint16 or uint32
        Same shape as the dose.
    scaling : float
        Dose Grid Scaling, Gy per pixel unit: exactly ``float(scaling_text)``.
    scaling_text : str
        The DS value to write (at most 16 characters).
    max_error_gy : float
        Largest ``|pixels * scaling - dose|`` over the grid, in Gy.
    """

    pixels: np.ndarray
    scaling: float
    scaling_text: str
    max_error_gy: float


def scaling_text(minimum: float) -> str:
    """The DS string of at most 16 characters closest above ``minimum``.

    Parameters
    ----------
    minimum : float
        The smallest acceptable scaling (positive, finite).

    Returns
    -------
    str
        A decimal string ``t`` with ``float(t) >= minimum``, the smallest such
        value among fixed-point and exponent forms of at most 16 characters
        (the mantissa of ``minimum`` rounded, and rounded up, at each number
        of digits).

    Raises
    ------
    InvalidInputError
        If ``minimum`` is not positive and finite.
    """
    if not np.isfinite(minimum) or minimum <= 0:
        raise InvalidInputError(f"scaling must be positive and finite, got {minimum!r}")
    exact = Decimal(float(minimum))
    best: tuple[Decimal, str] | None = None
    exponent = exact.adjusted()
    for digits in range(1, 18):
        # Round the mantissa up at `digits` significant digits.
        quantum = Decimal(1).scaleb(exponent - digits + 1)
        for rounding in ("ROUND_HALF_EVEN", "ROUND_CEILING"):
            value = exact.quantize(quantum, rounding=rounding)
            texts = (compact_decimal(f"{value:f}"), compact_decimal(f"{value:.{digits - 1}e}"))
            for text in texts:
                if len(text) <= DS_MAX_CHARS and float(text) >= minimum \
                        and (best is None or Decimal(text) < best[0]):
                    best = (Decimal(text), text)
    if best is None:  # pragma: no cover - one significant digit always fits
        raise InvalidInputError(f"no DS value can hold the scaling {minimum!r}")
    return best[1]


def _flat_float(dose: ArrayLike, name: str) -> np.ndarray:
    arr = np.asarray(dose)
    if arr.ndim < 1:
        raise InvalidInputError(f"{name} must be an array, got a scalar")
    if arr.dtype not in (np.float32, np.float64):
        if arr.dtype.kind not in "iu":
            raise InvalidInputError(f"{name} must be float32, float64 or integer, got {arr.dtype}")
        arr = arr.astype(np.float64)
    return np.ascontiguousarray(arr).reshape(-1)


def quantize_dose(dose: ArrayLike, bits: int = 32) -> QuantizedDose:
    """Dose in Gy to unsigned RT Dose pixels with the most precise scaling.

    Parameters
    ----------
    dose : array_like, float32 or float64
        Dose in Gy, any shape (``[k, j, i]`` for a grid); all values finite
        and non-negative.
    bits : {16, 32}
        Bits Allocated of the pixels (default 32, as Oncentra writes).

    Returns
    -------
    QuantizedDose
        An all-zero dose gets scaling 1.

    Raises
    ------
    InvalidInputError
        If ``bits`` is not 16 or 32, or the dose holds a NaN, an infinity or
        a negative value (RT Dose pixels are unsigned).

    Notes
    -----
    The scaling is ``scaling_text(max / (2**bits - 1))``: the 16-character
    decimal closest above the ideal, so the largest dose never overflows, and
    pixels are ``rint(dose / scaling)`` with that exact value.  The error is
    at most ``scaling / 2`` (plus float64 rounding).
    """
    if bits not in _PIXEL_DTYPES:
        raise InvalidInputError(f"bits must be 16 or 32, got {bits!r}")
    shape = np.shape(dose)
    flat = _flat_float(dose, "dose")
    out = np.empty(flat.shape[0], dtype=_PIXEL_DTYPES[bits])
    if flat.shape[0] == 0:
        return QuantizedDose(out.reshape(shape), 1.0, "1", 0.0)
    hi, lo, bad = _k.scan(flat)
    if bad:
        raise InvalidInputError(f"dose holds {bad} NaN or infinite value(s)")
    if lo < 0:
        raise InvalidInputError(f"dose must be non-negative (RT Dose pixels are unsigned), "
                                f"minimum {lo:g} Gy")
    top = 2**bits - 1
    text = "1" if hi == 0 else scaling_text(hi / top)
    scaling = float(text)
    error = float(_k.quantize(flat, scaling, out))
    return QuantizedDose(out.reshape(shape), scaling, text, error)


def dequantize_dose(pixels: ArrayLike, scaling: float, dtype: type = np.float64) -> np.ndarray:
    """RT Dose pixels to Gy: ``pixels * scaling``.

    Parameters
    ----------
    pixels : array_like, unsigned or signed integer
        Stored pixel values, any shape.
    scaling : float
        Dose Grid Scaling (Gy per unit), positive and finite.
    dtype : {numpy.float64, numpy.float32}
        Output dtype (default float64).

    Returns
    -------
    ndarray of the shape of ``pixels``

    Raises
    ------
    InvalidInputError
        If ``pixels`` is not integer, ``scaling`` not positive and finite,
        or ``dtype`` not a float type.
    """
    arr = np.asarray(pixels)
    if arr.dtype.kind not in "iu":
        raise InvalidInputError(f"pixels must be integers, got dtype {arr.dtype}")
    if not np.isfinite(scaling) or scaling <= 0:
        raise InvalidInputError(f"Dose Grid Scaling must be positive and finite, got {scaling!r}")
    if np.dtype(dtype) not in (np.float32, np.float64):
        raise InvalidInputError(f"dtype must be float32 or float64, got {dtype!r}")
    # Native byte order (a big-endian file's pixels arrive as >u4).
    flat = np.ascontiguousarray(arr, dtype=arr.dtype.newbyteorder("=")).reshape(-1)
    out: np.ndarray = np.empty(flat.shape[0], dtype=dtype)
    if flat.shape[0]:
        _k.dequantize(flat, float(scaling), out)
    return out.reshape(arr.shape)


def _source(volume: Volume) -> np.ndarray:
    if not isinstance(volume, Volume):
        raise InvalidInputError(f"expected a Volume, got {type(volume).__name__}")
    arr = volume.array
    if arr.dtype not in (np.float32, np.float64):
        raise InvalidInputError(f"dose must be float32 or float64, got {arr.dtype}")
    return np.ascontiguousarray(arr)


def _matrix(source: Grid, target: Grid) -> np.ndarray:
    return np.ascontiguousarray((source.inverse_affine @ target.affine)[:3, :])


def resample_dose(volume: Volume, grid: Grid) -> Volume:
    """Sample a dose trilinearly at the voxel centres of another grid.

    Parameters
    ----------
    volume : Volume
        Dose in Gy (float32 or float64) on any grid.
    grid : Grid
        The target grid.

    Returns
    -------
    Volume
        float64 dose on ``grid``; 0 Gy where ``grid``'s centres lie beyond
        half a voxel outside ``volume``'s grid.

    Raises
    ------
    InvalidInputError
        If ``volume`` is not a float dose Volume.
    """
    return sum_doses([volume], grid=grid)


class GridChoice(str, Enum):
    """Which grid :func:`sum_doses` computes on when none is given."""

    #: The first dose's grid.
    FIRST = "A"
    #: An axis-aligned grid covering every dose at the finest spacing along each axis.
    FINEST = "finest"


def sum_doses(volumes: Sequence[Volume], weights: Sequence[float] | None = None, *,
              grid: Grid | GridChoice | str = GridChoice.FIRST) -> Volume:
    """Weighted sum of doses that need not share a grid.

    Parameters
    ----------
    volumes : sequence of Volume
        Doses in Gy (float32 or float64).
    weights : sequence of float, optional
        One factor per dose (default 1 each): e.g. planned fractions over the
        fractions a dose was computed for.
    grid : Grid or {"A", "finest"}, optional
        The output grid: a Grid, the first dose's grid (``"A"``, default) or
        :attr:`GridChoice.FINEST`.

    Returns
    -------
    Volume
        float64 dose.  Each dose is sampled trilinearly (exactly copied where
        the grids coincide); beyond half a voxel outside a dose's grid it
        adds nothing.

    Raises
    ------
    InvalidInputError
        If there are no doses, the weights' count differs or a weight is not
        finite, or ``grid`` is not a Grid or a :class:`GridChoice`.
    GeometryError
        If ``"finest"`` is asked of doses whose grids are not axis-aligned.
    """
    volumes = list(volumes)
    if not volumes:
        raise InvalidInputError("sum_doses needs at least one dose")
    factors = [1.0] * len(volumes) if weights is None else [float(w) for w in weights]
    if len(factors) != len(volumes):
        raise InvalidInputError(f"{len(factors)} weights for {len(volumes)} doses")
    if not all(np.isfinite(factors)):
        raise InvalidInputError(f"weights must be finite, got {factors}")
    arrays = [_source(v) for v in volumes]
    target = _target_grid(volumes, grid)
    out = np.zeros(target.shape, dtype=np.float64)
    for volume, array, weight in zip(volumes, arrays, factors, strict=True):
        _k.accumulate_trilinear(array, _matrix(volume.grid, target), weight, out)
    return Volume(out, target)


def _target_grid(volumes: Sequence[Volume], grid: Grid | GridChoice | str) -> Grid:
    if isinstance(grid, Grid):
        return grid
    try:
        choice = GridChoice(grid)
    except ValueError:
        raise InvalidInputError(f"grid must be a Grid, 'A' or 'finest', got {grid!r}") from None
    if choice is GridChoice.FIRST:
        return volumes[0].grid
    views = [axis_aligned_view(v) for v in volumes]
    if any(view is None for view in views):
        raise GeometryError("grid 'finest' needs dose grids whose axes are the patient axes "
                            "(in any order: supine, prone, decubitus); give a Grid instead")
    corners = np.concatenate([v.grid.corners() for v in volumes])
    spacing = np.min([view.grid.spacing for view in views if view is not None], axis=0)
    return bounding_grid(corners, spacing)
