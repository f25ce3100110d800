"""Structures and their contours; contour point reduction with a deviation report.

Conventions
-----------
Contour points are patient coordinates ``(x, y, z)`` in mm (LPS), one row
per point, as DICOM Contour Data lists them.  A closed planar contour is
closed implicitly: its last point joins its first (a repeated first point
at the end is tolerated and treated as a duplicate).

Reduction (iPlan Note 8-3)
--------------------------
:func:`reduce_contours` reduces many closed planar contours at once, with
Visvalingam-Whyatt (``"vw"``, the default) or Douglas-Peucker (``"rdp"``),
to a point budget, an encoded-byte budget (the caller says what each point
costs to encode: :mod:`rtforge.io.rtstruct` passes the DS lengths and the
65534-byte limit of Explicit VR), or a tolerance.  It guarantees, for every
contour it reduces:

- the budgets hold and at least three points are kept;
- the kept points are a subsequence of the input (in cyclic order), so the
  contour stays closed and of the same geometric type;
- the result never self-intersects or touches itself when the input does
  not (a reduction that would is repaired: points are re-inserted where
  segments meet, then the budget is met again by removals that are each
  checked; a self-intersecting input is reduced without this guarantee and
  flagged);
- the report gives, per contour, points before and after, the Hausdorff
  distance in mm and the area change in percent.

The Hausdorff distance reported is the largest distance from an original
point to the reduced closed polygon.  Every reduced point is an original
point, so this is the discrete Hausdorff distance between the two contours
(GEOS's ``DiscreteHausdorffDistance``).  In tolerance mode it stays within
the tolerance unless a budget forces more points out (or, rarely, repairing
a self-intersection moves a segment); the report shows where that happened.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum, IntEnum
from typing import NamedTuple

import numba
import numpy as np
from numpy.typing import ArrayLike

from rtforge.core import _contours_kernels as _k
from rtforge.errors import GeometryError, InvalidInputError

__all__ = [
    "ContourGeometricType",
    "EndCap",
    "plane_slabs",
    "RTROIInterpretedType",
    "ROIGenerationAlgorithm",
    "ReductionMethod",
    "ReductionStatus",
    "Contour",
    "Structure",
    "ContourReduction",
    "ReductionReport",
    "ReductionResult",
    "PLANARITY_TOLERANCE_MM",
    "CHUNK_POINTS",
    "pack_contours",
    "gather_kept",
    "contour_frames",
    "reduce_contours",
    "reduce_packed",
    "shortest_decimals",
    "hausdorff_distance",
    "polygon_area",
    "is_simple",
    "simple_packed",
    "structure_volume",
]

logger = logging.getLogger(__name__)


class EndCap(str, Enum):
    """How much slab the first and last contour planes of a structure get.

    The slab of a plane is one contour spacing centred on it; the end planes'
    slabs are cut on their outer side by this convention (module notes).
    """

    #: Each end plane a full slab: the solid extends half a spacing beyond it.
    FULL = "full"
    #: Each end plane half a slab: the solid stops at the end planes (the
    #: convention of the volumes treatment planning systems store).
    HALF = "half"
    #: The end planes get no slab: the solid stops half a spacing inside them.
    NONE = "none"

#: Largest distance (mm) of a closed planar contour's point from the contour's plane.
PLANARITY_TOLERANCE_MM = 0.05
_DEGENERATE_AREA = 1e-10  # twice the area below this times the squared extent: no area


class ContourGeometricType(str, Enum):
    """Contour Geometric Type (3006,0042), PS3.3 C.8.8.6.1."""

    POINT = "POINT"
    OPEN_PLANAR = "OPEN_PLANAR"
    OPEN_NONPLANAR = "OPEN_NONPLANAR"
    CLOSED_PLANAR = "CLOSED_PLANAR"
    CLOSEDPLANAR_XOR = "CLOSEDPLANAR_XOR"


class RTROIInterpretedType(str, Enum):
    """Defined terms of RT ROI Interpreted Type (3006,00A4), PS3.3 C.8.8.8.1
    and Oncentra Brachy 8.1.1.2.6.7 (iPlan writes EXTERNAL, PTV, AVOIDANCE, ORGAN)."""

    EXTERNAL = "EXTERNAL"
    PTV = "PTV"
    CTV = "CTV"
    GTV = "GTV"
    TREATED_VOLUME = "TREATED_VOLUME"
    IRRAD_VOLUME = "IRRAD_VOLUME"
    BOLUS = "BOLUS"
    AVOIDANCE = "AVOIDANCE"
    ORGAN = "ORGAN"
    MARKER = "MARKER"
    REGISTRATION = "REGISTRATION"
    ISOCENTER = "ISOCENTER"
    CONTRAST_AGENT = "CONTRAST_AGENT"
    CAVITY = "CAVITY"
    BRACHY_CHANNEL = "BRACHY_CHANNEL"
    BRACHY_ACCESSORY = "BRACHY_ACCESSORY"
    BRACHY_SRC_APP = "BRACHY_SRC_APP"
    BRACHY_CHNL_SHLD = "BRACHY_CHNL_SHLD"
    SUPPORT = "SUPPORT"
    FIXATION = "FIXATION"
    DOSE_REGION = "DOSE_REGION"
    CONTROL = "CONTROL"
    DOSE_MEASUREMENT = "DOSE_MEASUREMENT"


class ROIGenerationAlgorithm(str, Enum):
    """Defined terms of ROI Generation Algorithm (3006,0036), PS3.3 C.8.8.5."""

    AUTOMATIC = "AUTOMATIC"
    SEMIAUTOMATIC = "SEMIAUTOMATIC"
    MANUAL = "MANUAL"


class ReductionMethod(str, Enum):
    """Contour point reduction algorithm."""

    #: Visvalingam-Whyatt: remove the point of the smallest triangle first.
    VW = "vw"
    #: Douglas-Peucker (Ramer-Douglas-Peucker): insert the farthest point first.
    RDP = "rdp"


class ReductionStatus(IntEnum):
    """What :func:`reduce_contours` did to one contour."""

    UNCHANGED = _k.UNCHANGED
    REDUCED = _k.REDUCED
    #: The plain reduction self-intersected: repaired, still within the budgets.
    REPAIRED = _k.REPAIRED
    #: The input self-intersects: reduced without the no-intersection guarantee.
    INPUT_NOT_SIMPLE = _k.INPUT_NOT_SIMPLE
    STUCK = _k.STUCK
    DEGENERATE = _k.DEGENERATE

    @property
    def label(self) -> str:
        """Lower-case words for reports."""
        return self.name.lower().replace("_", " ")


_MIN_POINTS = {ContourGeometricType.POINT: 1, ContourGeometricType.OPEN_PLANAR: 2,
               ContourGeometricType.OPEN_NONPLANAR: 2, ContourGeometricType.CLOSED_PLANAR: 3,
               ContourGeometricType.CLOSEDPLANAR_XOR: 3}


def _points_array(points: ArrayLike, what: str) -> np.ndarray:
    arr = np.asarray(points)
    if arr.ndim != 2 or arr.shape[1] != 3:
        raise GeometryError(f"{what} must have shape (N, 3) (x, y, z in mm), got {arr.shape}")
    if arr.dtype.kind not in "fiu":
        raise GeometryError(f"{what} must hold numbers, got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float64)
    if not np.all(np.isfinite(arr)):
        bad = int(np.flatnonzero(~np.all(np.isfinite(arr), axis=1))[0])
        raise GeometryError(f"{what} point {bad} is not finite: {arr[bad].tolist()}")
    return arr


@dataclass(frozen=True, eq=False)
class Contour:
    """One contour of a structure.

    Parameters
    ----------
    points : array_like of shape (N, 3)
        Patient coordinates (x, y, z) in mm.
    geometric_type : str or ContourGeometricType, optional
        ``CLOSED_PLANAR`` (default), ``POINT``, ``OPEN_PLANAR``, ...
    image_uids : tuple of (str, str), optional
        ``(Referenced SOP Class UID, Referenced SOP Instance UID)`` of the
        images the contour lies on (Contour Image Sequence).

    Raises
    ------
    GeometryError
        If ``points`` is not (N, 3), holds a NaN or infinity, or has fewer
        points than the type needs (1 for POINT, 2 for open, 3 for closed).
    InvalidInputError
        If ``geometric_type`` is not a Contour Geometric Type.
    """

    points: np.ndarray
    geometric_type: ContourGeometricType = ContourGeometricType.CLOSED_PLANAR
    image_uids: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        try:
            kind = ContourGeometricType(self.geometric_type)
        except ValueError:
            raise InvalidInputError(
                f"geometric_type {self.geometric_type!r} is not one of "
                f"{[t.value for t in ContourGeometricType]}") from None
        arr = _points_array(self.points, "contour points")
        need = _MIN_POINTS[kind]
        if arr.shape[0] < need:
            raise GeometryError(f"a {kind.value} contour needs at least {need} point(s), "
                                f"got {arr.shape[0]}")
        if kind is ContourGeometricType.POINT and arr.shape[0] != 1:
            raise GeometryError(f"a POINT contour has exactly one point, got {arr.shape[0]}")
        arr.setflags(write=False)
        object.__setattr__(self, "points", arr)
        object.__setattr__(self, "geometric_type", kind)
        object.__setattr__(self, "image_uids", tuple((str(c), str(i)) for c, i in self.image_uids))

    @property
    def n_points(self) -> int:
        """Number of points."""
        return int(self.points.shape[0])

    @property
    def is_closed(self) -> bool:
        """True for CLOSED_PLANAR and CLOSEDPLANAR_XOR."""
        return self.geometric_type in (ContourGeometricType.CLOSED_PLANAR,
                                       ContourGeometricType.CLOSEDPLANAR_XOR)


@dataclass(frozen=True)
class Structure:
    """A region of interest and its contours.

    Parameters
    ----------
    number : int
        ROI Number (3006,0022), unique in its structure set; any integer
        (PS3.3 C.8.8.5 asks only for uniqueness: Oncentra and Elekta number
        from 0).
    name : str
        ROI Name (3006,0026).
    contours : tuple of Contour, optional
    interpreted_type : str or RTROIInterpretedType, optional
        RT ROI Interpreted Type (3006,00A4); None when unknown.  Terms outside
        :class:`RTROIInterpretedType` (private extensions) are kept as text.
    colour : tuple of 3 int, optional
        ROI Display Color (3006,002A), RGB 0-255.
    generation_algorithm : str or ROIGenerationAlgorithm, optional
        ROI Generation Algorithm (3006,0036).
    description : str, optional
        ROI Description (3006,0028).
    interpreter : str, optional
        ROI Interpreter (3006,00A6), a person's name.
    observation_label : str, optional
        ROI Observation Label (3006,0085).
    physical_properties : tuple of (str, float), optional
        ROI Physical Properties Sequence: ``(ROI Physical Property, value)``,
        e.g. ``("REL_ELEC_DENSITY", 1.0)``.
    frame_of_reference_uid : str, optional
        Referenced Frame of Reference UID (3006,0024) when it differs from
        the structure set's.
    volume_cm3 : float, optional
        ROI Volume (3006,002C) as read; the writer computes its own.

    Raises
    ------
    InvalidInputError
        If ``number`` is not an integer or ``colour`` not three 0-255 values.
    """

    number: int
    name: str
    contours: tuple[Contour, ...] = ()
    interpreted_type: RTROIInterpretedType | str | None = None
    colour: tuple[int, int, int] | None = None
    generation_algorithm: ROIGenerationAlgorithm | str | None = None
    description: str = ""
    interpreter: str = ""
    observation_label: str = ""
    physical_properties: tuple[tuple[str, float], ...] = ()
    frame_of_reference_uid: str | None = None
    volume_cm3: float | None = field(default=None, compare=False)

    def __post_init__(self) -> None:
        if isinstance(self.number, bool) or int(self.number) != self.number:
            raise InvalidInputError(f"ROI number must be an integer, got {self.number!r}")
        object.__setattr__(self, "number", int(self.number))
        object.__setattr__(self, "contours", tuple(self.contours))
        for name, enum in (("interpreted_type", RTROIInterpretedType),
                           ("generation_algorithm", ROIGenerationAlgorithm)):
            value = getattr(self, name)
            if isinstance(value, str) and value in enum.__members__:
                object.__setattr__(self, name, enum(value))
        if self.colour is not None:
            rgb = tuple(int(c) for c in self.colour)
            if len(rgb) != 3 or any(not 0 <= c <= 255 for c in rgb):
                raise InvalidInputError(f"ROI colour must be three values 0-255, got {self.colour}")
            object.__setattr__(self, "colour", rgb)
        object.__setattr__(self, "physical_properties",
                           tuple((str(p), float(v)) for p, v in self.physical_properties))

    @property
    def n_points(self) -> int:
        """Points of all contours."""
        return sum(c.n_points for c in self.contours)


# ------------------------------------------------------------------ report
class ContourReduction(NamedTuple):
    """One contour's line of a :class:`ReductionReport` (lengths in mm, areas in mm2)."""

    contour: int
    points_before: int
    points_after: int
    hausdorff_mm: float
    area_before_mm2: float
    area_after_mm2: float
    area_change_percent: float
    status: ReductionStatus


@dataclass(frozen=True)
class ReductionReport:
    """Per-contour outcome of a reduction, as arrays of length C.

    Parameters
    ----------
    points_before, points_after : ndarray of int64
    hausdorff_mm : ndarray of float64
        Largest distance from an original point to the reduced contour, mm.
    area_before_mm2, area_after_mm2 : ndarray of float64
        Enclosed (shoelace) areas, mm2.
    status : ndarray of int8
        :class:`ReductionStatus` codes.
    """

    points_before: np.ndarray
    points_after: np.ndarray
    hausdorff_mm: np.ndarray
    area_before_mm2: np.ndarray
    area_after_mm2: np.ndarray
    status: np.ndarray

    @property
    def area_change_percent(self) -> np.ndarray:
        """``100 * (after - before) / before``; 0 where the area before is 0."""
        before = self.area_before_mm2
        with np.errstate(divide="ignore", invalid="ignore"):
            change = 100.0 * (self.area_after_mm2 - before) / before
        return np.where(before > 0, change, 0.0)

    @property
    def reduced(self) -> np.ndarray:
        """Boolean mask of the contours that lost points."""
        return self.points_after < self.points_before

    def __len__(self) -> int:
        return int(self.points_before.shape[0])

    def __getitem__(self, index: int) -> ContourReduction:
        change = self.area_change_percent
        return ContourReduction(
            contour=int(index), points_before=int(self.points_before[index]),
            points_after=int(self.points_after[index]),
            hausdorff_mm=float(self.hausdorff_mm[index]),
            area_before_mm2=float(self.area_before_mm2[index]),
            area_after_mm2=float(self.area_after_mm2[index]),
            area_change_percent=float(change[index]),
            status=ReductionStatus(int(self.status[index])))

    def __iter__(self) -> Iterator[ContourReduction]:
        return (self[i] for i in range(len(self)))

    @classmethod
    def concatenate(cls, reports: Sequence[ReductionReport]) -> ReductionReport:
        """One report of several, in order."""
        names = ("points_before", "points_after", "hausdorff_mm", "area_before_mm2",
                 "area_after_mm2", "status")
        if not reports:
            empty = (np.int64, np.int64, np.float64, np.float64, np.float64, np.int8)
            return cls(*(np.zeros(0, dtype=t) for t in empty))
        return cls(*(np.concatenate([getattr(r, n) for r in reports]) for n in names))

    def worst(self, count: int) -> list[ContourReduction]:
        """The ``count`` reduced contours of largest Hausdorff distance, worst first."""
        order = np.argsort(-self.hausdorff_mm, kind="stable")
        return [self[int(i)] for i in order if self.reduced[i]][:count]


@dataclass(frozen=True)
class ReductionResult:
    """Output of :func:`reduce_contours`.

    Parameters
    ----------
    contours : list of ndarray of shape (M, 3)
        Each contour's kept points (all of them when unchanged).
    kept : list of ndarray of intp
        Indices of the kept points in each input contour, increasing.
    report : ReductionReport
    """

    contours: list[np.ndarray]
    kept: list[np.ndarray]
    report: ReductionReport


# ------------------------------------------------------------------ helpers
#: Kept points :func:`reduce_contours` makes room for at a time (a contour's room is its
#: budget, or all its points when it has none): 32 MB of coordinates and indices.
CHUNK_POINTS = 1 << 20


def _chunks(sizes: Sequence[int], limit: int) -> Iterator[tuple[int, int]]:
    """Ranges ``[lo, hi)`` of consecutive items whose sizes add up to at most
    ``limit`` (an item bigger than ``limit`` alone)."""
    lo, total = 0, 0
    for i, n in enumerate(sizes):
        if i > lo and total + n > limit:
            yield lo, i
            lo, total = i, 0
        total += n
    if lo < len(sizes):
        yield lo, len(sizes)

def pack_contours(contours: Sequence[ArrayLike], *, check_finite: bool = True,
                  buffer: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Contours one after the other, as the kernels take them.

    Parameters
    ----------
    contours : sequence of array_like of shape (N_c, 3)
    check_finite : bool, optional
        Refuse NaN and infinite coordinates (default).  :func:`reduce_packed`
        checks them itself, in its first pass over the points.
    buffer : ndarray of shape (M, 3), dtype float64, optional
        Memory to pack into when it is large enough (the result is a view of it).

    Returns
    -------
    points : ndarray of shape (sum N_c, 3), dtype float64
    offsets : ndarray of shape (C + 1,), dtype intp
        Contour ``c`` is ``points[offsets[c]:offsets[c + 1]]``.

    Raises
    ------
    GeometryError
        If a contour is not (N, 3) or not numeric, or (with ``check_finite``)
        holds a NaN or infinity.
    """
    arrays = []
    for i, c in enumerate(contours):
        arr = np.asarray(c)
        if arr.ndim != 2 or arr.shape[1] != 3 or arr.dtype.kind not in "fiu":
            raise GeometryError(f"contour {i} must be numbers of shape (N, 3) (x, y, z in mm), "
                                f"got {arr.dtype} {arr.shape}")
        arrays.append(_points_array(arr, f"contour {i}") if check_finite else arr)
    offsets = np.zeros(len(arrays) + 1, dtype=np.intp)
    np.cumsum([a.shape[0] for a in arrays], out=offsets[1:])
    total = int(offsets[-1])
    if not arrays:
        return np.empty((0, 3)), offsets
    if buffer is not None and buffer.shape[0] >= total:
        return np.concatenate(arrays, out=buffer[:total], casting="same_kind"), offsets
    return np.concatenate(arrays, dtype=np.float64), offsets


def gather_kept(points: np.ndarray, offsets: np.ndarray, keep: np.ndarray,
                counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The kept points of packed contours, packed again.

    Parameters
    ----------
    points : ndarray of shape (N, 3), dtype float64
    offsets : ndarray of shape (C + 1,), dtype intp
    keep : ndarray of shape (N,), dtype bool
    counts : ndarray of shape (C,)
        Kept points per contour (``ReductionReport.points_after``).

    Returns
    -------
    points : ndarray of shape (K, 3), dtype float64
    offsets : ndarray of shape (C + 1,), dtype intp
    """
    kept_offsets = np.zeros_like(offsets)
    np.cumsum(counts, out=kept_offsets[1:])
    out = np.empty((int(kept_offsets[-1]), 3))
    if out.shape[0]:
        _k.gather_kept(points, offsets, keep, kept_offsets, out)
    return out, kept_offsets


def _planes(points: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    count = offsets.shape[0] - 1
    normal = np.empty((count, 3))
    centroid = np.empty((count, 3))
    deviation = np.empty(count)
    if count:
        _k.contour_planes(points, offsets, normal, centroid, deviation)
    return normal, centroid, deviation


def _frames_from_normals(normal: np.ndarray) -> np.ndarray:
    """In-plane orthonormal (u, v) per normal (see ``_contours_kernels.frame_of``)."""
    frames = np.empty((normal.shape[0], 3, 3))
    _k.frames_of(np.ascontiguousarray(normal, dtype=np.float64), frames)
    return frames[:, :2]


def contour_frames(points: np.ndarray, offsets: np.ndarray
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each packed contour's plane: unit normal, in-plane frame and flatness.

    Parameters
    ----------
    points : ndarray of shape (N, 3), dtype float64
    offsets : ndarray of shape (C + 1,), dtype intp
        See :func:`pack_contours`.

    Returns
    -------
    normal : ndarray of shape (C, 3)
        Unit normal (Newell's method; right-handed with the point order),
        zero for a degenerate contour (no enclosed area).
    frames : ndarray of shape (C, 2, 3)
        Orthonormal in-plane axes ``u``, ``v``; ``(x, y)`` for axial planes.
    deviation : ndarray of shape (C,)
        Largest distance of a point from the plane, mm.
    """
    normal, _, deviation = _planes(points, offsets)
    length = np.linalg.norm(normal, axis=1)
    unit = np.zeros_like(normal)
    np.divide(normal, length[:, None], out=unit, where=length[:, None] > 0)
    return unit, _frames_from_normals(normal), deviation


def _budget_array(max_points: int | Sequence[int] | np.ndarray | None, count: int) -> np.ndarray:
    if max_points is None:
        return np.full(count, np.iinfo(np.int64).max, dtype=np.int64)
    arr = np.asarray(max_points)
    if arr.dtype.kind not in "iu":
        raise InvalidInputError(f"max_points must be integers, got {max_points!r}")
    arr = np.full(count, int(arr), dtype=np.int64) if arr.ndim == 0 else arr.astype(np.int64)
    if arr.shape != (count,):
        raise InvalidInputError(f"max_points has {arr.shape[0]} values for {count} contours")
    if count and int(arr.min()) < 3:
        raise InvalidInputError(f"max_points must be at least 3 (a closed contour), got "
                                f"{int(arr.min())}")
    return arr


# ------------------------------------------------------------------ reduce
def reduce_packed(points: np.ndarray, offsets: np.ndarray, *,
                  max_points: int | Sequence[int] | np.ndarray | None = None,
                  max_bytes: int | None = None, point_bytes: np.ndarray | None = None,
                  tolerance_mm: float | None = None,
                  method: str | ReductionMethod = ReductionMethod.VW,
                  index_base: int = 0) -> tuple[np.ndarray, ReductionReport]:
    """:func:`reduce_contours` on packed contours (see :func:`pack_contours`).

    ``point_bytes`` is one array for all points; ``index_base`` is added to
    the contour numbers that messages name (for a slice of a larger list).

    Returns
    -------
    keep : ndarray of shape (N,), dtype bool
        The kept points.
    report : ReductionReport

    Raises
    ------
    InvalidInputError, GeometryError
        As :func:`reduce_contours`.
    """
    method = _method(method)
    if points.ndim != 2 or points.shape[1] != 3 or points.dtype != np.float64:
        raise InvalidInputError(f"points must be float64 (N, 3), got {points.dtype} {points.shape}")
    if offsets.ndim != 1 or offsets.shape[0] < 1 or offsets[0] != 0 \
            or offsets[-1] != points.shape[0] or np.any(np.diff(offsets) < 0):
        raise InvalidInputError("offsets must rise from 0 to the number of points")
    count = offsets.shape[0] - 1
    sizes = np.diff(offsets)
    if count and int(sizes.min()) < 3:
        bad = int(np.argmin(sizes))
        raise GeometryError(f"contour {index_base + bad} has {int(sizes[bad])} point(s); a closed contour "
                            "needs at least 3")
    budget = _budget_array(max_points, count)
    _check_tolerance(tolerance_mm)
    costs, byte_limit = _byte_budget(max_bytes, point_bytes, points.shape[0])
    keep = np.empty(points.shape[0], dtype=np.bool_)
    out = _Outputs(count)
    tol2 = -1.0 if tolerance_mm is None else float(tolerance_mm) ** 2
    code = _k.METHOD_RDP if method is ReductionMethod.RDP else _k.METHOD_VW
    if count:
        _k.reduce_many(points, offsets, costs, budget, byte_limit, tol2, code, keep, out.kept,
                       out.normal, out.extent2, out.finite, out.spread, out.hausdorff,
                       out.area_before, out.area_after, out.status)
    report = out.checked(sizes, budget, np.add.reduceat(costs, offsets[:-1])
                         if count and costs.size else None, byte_limit, tolerance_mm is not None,
                         index_base, lambda c: points[offsets[c]:offsets[c + 1]])
    return keep, report


def _check_tolerance(tolerance_mm: float | None) -> None:
    if tolerance_mm is not None and not (math.isfinite(tolerance_mm) and tolerance_mm >= 0):
        raise InvalidInputError(f"tolerance_mm must be a non-negative number, got {tolerance_mm!r}")


class _Outputs:
    """The per-contour outputs of the reduction kernels, and their checks."""

    def __init__(self, count: int) -> None:
        self.kept = np.zeros(count, dtype=np.int64)
        self.normal = np.zeros((count, 3))
        self.extent2 = np.zeros(count)
        self.finite = np.ones(count, dtype=np.bool_)
        self.spread = np.zeros(count)
        self.hausdorff = np.zeros(count)
        self.area_before = np.zeros(count)
        self.area_after = np.zeros(count)
        self.status = np.zeros(count, dtype=np.int8)

    def checked(self, sizes: np.ndarray, budget: np.ndarray, totals: np.ndarray | None,
                byte_limit: int, tolerance: bool, index_base: int,
                contour: Callable[[int], np.ndarray]) -> ReductionReport:
        """The report, once every contour is known to be reduced as promised.

        Raises
        ------
        GeometryError
            For the first contour (in this order of checks) that is not
            finite, lies on one line, is not planar, or could not be reduced.
        """
        if not np.all(self.finite):
            bad = int(np.flatnonzero(~self.finite)[0])
            row = contour(bad)
            point = int(np.flatnonzero(~np.all(np.isfinite(row), axis=1))[0])
            raise GeometryError(f"contour {index_base + bad} point {point} is not finite: "
                                f"{row[point].tolist()}")
        needs = (sizes > budget) | tolerance
        if totals is not None:
            needs |= totals - 1 > byte_limit
        flat = needs & (np.linalg.norm(self.normal, axis=1) <= _DEGENERATE_AREA * self.extent2)
        if np.any(flat):
            bad = int(np.flatnonzero(flat)[0])
            raise GeometryError(f"contour {index_base + bad} ({int(sizes[bad])} points) cannot be "
                                "reduced: all its points lie on one line (it encloses no area)")
        bent = needs & (self.spread > 2 * PLANARITY_TOLERANCE_MM)
        if np.any(bent):
            bad = int(np.flatnonzero(bent)[0])
            raise GeometryError(f"contour {index_base + bad} is not planar: its points spread "
                                f"{self.spread[bad]:.3g} mm across its plane (at most "
                                f"{2 * PLANARITY_TOLERANCE_MM} mm); only CLOSED_PLANAR contours "
                                "can be reduced")
        failed = needs & (self.status == ReductionStatus.STUCK)
        if np.any(failed):
            bad = int(np.flatnonzero(failed)[0])
            raise GeometryError(f"contour {index_base + bad} ({int(sizes[bad])} points) cannot be "
                                "reduced: no reduction within the budget keeps it free of "
                                "self-intersection; check the contour or allow more points")
        crossing = np.flatnonzero(self.status == ReductionStatus.INPUT_NOT_SIMPLE)
        if crossing.size:
            logger.warning("%d contour(s) self-intersect before reduction (first: contour %d); "
                           "reduced without the no-intersection guarantee", crossing.size,
                           index_base + int(crossing[0]))
        return ReductionReport(points_before=sizes.astype(np.int64), points_after=self.kept,
                               hausdorff_mm=self.hausdorff, area_before_mm2=self.area_before,
                               area_after_mm2=self.area_after, status=self.status)


def _byte_budget(max_bytes: int | None, point_bytes: np.ndarray | None,
                 npoints: int) -> tuple[np.ndarray, int]:
    if max_bytes is None:
        if point_bytes is not None:
            raise InvalidInputError("point_bytes is given without max_bytes")
        return np.zeros(0, dtype=np.int64), np.iinfo(np.int64).max
    if point_bytes is None:
        raise InvalidInputError("max_bytes needs point_bytes (the encoded size of each point)")
    costs = np.ascontiguousarray(point_bytes, dtype=np.int64)
    if costs.shape != (npoints,):
        raise InvalidInputError(f"point_bytes must have one value per point ({npoints}), got "
                                f"shape {costs.shape}")
    if npoints and int(costs.min()) < 1:
        raise InvalidInputError("point_bytes must be positive")
    limit = int(max_bytes)
    if npoints and 3 * int(costs.max()) - 1 > limit:
        raise InvalidInputError(f"max_bytes {limit} cannot hold three points of up to "
                                f"{int(costs.max())} bytes each")
    return costs, limit


def reduce_contours(contours: Sequence[ArrayLike], *,
                    max_points: int | Sequence[int] | np.ndarray | None = None,
                    max_bytes: int | None = None,
                    point_bytes: Sequence[ArrayLike] | None = None,
                    tolerance_mm: float | None = None,
                    method: str | ReductionMethod = ReductionMethod.VW) -> ReductionResult:
    """Reduce closed planar contours to a point budget, a byte budget or a tolerance.

    Parameters
    ----------
    contours : sequence of array_like of shape (N_c, 3)
        Closed planar contours, patient coordinates in mm (see module notes).
    max_points : int or sequence of int, optional
        Most points a contour may keep (one value, or one per contour); at
        least 3.  No limit by default.
    max_bytes : int, optional
        Most bytes the encoded point list of one contour may take, e.g.
        65534 for DS Contour Data in Explicit VR.  Needs ``point_bytes``.
    point_bytes : sequence of array_like of int, optional
        Per contour, the bytes each point takes when encoded, separator
        included; the encoded length of a contour is the sum over its kept
        points minus one.
    tolerance_mm : float, optional
        Drop points while every original point stays within this distance
        of the reduced contour (then meet the budgets, if any still fails).
        Without it a contour within its budgets is left unchanged.
    method : {"vw", "rdp"} or ReductionMethod, optional
        Visvalingam-Whyatt (default) or Douglas-Peucker.

    Returns
    -------
    ReductionResult

    Raises
    ------
    GeometryError
        If a contour is not (N, 3), holds a NaN, has fewer than 3 points, is
        not planar within :data:`PLANARITY_TOLERANCE_MM` (only contours that
        need reducing are checked), is degenerate (all points on one line),
        or cannot be reduced within its budget without self-intersecting.
    InvalidInputError
        If a budget is below 3 points or cannot hold 3 points, the tolerance
        is negative, ``method`` is unknown, or ``point_bytes`` does not match.

    Notes
    -----
    Visvalingam-Whyatt removes, one at a time, the point whose triangle with
    its current neighbours has the smallest area.  Douglas-Peucker starts
    from the first point and the point farthest from it and inserts, one at
    a time, the point farthest from its current segment (with a tolerance,
    this is exactly the recursive algorithm; with a budget, its most
    significant points).  Both rank with one integer per point: the
    quantity's float bits with the lowest ``ceil(log2 N)`` replaced by the
    point's index, so quantities equal to about 1 part in ``2**(52 -
    log2 N)`` are taken in index order.  Consecutive duplicate points are
    dropped first.  Contours are processed in parallel (Numba threads, one
    contour each, handed out a few at a time), read where they are (a
    C-contiguous float64 array is not copied; any other is converted first),
    with room for :data:`CHUNK_POINTS` kept points at a time.
    """
    if point_bytes is not None and len(point_bytes) != len(contours):
        raise InvalidInputError(f"point_bytes has {len(point_bytes)} entries for "
                                f"{len(contours)} contours")
    method = _method(method)
    count = len(contours)
    budgets = _budget_array(max_points, count)
    _check_tolerance(tolerance_mm)
    arrays = []
    for i, c in enumerate(contours):
        arr = np.asarray(c)
        if arr.ndim != 2 or arr.shape[1] != 3 or arr.dtype.kind not in "fiu":
            raise GeometryError(f"contour {i} must be numbers of shape (N, 3) (x, y, z in mm), "
                                f"got {arr.dtype} {arr.shape}")
        if arr.dtype != np.float64 or not arr.flags.c_contiguous:
            arr = np.ascontiguousarray(arr, dtype=np.float64)
        arrays.append(arr)
    sizes = np.fromiter((a.shape[0] for a in arrays), dtype=np.intp, count=count)
    if count and int(sizes.min()) < 3:
        bad = int(np.argmin(sizes))
        raise GeometryError(f"contour {bad} has {int(sizes[bad])} point(s); a closed contour "
                            "needs at least 3")
    offsets = np.zeros(count + 1, dtype=np.intp)
    np.cumsum(sizes, out=offsets[1:])
    flat_bytes = None
    if point_bytes is not None:
        per_contour = [np.asarray(b, dtype=np.int64).ravel() for b in point_bytes]
        for i, b in enumerate(per_contour):
            if b.shape[0] != sizes[i]:
                raise InvalidInputError(f"point_bytes of contour {i} has {b.shape[0]} values for "
                                        f"{int(sizes[i])} points")
        flat_bytes = np.concatenate(per_contour) if per_contour else np.zeros(0, np.int64)
    costs, byte_limit = _byte_budget(max_bytes, flat_bytes, int(offsets[-1]))
    totals = np.add.reduceat(costs, offsets[:-1]) if count and costs.size else None
    tol2 = -1.0 if tolerance_mm is None else float(tolerance_mm) ** 2
    code = _k.METHOD_RDP if method is ReductionMethod.RDP else _k.METHOD_VW
    # Room for each contour's kept points: a reduced contour keeps at most its budget.
    room = np.minimum(sizes, budgets)
    reduced: list[np.ndarray] = []
    kept: list[np.ndarray] = []
    reports = []
    for lo, hi in _chunks(room, CHUNK_POINTS):
        out = _Outputs(hi - lo)
        out_offsets = np.zeros(hi - lo + 1, dtype=np.intp)
        np.cumsum(room[lo:hi], out=out_offsets[1:])
        out_index = np.empty(int(out_offsets[-1]), dtype=np.intp)
        out_points = np.empty((int(out_offsets[-1]), 3))
        addresses = np.fromiter((a.__array_interface__["data"][0] for a in arrays[lo:hi]),
                                dtype=np.intp, count=hi - lo)
        cost_offsets = offsets[lo:hi + 1] - offsets[lo]
        chunk_costs = costs[offsets[lo]:offsets[hi]] if costs.size else costs
        with numba.parallel_chunksize(_parallel_chunk(hi - lo)):
            _k.reduce_list(addresses, sizes[lo:hi], chunk_costs, cost_offsets, budgets[lo:hi],
                           byte_limit, tol2, code, out_offsets, out_index, out_points, out.kept,
                           out.normal, out.extent2, out.finite, out.spread, out.hausdorff,
                           out.area_before, out.area_after, out.status)
        reports.append(out.checked(sizes[lo:hi], budgets[lo:hi],
                                   None if totals is None else totals[lo:hi], byte_limit,
                                   tolerance_mm is not None, lo, arrays[lo:hi].__getitem__))
        fits = out.kept <= room[lo:hi]
        starts = out_offsets[:-1]
        if int(out.kept.sum()) < int(out_offsets[-1]) // 2:  # mostly empty room: compact it
            counts = np.where(fits, out.kept, 0)
            starts = np.zeros(hi - lo + 1, dtype=np.intp)
            np.cumsum(counts, out=starts[1:])
            rows = np.repeat(out_offsets[:-1] - starts[:-1], counts) + np.arange(int(starts[-1]))
            out_points, out_index = out_points[rows], out_index[rows]
        for c in range(hi - lo):
            o, k = int(starts[c]), int(out.kept[c])
            if fits[c]:
                reduced.append(out_points[o:o + k])
                kept.append(out_index[o:o + k])
            else:  # kept whole beyond its room (degenerate, let through above): a copy
                reduced.append(arrays[lo + c].copy())
                kept.append(np.arange(k, dtype=np.intp))
    return ReductionResult(contours=reduced, kept=kept, report=ReductionReport.concatenate(reports))


def _method(method: str | ReductionMethod) -> ReductionMethod:
    try:
        return ReductionMethod(method)
    except ValueError:
        raise InvalidInputError(f"method must be 'vw' or 'rdp', got {method!r}") from None


def _parallel_chunk(count: int) -> int:
    """Contours handed to a thread at a time: about eight rounds per thread, so
    that a thread slowed by other work on the machine takes fewer."""
    return max(1, count // (8 * numba.get_num_threads()))


# ------------------------------------------------------------------ decimals
def shortest_decimals(values: ArrayLike, tolerance: float = 0.001
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Each value as the decimal with the fewest fraction digits within ``tolerance``.

    Parameters
    ----------
    values : array_like of float
        Any shape; must be finite.
    tolerance : float, optional
        Largest allowed difference (same unit as the values), positive.

    Returns
    -------
    quantized : ndarray of float64, same shape
        The float each chosen decimal reads back as (``k / 10**d`` for the
        first ``d`` with ``|rint(v 10**d) - v 10**d| <= tolerance 10**d``).
    nchars : ndarray of int8, same shape
        Characters of the decimal written plainly (``-``, digits, ``.``), as
        Python's ``repr`` of ``quantized`` gives it without a trailing ``.0``.

    Raises
    ------
    InvalidInputError
        If the tolerance is not positive, a value is not finite, or a value
        is too large to be written plainly with the digits the tolerance needs.

    Examples
    --------
    >>> q, n = shortest_decimals([17.7201, -0.0004, 12.3456])
    >>> q.tolist(), n.tolist()
    ([17.72, 0.0, 12.346], [5, 1, 6])
    """
    if not (math.isfinite(tolerance) and tolerance > 0):
        raise InvalidInputError(f"tolerance must be positive, got {tolerance!r}")
    arr = np.asarray(values, dtype=np.float64)
    flat = np.ascontiguousarray(arr.ravel())
    if not np.all(np.isfinite(flat)):
        raise InvalidInputError("values must be finite to be written as decimals")
    decimals = max(0, math.ceil(math.log10(0.5 / tolerance) - 1e-12))
    if flat.size and float(np.max(np.abs(flat))) * 10.0**decimals >= 2.0**52:
        raise InvalidInputError(f"a value of magnitude {float(np.max(np.abs(flat))):.6g} is too "
                                f"large to write with {decimals} decimals")
    quantized = np.empty_like(flat)
    nchars = np.empty(flat.shape, dtype=np.int8)
    if flat.size:
        _k.shortest_decimals(flat, float(tolerance), decimals, quantized, nchars)
    return quantized.reshape(arr.shape), nchars.reshape(arr.shape)


# ------------------------------------------------------------------ metrics
def _planar(points: ArrayLike, what: str) -> tuple[np.ndarray, np.ndarray]:
    arr = _points_array(points, what)
    if arr.shape[0] < 3:
        raise GeometryError(f"{what} needs at least 3 points, got {arr.shape[0]}")
    normal, frames, deviation = contour_frames(arr, np.array([0, arr.shape[0]], dtype=np.intp))
    if deviation[0] > PLANARITY_TOLERANCE_MM:
        raise GeometryError(f"{what} is not planar: a point lies {deviation[0]:.3g} mm from its "
                            "plane")
    return arr, frames[0]


def hausdorff_distance(original: ArrayLike, reduced: ArrayLike) -> float:
    """Largest distance (mm) from a point of ``original`` to the closed contour ``reduced``.

    When ``reduced`` keeps a subset of the original points (as every point
    reduction does), this is the discrete Hausdorff distance between the two
    closed contours.

    Parameters
    ----------
    original : array_like of shape (N, 3)
        A closed planar contour (x, y, z in mm).
    reduced : array_like of shape (M, 3)
        A closed contour in the same plane; a repeated first point at the
        end is ignored.

    Returns
    -------
    float

    Raises
    ------
    GeometryError
        If either is not (N, 3), not finite, the original has fewer than 3
        points or is not planar.

    Notes
    -----
    Subsets in cyclic order are measured in O(N) (each point's distance to
    the segment that replaced it bounds its true distance); anything else
    brute force, O(N M).
    """
    orig, frame = _planar(original, "original contour")
    red = _points_array(reduced, "reduced contour")
    while red.shape[0] > 1 and np.array_equal(red[-1], red[0]):
        red = red[:-1]
    x, y = orig @ frame[0], orig @ frame[1]
    rx, ry = red @ frame[0], red @ frame[1]
    keep = _subsequence(orig, red)
    if keep is not None:
        return math.sqrt(_k.hausdorff2_kept(x, y, keep))
    return math.sqrt(_k.hausdorff2_brute(x, y, np.ascontiguousarray(rx), np.ascontiguousarray(ry)))


def _subsequence(orig: np.ndarray, red: np.ndarray) -> np.ndarray | None:
    """Keep mask when ``red`` is ``orig``'s points in cyclic order starting at
    one of them, else None."""
    n = orig.shape[0]
    starts = np.flatnonzero(np.all(orig == red[0], axis=1))
    if starts.size == 0:
        return None
    rolled = np.roll(orig, -int(starts[0]), axis=0)
    keep = np.zeros(n, dtype=np.bool_)
    j = 0
    for i in range(n):
        if j < red.shape[0] and np.array_equal(rolled[i], red[j]):
            keep[i] = True
            j += 1
    if j != red.shape[0] or np.count_nonzero(keep) < 3:
        return None
    return np.roll(keep, int(starts[0]))


def polygon_area(points: ArrayLike) -> float:
    """Area (mm2) enclosed by a closed planar contour (Newell's method).

    Parameters
    ----------
    points : array_like of shape (N, 3)

    Returns
    -------
    float

    Raises
    ------
    GeometryError
        If ``points`` is not (N, 3) or not finite.
    """
    arr = _points_array(points, "contour")
    if arr.shape[0] < 3:
        return 0.0
    normal, _, _ = _planes(arr, np.array([0, arr.shape[0]], dtype=np.intp))
    return float(np.linalg.norm(normal[0])) / 2.0


def is_simple(points: ArrayLike) -> bool:
    """True when a closed planar contour neither crosses nor touches itself.

    Consecutive duplicate points are ignored; fewer than three distinct
    points, or a contour that doubles back on itself, is not simple.  Turns
    too close to call in floating point count as contacts.

    Parameters
    ----------
    points : array_like of shape (N, 3)

    Returns
    -------
    bool

    Raises
    ------
    GeometryError
        If ``points`` is not (N, 3), not finite, has fewer than 3 points or is not planar.
    """
    arr, frame = _planar(points, "contour")
    return bool(_k.is_simple_polygon(np.ascontiguousarray(arr @ frame[0]),
                                     np.ascontiguousarray(arr @ frame[1])))


def simple_packed(points: np.ndarray, offsets: np.ndarray) -> np.ndarray:
    """:func:`is_simple` of many packed contours at once (see :func:`pack_contours`).

    Parameters
    ----------
    points : ndarray of shape (N, 3), dtype float64
    offsets : ndarray of shape (C + 1,), dtype intp

    Returns
    -------
    ndarray of shape (C,), dtype bool
    """
    _, frames, _ = contour_frames(points, offsets)
    out = np.zeros(offsets.shape[0] - 1, dtype=np.bool_)
    if out.size:
        _k.simple_many(points, offsets, frames, out)
    return out


def plane_slabs(levels: np.ndarray, spacing: float | None, end_cap: EndCap) -> np.ndarray:
    """(P, 2) extent of each contour plane's slab along the planes' normal (mm).

    The slab of a plane is one contour ``spacing`` centred on it, cut where it
    would reach past halfway to a neighbouring plane; the first and last
    planes' outer halves follow ``end_cap``; a single plane gets a full slab.
    The DVH (:mod:`rtforge.core.dvh`) and :func:`structure_volume` share it.

    Parameters
    ----------
    levels : ndarray of shape (P,)
        The planes' positions along their normal, increasing (mm).
    spacing : float or None
        The contour spacing (mm); None only raises.
    end_cap : EndCap

    Returns
    -------
    ndarray of shape (P, 2), dtype float64

    Raises
    ------
    InvalidInputError
        If ``spacing`` is None or not a positive number.
    """
    gaps = np.diff(levels)
    if spacing is None:
        raise InvalidInputError("the structures have a single contour plane: give "
                                "contour_spacing_mm (the slab thickness, e.g. the CT slice "
                                "spacing)")
    if not (math.isfinite(spacing) and spacing > 0):
        raise InvalidInputError(f"contour spacing must be positive, got {spacing}")
    inner = np.minimum(gaps, spacing) / 2
    end = {EndCap.FULL: spacing / 2, EndCap.HALF: 0.0, EndCap.NONE: -spacing / 2}[end_cap]
    if levels.size == 1:
        end = spacing / 2
    below = np.concatenate([[end], inner])
    above = np.concatenate([inner, [end]])
    slabs = np.stack([levels - below, levels + above], axis=1)
    # NONE: an end plane's slab is empty; the next plane starts where it ended
    slabs[:, 1] = np.maximum(slabs[:, 1], slabs[:, 0])
    return slabs


def structure_volume(contours: Sequence[ArrayLike], thickness_mm: float | None = None,
                     plane_tolerance_mm: float = 0.01, *,
                     end_cap: EndCap | str = EndCap.HALF) -> float | None:
    """Volume (cm3) enclosed by closed planar contours on parallel planes.

    Each plane contributes its even-odd area (a contour inside an odd number
    of others on its plane is a hole) times its slab's thickness
    (:func:`plane_slabs`: the slice thickness, the end planes' outer halves
    as ``end_cap`` says; ``"half"``, the default, is the DVH's and what
    planning systems store, ``"full"`` gives every plane a whole slab).

    Parameters
    ----------
    contours : sequence of array_like of shape (N, 3)
        Closed planar contours in mm.
    thickness_mm : float, optional
        Slab thickness of each plane; by default the median distance between
        neighbouring planes.
    plane_tolerance_mm : float, optional
        Contours whose planes are this close are on one plane.
    end_cap : EndCap or {"full", "half", "none"}, optional
        The end planes' slabs (default ``"half"``: the volume
        :func:`rtforge.core.dvh.dvh` finds and planning systems store).

    Returns
    -------
    float or None
        None when it cannot be computed: no contour with an area, planes not
        parallel, or a single plane and no ``thickness_mm``.

    Raises
    ------
    GeometryError
        If a contour is not (N, 3) or not finite.
    """
    points, offsets = pack_contours(contours)
    if offsets.shape[0] < 2:
        return None
    normal, centroid, _ = _planes(points, offsets)
    length = np.linalg.norm(normal, axis=1)
    live = np.flatnonzero(length > 0)
    if live.size == 0:
        return None
    unit = normal[live] / length[live, None]
    ref = unit[np.argmax(length[live])]
    if np.any(np.abs(unit @ ref) < 1 - 1e-6):
        logger.info("contours lie on planes that are not parallel: no volume")
        return None
    frame = _frames_from_normals(ref[None, :])[0]
    level = centroid[live] @ ref
    planes: list[tuple[float, list[int]]] = []
    for o in np.argsort(level, kind="stable"):
        if not planes or level[o] - planes[-1][0] > plane_tolerance_mm:
            planes.append((float(level[o]), []))
        planes[-1][1].append(int(live[o]))
    areas = []
    for _, members in planes:
        xy = [(np.ascontiguousarray(points[offsets[c]:offsets[c + 1]] @ frame[0]),
               np.ascontiguousarray(points[offsets[c]:offsets[c + 1]] @ frame[1]))
              for c in members]
        area = 0.0
        for a, c in enumerate(members):
            depth = sum(bool(_k.point_in_polygon(xy[a][0][0], xy[a][1][0], xy[b][0], xy[b][1]))
                        for b in range(len(members)) if b != a)
            area += (-1.0 if depth % 2 else 1.0) * length[c] / 2.0
        areas.append(area)
    levels = np.array([lv for lv, _ in planes])
    if thickness_mm is None:
        if len(planes) < 2:
            return None
        thickness_mm = float(np.median(np.diff(levels)))
    slabs = plane_slabs(levels, float(thickness_mm), EndCap(end_cap))
    return float(np.dot(areas, slabs[:, 1] - slabs[:, 0]) / 1000.0)
