"""DRR ray casting: closed forms, a scalar Siddon reference, 16-bit mapping, bad input.

Truth comes from outside the code under test: chord lengths of boxes and
spheres in closed form, and a slow scalar Siddon (1985, all crossings merged)
that works in patient coordinates.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import numpy as np
import pytest

from rtforge.core.beam import BeamGeometry
from rtforge.core.drr import (
    Attenuation,
    DrrMethod,
    PixelMapping,
    central_axis_ssd,
    compute_drr,
    prepare_volume,
    quantize,
    water_attenuation,
)
from rtforge.core.geometry import Grid, Volume
from rtforge.errors import GeometryError, InvalidInputError

MU_W = 0.02  # 1/mm: mu_water of these tests; HU 0 is mu_w, HU 1000 is 2 mu_w
ATT = Attenuation(mu_water=MU_W)


# ------------------------------------------------------------------ helpers
def chord_through_box(source: np.ndarray, target: np.ndarray, lo: np.ndarray,
                      hi: np.ndarray) -> float:
    """Length (mm) of the line source -> beyond inside the axis-aligned box [lo, hi]."""
    d = target - source
    t0, t1 = 0.0, math.inf
    for a in range(3):
        if d[a] == 0:
            if not lo[a] <= source[a] <= hi[a]:
                return 0.0
            continue
        ta, tb = (lo[a] - source[a]) / d[a], (hi[a] - source[a]) / d[a]
        t0, t1 = max(t0, min(ta, tb)), min(t1, max(ta, tb))
    return max(t1 - t0, 0.0) * float(np.linalg.norm(d))


def chord_through_sphere(source: np.ndarray, target: np.ndarray, centre: np.ndarray,
                         radius: float) -> float:
    """Length (mm) of the line through a sphere (the source is outside it)."""
    u = (target - source) / np.linalg.norm(target - source)
    w = centre - source
    b2 = float(w @ w - (w @ u) ** 2)
    return 2.0 * math.sqrt(radius * radius - b2) if b2 < radius * radius else 0.0


def siddon_reference(mu: np.ndarray, grid: Grid, source: np.ndarray, target: np.ndarray) -> float:
    """Scalar Siddon (1985): every plane crossing of the line, merged and sorted.

    Works on patient points mapped to index coordinates; lengths in mm come
    from the patient-space distance between consecutive crossings.
    """
    s = grid.patient_to_index(source)
    e = grid.patient_to_index(target)
    d = e - s
    nk, nj, ni = mu.shape
    n = (ni, nj, nk)
    alphas = [0.0]
    for a in range(3):
        if d[a] != 0:
            planes = np.arange(n[a] + 1) - 0.5
            alphas.extend(((planes - s[a]) / d[a]).tolist())
    alphas = sorted(x for x in set(alphas) if x >= 0)
    total = 0.0
    length = float(np.linalg.norm(target - source))
    for a0, a1 in zip(alphas[:-1], alphas[1:], strict=True):
        mid = s + 0.5 * (a0 + a1) * d
        i, j, k = (int(math.floor(m + 0.5)) for m in mid)
        if 0 <= i < ni and 0 <= j < nj and 0 <= k < nk:
            total += float(mu[k, j, i]) * (a1 - a0) * length
    return total


def box_volume(shape: tuple[int, int, int], spacing: tuple[float, float, float],
               box: tuple[slice, slice, slice], hu: int = 0) -> Volume:
    """Air with a uniform box of whole voxels; grid centred on the origin."""
    arr = np.full(shape, -1000, dtype=np.int16)
    arr[box] = hu
    sp = np.array(spacing)
    origin = -(np.array(shape[::-1]) - 1) / 2.0 * sp
    return Volume(arr, Grid(shape, origin=origin, spacing=sp))


def box_bounds(volume: Volume, box: tuple[slice, slice, slice]) -> tuple[np.ndarray, np.ndarray]:
    """Patient-space faces of a box of whole voxels (axis-aligned grid)."""
    idx_lo = np.array([box[2].start, box[1].start, box[0].start], dtype=float) - 0.5
    idx_hi = np.array([box[2].stop, box[1].stop, box[0].stop], dtype=float) - 0.5
    return volume.grid.index_to_patient(idx_lo), volume.grid.index_to_patient(idx_hi)


def pixels(geometry: BeamGeometry) -> np.ndarray:
    return geometry.pixel_positions()


# ------------------------------------------------------------- closed forms
BOX_SHAPE = (24, 30, 28)
BOX_SPACING = (2.0, 1.5, 2.5)
BOX = (slice(5, 19), slice(8, 23), slice(6, 20))
ANGLES = [(0, 0), (30, 0), (90, 0), (215, 0), (0, 90), (60, 45), (300, 330)]


@pytest.mark.parametrize(("gantry", "couch"), ANGLES)
def test_siddon_box_is_exact(gantry: float, couch: float) -> None:
    vol = box_volume(BOX_SHAPE, BOX_SPACING, BOX)
    geo = BeamGeometry(gantry, (3.0, -2.0, 4.0), couch_angle=couch, collimator_angle=17,
                       rows=12, columns=14, pixel_spacing=(6.0, 7.0), sad=400, sid=700)
    out = compute_drr(vol, geo, attenuation=ATT)[0]
    lo, hi = box_bounds(vol, BOX)
    truth = np.array([[chord_through_box(geo.source, p, lo, hi) for p in row]
                      for row in pixels(geo)]) * MU_W
    assert out.dtype == np.float32
    assert truth.max() > 0.3  # the rays do cross the box
    np.testing.assert_allclose(out, truth, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize(("gantry", "couch"), ANGLES)
def test_trilinear_box_within_tolerance(gantry: float, couch: float) -> None:
    """Trilinear blurs each face over one voxel; along the chord this preserves the
    integral, so rays that cross two opposite faces (not the edges) stay within
    2 % of the chord plus 0.6 voxel of mu."""
    vol = box_volume(BOX_SHAPE, BOX_SPACING, BOX)
    geo = BeamGeometry(gantry, (3.0, -2.0, 4.0), couch_angle=couch, rows=12, columns=14,
                       pixel_spacing=(6.0, 7.0), sad=400, sid=700)
    out = compute_drr(vol, geo, method="trilinear", attenuation=ATT, step_mm=0.5)[0]
    lo, hi = box_bounds(vol, BOX)
    inner_lo, inner_hi = lo + 3.0, hi - 3.0  # rays well inside the box's silhouette
    outer_lo, outer_hi = lo - max(BOX_SPACING), hi + max(BOX_SPACING)
    truth = np.zeros(out.shape)
    interior = np.zeros(out.shape, dtype=bool)
    far = np.zeros(out.shape, dtype=bool)
    for (r, c), q in zip(np.ndindex(out.shape), pixels(geo).reshape(-1, 3), strict=True):
        truth[r, c] = chord_through_box(geo.source, q, lo, hi) * MU_W
        interior[r, c] = chord_through_box(geo.source, q, inner_lo, inner_hi) > 0
        far[r, c] = chord_through_box(geo.source, q, outer_lo, outer_hi) == 0
    assert interior.sum() >= 10 and far.sum() >= 10
    tol = 0.02 * truth + 0.6 * max(BOX_SPACING) * MU_W
    assert np.all(np.abs(out - truth)[interior] <= tol[interior])
    # More than a voxel outside the box's silhouette nothing is interpolated.
    assert np.all(out[far] == 0)


SPHERE_R = 14.0


@pytest.mark.parametrize("method", ["siddon", "trilinear"])
@pytest.mark.parametrize(("gantry", "couch"), [(0, 0), (45, 0), (120, 90), (270, 20)])
def test_sphere_line_integrals(method: str, gantry: float, couch: float) -> None:
    """A sphere of radius 14 mm sampled on a 1 mm grid (voxel centres): the
    voxelised surface moves a chord by at most about a voxel at each end, so
    rays through the inner 80 % of the radius are within 2 voxels of mu."""
    n = 36
    shape = (n, n, n)
    centre = np.array([1.2, -0.7, 0.4])
    grid = Grid(shape, origin=np.full(3, -(n - 1) / 2.0), spacing=(1.0, 1.0, 1.0))
    k, j, i = np.indices(shape)
    pts = grid.index_to_patient(np.stack([i, j, k], axis=-1))
    inside = np.sum((pts - centre) ** 2, axis=-1) <= SPHERE_R ** 2
    arr = np.where(inside, 1000, -1000).astype(np.int16)  # mu = 2 mu_w inside
    geo = BeamGeometry(gantry, centre, couch_angle=couch, rows=15, columns=15,
                       pixel_spacing=(3.0, 3.0), sad=300, sid=450)
    out = compute_drr(Volume(arr, grid), geo, method=method, attenuation=ATT)[0]
    mu = 2 * MU_W
    truth = np.array([[chord_through_sphere(geo.source, p, centre, SPHERE_R) for p in row]
                      for row in pixels(geo)]) * mu
    core = truth > mu * 2 * math.sqrt(1 - 0.8 ** 2) * SPHERE_R
    assert core.sum() >= 20
    assert np.max(np.abs(out - truth)[core]) <= 2.0 * mu
    # Over the whole image the mean error is much smaller than a voxel.
    assert abs(float(np.mean(out[core] - truth[core]))) <= 0.5 * mu


# --------------------------------------------------------- scalar reference
def random_volume(rng: np.random.Generator, shape: tuple[int, int, int], direction: np.ndarray,
                  spacing: tuple[float, float, float]) -> Volume:
    """Random HU with empty regions (so that empty blocks are skipped)."""
    arr = rng.integers(-1000, 2000, size=shape).astype(np.int16)
    arr[rng.random(shape) < 0.3] = -1000
    arr[:, : shape[1] // 3] = -1000  # a wide empty band: whole empty blocks
    arr[: shape[0] // 2, :, -9:] = -1000
    origin = rng.uniform(-20, 20, 3)
    return Volume(arr, Grid(shape, origin=origin, spacing=spacing, direction=direction))


def _rotation(a: float, b: float) -> np.ndarray:
    ca, sa, cb, sb = math.cos(a), math.sin(a), math.cos(b), math.sin(b)
    rz = np.array([[ca, -sa, 0], [sa, ca, 0], [0, 0, 1.0]])
    rx = np.array([[1.0, 0, 0], [0, cb, -sb], [0, sb, cb]])
    return rx @ rz


GRIDS = {
    "axial": np.eye(3),
    "oblique": _rotation(0.3, 0.2),
    # gantry tilt: the k axis leans 15 degrees toward y (not orthogonal to j)
    "sheared": np.column_stack([[1.0, 0, 0], [0, 1.0, 0],
                                [0, math.sin(0.26), math.cos(0.26)]]),
}


@pytest.mark.parametrize("grid_name", sorted(GRIDS))
def test_siddon_matches_scalar_reference(grid_name: str) -> None:
    rng = np.random.default_rng(20240517 + len(grid_name))
    vol = random_volume(rng, (19, 22, 25), GRIDS[grid_name], (1.1, 0.9, 1.7))
    mu = prepare_volume(vol, ATT).mu
    centre = vol.grid.index_to_patient(np.array([12.0, 10.5, 9.0]))
    for _ in range(4):
        geo = BeamGeometry(rng.uniform(0, 360), centre + rng.uniform(-6, 6, 3),
                           collimator_angle=rng.uniform(0, 360), couch_angle=rng.uniform(0, 360),
                           rows=5, columns=6, pixel_spacing=(9.0, 8.0), sad=150, sid=260,
                           patient_position=str(rng.choice(["HFS", "FFP", "HFDL"])))
        out = compute_drr(vol, geo, attenuation=ATT)[0]
        ref = np.array([[siddon_reference(mu, vol.grid, geo.source, p) for p in row]
                        for row in pixels(geo)])
        assert ref.max() > 0.1
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_rays_through_voxel_edges_and_corners() -> None:
    """Diagonal rays through voxel edges cross two or three planes at (nearly) the
    same time: the incremental traversal meets ties and must still agree with the
    reference.  (A ray lying exactly in a voxel face belongs to whichever side
    the rounding of its direction takes it; such rays are not compared.)"""
    rng = np.random.default_rng(7)
    vol = random_volume(rng, (16, 16, 16), np.eye(3), (1.0, 1.0, 1.0))
    mu = prepare_volume(vol, ATT).mu
    for gantry, couch in ((45, 0), (135, 0), (225, 90), (315, 270)):
        # The central row of rays lies in the plane of gantry rotation: there it
        # crosses voxel edges (two index planes at once), off the third axis' planes.
        iso_index = (7.5, 7.5, 7.75) if couch == 0 else (7.75, 7.5, 7.5)
        iso = vol.grid.index_to_patient(np.array(iso_index))
        geo = BeamGeometry(gantry, iso, couch_angle=couch, rows=7, columns=7,
                           pixel_spacing=(1.5 * math.sqrt(2), 1.3), sad=100, sid=150)
        out = compute_drr(vol, geo, attenuation=ATT)[0]
        ref = np.array([[siddon_reference(mu, vol.grid, geo.source, p) for p in row]
                        for row in pixels(geo)])
        np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)


def test_skipping_changes_nothing() -> None:
    """Empty-space skipping is exact: a volume whose every block is occupied (a
    tiny epsilon everywhere) gives the same integrals up to that epsilon."""
    rng = np.random.default_rng(3)
    vol = random_volume(rng, (20, 21, 26), np.eye(3), (1.0, 1.2, 0.8))
    geos = [BeamGeometry(g, vol.grid.index_to_patient(np.array([12.0, 10, 10])), rows=9,
                         columns=9, pixel_spacing=(4, 4), sad=200, sid=300) for g in (10, 100)]
    full = Volume(np.where(vol.array == -1000, -999, vol.array).astype(np.int16), vol.grid)
    for method in DrrMethod:
        skipped = compute_drr(vol, geos, method=method, attenuation=ATT)
        dense = compute_drr(full, geos, method=method, attenuation=ATT)
        # -999 HU is 0.001 mu_w: at most 0.001 mu_w per mm of chord (< 60 mm here).
        assert np.max(np.abs(dense - skipped)) <= 0.001 * MU_W * 60


def test_many_geometries_in_one_call_equal_single_calls() -> None:
    rng = np.random.default_rng(11)
    vol = random_volume(rng, (12, 14, 16), np.eye(3), (1.0, 1.0, 1.0))
    pv = prepare_volume(vol, ATT)
    geos = [BeamGeometry(g, (0, 0, 0), rows=4, columns=5, pixel_spacing=(5, 5), sad=200, sid=300)
            for g in (0, 72, 144)]
    together = compute_drr(pv, geos)
    for n, g in enumerate(geos):
        np.testing.assert_array_equal(together[n], compute_drr(pv, g)[0])


def test_collimator_does_not_rotate_the_image() -> None:
    rng = np.random.default_rng(5)
    vol = random_volume(rng, (12, 14, 16), np.eye(3), (1.0, 1.0, 1.0))
    a = BeamGeometry(30, (0, 0, 0), rows=6, columns=7, pixel_spacing=(4, 4), sad=200, sid=300)
    b = BeamGeometry(30, (0, 0, 0), collimator_angle=90, rows=6, columns=7, pixel_spacing=(4, 4),
                     sad=200, sid=300)
    np.testing.assert_array_equal(compute_drr(vol, a), compute_drr(vol, b))


# ------------------------------------------------------------ HU and mu
def test_water_attenuation_table() -> None:
    assert water_attenuation(60) == pytest.approx(0.02059)
    assert water_attenuation(1000) == pytest.approx(0.007072)
    # Between table energies: log-log interpolation, monotone.
    assert water_attenuation(80) < water_attenuation(70) < water_attenuation(60)
    with pytest.raises(InvalidInputError, match="energy_kev"):
        water_attenuation(5)


def test_hu_window_and_clipping() -> None:
    att = Attenuation(mu_water=0.02, hu_window=(-500, 1500))
    lut = att.lookup_table()
    assert lut.dtype == np.float32
    at = lambda hu: float(lut[hu + 32768])  # noqa: E731
    assert at(0) == pytest.approx(0.02)
    assert at(1000) == pytest.approx(0.04)
    assert at(-501) == 0 and at(1501) == 0 and at(-500) == pytest.approx(0.01)
    assert Attenuation(mu_water=0.02).lookup_table()[-2000 + 32768] == 0  # clipped at 0
    assert "60 keV" in Attenuation().describe()


def test_hu_window_removes_voxels_from_the_drr() -> None:
    vol = box_volume((10, 10, 10), (1, 1, 1), (slice(2, 8), slice(2, 8), slice(2, 8)), hu=-600)
    geo = BeamGeometry(0, (0, 0, 0), rows=3, columns=3, pixel_spacing=(1, 1), sad=100, sid=150)
    assert compute_drr(vol, geo, attenuation=Attenuation(mu_water=0.02))[0, 1, 1] > 0
    windowed = Attenuation(mu_water=0.02, hu_window=(-500, 3000))
    assert compute_drr(vol, geo, attenuation=windowed)[0, 1, 1] == 0


# ------------------------------------------------------------ 16-bit images
def test_quantize_log() -> None:
    integrals = np.array([[0.0, 1.0], [2.5, 5.123456789]])
    q = quantize(integrals)
    assert q.pixels.dtype == np.uint16
    assert q.pixels.max() <= 65535 and q.pixels[1, 1] >= 65534
    assert len(repr(q.rescale_slope)) <= 16
    np.testing.assert_allclose(q.rescaled(), integrals, atol=q.rescale_slope / 2 + 1e-12)
    assert (q.relationship, q.sign) == (PixelMapping.LOG, -1)
    lo, hi = q.window_center - q.window_width / 2, q.window_center + q.window_width / 2
    assert lo >= 1.0 - 1e-9 and hi <= 5.123456789 + 1e-9


def test_quantize_lin_and_inverted() -> None:
    integrals = np.array([[0.0, 0.5], [1.0, 3.0]])
    q = quantize(integrals, "LIN")
    np.testing.assert_allclose(q.rescaled(), np.exp(-integrals), atol=2e-5)
    assert q.sign == 1
    inv = quantize(integrals, "LIN", invert=True)
    np.testing.assert_array_equal(inv.pixels.astype(int), 65535 - q.pixels.astype(int))
    assert inv.sign == -1 and inv.inverted
    log_inv = quantize(integrals, invert=True)
    assert log_inv.sign == 1 and log_inv.pixels[0, 0] == 65535


def test_quantize_rejects_bad_input() -> None:
    with pytest.raises(InvalidInputError, match="one image"):
        quantize(np.zeros((2, 2, 2)))
    with pytest.raises(InvalidInputError, match="non-negative"):
        quantize(np.array([[-1.0]]))
    with pytest.raises(InvalidInputError, match="mapping"):
        quantize(np.zeros((2, 2)), "EXP")


def test_central_axis_ssd() -> None:
    vol = box_volume((20, 20, 20), (2, 2, 2), (slice(0, 20), slice(5, 15), slice(0, 20)))
    geo = BeamGeometry(0, (0, 0, 0), sad=500)
    # The box's anterior face is at y = -10 mm; the source at y = -500.
    assert central_axis_ssd(vol, geo) == pytest.approx(490.0, abs=1.0)
    assert central_axis_ssd(vol, BeamGeometry(0, (300, 0, 0), sad=500)) is None


# ------------------------------------------------------------------ bad input
def test_bad_inputs() -> None:
    vol = box_volume((6, 6, 6), (1, 1, 1), (slice(1, 5),) * 3)
    geo = BeamGeometry(0, (0, 0, 0), rows=2, columns=2, sad=100, sid=150)
    with pytest.raises(InvalidInputError, match="int16"):
        compute_drr(Volume(vol.array.astype(np.float32), vol.grid), geo)
    with pytest.raises(InvalidInputError, match="method"):
        compute_drr(vol, geo, method="raymarch")
    with pytest.raises(InvalidInputError, match="device"):
        compute_drr(vol, geo, device="tpu")
    with pytest.raises(InvalidInputError, match="step_mm"):
        compute_drr(vol, geo, method="trilinear", step_mm=0)
    with pytest.raises(InvalidInputError, match="one size"):
        compute_drr(vol, [geo, BeamGeometry(0, (0, 0, 0), rows=3, columns=2, sad=100, sid=150)])
    with pytest.raises(InvalidInputError, match="no beam geometry"):
        compute_drr(vol, [])
    with pytest.raises(InvalidInputError, match="prepare_volume"):
        compute_drr(prepare_volume(vol), geo, attenuation=ATT)
    with pytest.raises(GeometryError, match="inside the CT"):
        compute_drr(vol, BeamGeometry(0, (0, 0, 0), sad=2, sid=3))
    with pytest.raises(GeometryError, match="cannot belong to this CT"):
        compute_drr(vol, BeamGeometry(0, (0, 0, 250), sad=1000, sid=1500))
    with pytest.raises(InvalidInputError, match="hu_window"):
        Attenuation(hu_window=(100, -100))
    with pytest.raises(InvalidInputError, match="mu_water"):
        Attenuation(mu_water=0)


def test_empty_volume_gives_zero_images() -> None:
    vol = box_volume((6, 6, 6), (1, 1, 1), (slice(0, 0),) * 3)
    out = compute_drr(vol, BeamGeometry(0, (0, 0, 0), rows=3, columns=4, sad=100, sid=150))
    assert out.shape == (1, 3, 4) and not out.any()


# --------------------------------------------------------------------- CUDA
_SIMULATOR_SCRIPT = r"""
import json
import numpy as np
from rtforge.core.beam import BeamGeometry
from rtforge.core.drr import Attenuation, compute_drr, prepare_volume
from rtforge.core.geometry import Grid, Volume

rng = np.random.default_rng(2024)
arr = rng.integers(-1000, 2000, (8, 8, 8)).astype(np.int16)
arr[:, :3] = -1000
arr[rng.random(arr.shape) < 0.3] = -1000
theta = 0.3
tilted = np.array([0, 0.2, 0.98]) / np.linalg.norm([0, 0.2, 0.98])
direction = np.column_stack([[np.cos(theta), np.sin(theta), 0], [-np.sin(theta), np.cos(theta), 0],
                             tilted])  # oblique and sheared (gantry tilt)
vol = Volume(arr, Grid((8, 8, 8), origin=(-4, -3, -5), spacing=(1.1, 0.9, 1.3),
                       direction=direction))
pv = prepare_volume(vol, Attenuation(mu_water=0.02))
geos = [BeamGeometry(g, (0.5, -0.2, 0.3), couch_angle=c, collimator_angle=c, rows=4, columns=4,
                     pixel_spacing=(3.5, 4.0), sad=100, sid=150, patient_position=p)
        for g, c, p in ((0, 0, "HFS"), (75, 30, "FFP"), (200, 90, "HFDR"))]
result = {}
for method in ("siddon", "trilinear"):
    cpu = compute_drr(pv, geos, method=method)
    gpu = compute_drr(pv, geos, method=method, device="cuda")
    result[method] = [float(np.abs(cpu - gpu).max()), float(cpu.max()), gpu.dtype.name,
                      list(gpu.shape)]
print(json.dumps(result))
"""


def test_cuda_simulator_agrees_with_cpu() -> None:
    """The CUDA kernels (run by numba's simulator, 8x8x8 volume, 4x4 receptor)
    give the CPU's integrals: both compile the same ray bodies."""
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    proc = subprocess.run([sys.executable, "-c", _SIMULATOR_SCRIPT], capture_output=True,
                          text=True, env=env, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    for method in ("siddon", "trilinear"):
        diff, peak, dtype, shape = result[method]
        assert peak > 0.05
        assert diff <= 1e-6 * peak
        assert dtype == "float32" and shape == [3, 4, 4]


def _gpu_available() -> bool:
    if os.environ.get("NUMBA_ENABLE_CUDASIM") == "1":
        return False
    try:
        from rtforge.core import drr_cuda
    except Exception:  # numba.cuda missing or broken: no GPU here
        return False
    return drr_cuda.available()


@pytest.mark.gpu
@pytest.mark.skipif(not _gpu_available(), reason="no CUDA GPU")
@pytest.mark.parametrize("method", ["siddon", "trilinear"])
def test_cuda_gpu_agrees_with_cpu(method: str) -> None:
    rng = np.random.default_rng(99)
    vol = random_volume(rng, (40, 48, 56), GRIDS["sheared"], (1.0, 0.9, 1.2))
    pv = prepare_volume(vol, ATT)
    centre = vol.grid.index_to_patient(np.array([28.0, 24.0, 20.0]))
    geos = [BeamGeometry(g, centre, couch_angle=c, rows=64, columns=80, pixel_spacing=(1.7, 1.9),
                         sad=300, sid=450) for g, c in ((0, 0), (33, 10), (90, 270), (181, 45))]
    cpu = compute_drr(pv, geos, method=method)
    gpu = compute_drr(pv, geos, method=method, device="cuda")
    assert gpu.dtype == np.float32 and gpu.shape == cpu.shape
    # Same ray bodies; the GPU may contract a*b+c into one rounding (FMA).
    np.testing.assert_allclose(gpu, cpu, rtol=1e-4, atol=1e-5 * float(cpu.max()))
    # The volume stayed resident: a second call reuses the device copy.
    assert "cuda_mu" in pv.cache
    np.testing.assert_array_equal(compute_drr(pv, geos, method=method, device="cuda"), gpu)
