"""DVHs side by side, in one run: rtforge, dicompyler-core and ``plastimatch dvh`` (issue 4).

The realistic case: a body contour (an ellipse of about 350 x 250 mm with a
gentle wobble, 150 planes at 2.5 mm, 200 points per contour) and ten
organ-sized ellipsoids (1 to 1,800 cm3, contoured on the same planes) in a
2.5 mm dose grid of 200 x 200 x 150 holding a box field with a penumbra on a
low bath.  The structure set and the dose (32-bit) are written as DICOM
files, then every tool computes the eleven DVHs from those files:

- rtforge: :func:`rtforge.core.dvh.compute_dvhs` on ``--threads`` Numba
  threads, timed for compute alone and including reading the two files
  (JIT compilation is warmed up first, outside the timing);
- dicompyler-core (``dvhcalc.get_dvh``, default settings and
  ``use_structure_extents=True``): its last release does not import with
  pydicom 3, so it runs in its own virtual environment (``--dicompyler-python``,
  a Python with ``pydicom<3`` and ``dicompyler-core``) as a subprocess that
  times itself per ROI;
- ``plastimatch dvh`` on the folder holding both files (one process, its
  wall time, which includes reading and rasterising).

Prints seconds per ROI and in total for each tool and the ratios.

``--accuracy`` then writes analytic cases (a sphere of r = 20 mm in a z
gradient and of r = 5 mm in an x gradient, a cylinder along z in a z
gradient, a ring with a hole in an x gradient; 1 and 2.5 mm contour and dose
spacings, dose planes offset from contour planes; circles as 512-gons) and
prints, for each tool, the volume error, the largest cumulative-DVH error
(percent of the ROI volume) and the largest error of D99, D95, D50, D5 and
D1 (from each tool's curve, interpolated linearly; plastimatch reports
fractions of a volume it does not print, so its curve is scaled by the true
volume and its volume error is not measured) against the exact DVH of
the contoured solid, computed here in closed form (half-plane clipping of
each plane's polygons times slab thickness, or areas times the clipped slab
length).

Usage::

    python bench/compare_dvh.py [--threads 2] [--dicompyler-python /tmp/dcvenv/bin/python]
                                [--keep DIR] [--accuracy]
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import numba
import numpy as np
from pydicom import Dataset
from scipy.special import erf

from rtforge.core.contours import Contour, Structure
from rtforge.core.dvh import compute_dvhs
from rtforge.core.geometry import Grid, Volume
from rtforge.io.rtdose import PlanReference, build_dose_grid, read_rtdose, write_rtdose
from rtforge.io.rtstruct import build_rtstruct, read_rtstruct, write_rtstruct
from rtforge.io.uids import new_uid

#: Organ volumes (cm3) of the ten ellipsoids.
ORGAN_VOLUMES = (1, 5, 15, 40, 100, 200, 400, 700, 1200, 1800)

_DICOMPYLER_CURVES = r"""
import json, sys
from dicompylercore import dicomparser, dvhcalc
rtss, rtdose = sys.argv[1], sys.argv[2]
rois = dicomparser.DicomParser(rtss).GetStructures()
out = {}
for number in sorted(rois):
    dvh = dvhcalc.get_dvh(rtss, rtdose, number).cumulative
    out[rois[number]["name"]] = [list(map(float, dvh.bins)), list(map(float, dvh.counts))]
print(json.dumps(out))
"""

_DICOMPYLER = r"""
import json, sys, time
from dicompylercore import dicomparser, dvhcalc
rtss, rtdose, extents = sys.argv[1], sys.argv[2], sys.argv[3] == "1"
rois = dicomparser.DicomParser(rtss).GetStructures()
out = {}
for number in sorted(rois):
    t = time.perf_counter()
    dvh = dvhcalc.get_dvh(rtss, rtdose, number, use_structure_extents=extents)
    out[rois[number]["name"]] = [time.perf_counter() - t, float(dvh.volume)]
print(json.dumps(out))
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


def run_rtforge(struct: Path, dose_path: Path) -> tuple[dict[str, float], float, float]:
    """Per-ROI compute seconds, total compute seconds, total seconds with reading."""
    start = time.perf_counter()
    ss = read_rtstruct(struct)
    dose = read_rtdose(dose_path)
    read = time.perf_counter() - start
    per_roi = {}
    names = [s.name for s in ss.structures]
    last = [time.perf_counter()]

    def tick(done: int, total: int) -> None:
        now = time.perf_counter()
        per_roi[names[done - 1]] = now - last[0]
        last[0] = now

    start = time.perf_counter()
    compute_dvhs(dose.volume, ss.structures, progress=tick)
    compute = time.perf_counter() - start
    return per_roi, compute, compute + read


def run_plastimatch(struct: Path, dose: Path, work: Path) -> float | None:
    """Wall seconds of ``plastimatch dvh`` on a folder holding both files."""
    exe = shutil.which("plastimatch")
    if exe is None:
        return None
    folder = work / "plastimatch_in"
    folder.mkdir(exist_ok=True)
    shutil.copy(struct, folder / "rtss.dcm")
    shutil.copy(dose, folder / "rtdose.dcm")
    start = time.perf_counter()
    proc = subprocess.run([exe, "dvh", "--input", str(folder), "--output-csv",
                           str(work / "plastimatch.csv"), "--bin-width", "0.01",
                           "--num-bins", "7000"], capture_output=True, text=True, check=False)
    elapsed = time.perf_counter() - start
    if proc.returncode != 0:
        print(f"plastimatch dvh failed: {proc.stderr.strip()[-300:]}")
        return None
    return elapsed


def run_dicompyler(python: str | None, struct: Path, dose: Path,
                   extents: bool) -> dict[str, float] | None:
    """Per-ROI seconds of dicompyler-core (its own timing), or None when unavailable."""
    if not python:
        return None
    proc = subprocess.run([python, "-c", _DICOMPYLER, str(struct), str(dose),
                           "1" if extents else "0"], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        print(f"dicompyler-core failed: {proc.stderr.strip()[-300:]}")
        return None
    return {name: values[0] for name, values in json.loads(proc.stdout).items()}


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


def run_accuracy(work: Path, dicompyler_python: str | None) -> None:
    """Print each tool's errors on the analytic cases."""
    print(f"\n{'case':<12}{'tool':<20}{'volume %':>8}{'cum. % of V':>13}{'max dD Gy':>11}")
    for case in _cases():
        struct, dose_path = case.write(work / case.name)
        print(f"{case.name:<12}{'truth':<20}{case.volume:.4f} cm3")
        dose = read_rtdose(dose_path)
        dvh = compute_dvhs(dose.volume, read_rtstruct(struct).structures)[0]
        curves = {"rtforge": (dvh.edges, dvh.cumulative)}
        if dicompyler_python:
            proc = subprocess.run([dicompyler_python, "-c", _DICOMPYLER_CURVES, str(struct),
                                   str(dose_path)], capture_output=True, text=True, check=False)
            if proc.returncode == 0:
                bins, counts = json.loads(proc.stdout)[case.name]
                curves["dicompyler-core"] = (np.array(bins[:len(counts)]), np.array(counts))
        exe = shutil.which("plastimatch")
        if exe:
            out = work / case.name / "plastimatch.csv"
            subprocess.run([exe, "dvh", "--input", str(work / case.name), "--output-csv",
                            str(out), "--bin-width", "0.01", "--num-bins", "10000"],
                           capture_output=True, check=False)
            if out.exists():
                # Fractions of its own (unreported) volume: scaled by the true volume,
                # so its volume error is not measured.
                table = np.loadtxt(out, delimiter=",", skiprows=1)
                curves["plastimatch (shape)"] = (table[:, 0], table[:, 1] * case.volume)
        for tool, (edges, cumulative) in curves.items():
            vol, cum, dd = _scores(case, edges, cumulative)
            shown = "n/a" if tool.startswith("plastimatch") else f"{vol:+.3f}"
            print(f"{'':<12}{tool:<20}{shown:>8}{cum:>13.3f}{dd:>11.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dicompyler-python", default=None,
                        help="a Python with pydicom<3 and dicompyler-core installed")
    parser.add_argument("--keep", type=Path, help="write the case here instead of a temp folder")
    parser.add_argument("--accuracy", action="store_true",
                        help="also score every tool on the analytic cases")
    args = parser.parse_args()
    numba.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        struct, dose = make_case(work)
        run_rtforge(struct, dose)  # warm-up: JIT compilation
        per_roi, compute, total = run_rtforge(struct, dose)
        rows = {"rtforge (compute)": (per_roi, compute)}
        print(f"rtforge, {args.threads} threads: {compute:.3f} s compute for {len(per_roi)} "
              f"DVHs, {total:.3f} s with reading both files")
        for extents in (False, True):
            times = run_dicompyler(args.dicompyler_python, struct, dose, extents)
            if times is not None:
                label = "dicompyler-core" + (" (structure extents)" if extents else "")
                rows[label] = (times, sum(times.values()))
        pm = run_plastimatch(struct, dose, work)
        print(f"\n{'ROI':<14}" + "".join(f"{name:>38}" for name in rows))
        for roi in per_roi:
            print(f"{roi:<14}" + "".join(f"{times.get(roi, float('nan')):>38.4f}"
                                         for times, _ in rows.values()))
        print(f"{'total':<14}" + "".join(f"{t:>38.3f}" for _, t in rows.values()))
        for name, (_, t) in rows.items():
            if name != "rtforge (compute)":
                print(f"{name}: {t:.3f} s = {t / compute:.1f} x rtforge's compute, "
                      f"{t / total:.1f} x rtforge with reading")
        if pm is not None:
            print(f"plastimatch dvh (whole process, all ROIs): {pm:.3f} s = "
                  f"{pm / total:.1f} x rtforge with reading")
        if args.accuracy:
            run_accuracy(work / "accuracy", args.dicompyler_python)


if __name__ == "__main__":
    main()
