"""Dose-grid quantisation, resampling and summation against NumPy and scipy."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from rtforge.core.dosegrid import (
    DS_MAX_CHARS,
    GridChoice,
    dequantize_dose,
    quantize_dose,
    resample_dose,
    scaling_text,
    sum_doses,
)
from rtforge.core.geometry import Grid, Volume
from rtforge.errors import GeometryError, InvalidInputError


@pytest.mark.parametrize("bits", [16, 32])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_quantize_matches_numpy_and_error_bound(bits: int, dtype: type) -> None:
    rng = np.random.default_rng(bits)
    dose = (rng.random((7, 9, 11)) * 72.3).astype(dtype)
    q = quantize_dose(dose, bits)
    assert q.pixels.dtype == (np.uint16 if bits == 16 else np.uint32)
    assert q.pixels.shape == dose.shape
    assert len(q.scaling_text) <= DS_MAX_CHARS and float(q.scaling_text) == q.scaling
    top = 2**bits - 1
    assert q.scaling >= float(dose.max()) / top
    assert q.scaling <= float(dose.max()) / top * (1 + 1e-10)  # 11 significant digits kept
    naive = np.rint(dose.astype(np.float64) / q.scaling)
    np.testing.assert_array_equal(q.pixels, naive)
    assert int(q.pixels.max()) <= top
    error = np.abs(q.pixels * q.scaling - dose.astype(np.float64)).max()
    assert q.max_error_gy == pytest.approx(error, rel=1e-12, abs=0)
    assert q.max_error_gy <= q.scaling / 2 * (1 + 1e-9)
    back = dequantize_dose(q.pixels, q.scaling)
    assert back.dtype == np.float64
    np.testing.assert_array_equal(back, q.pixels * q.scaling)
    assert dequantize_dose(q.pixels, q.scaling, np.float32).dtype == np.float32


def test_32_bit_beats_plastimatch_g_format() -> None:
    dose = np.linspace(0, 70.123456789, 1001)
    q = quantize_dose(dose, 32)
    # plastimatch computes pixels with the exact scaling and writes it with %g.
    exact = float(dose.max()) / (2**32 - 1)
    g = float(f"{exact:g}")
    plastimatch_error = np.abs(np.rint(dose / exact) * g - dose).max()
    assert q.max_error_gy < plastimatch_error / 100


def test_scaling_text_is_smallest_fitting_decimal() -> None:
    assert scaling_text(0.1) == "0.1"
    assert scaling_text(123.456) == "123.456"
    text = scaling_text(70 / (2**32 - 1))
    assert len(text) <= 16 and float(text) >= 70 / (2**32 - 1)
    with pytest.raises(InvalidInputError):
        scaling_text(0.0)


def test_quantize_edge_cases() -> None:
    q = quantize_dose(np.zeros((2, 2, 2)), 16)
    assert q.scaling_text == "1" and not q.pixels.any() and q.max_error_gy == 0
    with pytest.raises(InvalidInputError, match="non-negative"):
        quantize_dose(np.array([1.0, -0.1]))
    with pytest.raises(InvalidInputError, match="NaN"):
        quantize_dose(np.array([1.0, np.nan]))
    with pytest.raises(InvalidInputError, match="bits"):
        quantize_dose(np.ones(3), 8)
    with pytest.raises(InvalidInputError, match="integers"):
        dequantize_dose(np.ones(3), 0.1)
    with pytest.raises(InvalidInputError, match="positive"):
        dequantize_dose(np.ones(3, dtype=np.uint16), 0.0)


def _linear(grid: Grid, a: np.ndarray, b: float) -> np.ndarray:
    nk, nj, ni = grid.shape
    k, j, i = np.meshgrid(np.arange(nk), np.arange(nj), np.arange(ni), indexing="ij")
    xyz = grid.index_to_patient(np.stack([i, j, k], axis=-1).astype(np.float64))
    return xyz @ a + b


def test_resample_same_grid_is_a_copy_and_linear_field_is_exact() -> None:
    grid = Grid((5, 6, 7), origin=(-3.0, 2.0, 10.0), spacing=(2.0, 2.5, 3.0))
    dose = _linear(grid, np.array([0.3, -0.2, 0.1]), 20.0)
    out = resample_dose(Volume(dose, grid), grid)
    np.testing.assert_array_equal(out.array, dose)
    inner = Grid((6, 7, 9), origin=(-2.1, 3.3, 11.2), spacing=(1.1, 1.3, 1.7))
    out = resample_dose(Volume(dose.astype(np.float32), grid), inner)
    np.testing.assert_allclose(out.array, _linear(inner, np.array([0.3, -0.2, 0.1]), 20.0),
                               rtol=1e-6)


def test_resample_matches_scipy_map_coordinates() -> None:
    rng = np.random.default_rng(3)
    grid = Grid((6, 7, 8), origin=(0.0, 0.0, 0.0), spacing=(1.0, 2.0, 3.0))
    dose = rng.random(grid.shape) * 10
    target = Grid((9, 10, 14), origin=(-0.4, -1.3, 1.1), spacing=(0.7, 1.6, 1.9))
    out = resample_dose(Volume(dose, grid), target).array
    nk, nj, ni = target.shape
    k, j, i = np.meshgrid(np.arange(nk), np.arange(nj), np.arange(ni), indexing="ij")
    ijk = grid.patient_to_index(target.index_to_patient(
        np.stack([i, j, k], axis=-1).astype(np.float64)))
    coords = np.stack([ijk[..., 2], ijk[..., 1], ijk[..., 0]])
    ref = ndimage.map_coordinates(dose, coords.reshape(3, -1), order=1, mode="nearest")
    ref = ref.reshape(target.shape)
    lo = np.array([-0.5, -0.5, -0.5])
    hi = np.array(grid.shape[::-1]) - 0.5
    inside = np.all((ijk >= lo) & (ijk <= hi), axis=-1)
    ref[~inside] = 0.0
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)
    assert (~inside).any() and inside.any()


def test_sum_doses_weights_and_grids() -> None:
    a = Grid((4, 4, 4), origin=(0.0, 0.0, 0.0), spacing=(2.0, 2.0, 2.0))
    b = Grid((3, 3, 3), origin=(4.0, 4.0, 4.0), spacing=(1.0, 1.0, 1.0))
    va = Volume(np.full(a.shape, 2.0), a)
    vb = Volume(np.full(b.shape, 3.0, dtype=np.float32), b)
    total = sum_doses([va, vb], [2.0, 0.5])
    assert total.grid == a
    # Voxel (2, 2, 2) of a at (4, 4, 4) mm is the corner of b.
    assert total.array[2, 2, 2] == pytest.approx(2 * 2 + 0.5 * 3)
    assert total.array[0, 0, 0] == pytest.approx(4.0)
    finest = sum_doses([va, vb], grid=GridChoice.FINEST)
    np.testing.assert_allclose(finest.grid.spacing, (1.0, 1.0, 1.0))
    assert finest.grid.shape == (7, 7, 7)
    with pytest.raises(InvalidInputError):
        sum_doses([])
    with pytest.raises(InvalidInputError):
        sum_doses([va], [1.0, 2.0])
    with pytest.raises(InvalidInputError):
        sum_doses([va], grid="nearest")
    tilted = Grid((2, 2, 2), origin=(0, 0, 0), spacing=(1, 1, 1),
                  direction=[[0.6, 0.8, 0], [-0.8, 0.6, 0], [0, 0, 1]])
    with pytest.raises(GeometryError):
        sum_doses([va, Volume(np.ones(tilted.shape), tilted)], grid="finest")


def test_finest_grid_takes_decubitus_doses() -> None:
    """A decubitus dose (axes permuted) has its own spacing per patient axis."""
    from tests.core.test_dvh import _decubitus, _dose

    supine = _dose((0.1, 0.2, 0.3), 10.0, 2.0, 0.0)
    supine = Volume(supine.array, Grid(supine.grid.shape, supine.grid.origin, (2.0, 2.0, 2.0)))
    total = sum_doses([supine, _decubitus(supine)], grid="finest")
    assert total.grid.is_axis_aligned and np.allclose(total.grid.spacing, (2.0, 2.0, 2.0))
    assert np.allclose(total.array, 2 * supine.array)
