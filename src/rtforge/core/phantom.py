"""A body-like analytic CT phantom, sampled on any image geometry.

The phantom is defined in patient coordinates (LPS, mm), so the same anatomy
can be "acquired" axially, obliquely, with gantry tilt or with uneven slice
spacing, and a reslice can be checked against where things truly are.

Anatomy (HU, later shapes overwrite earlier ones):

- body: elliptic cylinder along z, semi-axes 150 mm (x) by 100 mm (y), 40 HU,
  from z = -80 to +80 mm; air (-1000 HU) outside;
- lungs: two elliptic cylinders centred at x = ±70 mm, y = -10 mm, semi-axes
  45 by 60 mm, -800 HU, z from -60 to +70 mm;
- spine: a cylinder of radius 15 mm at (0, 60) mm, 700 HU, whole length;
- rod: a straight cylinder of radius 3 mm along z at (40, 35) mm, 1500 HU,
  whole length (a tilted acquisition must give it back straight);
- markers: spheres of radius 3 mm, 3000 HU, at :data:`MARKERS`.

Samples are taken at voxel centres (no partial-volume averaging), so a
value is exactly the HU of the shape the centre lies in.
"""

from __future__ import annotations

import numpy as np

from rtforge.core.geometry import SliceStack

__all__ = ["MARKERS", "MARKER_RADIUS", "ROD_AXIS", "ROD_RADIUS", "phantom_hu", "sample_phantom",
           "axial_stack", "oblique_stack", "tilted_stack", "uneven_stack"]

#: Marker sphere centres (x, y, z) in mm.
MARKERS = np.array([
    [0.0, 0.0, 0.0],
    [-60.0, 30.0, -40.0],
    [75.0, -40.0, 35.0],
    [20.0, 70.0, 55.0],
    [-100.0, -20.0, 20.0],
    [110.0, 10.0, -55.0],
])
MARKER_RADIUS = 3.0
#: The rod's axis (x, y) in mm; it runs along z.
ROD_AXIS = (40.0, 35.0)
ROD_RADIUS = 3.0

_BODY = (150.0, 100.0, -80.0, 80.0)
_LUNGS = ((-70.0, -10.0), (70.0, -10.0))
_LUNG_AXES = (45.0, 60.0)
_LUNG_Z = (-60.0, 70.0)
_SPINE = (0.0, 60.0, 15.0)

HU_AIR, HU_BODY, HU_LUNG, HU_SPINE, HU_ROD, HU_MARKER = -1000, 40, -800, 700, 1500, 3000


def phantom_hu(points: np.ndarray) -> np.ndarray:
    """HU of the phantom at patient points.

    Parameters
    ----------
    points : ndarray of shape (..., 3)
        Patient coordinates (x, y, z) in mm.

    Returns
    -------
    ndarray of shape (...), dtype int16
    """
    p = np.asarray(points, dtype=np.float64)
    x, y, z = p[..., 0], p[..., 1], p[..., 2]
    out = np.full(x.shape, HU_AIR, dtype=np.int16)
    a, b, z0, z1 = _BODY
    body = ((x / a) ** 2 + (y / b) ** 2 <= 1.0) & (z >= z0) & (z <= z1)
    out[body] = HU_BODY
    la, lb = _LUNG_AXES
    for cx, cy in _LUNGS:
        lung = (((x - cx) / la) ** 2 + ((y - cy) / lb) ** 2 <= 1.0) & (z >= _LUNG_Z[0]) \
            & (z <= _LUNG_Z[1])
        out[lung & body] = HU_LUNG
    sx, sy, sr = _SPINE
    out[body & ((x - sx) ** 2 + (y - sy) ** 2 <= sr * sr)] = HU_SPINE
    rx, ry = ROD_AXIS
    out[body & ((x - rx) ** 2 + (y - ry) ** 2 <= ROD_RADIUS ** 2)] = HU_ROD
    r2 = MARKER_RADIUS ** 2
    for m in MARKERS:
        out[(x - m[0]) ** 2 + (y - m[1]) ** 2 + (z - m[2]) ** 2 <= r2] = HU_MARKER
    return out


def sample_phantom(stack: SliceStack) -> np.ndarray:
    """The phantom sampled at every voxel centre of ``stack``.

    Returns
    -------
    ndarray of shape stack.shape, dtype int16
        HU, indexed ``[k, j, i]``.
    """
    out = np.empty(stack.shape, dtype=np.int16)
    jj, ii = np.meshgrid(np.arange(stack.rows), np.arange(stack.columns), indexing="ij")
    for k in range(stack.nslices):
        out[k] = phantom_hu(stack.voxel_centres(k, jj, ii))
    return out


def _stack(row: np.ndarray, col: np.ndarray, offsets: np.ndarray, step_dir: np.ndarray,
           size: int, spacing: float, centre: np.ndarray) -> SliceStack:
    """Stack of ``size``x``size`` slices centred on ``centre`` (mm) in-plane."""
    half = (size - 1) / 2.0 * spacing
    first = centre - half * row - half * col
    positions = first[None, :] + offsets[:, None] * step_dir[None, :]
    return SliceStack(positions=positions, row_direction=row, column_direction=col,
                      pixel_spacing=(spacing, spacing), rows=size, columns=size)


def _offsets(nslices: int, spacing: float) -> np.ndarray:
    return (np.arange(nslices) - (nslices - 1) / 2.0) * spacing


def axial_stack(size: int = 256, spacing: float = 1.4, nslices: int = 64,
                slice_spacing: float = 2.5) -> SliceStack:
    """An axial acquisition (Image Orientation 1\\0\\0\\0\\1\\0) centred on the origin."""
    return _stack(np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), _offsets(nslices, slice_spacing),
                  np.array([0, 0, 1.0]), size, spacing, np.zeros(3))


def _rotation(axis: int, degrees: float) -> np.ndarray:
    t = np.radians(degrees)
    c, s = np.cos(t), np.sin(t)
    r = np.eye(3)
    a, b = [(1, 2), (2, 0), (0, 1)][axis]
    r[a, a], r[a, b], r[b, a], r[b, b] = c, -s, s, c
    return r


def oblique_stack(size: int = 256, spacing: float = 1.4, nslices: int = 64,
                  slice_spacing: float = 2.5, about_z: float = 12.0,
                  about_x: float = 7.0) -> SliceStack:
    """A "localized" oblique acquisition: axial rotated ``about_z`` then ``about_x`` degrees."""
    rot = _rotation(0, about_x) @ _rotation(2, about_z)
    row, col, normal = rot[:, 0], rot[:, 1], rot[:, 2]
    return _stack(row, col, _offsets(nslices, slice_spacing), normal, size, spacing, np.zeros(3))


def tilted_stack(size: int = 256, spacing: float = 1.4, nslices: int = 64,
                 table_increment: float = 2.5, tilt: float = 15.0) -> SliceStack:
    """An axial acquisition with gantry tilt: image planes rotated ``tilt`` degrees
    about the x axis, table moving along z by ``table_increment`` per slice."""
    rot = _rotation(0, tilt)
    return _stack(np.array([1.0, 0, 0]), rot[:, 1], _offsets(nslices, table_increment),
                  np.array([0, 0, 1.0]), size, spacing, np.zeros(3))


def uneven_stack(size: int = 256, spacing: float = 1.4,
                 gaps: tuple[float, ...] = (2.5,) * 20 + (5.0,) * 10 + (2.5,) * 20) -> SliceStack:
    """An axial acquisition whose slice gaps (mm) are given one by one."""
    offsets = np.concatenate([[0.0], np.cumsum(gaps)])
    offsets -= offsets[-1] / 2.0
    return _stack(np.array([1.0, 0, 0]), np.array([0, 1.0, 0]), offsets,
                  np.array([0, 0, 1.0]), size, spacing, np.zeros(3))
