"""One side-by-side benchmark report: rtforge and the tools people use today, same run.

Generates every input, runs rtforge and each reference tool on it in this
process (or in child processes for command-line tools) and prints one
markdown table: task, rtforge, reference, the ratio (reference time over
rtforge time: above 1 means rtforge is faster), the bound set by this
machine's memory bandwidth where the task streams memory, and accuracy
where there is a truth or a reference output to compare with.

Each task reuses the helpers of its own script (``compare_reslice.py``,
``compare_pipeline.py``, ``compare_drr.py``, ``compare_dvh.py``,
``compare_contours.py``, ``compare_store.py``), which remain the place for
the detailed, full-size comparison.  A reference tool that is missing, or a
task that fails, still has its row, saying so.

Usage::

    python bench/compare.py            # full-size inputs (minutes)
    python bench/compare.py --quick    # small inputs, under two minutes (CI smoke check)
    python bench/compare.py --dicompyler-python /opt/dcc/bin/python
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import platform
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numba
import numpy as np

# The per-task scripts beside this file; each task imports its own inside, so that a
# reference tool that is not installed costs only its own rows.
sys.path.insert(0, str(Path(__file__).resolve().parent))



@dataclass(frozen=True)
class Size:
    """Input sizes of one mode."""

    reslice: tuple[int, int]  # size, slices
    batch: tuple[int, int, int]  # series, size, slices
    drr: tuple[int, int, int, int]  # volume size, slices, detector size, angles
    contours: tuple[int, int, int]  # contours, points, target points
    store: tuple[int, int]  # slices, size
    repeat: int


QUICK = Size(reslice=(128, 48), batch=(2, 128, 32), drr=(128, 64, 128, 4),
             contours=(40, 2000, 100), store=(20, 128), repeat=2)
#: compare_pipeline.SITK, named here so that its row survives a missing SimpleITK.
SITK_PIPELINE = "pydicom + SimpleITK + pydicom"

FULL = Size(reslice=(512, 200), batch=(4, 512, 200), drr=(512, 200, 512, 36),
            contours=(1000, 20000, 500), store=(200, 512), repeat=3)


@dataclass(frozen=True)
class Row:
    """One line of the table; times in seconds (NaN when not measured)."""

    task: str
    reference: str
    rtforge_s: float = float("nan")
    reference_s: float = float("nan")
    bound: str = ""
    accuracy: str = ""
    note: str = ""

    def markdown(self) -> str:
        def fmt(t: float) -> str:
            return "—" if t != t else (f"{t * 1000:.1f} ms" if t < 1 else f"{t:.2f} s")

        ratio = self.reference_s / self.rtforge_s
        reference = fmt(self.reference_s) if self.reference_s == self.reference_s else self.note
        cells = [self.task, fmt(self.rtforge_s), f"{self.reference}: {reference}",
                 "—" if ratio != ratio else f"{ratio:.2f}x", self.bound or "—",
                 self.accuracy or "—"]
        return "| " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"


def best_of(run: Callable[[], object], repeat: int) -> tuple[float, object]:
    """Best wall time of ``repeat`` runs after one warm-up, and the last result."""
    result = run()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - t0)
    return best, result


def memory_bandwidth(nbytes: int) -> float:
    """Bytes per second of a large NumPy copy (read plus write), best of three."""
    a = np.ones(nbytes // 8)
    b = np.empty_like(a)
    t, _ = best_of(lambda: np.copyto(b, a), 3)
    return 2 * a.nbytes / t


def _bound(nbytes: int, bandwidth: float) -> str:
    return f">= {nbytes / bandwidth * 1000:.1f} ms ({nbytes / 1e6:.0f} MB moved)"


# ----------------------------------------------------------------- tasks
def reslice_rows(size: Size, work: Path, bandwidth: float) -> list[Row]:
    import SimpleITK as sitk

    import compare_reslice
    from rtforge.core.reslice import default_output_grid, reslice

    array, stack = compare_reslice.make_case(size=size.reslice[0], nslices=size.reslice[1])
    grid = default_output_grid(stack)
    task = f"reslice {array.shape[2]}x{array.shape[1]}x{array.shape[0]} oblique, trilinear"
    bound = _bound(array.nbytes + grid.size * 2, bandwidth)
    timed = compare_reslice.interleaved_best(
        {"rtforge": lambda: reslice(array, stack, grid),
         "SimpleITK": lambda: compare_reslice.sitk_resample(array, stack, grid)}, size.repeat)
    ours_t, ours = timed["rtforge"]
    exact = compare_reslice._round_half_away(
        compare_reslice.sitk_resample(array, stack, grid, sitk.sitkFloat64))
    diff = np.abs(ours - exact)
    sp_t, sp = best_of(lambda: compare_reslice.scipy_resample(array, stack, grid), 1)
    inside = (ours != -1000) & (sp != -1000)
    return [Row(task, "SimpleITK", ours_t, timed["SimpleITK"][0], bound,
                f"max |diff| {diff.max():.0f} HU vs SimpleITK float64"),
            Row(task, "scipy affine_transform", ours_t, sp_t, bound,
                f"max |diff| {np.abs(ours[inside].astype(np.int64) - sp[inside]).max()} HU")]


def batch_rows(size: Size, work: Path, bandwidth: float) -> list[Row]:
    import SimpleITK  # noqa: F401 - the reference pipeline needs it: "not installed" otherwise

    import compare_pipeline

    n, side, slices = size.batch
    sources = compare_pipeline._make_sources(work / "src", n, side, slices)
    env = dict(os.environ)
    rtforge = [sys.executable, "-m", "rtforge"]
    compare_pipeline._run(rtforge + ["reslice", str(sources[0]), str(work / "warm"), "-q"], env)
    # The command as a user runs it: default options (durable, --workers auto).
    ours = compare_pipeline._run(rtforge + ["batch", str(work / "src"), str(work / "ours"), "-q"],
                                 env)[0]
    script = work / "sitk_pipeline.py"
    script.write_text(compare_pipeline._SITK_PIPELINE)
    theirs = sum(compare_pipeline._run([sys.executable, str(script), str(src),
                                        str(work / "sitk" / str(i)), "2"], env)[0]
                 for i, src in enumerate(sources))
    return [Row(f"batch {n} series {side}x{side}x{slices} (whole processes, default options)",
                SITK_PIPELINE, ours, theirs)]


def drr_rows(size: Size, work: Path, bandwidth: float) -> list[Row]:
    import compare_drr
    from rtforge.core.beam import BeamGeometry
    from rtforge.core.drr import Attenuation, compute_drr, prepare_volume
    from rtforge.core.geometry import Grid, Volume

    side, slices, det, angles = size.drr
    hu, origin, spacing = compare_drr._phantom(side, slices)
    volume = Volume(hu, Grid(hu.shape, origin=origin, spacing=spacing))
    attenuation = Attenuation(mu_water=0.022, hu_window=(-799, 32767))
    gantry = np.arange(angles) * 360.0 / angles
    geometries = [BeamGeometry((90.0 - a) % 360.0, (0, 0, 0), rows=det, columns=det,
                               pixel_spacing=(1.0, 1.0)) for a in gantry]
    prepared = prepare_volume(volume, attenuation)
    ours_t, ours = best_of(lambda: compute_drr(prepared, geometries, method="siddon"),
                           size.repeat)
    task = f"DRR Siddon, {angles} x {det}x{det} through {side}x{side}x{slices}"
    rows = []
    if shutil.which("plastimatch") is None:
        rows.append(Row(task, "plastimatch drr -i exact", ours_t, note="not installed"))
    else:
        mha = work / "phantom.mha"
        compare_drr._write_mha(mha, hu, origin, spacing)
        render, _, images = compare_drr._plastimatch(mha, work / "exact", "exact", angles, det,
                                                     1.0, numba.get_num_threads())
        corr = min(float(np.corrcoef(a.ravel(), b.ravel())[0, 1])
                   for a, b in zip(ours, images, strict=True))
        rows.append(Row(task, "plastimatch drr -i exact", ours_t, render,
                        accuracy=f"min correlation {corr:.5f}"))
    rows.append(Row("DRR on the GPU (CUDA, volume resident)", "PyTorch grid_sample",
                    note=_gpu_note()))
    return rows


def _gpu_note() -> str:
    try:
        import torch
    except ImportError:
        return "not run: PyTorch not installed"
    if not torch.cuda.is_available():
        return "not run: no CUDA GPU"
    return "run bench/compare_drr.py --gpu for this row"


def dvh_rows(size: Size, work: Path, bandwidth: float, dicompyler_python: str | None) -> list[Row]:
    import compare_dvh
    from rtforge.core.dvh import compute_dvhs
    from rtforge.io.rtdose import read_rtdose
    from rtforge.io.rtstruct import read_rtstruct

    struct, dose = compare_dvh.make_case(work)
    compare_dvh.run_rtforge(struct, dose)  # warm-up: JIT compilation
    _, compute, _ = compare_dvh.run_rtforge(struct, dose)
    errors = []
    for case in compare_dvh._cases():
        c_struct, c_dose = case.write(work / case.name)
        dvh = compute_dvhs(read_rtdose(c_dose).volume, read_rtstruct(c_struct).structures,
                           end_cap="full")[0]  # the analytic truth: full end slabs
        errors.append(compare_dvh._scores(case, dvh.edges, dvh.cumulative))
    accuracy = (f"analytic: max |volume error| {max(abs(e[0]) for e in errors):.2f} %, "
                f"max dD {max(e[2] for e in errors):.3f} Gy")
    task = f"DVH, {len(compare_dvh.ORGAN_VOLUMES) + 1} ROIs on a 200x200x150 dose"
    # dicompyler-core needs pydicom<3: compare_dvh keeps it in its own virtual environment
    python = compare_dvh.resolve_dicompyler(dicompyler_python or "auto")  # "none" skips
    times = compare_dvh.run_dicompyler(python, struct, dose, False)
    if times is None:
        return [Row(task, "dicompyler-core", compute, accuracy=accuracy,
                    note="not run: no Python with dicompyler-core and pydicom<3 "
                         "(--dicompyler-python; without --quick, compare_dvh installs its own)")]
    return [Row(task, "dicompyler-core", compute, sum(times.values()), accuracy=accuracy)]


def contour_rows(size: Size, work: Path, bandwidth: float) -> list[Row]:
    import shapely
    from simplification.cutil import simplify_coords_idx

    import compare_contours
    from rtforge.io.rtstruct import reduce_for_contour_data

    count, points, target = size.contours
    contours = compare_contours.make_contours(count, points)
    rings = [np.ascontiguousarray(np.vstack([c[:, :2], c[:1, :2]])) for c in contours]
    polygons = [shapely.Polygon(r) for r in rings]
    sample = contours[:10]
    tol_dp = compare_contours.calibrate(lambda c, t: len(simplify_coords_idx(
        np.vstack([c[:, :2], c[:1, :2]]), t)) - 1, sample, target, 1e-4, 10.0)
    tol_geos = compare_contours.calibrate(lambda c, t: len(shapely.simplify(shapely.Polygon(
        np.vstack([c[:, :2], c[:1, :2]])), t, preserve_topology=False).exterior.coords) - 1,
        sample, target, 1e-4, 10.0)
    ours_t, (_, report) = best_of(lambda: reduce_for_contour_data(
        contours, max_points=target, method="rdp"), size.repeat)
    ours_h = f"rtforge mean H {report.hausdorff_mm.mean():.3f} mm"
    task = f"contour reduction RDP, {count} x {points} -> {target} points"
    rdp_t, kept = best_of(lambda: [simplify_coords_idx(r, tol_dp) for r in rings], size.repeat)
    rdp_h = compare_contours.hausdorff_of_masks(contours, [
        np.isin(np.arange(len(c)), np.asarray(k[:-1], dtype=np.intp))
        for c, k in zip(contours, kept, strict=True)])
    geos_t, simple = best_of(lambda: shapely.simplify(polygons, tol_geos, preserve_topology=False),
                             size.repeat)
    geos_h = compare_contours.hausdorff_of_masks(contours, [
        compare_contours.keep_mask(c, np.asarray(g.exterior.coords)[:-1])
        for c, g in zip(contours, simple, strict=True)])
    return [Row(task, "simplification (Rust)", ours_t, rdp_t,
                accuracy=f"{ours_h}; ref {rdp_h.mean():.3f} mm"),
            Row(task, "shapely.simplify (GEOS)", ours_t, geos_t,
                accuracy=f"{ours_h}; ref {geos_h.mean():.3f} mm")]


def store_rows(size: Size, work: Path, bandwidth: float) -> list[Row]:
    import compare_store

    slices, side = size.store
    task = f"C-STORE {slices} CT slices {side}x{side} to storescp (loopback)"
    if not (Path(compare_store.STORESCP).exists() and Path(compare_store.STORESCU).exists()):
        return [Row(task, "dcmtk storescu", note="not installed")]
    files = compare_store.make_series(work / "series", slices, side)
    receiver = compare_store.start_storescp(work / "rx")
    try:
        compare_store.wait_ready(receiver.node)
        times: dict[str, list[float]] = {"rtforge": [], "storescu": []}
        senders = {"rtforge": compare_store.send_rtforge, "storescu": compare_store.send_storescu}
        for _ in range(size.repeat):
            for name, send in senders.items():
                compare_store.empty(receiver.folder)
                times[name].append(compare_store.timed(name, lambda s=send: s(files, receiver.node)))
    finally:
        receiver.stop()
    return [Row(task, "dcmtk storescu", min(times["rtforge"]), min(times["storescu"]))]


# ----------------------------------------------------------------- report
def main(argv: list[str] | None = None) -> int:
    """Run every task and print the table; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small inputs (CI smoke check)")
    parser.add_argument("--threads", type=int, default=2, help="Numba threads (default 2)")
    parser.add_argument("--dicompyler-python", default=None,
                        help="a Python with pydicom<3 and dicompyler-core installed")
    args = parser.parse_args(argv)
    size = QUICK if args.quick else FULL
    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    bandwidth = memory_bandwidth(64 << 20 if args.quick else 512 << 20)
    tasks: list[tuple[str, list[str], Callable[[Path], list[Row]]]] = [
        ("reslice", ["SimpleITK", "scipy affine_transform"],
         lambda w: reslice_rows(size, w, bandwidth)),
        ("batch", [SITK_PIPELINE], lambda w: batch_rows(size, w, bandwidth)),
        ("DRR", ["plastimatch drr -i exact", "PyTorch grid_sample"],
         lambda w: drr_rows(size, w, bandwidth)),
        ("DVH", ["dicompyler-core"],
         # --quick never installs dicompyler-core (a CI test runs it): only a given Python
         lambda w: dvh_rows(size, w, bandwidth,
                            args.dicompyler_python or ("none" if args.quick else "auto"))),
        ("contour reduction", ["simplification (Rust)", "shapely.simplify (GEOS)"],
         lambda w: contour_rows(size, w, bandwidth)),
        ("C-STORE", ["dcmtk storescu"], lambda w: store_rows(size, w, bandwidth)),
    ]
    rows: list[Row] = []
    for name, references, run in tasks:
        with tempfile.TemporaryDirectory(prefix=f"rtforge-compare-{name.replace(' ', '-')}-") as tmp:
            t0 = time.perf_counter()
            try:
                rows += run(Path(tmp))
            except ImportError as exc:
                rows += [Row(name, ref, note=f"not installed: {exc.name}") for ref in references]
            except Exception as exc:  # noqa: BLE001 - a failed task keeps its rows
                reason = f"failed: {type(exc).__name__}: {str(exc).splitlines()[0][:80]}"
                rows += [Row(name, ref, note=reason) for ref in references]
            print(f"{name}: {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True)
    print(f"rtforge compare{' --quick' if args.quick else ''}: {platform.node()}, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"{numba.get_num_threads()} Numba threads, memory bandwidth "
          f"{bandwidth / 1e9:.1f} GB/s, {_dt.datetime.now(_dt.timezone.utc):%Y-%m-%d %H:%M} UTC\n")
    print("| task | rtforge | reference | ratio | memory-bandwidth bound | accuracy |")
    print("|---|---|---|---|---|---|")
    for row in rows:
        print(row.markdown())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
