"""Where voxels are in the patient: :class:`Grid`, :class:`SliceStack`, :class:`Volume`.

Conventions (used by every module of rtforge)
---------------------------------------------
- Arrays are indexed ``[k, j, i]`` = ``[slice, row, column]``; ``shape = (nk, nj, ni)``.
- Index points are written ``(i, j, k)`` (column, row, slice), the order of the
  4x4 affine, and a voxel index names the *centre* of the voxel.
- Patient coordinates are ``(x, y, z)`` in mm in the DICOM patient system (LPS:
  +x to the patient's left, +y posterior, +z head).
- ``spacing = (si, sj, sk)``: mm between columns, rows and slices.
- ``direction`` is 3x3; its columns are the unit vectors of the i, j and k axes
  in patient coordinates.  For DICOM images, column 0 is the first triplet of
  Image Orientation (Patient) (the direction along a row, of increasing column
  index) and column 1 the second triplet.  A gantry-tilted series has a k axis
  that is not orthogonal to i and j: ``direction`` is then not orthonormal and
  is never forced to be.

A :class:`Grid` describes a regular lattice.  An image series whose slices are
unevenly spaced is not a lattice; its exact geometry is a :class:`SliceStack`
(each slice's own position, all slices sharing orientation and pixel spacing).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from rtforge.errors import GeometryError

__all__ = ["Grid", "SliceStack", "Volume", "axis_aligned_view", "bounding_grid"]

_ORTHO_TOL = 1e-4  # tolerance on direction cosines (DICOM writers round them)


def _as_vec3(value: object, name: str) -> np.ndarray:
    arr = np.array(value, dtype=np.float64, copy=True)
    if arr.shape != (3,):
        raise GeometryError(f"{name} must have 3 values, got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise GeometryError(f"{name} must be finite, got {arr.tolist()}")
    return arr


@dataclass(frozen=True, eq=False)
class Grid:
    """A regular lattice of voxel centres in patient coordinates.

    Parameters
    ----------
    shape : tuple of int
        ``(nk, nj, ni)``: slices, rows, columns.
    origin : array_like of shape (3,)
        Patient position (x, y, z) in mm of the centre of voxel ``[0, 0, 0]``.
    spacing : array_like of shape (3,)
        ``(si, sj, sk)``: mm between columns, rows and slices; all positive.
    direction : array_like of shape (3, 3), optional
        Columns are the unit vectors of the i, j and k axes in patient
        coordinates.  Identity (the default) is an axis-aligned grid.

    Raises
    ------
    GeometryError
        If a shape is not positive, a spacing not positive and finite, or a
        direction column not a unit vector or the i and j axes not orthogonal.
    """

    shape: tuple[int, int, int]
    origin: np.ndarray
    spacing: np.ndarray
    direction: np.ndarray = field(default_factory=lambda: np.eye(3))

    def __post_init__(self) -> None:
        shape = tuple(int(n) for n in self.shape)
        if len(shape) != 3 or min(shape) < 1:
            raise GeometryError(f"Grid shape must be 3 positive integers, got {self.shape}")
        origin = _as_vec3(self.origin, "origin")
        spacing = _as_vec3(self.spacing, "spacing")
        if np.any(spacing <= 0):
            raise GeometryError(f"Grid spacing must be positive, got {spacing.tolist()}")
        direction = np.array(self.direction, dtype=np.float64, copy=True)
        if direction.shape != (3, 3) or not np.all(np.isfinite(direction)):
            raise GeometryError(f"Grid direction must be a finite 3x3 matrix, got {direction!r}")
        norms = np.linalg.norm(direction, axis=0)
        if np.any(np.abs(norms - 1.0) > _ORTHO_TOL):
            raise GeometryError(f"Grid direction columns must be unit vectors, norms {norms}")
        if abs(float(direction[:, 0] @ direction[:, 1])) > _ORTHO_TOL:
            raise GeometryError("Grid i and j axes (row and column directions) must be orthogonal")
        if abs(np.linalg.det(direction)) < 1e-6:
            raise GeometryError("Grid direction is singular: the slice axis lies in the image plane")
        for name, value in (("shape", shape), ("origin", origin), ("spacing", spacing),
                            ("direction", direction)):
            if isinstance(value, np.ndarray):
                value.setflags(write=False)
            object.__setattr__(self, name, value)

    # ------------------------------------------------------------------ affine
    @property
    def affine(self) -> np.ndarray:
        """ndarray of shape (4, 4): maps ``(i, j, k, 1)`` to ``(x, y, z, 1)``."""
        a = np.eye(4)
        a[:3, :3] = self.direction * self.spacing[np.newaxis, :]
        a[:3, 3] = self.origin
        return a

    @property
    def inverse_affine(self) -> np.ndarray:
        """ndarray of shape (4, 4): maps ``(x, y, z, 1)`` to ``(i, j, k, 1)``."""
        return np.linalg.inv(self.affine)

    def index_to_patient(self, ijk: np.ndarray) -> np.ndarray:
        """Patient coordinates of index points.

        Parameters
        ----------
        ijk : array_like of shape (..., 3)
            Index points in ``(i, j, k)`` order (fractional allowed; integers
            are voxel centres).

        Returns
        -------
        ndarray of shape (..., 3), dtype float64
            ``(x, y, z)`` in mm.
        """
        p = np.asarray(ijk, dtype=np.float64)
        a = self.affine
        return p @ a[:3, :3].T + a[:3, 3]

    def patient_to_index(self, xyz: np.ndarray) -> np.ndarray:
        """Fractional ``(i, j, k)`` index points of patient points (inverse of
        :meth:`index_to_patient`).

        Parameters
        ----------
        xyz : array_like of shape (..., 3)
            Patient coordinates in mm.

        Returns
        -------
        ndarray of shape (..., 3), dtype float64
        """
        p = np.asarray(xyz, dtype=np.float64)
        inv = self.inverse_affine
        return p @ inv[:3, :3].T + inv[:3, 3]

    # ------------------------------------------------------------ properties
    @property
    def is_axis_aligned(self) -> bool:
        """True when ``direction`` is the identity (Image Orientation 1\\0\\0\\0\\1\\0)."""
        return bool(np.allclose(self.direction, np.eye(3), atol=_ORTHO_TOL))

    @property
    def slice_normal(self) -> np.ndarray:
        """Unit normal of the image planes, ``row × column`` direction."""
        n = np.cross(self.direction[:, 0], self.direction[:, 1])
        return n / np.linalg.norm(n)

    @property
    def size(self) -> int:
        """Number of voxels."""
        return int(np.prod(self.shape))

    def corners(self) -> np.ndarray:
        """ndarray of shape (8, 3): patient positions of the eight corner voxel centres."""
        nk, nj, ni = self.shape
        idx = np.array([[i, j, k] for k in (0, nk - 1) for j in (0, nj - 1) for i in (0, ni - 1)],
                       dtype=np.float64)
        return self.index_to_patient(idx)

    def to_stack(self) -> SliceStack:
        """The same geometry as a :class:`SliceStack` (one position per slice)."""
        k = np.arange(self.shape[0], dtype=np.float64)
        positions = self.origin + np.outer(k * self.spacing[2], self.direction[:, 2])
        return SliceStack(positions=positions, row_direction=self.direction[:, 0],
                          column_direction=self.direction[:, 1],
                          pixel_spacing=(float(self.spacing[0]), float(self.spacing[1])),
                          rows=self.shape[1], columns=self.shape[2])

    def bounding_grid(self, spacing: tuple[float, float, float] | np.ndarray | None = None) -> Grid:
        """Axis-aligned grid covering every voxel centre of this grid.

        See :func:`bounding_grid`; ``spacing`` defaults to this grid's spacing.
        """
        return bounding_grid(self.corners(), self.spacing if spacing is None else spacing)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Grid):
            return NotImplemented
        return (self.shape == other.shape and np.allclose(self.origin, other.origin)
                and np.allclose(self.spacing, other.spacing)
                and np.allclose(self.direction, other.direction))

    def __hash__(self) -> int:
        # Equality is tolerant (np.allclose), so only the exact part may be hashed.
        return hash(self.shape)

    def __repr__(self) -> str:
        return (f"Grid(shape={self.shape}, origin={np.round(self.origin, 4).tolist()}, "
                f"spacing={np.round(self.spacing, 4).tolist()}, "
                f"direction={np.round(self.direction, 5).tolist()})")


def bounding_grid(points: np.ndarray, spacing: tuple[float, float, float] | np.ndarray) -> Grid:
    """Axis-aligned grid at ``spacing`` whose voxel centres cover ``points``.

    Parameters
    ----------
    points : array_like of shape (N, 3)
        Patient positions (x, y, z) in mm to cover (typically voxel centres).
    spacing : array_like of shape (3,)
        ``(sx, sy, sz)`` of the output grid in mm.

    Returns
    -------
    Grid
        Identity direction, origin at the minimum corner ``(x_min, y_min,
        z_min)``; along each axis ``n = ceil((max - min) / s) + 1`` samples, so
        the last centre is at or past the maximum.  Output slice ``k`` is at
        ``(x_min, y_min, z_min + k * sz)``.
    """
    pts = np.asarray(points, dtype=np.float64).reshape(-1, 3)
    sp = _as_vec3(spacing, "spacing")
    if np.any(sp <= 0):
        raise GeometryError(f"spacing must be positive, got {sp.tolist()}")
    lo = pts.min(axis=0)
    hi = pts.max(axis=0)
    # 1e-6 of a voxel absorbs rounding of the corner positions.
    n = np.ceil((hi - lo) / sp - 1e-6).astype(np.int64) + 1
    n = np.maximum(n, 1)
    return Grid(shape=(int(n[2]), int(n[1]), int(n[0])), origin=lo, spacing=sp)


@dataclass(frozen=True, eq=False)
class SliceStack:
    """Exact geometry of an image series: one position per slice.

    All slices share orientation, pixel spacing, rows and columns; their
    positions may be unevenly spaced and may shift in-plane from slice to
    slice (gantry tilt).

    Parameters
    ----------
    positions : array_like of shape (nk, 3)
        Image Position (Patient) of each slice: the centre of its pixel
        ``[j=0, i=0]`` in mm, in slice order (increasing offset along the
        normal once sorted by the reader).
    row_direction : array_like of shape (3,)
        Direction of increasing column index i (Image Orientation first triplet).
    column_direction : array_like of shape (3,)
        Direction of increasing row index j (second triplet).
    pixel_spacing : tuple of float
        ``(si, sj)``: mm between columns and between rows.  Note that DICOM
        Pixel Spacing lists row spacing first (``sj\\si``).
    rows, columns : int
        ``nj`` and ``ni``.
    """

    positions: np.ndarray
    row_direction: np.ndarray
    column_direction: np.ndarray
    pixel_spacing: tuple[float, float]
    rows: int
    columns: int

    def __post_init__(self) -> None:
        pos = np.array(self.positions, dtype=np.float64, copy=True)
        if pos.ndim != 2 or pos.shape[1] != 3 or pos.shape[0] < 1:
            raise GeometryError(f"positions must have shape (nk, 3), got {pos.shape}")
        if not np.all(np.isfinite(pos)):
            raise GeometryError("slice positions must be finite")
        r = _as_vec3(self.row_direction, "row_direction")
        c = _as_vec3(self.column_direction, "column_direction")
        if abs(np.linalg.norm(r) - 1) > _ORTHO_TOL or abs(np.linalg.norm(c) - 1) > _ORTHO_TOL:
            raise GeometryError("Image Orientation direction cosines must be unit vectors")
        if abs(float(r @ c)) > _ORTHO_TOL:
            raise GeometryError("Image Orientation row and column directions must be orthogonal")
        si, sj = (float(v) for v in self.pixel_spacing)
        if not (si > 0 and sj > 0 and math.isfinite(si) and math.isfinite(sj)):
            raise GeometryError(f"pixel spacing must be positive, got {self.pixel_spacing}")
        if int(self.rows) < 1 or int(self.columns) < 1:
            raise GeometryError(f"rows and columns must be positive, got {self.rows}x{self.columns}")
        # Re-orthonormalise the in-plane frame exactly: writers round cosines.
        r = r / np.linalg.norm(r)
        c = c - (c @ r) * r
        c = c / np.linalg.norm(c)
        n = np.cross(r, c)
        n = n / np.linalg.norm(n)
        offsets = pos @ n
        for arr in (pos, r, c, n, offsets):
            arr.setflags(write=False)
        # Derived once: readers and writers ask for them per slice.
        object.__setattr__(self, "_normal", n)
        object.__setattr__(self, "_offsets", offsets)
        object.__setattr__(self, "positions", pos)
        object.__setattr__(self, "row_direction", r)
        object.__setattr__(self, "column_direction", c)
        object.__setattr__(self, "pixel_spacing", (si, sj))
        object.__setattr__(self, "rows", int(self.rows))
        object.__setattr__(self, "columns", int(self.columns))

    @property
    def nslices(self) -> int:
        """Number of slices ``nk``."""
        return int(self.positions.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(nk, nj, ni)``."""
        return (self.nslices, self.rows, self.columns)

    @property
    def normal(self) -> np.ndarray:
        """Unit slice normal, ``row_direction × column_direction`` (read-only)."""
        return self._normal

    @property
    def offsets(self) -> np.ndarray:
        """ndarray of shape (nk,): each slice's signed distance along :attr:`normal`, mm
        (read-only)."""
        return self._offsets

    @property
    def gaps(self) -> np.ndarray:
        """ndarray of shape (nk - 1,): distance along the normal between neighbouring slices."""
        return np.diff(self.offsets)

    @property
    def normal_spacing(self) -> float:
        """Median slice spacing along the normal (mm); 0 for a single slice."""
        g = self.gaps
        return float(np.median(np.abs(g))) if g.size else 0.0

    @property
    def table_increment(self) -> float:
        """Median distance between neighbouring slice positions (mm); 0 for a single slice."""
        d = np.linalg.norm(np.diff(self.positions, axis=0), axis=1)
        return float(np.median(d)) if d.size else 0.0

    def is_uneven(self, tolerance_mm: float = 0.01) -> bool:
        """True when a gap along the normal differs from the median gap by more than ``tolerance_mm``."""
        g = self.gaps
        if g.size < 2:
            return False
        return bool(np.max(np.abs(g - np.median(g))) > tolerance_mm)

    def tilt_degrees(self) -> float:
        """Angle between the slice stacking direction and the slice normal, degrees.

        Derived from the positions (first to last slice), not from the nominal
        Gantry/Detector Tilt (0018,1120).  The magnitude counts any in-plane
        shift of the stack (along the row or the column direction); the sign
        is positive when the shift has a component toward ``+column_direction``
        as the offset along the normal grows.  0 for a single slice.
        """
        if self.nslices < 2:
            return 0.0
        s = self.positions[-1] - self.positions[0]
        along = float(s @ self.normal)
        if along == 0.0:
            raise GeometryError("all slices lie in one plane")
        inplane = s - along * self.normal
        ang = math.degrees(math.atan2(float(np.linalg.norm(inplane)), abs(along)))
        sign = 1.0 if (inplane @ self.column_direction) * np.sign(along) >= 0 else -1.0
        return sign * ang

    def stacking_direction(self) -> np.ndarray:
        """Unit vector from the first slice position to the last (the k axis)."""
        if self.nslices < 2:
            return self.normal.copy()
        s = self.positions[-1] - self.positions[0]
        return s / np.linalg.norm(s)

    def is_tilted(self, tolerance_degrees: float = 0.01) -> bool:
        """True when :meth:`tilt_degrees` exceeds ``tolerance_degrees`` in magnitude."""
        return abs(self.tilt_degrees()) > tolerance_degrees

    def is_axis_aligned(self) -> bool:
        """True when every direction cosine is 0 or ±1 and the stack is not tilted."""
        m = np.stack([self.row_direction, self.column_direction])
        return bool(np.all(np.minimum(np.abs(m), np.abs(np.abs(m) - 1)) < _ORTHO_TOL)
                    and not self.is_tilted())

    def to_grid(self, tolerance_mm: float = 0.01) -> Grid:
        """The regular Grid of this stack (sheared when tilted).

        Raises
        ------
        GeometryError
            If the slices are unevenly spaced: one affine cannot express that.
        """
        if self.is_uneven(tolerance_mm):
            raise GeometryError("unevenly spaced slices do not form a regular grid")
        if self.nslices < 2:
            k_dir, sk = self.normal, 1.0
        else:
            step = (self.positions[-1] - self.positions[0]) / (self.nslices - 1)
            sk = float(np.linalg.norm(step))
            k_dir = step / sk
        direction = np.column_stack([self.row_direction, self.column_direction, k_dir])
        return Grid(shape=self.shape, origin=self.positions[0],
                    spacing=(self.pixel_spacing[0], self.pixel_spacing[1], sk),
                    direction=direction)

    def voxel_centres(self, k: int, j: np.ndarray, i: np.ndarray) -> np.ndarray:
        """Patient positions of pixel centres ``(j, i)`` in slice ``k``, shape (..., 3)."""
        j = np.asarray(j, dtype=np.float64)[..., None]
        i = np.asarray(i, dtype=np.float64)[..., None]
        return (self.positions[k] + i * self.pixel_spacing[0] * self.row_direction
                + j * self.pixel_spacing[1] * self.column_direction)

    def corners(self) -> np.ndarray:
        """ndarray of shape (4 * nk, 3): the four corner pixel centres of every slice.

        Every corner of every slice is listed, so the extreme voxel centres are
        covered whatever the slice-to-slice shift.
        """
        ni, nj = self.columns - 1, self.rows - 1
        ci = np.array([0, ni, 0, ni], dtype=np.float64)
        cj = np.array([0, 0, nj, nj], dtype=np.float64)
        inplane = (ci[:, None] * self.pixel_spacing[0] * self.row_direction
                   + cj[:, None] * self.pixel_spacing[1] * self.column_direction)
        return (self.positions[:, None, :] + inplane[None, :, :]).reshape(-1, 3)

    def bounding_grid(self, spacing: tuple[float, float, float] | np.ndarray) -> Grid:
        """Axis-aligned grid at ``spacing`` covering every voxel centre (see :func:`bounding_grid`)."""
        return bounding_grid(self.corners(), spacing)

    def default_output_spacing(self) -> tuple[float, float, float]:
        """Spacing of the orthogonal output of a reslice, ``(sx, sy, sz)`` in mm.

        In-plane: the input pixel spacing along the patient axes nearest the
        row and column directions.  Slices: the table increment for a tilted
        series, the spacing along the normal otherwise (1 mm for one slice).
        The patient axis nearest to each input axis takes that axis' spacing.
        """
        si, sj = self.pixel_spacing
        sk = self.table_increment if self.is_tilted() else self.normal_spacing
        if sk <= 0:
            sk = 1.0
        out = np.empty(3)
        assigned = [False, False, False]
        for vec, s in ((self.normal, sk), (self.row_direction, si), (self.column_direction, sj)):
            order = np.argsort(-np.abs(vec))
            ax = next(int(a) for a in order if not assigned[int(a)])
            assigned[ax] = True
            out[ax] = s
        return (float(out[0]), float(out[1]), float(out[2]))

    def __repr__(self) -> str:
        return (f"SliceStack(nslices={self.nslices}, rows={self.rows}, columns={self.columns}, "
                f"pixel_spacing={self.pixel_spacing}, normal={np.round(self.normal, 5).tolist()})")


@dataclass(eq=False)
class Volume:
    """A Grid and its array.

    Parameters
    ----------
    array : ndarray of shape grid.shape
        CT in HU (int16), dose in Gy (float32/float64), masks (uint8/float32).
    grid : Grid
        Where the voxels are.

    Raises
    ------
    GeometryError
        If the array shape differs from the grid shape.
    """

    array: np.ndarray
    grid: Grid

    def __post_init__(self) -> None:
        if self.array.shape != self.grid.shape:
            raise GeometryError(
                f"array shape {self.array.shape} does not match grid shape {self.grid.shape}")


def axis_aligned_view(volume: Volume) -> Volume | None:
    """The same voxels on an identity-direction grid, when only the axes' order and signs differ.

    A grid whose direction is a signed permutation (a decubitus or prone dose grid,
    Image Orientation ``0\\1\\0\\-1\\0\\0``, a feet-first series, slices running
    towards -z) holds the voxels of an axis-aligned grid in another order: the view
    transposes and flips the array (no copy, no interpolation), so the voxel at
    ``[k, j, i]`` of the view is at ``x, y, z`` = origin + (i, j, k) * spacing.

    Parameters
    ----------
    volume : Volume

    Returns
    -------
    Volume or None
        None when the direction is not a signed permutation (oblique or tilted).
    """
    grid = volume.grid
    direction = grid.direction
    rounded = np.round(direction)
    if not (np.allclose(direction, rounded, atol=_ORTHO_TOL)
            and np.all(np.abs(rounded).sum(axis=0) == 1)
            and np.all(np.abs(rounded).sum(axis=1) == 1)):
        return None
    source_axis = np.argmax(np.abs(rounded), axis=1)  # patient axis p <- index axis (i, j, k)
    signs = rounded[np.arange(3), source_axis]
    # Array axes are (k, j, i): index axis m is array axis 2 - m.
    array = np.transpose(volume.array, [2 - int(source_axis[p]) for p in (2, 1, 0)])
    corner = np.zeros(3)
    for p in range(3):
        if signs[p] < 0:
            array = np.flip(array, axis=2 - p)
            corner[source_axis[p]] = grid.shape[2 - source_axis[p]] - 1
    origin = grid.affine[:3, :3] @ corner + grid.affine[:3, 3]
    spacing = tuple(float(grid.spacing[source_axis[p]]) for p in range(3))
    return Volume(array, Grid(array.shape, origin, spacing))


# The treatment-machine geometry of projection images (IEC 61217) lives in its
# own module for size; it is part of this module's public API.
from rtforge.core.beam import BeamGeometry, PatientPosition  # noqa: E402

__all__ += ["BeamGeometry", "PatientPosition"]


# ----------------------------------------------------------- rigid registration
_RIGID_TOL = 1e-5  # matrices come from DS text; rotations written to ~10 digits


def check_rigid(matrix: object, name: str = "matrix") -> np.ndarray:
    """A 4x4 rigid transformation (rotation and translation), checked.

    Parameters
    ----------
    matrix : array_like of shape (4, 4) or (16,)
        Row-major, as Frame of Reference Transformation Matrix (3006,00C6):
        ``x' = M @ (x, y, z, 1)`` in mm.
    name : str
        Named in errors.

    Returns
    -------
    ndarray of shape (4, 4), dtype float64

    Raises
    ------
    GeometryError
        If it is not 16 finite numbers, its last row is not ``0 0 0 1``, or its
        upper 3x3 is not a proper rotation (orthonormal, determinant +1) within
        1e-5: scaling, shear and reflection are not rigid (PS3.3 C.20.2.1.1).
    """
    m = np.array(matrix, dtype=np.float64, copy=True)
    if m.size != 16:
        raise GeometryError(f"{name} must have 16 values (4x4), got {m.size}")
    m = m.reshape(4, 4)
    if not np.all(np.isfinite(m)):
        raise GeometryError(f"{name} must be finite")
    if np.abs(m[3] - (0.0, 0.0, 0.0, 1.0)).max() > _RIGID_TOL:
        raise GeometryError(f"{name} last row must be 0 0 0 1, got {m[3].tolist()}")
    r = m[:3, :3]
    error = np.abs(r.T @ r - np.eye(3)).max()
    if error > _RIGID_TOL or np.linalg.det(r) < 0:
        raise GeometryError(f"{name} is not rigid: its 3x3 part is not a rotation "
                            f"(|R^T R - I| = {error:.2g}, det {np.linalg.det(r):.6g})")
    return m


def transform_grid(grid: Grid, matrix: object) -> Grid:
    """The same voxels, in another frame of reference.

    Parameters
    ----------
    grid : Grid
        Patient coordinates (LPS, mm) of the registered frame; voxel centres.
    matrix : array_like of shape (4, 4)
        Rigid transformation from the grid's frame to the target frame
        (:func:`check_rigid`), as a Spatial Registration gives it.

    Returns
    -------
    Grid
        Same shape and spacing; origin and direction mapped by ``matrix``.

    Raises
    ------
    GeometryError
        If ``matrix`` is not rigid.
    """
    m = check_rigid(matrix)
    return Grid(grid.shape, m[:3, :3] @ grid.origin + m[:3, 3], grid.spacing,
                m[:3, :3] @ grid.direction)


__all__ += ["check_rigid", "transform_grid"]
