"""DVHs side by side, in one run: rtforge, dicompyler-core and ``plastimatch dvh`` (issue 4).

The realistic case: a body contour (an ellipse of about 350 x 250 mm with a
gentle wobble, 150 planes at 2.5 mm, 200 points per contour) and ten
organ-sized ellipsoids (1 to 1,800 cm3, contoured on the same planes) in a
2.5 mm dose grid of 200 x 200 x 150 holding a box field with a penumbra on a
low bath.  The structure set and the dose (32-bit) are written as DICOM
files, then every tool computes the eleven DVHs from those files:

- rtforge: reading both files (:mod:`rtforge.io`), then the eleven DVHs in
  one :func:`rtforge.core.dvh.compute_dvhs` call ("all DVHs", what the
  targets are about) and each ROI alone in its own ``compute_dvh`` call (the
  per-ROI seconds), on ``--threads`` Numba threads (JIT compilation is warmed
  up first, outside the timing);
- dicompyler-core (``dvhcalc.get_dvh``, default settings and
  ``use_structure_extents=True``): its last release does not import with
  pydicom 3, so it runs as a subprocess in its own virtual environment,
  which this script creates on first use (``--cache-dir``, default
  ``~/.cache/rtforge-bench``: ``pip install dicompyler-core "pydicom<3"``;
  PyPI must be reachable then) unless ``--dicompyler-python`` names a
  Python that has both.  The subprocess reads both files once (timed
  apart) and times ``get_dvh`` per ROI on the datasets;
- ``plastimatch dvh`` when it is on the PATH: one process per single-ROI
  structure set (its wall time per ROI, which includes reading the dose,
  rasterising and the DVH) and one process for all ROIs.

Prints seconds per ROI, for the eleven DVHs, for reading and in total for
each tool (rtforge: medians of ``--repeat`` runs interleaved with the other
tools' ``--tool-repeat`` runs; the machine's load average is printed, as
other work skews timings), the ratios, and whether issue 4's targets
(0.25 s for the DVHs, 1 s with reading) are met.

``--accuracy`` then writes analytic cases (a sphere of r = 20 mm in a z
gradient and of r = 5 mm in an x gradient, a cylinder along z in a z
gradient, a ring with a hole in an x gradient; 1 and 2.5 mm contour and dose
spacings, dose planes offset from contour planes; circles as 512-gons) and
prints, for each tool, the volume error, the largest cumulative-DVH error
(percent of the ROI volume) and the largest error of D99, D95, D50, D5 and
D1 (from each tool's curve, interpolated linearly; plastimatch's curve is
its voxel counts times the voxel volume of its structure image, read from
its log) against the exact DVH of the contoured solid, computed here in
closed form (half-plane clipping of each plane's polygons times slab
thickness, or areas times the clipped slab length).

``--tps STRUCT`` is a separate mode (no timing): rtforge's DVHs of a real
structure set, with each end-cap convention (full, half, none), against those a
treatment planning system stored: the DVH Sequence of ``--tps-dose`` (an RT
Dose with a dose grid and a DVH Sequence: volume and mean dose differences per
ROI), or the volumes in the header of an Eclipse DVH table (``--tps-table``;
without the plan's RT Dose, rtforge's volumes are taken in a uniform dose grid
and mean doses are not compared).  By default the Eclipse prostate structure
set and its DVH table in ``tests/data/slicerrt_eclipse``.

Usage::

    python bench/compare_dvh.py [--threads 2] [--repeat 7] [--accuracy]
                                [--dicompyler-python auto|none|/path/to/python]
                                [--cache-dir DIR] [--no-plastimatch] [--keep DIR]
    python bench/compare_dvh.py --tps [STRUCT] [--tps-dose RTDOSE | --tps-table CSV]
"""

from __future__ import annotations

import argparse
import copy
import csv
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import NamedTuple

import numba
import numpy as np
from pydicom import Dataset, dcmread
from scipy.special import erf

from rtforge.core.contours import Contour, Structure
from rtforge.core.dvh import EndCap, compute_dvh, compute_dvhs, contour_spacing
from rtforge.core.geometry import Grid, Volume
from rtforge.io.rtdose import PlanReference, build_dose_grid, read_rtdose, write_rtdose
from rtforge.io.rtstruct import build_rtstruct, read_rtstruct, write_rtstruct
from rtforge.io.uids import new_uid

#: Organ volumes (cm3) of the ten ellipsoids.
ORGAN_VOLUMES = (1, 5, 15, 40, 100, 200, 400, 700, 1200, 1800)
#: Where the dicompyler-core virtual environment lives (``--cache-dir``).
DEFAULT_CACHE = Path(os.environ.get("RTFORGE_BENCH_CACHE", Path.home() / ".cache" / "rtforge-bench"))
#: The real set of ``--tps`` by default: Eclipse's structure set and its DVH table.
_ECLIPSE = Path(__file__).resolve().parents[1] / "tests" / "data" / "slicerrt_eclipse"
DEFAULT_TPS_STRUCT = _ECLIPSE / "RS.1.2.246.352.71.4.2088656855.2404649.20110920153449.dcm"
DEFAULT_TPS_TABLE = _ECLIPSE / "EclipseProstate_DvhTable_Eclipse.csv"
#: Issue 4's targets for the eleven DVHs of the realistic case (seconds, 2 cores).
TARGET_COMPUTE_S = 0.25
TARGET_TOTAL_S = 1.0

_DICOMPYLER_CURVES = r"""
import json, sys
from dicompylercore import dicomparser, dvhcalc
rtss, rtdose, extents = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
rois = dicomparser.DicomParser(rtss).GetStructures()
out = {}
for number in sorted(rois):
    dvh = dvhcalc.get_dvh(rtss, rtdose, number, use_structure_extents=extents)
    out[rois[number]["name"]] = [list(map(float, dvh.bins)), list(map(float, dvh.counts))]
print(json.dumps(out))
"""

# Both files are read once (timed apart); get_dvh then gets the datasets, as a service would.
_DICOMPYLER = r"""
import json, sys, time
import pydicom
from dicompylercore import dicomparser, dvhcalc
rtss, rtdose, extents = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
start = time.perf_counter()
ss, dose = pydicom.dcmread(rtss), pydicom.dcmread(rtdose)
dose.pixel_array
read = time.perf_counter() - start
rois = dicomparser.DicomParser(ss).GetStructures()
out = {}
for number in sorted(rois):
    t = time.perf_counter()
    dvh = dvhcalc.get_dvh(ss, dose, number, use_structure_extents=extents)
    out[rois[number]["name"]] = [time.perf_counter() - t, float(dvh.volume)]
print(json.dumps({"read": read, "rois": out}))
"""


def _ellipse(a: float, b: float, z: float, n: int, cx: float = 0.0, cy: float = 0.0,
             wobble: float = 0.0) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    r = 1 + wobble * np.sin(5 * t + z / 40)
    return np.c_[cx + a * r * np.cos(t), cy + b * r * np.sin(t), np.full(n, z)]


def make_case(root: Path) -> tuple[Path, Path]:
    """Write the realistic structure set and dose under ``root``; return their paths."""
    frame = str(new_uid())
    reference = Dataset()
    reference.PatientName, reference.PatientID = "Bench^DVH", "BENCHDVH"
    reference.StudyInstanceUID, reference.FrameOfReferenceUID = str(new_uid()), frame
    levels = -186.25 + 2.5 * np.arange(150)
    structures = [Structure(1, "Body", tuple(Contour(_ellipse(175, 125, z, 200, wobble=0.02))
                                             for z in levels), interpreted_type="EXTERNAL")]
    rng = np.random.default_rng(4)
    for n, volume in enumerate(ORGAN_VOLUMES):
        a = (volume * 1000 / (4 / 3 * math.pi * 0.8 * 1.2)) ** (1 / 3)
        cx, cy = rng.uniform(-170 + a, 170 - a) * 0.5, rng.uniform(-120 + a, 120 - a) * 0.4
        cz = rng.uniform(-150 + 1.2 * a, 150 - 1.2 * a) * 0.5
        contours = []
        for z in levels:
            s = 1 - ((z - cz) / (1.2 * a)) ** 2
            if s > 0:
                contours.append(Contour(_ellipse(a * math.sqrt(s), 0.8 * a * math.sqrt(s), z,
                                                 200, cx, cy)))
        structures.append(Structure(n + 2, f"Organ{volume}", tuple(contours)))
    ss = build_rtstruct(structures, frame_of_reference_uid=frame, source=reference).dataset
    struct = write_rtstruct(ss, root, flat=True)
    grid = Grid((150, 200, 200), origin=(-248.75, -248.75, -186.25), spacing=(2.5, 2.5, 2.5))
    x = grid.origin[0] + 2.5 * np.arange(200)
    z = grid.origin[2] + 2.5 * np.arange(150)

    def profile(u: np.ndarray, half: float) -> np.ndarray:
        return 0.5 * (erf((u + half) / 5.0) - erf((u - half) / 5.0))

    field = profile(z, 60)[:, None, None] * profile(x, 50)[None, None, :] \
        * profile(x - 10, 45)[None, :, None]
    dose = Volume(2.0 + 58.0 * field + 0.02 * (z[:, None, None] + 200), grid)
    plan = PlanReference(str(new_uid()))
    dose_ds = build_dose_grid(dose, summation_type="PLAN", plans=[plan], reference=ss).dataset
    return struct, write_rtdose(dose_ds, root / "rtdose.dcm")


class Timing(NamedTuple):
    """One tool's seconds: reading both files, each ROI's DVH alone, and all together."""

    read: float
    per_roi: dict[str, float]
    together: float | None = None  # all DVHs in one call, where the tool has one
    cpu: float | None = None  # CPU seconds of that call, all threads (robust to other load)

    @property
    def compute(self) -> float:
        return self.together if self.together is not None else sum(self.per_roi.values())

    @property
    def total(self) -> float:
        return self.read + self.compute


def time_rtforge(struct: Path, dose_path: Path) -> Timing:
    """rtforge: reading both files (:mod:`rtforge.io`), all DVHs in one :func:`compute_dvhs`
    call, then each ROI alone (one :func:`compute_dvh` call each, for the per-ROI seconds)."""
    start = time.perf_counter()
    ss = read_rtstruct(struct)
    dose = read_rtdose(dose_path)
    read = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    compute_dvhs(dose.volume, ss.structures)
    together, cpu = time.perf_counter() - start, time.process_time() - cpu
    per_roi = {}
    for structure in ss.structures:
        start = time.perf_counter()
        compute_dvh(dose.volume, structure)
        per_roi[structure.name] = time.perf_counter() - start
    return Timing(read, per_roi, together, cpu)


def run_rtforge(struct: Path, dose_path: Path) -> tuple[dict[str, float], float, float]:
    """Per-ROI compute seconds, total compute seconds (one call), total seconds with reading."""
    timing = time_rtforge(struct, dose_path)
    return timing.per_roi, timing.compute, timing.total


def single_roi_folders(struct: Path, dose: Path, work: Path) -> dict[str, Path]:
    """One folder per ROI holding the dose and a structure set with that ROI alone."""
    ds = dcmread(struct)
    folders = {}
    for roi in ds.StructureSetROISequence:
        number = roi.ROINumber
        one = copy.deepcopy(ds)
        one.StructureSetROISequence = [r for r in one.StructureSetROISequence
                                       if r.ROINumber == number]
        one.ROIContourSequence = [r for r in one.ROIContourSequence
                                  if r.ReferencedROINumber == number]
        one.RTROIObservationsSequence = [r for r in one.RTROIObservationsSequence
                                         if r.ReferencedROINumber == number]
        folder = work / "plastimatch_roi" / str(roi.ROIName)
        folder.mkdir(parents=True, exist_ok=True)
        one.save_as(folder / "rtss.dcm")
        shutil.copy(dose, folder / "rtdose.dcm")
        folders[str(roi.ROIName)] = folder
    return folders


def _plastimatch(folder: Path, csv: Path, bins: int, normalization: str = "pct"
                 ) -> tuple[float, str] | None:
    """Wall seconds and log of ``plastimatch dvh`` on a folder holding both files."""
    exe = shutil.which("plastimatch")
    if exe is None:
        return None
    start = time.perf_counter()
    proc = subprocess.run([exe, "dvh", "--input", str(folder), "--output-csv", str(csv),
                           "--bin-width", "0.01", "--num-bins", str(bins),
                           "--normalization", normalization],
                          capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0 or not csv.exists():
        print(f"plastimatch dvh failed: {(proc.stderr or proc.stdout).strip()[-300:]}")
        return None
    return elapsed, proc.stdout + proc.stderr


def run_plastimatch(struct: Path, dose: Path, work: Path) -> float | None:
    """Wall seconds of ``plastimatch dvh`` on a folder holding both files (all ROIs)."""
    folder = work / "plastimatch_in"
    folder.mkdir(exist_ok=True)
    shutil.copy(struct, folder / "rtss.dcm")
    shutil.copy(dose, folder / "rtdose.dcm")
    result = _plastimatch(folder, work / "plastimatch.csv", 7000)
    return None if result is None else result[0]


def run_plastimatch_per_roi(folders: dict[str, Path], work: Path) -> dict[str, float] | None:
    """Wall seconds of one ``plastimatch dvh`` process per single-ROI folder."""
    out = {}
    for name, folder in folders.items():
        result = _plastimatch(folder, work / f"plastimatch_{name}.csv", 7000)
        if result is None:
            return None
        out[name] = result[0]
    return out


def _dicompyler_imports(python: Path) -> bool:
    if not python.exists():
        return False
    proc = subprocess.run([str(python), "-c", "import pydicom, dicompylercore.dvhcalc"],
                          capture_output=True, check=False)
    return proc.returncode == 0


def resolve_dicompyler(option: str, cache: Path = DEFAULT_CACHE) -> str | None:
    """A Python that imports dicompyler-core (pydicom < 3), or None.

    ``option`` is ``"auto"`` (a virtual environment under ``cache``, created and
    filled with ``pip install dicompyler-core "pydicom<3"`` on first use),
    ``"none"`` (skip dicompyler-core) or the path of a Python that has both.
    """
    if option == "none":
        return None
    if option != "auto":
        return option if _dicompyler_imports(Path(option)) else None
    venv = cache / "dicompyler"
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    if _dicompyler_imports(python):
        return str(python)
    print(f"installing dicompyler-core and pydicom<3 into {venv} (once) ...", flush=True)
    steps = [[sys.executable, "-m", "venv", str(venv)],
             [str(python), "-m", "pip", "install", "-q", "dicompyler-core", "pydicom<3"]]
    for step in steps:
        proc = subprocess.run(step, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            print(f"could not install dicompyler-core: {(proc.stderr or proc.stdout).strip()[-300:]}")
            return None
    return str(python) if _dicompyler_imports(python) else None


def time_dicompyler(python: str | None, struct: Path, dose: Path, extents: bool) -> Timing | None:
    """dicompyler-core in its own Python: reading both files, then ``get_dvh`` per ROI."""
    if not python:
        return None
    proc = subprocess.run([python, "-c", _DICOMPYLER, str(struct), str(dose),
                           "1" if extents else "0"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        print(f"dicompyler-core failed: {proc.stderr.strip()[-300:]}")
        return None
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return Timing(out["read"], {name: values[0] for name, values in out["rois"].items()})


def run_dicompyler(python: str | None, struct: Path, dose: Path,
                   extents: bool) -> dict[str, float] | None:
    """Per-ROI seconds of dicompyler-core (its own timing), or None when unavailable."""
    timing = time_dicompyler(python, struct, dose, extents)
    return None if timing is None else timing.per_roi


# ------------------------------------------------------------------ accuracy
def _clip_area(poly: np.ndarray, s: float) -> float:
    """Area of the polygon's part with x >= s (Sutherland-Hodgman, shoelace)."""
    out = []
    n = poly.shape[0]
    for a in range(n):
        p, q = poly[a], poly[(a + 1) % n]
        pin, qin = p[0] >= s, q[0] >= s
        if pin:
            out.append(p)
        if pin != qin:
            t = (s - p[0]) / (q[0] - p[0])
            out.append(p + t * (q - p))
    if len(out) < 3:
        return 0.0
    xy = np.array(out)
    return 0.5 * abs(float(np.dot(xy[:, 0], np.roll(xy[:, 1], -1))
                         - np.dot(xy[:, 1], np.roll(xy[:, 0], -1))))


class _Case:
    """Planes of circles (512-gons; a second circle is a hole) and a linear dose."""

    def __init__(self, name: str, radii: list[tuple[float, float, float]], spacing: float,
                 dose_spacing: float, z_offset: float, gradient: tuple[float, float]) -> None:
        self.name, self.spacing, self.dose_spacing = name, spacing, dose_spacing
        self.z_offset, (self.gx, self.gz) = z_offset, gradient
        self.planes = [(z, [_ellipse(r, r, z, 512)] + ([_ellipse(h, h, z, 512)[::-1]] if h else []))
                       for z, r, h in radii]
        z = np.array([p[0] for p in self.planes])
        self.slabs = np.stack([z - spacing / 2, z + spacing / 2], axis=1)
        self.c = 5.0 + 65.0 * (self.gx + self.gz)

    def area(self, polys: list[np.ndarray], s: float = -np.inf) -> float:
        signs = [1.0] + [-1.0] * (len(polys) - 1)
        return sum(sign * _clip_area(p[:, :2], s) for sign, p in zip(signs, polys, strict=True))

    @property
    def volume(self) -> float:
        return sum(self.area(polys) * (z1 - z0) for (_, polys), (z0, z1)
                   in zip(self.planes, self.slabs, strict=True)) / 1000

    def v(self, dose: float) -> float:
        total = 0.0
        for (_, polys), (z0, z1) in zip(self.planes, self.slabs, strict=True):
            if self.gz == 0:
                total += (z1 - z0) * self.area(polys, (dose - self.c) / self.gx)
            else:
                zc = (dose - self.c) / self.gz
                total += self.area(polys) * min(max(z1 - max(z0, zc), 0.0), z1 - z0)
        return total / 1000

    def write(self, root: Path) -> tuple[Path, Path]:
        frame = str(new_uid())
        reference = Dataset()
        reference.PatientName, reference.PatientID = "Bench^Truth", "TRUTH"
        reference.StudyInstanceUID, reference.FrameOfReferenceUID = str(new_uid()), frame
        structure = Structure(1, self.name, tuple(Contour(p) for _, polys in self.planes
                                                  for p in polys))
        ss = build_rtstruct([structure], frame_of_reference_uid=frame, source=reference).dataset
        root.mkdir(parents=True, exist_ok=True)
        struct = write_rtstruct(ss, root, flat=True)
        n = int(math.ceil(64 / self.dose_spacing)) + 1
        grid = Grid((n, n, n), origin=(-32.29, -31.83, -32.0 + self.z_offset),
                    spacing=(self.dose_spacing,) * 3)
        k, _, i = np.meshgrid(*[np.arange(m) for m in grid.shape], indexing="ij")
        x = grid.origin[0] + self.dose_spacing * i
        z = grid.origin[2] + self.dose_spacing * k
        dose = Volume(self.c + self.gx * x + self.gz * z, grid)
        ds = build_dose_grid(dose, summation_type="PLAN", plans=[PlanReference(str(new_uid()))],
                             reference=ss).dataset
        return struct, write_rtdose(ds, root / "rtdose.dcm")


def _cases() -> list[_Case]:
    def sphere(r: float, cs: float, offset: float) -> list[tuple[float, float, float]]:
        z = offset + cs * np.arange(math.ceil((-r - offset) / cs), math.floor((r - offset) / cs) + 1)
        return [(float(v), math.sqrt(r * r - v * v), 0.0) for v in z if abs(v) < r]

    def column(r: float, hole: float, h: float, cs: float) -> list[tuple[float, float, float]]:
        return [(float(v), r, hole) for v in np.arange(-h, h + 1e-9, cs)]

    return [_Case("sphere20_z", sphere(20, 2.5, 0.4), 2.5, 2.5, 0.37, (0.0, 0.5)),
            _Case("sphere5_x", sphere(5, 1.0, 0.2), 1.0, 2.5, 0.37, (1.0, 0.0)),
            _Case("cylinder_z", column(10, 0, 15, 1.0), 1.0, 2.5, 0.0, (0.0, 1.0)),
            _Case("ring_x", column(15, 7, 10, 2.5), 2.5, 1.0, 0.37, (1.0, 0.0))]


def _scores(case: _Case, edges: np.ndarray, cumulative: np.ndarray) -> tuple[float, ...]:
    """Volume error %, largest cumulative error % of the volume, largest D error (Gy)."""
    truth_volume = case.volume
    doses = np.linspace(0, float(edges[-1]), 300)
    curve = np.interp(doses, edges, cumulative)
    cum_error = max(abs(c - case.v(d)) for c, d in zip(curve, doses, strict=True))
    d_error = 0.0
    for percent in (99, 95, 50, 5, 1):
        target = truth_volume * percent / 100
        lo, hi = 0.0, float(edges[-1])
        for _ in range(50):
            mid = 0.5 * (lo + hi)
            lo, hi = (mid, hi) if case.v(mid) > target else (lo, mid)
        mine = float(np.interp(-cumulative[0] * percent / 100, -cumulative, edges))
        d_error = max(d_error, abs(mine - lo))
    return (100 * (cumulative[0] / truth_volume - 1), 100 * cum_error / truth_volume, d_error)


def _plastimatch_curve(work: Path, volume_mm3_per_voxel: float | None = None
                       ) -> tuple[np.ndarray, np.ndarray, float] | None:
    """plastimatch's cumulative curve (cm3) on one case folder, and its voxel volume (mm3)."""
    out = work / "plastimatch_vox.csv"
    result = _plastimatch(work, out, 10000, normalization="vox")
    if result is None:
        return None
    log = result[1].splitlines()
    # "checking voxel size..." is followed by the structure image's voxel size (mm)
    at = next((n for n, line in enumerate(log) if "checking voxel size" in line), None)
    if at is None or at + 1 >= len(log):
        return None
    voxel = float(np.prod([float(v) for v in log[at + 1].split()[:3]]))
    table = np.loadtxt(out, delimiter=",", skiprows=1, ndmin=2)
    return table[:, 0], table[:, 1] * voxel / 1000, voxel


def run_accuracy(work: Path, dicompyler_python: str | None) -> None:
    """Print each tool's errors on the analytic cases."""
    print(f"\n{'case':<12}{'tool':<30}{'volume %':>9}{'cum. % of V':>13}{'max dD Gy':>11}")
    for case in _cases():
        struct, dose_path = case.write(work / case.name)
        print(f"{case.name:<12}{'truth':<30}{case.volume:.4f} cm3")
        dose = read_rtdose(dose_path)
        # the truth's solid gives every plane a full slab (as dicompyler-core does)
        dvh = compute_dvhs(dose.volume, read_rtstruct(struct).structures, end_cap="full")[0]
        curves = {"rtforge": (dvh.edges, dvh.cumulative)}
        for extents in (False, True) if dicompyler_python else ():
            proc = subprocess.run([dicompyler_python, "-c", _DICOMPYLER_CURVES, str(struct),
                                   str(dose_path), "1" if extents else "0"],
                                  capture_output=True, text=True, check=False)
            if proc.returncode == 0:
                bins, counts = json.loads(proc.stdout)[case.name]
                label = "dicompyler-core" + (" (extents)" if extents else "")
                curves[label] = (np.array(bins[:len(counts)]), np.array(counts))
        pm = _plastimatch_curve(work / case.name)
        if pm is not None:
            curves[f"plastimatch ({pm[2]:.3g} mm3 voxels)"] = pm[:2]
        for tool, (edges, cumulative) in curves.items():
            vol, cum, dd = _scores(case, edges, cumulative)
            print(f"{'':<12}{tool:<30}{vol:>+9.3f}{cum:>13.3f}{dd:>11.3f}")


# ------------------------------------------------------------------ against a TPS
def _table_volumes(table: Path) -> dict[str, float]:
    """ROI name (spaces removed) to volume (cm3) from an Eclipse DVH table's header."""
    with table.open(newline="") as handle:
        header = next(csv.reader(handle))
    found = (re.fullmatch(r"(.+)_DvhArray Value \(% of ([0-9.]+) cc\)", h) for h in header)
    return {m.group(1): float(m.group(2)) for m in found if m}


def _uniform_dose(structures: list[Structure], spacing: float = 2.5) -> Volume:
    """1 Gy everywhere on a grid covering every contour (volumes only)."""
    points = np.concatenate([c.points for s in structures for c in s.contours])
    lo, hi = points.min(axis=0) - 2 * spacing, points.max(axis=0) + 2 * spacing
    shape = tuple(int(n) for n in np.ceil((hi - lo) / spacing)[::-1] + 1)
    return Volume(np.ones(shape), Grid(shape, origin=tuple(lo), spacing=(spacing,) * 3))


def run_tps(struct: Path, dose_path: Path | None, table: Path | None) -> None:
    """Print rtforge's volume and mean dose per ROI, each end cap, against the TPS's."""
    ss = read_rtstruct(struct)
    structures = [s for s in ss.structures if any(c.is_closed for c in s.contours)]
    if dose_path is not None:
        dose = read_rtdose(dose_path)
        stored = {d.roi_number: d for d in dose.dvhs}
        if dose.volume is None or not stored:
            raise SystemExit(f"{dose_path}: needs both a dose grid and a DVH Sequence")
        structures = [s for s in structures if s.number in stored]
        truth = {s.name: (stored[s.number].volume_cm3, stored[s.number].mean_gy)
                 for s in structures}
        grid, source = dose.volume, f"the DVH Sequence of {dose_path.name}"
    else:
        volumes = _table_volumes(table or DEFAULT_TPS_TABLE)
        structures = [s for s in structures if s.name.replace(" ", "") in volumes]
        truth = {s.name: (volumes[s.name.replace(" ", "")], None) for s in structures}
        grid, source = _uniform_dose(structures), f"the header of {(table or DEFAULT_TPS_TABLE).name}"
    caps = list(EndCap)
    slab = contour_spacing(ss.structures)  # the structure set's, as `rtforge dvh` takes it
    mine = {cap: compute_dvhs(grid, structures, end_cap=cap, contour_spacing_mm=slab)
            for cap in caps}
    compared = "volume difference (%) and mean dose difference (Gy)" if dose_path else \
        "volume difference (%; no RT Dose of that plan: mean doses not compared)"
    print(f"{struct.name}: {len(structures)} ROIs against {source}; rtforge's {compared} "
          "per end cap")
    print(f"{'ROI':<18}{'TPS cm3':>10}" + "".join(f"{cap.value + ' vol %':>12}" for cap in caps)
          + ("".join(f"{cap.value + ' mean Gy':>14}" for cap in caps) if dose_path else ""))
    worst = {cap: 0.0 for cap in caps}
    for n, s in enumerate(structures):
        volume, mean = truth[s.name]
        line = f"{s.name[:17]:<18}{volume:>10.2f}"
        for cap in caps:
            error = 100 * (mine[cap][n].volume_cm3 / volume - 1)
            worst[cap] = max(worst[cap], abs(error))
            line += f"{error:>+12.2f}"
        if mean is not None:
            line += "".join(f"{mine[cap][n].mean_gy - mean:>+14.3f}" for cap in caps)
        print(line)
    print("largest |volume difference|: " + ", ".join(f"{cap.value} {worst[cap]:.2f} %"
                                                      for cap in caps))


def _median_timing(runs: list[Timing]) -> Timing:
    names = runs[0].per_roi
    together = None if runs[0].together is None else statistics.median(r.compute for r in runs)
    cpu = None if runs[0].cpu is None else statistics.median(r.cpu or 0.0 for r in runs)
    return Timing(statistics.median(r.read for r in runs),
                  {n: statistics.median(r.per_roi[n] for r in runs) for n in names}, together, cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=7,
                        help="rtforge runs (medians reported; default 7)")
    parser.add_argument("--tool-repeat", type=int, default=1,
                        help="runs of each other tool, interleaved with rtforge's (default 1)")
    parser.add_argument("--dicompyler-python", default="auto",
                        help="'auto' (default: a virtual environment under --cache-dir with "
                             "dicompyler-core and pydicom<3, installed on first use), 'none', "
                             "or a Python that has both")
    parser.add_argument("--cache-dir", type=Path, default=DEFAULT_CACHE,
                        help=f"where 'auto' keeps its virtual environment (default {DEFAULT_CACHE})")
    parser.add_argument("--no-plastimatch", action="store_true", help="skip plastimatch dvh")
    parser.add_argument("--keep", type=Path, help="write the case here instead of a temp folder")
    parser.add_argument("--accuracy", action="store_true",
                        help="also score every tool on the analytic cases")
    parser.add_argument("--tps", type=Path, nargs="?", const=DEFAULT_TPS_STRUCT,
                        metavar="STRUCT", help="only compare with a TPS's stored DVHs (module "
                        "notes; default the Eclipse prostate set in tests/data)")
    parser.add_argument("--tps-dose", type=Path, metavar="RTDOSE",
                        help="--tps: an RT Dose with a dose grid and a DVH Sequence")
    parser.add_argument("--tps-table", type=Path, metavar="CSV",
                        help="--tps: an Eclipse DVH table (volumes in its header)")
    args = parser.parse_args()
    numba.set_num_threads(args.threads)
    if args.tps is not None:
        run_tps(args.tps, args.tps_dose, args.tps_table)
        return
    dicompyler = resolve_dicompyler(args.dicompyler_python, args.cache_dir)
    plastimatch = None if args.no_plastimatch else shutil.which("plastimatch")
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        struct, dose = make_case(work)
        folders = single_roi_folders(struct, dose, work) if plastimatch else {}
        time_rtforge(struct, dose)  # warm-up: JIT compilation, file cache
        load = os.getloadavg()
        mine: list[Timing] = []
        others: dict[str, list[Timing]] = {}
        pm_all: list[float] = []
        for r in range(max(args.repeat, args.tool_repeat)):
            if r < args.repeat:
                mine.append(time_rtforge(struct, dose))
            if r >= args.tool_repeat:
                continue
            for extents in (False, True):
                timing = time_dicompyler(dicompyler, struct, dose, extents)
                if timing is not None:
                    label = "dicompyler-core" + (" (extents)" if extents else "")
                    others.setdefault(label, []).append(timing)
            if plastimatch:
                whole = run_plastimatch(struct, dose, work)
                per_roi = run_plastimatch_per_roi(folders, work)
                if whole is not None and per_roi is not None:
                    pm_all.append(whole)
                    # one process per ROI: reading, rasterising and the DVH, not separable
                    others.setdefault("plastimatch (process/ROI)", []).append(Timing(0.0, per_roi))
        load = (load[0], os.getloadavg()[0])
        rows = {"rtforge": _median_timing(mine)}
        rows.update({name: _median_timing(runs) for name, runs in others.items()})
        rtf = rows["rtforge"]
        print(f"{len(rtf.per_roi)} DVHs, a {len(ORGAN_VOLUMES) + 1}-ROI structure set on a "
              f"200x200x150 dose grid; rtforge on {args.threads} Numba threads, medians of "
              f"{len(mine)} runs (others {args.tool_repeat}); load average {load[0]:.2f} before, "
              f"{load[1]:.2f} after")
        if dicompyler is None:
            print("dicompyler-core: not run (no Python with dicompyler-core and pydicom<3; "
                  "see --dicompyler-python)")
        if not plastimatch:
            print("plastimatch: not run (not on PATH or --no-plastimatch)")
        print("all DVHs: rtforge in one compute_dvhs call, the other tools the sum of their ROIs")
        width = 27
        print(f"\n{'seconds':<14}" + "".join(f"{name:>{width}}" for name in rows))
        for roi in rtf.per_roi:
            print(f"{roi:<14}" + "".join(f"{t.per_roi.get(roi, math.nan):>{width}.4f}"
                                         for t in rows.values()))
        print(f"{'sum of ROIs':<14}" + "".join(f"{sum(t.per_roi.values()):>{width}.3f}"
                                              for t in rows.values()))
        print(f"{'all DVHs':<14}" + "".join(f"{t.compute:>{width}.3f}" for t in rows.values()))
        print(f"{'read files':<14}" + "".join(f"{t.read:>{width}.3f}" for t in rows.values()))
        print(f"{'with reading':<14}" + "".join(f"{t.total:>{width}.3f}" for t in rows.values()))
        if pm_all:
            print(f"{'one process':<14}" + "".join(f"{'':>{width}}" for _ in range(len(rows) - 1))
                  + f"{statistics.median(pm_all):>{width}.3f}  (plastimatch dvh, all ROIs)")
        print("\nratios (tool's seconds over rtforge's; above 1: rtforge is faster)")
        fastest = min(mine, key=lambda t: t.compute)
        for name, t in rows.items():
            if name == "rtforge":
                continue
            if name.startswith("plastimatch"):
                whole = statistics.median(pm_all)
                print(f"  plastimatch dvh (each process reads, rasterises and bins): one per ROI "
                      f"{t.compute:.3f} s in all = {t.compute / rtf.total:.1f} x rtforge with "
                      f"reading; one for all ROIs {whole:.3f} s = {whole / rtf.total:.1f} x")
                continue
            print(f"  {name}: DVHs {t.compute / rtf.compute:.1f} x, with reading "
                  f"{t.total / rtf.total:.1f} x")
        met = rtf.compute <= TARGET_COMPUTE_S and rtf.total <= TARGET_TOTAL_S
        print(f"\nrtforge: {rtf.compute:.3f} s for the DVHs (best run {fastest.compute:.3f} s; "
              f"target {TARGET_COMPUTE_S} s), {rtf.total:.3f} s with reading (target "
              f"{TARGET_TOTAL_S} s): {'met' if met else 'NOT met'}; the DVH call used "
              f"{rtf.cpu or 0.0:.3f} CPU seconds over its {args.threads} threads")
        if args.accuracy:
            run_accuracy(work / "accuracy", dicompyler)


if __name__ == "__main__":
    main()
