"""The dose workflows from Python: the rules the command line relies on live here."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pydicom
import pytest

from rtforge.core.contours import Contour, Structure
from rtforge.errors import InvalidInputError
from rtforge.io.rtdose import PlanReference, build_dose_grid, read_rtdose, write_rtdose
from rtforge.io.rtstruct import build_rtstruct, write_rtstruct
from rtforge.io.uids import new_uid
from rtforge.workflows.dose import dvh_of_files, sum_dose_files
from tests.cli.test_dose_cli import files  # noqa: F401 - the module-scoped fixture


def test_dvh_of_files_chooses_rois_and_slabs(files: dict[str, Path]) -> None:  # noqa: F811
    run = dvh_of_files(files["dose"], files["struct"])
    assert [s.name for s in run.structures] == ["PTV", "Ring"]
    assert (run.slab_mm, run.slab_source, run.end_cap.value) == (
        2.0, "structure set contour spacing", "half")
    assert dvh_of_files(files["dose"], files["struct"], rois=["Ring"],
                        slab_mm=3.0).slab_source == "--slab-mm"
    with pytest.raises(InvalidInputError, match="ROI.*Bladder.*not in"):
        dvh_of_files(files["dose"], files["struct"], rois=["Bladder"])
    with pytest.raises(InvalidInputError, match="--slab-mm must be a positive number"):
        dvh_of_files(files["dose"], files["struct"], slab_mm=-1.0)


def test_dvh_of_files_refuses_another_frame(files: dict[str, Path],  # noqa: F811
                                            tmp_path: Path) -> None:
    ds = pydicom.dcmread(files["dose"])
    ds.FrameOfReferenceUID = str(new_uid())
    other = tmp_path / "other.dcm"
    ds.save_as(other)
    with pytest.raises(InvalidInputError, match="Frame of Reference .* differs"):
        dvh_of_files(other, files["struct"])


def test_a_structure_set_on_one_plane_needs_a_slab(tmp_path: Path) -> None:
    t = np.linspace(0, 2 * math.pi, 40, endpoint=False)
    ring = np.stack([5 * np.cos(t), 5 * np.sin(t), np.zeros_like(t)], axis=1)
    frame = str(new_uid())
    struct = write_rtstruct(build_rtstruct([Structure(1, "Flat", (Contour(ring),))],
                                           frame_of_reference_uid=frame).dataset,
                            tmp_path, flat=True)
    from rtforge.core.geometry import Grid, Volume

    dose = Volume(np.ones((3, 11, 11)), Grid((3, 11, 11), origin=(-5, -5, -2),
                                             spacing=(1, 1, 2)))
    reference = pydicom.dcmread(struct)
    path = write_rtdose(build_dose_grid(dose, summation_type="PLAN",
                                        plans=[PlanReference(str(new_uid()))],
                                        reference=reference).dataset, tmp_path / "d.dcm")
    with pytest.raises(InvalidInputError, match="every contour lies on one plane"):
        dvh_of_files(path, struct)
    assert dvh_of_files(path, struct, slab_mm=2.0).dvhs[0].volume_cm3 > 0


def test_sum_of_one_plans_beams_is_a_plan_dose(files: dict[str, Path],  # noqa: F811
                                               tmp_path: Path) -> None:
    result = sum_dose_files([files["dose"], files["dose_b"]], tmp_path / "sum.dcm")
    assert result.summation_type.value == "PLAN"
    back = read_rtdose(result.path)
    assert back.summation_type == "PLAN" and len(back.plans) == 1
    with pytest.raises(InvalidInputError, match="1 weights for 2 doses"):
        sum_dose_files([files["dose"], files["dose_b"]], tmp_path / "x.dcm", weights=[1.0])
