"""The registration and DRR workflows from Python: the rules the command line relies on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from pydicom import dcmread

from rtforge.core.beam import BeamGeometry
from rtforge.errors import GeometryError, InvalidInputError
from rtforge.io.rtimage import DrrRequest
from rtforge.workflows.demo import PhantomSeries
from rtforge.workflows.drr import drr_of_series
from rtforge.workflows.registration import register_series
from tests.cli.test_reg_cli import MATRIX, _moving


def test_register_series_writes_and_refuses(phantom_patient: list[PhantomSeries],
                                            tmp_path: Path) -> None:
    fixed = phantom_patient[0].folder
    moving = _moving(phantom_patient[0], tmp_path / "moving", other_study=False)
    written = register_series(fixed, moving, MATRIX, tmp_path / "out")
    assert written.path.is_file() and written.moving_images == written.fixed_images > 0
    assert np.allclose(written.matrix, MATRIX)
    with pytest.raises(InvalidInputError, match="share one Frame of Reference"):
        register_series(fixed, fixed, MATRIX, tmp_path / "out2")
    sheared = MATRIX.copy()
    sheared[0, 1] += 0.1
    with pytest.raises((InvalidInputError, GeometryError), match="rigid"):
        register_series(fixed, moving, sheared, tmp_path / "out3")
    other = tmp_path / "other-patient"
    other.mkdir()
    for path in sorted(moving.glob("*.dcm")):
        ds = dcmread(path)
        ds.PatientID = "SOMEONE-ELSE"
        ds.save_as(other / path.name)
    with pytest.raises(InvalidInputError, match="of patient 'SOMEONE-ELSE'"):
        register_series(fixed, other, MATRIX, tmp_path / "out4")
    assert not (tmp_path / "out4").exists()


def test_drr_of_series_refuses_what_is_not_ct(phantom_patient: list[PhantomSeries],
                                             tmp_path: Path) -> None:
    mr = tmp_path / "mr"
    mr.mkdir()
    for path in sorted(phantom_patient[0].folder.glob("*.dcm")):
        ds = dcmread(path)
        ds.Modality = "MR"
        ds.save_as(mr / path.name)
    request = DrrRequest(BeamGeometry(0.0, (0.0, 0.0, 0.0), rows=16, columns=16))
    with pytest.raises(InvalidInputError, match="the series is MR, not CT"):
        drr_of_series(mr, [request], tmp_path / "out")
    assert not (tmp_path / "out").exists()
