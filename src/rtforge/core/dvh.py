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
with ``s`` the contour spacing (the median gap between the structure's
planes, or given), shortened to the midpoint where the next plane is closer;
``EndCap.HALF`` (default) gives the first and last planes their outer half
slab too, ``EndCap.NONE`` stops the solid at the end planes.  A gap wider
than ``s`` between two planes is left empty.  The ROI volume is the volume
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
averaged into the two spreads).  Min, max and mean come from exact accumulators over the
integrated pieces; D and V queries interpolate the cumulative curve
linearly within bins (the curve is exactly piecewise linear when the dose
is uniform within each bin), never nearest bin.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import Enum
from typing import NamedTuple

import numba
import numpy as np
from numpy.typing import ArrayLike

from rtforge.core import _dosegrid_kernels
from rtforge.core import _dvh_kernels as _k
from rtforge.core.contours import Contour, Structure
from rtforge.core.geometry import Volume
from rtforge.errors import GeometryError, InvalidInputError

__all__ = [
    "DEFAULT_BIN_WIDTH_GY",
    "DEFAULT_SAMPLE_MM",
    "MIN_STRIPS",
    "PLANE_TOLERANCE_MM",
    "EndCap",
    "DVH",
    "compute_dvh",
    "compute_dvhs",
    "plot_dvhs",
    "conformity_indices",
    "merge_bins",
]

#: Default dose bin width (Gy).
DEFAULT_BIN_WIDTH_GY = 0.01
#: Default largest strip width (mm, along y) when ``subdivisions`` is not given ...
DEFAULT_SAMPLE_MM = 0.25
#: ... unless the structure spans more strips than this along y: then its strips
#: are its extent over this count (wider), which keeps the midpoint rule's
#: relative area error below about ``MIN_STRIPS ** -1.5`` (1e-4).
MIN_STRIPS = 400
#: Contour points within this distance (mm) in z are on one plane.
PLANE_TOLERANCE_MM = 0.05


class EndCap(str, Enum):
    """How far the solid extends beyond its first and last contour planes."""

    #: Half a contour spacing beyond each end plane (each contour is a full slab).
    HALF = "half"
    #: The solid stops at the end planes (their slabs are halved).
    NONE = "none"


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
    grid = volume.grid
    signs = np.sign(np.diag(grid.direction))
    if not np.allclose(np.abs(grid.direction), np.eye(3), atol=1e-6):
        raise GeometryError("DVH needs an axis-aligned dose grid (Image Orientation "
                            "1\\0\\0\\0\\1\\0, slices along z); resample the dose first")
    array = volume.array
    if array.dtype not in (np.float32, np.float64):
        raise InvalidInputError(f"dose must be float32 or float64, got {array.dtype}")
    origin = np.array(grid.origin, dtype=np.float64)
    for axis, sign in enumerate(signs):  # axis 0 = i = array axis 2
        if sign < 0:
            array = np.flip(array, axis=2 - axis)
            origin[axis] -= (grid.shape[2 - axis] - 1) * grid.spacing[axis]
    return np.ascontiguousarray(array, dtype=np.float64), origin, np.array(grid.spacing)


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


def _slabs(levels: np.ndarray, spacing: float | None, end_cap: EndCap) -> np.ndarray:
    """(P, 2) z extent of each plane's slab."""
    gaps = np.diff(levels)
    if spacing is None:
        if gaps.size == 0:
            raise InvalidInputError("a structure with one contour plane needs "
                                    "contour_spacing_mm (its slab thickness)")
        spacing = float(np.median(gaps))
    if not spacing > 0:
        raise InvalidInputError(f"contour spacing must be positive, got {spacing}")
    end = spacing / 2 if end_cap is EndCap.HALF else 0.0
    below = np.concatenate([[end], np.minimum(gaps, spacing) / 2])
    above = np.concatenate([np.minimum(gaps, spacing) / 2, [end]])
    return np.stack([levels - below, levels + above], axis=1)


def _pieces(slab: np.ndarray, oz: float, sz: float, nk: int
            ) -> list[tuple[float, float, int, int, float, float]]:
    """Split one slab at the dose planes: (z0, z1, k0, k1, t0, t1); k0 -1 outside."""
    lo_ext, hi_ext = oz - sz / 2, oz + (nk - 0.5) * sz
    cuts = [slab[0], slab[1]]
    cuts += [oz + k * sz for k in range(nk) if slab[0] < oz + k * sz < slab[1]]
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
    end_cap : EndCap or {"half", "none"}
        The slab convention at the first and last planes (module notes).
    contour_spacing_mm : float, optional
        Slab thickness; default the median gap between the structure's planes
        (required for a single-plane structure).

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
    prepared = _prepare(dose)
    return _dvh(prepared, structure, bin_width_gy, subdivisions, end_cap, contour_spacing_mm)


def compute_dvhs(dose: Volume, structures: Sequence[Structure | Sequence[ArrayLike]], *,
                 bin_width_gy: float = DEFAULT_BIN_WIDTH_GY,
                 subdivisions: int | None = None,
                 end_cap: EndCap | str = EndCap.HALF,
                 contour_spacing_mm: float | None = None,
                 progress: Callable[[int, int], None] | None = None) -> list[DVH]:
    """The DVHs of several structures in one dose grid (the dose is checked once).

    Parameters and Raises as :func:`compute_dvh`, and:

    progress : callable, optional
        Called as ``progress(done, total)`` after each structure.

    Returns
    -------
    list of DVH
        In the order of ``structures``; every DVH has the same bin edges.
    """
    prepared = _prepare(dose)
    out = []
    for structure in structures:
        out.append(_dvh(prepared, structure, bin_width_gy, subdivisions, end_cap,
                        contour_spacing_mm))
        if progress is not None:
            progress(len(out), len(structures))
    return out


def plot_dvhs(path: str | os.PathLike, dvhs: Sequence[DVH],
              colours: Sequence[tuple[int, int, int] | None]) -> None:
    """Plot cumulative DVHs (percent of each ROI's volume) as a PNG.

    Parameters
    ----------
    path : str or path-like
        The image file to write.
    dvhs : sequence of DVH
        One curve each; a DVH with no volume inside the dose grid is left out.
    colours : sequence of (int, int, int) or None
        One RGB colour (0-255, e.g. the ROI Display Color) per DVH, or None
        for matplotlib's next colour.
    """
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 5), dpi=100)
    for dvh, colour in zip(dvhs, colours, strict=True):
        if dvh.volume_cm3 <= 0:
            continue
        rgb = None if colour is None else tuple(c / 255 for c in colour)
        ax.plot(dvh.edges, 100 * dvh.cumulative / dvh.volume_cm3, color=rgb, label=dvh.name)
    ax.set_xlabel("dose (Gy)")
    ax.set_ylabel("volume (%)")
    ax.set_ylim(0, 101)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize="small")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


class _Dose(NamedTuple):
    array: np.ndarray
    origin: np.ndarray
    spacing: np.ndarray
    top: float


def _prepare(dose: Volume) -> _Dose:
    array, origin, spacing = _axis_aligned(dose)
    # One parallel pass: largest, smallest, non-finite count.
    top, low, bad = _dosegrid_kernels.scan(array.reshape(-1))
    if bad:
        raise InvalidInputError(f"dose holds {bad} NaN or infinite value(s)")
    if low < 0:
        raise InvalidInputError(f"dose must be non-negative for a DVH, minimum {low:g} Gy")
    return _Dose(array, origin, spacing, float(top))


def _dvh(dose: _Dose, structure: Structure | Sequence[ArrayLike], bin_width_gy: float,
         subdivisions: int | None, end_cap: EndCap | str,
         contour_spacing_mm: float | None) -> DVH:
    array, origin, spacing, top = dose
    if not (math.isfinite(bin_width_gy) and bin_width_gy > 0):
        raise InvalidInputError(f"bin_width_gy must be positive, got {bin_width_gy!r}")
    try:
        cap = EndCap(end_cap)
    except ValueError:
        raise InvalidInputError(f"end_cap must be 'half' or 'none', got {end_cap!r}") from None
    name = structure.name if isinstance(structure, Structure) else ""
    number = structure.number if isinstance(structure, Structure) else None
    n_bins = int(top / bin_width_gy) + 1
    planes = _planes(structure)
    if not planes:
        return DVH(np.arange(n_bins + 1) * bin_width_gy, np.zeros(n_bins), 0.0, 0.0, 0.0,
                   name=name, roi_number=number)
    levels = np.array([z for z, _ in planes])
    slabs = _slabs(levels, contour_spacing_mm, cap)
    ys = np.concatenate([xy[:, 1] for _, group in planes for xy in group])
    sub = _subdivisions(subdivisions, spacing, float(ys.max() - ys.min()))
    strip, cell = spacing[1] / sub, spacing[0]
    polys = [xy for _, group in planes for xy in group]
    poly_start = np.zeros(len(polys) + 1, dtype=np.intp)
    np.cumsum([p.shape[0] for p in polys], out=poly_start[1:])
    plane_poly = np.zeros(len(planes) + 1, dtype=np.intp)
    np.cumsum([len(group) for _, group in planes], out=plane_poly[1:])
    points = np.ascontiguousarray(np.concatenate(polys))
    row_y0 = np.empty(len(planes))
    x_lo = np.empty(len(planes))
    rows = np.empty(len(planes), dtype=np.intp)
    pieces: list[tuple[float, float, int, int, float, float]] = []
    piece_start = np.zeros(len(planes) + 1, dtype=np.intp)
    nk = array.shape[0]
    for p, (_, group) in enumerate(planes):
        xy = np.concatenate(group)
        lo, hi = xy.min(axis=0), xy.max(axis=0)
        row_y0[p] = origin[1] + math.floor((lo[1] - origin[1]) / strip) * strip
        rows[p] = max(1, math.ceil((hi[1] - row_y0[p]) / strip))
        x_lo[p] = origin[0] + math.floor((lo[0] - origin[0]) / cell) * cell
        plane_pieces = _pieces(slabs[p], origin[2], spacing[2], nk)
        pieces += plane_pieces
        piece_start[p + 1] = piece_start[p] + len(plane_pieces)
    plane_rows = np.zeros(len(planes) + 1, dtype=np.intp)
    np.cumsum(rows, out=plane_rows[1:])
    piece_z = np.array([[q[0], q[1]] for q in pieces], dtype=np.float64).reshape(-1, 2)
    piece_k = np.array([[q[2], q[3]] for q in pieces], dtype=np.intp).reshape(-1, 2)
    piece_t = np.array([[q[4], q[5]] for q in pieces], dtype=np.float64).reshape(-1, 2)
    n_chunks = int(max(1, min(int(plane_rows[-1]), 4 * numba.get_num_threads())))
    hist = np.zeros((n_chunks, n_bins))
    diff = np.zeros((n_chunks, 2, n_bins + 1))
    acc = np.zeros((n_chunks, _k.N_ACC))
    acc[:, _k.MIN_DOSE] = np.inf
    acc[:, _k.MAX_DOSE] = -np.inf
    _k.dvh_histogram(array, origin, spacing, points, poly_start, plane_poly, plane_rows, row_y0,
                     float(strip), x_lo, float(cell), piece_start, piece_z, piece_k, piece_t,
                     float(bin_width_gy), n_chunks, hist, diff, acc)
    ramps = np.cumsum(diff.sum(axis=0), axis=1)[:, :n_bins]
    volumes = (hist.sum(axis=0) + ramps[0] + np.arange(n_bins) * ramps[1]) / 1000.0
    inside = float(acc[:, _k.SUM_VOLUME].sum())
    mean = float(acc[:, _k.SUM_DOSE].sum()) / inside if inside > 0 else 0.0
    low = float(acc[:, _k.MIN_DOSE].min()) if inside > 0 else 0.0
    high = float(acc[:, _k.MAX_DOSE].max()) if inside > 0 else 0.0
    # Volumes are exact sums; clip the rounding noise of the difference arrays.
    volumes = np.where(np.abs(volumes) < 1e-12 * max(inside, 1.0), 0.0, volumes)
    return DVH(np.arange(n_bins + 1) * bin_width_gy, volumes, low, mean, high,
               volume_outside_cm3=float(acc[:, _k.SUM_OUTSIDE].sum()) / 1000.0,
               name=name, roi_number=number)


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
