"""Treatment-machine geometry of a projection image: :class:`BeamGeometry` (IEC 61217).

Re-exported from :mod:`rtforge.core.geometry`; conventions as there (patient
coordinates LPS in mm: +x patient left, +y posterior, +z head).

The IEC 61217 chain
-------------------
Every system is right-handed and a daughter system's positive rotation is a
right-handed rotation about its axis (clockwise when looking along the axis
from the origin; PS3.3 C.36.1.1.5).  Origins are at the isocentre.

1. **Fixed** ``f``: ``Xf`` to the right of an observer at the foot of the couch
   facing the gantry, ``Yf`` from the isocentre toward the gantry (the gantry
   rotation axis), ``Zf`` up.
2. **Gantry** ``g``: ``Xg, Zg`` rotated about ``Yf`` by the Gantry Angle
   ``θg``: ``f = Ry(θg) g``.  The source is on ``+Zg`` at SAD, so at 0 it is
   above the isocentre and at 90 on ``+Xf``.
3. **Beam limiting device** ``b``: rotated about ``Zg`` by the Beam Limiting
   Device (collimator) Angle ``θb``: ``g = Rz(θb) b``.  Jaws and leaves are
   given in ``b`` (``X`` jaws along ``Xb``, MLCX leaves move along ``Xb``).
4. **X-ray image receptor** ``r``: a daughter of ``g`` (not of ``b``): its
   origin at the X-Ray Image Receptor Translation ``(0, 0, SAD - SID)`` in
   ``g``, X-Ray Image Receptor Angle 0, so ``Xr = Xg``, ``Yr = Yg``.  The
   collimator therefore rotates the field outline drawn on the image, never
   the image.
5. **Patient support** ``s``: rotated about ``Zf`` by the Patient Support
   Angle ``θs`` (counter-clockwise seen from above): ``f = Rz(θs) s``;
   **table top eccentric** ``e`` rotated by the Table Top Eccentric Angle
   ``θe`` about a parallel axis, **table top** ``t`` translated in ``e``.  The
   patient is placed so that the Isocenter Position (patient coordinates)
   lies at the machine isocentre, so translations do not enter and the table
   top's orientation in ``f`` is ``Rz(θs + θe)``.  Table top pitch and roll
   are not modelled (callers raise on them).
6. **Patient**: the DICOM patient system relates to ``t`` by the Patient
   Position (PS3.3 C.7.3.1.1.2), ``t = P (p - isocentre)``:

   ======  ==============================================  ===================
   HFS     head to the gantry, supine                      ``Xt= x, Yt= z, Zt=-y``
   HFP     head to the gantry, prone                       ``Xt=-x, Yt= z, Zt= y``
   FFS     feet to the gantry, supine                      ``Xt=-x, Yt=-z, Zt=-y``
   FFP     feet to the gantry, prone                       ``Xt= x, Yt=-z, Zt= y``
   HFDL    head to the gantry, on the left side            ``Xt=-y, Yt= z, Zt=-x``
   HFDR    head to the gantry, on the right side           ``Xt= y, Yt= z, Zt= x``
   FFDL    feet to the gantry, on the left side            ``Xt= y, Yt=-z, Zt=-x``
   FFDR    feet to the gantry, on the right side           ``Xt=-y, Yt=-z, Zt= x``
   ======  ==============================================  ===================

So a point ``p`` (patient) has gantry coordinates
``g = Ry(θg)ᵀ Rz(θs + θe) P (p - isocentre)`` and, inversely,
``p = isocentre + G g`` with ``G = Pᵀ Rz(θs + θe)ᵀ Ry(θg)``
(:attr:`BeamGeometry.gantry_to_patient`).

The image (PS3.3 C.8.8.2, RT Image Plane NORMAL)
------------------------------------------------
The image is seen from the source (beam's eye view): column index ``c``
increases along ``+Xr`` and row index ``r`` along ``-Yr``.  RT Image Position
``(x0, y0)`` is the receptor-plane position of the centre of pixel
``(r=0, c=0)``; pixel ``(r, c)`` is at ``(x0 + c Δc, y0 - r Δr)`` in ``r`` and at
``(x0 + c Δc, y0 - r Δr, SAD - SID)`` in ``g``.  Image Plane Pixel Spacing is
``Δr\\Δc`` at the receptor plane (not at the isocentre).  A centred image has
``(x0, y0) = (-(C - 1)/2 Δc, +(R - 1)/2 Δr)``.

For HFS at gantry 0 the source is anterior, patient left is on the image
right and the head at the top; at gantry 90 the source is on the patient's
left.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import Enum

import numpy as np

from rtforge.errors import GeometryError

__all__ = ["PatientPosition", "BeamGeometry", "aperture_outline", "direction_letters"]

#: Patient direction letters of the -x/+x, -y/+y and -z/+z axes (LPS; PS3.3 C.7.6.1.1.1).
_LETTERS = (("R", "L"), ("A", "P"), ("F", "H"))


class PatientPosition(str, Enum):
    """Patient Position (0018,5100) defined terms that rtforge supports (PS3.3 C.7.3.1.1.2)."""

    HFS = "HFS"
    HFP = "HFP"
    FFS = "FFS"
    FFP = "FFP"
    HFDL = "HFDL"
    HFDR = "HFDR"
    FFDL = "FFDL"
    FFDR = "FFDR"

    @classmethod
    def parse(cls, value: str | PatientPosition) -> PatientPosition:
        """The position named by ``value`` (any case, surrounding spaces ignored).

        Raises
        ------
        GeometryError
            If ``value`` is not one of the eight supported terms.
        """
        try:
            return cls(str(value.value if isinstance(value, Enum) else value).strip().upper())
        except ValueError:
            names = ", ".join(p.value for p in cls)
            raise GeometryError(f"Patient Position {value!r} is not supported: use one of "
                                f"{names}") from None


def direction_letters(vector: np.ndarray, *, tolerance: float = 1e-4) -> str:
    """The patient direction letters of a vector in patient coordinates (LPS).

    Parameters
    ----------
    vector : array_like of shape (3,)
        A direction (x, y, z); need not be a unit vector.
    tolerance : float
        Components of the unit vector below this magnitude are left out.

    Returns
    -------
    str
        Up to three of L/R, P/A, H/F, the largest component first (PS3.3
        C.7.6.1.1.1), e.g. ``"L"`` for (1, 0, 0) and ``"LP"`` for (1, 0.5, 0).
    """
    v = np.asarray(vector, dtype=np.float64)
    v = v / np.linalg.norm(v)
    order = np.argsort(-np.abs(v), kind="stable")
    return "".join(_LETTERS[a][int(v[a] > 0)] for a in order if abs(v[a]) >= tolerance)


# t = P @ (p - isocentre): rows are Xt, Yt, Zt expressed in patient (LPS) axes.
_TABLE_FROM_PATIENT: dict[PatientPosition, tuple[tuple[int, int, int], ...]] = {
    PatientPosition.HFS: ((1, 0, 0), (0, 0, 1), (0, -1, 0)),
    PatientPosition.HFP: ((-1, 0, 0), (0, 0, 1), (0, 1, 0)),
    PatientPosition.FFS: ((-1, 0, 0), (0, 0, -1), (0, -1, 0)),
    PatientPosition.FFP: ((1, 0, 0), (0, 0, -1), (0, 1, 0)),
    PatientPosition.HFDL: ((0, -1, 0), (0, 0, 1), (-1, 0, 0)),
    PatientPosition.HFDR: ((0, 1, 0), (0, 0, 1), (1, 0, 0)),
    PatientPosition.FFDL: ((0, 1, 0), (0, 0, -1), (-1, 0, 0)),
    PatientPosition.FFDR: ((0, -1, 0), (0, 0, -1), (1, 0, 0)),
}


def _rot_y(degrees: float) -> np.ndarray:
    """Right-handed rotation about y: the daughter-to-mother matrix of a rotation by ``degrees``."""
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    return np.array([[c, 0.0, s], [0.0, 1.0, 0.0], [-s, 0.0, c]])


def _rot_z(degrees: float) -> np.ndarray:
    """Right-handed rotation about z: the daughter-to-mother matrix of a rotation by ``degrees``."""
    t = math.radians(degrees)
    c, s = math.cos(t), math.sin(t)
    return np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])


def _angle(value: float, name: str) -> float:
    v = float(value)
    if not math.isfinite(v):
        raise GeometryError(f"{name} must be finite, got {value!r}")
    v = v % 360.0
    return 0.0 if v == 360.0 else v


def _positive(value: float, name: str) -> float:
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise GeometryError(f"{name} must be a positive distance in mm, got {value!r}")
    return v


@dataclass(frozen=True, eq=False)
class BeamGeometry:
    """Source, receptor and patient placement of one projection image (IEC 61217).

    See the module docstring for the coordinate chain and the image conventions.

    Parameters
    ----------
    gantry_angle : float
        Gantry Angle (300A,011E), degrees.
    isocenter : array_like of shape (3,)
        Isocenter Position (300A,012C): patient coordinates (x, y, z) in mm.
    collimator_angle : float
        Beam Limiting Device Angle (300A,0120), degrees; rotates the field
        outline, not the image.
    couch_angle : float
        Patient Support Angle (300A,0122), degrees.
    sad : float
        Radiation Machine SAD (3002,0022): source to isocentre, mm.
    sid : float
        RT Image SID (3002,0026): source to the receptor plane, mm; at least ``sad``.
    rows, columns : int
        Image size.
    pixel_spacing : tuple of float
        ``(Δc, Δr)``: mm between columns and between rows **at the receptor
        plane** (rtforge's ``(i, j)`` order; DICOM Image Plane Pixel Spacing
        lists ``Δr\\Δc``).
    image_offset : tuple of float
        Receptor-plane position ``(x, y)`` in mm of the image centre (0, 0 for
        an image centred on the beam axis).
    patient_position : str or PatientPosition
        Patient Position (0018,5100).
    table_top_eccentric_angle : float
        Table Top Eccentric Angle (300A,0125), degrees; adds to the couch angle.

    Raises
    ------
    GeometryError
        If an angle or the isocentre is not finite, SAD or SID is not a
        positive distance, SID is less than SAD, the size or spacing is not
        positive, or the patient position is not supported.
    """

    gantry_angle: float
    isocenter: np.ndarray
    collimator_angle: float = 0.0
    couch_angle: float = 0.0
    sad: float = 1000.0
    sid: float = 1500.0
    rows: int = 512
    columns: int = 512
    pixel_spacing: tuple[float, float] = (1.0, 1.0)
    image_offset: tuple[float, float] = (0.0, 0.0)
    patient_position: PatientPosition = PatientPosition.HFS
    table_top_eccentric_angle: float = 0.0
    _gantry_to_patient: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        setattr_ = object.__setattr__
        for name in ("gantry_angle", "collimator_angle", "couch_angle",
                     "table_top_eccentric_angle"):
            setattr_(self, name, _angle(getattr(self, name), name))
        iso = np.array(self.isocenter, dtype=np.float64)
        if iso.shape != (3,) or not np.all(np.isfinite(iso)):
            raise GeometryError(f"isocenter must be 3 finite numbers (mm), got {self.isocenter!r}")
        iso.setflags(write=False)
        setattr_(self, "isocenter", iso)
        sad = _positive(self.sad, "SAD")
        sid = _positive(self.sid, "SID")
        if sid < sad:
            raise GeometryError(f"SID {sid:g} mm is less than SAD {sad:g} mm: the receptor must be "
                                "at or beyond the isocentre")
        setattr_(self, "sad", sad)
        setattr_(self, "sid", sid)
        for name in ("rows", "columns"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) != value or int(value) < 1:
                raise GeometryError(f"{name} must be a positive integer, got {value!r}")
            setattr_(self, name, int(value))
        spacing = tuple(float(v) for v in self.pixel_spacing)
        if len(spacing) != 2 or not all(math.isfinite(v) and v > 0 for v in spacing):
            raise GeometryError(f"pixel_spacing must be 2 positive numbers (mm), got "
                                f"{self.pixel_spacing!r}")
        setattr_(self, "pixel_spacing", spacing)
        offset = tuple(float(v) for v in self.image_offset)
        if len(offset) != 2 or not all(math.isfinite(v) for v in offset):
            raise GeometryError(f"image_offset must be 2 finite numbers (mm), got "
                                f"{self.image_offset!r}")
        setattr_(self, "image_offset", offset)
        setattr_(self, "patient_position", PatientPosition.parse(self.patient_position))
        table = np.array(_TABLE_FROM_PATIENT[self.patient_position], dtype=np.float64)
        couch = _rot_z(self.couch_angle + self.table_top_eccentric_angle)
        matrix = table.T @ couch.T @ _rot_y(self.gantry_angle)
        matrix.setflags(write=False)
        setattr_(self, "_gantry_to_patient", matrix)

    # ----------------------------------------------------------- frames
    @property
    def gantry_to_patient(self) -> np.ndarray:
        """ndarray of shape (3, 3): ``p - isocentre = G @ g`` for gantry coordinates ``g``.

        Its columns are ``Xg``, ``Yg`` and ``Zg`` (toward the source) in
        patient coordinates.
        """
        return self._gantry_to_patient

    @property
    def source(self) -> np.ndarray:
        """ndarray of shape (3,): the source position in patient coordinates (mm)."""
        return self.isocenter + self.sad * self._gantry_to_patient[:, 2]

    @property
    def beam_direction(self) -> np.ndarray:
        """ndarray of shape (3,): unit vector from the source toward the isocentre (``-Zg``)."""
        return -self._gantry_to_patient[:, 2].copy()

    @property
    def receptor_translation(self) -> tuple[float, float, float]:
        """X-Ray Image Receptor Translation (3002,000D): ``(0, 0, SAD - SID)`` mm in ``g``."""
        return (0.0, 0.0, self.sad - self.sid)

    @property
    def rt_image_position(self) -> tuple[float, float]:
        """RT Image Position (3002,0012): receptor ``(x, y)`` of the centre of pixel (0, 0), mm."""
        dc, dr = self.pixel_spacing
        ox, oy = self.image_offset
        return (ox - (self.columns - 1) / 2.0 * dc, oy + (self.rows - 1) / 2.0 * dr)

    @property
    def image_plane_pixel_spacing(self) -> tuple[float, float]:
        """Image Plane Pixel Spacing (3002,0011) in DICOM order: ``(Δr, Δc)`` mm."""
        return (self.pixel_spacing[1], self.pixel_spacing[0])

    def detector_frame(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Where the pixels are, in patient coordinates.

        Returns
        -------
        corner : ndarray of shape (3,)
            Centre of pixel (row 0, column 0), mm.
        column_step : ndarray of shape (3,)
            Displacement from one column to the next (``Δc`` along ``+Xr``).
        row_step : ndarray of shape (3,)
            Displacement from one row to the next (``Δr`` along ``-Yr``).

        Notes
        -----
        Pixel ``(r, c)`` is at ``corner + c * column_step + r * row_step``.
        """
        g = self._gantry_to_patient
        x0, y0 = self.rt_image_position
        corner = self.isocenter + g @ np.array([x0, y0, self.sad - self.sid])
        return corner, self.pixel_spacing[0] * g[:, 0], -self.pixel_spacing[1] * g[:, 1]

    def pixel_positions(self) -> np.ndarray:
        """ndarray of shape (rows, columns, 3): patient coordinates of every pixel centre (mm)."""
        corner, dc, dr = self.detector_frame()
        r = np.arange(self.rows, dtype=np.float64)[:, None, None]
        c = np.arange(self.columns, dtype=np.float64)[None, :, None]
        return corner + c * dc + r * dr

    # ------------------------------------------------------- projections
    def patient_to_gantry(self, points: np.ndarray) -> np.ndarray:
        """Gantry coordinates (mm) of patient points, shape (..., 3)."""
        p = np.asarray(points, dtype=np.float64)
        return (p - self.isocenter) @ self._gantry_to_patient

    def project(self, points: np.ndarray) -> np.ndarray:
        """Fractional ``(row, column)`` pixel indices where patient points project.

        Parameters
        ----------
        points : array_like of shape (..., 3)
            Patient coordinates (mm); they must lie on the source's side of
            the receptor and not behind the source.

        Returns
        -------
        ndarray of shape (..., 2)
            Integers name pixel centres.

        Raises
        ------
        GeometryError
            If a point is at or behind the source's plane (``Zg >= SAD``).
        """
        g = self.patient_to_gantry(points)
        depth = self.sad - g[..., 2]
        if np.any(depth <= 0):
            raise GeometryError("a point lies at or behind the source plane: it cannot be projected")
        scale = self.sid / depth
        return self._receptor_to_pixel(g[..., 0] * scale, g[..., 1] * scale)

    def beam_limiting_device_to_pixel(self, xy: np.ndarray) -> np.ndarray:
        """Fractional ``(row, column)`` of points given in the collimator frame at the isocentre.

        Parameters
        ----------
        xy : array_like of shape (..., 2)
            ``(Xb, Yb)`` in mm in the isocentre plane (where jaw and leaf
            positions are specified), in the beam limiting device system.

        Returns
        -------
        ndarray of shape (..., 2)
        """
        b = np.asarray(xy, dtype=np.float64)
        t = math.radians(self.collimator_angle)
        c, s = math.cos(t), math.sin(t)
        x = c * b[..., 0] - s * b[..., 1]
        y = s * b[..., 0] + c * b[..., 1]
        scale = self.sid / self.sad
        return self._receptor_to_pixel(x * scale, y * scale)

    def fitted_to_field(self, jaws: tuple[float, float, float, float],
                        margin_mm: float) -> BeamGeometry:
        """A "field DRR": the image shrunk to the field's rectangle plus a margin.

        The field's rectangle ``(x1, x2, y1, y2)`` (collimator frame, mm at the
        isocentre) is rotated by the collimator angle, grown by ``margin_mm``
        on every side and magnified to the receptor; the image keeps its pixel
        spacing, is centred on that box (``image_offset``) and is never larger
        than this geometry's rows and columns.

        Parameters
        ----------
        jaws : tuple of float
            ``(x1, x2, y1, y2)`` in mm at the isocentre, ``x1 < x2``, ``y1 < y2``.
        margin_mm : float
            Added around the field, mm at the isocentre; not negative.

        Returns
        -------
        BeamGeometry

        Raises
        ------
        GeometryError
            If the rectangle is empty or the margin negative.
        """
        x1, x2, y1, y2 = (float(v) for v in jaws)
        margin = float(margin_mm)
        if not (x1 < x2 and y1 < y2):
            raise GeometryError(f"the field ({x1:g}, {x2:g}, {y1:g}, {y2:g}) mm is empty")
        if not (math.isfinite(margin) and margin >= 0):
            raise GeometryError(f"field margin must be a non-negative number of mm, got "
                                f"{margin_mm!r}")
        t = math.radians(self.collimator_angle)
        rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
        corners = np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2]]) @ rot.T
        lo = (corners.min(axis=0) - margin) * self.sid / self.sad
        hi = (corners.max(axis=0) + margin) * self.sid / self.sad
        dc, dr = self.pixel_spacing
        columns = min(self.columns, int(math.ceil((hi[0] - lo[0]) / dc - 1e-9)) + 1)
        rows = min(self.rows, int(math.ceil((hi[1] - lo[1]) / dr - 1e-9)) + 1)
        centre = (lo + hi) / 2.0
        return replace(self, rows=rows, columns=columns,
                       image_offset=(float(centre[0]), float(centre[1])))

    def _receptor_to_pixel(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
        x0, y0 = self.rt_image_position
        dc, dr = self.pixel_spacing
        return np.stack([(y0 - y) / dr, (x - x0) / dc], axis=-1)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, BeamGeometry):
            return NotImplemented
        return (self.patient_position is other.patient_position
                and (self.rows, self.columns) == (other.rows, other.columns)
                and np.allclose(self.isocenter, other.isocenter, atol=1e-6)
                and np.allclose(self._gantry_to_patient, other._gantry_to_patient, atol=1e-9)
                and abs((self.collimator_angle - other.collimator_angle + 180.0) % 360.0
                        - 180.0) <= 1e-9
                and np.allclose([self.sad, self.sid, *self.pixel_spacing, *self.image_offset],
                                [other.sad, other.sid, *other.pixel_spacing, *other.image_offset],
                                atol=1e-9))

    def __hash__(self) -> int:
        # Only what equality compares exactly: equal geometries hash alike.
        return hash((self.rows, self.columns, self.patient_position))

    def __repr__(self) -> str:
        iso = np.round(self.isocenter, 3).tolist()
        return (f"BeamGeometry(gantry={self.gantry_angle:g}, collimator={self.collimator_angle:g}, "
                f"couch={self.couch_angle:g}, isocenter={iso}, sad={self.sad:g}, sid={self.sid:g}, "
                f"size={self.rows}x{self.columns}, pixel={self.pixel_spacing}, "
                f"offset={self.image_offset}, position={self.patient_position.value})")


def aperture_outline(jaws: tuple[float, float, float, float], axis: int, boundaries: np.ndarray,
                     positions: np.ndarray) -> list[np.ndarray]:
    """The outline of an MLC opening clipped to the jaws, in the collimator frame.

    Parameters
    ----------
    jaws : tuple of float
        ``(x1, x2, y1, y2)``, mm at the isocentre.
    axis : int
        0 when the leaves move along ``Xb`` (MLCX), 1 along ``Yb`` (MLCY).
    boundaries : ndarray of shape (N + 1,)
        Leaf Position Boundaries, increasing, mm.
    positions : ndarray of shape (2 N,)
        Leaf/Jaw Positions: bank A (pairs 1..N) then bank B, mm.

    Returns
    -------
    list of ndarray of shape (M, 2)
        One closed staircase polygon ``(Xb, Yb)`` per run of neighbouring open
        leaf pairs (first point repeated last); empty when nothing is open.
    """
    x1, x2, y1, y2 = jaws
    motion = (x1, x2) if axis == 0 else (y1, y2)
    across = (y1, y2) if axis == 0 else (x1, x2)
    n = len(boundaries) - 1
    a = np.clip(np.asarray(positions[:n], dtype=np.float64), *motion)
    b = np.clip(np.asarray(positions[n:], dtype=np.float64), *motion)
    lo = np.clip(np.asarray(boundaries[:-1], dtype=np.float64), *across)
    hi = np.clip(np.asarray(boundaries[1:], dtype=np.float64), *across)
    is_open = (b > a) & (hi > lo)
    polygons = []
    pair = 0
    while pair < n:
        if not is_open[pair]:
            pair += 1
            continue
        run = []
        while pair < n and is_open[pair]:
            run.append(pair)
            pair += 1
        left = [(a[p], edge) for p in run for edge in (lo[p], hi[p])]
        right = [(b[p], edge) for p in reversed(run) for edge in (hi[p], lo[p])]
        points = np.array(left + right + left[:1])
        polygons.append(points if axis == 0 else points[:, ::-1])
    return polygons
