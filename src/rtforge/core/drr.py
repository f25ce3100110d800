"""Digitally reconstructed radiographs: one ray per receptor pixel from the source through a CT.

Conventions are those of :mod:`rtforge.core.geometry` (arrays ``[k, j, i]``,
index points ``(i, j, k)``, patient coordinates LPS in mm, a voxel index names
the voxel's centre) and of :class:`~rtforge.core.beam.BeamGeometry` for the
source and the receptor (IEC 61217, PS3.3 C.8.8.2).

What is computed
----------------
For each pixel, the line integral ``∫ μ dl`` (dimensionless) along the ray from
the source through the pixel centre.  The receptor only sets the ray
directions: the whole line through the CT is integrated, also where the
receptor plane cuts the CT (a virtual receptor, as DRR software does).

- **HU to μ** (:class:`Attenuation`): ``μ = μ_water · (1 + HU / 1000)``, clipped
  at 0, with ``μ_water`` of liquid water at a stated effective energy (NIST
  XCOM mass attenuation coefficients with coherent scattering, density
  1 g/cm³; 60 keV by default, a typical effective energy of a 120 kVp beam:
  0.02059 /mm) or given directly.  An optional HU window (Oncentra's DRR
  Generation Min/Max Threshold) removes voxels outside it: they contribute
  nothing.
- **Siddon** (default, :attr:`DrrMethod.SIDDON`): the exact radiological path
  through the voxels (Siddon 1985, with the incremental traversal of Jacobs et
  al. 1998): each voxel the ray crosses contributes μ times the length of the
  ray inside it.  Exact to float precision for the voxelised object.
- **Trilinear** (:attr:`DrrMethod.TRILINEAR`): μ interpolated trilinearly
  between voxel centres (the edge voxels' values out to the volume faces),
  sampled at the midpoints of ``round(chord / step_mm)`` equal steps tiling the
  ray's chord through the volume (``step_mm`` defaults to the smallest voxel
  spacing).

Geometry of the CT
------------------
Rays are traced in the CT's own grid, whatever its orientation: an oblique
series is traced in its rotated grid and a gantry-tilted one in its sheared
grid (a straight line stays straight under the affine map, and each voxel,
a parallelepiped in the patient, contributes its exact chord), so no reslice
and no interpolation precede the DRR.  A series with uneven slice spacing is
not a grid: reslice it first (:func:`rtforge.core.reslice.reslice`).

Speed
-----
The HU volume becomes a float32 μ volume once per call (or once for many
calls: :func:`prepare_volume`) and every ray of every DRR shares it.  Rays are
clipped to the bounding box of the occupied blocks of 8 x 8 x 8 voxels and
cross empty blocks in one step (a coarse occupancy grid traversed like the
voxels; for trilinear sampling a block is occupied when a non-zero voxel lies
within one voxel of it), which changes no result: skipped samples are exactly
zero.  Work is split over
detector rows (:func:`numba.prange`), neighbouring pixels of a row reading
neighbouring voxels.

16-bit images (:func:`quantize`)
--------------------------------
- :attr:`PixelMapping.LOG` (default): stored = ``round(∫μ dl / s)`` with the
  Rescale Slope ``s = max / 65535`` rounded up to 7 significant digits (the
  image's largest integral at or just below 65535),
  Rescale Intercept 0, Pixel Intensity Relationship ``LOG`` (the values are the
  logarithm of the transmitted intensity, ``∫μ dl = -ln(I/I0)``), sign -1
  (higher values, less intensity): bone is bright, as on a film.
- :attr:`PixelMapping.LIN`: stored = ``round(exp(-∫μ dl) / s)``, Rescale
  Slope ``s = 1/65535`` rounded up to 7 significant digits (rescaled values
  are the transmission ``I/I0``),
  relationship ``LIN``, sign +1: bone is dark, as on a detector.
- ``invert`` stores ``65535 - stored`` (Oncentra's DRR Generation Inverted),
  keeping the slope, so the rescaled values become ``65535·s - ∫μ dl`` (or
  ``1 - I/I0``) and the sign flips.
- Window Center/Width span the 0.5th to 99.5th percentile of the rescaled
  values of the pixels whose ray met attenuating voxels.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numba
import numpy as np

from rtforge.core import _drr_kernels as _k
from rtforge.core._drr_types import BLOCK, BLOCK_SHIFT, DrrMethod, SkipMap, _Choice
from rtforge.core.beam import BeamGeometry
from rtforge.core.geometry import Grid, Volume
from rtforge.errors import GeometryError, InvalidInputError

__all__ = [
    "DEFAULT_ENERGY_KEV",
    "ISOCENTER_MARGIN_MM",
    "DrrMethod",
    "Device",
    "Attenuation",
    "water_attenuation",
    "AttenuationVolume",
    "prepare_volume",
    "compute_drr",
    "PixelMapping",
    "QuantizedDrr",
    "quantize",
    "central_axis_ssd",
    "SURFACE_HU",
    "SkipMap",
    "FIT_MARGIN",
    "body_pixel_spacing",
]

logger = logging.getLogger(__name__)

#: Effective energy (keV) of the default HU-to-μ conversion.
DEFAULT_ENERGY_KEV = 60.0
#: Rows handed to a thread at a time (dynamic scheduling balances rows that miss the body).
_ROWS_PER_CHUNK = 4
#: How far (mm) an isocentre may lie outside the CT's bounding box: farther, the
#: plan cannot belong to this CT (or is not in mm).
ISOCENTER_MARGIN_MM = 100.0

# Mass attenuation coefficient μ/ρ of liquid water, cm²/g, with coherent
# scattering (NIST XCOM, Hubbell & Seltzer, NIST Standard Reference Database 126).
_WATER_KEV = np.array([10.0, 15.0, 20.0, 30.0, 40.0, 50.0, 60.0, 80.0, 100.0, 150.0, 200.0, 300.0,
                       400.0, 500.0, 600.0, 800.0, 1000.0, 1250.0, 1500.0, 2000.0, 3000.0, 4000.0,
                       5000.0, 6000.0, 8000.0, 10000.0, 15000.0, 20000.0])
_WATER_MU_RHO = np.array([5.329, 1.673, 0.8096, 0.3756, 0.2683, 0.2269, 0.2059, 0.1837, 0.1707,
                          0.1505, 0.1370, 0.1186, 0.1061, 0.09687, 0.08956, 0.07865, 0.07072,
                          0.06323, 0.05754, 0.04942, 0.03969, 0.03403, 0.03031, 0.02770, 0.02429,
                          0.02219, 0.01941, 0.01813])
_HU_MIN, _HU_MAX = -32768, 32767
class Device(_Choice):
    """Where the rays are cast."""

    CPU = "cpu"
    #: numba.cuda (:mod:`rtforge.core.drr_cuda`).
    CUDA = "cuda"


def water_attenuation(energy_kev: float) -> float:
    """Linear attenuation coefficient of water (1/mm) at a photon energy.

    Log-log interpolation of the NIST XCOM table (10 keV to 20 MeV).

    Parameters
    ----------
    energy_kev : float

    Returns
    -------
    float
        μ in 1/mm (water at 1 g/cm³).

    Raises
    ------
    InvalidInputError
        If the energy is outside 10 keV to 20 MeV.
    """
    e = float(energy_kev)
    if not (math.isfinite(e) and _WATER_KEV[0] <= e <= _WATER_KEV[-1]):
        raise InvalidInputError(f"energy_kev must be between {_WATER_KEV[0]:g} and "
                                f"{_WATER_KEV[-1]:g} keV, got {energy_kev!r}")
    log_mu = np.interp(math.log(e), np.log(_WATER_KEV), np.log(_WATER_MU_RHO))
    return float(math.exp(log_mu)) / 10.0


def _check_window(window: Sequence[float] | None) -> tuple[int, int] | None:
    if window is None:
        return None
    try:
        lo, hi = (float(v) for v in window)
    except (TypeError, ValueError):
        raise InvalidInputError(f"hu_window must be two numbers LO, HI, got {window!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo <= hi):
        raise InvalidInputError(f"hu_window must have LO <= HI, both finite, got {window!r}")
    return (max(math.ceil(lo), _HU_MIN), min(math.floor(hi), _HU_MAX))


@dataclass(frozen=True)
class Attenuation:
    """HU to linear attenuation: ``μ = μ_water · (1 + HU/1000)``, clipped at 0.

    Parameters
    ----------
    energy_kev : float
        Effective energy giving ``μ_water`` (:func:`water_attenuation`);
        default :data:`DEFAULT_ENERGY_KEV`.
    mu_water : float, optional
        ``μ_water`` in 1/mm, overriding ``energy_kev`` (e.g. 0.022 to match
        plastimatch).
    hu_window : tuple of float, optional
        ``(lo, hi)``: voxels with HU outside ``[lo, hi]`` (inclusive) contribute
        nothing (Oncentra DRR Generation Min/Max Threshold).  Stored as the
        integer HU range it keeps, ``(ceil(lo), floor(hi))``.

    Raises
    ------
    InvalidInputError
        If the energy is out of range, ``mu_water`` is not positive, or the
        window is not ``lo <= hi``.
    """

    energy_kev: float = DEFAULT_ENERGY_KEV
    mu_water: float | None = None
    hu_window: Sequence[float] | None = None

    def __post_init__(self) -> None:
        if self.mu_water is None:
            water_attenuation(self.energy_kev)
        elif not (math.isfinite(float(self.mu_water)) and float(self.mu_water) > 0):
            raise InvalidInputError(f"mu_water must be positive (1/mm), got {self.mu_water!r}")
        object.__setattr__(self, "hu_window", _check_window(self.hu_window))

    @property
    def mu_water_per_mm(self) -> float:
        """``μ_water`` in 1/mm."""
        if self.mu_water is not None:
            return float(self.mu_water)
        return water_attenuation(self.energy_kev)

    def lookup_table(self) -> np.ndarray:
        """ndarray of shape (65536,), float32: μ (1/mm) of HU ``-32768 + n`` at index ``n``."""
        hu = np.arange(_HU_MIN, _HU_MAX + 1, dtype=np.float64)
        mu = np.maximum(self.mu_water_per_mm * (1.0 + hu / 1000.0), 0.0)
        if self.hu_window is not None:
            lo, hi = self.hu_window
            mu[(hu < lo) | (hu > hi)] = 0.0
        return mu.astype(np.float32)

    def describe(self) -> str:
        """One line: the conversion and its parameters."""
        source = (f"{self.mu_water_per_mm:.5g}/mm" if self.mu_water is not None else
                  f"{self.mu_water_per_mm:.5g}/mm (water at {self.energy_kev:g} keV)")
        window = "" if self.hu_window is None else \
            f", HU window [{self.hu_window[0]}, {self.hu_window[1]}]"
        return f"mu = mu_water (1 + HU/1000) >= 0, mu_water {source}{window}"


@dataclass(frozen=True, eq=False)
class AttenuationVolume:
    """A CT converted to μ, ready for any number of DRRs (see :func:`prepare_volume`).

    Parameters
    ----------
    mu : ndarray of shape grid.shape, dtype float32
        Linear attenuation (1/mm), ``[k, j, i]``, C-contiguous, read-only.
    grid : Grid
        Where the voxels are (any orientation; sheared for gantry tilt).
    attenuation : Attenuation
        How ``mu`` was made from HU.
    cache : dict
        Derived data computed once: occupancy grids, device copies.
    """

    mu: np.ndarray
    grid: Grid
    attenuation: Attenuation
    cache: dict = field(default_factory=dict, repr=False, compare=False)

    def skip_map(self, method: DrrMethod) -> SkipMap:
        """Occupancy grid (:data:`BLOCK` voxels a side) and box for ``method`` (computed once)."""
        halo = 1 if method is DrrMethod.TRILINEAR else 0
        key = ("skip", halo)
        if key not in self.cache:
            nk, nj, ni = self.mu.shape
            occ = np.zeros((-(-nk // BLOCK), -(-nj // BLOCK), -(-ni // BLOCK)), dtype=np.uint8)
            _k.block_occupancy(self.mu, BLOCK, halo, occ)
            filled = np.nonzero(occ)
            box = np.zeros(6)
            if filled[0].size:
                hi = np.array([min((filled[a].max() + 1) * BLOCK, self.mu.shape[a])
                               for a in (2, 1, 0)], dtype=np.float64)
                box = np.concatenate([[filled[a].min() * BLOCK for a in (2, 1, 0)], hi])
            self.cache[key] = SkipMap(occ.ravel(), box.astype(np.float64),
                                        empty=filled[0].size == 0)
        return self.cache[key]

    def __repr__(self) -> str:
        return f"AttenuationVolume(grid={self.grid!r}, {self.attenuation.describe()})"


def _check_volume(volume: Volume) -> np.ndarray:
    if not isinstance(volume, Volume):
        raise InvalidInputError(f"volume must be a Volume (HU and its Grid), got "
                                f"{type(volume).__name__}")
    arr = volume.array
    if arr.ndim != 3:
        raise InvalidInputError(f"volume array must have 3 dimensions [k, j, i], got {arr.ndim}")
    if arr.size == 0:
        raise InvalidInputError("volume array is empty")
    if arr.dtype != np.int16:
        raise InvalidInputError(f"volume array must hold HU as int16, got {arr.dtype}")
    return np.ascontiguousarray(arr)


def prepare_volume(volume: Volume, attenuation: Attenuation | None = None) -> AttenuationVolume:
    """Convert a CT to μ once, for many DRRs.

    Parameters
    ----------
    volume : Volume
        HU (int16) and its grid.
    attenuation : Attenuation, optional
        Default: :class:`Attenuation` () (60 keV, no window).

    Returns
    -------
    AttenuationVolume

    Raises
    ------
    InvalidInputError
        If the array is not 3-D int16.
    """
    hu = _check_volume(volume)
    attenuation = attenuation or Attenuation()
    mu = np.empty(hu.shape, dtype=np.float32)
    _k.hu_to_mu(hu.ravel(), attenuation.lookup_table(), mu.ravel())
    mu.setflags(write=False)
    return AttenuationVolume(mu=mu, grid=volume.grid, attenuation=attenuation)


def _as_geometries(geometries: BeamGeometry | Sequence[BeamGeometry]) -> list[BeamGeometry]:
    items = [geometries] if isinstance(geometries, BeamGeometry) else list(geometries)
    if not items:
        raise InvalidInputError("no beam geometry given")
    for n, g in enumerate(items):
        if not isinstance(g, BeamGeometry):
            raise InvalidInputError(f"geometries[{n}] must be a BeamGeometry, got "
                                    f"{type(g).__name__}")
    size = (items[0].rows, items[0].columns)
    for n, g in enumerate(items):
        if (g.rows, g.columns) != size:
            raise InvalidInputError(f"geometries[{n}] is {g.rows}x{g.columns}, geometries[0] "
                                    f"{size[0]}x{size[1]}: one call makes images of one size")
    return items


def _ray_frames(grid: Grid, geometries: Sequence[BeamGeometry]) -> tuple[np.ndarray, np.ndarray]:
    """Source and receptor of each geometry in the grid's plane coordinates.

    Plane coordinates are index coordinates plus one half: voxel ``i`` spans
    ``[i, i + 1]`` and the volume ``[0, n]`` along each axis, order ``(i, j, k)``.

    Parameters
    ----------
    grid : Grid
    geometries : sequence of BeamGeometry

    Returns
    -------
    frames : ndarray of shape (n, 4, 3), float64
        Source, centre of pixel (0, 0), column step and row step.
    metric : ndarray of shape (3, 3), float64
        ``Aᵀ A`` for the index-to-patient matrix ``A``: a direction ``d`` in
        index units is ``sqrt(dᵀ (AᵀA) d)`` mm long.

    Raises
    ------
    GeometryError
        If a source lies inside the volume, or an isocentre more than
        :data:`ISOCENTER_MARGIN_MM` outside the volume's bounding box.
    """
    corners = grid.corners()
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    for g in geometries:
        outside = np.maximum(np.maximum(lo - g.isocenter, g.isocenter - hi), 0.0)
        if float(np.linalg.norm(outside)) > ISOCENTER_MARGIN_MM:
            raise GeometryError(
                f"isocentre {np.round(g.isocenter, 1).tolist()} mm is "
                f"{float(np.linalg.norm(outside)):.0f} mm outside the CT (x {lo[0]:.0f}..{hi[0]:.0f}, "
                f"y {lo[1]:.0f}..{hi[1]:.0f}, z {lo[2]:.0f}..{hi[2]:.0f} mm): more than "
                f"{ISOCENTER_MARGIN_MM:g} mm, so it cannot belong to this CT")
    inv = grid.inverse_affine
    lin, shift = inv[:3, :3], inv[:3, 3] + 0.5
    nk, nj, ni = grid.shape
    frames = np.empty((len(geometries), 4, 3))
    for n, g in enumerate(geometries):
        corner, dc, dr = g.detector_frame()
        frames[n, 0] = lin @ g.source + shift
        frames[n, 1] = lin @ corner + shift
        frames[n, 2] = lin @ dc
        frames[n, 3] = lin @ dr
        s = frames[n, 0]
        if np.all((s >= 0) & (s <= (ni, nj, nk))):
            raise GeometryError(f"the source of {g!r} lies inside the CT volume: increase the SAD "
                                "or move the isocentre")
    a = grid.direction * grid.spacing[np.newaxis, :]
    return frames, a.T @ a


def compute_drr(volume: Volume | AttenuationVolume,
                geometries: BeamGeometry | Sequence[BeamGeometry], *,
                method: str | DrrMethod = DrrMethod.SIDDON,
                attenuation: Attenuation | None = None, step_mm: float | None = None,
                device: str | Device = Device.CPU) -> np.ndarray:
    """Line integrals ``∫μ dl`` of every pixel of one or many DRRs of one CT.

    Parameters
    ----------
    volume : Volume or AttenuationVolume
        The CT (HU, int16, any regular grid) or a volume already converted by
        :func:`prepare_volume` (then ``attenuation`` must be None).
    geometries : BeamGeometry or sequence of BeamGeometry
        One per DRR; all of one image size.  They share the volume in memory.
    method : {"siddon", "trilinear"} or DrrMethod
        Exact radiological path (default) or fixed-step trilinear sampling.
    attenuation : Attenuation, optional
        HU to μ; default :class:`Attenuation` ().
    step_mm : float, optional
        Trilinear sampling step in mm (default: the smallest voxel spacing).
    device : {"cpu", "cuda"} or Device
        Where to cast the rays.

    Returns
    -------
    ndarray of shape (n, rows, columns), dtype float32
        ``[d, r, c]``: DRR ``d``, row ``r``, column ``c`` (see
        :class:`~rtforge.core.beam.BeamGeometry` for where they are).

    Raises
    ------
    InvalidInputError
        If the volume is not 3-D int16, a geometry is not a BeamGeometry or
        the sizes differ, the method, device or step is invalid, or
        ``attenuation`` is given with an :class:`AttenuationVolume`.
    GeometryError
        If a source lies inside the volume, or an isocentre lies more than
        :data:`ISOCENTER_MARGIN_MM` outside it.
    """
    kind = DrrMethod.parse(method, "method")
    where = Device.parse(device, "device")
    if isinstance(volume, AttenuationVolume):
        if attenuation is not None:
            raise InvalidInputError("attenuation is fixed by prepare_volume(): pass it there")
        prepared = volume
    else:
        prepared = prepare_volume(volume, attenuation)
    items = _as_geometries(geometries)
    if step_mm is None:
        step_mm = float(np.min(prepared.grid.spacing))
    step_mm = float(step_mm)
    if not (math.isfinite(step_mm) and step_mm > 0):
        raise InvalidInputError(f"step_mm must be a positive number of mm, got {step_mm!r}")
    frames, metric = _ray_frames(prepared.grid, items)
    rows, cols = items[0].rows, items[0].columns
    skip = prepared.skip_map(kind)
    logger.debug("%d DRR(s) of %dx%d, %s on %s; %.1f %% of the blocks occupied", len(items),
                 rows, cols, kind.value, where.value, 100.0 * float(skip.occupancy.mean()))
    if skip.empty:
        return np.zeros((len(items), rows, cols), dtype=np.float32)
    if where is Device.CUDA:
        from rtforge.core import drr_cuda

        return drr_cuda.cast(prepared.mu, prepared.cache, skip, frames, metric, (rows, cols), kind,
                             step_mm)
    nk, nj, ni = prepared.mu.shape
    shape = np.array([ni, nj, nk, -(-ni // BLOCK), -(-nj // BLOCK), -(-nk // BLOCK)],
                     dtype=np.int64)
    out = np.empty((len(items), rows, cols), dtype=np.float32)
    mu = prepared.mu.ravel()
    with numba.parallel_chunksize(_ROWS_PER_CHUNK):
        if kind is DrrMethod.SIDDON:
            _k.drr_siddon(mu, skip.occupancy, shape, BLOCK_SHIFT, skip.box, frames, metric, out)
        else:
            _k.drr_trilinear(mu, skip.occupancy, shape, BLOCK_SHIFT, skip.box, frames, metric,
                             step_mm, out)
    return out


# ------------------------------------------------------------ 16-bit images
class PixelMapping(_Choice):
    """How line integrals become 16-bit pixels (Pixel Intensity Relationship)."""

    #: The line integral, ``-ln(I/I0)``.
    LOG = "LOG"
    #: The transmission ``I/I0 = exp(-∫μ dl)``.
    LIN = "LIN"


@dataclass(frozen=True)
class QuantizedDrr:
    """A DRR as 16-bit unsigned pixels and the attributes that give them meaning.

    Parameters
    ----------
    pixels : ndarray of shape (rows, columns), dtype uint16
    rescale_slope, rescale_intercept : float
        Rescaled value = stored · slope + intercept (exactly the DS values written).
    relationship : PixelMapping
        Pixel Intensity Relationship (0028,1040).
    sign : int
        Pixel Intensity Relationship Sign (0028,1041): +1 when higher values
        mean more intensity, -1 when less.
    inverted : bool
        Whether ``65535 - stored`` was stored.
    window_center, window_width : float
        VOI window in rescaled units.
    """

    pixels: np.ndarray
    rescale_slope: float
    rescale_intercept: float
    relationship: PixelMapping
    sign: int
    inverted: bool
    window_center: float
    window_width: float

    def rescaled(self) -> np.ndarray:
        """ndarray of shape (rows, columns), float64: the rescaled values."""
        return self.pixels * self.rescale_slope + self.rescale_intercept


def _short_at_least(value: float) -> float:
    """The 7-significant-digit number at or just above ``value``.

    Its shortest repr is at most 13 characters, so it is written as a Decimal
    String exactly as it is used here.
    """
    return float(f"{value * (1.0 + 1e-6):.6e}")


def quantize(integrals: np.ndarray, mapping: str | PixelMapping = PixelMapping.LOG,
             invert: bool = False) -> QuantizedDrr:
    """Map one DRR's line integrals to 16-bit unsigned pixels (rule in the module docstring).

    Parameters
    ----------
    integrals : ndarray of shape (rows, columns), float
        ``∫μ dl`` from :func:`compute_drr` (one image), all finite and >= 0.
    mapping : {"LOG", "LIN"} or PixelMapping
    invert : bool
        Store ``65535 - value``.

    Returns
    -------
    QuantizedDrr

    Raises
    ------
    InvalidInputError
        If ``integrals`` is not 2-D, holds a negative or non-finite value, or
        ``mapping`` is unknown.
    """
    arr = np.asarray(integrals, dtype=np.float64)
    if arr.ndim != 2:
        raise InvalidInputError(f"integrals must be one image (rows, columns), got {arr.ndim} "
                                "dimensions")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise InvalidInputError("integrals must be finite and non-negative")
    mapping = PixelMapping.parse(mapping, "mapping")
    top = 65535
    if mapping is PixelMapping.LOG:
        peak = float(arr.max())
        slope = _short_at_least(peak / top) if peak > 0 else 1.0
        stored = np.rint(arr / slope)
        sign = -1
    else:
        slope = _short_at_least(1.0 / top)
        stored = np.rint(np.exp(-arr) / slope)
        sign = 1
    stored = np.clip(stored, 0, top)
    if invert:
        stored = top - stored
        sign = -sign
    pixels = stored.astype(np.uint16)
    rescaled = pixels * slope
    hit = rescaled[arr > 0]
    if hit.size:
        lo, hi = (float(v) for v in np.percentile(hit, [0.5, 99.5]))
    else:
        lo, hi = 0.0, top * slope
    width = max(hi - lo, slope)
    return QuantizedDrr(pixels=pixels, rescale_slope=slope, rescale_intercept=0.0,
                        relationship=mapping, sign=sign, inverted=bool(invert),
                        window_center=(lo + hi) / 2.0, window_width=width)


# ---------------------------------------------------------------- SSD
#: HU at and above which the central axis is inside the patient (:func:`central_axis_ssd`).
SURFACE_HU = -500


def central_axis_ssd(volume: Volume, geometry: BeamGeometry, *, surface_hu: int = SURFACE_HU,
                     step_mm: float = 0.25) -> float | None:
    """Source-to-surface distance along the beam axis, from the CT.

    The axis is sampled from the source every ``step_mm``, nearest voxel, and
    the first sample at or above ``surface_hu`` is the skin.

    Parameters
    ----------
    volume : Volume
        HU (int16) and its grid.
    geometry : BeamGeometry
    surface_hu : int
        Threshold (default :data:`SURFACE_HU`, -500 HU).
    step_mm : float
        Sampling step (default 0.25 mm).

    Returns
    -------
    float or None
        Distance in mm, or None when the axis meets no voxel at or above the
        threshold before the isocentre's far side leaves the volume.
    """
    hu = _check_volume(volume)
    source = geometry.source
    direction = geometry.beam_direction
    far = 2.0 * geometry.sad
    dist = np.arange(0.0, far, float(step_mm))
    ijk = np.rint(volume.grid.patient_to_index(source + dist[:, None] * direction)).astype(np.intp)
    nk, nj, ni = hu.shape
    inside = ((ijk[:, 0] >= 0) & (ijk[:, 0] < ni) & (ijk[:, 1] >= 0) & (ijk[:, 1] < nj)
              & (ijk[:, 2] >= 0) & (ijk[:, 2] < nk))
    hit = np.zeros(dist.shape, dtype=bool)
    sel = np.flatnonzero(inside)
    hit[sel] = hu[ijk[sel, 2], ijk[sel, 1], ijk[sel, 0]] >= surface_hu
    first = np.flatnonzero(hit)
    return float(dist[first[0]]) if first.size else None


#: :func:`body_pixel_spacing` leaves this fraction of the half-width free around the body.
FIT_MARGIN = 0.05
#: ... finding the body on blocks of at most this many blocks along each axis.
_FIT_BLOCKS = 48


def body_pixel_spacing(volume: Volume, geometries: Sequence[BeamGeometry], *,
                       surface_hu: int = SURFACE_HU, margin: float = FIT_MARGIN) -> float:
    """The smallest square pixel spacing at which every image shows the whole body.

    The body is every voxel at or above ``surface_hu``, found on blocks of
    voxels (a block holding one counts whole, so the extent found is never
    smaller than the body's); the corners of those blocks are
    projected through each geometry onto its receptor, and the spacing is
    the one that puts the farthest of them, plus ``margin`` of the
    half-width, inside the image (centred as the geometry says, with its rows
    and columns).

    Parameters
    ----------
    volume : Volume
        HU (int16) and its grid.
    geometries : sequence of BeamGeometry
        Their pixel spacings are ignored.
    surface_hu : int
        Body threshold (default :data:`SURFACE_HU`, -500 HU).
    margin : float
        Fraction of the half-width left free (default :data:`FIT_MARGIN`).

    Returns
    -------
    float
        mm at the receptor plane, rounded up to 0.01 mm; 1.0 when no voxel is
        at or above ``surface_hu``.

    Raises
    ------
    InvalidInputError
        If the volume is not a 3-D int16 Volume or no geometry is given.
    """
    hu = _check_volume(volume)
    if not geometries:
        raise InvalidInputError("body_pixel_spacing needs at least one geometry")
    shape = np.array(hu.shape)
    size = -(-shape // _FIT_BLOCKS)  # voxels per block, [k, j, i]
    blocks = -(-shape // size)
    padded = np.zeros(blocks * size, dtype=bool)
    padded[:shape[0], :shape[1], :shape[2]] = hu >= surface_hu
    occupied = padded.reshape(blocks[0], size[0], blocks[1], size[1], blocks[2],
                              size[2]).any(axis=(1, 3, 5))
    if not occupied.any():
        return 1.0
    corners = np.zeros(blocks + 1, dtype=bool)
    for dk in (0, 1):
        for dj in (0, 1):
            for di in (0, 1):
                corners[dk:dk + blocks[0], dj:dj + blocks[1], di:di + blocks[2]] |= occupied
    kji = np.argwhere(corners) * size - 0.5  # block corners at voxel edges
    points = volume.grid.index_to_patient(kji[:, ::-1])
    spacing = 0.0
    for g in geometries:
        gantry = g.patient_to_gantry(points)
        depth = g.sad - gantry[:, 2]
        front = depth > 1e-6 * g.sad
        scale = g.sid / depth[front]
        x = np.abs(gantry[front, 0] * scale - g.image_offset[0])
        y = np.abs(gantry[front, 1] * scale - g.image_offset[1])
        need_x = x.max() / max(0.5, (g.columns - 1) / 2) if x.size else 0.0
        need_y = y.max() / max(0.5, (g.rows - 1) / 2) if y.size else 0.0
        spacing = max(spacing, need_x, need_y)
    spacing /= 1.0 - margin
    return math.ceil(spacing * 100.0 - 1e-9) / 100.0 if spacing > 0 else 1.0
