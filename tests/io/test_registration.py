"""Spatial Registration: round trip, identity first, Grids moved by the matrix, dciodvfy,
bad input."""

from __future__ import annotations

import copy
from datetime import datetime

import numpy as np
import pytest
from pydicom import Dataset
from pydicom.uid import CTImageStorage, MRImageStorage
from scipy.spatial.transform import Rotation

from rtforge.config import ExportConfig
from rtforge.core.geometry import Grid, check_rigid, transform_grid
from rtforge.errors import GeometryError, InvalidInputError
from rtforge.io.references import check_references
from rtforge.io.registration import (
    FrameRegistration,
    ImageReference,
    build_registration,
    parse_registration,
    read_registration,
    write_registration,
)
from rtforge.io.validate import dciodvfy_available, validate_file

CONFIG = ExportConfig(uid_root="1.2.826.0.1.3680043.8.498.44.", station_name="reg-test")
WHEN = datetime(2024, 6, 1, 9, 30, 0)
ROOT = CONFIG.uid_root
CT_FRAME, MR_FRAME = ROOT + "1", ROOT + "2"
STUDY, OTHER_STUDY = ROOT + "3", ROOT + "4"
CT_IMAGE = ImageReference(CTImageStorage, ROOT + "10", ROOT + "11", STUDY)
MR_IMAGE = ImageReference(MRImageStorage, ROOT + "20", ROOT + "21", OTHER_STUDY)


def rigid(angles: tuple[float, float, float], shift: tuple[float, float, float]) -> np.ndarray:
    m = np.eye(4)
    m[:3, :3] = Rotation.from_euler("xyz", angles, degrees=True).as_matrix()
    m[:3, 3] = shift
    return m


MATRIX = rigid((5.0, -10.0, 30.0), (12.5, -3.0, 40.0))


def source() -> Dataset:
    ds = Dataset()
    ds.PatientName, ds.PatientID, ds.PatientBirthDate, ds.PatientSex = "P^Q", "REG-1", "", "O"
    ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime, ds.StudyID = STUDY, "20240601", "0900", "1"
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = CT_FRAME, ""
    return ds


@pytest.fixture(scope="module")
def reg_ds() -> Dataset:
    return build_registration([FrameRegistration(MR_FRAME, MATRIX, (MR_IMAGE,))], source=source(),
                              reference_images=(CT_IMAGE,), config=CONFIG, timestamp=WHEN)


def test_round_trip(reg_ds: Dataset, tmp_path) -> None:  # noqa: ANN001
    reg = read_registration(write_registration(reg_ds, tmp_path))
    assert reg.frame_of_reference_uid == CT_FRAME
    first, second = reg.registrations
    assert first.frame_of_reference_uid == CT_FRAME and np.array_equal(first.matrix, np.eye(4))
    assert second.frame_of_reference_uid == MR_FRAME
    np.testing.assert_allclose(reg.matrix(MR_FRAME), MATRIX, atol=1e-12)
    assert second.registration_type == ("125024", "DCM", "Image Content-based Alignment")
    assert [i.sop_instance_uid for i in second.images] == [MR_IMAGE.sop_instance_uid]
    with pytest.raises(InvalidInputError, match="no frame"):
        reg.matrix(ROOT + "99")


def test_common_instance_reference(reg_ds: Dataset) -> None:
    (series,) = reg_ds.ReferencedSeriesSequence
    assert series.SeriesInstanceUID == CT_IMAGE.series_instance_uid
    (other,) = reg_ds.StudiesContainingOtherReferencedInstancesSequence
    assert other.StudyInstanceUID == OTHER_STUDY
    dangling = {r.uid for r in check_references([reg_ds]).dangling}
    assert MR_FRAME in dangling and MR_IMAGE.sop_instance_uid in dangling


def test_grid_moved_by_registration() -> None:
    grid = Grid((4, 5, 6), (-10.0, 20.0, 5.0), (1.0, 1.5, 2.5))
    moved = transform_grid(grid, MATRIX)
    ijk = np.array([[0, 0, 0], [5, 4, 3], [2, 1, 3]], dtype=float)
    before = grid.index_to_patient(ijk)
    expected = (MATRIX @ np.c_[before, np.ones(3)].T).T[:, :3]
    np.testing.assert_allclose(moved.index_to_patient(ijk), expected, atol=1e-9)


def test_bad_input(reg_ds: Dataset) -> None:
    for bad in (np.diag([2.0, 1, 1, 1]), np.diag([-1.0, 1, 1, 1]), np.eye(3),
                np.r_[np.eye(4)[:3], [[0, 0, 1, 1]]]):
        with pytest.raises(GeometryError):
            check_rigid(bad)
    with pytest.raises(InvalidInputError, match="not rigid"):
        FrameRegistration(MR_FRAME, np.diag([1.0, 1.0, 1.1, 1.0]))
    with pytest.raises(InvalidInputError, match="once"):
        build_registration([FrameRegistration(CT_FRAME, MATRIX)], source=source(), config=CONFIG)
    with pytest.raises(InvalidInputError, match="at least one"):
        build_registration([], source=source(), config=CONFIG)
    sheared = copy.deepcopy(reg_ds)
    matrix = sheared.RegistrationSequence[1].MatrixRegistrationSequence[0].MatrixSequence[0]
    values = list(matrix.FrameOfReferenceTransformationMatrix)
    values[1] = 0.5
    matrix.FrameOfReferenceTransformationMatrix = values
    with pytest.raises(InvalidInputError, match="item 2.*not rigid"):
        parse_registration(sheared)
    matrix.FrameOfReferenceTransformationMatrixType = "DEFORMABLE"
    with pytest.raises(InvalidInputError, match="only RIGID"):
        parse_registration(sheared)


@pytest.mark.interop
@pytest.mark.skipif(not dciodvfy_available(), reason="dciodvfy (dicom3tools) not installed")
def test_dciodvfy_has_no_errors(reg_ds: Dataset, tmp_path) -> None:  # noqa: ANN001
    result = validate_file(write_registration(reg_ds, tmp_path))
    assert result.dciodvfy_ran and result.iod == "SpatialRegistration"
    assert result.errors == [], result.errors


@pytest.mark.interop
@pytest.mark.skipif(not dciodvfy_available(), reason="dciodvfy (dicom3tools) not installed")
@pytest.mark.parametrize("where", ["all in this study", "none in this study"])
def test_common_instance_reference_type_1c(where: str, tmp_path) -> None:  # noqa: ANN001
    """PS3.3 C.12.2: each sequence is written only when there is an image for it."""
    study = STUDY if where == "all in this study" else OTHER_STUDY
    mr = ImageReference(MRImageStorage, ROOT + "20", ROOT + "21", study)
    ct = ImageReference(CTImageStorage, ROOT + "10", ROOT + "11", study)
    ds = build_registration([FrameRegistration(MR_FRAME, MATRIX, (mr,))], source=source(),
                            reference_images=(ct,), config=CONFIG, timestamp=WHEN)
    own = "ReferencedSeriesSequence" in ds
    other = "StudiesContainingOtherReferencedInstancesSequence" in ds
    assert (own, other) == ((True, False) if study == STUDY else (False, True))
    result = validate_file(write_registration(ds, tmp_path))
    assert result.dciodvfy_ran and result.errors == [], result.errors
