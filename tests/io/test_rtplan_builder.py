"""RT Plan builders (external beam, brachytherapy) and splitter: round trip, options
(Notes 8-4 to 8-12), dciodvfy, bad input."""

from __future__ import annotations

import dataclasses
from datetime import datetime

import pydicom
import pytest
from pydicom import Dataset

from rtforge.config import ExportConfig
from rtforge.core.beam import PatientPosition
from rtforge.errors import InvalidInputError
from rtforge.io.rtplan import (
    ApplicationSetup,
    Beam,
    BeamLimitingDevice,
    BeamType,
    BrachyApplicationSetups,
    BrachyChannel,
    BrachyControlPoint,
    BrachySource,
    BrachyTreatmentTechnique,
    BrachyTreatmentType,
    ChannelShield,
    ConeIdentifier,
    ControlPoint,
    DevicePosition,
    DoseRateMode,
    DoseReference,
    FractionGroup,
    PatientSetup,
    PlanExportOptions,
    RadiationType,
    ReferencedBeam,
    ReferencedBrachySetup,
    RotationDirection,
    RTBeamLimitingDeviceType,
    SourceMovementType,
    ToleranceTable,
    TreatmentDeliveryType,
    build_brachy_rtplan,
    build_rtplan,
    parse_rtplan,
    read_rtplan,
    split_rtplan,
    static_beam,
    write_rtplan,
)
from rtforge.io.validate import dciodvfy_available, validate_file
from tests.datafiles import shared_file

CONFIG = ExportConfig(uid_root="1.2.826.0.1.3680043.8.498.66.", station_name="plan-test")
WHEN = datetime(2024, 6, 1, 9, 30, 0)
STRUCTURE_SET = "1.2.826.0.1.3680043.8.498.66.1"
FRAME = "1.2.826.0.1.3680043.8.498.66.2"
STUDY = "1.2.826.0.1.3680043.8.498.66.3"
BOUNDARIES = tuple(float(b) for b in range(-50, 55, 10))  # 10 pairs


def source() -> Dataset:
    ds = Dataset()
    ds.PatientName, ds.PatientID = "Phantom^Plan", "PLAN-001"
    ds.PatientBirthDate, ds.PatientSex = "19700101", "O"
    ds.StudyInstanceUID, ds.StudyDate, ds.StudyTime, ds.StudyID = STUDY, "20240601", "090000", "1"
    ds.FrameOfReferenceUID, ds.PositionReferenceIndicator = FRAME, ""
    return ds


def control_point(index: int, gantry: float, weight: float, leaves: tuple[float, ...],
                  **changes: object) -> ControlPoint:
    values: dict[str, object] = dict(
        index=index, cumulative_meterset_weight=weight, nominal_beam_energy=6.0,
        dose_rate_set=600.0, gantry_angle=gantry, gantry_rotation_direction=RotationDirection.NONE,
        beam_limiting_device_angle=10.0,
        beam_limiting_device_rotation_direction=RotationDirection.NONE,
        patient_support_angle=0.0, patient_support_rotation_direction=RotationDirection.NONE,
        table_top_eccentric_angle=0.0, table_top_pitch_angle=0.0, table_top_roll_angle=0.0,
        table_top_vertical_position=None, table_top_longitudinal_position=None,
        table_top_lateral_position=None, isocenter_position=(1.5, -20.0, 30.25),
        source_to_surface_distance=920.0,
        device_positions=(DevicePosition(RTBeamLimitingDeviceType.ASYMX, (-40.0, 45.0)),
                          DevicePosition(RTBeamLimitingDeviceType.ASYMY, (-35.0, 30.0)),
                          DevicePosition(RTBeamLimitingDeviceType.MLCX, leaves)))
    values.update(changes)
    return ControlPoint(**values)  # type: ignore[arg-type]


def beam(number: int, gantry: float, *, dynamic: bool = False, cone_id: str = "") -> Beam:
    leaves = tuple([-30.0] * 10 + [30.0] * 10)
    points = [control_point(0, gantry, 0.0, leaves)]
    if dynamic:
        points.append(control_point(1, gantry, 0.5, tuple([-20.0] * 10 + [25.0] * 10)))
    points.append(control_point(len(points), gantry, 1.0, points[-1].device_positions[2].positions))
    return Beam(
        number=number, name=f"B{number}", description=f"beam {number} at {gantry:g}",
        beam_type=BeamType.DYNAMIC if dynamic else BeamType.STATIC,
        radiation_type=RadiationType.PHOTON,
        treatment_delivery_type=TreatmentDeliveryType.TREATMENT, machine_name="LINAC1",
        manufacturer="Acme", primary_dosimeter_unit="MU", source_axis_distance=1000.0,
        beam_limiting_devices=(
            BeamLimitingDevice(RTBeamLimitingDeviceType.ASYMX, 1),
            BeamLimitingDevice(RTBeamLimitingDeviceType.ASYMY, 1),
            BeamLimitingDevice(RTBeamLimitingDeviceType.MLCX, 10, 500.0, BOUNDARIES)),
        control_points=tuple(points), referenced_patient_setup_number=1,
        final_cumulative_meterset_weight=1.0, cone_id=cone_id)


BEAMS = (beam(1, 0.0), beam(2, 90.0, dynamic=True), beam(3, 270.0))
GROUPS = (FractionGroup(1, 25, (ReferencedBeam(1, 0.8, 100.0), ReferencedBeam(2, 0.6, 80.5)), 0),
          FractionGroup(2, 5, (ReferencedBeam(3, 2.0, 210.0),), 0))
SETUPS = (PatientSetup(1, PatientPosition.HFS, "ISOCENTRIC", "Group 1 / Iso 1"),)
DOSE_REFS = (DoseReference(1, "COORDINATES", "PTV", 50.0, point_coordinates=(1.5, -20.0, 30.25)),)


def build(**kwargs: object) -> Dataset:
    args: dict[str, object] = dict(label="Prostate", name="Phase 1", description="demo plan",
                                   structure_set_uid=STRUCTURE_SET, dose_references=DOSE_REFS,
                                   tolerance_tables=(ToleranceTable(1, "T1"),), source=source(),
                                   config=CONFIG, timestamp=WHEN)
    args.update(kwargs)
    return build_rtplan(BEAMS, GROUPS, SETUPS, **args)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def plan_ds() -> Dataset:
    return build()


def test_round_trip(plan_ds: Dataset, tmp_path) -> None:  # noqa: ANN001
    path = write_rtplan(plan_ds, tmp_path)
    plan = read_rtplan(path)
    assert plan.beams == BEAMS
    assert plan.fraction_groups == GROUPS
    assert plan.patient_setups == SETUPS
    assert plan.dose_references == DOSE_REFS
    assert plan.tolerance_tables == (ToleranceTable(1, "T1"),)
    assert (plan.label, plan.name, plan.description) == ("Prostate", "Phase 1", "demo plan")
    assert plan.referenced_structure_set_uid == STRUCTURE_SET
    assert plan.frame_of_reference_uid == FRAME and plan.study_instance_uid == STUDY
    assert plan.patient_id == "PLAN-001"


def test_only_changes_after_first_control_point(plan_ds: Dataset) -> None:
    points = plan_ds.BeamSequence[1].ControlPointSequence
    assert "GantryAngle" in points[0] and "GantryAngle" not in points[1]
    assert [d.RTBeamLimitingDeviceType for d in points[1].BeamLimitingDevicePositionSequence] \
        == ["MLCX"]
    assert "TableTopVerticalPosition" in points[0] and points[0].TableTopVerticalPosition is None
    assert points[2].ReferencedDoseReferenceSequence[0].CumulativeDoseReferenceCoefficient == 1


def test_real_plan_round_trip() -> None:
    plan = read_rtplan(shared_file("dicompyler-example/rtplan.dcm"))
    ds = build_rtplan(plan.beams, plan.fraction_groups, plan.patient_setups, label=plan.label,
                      structure_set_uid=plan.referenced_structure_set_uid, config=CONFIG,
                      timestamp=WHEN)
    again = parse_rtplan(ds)
    assert again.beams == plan.beams and again.fraction_groups == plan.fraction_groups


@pytest.mark.parametrize("where", list(ConeIdentifier))
def test_cone_identifier(where: ConeIdentifier) -> None:
    cone = (beam(1, 0.0, cone_id="CONE 12.5"),)
    group = (FractionGroup(1, 3, (ReferencedBeam(1, 5.0, 500.0),), 0),)
    ds = build_rtplan(cone, group, SETUPS, label="SRS", structure_set_uid=STRUCTURE_SET,
                      options=PlanExportOptions(cone_identifier=where), config=CONFIG,
                      timestamp=WHEN)
    item = ds.BeamSequence[0]
    sequence = {ConeIdentifier.WEDGE_ID: "WedgeSequence", ConeIdentifier.BLOCK_TRAY_ID:
                "BlockSequence", ConeIdentifier.APPLICATOR_ID: "ApplicatorSequence"}[where]
    assert item[sequence][0][where.value].value == "CONE 12.5"
    assert parse_rtplan(ds).beams[0].cone_id == "CONE 12.5"


def test_dose_rate_modes() -> None:
    def rates(mode: DoseRateMode, defined: float | None = None) -> list[object]:
        ds = build(options=PlanExportOptions(dose_rate=mode, defined_dose_rate=defined))
        return [cp.get("DoseRateSet") for cp in ds.BeamSequence[1].ControlPointSequence]

    assert rates(DoseRateMode.NONE) == [None, None, None]
    assert rates(DoseRateMode.NULL) == [0, None, None]
    assert rates(DoseRateMode.DEFINED, 400.0) == [400, None, None]
    assert rates(DoseRateMode.ACTUAL) == [600, None, None]
    with pytest.raises(InvalidInputError, match="defined_dose_rate"):
        PlanExportOptions(dose_rate="Defined")


def test_templates_and_manufacturer_override() -> None:
    options = PlanExportOptions(plan_label="{name}", plan_name="{label}",
                                beam_name="{number}-{name}", beam_description="{name}",
                                dose_reference_description="{label}:{description}",
                                manufacturer="MLC maker")
    ds = build(options=options)
    assert (ds.RTPlanLabel, ds.RTPlanName) == ("Phase 1", "Prostate")
    assert ds.BeamSequence[0].BeamName == "1-B1" and ds.BeamSequence[0].BeamDescription == "B1"
    assert ds.BeamSequence[0].Manufacturer == "MLC maker"
    assert ds.DoseReferenceSequence[0].DoseReferenceDescription == "Prostate:PTV"
    with pytest.raises(InvalidInputError, match="template"):
        build(options=PlanExportOptions(beam_name="{nope}"))


def test_split(plan_ds: Dataset) -> None:
    parts = split_rtplan(plan_ds, config=CONFIG)
    assert len(parts) == 2
    uids = [str(p.SOPInstanceUID) for p in parts]
    assert len(set(uids) | {str(plan_ds.SOPInstanceUID)}) == 3
    for n, part in enumerate(parts):
        plan = parse_rtplan(part)
        assert plan.fraction_groups == (GROUPS[n],)
        assert plan.beam_numbers == GROUPS[n].beam_numbers
        assert plan.referenced_plans == ((uids[1 - n], "PARTIAL"),)
        assert plan.label == f"Prostate ({n + 1}/2)"
    single = split_rtplan(parts[0], config=CONFIG)
    assert len(single) == 1 and single[0].SOPInstanceUID == parts[0].SOPInstanceUID


def test_bad_input() -> None:
    with pytest.raises(InvalidInputError, match="references beam"):
        build_rtplan(BEAMS, (FractionGroup(1, 1, (ReferencedBeam(9, None, None),), 0),),
                     SETUPS, label="x", structure_set_uid=STRUCTURE_SET, config=CONFIG)
    with pytest.raises(InvalidInputError, match="structure set"):
        build_rtplan(BEAMS, GROUPS, SETUPS, label="x", config=CONFIG)
    with pytest.raises(InvalidInputError, match="no control points"):
        build_rtplan((dataclasses.replace(BEAMS[0], control_points=()),),
                     (GROUPS[0].__class__(1, 1, (ReferencedBeam(1, None, None),), 0),),
                     SETUPS, label="x", structure_set_uid=STRUCTURE_SET, config=CONFIG)
    with pytest.raises(InvalidInputError, match="patient setup"):
        build_rtplan(BEAMS, GROUPS, (PatientSetup(7, PatientPosition.HFS, ""),), label="x",
                     structure_set_uid=STRUCTURE_SET, config=CONFIG)
    ds = build()
    ds.FractionGroupSequence[0].ReferencedBeamSequence[0].ReferencedBeamNumber = 42
    with pytest.raises(InvalidInputError, match="beam"):
        split_rtplan(ds)


@pytest.mark.interop
@pytest.mark.skipif(not dciodvfy_available(), reason="dciodvfy (dicom3tools) not installed")
@pytest.mark.parametrize("kind", ["plain", "split", "wedge-cone", "block-cone", "applicator-cone"])
def test_dciodvfy_has_no_errors(tmp_path, plan_ds: Dataset, kind: str) -> None:  # noqa: ANN001
    if kind == "plain":
        datasets = [plan_ds]
    elif kind == "split":
        datasets = split_rtplan(plan_ds, config=CONFIG)
    else:
        where = {"wedge-cone": "WedgeID", "block-cone": "BlockTrayID",
                 "applicator-cone": "ApplicatorID"}[kind]
        datasets = [build_rtplan((beam(1, 0.0, cone_id="C10"),),
                                 (FractionGroup(1, 1, (ReferencedBeam(1, 5.0, 500.0),), 0),),
                                 SETUPS, label="SRS", structure_set_uid=STRUCTURE_SET,
                                 source=source(), options=PlanExportOptions(cone_identifier=where),
                                 config=CONFIG, timestamp=WHEN)]
    for ds in datasets:
        result = validate_file(write_rtplan(ds, tmp_path))
        assert result.dciodvfy_ran and result.iod == "RTPlan"
        # dciodvfy evaluates "Brachy Treatment Type is PDR" inside the channel item, where it
        # is absent, and so rejects Number of Pulses and Pulse Repetition Interval, which
        # PS3.3 C.8.8.15 requires for PDR: the only errors allowed, and only for PDR.
        known = "dciodvfy: Error - Attribute present when condition unsatisfied"
        errors = [e for e in result.errors if not (
            kind == "PDR" and e.startswith(known)
            and ("<NumberOfPulses>" in e or "<PulseRepetitionInterval>" in e))]
        assert errors == [], errors

        assert pydicom.dcmread(result.path).SOPInstanceUID == ds.SOPInstanceUID


# ------------------------------------------------------------------ brachytherapy
def channel(number: int, positions: tuple[float, ...], **changes: object) -> BrachyChannel:
    points = []
    for n, pos in enumerate(positions):
        points += [BrachyControlPoint(2 * n, float(n), pos, (pos, 10.0, 0.0)),
                   BrachyControlPoint(2 * n + 1, float(n + 1), pos, (pos, 10.0, 0.0))]
    values: dict[str, object] = dict(
        number=number, length=1200.0, total_time=float(len(positions)) * 4.5,
        source_movement_type=SourceMovementType.STEPWISE, referenced_source_number=1,
        control_points=tuple(points), final_cumulative_time_weight=float(len(positions)),
        applicator_number=number, applicator_id=f"CATH{number}", applicator_type="FLEXIBLE",
        applicator_length=1200.0, step_size=2.5, transfer_tube_number=number,
        transfer_tube_length=1000.0, shields=(ChannelShield(1, "SH1"),), referenced_roi_number=3)
    values.update(changes)
    return BrachyChannel(**values)  # type: ignore[arg-type]


SOURCE = BrachySource(1, "Ir-192", 73.83, 40700.0, "20240520", "120000", "LINE", "mHDR-v2",
                      "Nucletron")


def brachy(kind: BrachyTreatmentType = BrachyTreatmentType.HDR, **channel_changes: object
           ) -> BrachyApplicationSetups:
    return BrachyApplicationSetups(
        technique=BrachyTreatmentTechnique.INTERSTITIAL, treatment_type=kind,
        machine_name="microSelectron", machine_manufacturer="Nucletron", sources=(SOURCE,),
        setups=(ApplicationSetup(1, "OTHER", "Implant", 1.25, (
            channel(1, (0.0, 2.5, 5.0), **channel_changes),
            channel(2, (10.0,), **channel_changes))),
            ApplicationSetup(2, "OTHER", "Boost", 0.5, (channel(3, (1.0, 3.5)),))))


BRACHY_GROUPS = (FractionGroup(1, 4, (), 1, (ReferencedBrachySetup(1, 7.0),)),
                 FractionGroup(2, 1, (), 1, (ReferencedBrachySetup(2, 3.0),)))


def build_brachy(setups: BrachyApplicationSetups | None = None, **kwargs: object) -> Dataset:
    args: dict[str, object] = dict(label="Prostate HDR", structure_set_uid=STRUCTURE_SET,
                                   dose_references=DOSE_REFS, source=source(), config=CONFIG,
                                   timestamp=WHEN)
    args.update(kwargs)
    return build_brachy_rtplan(setups or brachy(), BRACHY_GROUPS, **args)  # type: ignore[arg-type]


def test_brachy_round_trip(tmp_path) -> None:  # noqa: ANN001
    plan = read_rtplan(write_rtplan(build_brachy(), tmp_path))
    assert plan.brachy == brachy() and plan.beams == ()
    assert plan.fraction_groups == BRACHY_GROUPS
    pdr = brachy(BrachyTreatmentType.PDR, number_of_pulses=10, pulse_repetition_interval=3600.0)
    assert parse_rtplan(build_brachy(pdr)).brachy == pdr


def test_brachy_split() -> None:
    parts = split_rtplan(build_brachy(), config=CONFIG)
    assert [[a.number for a in parse_rtplan(p).brachy.setups] for p in parts] == [[1], [2]]
    assert [p.RTPlanLabel for p in parts] == ["Prostate H (1/2)", "Prostate H (2/2)"]  # SH: 16
    assert all(p.ReferencedRTPlanSequence[0].RTPlanRelationship == "PARTIAL" for p in parts)


def test_brachy_bad_input() -> None:
    with pytest.raises(InvalidInputError, match="no control points"):
        build_brachy(brachy(control_points=()))
    with pytest.raises(InvalidInputError, match="step_size"):
        build_brachy(brachy(step_size=None))
    with pytest.raises(InvalidInputError, match="source 9"):
        build_brachy(brachy(referenced_source_number=9))
    with pytest.raises(InvalidInputError, match="application setup"):
        build_brachy_rtplan(brachy(), (FractionGroup(1, 1, (), 1, (ReferencedBrachySetup(5),)),),
                            label="x", structure_set_uid=STRUCTURE_SET, config=CONFIG)
    ds = build_brachy()
    del ds.ApplicationSetupSequence[0].ChannelSequence[0].BrachyControlPointSequence
    with pytest.raises(InvalidInputError, match="channel 1.*control points"):
        parse_rtplan(ds)


@pytest.mark.interop
@pytest.mark.skipif(not dciodvfy_available(), reason="dciodvfy (dicom3tools) not installed")
@pytest.mark.parametrize("kind", ["HDR", "PDR", "split"])
def test_brachy_dciodvfy_has_no_errors(tmp_path, kind: str) -> None:  # noqa: ANN001
    if kind == "PDR":
        datasets = [build_brachy(brachy(BrachyTreatmentType.PDR, number_of_pulses=10,
                                        pulse_repetition_interval=3600.0))]
    elif kind == "split":
        datasets = split_rtplan(build_brachy(), config=CONFIG)
    else:
        datasets = [build_brachy()]
    for ds in datasets:
        result = validate_file(write_rtplan(ds, tmp_path))
        assert result.dciodvfy_ran and result.iod == "RTPlan"
        # dciodvfy evaluates "Brachy Treatment Type is PDR" inside the channel item, where it
        # is absent, and so rejects Number of Pulses and Pulse Repetition Interval, which
        # PS3.3 C.8.8.15 requires for PDR: the only errors allowed, and only for PDR.
        known = "dciodvfy: Error - Attribute present when condition unsatisfied"
        errors = [e for e in result.errors if not (
            kind == "PDR" and e.startswith(known)
            and ("<NumberOfPulses>" in e or "<PulseRepetitionInterval>" in e))]
        assert errors == [], errors



def test_static_beams_of_the_demo_phantom(tmp_path) -> None:  # noqa: ANN001
    """How ``rtforge demo`` writes its phantom plan: PHANTOM_BEAMS through static_beam."""
    from rtforge.workflows.demo import PHANTOM_BEAMS, TARGET_CENTRE

    beams = tuple(static_beam(n, name, gantry=gantry, collimator=collimator, couch=couch,
                              jaws=jaws, isocenter=TARGET_CENTRE)
                  for n, (name, gantry, collimator, couch, jaws) in enumerate(PHANTOM_BEAMS,
                                                                                start=1))
    group = FractionGroup(1, 5, tuple(ReferencedBeam(b.number, 0.5, 100.0) for b in beams), 0)
    ds = build_rtplan(beams, (group,), SETUPS, label="PHANTOM", structure_set_uid=STRUCTURE_SET,
                      source=source(), config=CONFIG, timestamp=WHEN)
    plan = read_rtplan(write_rtplan(ds, tmp_path))
    assert plan.beams == beams
    rao = plan.beam(3)
    assert rao.jaws() == (-25.0, 35.0, -30.0, 30.0)
    mlc = rao.control_points[0].position("MLCX")
    assert mlc is not None and len(mlc) == 80  # 40 pairs of 10 mm: bank A, then bank B
    assert mlc[40 + 17] == 35.0 and mlc[40 + 0] == -25.0  # pair 18 (y -30..-20) open, 1 shut
    with pytest.raises(InvalidInputError, match="jaws"):
        static_beam(1, "x", gantry=0.0, jaws=(10.0, -10.0, -5.0, 5.0), isocenter=(0, 0, 0))
    if dciodvfy_available():
        result = validate_file(next(tmp_path.rglob("*.dcm")))
        assert result.errors == [], result.errors
