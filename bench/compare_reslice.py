"""Side-by-side reslice benchmark: rtforge against SimpleITK and scipy, same run.

The case of issue 2: a 512x512x200 int16 CT (0.977 mm pixels, 2.5 mm slices)
whose orientation is rotated 12 degrees about x and 7 about z, resliced
trilinear onto its axis-aligned bounding grid (about 92 Mvoxels).  The content
is synthetic and body-like (air, soft tissue with noise, lungs, spine).

Every tool runs after a warm-up, best of ``--repeat`` interleaved rounds (so
load from other processes hits every tool alike); SimpleITK is limited to
``--threads`` with ``SetGlobalDefaultNumberOfThreads`` and rtforge with
``numba.set_num_threads``.  Prints Mvoxels/s, the ratios, and how far the
outputs are from SimpleITK's.

Usage::

    python bench/compare_reslice.py                 # the issue's case, 2 threads
    python bench/compare_reslice.py --case tilted   # 15 degrees gantry tilt (rtforge only)
    python bench/compare_reslice.py --no-scipy --repeat 5
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import numba
import numpy as np
from scipy.spatial.transform import Rotation

from rtforge.core.geometry import Grid, SliceStack
from rtforge.core.reslice import default_output_grid, reslice


def make_case(size: int = 512, nslices: int = 200, pixel: float = 0.9765625,
              gap: float = 2.5, angles: tuple[float, float] = (12.0, 7.0), tilt: float = 0.0,
              uneven: bool = False, seed: int = 0) -> tuple[np.ndarray, SliceStack]:
    """A body-like int16 CT and its geometry.

    Parameters
    ----------
    size, nslices : int
        Rows (= columns) and slices.
    pixel, gap : float
        Pixel spacing and spacing along the normal, mm.
    angles : tuple of float
        Rotation of the orientation about x, then z, degrees.
    tilt : float
        Gantry tilt, degrees (slices shift along the column direction).
    uneven : bool
        Alternate gaps of ``gap`` and ``1.6 * gap``.
    seed : int
        Seed of the noise.

    Returns
    -------
    array : ndarray of shape (nslices, size, size), dtype int16
    stack : SliceStack
    """
    rot = Rotation.from_euler("xz", angles, degrees=True).as_matrix()
    r, c, n = rot[:, 0], rot[:, 1], rot[:, 2]
    steps = np.where(np.arange(nslices - 1) % 2 == 1, 1.6 * gap, gap) if uneven \
        else np.full(nslices - 1, gap)
    d = np.concatenate([[0.0], np.cumsum(steps)])
    shift = d * np.tan(np.radians(tilt))
    centre = -(size - 1) / 2 * pixel * (r + c) - d[-1] / 2 * n
    positions = centre + d[:, None] * n + shift[:, None] * c
    stack = SliceStack(positions, r, c, (pixel, pixel), size, size)

    y, x = (np.mgrid[0:size, 0:size] - size / 2) * pixel
    body = (x / 200) ** 2 + (y / 140) ** 2 <= 1
    lungs = (((np.abs(x) - 80) / 60) ** 2 + (y / 80) ** 2) <= 1
    spine = (x / 18) ** 2 + ((y - 90) / 18) ** 2 <= 1
    base = np.full((size, size), -1000, np.int16)
    base[body] = 40
    base[lungs] = -800
    base[spine] = 1200
    rng = np.random.default_rng(seed)
    array = np.empty((nslices, size, size), np.int16)
    for k in range(nslices):
        noise = rng.integers(-20, 21, size=(size, size), dtype=np.int16)
        array[k] = base + np.where(body, noise, np.int16(0))
    return array, stack


def interleaved_best(tools: dict[str, Callable[[], np.ndarray]], repeat: int
                     ) -> dict[str, tuple[float, np.ndarray]]:
    """Best wall time of each tool over ``repeat`` rounds, and its result.

    Every tool is warmed up first; each round then runs every tool once, so
    load from other processes hits all of them alike.
    """
    results = {name: fn() for name, fn in tools.items()}
    best = dict.fromkeys(tools, np.inf)
    for _ in range(repeat):
        for name, fn in tools.items():
            t0 = time.perf_counter()
            results[name] = fn()
            best[name] = min(best[name], time.perf_counter() - t0)
    return {name: (best[name], results[name]) for name in tools}


def sitk_resample(array: np.ndarray, stack: SliceStack, grid: Grid,
                  pixel_type: int | None = None) -> np.ndarray:
    """SimpleITK ResampleImageFilter, linear, default -1000, onto ``grid``."""
    import SimpleITK as sitk

    src = stack.to_grid()
    image = sitk.GetImageFromArray(array)
    image.SetOrigin(tuple(src.origin))
    image.SetSpacing(tuple(src.spacing))
    image.SetDirection(tuple(src.direction.ravel()))
    reference = sitk.Image(*grid.shape[::-1], sitk.sitkInt16)
    reference.SetOrigin(tuple(grid.origin))
    reference.SetSpacing(tuple(grid.spacing))
    f = sitk.ResampleImageFilter()
    f.SetReferenceImage(reference)
    f.SetInterpolator(sitk.sitkLinear)
    f.SetDefaultPixelValue(-1000)
    if pixel_type is not None:
        f.SetOutputPixelType(pixel_type)
    return sitk.GetArrayFromImage(f.Execute(image))


def scipy_resample(array: np.ndarray, stack: SliceStack, grid: Grid) -> np.ndarray:
    """scipy.ndimage.affine_transform, order 1, cval -1000, int16 output."""
    from scipy.ndimage import affine_transform

    m = np.linalg.inv(stack.to_grid().affine) @ grid.affine  # (I, J, K, 1) -> (i, j, k, 1)
    return affine_transform(array, m[:3, :3][::-1, ::-1], offset=m[:3, 3][::-1],
                            output_shape=grid.shape, output=np.int16, order=1,
                            mode="constant", cval=-1000.0)


def _round_half_away(x: np.ndarray) -> np.ndarray:
    return np.trunc(x + np.copysign(0.5, x))


def main(argv: list[str] | None = None) -> int:
    """Run the comparison and print one line per tool; returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--case", choices=["oblique", "tilted", "uneven"], default="oblique")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--interp", choices=["linear", "nearest"], default="linear")
    parser.add_argument("--no-scipy", action="store_true", help="skip the slow scipy run")
    args = parser.parse_args(argv)

    array, stack = make_case(tilt=15.0 if args.case == "tilted" else 0.0,
                             uneven=args.case == "uneven")
    grid = default_output_grid(stack)
    mvox = grid.size / 1e6
    numba.set_num_threads(args.threads)
    print(f"case {args.case}: {array.shape[2]}x{array.shape[1]}x{array.shape[0]} int16, "
          f"rotated 12/7 deg{', tilt 15 deg' if args.case == 'tilted' else ''}"
          f"{', uneven gaps' if args.case == 'uneven' else ''} -> grid "
          f"{grid.shape[2]}x{grid.shape[1]}x{grid.shape[0]} ({mvox:.1f} Mvoxels), "
          f"{args.threads} threads, best of {args.repeat}")

    tools: dict[str, Callable[[], np.ndarray]] = {
        "rtforge": lambda: reslice(array, stack, grid, interpolation=args.interp)}
    compare = args.case == "oblique" and args.interp == "linear"
    if compare:
        import SimpleITK as sitk

        sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(args.threads)
        tools["SimpleITK"] = lambda: sitk_resample(array, stack, grid)
    timed = interleaved_best(tools, args.repeat)
    ours_t, ours = timed["rtforge"]
    print(f"rtforge   {args.interp:<8} {ours_t:7.3f} s {mvox / ours_t:8.1f} Mvox/s")
    if not compare:
        return 0

    itk_t, itk = timed["SimpleITK"]
    print(f"SimpleITK linear   {itk_t:7.3f} s {mvox / itk_t:8.1f} Mvox/s  "
          f"(returns {itk.dtype})  ratio {itk_t / ours_t:5.2f}x")
    exact = _round_half_away(sitk_resample(array, stack, grid, sitk.sitkFloat64))
    diff = np.abs(ours.astype(np.float64) - exact)
    own = np.abs(ours.astype(np.int64) - itk)
    print(f"  vs SimpleITK (float64 output, rounded): max |diff| {diff.max():.0f} HU, "
          f"mean {diff.mean():.2e} HU, {np.count_nonzero(diff)} voxels differ")
    print(f"  vs SimpleITK (its own {itk.dtype} output, truncated): max |diff| "
          f"{own.max()} HU, mean {own.mean():.3f} HU")
    if not args.no_scipy:
        sp_t, sp = interleaved_best({"scipy": lambda: scipy_resample(array, stack, grid)},
                                    1)["scipy"]
        inside = (ours != -1000) & (sp != -1000)
        sd = np.abs(ours[inside].astype(np.int64) - sp[inside])
        print(f"scipy affine_transform(order=1) {sp_t:7.3f} s {mvox / sp_t:8.1f} Mvox/s  "
              f"ratio {sp_t / ours_t:5.1f}x  (max |diff| inside both {sd.max()} HU)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
