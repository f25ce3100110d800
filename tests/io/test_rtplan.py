"""RT Plan parser: the two real plans, resolved control points, geometry of a beam, bad input."""

from __future__ import annotations

import copy

import numpy as np
import pydicom
import pytest
from pydicom import Dataset

from rtforge.core.beam import PatientPosition
from rtforge.errors import GeometryError, InvalidInputError
from rtforge.io.rtplan import (
    BeamType,
    RadiationType,
    RotationDirection,
    RTBeamLimitingDeviceType,
    RTPlanGeometry,
    parse_rtplan,
    read_rtplan,
)
from tests.datafiles import pydicom_file, shared_file

DICOMPYLER = "dicompyler-example/rtplan.dcm"


@pytest.fixture(scope="module")
def dicompyler_ds() -> Dataset:
    return pydicom.dcmread(shared_file(DICOMPYLER))


@pytest.fixture(scope="module")
def small_ds(dicompyler_ds: Dataset) -> Dataset:
    """The dicompyler plan with 3 control points per beam (cheap to copy and edit)."""
    ds = copy.deepcopy(dicompyler_ds)
    for beam in ds.BeamSequence:
        beam.ControlPointSequence = beam.ControlPointSequence[:3]
        beam.NumberOfControlPoints = 3
    return ds


def test_dicompyler_plan() -> None:
    plan = read_rtplan(shared_file(DICOMPYLER))
    assert plan.label == "B1" and plan.name == "" and plan.geometry is RTPlanGeometry.PATIENT
    assert plan.beam_numbers == (1, 2, 3, 4)
    assert [b.name for b in plan.beams] == ["3 RAO", "4 AP", "5 LAO", "6 LPO"]
    (group,) = plan.fraction_groups
    assert group.number == 1 and group.fractions_planned == 7 and group.beam_numbers == (1, 2, 3, 4)
    assert group.referenced_beams[0].beam_meterset == 97.0
    assert plan.frame_of_reference_uid == "2.16.840.1.113662.2.12.0.3057.1241703565.36"
    assert plan.referenced_structure_set_uid.startswith("1.2.246.352.71.4")
    beam = plan.beam(1)
    assert beam.beam_type is BeamType.DYNAMIC and beam.radiation_type is RadiationType.PHOTON
    assert beam.machine_name == "txmachine" and beam.source_axis_distance == 1000.0
    assert beam.primary_dosimeter_unit == "MU"
    mlc = beam.device("MLCX")
    assert mlc is not None and mlc.number_of_pairs == 60
    assert len(mlc.leaf_position_boundaries) == 61 and mlc.leaf_position_boundaries[0] == -200
    assert mlc.source_to_device_distance == pytest.approx(508.610780514104)
    assert [d.type for d in beam.beam_limiting_devices] == [
        RTBeamLimitingDeviceType.ASYMX, RTBeamLimitingDeviceType.ASYMY,
        RTBeamLimitingDeviceType.MLCX]
    assert plan.patient_position(1) is PatientPosition.HFS


def test_control_points_are_resolved(dicompyler_ds: Dataset) -> None:
    """Later control points of the file give only the MLC and the meterset: the
    parser carries the angles, isocentre and jaws forward."""
    plan = read_rtplan(dicompyler_ds)
    beam = plan.beam(1)
    assert len(beam.control_points) == 92
    first, last = beam.control_points[0], beam.control_points[-1]
    assert "GantryAngle" not in dicompyler_ds.BeamSequence[0].ControlPointSequence[-1]
    assert last.index == 91 and last.cumulative_meterset_weight == 1.0
    assert last.gantry_angle == first.gantry_angle == 327.0
    assert last.gantry_rotation_direction is RotationDirection.NONE
    assert last.isocenter_position == pytest.approx((72.5304715048, -304.3445582552,
                                                     -9.3092401018882))
    assert last.position("ASYMX") == pytest.approx((9.0, 70.0))
    assert last.position("ASYMY") == (-40.0, 40.0)
    # The MLC moves: its positions are the last point's own.
    raw = [float(v) for v in dicompyler_ds.BeamSequence[0].ControlPointSequence[-1]
           .BeamLimitingDevicePositionSequence[0].LeafJawPositions]
    assert last.position("MLCX") == pytest.approx(raw)
    assert first.position("MLCX") != last.position("MLCX")
    assert first.table_top_vertical_position is None  # empty in the file
    assert first.table_top_lateral_position == 0.0
    assert first.source_to_surface_distance == 927.0
    assert beam.jaws() == pytest.approx((9.0, 70.0, -40.0, 40.0))


def test_pydicom_plan() -> None:
    plan = read_rtplan(pydicom_file("rtplan.dcm"))
    assert (plan.label, plan.name) == ("Plan1", "Plan1")
    beam = plan.beam(1)
    assert beam.name == "Field 1" and beam.beam_type is BeamType.STATIC
    assert beam.machine_name == "unit001" and beam.referenced_patient_setup_number == 1
    assert len(beam.control_points) == 2
    assert beam.control_points[1].position("X") == (-100.0, 100.0)
    assert beam.jaws() == (-100.0, 100.0, -100.0, 100.0)
    (outline,) = beam.aperture()
    np.testing.assert_allclose(outline[[0, 2]], [[-100, -100], [100, 100]])
    assert plan.fraction_group_of(1).beam_numbers == (1,)
    assert plan.frame_of_reference_uid == ""


def test_beam_geometry_of_a_real_beam() -> None:
    plan = read_rtplan(shared_file(DICOMPYLER))
    geo = plan.beam_geometry(3, sid=1400, rows=64, columns=48, pixel_spacing=(2.0, 2.5))
    assert geo.gantry_angle == 56.0 and geo.sad == 1000 and geo.sid == 1400
    assert (geo.rows, geo.columns, geo.pixel_spacing) == (64, 48, (2.0, 2.5))
    np.testing.assert_allclose(geo.isocenter, [72.5304715048, -304.3445582552, -9.3092401018882])
    assert geo.patient_position is PatientPosition.HFS
    assert geo.collimator_angle == pytest.approx(0, abs=1e-6)
    field = plan.beam_geometry(3, sid=1500, pixel_spacing=(1.0, 1.0), field_margin=10)
    # LAO jaws x -23..55, y -43..40 at the isocentre, +10 mm, x1.5 at the receptor.
    assert (field.columns, field.rows) == (148, 156)
    assert plan.beam(3).aperture()  # the MLC opening, clipped to the jaws
    for polygon in plan.beam(3).aperture():
        assert np.all((polygon[:, 0] >= -23) & (polygon[:, 0] <= 55))


def test_missing_beam_lists_the_beams() -> None:
    plan = read_rtplan(shared_file(DICOMPYLER))
    with pytest.raises(InvalidInputError, match=r"no beam 7 \(beams: 1, 2, 3, 4\)"):
        plan.beam(7)
    with pytest.raises(InvalidInputError, match="control point 200"):
        plan.beam_geometry(1, control_point=200)


def _edited(ds: Dataset, edit) -> Dataset:  # noqa: ANN001
    out = copy.deepcopy(ds)
    edit(out)
    return out


@pytest.mark.parametrize(("edit", "message"), [
    (lambda ds: setattr(ds, "SOPClassUID", "1.2.840.10008.5.1.4.1.1.2"), "not an RT Plan"),
    (lambda ds: delattr(ds, "BeamSequence"), "without beams"),
    (lambda ds: setattr(ds.FractionGroupSequence[0].ReferencedBeamSequence[0],
                        "ReferencedBeamNumber", "9"), "references beam"),
    (lambda ds: delattr(ds.BeamSequence[0].ControlPointSequence[0], "GantryAngle"),
     "first control point lacks GantryAngle"),
    (lambda ds: setattr(ds.BeamSequence[0], "BeamType", "WOBBLY"), "defined terms"),
    (lambda ds: setattr(ds.BeamSequence[0].ControlPointSequence[0], "IsocenterPosition",
                        [1, 2]), "Isocenter Position needs 3"),
    (lambda ds: setattr(ds.BeamSequence[0].ControlPointSequence[0]
                        .BeamLimitingDevicePositionSequence[0], "LeafJawPositions", [1, 2, 3]),
     "Leaf/Jaw Positions"),
])
def test_bad_plans(small_ds: Dataset, edit, message: str) -> None:  # noqa: ANN001
    with pytest.raises(InvalidInputError, match=message):
        parse_rtplan(_edited(small_ds, edit))


def test_brachy_plan_is_not_read_yet(small_ds: Dataset) -> None:
    def brachy(ds: Dataset) -> None:
        del ds.BeamSequence
        ds.ApplicationSetupSequence = [Dataset()]
    with pytest.raises(InvalidInputError, match="brachytherapy"):
        parse_rtplan(_edited(small_ds, brachy))


def test_unsupported_geometry(small_ds: Dataset) -> None:
    device = read_rtplan(_edited(small_ds,
                                 lambda ds: setattr(ds, "RTPlanGeometry", "TREATMENT_DEVICE")))
    with pytest.raises(GeometryError, match="TREATMENT_DEVICE"):
        device.beam_geometry(1)
    pitched = read_rtplan(_edited(small_ds, lambda ds: setattr(
        ds.BeamSequence[0].ControlPointSequence[0], "TableTopPitchAngle", 3.0)))
    with pytest.raises(GeometryError, match="pitch"):
        pitched.beam_geometry(1)
    no_sad = read_rtplan(_edited(small_ds,
                                 lambda ds: delattr(ds.BeamSequence[0], "SourceAxisDistance")))
    with pytest.raises(GeometryError, match="Source-Axis Distance"):
        no_sad.beam_geometry(1)
    assert no_sad.beam_geometry(1, sad=950).sad == 950
    # The beam's own SAD wins over the fallback.
    assert read_rtplan(small_ds).beam_geometry(1, sad=950).sad == 1000


def test_unreadable_files(tmp_path) -> None:  # noqa: ANN001
    with pytest.raises(InvalidInputError, match="not found"):
        read_rtplan(tmp_path / "missing.dcm")
    text = tmp_path / "plan.txt"
    text.write_text("not a plan")
    with pytest.raises(InvalidInputError, match="DICOM"):
        read_rtplan(text)
    with pytest.raises(InvalidInputError, match="not an RT Plan"):
        read_rtplan(shared_file("dicompyler-example/ct.0.dcm"))
