"""Geometry core: round trips, bounding grids, tilt and spacing detection.

Truth comes from construction (positions built from known angles and gaps)
and from the definitions (index -> patient -> index is the identity).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from rtforge.core.geometry import Grid, SliceStack, bounding_grid
from rtforge.errors import GeometryError


def _rotation(seed: int) -> np.ndarray:
    return Rotation.random(random_state=seed).as_matrix()


def _tilted_stack(nk: int = 5, tilt: float = 0.0, gaps: list[float] | None = None,
                  rot: np.ndarray | None = None, shape: tuple[int, int] = (4, 6),
                  spacing: tuple[float, float] = (0.7, 0.9),
                  origin: tuple[float, float, float] = (3.0, -2.0, 10.0)) -> SliceStack:
    """Slices along the normal at ``gaps``, shifted along the columns by tan(tilt) per mm."""
    rot = np.eye(3) if rot is None else rot
    r, c, n = rot[:, 0], rot[:, 1], rot[:, 2]
    d = np.concatenate([[0.0], np.cumsum(np.full(nk - 1, 2.0) if gaps is None else gaps)])
    positions = (np.asarray(origin) + d[:, None] * n
                 + (d * math.tan(math.radians(tilt)))[:, None] * c)
    return SliceStack(positions, r, c, spacing, shape[0], shape[1])


def _all_centres(stack: SliceStack) -> np.ndarray:
    j, i = np.meshgrid(np.arange(stack.rows), np.arange(stack.columns), indexing="ij")
    return np.concatenate([stack.voxel_centres(k, j, i).reshape(-1, 3)
                           for k in range(stack.nslices)])


# ------------------------------------------------------------- round trips
@pytest.mark.parametrize("seed", range(5))
def test_index_patient_round_trip_oblique_grid(seed: int) -> None:
    rng = np.random.default_rng(seed)
    grid = Grid(tuple(rng.integers(1, 40, size=3)), rng.uniform(-200, 200, size=3),
                rng.uniform(0.3, 5.0, size=3), _rotation(seed))
    ijk = rng.uniform(-10, 50, size=(100, 3))
    np.testing.assert_allclose(grid.patient_to_index(grid.index_to_patient(ijk)), ijk,
                               atol=1e-9)
    np.testing.assert_allclose(grid.affine @ grid.inverse_affine, np.eye(4), atol=1e-12)
    # moving one index step moves one spacing along that axis' direction
    steps = grid.index_to_patient(np.eye(3)) - grid.index_to_patient(np.zeros(3))
    np.testing.assert_allclose(np.linalg.norm(steps, axis=1), grid.spacing)


@pytest.mark.parametrize("tilt", [-25.0, 7.5, 30.0])
def test_index_patient_round_trip_sheared_grid(tilt: float) -> None:
    rot = _rotation(int(tilt) + 100)
    k_dir = rot[:, 2] + math.tan(math.radians(tilt)) * rot[:, 1]
    direction = np.column_stack([rot[:, 0], rot[:, 1], k_dir / np.linalg.norm(k_dir)])
    grid = Grid((6, 7, 8), (1.0, 2.0, 3.0), (0.8, 0.9, 2.5), direction)
    ijk = np.random.default_rng(1).uniform(-3, 10, size=(50, 3))
    np.testing.assert_allclose(grid.patient_to_index(grid.index_to_patient(ijk)), ijk,
                               atol=1e-9)
    # the k axis is not orthogonal to the image plane, and is not forced to be
    np.testing.assert_allclose(grid.direction[:, 2], direction[:, 2])
    assert abs(grid.direction[:, 2] @ grid.slice_normal) == pytest.approx(
        math.cos(math.radians(tilt)))


def test_stack_to_grid_reproduces_every_voxel_centre_of_a_tilted_stack() -> None:
    stack = _tilted_stack(nk=6, tilt=15.0, rot=_rotation(3))
    grid = stack.to_grid()
    k, j, i = np.meshgrid(*(np.arange(n) for n in stack.shape), indexing="ij")
    ijk = np.stack([i, j, k], axis=-1).reshape(-1, 3)
    np.testing.assert_allclose(grid.index_to_patient(ijk), _all_centres(stack), atol=1e-9)
    np.testing.assert_allclose(grid.patient_to_index(_all_centres(stack)), ijk, atol=1e-9)
    assert grid.shape == stack.shape
    assert grid.spacing[2] == pytest.approx(stack.table_increment)


def test_regular_grid_to_stack_and_back() -> None:
    grid = Grid((4, 5, 6), (1.0, -2.0, 3.0), (0.5, 0.6, 1.5), _rotation(9))
    stack = grid.to_stack()
    assert stack.shape == grid.shape and not stack.is_tilted() and not stack.is_uneven()
    assert stack.to_grid() == grid


# ------------------------------------------------------------ validation
@pytest.mark.parametrize("direction, words", [
    (np.diag([2.0, 1.0, 1.0]), "unit"),
    (np.array([[1.0, 0.6, 0.0], [0.0, 0.8, 0.0], [0.0, 0.0, 1.0]]), "orthogonal"),
    (np.array([[1.0, 0.0, 1.0], [0.0, 1.0, 0.0], [0.0, 0.0, 0.0]]), "singular|unit"),
])
def test_grid_rejects_bad_direction(direction: np.ndarray, words: str) -> None:
    with pytest.raises(GeometryError, match=words):
        Grid((2, 2, 2), (0, 0, 0), (1, 1, 1), direction)


@pytest.mark.parametrize("kwargs", [
    {"shape": (0, 2, 2)}, {"spacing": (1.0, 0.0, 1.0)}, {"origin": (0.0, np.nan, 0.0)},
    {"origin": (0.0, 0.0)},
])
def test_grid_rejects_bad_values(kwargs: dict) -> None:
    args = {"shape": (2, 2, 2), "origin": (0.0, 0.0, 0.0), "spacing": (1.0, 1.0, 1.0)}
    args.update(kwargs)
    with pytest.raises(GeometryError):
        Grid(**args)


def test_slice_stack_rejects_bad_orientation_and_spacing() -> None:
    pos = np.zeros((2, 3))
    with pytest.raises(GeometryError, match="orthogonal"):
        SliceStack(pos, (1, 0, 0), (0.5, math.sqrt(0.75), 0), (1, 1), 2, 2)
    with pytest.raises(GeometryError, match="unit"):
        SliceStack(pos, (2, 0, 0), (0, 1, 0), (1, 1), 2, 2)
    with pytest.raises(GeometryError, match="spacing"):
        SliceStack(pos, (1, 0, 0), (0, 1, 0), (1, -1), 2, 2)


# ----------------------------------------------------------- bounding grid
@pytest.mark.parametrize("tilt, gaps", [(0.0, None), (20.0, None), (-12.0, [1.0, 3.0, 2.5, 0.7])])
@pytest.mark.parametrize("seed", range(3))
def test_bounding_grid_covers_every_centre_tightly(tilt: float, gaps: list[float] | None,
                                                   seed: int) -> None:
    stack = _tilted_stack(nk=5, tilt=tilt, gaps=gaps, rot=_rotation(seed))
    spacing = np.random.default_rng(seed).uniform(0.4, 2.0, size=3)
    grid = stack.bounding_grid(spacing)
    assert grid.is_axis_aligned
    centres = _all_centres(stack)
    idx = grid.patient_to_index(centres)
    n = np.array(grid.shape[::-1])
    assert np.all(idx >= -1e-9) and np.all(idx <= n - 1 + 1e-6)
    np.testing.assert_allclose(grid.origin, centres.min(axis=0))  # output slice 0 at z_min
    np.testing.assert_allclose(idx.min(axis=0), 0.0, atol=1e-9)
    assert np.all(idx.max(axis=0) > n - 2)  # tight: one sample fewer would not cover


def test_bounding_grid_of_oblique_grid_covers_its_corners() -> None:
    grid = Grid((3, 4, 5), (5.0, 5.0, 5.0), (1.0, 1.5, 2.0), _rotation(4))
    box = grid.bounding_grid()
    idx = box.patient_to_index(grid.corners())
    assert np.all(idx >= -1e-9) and np.all(idx <= np.array(box.shape[::-1]) - 1 + 1e-6)
    np.testing.assert_allclose(box.spacing, grid.spacing)


def test_bounding_grid_rejects_bad_spacing() -> None:
    with pytest.raises(GeometryError):
        bounding_grid(np.zeros((2, 3)), (1.0, 0.0, 1.0))


# ------------------------------------------------------- tilt and spacing
@pytest.mark.parametrize("tilt", [-20.0, -5.0, 0.0, 15.0, 30.0])
def test_tilt_is_derived_from_positions_with_its_sign(tilt: float) -> None:
    stack = _tilted_stack(nk=7, tilt=tilt, rot=_rotation(2))
    assert stack.tilt_degrees() == pytest.approx(tilt, abs=1e-9)
    assert stack.is_tilted() == (tilt != 0.0)
    expected = stack.normal + math.tan(math.radians(tilt)) * stack.column_direction
    np.testing.assert_allclose(stack.stacking_direction(), expected / np.linalg.norm(expected))
    assert not stack.is_uneven()


def test_tilt_of_single_slice_and_tolerance() -> None:
    assert _tilted_stack(nk=1).tilt_degrees() == 0.0
    slight = _tilted_stack(nk=3, tilt=0.005)
    assert not slight.is_tilted() and slight.is_tilted(tolerance_degrees=0.001)


def test_uneven_spacing_is_detected_and_has_no_grid() -> None:
    even = _tilted_stack(nk=4, gaps=[2.0, 2.0, 2.0])
    uneven = _tilted_stack(nk=4, gaps=[2.0, 2.0, 3.0])
    assert not even.is_uneven() and uneven.is_uneven()
    assert not _tilted_stack(nk=4, gaps=[2.0, 2.005, 2.0]).is_uneven()
    assert _tilted_stack(nk=4, gaps=[2.0, 2.005, 2.0]).is_uneven(tolerance_mm=0.001)
    np.testing.assert_allclose(uneven.gaps, [2.0, 2.0, 3.0])
    assert uneven.normal_spacing == pytest.approx(2.0)
    with pytest.raises(GeometryError, match="unevenly"):
        uneven.to_grid()


def test_axis_alignment() -> None:
    assert _tilted_stack().is_axis_aligned()
    sagittal = np.array([[0.0, 0, -1], [1, 0, 0], [0, -1, 0]])
    assert _tilted_stack(rot=sagittal).is_axis_aligned()
    assert not _tilted_stack(rot=_rotation(1)).is_axis_aligned()
    assert not _tilted_stack(tilt=10.0).is_axis_aligned()


@pytest.mark.parametrize("name, rot, expected", [
    ("axial", np.eye(3), (0.7, 0.9, 2.0)),
    # row along +y, column along -z, normal along -x
    ("sagittal", np.array([[0.0, 0, -1], [1, 0, 0], [0, -1, 0]]), (2.0, 0.7, 0.9)),
    # row along +x, column along -z, normal along +y
    ("coronal", np.array([[1.0, 0, 0], [0, 0, 1], [0, -1, 0]]), (0.7, 2.0, 0.9)),
    ("oblique 10 deg about x", Rotation.from_euler("x", 10, degrees=True).as_matrix(),
     (0.7, 0.9, 2.0)),
])
def test_default_output_spacing(name: str, rot: np.ndarray, expected: tuple) -> None:
    stack = _tilted_stack(rot=rot)
    assert stack.default_output_spacing() == pytest.approx(expected), name


def test_default_output_spacing_of_tilted_and_single_slice_stacks() -> None:
    tilted = _tilted_stack(tilt=20.0)  # 2 mm along the normal
    sz = tilted.default_output_spacing()[2]
    assert sz == pytest.approx(2.0 / math.cos(math.radians(20.0)))  # the table increment
    assert sz == pytest.approx(tilted.table_increment)
    assert _tilted_stack(nk=1).default_output_spacing() == pytest.approx((0.7, 0.9, 1.0))


def test_slice_offsets_and_corners() -> None:
    stack = _tilted_stack(nk=3, gaps=[1.5, 2.5], rot=_rotation(6))
    np.testing.assert_allclose(stack.offsets - stack.offsets[0], [0.0, 1.5, 4.0])
    corners = stack.corners()
    assert corners.shape == (12, 3)
    np.testing.assert_allclose(corners[3], stack.voxel_centres(0, 3, 5))


def test_constructors_leave_the_callers_arrays_writeable() -> None:
    positions = np.zeros((2, 3))
    positions[1, 2] = 1.0
    origin = np.zeros(3)
    SliceStack(positions, (1, 0, 0), (0, 1, 0), (1.0, 1.0), 2, 2)
    Grid((1, 1, 1), origin, (1.0, 1.0, 1.0))
    assert positions.flags.writeable and origin.flags.writeable


# ------------------------------------------------------- axis-aligned views
def _signed_permutations():
    import itertools

    for perm in itertools.permutations(range(3)):
        for signs in itertools.product((1, -1), repeat=3):
            direction = np.zeros((3, 3))
            for index_axis, patient_axis in enumerate(perm):
                direction[patient_axis, index_axis] = signs[index_axis]
            if np.linalg.det(direction) > 0:  # right-handed, as DICOM grids are
                yield direction


@pytest.mark.parametrize("direction", list(_signed_permutations()),
                         ids=lambda d: "/".join(str(int(v)) for v in d.T.ravel()))
def test_axis_aligned_view_keeps_every_voxel_where_it_is(direction) -> None:
    """Prone, decubitus, feet-first: the view holds each voxel at the same x, y, z."""
    from rtforge.core.geometry import Volume, axis_aligned_view

    rng = np.random.default_rng(7)
    grid = Grid((4, 5, 6), origin=(10.0, -20.0, 30.0), spacing=(1.5, 2.0, 3.0),
                direction=direction)
    volume = Volume(rng.random(grid.shape), grid)
    view = axis_aligned_view(volume)
    assert view is not None and np.allclose(view.grid.direction, np.eye(3))
    k, j, i = np.indices(grid.shape).reshape(3, -1)
    world = grid.index_to_patient(np.stack([i, j, k], axis=1))
    back = np.rint(view.grid.patient_to_index(world)).astype(int)
    assert np.allclose(view.grid.index_to_patient(back), world)
    assert np.array_equal(view.array[back[:, 2], back[:, 1], back[:, 0]], volume.array[k, j, i])


def test_axis_aligned_view_of_an_oblique_grid_is_none() -> None:
    from rtforge.core.geometry import Volume, axis_aligned_view

    rotation = Rotation.from_euler("z", 10, degrees=True).as_matrix()
    grid = Grid((2, 2, 2), origin=(0, 0, 0), spacing=(1, 1, 1), direction=rotation)
    assert axis_aligned_view(Volume(np.zeros(grid.shape), grid)) is None


# ----------------------------------------------------- derived, read-only
@pytest.mark.parametrize("seed", range(3))
def test_normal_and_offsets_are_derived_once_and_read_only(seed: int) -> None:
    stack = _tilted_stack(nk=6, tilt=10.0, gaps=[1.0, 2.0, 0.5, 3.0, 1.5], rot=_rotation(seed))
    n = np.cross(stack.row_direction, stack.column_direction)
    np.testing.assert_allclose(stack.normal, n / np.linalg.norm(n), atol=1e-15)
    np.testing.assert_allclose(stack.offsets, stack.positions @ stack.normal, atol=1e-12)
    for derived in (stack.normal, stack.offsets):
        assert not derived.flags.writeable
        with pytest.raises(ValueError):
            derived[0] = 0.0
    assert stack.normal is stack.normal  # computed once, not per access
