"""Dose-volume histograms of planar-contoured structures, sub-voxel accurate.

Conventions are those of :mod:`rtforge.core.geometry`: arrays ``[k, j, i]``,
patient coordinates ``(x, y, z)`` in mm (LPS), a voxel index names the
voxel's centre.  Dose in Gy, volume in cm3.

What the DVH integrates
-----------------------
The *contoured solid*: each closed planar contour plane is a prism (slab)
whose cross-section is the even-odd union of that plane's contours (a contour
inside another is a hole; several islands per plane are fine).  The slab
convention (:class:`EndCap`): each plane at ``z`` spans ``z - s/2 .. z + s/2``
with ``s`` the contour spacing (that of the structure set: the median gap
between the distinct contour planes of all the structures computed together,
or given), shortened to the midpoint where the next plane is closer; a gap
wider than ``s`` between two planes is left empty.  At the first and last
planes, ``EndCap.HALF`` (default) stops the solid at the plane (their slabs
are halved: what treatment planning systems store in their DVH Sequence),
``EndCap.FULL`` gives them their outer half slab too (every contour a full
slab), ``EndCap.NONE`` gives them no slab at all.  A structure with a single
plane is one slab of ``s`` centred on it whatever the end cap.  The ROI volume is the volume
of that solid, taken from the contours, not from voxels.

The dose inside is the trilinear interpolation of the dose grid (points
within half a voxel of the outermost centres take the edge value; beyond,
there is no dose and the volume there is reported as
:attr:`DVH.volume_outside_cm3`, never given a dose).  The kernel integrates
it over the solid:

- along z exactly: within a slab the interpolated dose is linear between
  dose planes (no staircase, no slab-centre dose; dose planes need not
  coincide with contour planes);
- along x exactly: each contour's even-odd spans on a line are exact
  intervals, cut at the dose column centres, between which the dose is
  linear in x;
- along y by the midpoint rule on strips aligned with the dose rows
  (``subdivisions`` strips per row, even, so that strips never straddle a
  dose row's centre or a voxel's edge; by default strips of at most
  :data:`DEFAULT_SAMPLE_MM`, or at least :data:`MIN_STRIPS` strips across a
  large structure), symmetric about the dose centres, so the
  supersampling does not shift the dose.

Each rectangle (span piece x slab piece) holds a dose linear in x and z and
deposits that exact distribution, a trapezoid, into the histogram (the
small x-z cross term of trilinear interpolation, zero in a linear field, is
averaged into the two spreads).  Where every strip between two dose row
centres covers a cell whole, the strips' rectangles there are one box, the
whole dose voxel (same volume, same exact mean; its y spread, when there is
one, is merged with the smaller of the other two at equal variance), so the
work grows with the structure's volume in voxels plus its outline in strips.
Min, max and mean come from exact accumulators over the integrated pieces;
D and V queries interpolate the cumulative curve linearly within bins (the
curve is exactly piecewise linear when the dose is uniform within each
bin), never nearest bin.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numba
import numpy as np
from numpy.typing import ArrayLike

from rtforge.core import _dvh_kernels as _k
from rtforge.core.contours import Contour, EndCap, Structure, plane_slabs
from rtforge.core.geometry import Volume, axis_aligned_view
from rtforge.errors import GeometryError, InvalidInputError

__all__ = [
    "DEFAULT_BIN_WIDTH_GY",
    "DEFAULT_SAMPLE_MM",
    "MIN_STRIPS",
    "PLANE_TOLERANCE_MM",
    "EndCap",
    "DVH",
    "contour_spacing",
    "compute_dvh",
    "compute_dvhs",
    "conformity_indices",
    "merge_bins",
    "TABLE_MAX_ROWS",
    "TABLE_FINE_ROWS",
    "TABLE_GROWTH",
    "table_edges",
]

#: Default dose bin width (Gy).
DEFAULT_BIN_WIDTH_GY = 0.01
#: :func:`table_edges`: a table keeps every bin up to this many rows ...
TABLE_MAX_ROWS = 10_000
#: ... else at most about this many uniform rows up to the highest D1 ...
TABLE_FINE_ROWS = 5_000
#: ... and above it rows whose doses grow by this factor.
TABLE_GROWTH = 1.05
#: Default largest strip width (mm, along y) when ``subdivisions`` is not given ...
DEFAULT_SAMPLE_MM = 0.25
#: ... unless the structure spans more strips than this along y: then its strips
#: are its extent over this count (wider), which keeps the midpoint rule's
#: relative area error below about ``MIN_STRIPS ** -1.5`` (1e-4).
MIN_STRIPS = 400
#: Contour points within this distance (mm) in z are on one plane.
PLANE_TOLERANCE_MM = 0.05
#: Whole-voxel boxes where every strip covers a cell (False: strip by strip, for tests).
_FAST = True
#: Most memory (bytes) the per-chunk histograms of one kernel call may take; more
#: structures than fit go in several calls.
_HISTOGRAM_BUDGET = 64 << 20


@dataclass(frozen=True, eq=False)
class DVH:
    """A dose-volume histogram.

    Parameters
    ----------
    edges : ndarray of shape (B + 1,), dtype float64
        Bin edges in Gy, increasing, ``edges[0] == 0``.
    differential : ndarray of shape (B,), dtype float64
        Volume (cm3) whose dose lies in each bin ``[edges[b], edges[b + 1])``.
    min_gy, mean_gy, max_gy : float
        Exact minimum, mean and maximum dose of the volume inside the dose grid.
    volume_outside_cm3 : float
        Volume of the structure where the dose grid gives no dose.
    name : str
        ROI name.
    roi_number : int or None
        ROI Number.

    Notes
    -----
    Percentages are of :attr:`volume_cm3`, the volume that has a dose.
    """

    edges: np.ndarray
    differential: np.ndarray
    min_gy: float
    mean_gy: float
    max_gy: float
    volume_outside_cm3: float = 0.0
    name: str = ""
    roi_number: int | None = None
    cumulative: np.ndarray = field(init=False, repr=False)

    def __post_init__(self) -> None:
        edges = np.ascontiguousarray(self.edges, dtype=np.float64)
        diff = np.ascontiguousarray(self.differential, dtype=np.float64)
        if edges.ndim != 1 or diff.ndim != 1 or edges.shape[0] != diff.shape[0] + 1:
            raise InvalidInputError(f"a DVH needs B + 1 edges for B bins, got {edges.shape} "
                                    f"edges and {diff.shape} volumes")
        if diff.shape[0] and (edges[0] != 0 or np.any(np.diff(edges) <= 0)):
            raise InvalidInputError("DVH edges must start at 0 Gy and increase")
        cumulative = np.zeros(edges.shape[0])
        cumulative[:-1] = np.cumsum(diff[::-1])[::-1]
        for name, value in (("edges", edges), ("differential", diff),
                            ("cumulative", cumulative)):
            value.setflags(write=False)
            object.__setattr__(self, name, value)

    @property
    def volume_cm3(self) -> float:
        """Volume (cm3) with a dose: the sum of the differential."""
        return float(self.cumulative[0])

    @property
    def total_volume_cm3(self) -> float:
        """Volume of the structure, inside and outside the dose grid (cm3)."""
        return self.volume_cm3 + self.volume_outside_cm3

    def volume_at_dose(self, dose_gy: float, *, percent: bool = False) -> float:
        """V at a dose: the volume receiving at least ``dose_gy``.

        Parameters
        ----------
        dose_gy : float
        percent : bool
            Percent of :attr:`volume_cm3` instead of cm3.

        Returns
        -------
        float
            Linear interpolation of the cumulative curve between bin edges.
        """
        v = float(np.interp(dose_gy, self.edges, self.cumulative, left=self.volume_cm3,
                            right=0.0))
        if percent:
            return 100.0 * v / self.volume_cm3 if self.volume_cm3 > 0 else 0.0
        return v

    def dose_at_volume(self, volume: float, *, percent: bool = True) -> float:
        """D at a volume: the highest dose that ``volume`` receives at least.

        Parameters
        ----------
        volume : float
            Percent of :attr:`volume_cm3` (default) or cm3.
        percent : bool

        Returns
        -------
        float
            Dose in Gy, linearly interpolated within the bin (``D95`` is
            ``dose_at_volume(95)``); :attr:`min_gy` when ``volume`` is the
            whole volume or more, :attr:`max_gy` when it is zero.

        Raises
        ------
        InvalidInputError
            If ``volume`` is negative, or the DVH has no volume.
        """
        if volume < 0:
            raise InvalidInputError(f"volume must be non-negative, got {volume}")
        total = self.volume_cm3
        if total <= 0:
            raise InvalidInputError("the DVH has no volume inside the dose grid")
        v = total * volume / 100.0 if percent else float(volume)
        if v >= total:
            return self.min_gy
        if v <= 0:
            return self.max_gy
        cum = self.cumulative
        # cumulative is non-increasing: find the first edge where it drops to v or below.
        b = int(np.searchsorted(-cum, -v, side="left"))
        lo, hi = cum[b - 1], cum[b]
        t = 0.0 if lo == hi else (lo - v) / (lo - hi)
        dose = self.edges[b - 1] + t * (self.edges[b] - self.edges[b - 1])
        return float(min(max(dose, self.min_gy), self.max_gy))

    def homogeneity_index(self) -> float:
        """ICRU 83 homogeneity index ``(D2 - D98) / D50``.

        Raises
        ------
        InvalidInputError
            If D50 is zero or the DVH has no volume.
        """
        d50 = self.dose_at_volume(50)
        if d50 <= 0:
            raise InvalidInputError("D50 is zero: no homogeneity index")
        return (self.dose_at_volume(2) - self.dose_at_volume(98)) / d50

    @classmethod
    def from_bins(cls, widths: ArrayLike, volumes: ArrayLike, *, cumulative: bool,
                  min_gy: float | None = None, mean_gy: float | None = None,
                  max_gy: float | None = None, name: str = "",
                  roi_number: int | None = None) -> DVH:
        """A DVH from (bin width, volume) pairs, as DVH Data lists them.

        Parameters
        ----------
        widths : array_like of shape (B,)
            Bin widths in Gy, the first bin starting at 0 Gy.
        volumes : array_like of shape (B,)
            Differential: volume in each bin.  Cumulative: volume receiving
            at least the bin's lower edge.
        cumulative : bool
        min_gy, mean_gy, max_gy : float, optional
            As stored; by default estimated from the bins.
        name : str
        roi_number : int, optional

        Returns
        -------
        DVH

        Raises
        ------
        InvalidInputError
            If the arrays differ in length or a width is not positive.
        """
        w = np.asarray(widths, dtype=np.float64).ravel()
        v = np.asarray(volumes, dtype=np.float64).ravel()
        if w.shape != v.shape:
            raise InvalidInputError(f"{w.size} bin widths for {v.size} volumes")
        if np.any(w <= 0):
            raise InvalidInputError("DVH bin widths must be positive")
        edges = np.concatenate([[0.0], np.cumsum(w)])
        diff = v - np.append(v[1:], 0.0) if cumulative else v
        occupied = np.flatnonzero(diff > 0)
        if min_gy is None:
            min_gy = float(edges[occupied[0]]) if occupied.size else 0.0
        if max_gy is None:
            max_gy = float(edges[occupied[-1] + 1]) if occupied.size else 0.0
        if mean_gy is None:
            total = diff.sum()
            centres = 0.5 * (edges[:-1] + edges[1:])
            mean_gy = float(diff @ centres / total) if total > 0 else 0.0
        return cls(edges, diff, float(min_gy), float(mean_gy), float(max_gy),
                   name=name, roi_number=roi_number)


def conformity_indices(target: DVH, body: DVH, prescription_gy: float) -> tuple[float, float]:
    """RTOG and Paddick conformity indices of a target.

    Parameters
    ----------
    target : DVH
        The target's DVH (e.g. the PTV).
    body : DVH
        The DVH of a structure holding the whole prescription isodose (the
        external contour).
    prescription_gy : float

    Returns
    -------
    rtog : float
        ``PIV / TV``: prescription isodose volume over target volume.
    paddick : float
        ``TV_PIV**2 / (TV * PIV)``.

    Raises
    ------
    InvalidInputError
        If the target has no volume or the body receives no prescription dose.
    """
    tv = target.volume_cm3
    piv = body.volume_at_dose(prescription_gy)
    if tv <= 0 or piv <= 0:
        raise InvalidInputError("conformity indices need a target volume and a prescription "
                                "isodose volume")
    tv_piv = target.volume_at_dose(prescription_gy)
    return piv / tv, tv_piv * tv_piv / (tv * piv)


# ------------------------------------------------------------------ kernel front
def _axis_aligned(volume: Volume) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dose array, origin and spacing of an identity-direction view of the grid."""
    view = axis_aligned_view(volume)
    if view is None:
        raise GeometryError("DVH needs a dose grid whose axes are the patient axes in any "
                            "order (supine, prone or decubitus); this one is oblique: resample "
                            "the dose first")
    array = view.array
    if array.dtype not in (np.float32, np.float64):
        raise InvalidInputError(f"dose must be float32 or float64, got {array.dtype}")
    # float32 stays float32: the kernel widens each value it reads to float64
    return (np.ascontiguousarray(array), np.array(view.grid.origin, dtype=np.float64),
            np.array(view.grid.spacing, dtype=np.float64))


def _planes(structure: Structure | Sequence[ArrayLike]) -> list[tuple[float, list[np.ndarray]]]:
    """Closed planar contours grouped by plane, sorted by z."""
    contours: list[ArrayLike]
    if isinstance(structure, Structure):
        contours = [c.points for c in structure.contours if c.is_closed]
    else:
        contours = [c.points if isinstance(c, Contour) else c for c in structure
                    if not isinstance(c, Contour) or c.is_closed]
    found: list[tuple[float, np.ndarray]] = []
    for n, c in enumerate(contours):
        pts = np.asarray(c, dtype=np.float64)
        if pts.ndim != 2 or pts.shape[1] != 3 or pts.shape[0] < 3:
            raise GeometryError(f"contour {n} must have shape (N >= 3, 3), got {pts.shape}")
        if not np.all(np.isfinite(pts)):
            raise GeometryError(f"contour {n} holds a NaN or infinite coordinate")
        zs = pts[:, 2]
        if float(zs.max() - zs.min()) > 2 * PLANE_TOLERANCE_MM:
            raise GeometryError(f"contour {n} is not in an axial plane (z spans "
                                f"{float(zs.min()):g} to {float(zs.max()):g} mm); the DVH needs "
                                "axial contours")
        found.append((float(zs.mean()), np.ascontiguousarray(pts[:, :2])))
    found.sort(key=lambda item: item[0])
    planes: list[tuple[float, list[np.ndarray]]] = []
    for z, xy in found:
        if planes and z - planes[-1][0] <= PLANE_TOLERANCE_MM:
            planes[-1][1].append(xy)
        else:
            planes.append((z, [xy]))
    return planes


def contour_spacing(structures: Sequence[Structure | Sequence[ArrayLike]]) -> float | None:
    """The contour spacing of a structure set: the median gap between its planes.

    The distinct axial planes of the closed planar contours of all the
    structures together (points within :data:`PLANE_TOLERANCE_MM` are one
    plane) are the image slices the set was drawn on; their median gap is
    the slab thickness of every structure, so that an ROI drawn on every
    fifteenth slice (gaps of 45 mm and 3 mm) gets 3 mm slabs, not 24 mm,
    and an ROI on one plane gets the set's.  Contours that are not axial
    (or not finite) are left out here; :func:`compute_dvh` refuses them.

    Parameters
    ----------
    structures : sequence of Structure or of sequences of array_like of shape (N, 3)

    Returns
    -------
    float or None
        In mm; None when the structures have fewer than two distinct planes.
    """
    levels = []
    for structure in structures:
        contours = [c.points for c in structure.contours if c.is_closed] \
            if isinstance(structure, Structure) else \
            [c.points if isinstance(c, Contour) else c for c in structure
             if not isinstance(c, Contour) or c.is_closed]
        for c in contours:
            zs = np.asarray(c, dtype=np.float64).reshape(-1, 3)[:, 2]
            if zs.size and np.all(np.isfinite(zs)) and zs.max() - zs.min() <= 2 * PLANE_TOLERANCE_MM:
                levels.append(float(zs.mean()))
    gaps = np.diff(np.sort(levels))
    gaps = gaps[gaps > PLANE_TOLERANCE_MM]
    return float(np.median(gaps)) if gaps.size else None


def _pieces(slab: np.ndarray, oz: float, sz: float, nk: int
            ) -> list[tuple[float, float, int, int, float, float]]:
    """Split one slab at the dose planes: (z0, z1, k0, k1, t0, t1); k0 -1 outside."""
    lo_ext, hi_ext = oz - sz / 2, oz + (nk - 0.5) * sz
    cuts = [slab[0], slab[1]]
    # the dose planes strictly inside the slab (a window one plane wider than needed)
    k_lo = max(0, math.floor((slab[0] - oz) / sz))
    k_hi = min(nk - 1, math.ceil((slab[1] - oz) / sz))
    cuts += [oz + k * sz for k in range(k_lo, k_hi + 1) if slab[0] < oz + k * sz < slab[1]]
    cuts += [b for b in (lo_ext, hi_ext) if slab[0] < b < slab[1]]
    cuts = sorted(set(cuts))
    out = []
    for za, zb in zip(cuts[:-1], cuts[1:], strict=True):
        if zb - za <= 0:
            continue
        zm = 0.5 * (za + zb)
        if zm < lo_ext or zm > hi_ext:
            out.append((za, zb, -1, -1, 0.0, 0.0))
            continue
        if nk == 1:
            out.append((za, zb, 0, 0, 0.0, 0.0))
            continue
        w = min(max((zm - oz) / sz, 0.0), nk - 1.0)
        k0 = min(int(w), nk - 2)
        ta = min(max((za - oz) / sz - k0, 0.0), 1.0)
        tb = min(max((zb - oz) / sz - k0, 0.0), 1.0)
        out.append((za, zb, k0, k0 + 1, ta, tb))
    return out


def _subdivisions(value: int | None, spacing: np.ndarray, extent_mm: float) -> int:
    if value is None:
        strip = max(DEFAULT_SAMPLE_MM, extent_mm / MIN_STRIPS)
        n = math.ceil(float(spacing[1]) / strip - 1e-9)
        return max(2, n + (n % 2))
    if isinstance(value, bool) or int(value) != value or value < 2 or value % 2:
        raise InvalidInputError(f"subdivisions must be an even integer >= 2, got {value!r}")
    return int(value)


def compute_dvh(dose: Volume, structure: Structure | Sequence[ArrayLike], *,
                bin_width_gy: float = DEFAULT_BIN_WIDTH_GY,
                subdivisions: int | None = None,
                end_cap: EndCap | str = EndCap.HALF,
                contour_spacing_mm: float | None = None) -> DVH:
    """The DVH of a planar-contoured structure in a dose grid.

    Parameters
    ----------
    dose : Volume
        Dose in Gy (float32 or float64) on an axis-aligned grid (axes may be
        reversed).
    structure : Structure or sequence of array_like of shape (N, 3)
        Closed planar contours in axial planes, mm; other contour types are
        skipped.
    bin_width_gy : float
        Histogram bin width (default 0.01 Gy).
    subdivisions : int, optional
        Strips per dose row (even, >= 2); default: strips of at most
        :data:`DEFAULT_SAMPLE_MM`, or the structure's extent along y over
        :data:`MIN_STRIPS` when that is wider.
    end_cap : EndCap or {"half", "full", "none"}
        The slab convention at the first and last planes (module notes);
        default half slabs, as treatment planning systems compute volumes.
    contour_spacing_mm : float, optional
        Slab thickness; default :func:`contour_spacing` of the structure
        (of all the structures given, for :func:`compute_dvhs`): required
        when they have a single plane.

    Returns
    -------
    DVH
        Named and numbered after the Structure when one is given.

    Raises
    ------
    GeometryError
        If the dose grid is not axis-aligned or a contour is not axial, not
        (N, 3) or not finite.
    InvalidInputError
        If the dose is not float, holds NaN or negative values, or a
        parameter is out of range.
    """
    return compute_dvhs(dose, [structure], bin_width_gy=bin_width_gy, subdivisions=subdivisions,
                        end_cap=end_cap, contour_spacing_mm=contour_spacing_mm)[0]


def compute_dvhs(dose: Volume, structures: Sequence[Structure | Sequence[ArrayLike]], *,
                 bin_width_gy: float = DEFAULT_BIN_WIDTH_GY,
                 subdivisions: int | None = None,
                 end_cap: EndCap | str = EndCap.HALF,
                 contour_spacing_mm: float | None = None,
                 progress: Callable[[int, int], None] | None = None) -> list[DVH]:
    """The DVHs of several structures in one dose grid (the dose is checked once).

    Parameters and Raises as :func:`compute_dvh` (the default contour spacing
    is :func:`contour_spacing` of all ``structures``: give them all, or give
    ``contour_spacing_mm``, to have the structure set's), and:

    progress : callable, optional
        Called as ``progress(done, total)`` after each structure.  Without it
        the structures are computed together in one parallel kernel call (one
        large structure and many small ones share the threads; several calls
        when their histograms would exceed 64 MiB); with it, one call per
        structure.

    Returns
    -------
    list of DVH
        In the order of ``structures``; every DVH has the same bin edges.
    """
    cap = _check_options(bin_width_gy, end_cap)
    prepared = _prepare(dose)
    if contour_spacing_mm is None:
        contour_spacing_mm = contour_spacing(structures)
    layouts = [_layout(prepared, s, subdivisions, cap, contour_spacing_mm) for s in structures]
    if progress is None:
        # chunks of one call: about 8 per thread plus one per structure, each
        # with a histogram and two difference arrays of n_bins float64
        n_bins = int(prepared.top / bin_width_gy) + 1
        budget = max(1, _HISTOGRAM_BUDGET // (24 * n_bins) - 8 * numba.get_num_threads())
        return [dvh for first in range(0, len(layouts), budget)
                for dvh in _run(prepared, layouts[first:first + budget], bin_width_gy)]
    out: list[DVH] = []
    for layout in layouts:
        out += _run(prepared, [layout], bin_width_gy)
        progress(len(out), len(layouts))
    return out


class _Dose(NamedTuple):
    array: np.ndarray
    origin: np.ndarray
    spacing: np.ndarray
    top: float


def _prepare(dose: Volume) -> _Dose:
    array, origin, spacing = _axis_aligned(dose)
    # Two vectorised passes (no thread start-up): NaN propagates through max and min,
    # an infinity shows as one; count the bad values only when there are some.
    flat = array.reshape(-1)
    top = float(flat.max()) if flat.size else 0.0
    low = float(flat.min()) if flat.size else 0.0
    if not (math.isfinite(top) and math.isfinite(low)):
        bad = int(np.count_nonzero(~np.isfinite(flat)))
        raise InvalidInputError(f"dose holds {bad} NaN or infinite value(s)")
    if low < 0:
        raise InvalidInputError(f"dose must be non-negative for a DVH, minimum {low:g} Gy")
    return _Dose(array, origin, spacing, top)


class _Layout(NamedTuple):
    """One structure's contours laid out for the kernel (arrays local to it)."""

    name: str
    number: int | None
    points: np.ndarray  # (N, 2)
    poly_start: np.ndarray  # (Q + 1,)
    plane_poly: np.ndarray  # (P + 1,)
    plane_bands: np.ndarray  # (P + 1,)
    band0: np.ndarray  # (P,)
    sub: int
    col0: np.ndarray  # (P,)
    piece_start: np.ndarray  # (P + 1,)
    pieces: np.ndarray  # (Z, 6): z0, z1, k0, k1, t0, t1
    cost: float  # estimated work, in boxes


def _check_options(bin_width_gy: float, end_cap: EndCap | str) -> EndCap:
    if not (math.isfinite(bin_width_gy) and bin_width_gy > 0):
        raise InvalidInputError(f"bin_width_gy must be positive, got {bin_width_gy!r}")
    try:
        return EndCap(end_cap)
    except ValueError:
        raise InvalidInputError(f"end_cap must be one of {[c.value for c in EndCap]}, got "
                                f"{end_cap!r}") from None


def _layout(dose: _Dose, structure: Structure | Sequence[ArrayLike], subdivisions: int | None,
            cap: EndCap, contour_spacing_mm: float | None) -> _Layout:
    """The kernel's view of one structure (no planes, no tasks: no closed planar contour)."""
    array, origin, spacing, _ = dose
    name = structure.name if isinstance(structure, Structure) else ""
    number = structure.number if isinstance(structure, Structure) else None
    planes = _planes(structure)
    if not planes:
        return _Layout(name, number, np.zeros((0, 2)), np.zeros(1, dtype=np.intp),
                       np.zeros(1, dtype=np.intp), np.zeros(1, dtype=np.intp),
                       np.zeros(0, dtype=np.intp), 2, np.zeros(0, dtype=np.intp),
                       np.zeros(1, dtype=np.intp), np.zeros((0, 6)), 0.0)
    levels = np.array([z for z, _ in planes])
    slabs = plane_slabs(levels, contour_spacing_mm, cap)
    polys = [xy for _, group in planes for xy in group]
    points = np.ascontiguousarray(np.concatenate(polys))
    sub = _subdivisions(subdivisions, spacing, float(points[:, 1].max() - points[:, 1].min()))
    strip, cell = spacing[1] / sub, spacing[0]
    poly_start = np.zeros(len(polys) + 1, dtype=np.intp)
    np.cumsum([p.shape[0] for p in polys], out=poly_start[1:])
    plane_poly = np.zeros(len(planes) + 1, dtype=np.intp)
    np.cumsum([len(group) for _, group in planes], out=plane_poly[1:])
    # Each plane's bounding box: its strips (a lattice of strip-wide rows from the dose row
    # centres, grouped in bands of ``sub`` between two row centres) and its cell lattice.
    plane_points = poly_start[plane_poly[:-1]]
    lo = np.minimum.reduceat(points, plane_points, axis=0)
    hi = np.maximum.reduceat(points, plane_points, axis=0)
    first_strip = np.floor((lo[:, 1] - origin[1]) / strip)
    n_strips = np.maximum(1, np.ceil((hi[:, 1] - origin[1]) / strip - first_strip))
    band0 = np.floor_divide(first_strip, sub).astype(np.intp)
    band1 = np.floor_divide(first_strip + n_strips - 1, sub).astype(np.intp)
    plane_bands = np.zeros(len(planes) + 1, dtype=np.intp)
    np.cumsum(band1 - band0 + 1, out=plane_bands[1:])
    col0 = np.floor((lo[:, 0] - origin[0]) / cell).astype(np.intp)
    pieces: list[tuple[float, float, int, int, float, float]] = []
    piece_start = np.zeros(len(planes) + 1, dtype=np.intp)
    nk = array.shape[0]
    for p in range(len(planes)):
        plane_pieces = _pieces(slabs[p], origin[2], spacing[2], nk)
        pieces += plane_pieces
        piece_start[p + 1] = piece_start[p] + len(plane_pieces)
    # work per band and z piece: a box per whole cell, and per strip its crossings and
    # rim boxes (measured: a strip costs about as much as six whole cells)
    cells = (hi[:, 0] - lo[:, 0]) / cell + 2
    cost = float(np.sum((band1 - band0 + 1) * (cells + 6 * sub) * np.diff(piece_start)))
    return _Layout(name, number, points, poly_start, plane_poly, plane_bands, band0, sub, col0,
                   piece_start, np.array(pieces, dtype=np.float64).reshape(-1, 6), cost)


def _offsets(parts: list[np.ndarray]) -> np.ndarray:
    """Concatenate offset arrays (each ``(n + 1,)`` from 0), shifting each by the last total."""
    out = [np.zeros(1, dtype=np.intp)]
    total = 0
    for part in parts:
        out.append(part[1:] + total)
        total += int(part[-1])
    return np.concatenate(out)


def _run(dose: _Dose, layouts: list[_Layout], bin_width_gy: float) -> list[DVH]:
    """All the structures' DVHs in one parallel kernel call."""
    array, origin, spacing, top = dose
    n_bins = int(top / bin_width_gy) + 1
    edges = np.arange(n_bins + 1) * bin_width_gy
    # Chunks: each structure's tasks (plane bands) split over chunks of about equal work,
    # each with its own histogram; the chunks dealt to one worker per thread, largest
    # first to the least loaded (prange splits statically), so that one large structure
    # and many small ones keep every thread busy in a single kernel call.
    threads = numba.get_num_threads()
    total = sum(lay.cost for lay in layouts)
    target = max(total / (8 * threads), 1.0)
    n_tasks = [int(lay.plane_bands[-1]) for lay in layouts]
    parts = np.array([max(1, min(n, math.ceil(lay.cost / target)))
                      for lay, n in zip(layouts, n_tasks, strict=True)], dtype=np.intp)
    chunks = sorted(((lay.cost / parts[r], r, part) for r, lay in enumerate(layouts)
                     for part in range(parts[r]) if n_tasks[r] > 0), reverse=True)
    loads = [0.0] * threads
    dealt: list[list[tuple[int, int]]] = [[] for _ in range(threads)]
    for cost, r, part in chunks:
        w = loads.index(min(loads))
        loads[w] += cost
        dealt[w].append((r, part))
    order = [chunk for worker in dealt for chunk in worker]
    chunk_roi = np.array([c[0] for c in order], dtype=np.intp)
    chunk_part = np.array([c[1] for c in order], dtype=np.intp)
    worker_start = np.zeros(threads + 1, dtype=np.intp)
    np.cumsum([len(worker) for worker in dealt], out=worker_start[1:])
    n_chunks = chunk_roi.shape[0]
    hist = np.zeros((n_chunks, n_bins))
    diff = np.zeros((n_chunks, 2, n_bins + 1))
    acc = np.zeros((n_chunks, _k.N_ACC))
    if n_chunks:
        pieces = np.concatenate([lay.pieces for lay in layouts])
        _k.dvh_histogram(
            array, origin, spacing, np.concatenate([lay.points for lay in layouts]),
            _offsets([lay.poly_start for lay in layouts]),
            _offsets([lay.plane_poly for lay in layouts]),
            _offsets([lay.plane_bands for lay in layouts]),
            np.concatenate([lay.band0 for lay in layouts]),
            np.concatenate([np.full(lay.band0.shape[0], lay.sub, dtype=np.intp)
                            for lay in layouts]),
            np.concatenate([lay.col0 for lay in layouts]), bool(_FAST),
            _offsets([lay.piece_start for lay in layouts]),
            np.ascontiguousarray(pieces[:, 0:2]), pieces[:, 2:4].astype(np.intp),
            np.ascontiguousarray(pieces[:, 4:6]),
            _offsets([np.array([0, lay.band0.shape[0]], dtype=np.intp) for lay in layouts]),
            chunk_roi, chunk_part, parts, worker_start, float(bin_width_gy), hist, diff, acc)
    out = []
    for r, lay in enumerate(layouts):
        mine = chunk_roi == r
        ramps = np.cumsum(diff[mine].sum(axis=0), axis=1)[:, :n_bins]
        volumes = (hist[mine].sum(axis=0) + ramps[0] + np.arange(n_bins) * ramps[1]) / 1000.0
        rows = acc[mine]
        inside = float(rows[:, _k.SUM_VOLUME].sum())
        mean = float(rows[:, _k.SUM_DOSE].sum()) / inside if inside > 0 else 0.0
        low = float(rows[:, _k.MIN_DOSE].min()) if inside > 0 else 0.0
        high = float(rows[:, _k.MAX_DOSE].max()) if inside > 0 else 0.0
        # Volumes are exact sums; clip the rounding noise of the difference arrays.
        volumes = np.where(np.abs(volumes) < 1e-12 * max(inside, 1.0), 0.0, volumes)
        out.append(DVH(edges, volumes, low, mean, high,
                       volume_outside_cm3=float(rows[:, _k.SUM_OUTSIDE].sum()) / 1000.0,
                       name=lay.name, roi_number=lay.number))
    return out


def merge_bins(dvh: DVH, tolerance_cm3: float, *, differential: bool = False) -> np.ndarray:
    """Bin edges to keep so that merged bins read back within a tolerance.

    Parameters
    ----------
    dvh : DVH
    tolerance_cm3 : float
        Largest error allowed on the cumulative curve at the original edges.
    differential : bool
        Merged bins are read as uniform densities (differential DVH Data)
        instead of steps (cumulative DVH Data).

    Returns
    -------
    ndarray of int
        Indices into ``dvh.edges``, from 0 to the last edge.
    """
    if dvh.edges.shape[0] < 2:
        return np.zeros(1, dtype=np.intp)
    return _k.merge_bins(np.ascontiguousarray(dvh.cumulative), float(tolerance_cm3),
                         bool(differential))


def table_edges(dvhs: Sequence[DVH]) -> np.ndarray:
    """Bin edges to tabulate (a CSV) so that a long high-dose tail stays short.

    DVHs computed together share their edges.  Every edge is kept when there
    are at most :data:`TABLE_MAX_ROWS`.  Otherwise (brachytherapy: doses near
    a source run to hundreds of times the prescription) the edges are uniform
    up to the highest D1 of the DVHs (the dose the hottest 1 % of an ROI
    receives), every ``m``-th edge with the smallest ``m`` that needs at most
    :data:`TABLE_FINE_ROWS` rows there, and above it each kept edge's dose is
    at least :data:`TABLE_GROWTH` times the previous one (about 300 rows for
    a factor of 2 million), up to the last edge.  A cumulative curve is exact
    at every kept edge; a differential one sums the bins between two kept edges.

    Parameters
    ----------
    dvhs : sequence of DVH
        DVHs with the same edges.

    Returns
    -------
    ndarray of intp
        Increasing indices into the edges, from 0 to the last.

    Raises
    ------
    InvalidInputError
        If the DVHs do not share their edges.
    """
    edges = dvhs[0].edges
    if any(d.edges.shape != edges.shape or np.any(d.edges != edges) for d in dvhs[1:]):
        raise InvalidInputError("DVHs tabulated together must share their bin edges")
    n = edges.shape[0]
    if n <= TABLE_MAX_ROWS:
        return np.arange(n, dtype=np.intp)
    d1 = max((d.dose_at_volume(1.0) for d in dvhs if d.volume_cm3 > 0), default=0.0)
    fine_end = min(n - 1, int(np.searchsorted(edges, d1)))
    step = max(1, math.ceil(fine_end / TABLE_FINE_ROWS))
    kept = list(range(0, fine_end + 1, step))
    last = kept[-1]
    while last < n - 1:
        bigger = int(np.searchsorted(edges, edges[last] * TABLE_GROWTH))
        last = min(n - 1, max(last + step, bigger))
        kept.append(last)
    return np.asarray(kept, dtype=np.intp)
