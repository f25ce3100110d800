"""DRRs side by side with ``plastimatch drr``, in one run, on one volume and geometry.

Builds the phantom CT at 512x512x200 (0.7 x 0.7 x 1.0 mm, the body 300 x 200 x
160 mm in a 358 x 358 x 200 mm volume), then renders 512x512 DRRs (1.0 mm
pixels at SID 1500, SAD 1000, isocentre at the origin) at 36 gantry angles:

- rtforge ``compute_drr`` with ``siddon`` and ``trilinear``, all angles in one
  call, the time including the HU to μ conversion and the occupancy grid;
- ``plastimatch drr`` with its matching algorithms, ``-i exact`` and
  ``-i uniform``, the same angles in one process, timed by the wall clock of
  the whole process minus the I/O time it reports (its volume load and image
  writes), so both sides count rendering only.

Both use plastimatch's conventions so that the images agree: μ = 0.022/mm ·
(1 + HU/1000) with -800 HU and below as air (rtforge: ``mu_water=0.022``,
``hu_window=(-799, 32767)``), and plastimatch's output is 0.1 ∫μ dl.
plastimatch's angle ``a`` (``-a 36 -N 10``: 0, 10, ... 350 degrees; its single
``-y`` angle is read in radians by this build, so it is not used) is the IEC
gantry angle ``90 - a`` for HFS; its ``-r`` and ``-z`` take the column first.
Its GPU switches do nothing useful in the Debian build, so ``-A`` is never
passed.

Prints ms per DRR (wall clock, median of the repeats, and the CPU time of all
threads, which a machine shared with other work disturbs less), the ratios,
and the correlation (and the scale) of the two images at every angle.
Threads: both sides get ``--threads`` (OMP_NUM_THREADS for plastimatch,
numba.set_num_threads for rtforge).

``--gpu`` compares on an NVIDIA GPU instead (no plastimatch, no DICOM): 360
DRRs of the same CT, volume resident, rtforge ``device="cuda"`` (both methods,
all angles in one call, the time including the copy of the images to the host)
against the PyTorch ``grid_sample`` ray marcher of ``shared/gpu/
torch_grid_sample_drr.py`` (DiffDRR's approach) with 512 samples per ray, run
as that file defines it, on the same μ volume (0.02/mm water, its spacing
convention: a 512x512x200 volume of 0.98 x 0.98 x 2.5 mm voxels, 0.8 mm
pixels); its rows run toward the head, so its images are flipped before the
correlation.  Targets: at most 1 ms per DRR and at least 5x the baseline.

Usage::

    python bench/compare_drr.py [--threads 2] [--angles 36] [--repeat 3] [--plastimatch-repeat 1]
    python bench/compare_drr.py --gpu [--angles 360] [--baseline PATH]
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def _phantom(size: int = 512, nslices: int = 200
             ) -> tuple[np.ndarray, tuple[float, float, float], tuple[float, float, float]]:
    """The axial phantom (358 mm field of view, 1 mm slices): HU, origin and spacing."""
    from rtforge.core.phantom import axial_stack, sample_phantom

    stack = axial_stack(size=size, spacing=358.0 / size, nslices=nslices, slice_spacing=1.0)
    origin = tuple(float(v) for v in stack.positions[0])
    return sample_phantom(stack), origin, (358.0 / size, 358.0 / size, 1.0)  # type: ignore[return-value]


def _write_mha(path: Path, hu: np.ndarray, origin: tuple[float, ...],
               spacing: tuple[float, ...]) -> None:
    nk, nj, ni = hu.shape
    header = "\n".join([
        "ObjectType = Image", "NDims = 3", "BinaryData = True",
        "BinaryDataByteOrderMSB = False", "CompressedData = False",
        "TransformMatrix = 1 0 0 0 1 0 0 0 1",
        f"Offset = {origin[0]!r} {origin[1]!r} {origin[2]!r}", "CenterOfRotation = 0 0 0",
        "AnatomicalOrientation = RAI",
        f"ElementSpacing = {spacing[0]!r} {spacing[1]!r} {spacing[2]!r}",
        f"DimSize = {ni} {nj} {nk}", "ElementType = MET_SHORT", "ElementDataFile = LOCAL", ""])
    with open(path, "wb") as f:
        f.write(header.encode("ascii"))
        f.write(hu.astype("<i2").tobytes())


def _read_pfm(path: Path) -> np.ndarray:
    with open(path, "rb") as f:
        f.readline()
        width, height = (int(v) for v in f.readline().split())
        scale = float(f.readline())
        data = np.frombuffer(f.read(), dtype="<f4" if scale < 0 else ">f4")
    return data.reshape(height, width)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _plastimatch(mha: Path, out: Path, algorithm: str, angles: int, size: int, pixel: float,
                 threads: int) -> tuple[float, float, list[np.ndarray]]:
    """Seconds of rendering (wall minus reported I/O), CPU seconds of the whole
    process (I/O included), and the images."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = ["plastimatch", "drr", "-i", algorithm, "-t", "pfm", "-r", f"{size} {size}",
           "-z", f"{size * pixel} {size * pixel}", "-o", "0 0 0", "--sad", "1000",
           "--sid", "1500", "-a", str(angles), "-N", f"{360.0 / angles}", "-O",
           str(out / "drr_"), str(mha)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    cpu = _children_cpu()
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - start
    cpu = _children_cpu() - cpu
    if proc.returncode != 0:
        raise SystemExit(f"plastimatch failed: {' '.join(cmd)}\n{proc.stderr[-2000:]}")
    io = sum(float(m) for m in re.findall(r"I/O time:\s*([0-9.eE+-]+)", proc.stdout))
    images = [_read_pfm(out / f"drr_{n:04d}.pfm") for n in range(angles)]
    return wall - io, cpu, images


_BASELINE = Path(__file__).resolve().parents[2] / "shared" / "gpu" / "torch_grid_sample_drr.py"


def _gpu(args: argparse.Namespace) -> None:
    """rtforge on the GPU against the torch grid_sample baseline (see the module docstring)."""
    import importlib.util

    from rtforge.core import drr_cuda
    from rtforge.core.beam import BeamGeometry
    from rtforge.core.drr import Attenuation, compute_drr, prepare_volume
    from rtforge.core.geometry import Grid, Volume
    from rtforge.core.phantom import axial_stack, sample_phantom

    if not drr_cuda.available():
        raise SystemExit("numba.cuda finds no GPU")
    try:
        import torch
    except ImportError:
        raise SystemExit("the baseline needs PyTorch with CUDA") from None
    spec = importlib.util.spec_from_file_location("torch_grid_sample_drr", args.baseline)
    if spec is None or spec.loader is None:
        raise SystemExit(f"cannot load the baseline {args.baseline}")
    baseline = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(baseline)
    # The baseline's volume: 512 x 512 x 200 voxels of 0.98 x 0.98 x 2.5 mm, centred.
    spacing = (0.98, 0.98, 2.5)
    stack = axial_stack(size=512, spacing=spacing[0], nslices=200, slice_spacing=spacing[2])
    hu = sample_phantom(stack)
    volume = Volume(hu, Grid(hu.shape, origin=stack.positions[0], spacing=spacing))
    attenuation = Attenuation(mu_water=0.02)
    prepared = prepare_volume(volume, attenuation)
    mu = torch.from_numpy(np.array(prepared.mu)).cuda()
    gantry = np.arange(args.angles) * 360.0 / args.angles
    geos = [BeamGeometry(g, (0, 0, 0), rows=512, columns=512, pixel_spacing=(0.8, 0.8))
            for g in gantry]
    print(f"{torch.cuda.get_device_name(0)}; {args.angles} DRRs of 512x512 from a 512x512x200 "
          "volume resident on the GPU")
    # Baseline, as its file runs it: warm-up, then CUDA events around the loop.
    for _ in range(3):
        baseline.drr(mu, 0.0, 512)
    torch.cuda.synchronize()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    theirs = [baseline.drr(mu, float(g), 512) for g in gantry]
    end.record()
    torch.cuda.synchronize()
    theirs_ms = start.elapsed_time(end) / args.angles
    print(f"torch grid_sample, 512 samples/ray: {theirs_ms:7.3f} ms/DRR")
    for method, step in (("trilinear", None), ("trilinear", 800.0 / 512), ("siddon", None)):
        compute_drr(prepared, geos[:2], method=method, step_mm=step, device="cuda")  # compile
        times = []
        for _ in range(max(1, args.repeat)):
            t0 = time.perf_counter()
            ours = compute_drr(prepared, geos, method=method, step_mm=step, device="cuda")
            times.append(time.perf_counter() - t0)
        ours_ms = float(np.median(times)) / args.angles * 1000
        corr = [float(np.corrcoef(o.ravel(), t.flip(0).float().cpu().numpy().ravel())[0, 1])
                for o, t in zip(ours[::max(1, args.angles // 12)],
                                theirs[::max(1, args.angles // 12)], strict=True)]
        label = method if step is None else f"{method} step {step:.3g} mm"
        print(f"rtforge cuda {label:28s} {ours_ms:7.3f} ms/DRR   {theirs_ms / ours_ms:6.2f}x the "
              f"baseline   target <= 1 ms: {'met' if ours_ms <= 1.0 else 'NOT met'}, >= 5x: "
              f"{'met' if theirs_ms / ours_ms >= 5 else 'NOT met'}   correlation min "
              f"{min(corr):.4f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--angles", type=int, default=None,
                        help="number of gantry angles (36 on the CPU, 360 with --gpu)")
    parser.add_argument("--repeat", type=int, default=3, help="rtforge repeats (median)")
    parser.add_argument("--plastimatch-repeat", type=int, default=1,
                        help="plastimatch repeats (median)")
    parser.add_argument("--skip-uniform", action="store_true",
                        help="skip plastimatch -i uniform (slow: about 3.5 s per DRR)")
    parser.add_argument("--gpu", action="store_true",
                        help="compare on the GPU against the torch grid_sample baseline")
    parser.add_argument("--baseline", type=Path, default=_BASELINE,
                        help="the torch baseline file (default ../shared/gpu/...)")
    args = parser.parse_args()
    if args.gpu:
        args.angles = args.angles or 360
        _gpu(args)
        return
    args.angles = args.angles or 36
    if shutil.which("plastimatch") is None:
        raise SystemExit("plastimatch is not installed")

    import numba

    from rtforge.core.beam import BeamGeometry
    from rtforge.core.drr import Attenuation, DrrMethod, compute_drr, prepare_volume
    from rtforge.core.geometry import Grid, Volume

    numba.set_num_threads(args.threads)
    size, pixel = 512, 1.0
    t0 = time.perf_counter()
    hu, origin, spacing = _phantom()
    print(f"phantom {hu.shape[2]}x{hu.shape[1]}x{hu.shape[0]} in {time.perf_counter() - t0:.1f} s; "
          f"{args.angles} DRRs of {size}x{size}, {pixel} mm pixels, {args.threads} threads")
    volume = Volume(hu, Grid(hu.shape, origin=origin, spacing=spacing))
    attenuation = Attenuation(mu_water=0.022, hu_window=(-799, 32767))
    plasti_angles = np.arange(args.angles) * 360.0 / args.angles
    geometries = [BeamGeometry((90.0 - a) % 360.0, (0, 0, 0), rows=size, columns=size,
                               pixel_spacing=(pixel, pixel)) for a in plasti_angles]
    # Warm-up: compile (or load the cached kernels) outside the timing.
    small = [BeamGeometry(0, (0, 0, 0), rows=8, columns=8, pixel_spacing=(40, 40))]
    for method in ("siddon", "trilinear"):
        compute_drr(prepare_volume(volume, attenuation), small, method=method)

    with tempfile.TemporaryDirectory(prefix="rtforge-drr-bench-") as tmp:
        mha = Path(tmp) / "phantom.mha"
        _write_mha(mha, hu, origin, spacing)
        for method, algorithm in (("siddon", "exact"), ("trilinear", "uniform")):
            walls, cpus = [], []
            for _ in range(max(1, args.repeat)):
                cpu = time.process_time()
                start = time.perf_counter()
                ours = compute_drr(volume, geometries, method=method, attenuation=attenuation)
                walls.append(time.perf_counter() - start)
                cpus.append(time.process_time() - cpu)
            ours_ms = float(np.median(walls)) / args.angles * 1000
            ours_cpu = float(np.median(cpus)) / args.angles * 1000
            if algorithm == "uniform" and args.skip_uniform:
                print(f"rtforge {method:9s} {ours_ms:8.1f} ms/DRR (cpu {ours_cpu:.1f})  "
                      "(plastimatch -i uniform skipped)")
                continue
            runs = [_plastimatch(mha, Path(tmp) / algorithm, algorithm, args.angles, size, pixel,
                                 args.threads)
                    for _ in range(max(1, args.plastimatch_repeat))]
            theirs_ms = float(np.median([r[0] for r in runs])) / args.angles * 1000
            theirs_cpu = float(np.median([r[1] for r in runs])) / args.angles * 1000
            theirs = runs[-1][2]
            corr = [float(np.corrcoef(a.ravel(), b.ravel())[0, 1]) for a, b in zip(ours, theirs,
                                                                                     strict=True)]
            scale = [float(a.sum() / b.sum()) for a, b in zip(ours, theirs, strict=True)]
            print(f"rtforge {method:9s} {ours_ms:7.1f} ms/DRR (cpu {ours_cpu:6.1f})   "
                  f"plastimatch -i {algorithm:7s} {theirs_ms:7.1f} ms/DRR (cpu {theirs_cpu:6.1f}) "
                  f"  ratio {theirs_ms / ours_ms:5.2f}x (cpu {theirs_cpu / ours_cpu:5.2f}x)   "
                  f"correlation min {min(corr):.6f} mean {np.mean(corr):.6f}   sum ratio "
                  f"{np.median(scale):.4f} (plastimatch writes 0.1 ∫μ)", flush=True)
    prep = []
    for _ in range(3):
        start = time.perf_counter()
        prepare_volume(volume, attenuation).skip_map(DrrMethod.SIDDON)
        prep.append(time.perf_counter() - start)
    print(f"(rtforge times include HU to mu and the occupancy grid, "
          f"{np.median(prep) * 1000:.0f} ms once per call)")
    print(f"python {sys.version.split()[0]}, numba {numba.__version__}, "
          f"threading layer {numba.threading_layer()}")


if __name__ == "__main__":
    main()
