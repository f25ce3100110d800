"""End-to-end CT reconversion, side by side, in one run.

Generates N oblique phantom series (default 4 x 512x512x200, rotated 12 and 7
degrees), then times, whole process and warm JIT cache:

- ``rtforge reslice`` on each series (one process per series, as a user runs it),
- ``rtforge reslice`` over all of them (worker processes by default, and ``--workers 1``),
- ``rtforge batch`` over all of them (``--workers`` auto and 1, and ``--no-fsync``),
- a pydicom read + SimpleITK ResampleImageFilter + pydicom write pipeline (the
  straightforward Python approach; SimpleITK limited to the same thread count),
- ``plastimatch convert`` DICOM to DICOM, when installed.

Before every timed process the file system is synced, so that no run pays for
the write-back of the output of the one before it.  rtforge's modules are
byte-compiled first, as ``pip install`` leaves them: where
``PYTHONDONTWRITEBYTECODE`` is set, an editable install would otherwise compile
them from source in every process (the other tools' modules are compiled).

Prints slices/s (output slices written per second of wall time), the ratios
and the peak resident memory of each rtforge process against one input volume.

Usage::

    python bench/compare_pipeline.py [--series 4] [--size 512] [--slices 200] [--threads 2]
    python bench/compare_pipeline.py --series 1 --slices 120 --repeat 7   # one series (issue 16)
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from rtforge import __file__ as RTFORGE_INIT
from rtforge.core.reslice import default_output_grid
from rtforge.io.series import read_series

SITK = "pydicom + SimpleITK + pydicom"
PLAST = "plastimatch convert (given the axial grid)"


def _make_sources(root: Path, n: int, size: int, slices: int) -> list[Path]:
    from rtforge.core.phantom import oblique_stack, sample_phantom
    from rtforge.io.ct import write_ct_series
    from rtforge.io.uids import new_uid

    folders = []
    for s in range(n):
        stack = oblique_stack(size=size, spacing=358.0 / size, nslices=slices,
                              slice_spacing=160.0 / slices)
        rep = write_ct_series(sample_phantom(stack), stack, root / f"s{s}", derived=False,
                              overrides={"PatientID": f"BENCH{s}", "PatientName": "BENCH^CT",
                                         "StudyInstanceUID": str(new_uid()),
                                         "FrameOfReferenceUID": str(new_uid()),
                                         "SeriesNumber": s + 1})
        folders.append(rep.paths[0].parent)
    return folders


def _run(cmd: list[str], env: dict | None = None) -> tuple[float, int, str]:
    """Wall seconds, peak RSS (kB) of the largest waited-for process of ``cmd``'s tree,
    and its standard output."""
    wrapper = [sys.executable, "-c",
               "import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
               "print('MAXRSS', resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, "
               "file=sys.stderr); sys.exit(r.returncode)"] + cmd
    t0 = time.perf_counter()
    proc = subprocess.run(wrapper, capture_output=True, text=True, env=env)
    dt = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    rss = int(proc.stderr.rsplit("MAXRSS", 1)[1].split()[0])
    return dt, rss, proc.stdout


_SITK_PIPELINE = r'''
import sys, time
from pathlib import Path
import numpy as np, pydicom, SimpleITK as sitk
from pydicom.uid import generate_uid
threads = int(sys.argv[3])
sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(threads)
src, out = Path(sys.argv[1]), Path(sys.argv[2])
dss = [pydicom.dcmread(p) for p in sorted(src.glob("*.dcm"))]
iop = np.array(dss[0].ImageOrientationPatient, float)
r, c = iop[:3], iop[3:]
n = np.cross(r, c)
dss.sort(key=lambda d: float(np.dot(n, np.array(d.ImagePositionPatient, float))))
vol = np.stack([d.pixel_array.astype(np.int16) * int(d.RescaleSlope) + int(d.RescaleIntercept)
                for d in dss]).astype(np.int16)
img = sitk.GetImageFromArray(vol)
ps = [float(v) for v in dss[0].PixelSpacing]
p0 = np.array(dss[0].ImagePositionPatient, float); p1 = np.array(dss[-1].ImagePositionPatient, float)
dz = float(np.linalg.norm(p1 - p0)) / (len(dss) - 1)
img.SetSpacing((ps[1], ps[0], dz)); img.SetOrigin(tuple(p0))
img.SetDirection(tuple(np.column_stack([r, c, n]).ravel()))
nk, nj, ni = vol.shape
corners = [p0 + i * ps[1] * r + j * ps[0] * c + k * dz * n
           for i in (0, ni - 1) for j in (0, nj - 1) for k in (0, nk - 1)]
lo, hi = np.min(corners, 0), np.max(corners, 0)
sp = np.array([ps[1], ps[0], dz])
size = [int(v) for v in np.ceil((hi - lo) / sp - 1e-6).astype(int) + 1]
f = sitk.ResampleImageFilter()
f.SetOutputOrigin(tuple(lo)); f.SetOutputSpacing(tuple(sp)); f.SetSize(size)
f.SetOutputDirection((1, 0, 0, 0, 1, 0, 0, 0, 1)); f.SetInterpolator(sitk.sitkLinear)
f.SetDefaultPixelValue(-1000); f.SetOutputPixelType(sitk.sitkInt16)
res = sitk.GetArrayFromImage(f.Execute(img))
out.mkdir(parents=True, exist_ok=True)
series = generate_uid()
for k in range(res.shape[0]):
    ds = dss[0].copy()
    ds.SOPInstanceUID = generate_uid(); ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    ds.SeriesInstanceUID = series; ds.InstanceNumber = k + 1
    ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
    ds.ImagePositionPatient = [float(lo[0]), float(lo[1]), float(lo[2] + k * dz)]
    ds.Rows, ds.Columns = res.shape[1], res.shape[2]
    ds.PixelRepresentation = 0; ds.RescaleIntercept = -1024; ds.RescaleSlope = 1
    ds.PixelData = (np.clip(res[k].astype(np.int32) + 1024, 0, 65535)).astype(np.uint16).tobytes()
    ds.save_as(out / f"{ds.SOPInstanceUID}.dcm", enforce_file_format=True)
print(res.shape[0])
'''


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--series", type=int, default=4)
    ap.add_argument("--size", type=int, default=512)
    ap.add_argument("--slices", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=3, help="round-robin rounds (median)")
    ap.add_argument("--keep", type=Path, help="work folder to keep (default: a temporary one)")
    args = ap.parse_args()
    work = args.keep or Path(tempfile.mkdtemp(prefix="rtforge-bench-"))
    env = dict(os.environ, NUMBA_NUM_THREADS=str(args.threads))
    rtforge = [sys.executable, "-m", "rtforge"]
    print(f"generating {args.series} series of {args.size}x{args.size}x{args.slices} in {work} ...",
          flush=True)
    sources = _make_sources(work / "src", args.series, args.size, args.slices)
    volume_mb = args.size * args.size * args.slices * 2 / 1e6

    subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(RTFORGE_INIT).parent)],
                   check=True, stdout=subprocess.DEVNULL)
    # Warm the JIT cache on a small series so no run below pays compilation.
    _run(rtforge + ["reslice", str(sources[0]), str(work / "warm"), "-q"], env)
    shutil.rmtree(work / "warm")
    # What a worker holds before it reads a series: Python, rtforge, the kernels loaded.
    base_rss = _run([sys.executable, "-c", "import rtforge.workflows._worker_preload"], env)[1]

    script = work / "sitk_pipeline.py"
    script.write_text(_SITK_PIPELINE)
    plast = shutil.which("plastimatch")
    plast_geometry = []
    for src in sources:
        # Without an output geometry plastimatch keeps the oblique orientation and does
        # not resample at all; give it our axial grid so that it does the same job.
        grid = default_output_grid(read_series(src).stack)
        plast_geometry.append(["--origin", " ".join(f"{v:.4f}" for v in grid.origin),
                               "--spacing", " ".join(f"{v:.6f}" for v in grid.spacing),
                               "--dim", " ".join(str(n) for n in grid.shape[::-1]),
                               "--direction-cosines", "1 0 0 0 1 0 0 0 1"])

    def per_series(name: str, make_cmd) -> tuple[float, int, int]:
        total, rss_max, slices = 0.0, 0, 0
        for i, src in enumerate(sources):
            dest = work / "out" / name.replace(" ", "_") / str(i)
            os.sync()
            dt, rss, _ = _run(make_cmd(i, src, dest), env)
            total += dt
            rss_max = max(rss_max, rss)
            slices += sum(1 for _ in dest.rglob("*.dcm"))
        return total, slices, rss_max

    def whole(name: str, command: str, cmd_tail: list[str]) -> tuple[float, int, int]:
        dest = work / "out" / name.replace(" ", "_")
        dt, rss, _ = _run(rtforge + [command, str(work / "src"), str(dest), "-q"] + cmd_tail, env)
        if "1" not in cmd_tail:  # several series: worker processes
            # The workers fork from a server and are not this process' children; their own
            # ru_maxrss leaves out the pages they share with it.  Per worker, a series costs
            # what it costs in the --workers 1 row (the same work in one process).
            rss = -1
        return dt, sum(1 for _ in dest.rglob("*.dcm")), rss

    pipelines = {
        "rtforge reslice, one process per series": lambda: per_series(
            "reslice", lambda i, src, dest: rtforge + ["reslice", str(src), str(dest), "-q"]),
        f"rtforge reslice of the {args.series} series (default --workers auto)": lambda: whole(
            "reslice_all", "reslice", []),
        f"rtforge reslice --workers 1, the {args.series} series in one process": lambda: whole(
            "reslice_all1", "reslice", ["--workers", "1"]),
        "rtforge batch (default --workers auto)": lambda: whole("batch_auto", "batch", []),
        "rtforge batch --workers 1": lambda: whole("batch1", "batch", ["--workers", "1"]),
        "rtforge batch --no-fsync": lambda: whole("batch_nofsync", "batch", ["--no-fsync"]),
    }
    pipelines[SITK] = lambda: per_series(
        "sitk", lambda i, src, dest: [sys.executable, str(script), str(src), str(dest),
                                      str(args.threads)])
    if plast:
        pipelines[PLAST] = lambda: per_series(
            "plast", lambda i, src, dest: [plast, "convert", "--input", str(src),
                                           "--output-dicom", str(dest)] + plast_geometry[i])
    samples: dict[str, list[tuple[float, int, int]]] = {name: [] for name in pipelines}
    for r in range(args.repeat):
        print(f"round {r + 1}/{args.repeat} ...", flush=True)
        # Round robin, in a shuffled order each round: load hits every tool alike, and no
        # tool always runs after the same one (whose leftovers, such as write-back it
        # started, would fall on it).
        for name, fn in random.Random(r).sample(list(pipelines.items()), len(pipelines)):
            shutil.rmtree(work / "out", ignore_errors=True)
            os.sync()  # no run pays for the write-back of the one before it
            samples[name].append(fn())
    rows = []
    for name, runs in samples.items():
        times = [t for t, _, _ in runs]
        rows.append((name, float(np.median(times)), runs[0][1], max(m for _, _, m in runs)))
    if not plast:
        rows.append((PLAST, float("nan"), 0, 0))

    ref = {name: n / t for name, t, n, _ in rows if t == t and t > 0}
    sitk_rate = ref.get(SITK, np.nan)
    plast_rate = ref.get(PLAST, np.nan)
    print(f"\n{args.series} series of {args.size}x{args.size}x{args.slices} int16 "
          f"({volume_mb:.0f} MB each), {args.threads} threads, whole processes, warm JIT cache, "
          f"median of {args.repeat} round-robin rounds in shuffled order")
    print(f"baseline RSS (python, rtforge imported, kernels loaded): {base_rss / 1024:.0f} MB\n")
    print("| pipeline | seconds | output slices | slices/s | vs SimpleITK pipeline | "
          "vs plastimatch | peak RSS MB | (RSS - baseline) / volume |")
    print("|---|---|---|---|---|---|---|---|")
    for name, t, n, rss in rows:
        if t != t:
            print(f"| {name} | not installed | | | | | | |")
            continue
        rate = n / t
        memory = (f"{rss / 1024:.0f} | {(rss - base_rss) / 1024 / volume_mb:.2f}" if rss >= 0
                  else "parent only | per worker: as --workers 1")
        vs_plast = f"{rate / plast_rate:.2f}x" if plast_rate == plast_rate else "—"
        print(f"| {name} | {t:.2f} | {n} | {rate:.0f} | {rate / sitk_rate:.2f}x | "
              f"{vs_plast} | {memory} |")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
