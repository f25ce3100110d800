"""External-beam RT Plan builder (iPlan tables 8-27 to 8-32): beams, control points and
the module tables of RT Beams.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from pydicom import Dataset

from rtforge.config import ExportConfig
from rtforge.errors import InvalidInputError
from rtforge.io.modules import (
    FRAME_OF_REFERENCE,
    GENERAL_EQUIPMENT,
    GENERAL_STUDY,
    PATIENT,
    PATIENT_STUDY,
    RT_SERIES,
    SOP_COMMON,
    Module,
)
from rtforge.io.modules import ModuleAttribute as _A
from rtforge.io.rtplan._common import (
    RT_FRACTION_SCHEME,
    RT_GENERAL_PLAN,
    RT_PATIENT_SETUP,
    RT_PRESCRIPTION,
    ConeIdentifier,
    DoseRateMode,
    PlanExportOptions,
    _fmt,
    _item,
    _plan_dataset,
    _setup_items,
    _value_of,
)
from rtforge.io.rtplan._records import (
    Beam,
    BeamLimitingDevice,
    BeamType,
    ControlPoint,
    DevicePosition,
    DoseReference,
    FractionGroup,
    PatientSetup,
    RadiationType,
    RotationDirection,
    RTBeamLimitingDeviceType,
    RTPlanGeometry,
    ToleranceTable,
    TreatmentDeliveryType,
)
from rtforge.io.rtstruct import APPROVAL

__all__ = ["RT_PLAN_IOD", "static_beam", "build_rtplan"]


RT_TOLERANCE_TABLES = Module("RT Tolerance Tables", "C.8.8.11", "8-29", (
    _A("ToleranceTableSequence", "3", note="iPlan: ALWAYS in the module"),
))


RT_BEAMS = Module("RT Beams", "C.8.8.14", "8-32", (
    _A("BeamSequence", "1"),
))


#: The modules of the RT Plan IOD as rtforge writes it (iPlan table 8-1's plan rows; the
#: Prescription and Tolerance Tables modules only when the plan has them).
RT_PLAN_IOD: tuple[Module, ...] = (
    PATIENT, GENERAL_STUDY, PATIENT_STUDY, RT_SERIES, FRAME_OF_REFERENCE, GENERAL_EQUIPMENT,
    RT_GENERAL_PLAN, RT_PRESCRIPTION, RT_TOLERANCE_TABLES, RT_PATIENT_SETUP, RT_FRACTION_SCHEME,
    RT_BEAMS, APPROVAL, SOP_COMMON,
)


_TOLERANCE_TABLE_ITEM = Module("Tolerance Table Sequence item", "C.8.8.11", "8-29", (
    _A("ToleranceTableNumber", "1"),
    _A("ToleranceTableLabel", "3", note="iPlan: ALWAYS, from the machine profile"),
))


_BEAM_LIMITING_DEVICE_ITEM = Module("Beam Limiting Device Sequence item", "C.8.8.14", "8-32", (
    _A("RTBeamLimitingDeviceType", "1"),
    _A("SourceToBeamLimitingDeviceDistance", "3"),
    _A("NumberOfLeafJawPairs", "1"),
    _A("LeafPositionBoundaries", "3", note="PS3.3 1C: MLC only"),
))


_WEDGE_ITEM = Module("Wedge Sequence item", "C.8.8.14", "8-32", (
    _A("WedgeNumber", "1"),
    _A("WedgeType", "2", note="STANDARD"),
    _A("WedgeID", "3", note="Note 8-12: the cone identifier"),
    _A("WedgeAngle", "2", note="iPlan: EMPTY (a cone)"),
    _A("WedgeFactor", "2", note="iPlan: EMPTY"),
    _A("WedgeOrientation", "2", note="iPlan: EMPTY"),
))


_BLOCK_ITEM = Module("Block Sequence item", "C.8.8.14", "8-32", (
    _A("BlockTrayID", "3", note="Note 8-12: the cone identifier"),
    _A("SourceToBlockTrayDistance", "2"),
    _A("BlockType", "1", note="APERTURE"),
    _A("BlockDivergence", "2"),
    _A("BlockNumber", "1"),
    _A("MaterialID", "2"),
    _A("BlockThickness", "2", note="PS3.3 2C; iPlan: EMPTY"),
    _A("BlockTransmission", "2", note="PS3.3 2C; iPlan: EMPTY"),
    _A("BlockNumberOfPoints", "2", note="iPlan: EMPTY (a cone has no outline)"),
    _A("BlockData", "2", note="iPlan: EMPTY"),
))


_APPLICATOR_ITEM = Module("Applicator Sequence item", "C.8.8.14", "8-32", (
    _A("ApplicatorID", "1", note="Note 8-12: the cone identifier"),
    _A("ApplicatorType", "1", note="STEREOTACTIC"),
))


_BEAM_ITEM = Module("Beam Sequence item", "C.8.8.14", "8-32", (
    _A("Manufacturer", "3", note="iPlan: ALWAYS; Note 8-10 override"),
    _A("ManufacturerModelName", "3"),
    _A("TreatmentMachineName", "2"),
    _A("PrimaryDosimeterUnit", "3", note="iPlan: MU"),
    _A("SourceAxisDistance", "3", note="iPlan: ALWAYS"),
    _A("BeamLimitingDeviceSequence", "1"),
    _A("BeamNumber", "1"),
    _A("BeamName", "3", note="iPlan: ALWAYS (Note 8-9)"),
    _A("BeamDescription", "3", note="iPlan: ALWAYS (Note 8-9)"),
    _A("BeamType", "1"),
    _A("RadiationType", "2"),
    _A("TreatmentDeliveryType", "3", note="iPlan: TREATMENT"),
    _A("NumberOfWedges", "1"),
    _A("WedgeSequence", "3", note="PS3.3 1C: cones only (Note 8-12)"),
    _A("NumberOfCompensators", "1"),
    _A("NumberOfBoli", "1"),
    _A("NumberOfBlocks", "1"),
    _A("BlockSequence", "3", note="PS3.3 1C: cones only (Note 8-12)"),
    _A("ApplicatorSequence", "3", note="cones only (Note 8-12)"),
    _A("FinalCumulativeMetersetWeight", "1", note="PS3.3 1C; always written"),
    _A("NumberOfControlPoints", "1"),
    _A("ControlPointSequence", "1"),
    _A("ReferencedPatientSetupNumber", "3", note="iPlan: ALWAYS"),
))


_DEVICE_POSITION_ITEM = Module("Beam Limiting Device Position Sequence item", "C.8.8.14",
                               "8-32", (
    _A("RTBeamLimitingDeviceType", "1"),
    _A("LeafJawPositions", "1"),
))


_WEDGE_POSITION_ITEM = Module("Wedge Position Sequence item", "C.8.8.14", "8-32", (
    _A("WedgePosition", "1", note="IN"),
    _A("ReferencedWedgeNumber", "1"),
))


_REFERENCED_DOSE_REFERENCE_ITEM = Module("Referenced Dose Reference Sequence item", "C.8.8.14",
                                         "8-32", (
    _A("ReferencedDoseReferenceNumber", "1"),
    _A("CumulativeDoseReferenceCoefficient", "2", note="PS3.3 2C; cumulative meterset fraction"),
))


# A control point writes what changes (PS3.3 C.8.8.14.x): these are compared with the
# previous point.  Keyword, ControlPoint field, and whether the first point must have it.
_CP_VALUES: tuple[tuple[str, str, bool], ...] = (
    ("NominalBeamEnergy", "nominal_beam_energy", False),
    ("GantryAngle", "gantry_angle", True),
    ("GantryRotationDirection", "gantry_rotation_direction", True),
    ("BeamLimitingDeviceAngle", "beam_limiting_device_angle", True),
    ("BeamLimitingDeviceRotationDirection", "beam_limiting_device_rotation_direction", True),
    ("PatientSupportAngle", "patient_support_angle", True),
    ("PatientSupportRotationDirection", "patient_support_rotation_direction", True),
    ("TableTopEccentricAngle", "table_top_eccentric_angle", True),
    ("TableTopPitchAngle", "table_top_pitch_angle", True),
    ("TableTopRollAngle", "table_top_roll_angle", True),
    ("TableTopVerticalPosition", "table_top_vertical_position", True),
    ("TableTopLongitudinalPosition", "table_top_longitudinal_position", True),
    ("TableTopLateralPosition", "table_top_lateral_position", True),
    ("IsocenterPosition", "isocenter_position", True),
    ("SourceToSurfaceDistance", "source_to_surface_distance", False),
)


_CONTROL_POINT_ITEM = Module("Control Point Sequence item", "C.8.8.14", "8-32", (
    _A("ControlPointIndex", "1"),
    _A("CumulativeMetersetWeight", "2"),
    _A("ReferencedDoseReferenceSequence", "3", note="iPlan: ALWAYS; with a prescription"),
    _A("NominalBeamEnergy", "3", note="iPlan: ALWAYS (first point, then when it changes)"),
    _A("DoseRateSet", "3", note="Note 8-11"),
    _A("WedgePositionSequence", "3", note="PS3.3 1C: first point of a beam with a wedge"),
    _A("BeamLimitingDevicePositionSequence", "3", note="PS3.3 1C: first point, then changes"),
    _A("GantryAngle", "3", note="PS3.3 1C: first point, then changes"),
    _A("GantryRotationDirection", "3", note="PS3.3 1C: first point, then changes"),
    _A("BeamLimitingDeviceAngle", "3", note="PS3.3 1C"),
    _A("BeamLimitingDeviceRotationDirection", "3", note="PS3.3 1C"),
    _A("PatientSupportAngle", "3", note="PS3.3 1C"),
    _A("PatientSupportRotationDirection", "3", note="PS3.3 1C"),
    _A("TableTopEccentricAngle", "3", note="PS3.3 1C"),
    _A("TableTopEccentricRotationDirection", "3", note="PS3.3 1C, NONE"),
    _A("TableTopPitchAngle", "3", note="PS3.3 1C"),
    _A("TableTopPitchRotationDirection", "3", note="PS3.3 1C, NONE"),
    _A("TableTopRollAngle", "3", note="PS3.3 1C"),
    _A("TableTopRollRotationDirection", "3", note="PS3.3 1C, NONE"),
    _A("TableTopVerticalPosition", "3", note="PS3.3 2C: first point (empty when unknown)"),
    _A("TableTopLongitudinalPosition", "3", note="PS3.3 2C: first point"),
    _A("TableTopLateralPosition", "3", note="PS3.3 2C: first point"),
    _A("IsocenterPosition", "3", note="PS3.3 2C: first point"),
    _A("SourceToSurfaceDistance", "3", note="iPlan: ANAP"),
))


_FIRST_POINT_EMPTY = ("TableTopVerticalPosition", "TableTopLongitudinalPosition",
                      "TableTopLateralPosition")


def _control_point_items(beam: Beam, options: PlanExportOptions,
                         dose_references: Sequence[DoseReference]) -> list[Dataset]:
    final = beam.final_cumulative_meterset_weight or 1.0
    items = []
    previous: ControlPoint | None = None
    for n, cp in enumerate(beam.control_points):
        values: dict[str, object] = {"ControlPointIndex": n,
                                     "CumulativeMetersetWeight": cp.cumulative_meterset_weight}
        for keyword, name, first in _CP_VALUES:
            value = getattr(cp, name)
            if previous is None:
                if value is None and first and keyword not in _FIRST_POINT_EMPTY:
                    raise InvalidInputError(f"beam {beam.number}: the first control point needs "
                                            f"{keyword}", tag=keyword)
                values[keyword] = _value_of(value)
            elif value != getattr(previous, name):
                values[keyword] = _value_of(value)
        if previous is None:
            values.update({"TableTopEccentricRotationDirection": "NONE",
                           "TableTopPitchRotationDirection": "NONE",
                           "TableTopRollRotationDirection": "NONE"})
            if options.dose_rate is DoseRateMode.NULL:
                values["DoseRateSet"] = 0
            elif options.dose_rate is DoseRateMode.DEFINED:
                values["DoseRateSet"] = options.defined_dose_rate
            if beam.cone_id and options.cone_identifier is ConeIdentifier.WEDGE_ID:
                values["WedgePositionSequence"] = [_item(_WEDGE_POSITION_ITEM, {
                    "WedgePosition": "IN", "ReferencedWedgeNumber": 1})]
        if options.dose_rate is DoseRateMode.ACTUAL and cp.dose_rate_set is not None and (
                previous is None or cp.dose_rate_set != previous.dose_rate_set):
            values["DoseRateSet"] = cp.dose_rate_set
        values["BeamLimitingDevicePositionSequence"] = [
            _item(_DEVICE_POSITION_ITEM, {"RTBeamLimitingDeviceType": d.type.value,
                                          "LeafJawPositions": list(d.positions)})
            for d in cp.device_positions
            if previous is None or previous.position(d.type) != d.positions]
        if dose_references and cp.cumulative_meterset_weight is not None:
            values["ReferencedDoseReferenceSequence"] = [
                _item(_REFERENCED_DOSE_REFERENCE_ITEM, {
                    "ReferencedDoseReferenceNumber": ref.number,
                    "CumulativeDoseReferenceCoefficient": cp.cumulative_meterset_weight / final})
                for ref in dose_references]
        ds = _item(_CONTROL_POINT_ITEM, values)
        for keyword in _FIRST_POINT_EMPTY:  # Type 2C: present, empty when unknown
            if previous is None and keyword not in ds:
                setattr(ds, keyword, None)
        items.append(ds)
        previous = cp
    return items


def _cone_values(beam: Beam, options: PlanExportOptions) -> dict[str, object]:
    where = options.cone_identifier
    cone = beam.cone_id
    return {
        "NumberOfWedges": 1 if cone and where is ConeIdentifier.WEDGE_ID else 0,
        "WedgeSequence": [_item(_WEDGE_ITEM, {"WedgeNumber": 1, "WedgeType": "STANDARD",
                                              "WedgeID": cone})]
        if cone and where is ConeIdentifier.WEDGE_ID else None,
        "NumberOfBlocks": 1 if cone and where is ConeIdentifier.BLOCK_TRAY_ID else 0,
        "BlockSequence": [_item(_BLOCK_ITEM, {"BlockTrayID": cone, "BlockType": "APERTURE",
                                              "BlockNumber": 1})]
        if cone and where is ConeIdentifier.BLOCK_TRAY_ID else None,
        "ApplicatorSequence": [_item(_APPLICATOR_ITEM, {"ApplicatorID": cone,
                                                        "ApplicatorType": "STEREOTACTIC"})]
        if cone and where is ConeIdentifier.APPLICATOR_ID else None,
    }


def _beam_item(beam: Beam, options: PlanExportOptions,
               dose_references: Sequence[DoseReference]) -> Dataset:
    if not beam.control_points:
        raise InvalidInputError(f"beam {beam.number} has no control points",
                                tag="ControlPointSequence")
    if beam.number_of_blocks and not (beam.cone_id and
                                      options.cone_identifier is ConeIdentifier.BLOCK_TRAY_ID):
        raise InvalidInputError(f"beam {beam.number} has {beam.number_of_blocks} block(s): only "
                                "a cone identifier can be written as a block", tag="NumberOfBlocks")
    fields = {"number": beam.number, "name": beam.name, "description": beam.description}
    values: dict[str, object] = {
        "Manufacturer": options.manufacturer if options.manufacturer is not None
        else beam.manufacturer,
        "TreatmentMachineName": beam.machine_name,
        "PrimaryDosimeterUnit": beam.primary_dosimeter_unit,
        "SourceAxisDistance": beam.source_axis_distance,
        "BeamLimitingDeviceSequence": [
            _item(_BEAM_LIMITING_DEVICE_ITEM, {
                "RTBeamLimitingDeviceType": d.type.value,
                "SourceToBeamLimitingDeviceDistance": d.source_to_device_distance,
                "NumberOfLeafJawPairs": d.number_of_pairs,
                "LeafPositionBoundaries": list(d.leaf_position_boundaries)
                if d.type.is_mlc and d.leaf_position_boundaries else None})
            for d in beam.beam_limiting_devices],
        "BeamNumber": beam.number,
        "BeamName": _fmt(options.beam_name, "beam_name", **fields),
        "BeamDescription": _fmt(options.beam_description, "beam_description", **fields),
        "BeamType": beam.beam_type.value,
        "RadiationType": beam.radiation_type.value,
        "TreatmentDeliveryType": _value_of(beam.treatment_delivery_type),
        "NumberOfCompensators": 0,
        "NumberOfBoli": 0,
        "FinalCumulativeMetersetWeight": beam.final_cumulative_meterset_weight
        if beam.final_cumulative_meterset_weight is not None else 1.0,
        "NumberOfControlPoints": len(beam.control_points),
        "ControlPointSequence": _control_point_items(beam, options, dose_references),
        "ReferencedPatientSetupNumber": beam.referenced_patient_setup_number,
    }
    values.update(_cone_values(beam, options))
    return _item(_BEAM_ITEM, values)


def _check_numbers(beams: Sequence[Beam], fraction_groups: Sequence[FractionGroup],
                   patient_setups: Sequence[PatientSetup]) -> None:
    numbers = [b.number for b in beams]
    if len(set(numbers)) != len(numbers):
        raise InvalidInputError(f"Beam Numbers must be unique, got {numbers}", tag="BeamNumber")
    if not fraction_groups:
        raise InvalidInputError("a plan needs at least one fraction group",
                                tag="FractionGroupSequence")
    for group in fraction_groups:
        missing = sorted(set(group.beam_numbers) - set(numbers))
        if missing:
            raise InvalidInputError(f"fraction group {group.number} references beam(s) "
                                    f"{', '.join(map(str, missing))} that the plan does not have",
                                    tag="ReferencedBeamNumber")
    setups = {s.number for s in patient_setups}
    if not setups:
        raise InvalidInputError("a plan needs at least one patient setup",
                                tag="PatientSetupSequence")
    for beam in beams:
        if beam.referenced_patient_setup_number not in (None, *setups):
            raise InvalidInputError(f"beam {beam.number} references patient setup "
                                    f"{beam.referenced_patient_setup_number}, which the plan does "
                                    "not have", tag="ReferencedPatientSetupNumber")


def static_beam(number: int, name: str, *, gantry: float, collimator: float = 0.0,
                couch: float = 0.0, jaws: tuple[float, float, float, float],
                isocenter: tuple[float, float, float], energy: float = 6.0,
                machine_name: str = "LINAC", sad: float = 1000.0,
                leaf_boundaries: Sequence[float] | None = None,
                leaves: Sequence[float] | None = None, setup_number: int = 1,
                description: str = "", dose_rate: float | None = None) -> Beam:
    """A STATIC photon beam record with jaws and an MLC, ready for :func:`build_rtplan`.

    Parameters
    ----------
    number : int
    name : str
    gantry, collimator, couch : float
        Degrees (IEC 61217).
    jaws : tuple of float
        ``(x1, x2, y1, y2)`` mm at the isocentre (ASYMX and ASYMY).
    isocenter : tuple of float
        mm, LPS.
    energy : float
        Nominal Beam Energy, MV.
    machine_name : str
    sad : float
        mm.
    leaf_boundaries : sequence of float, optional
        The MLCX pair edges across the leaves (mm); default 40 pairs of 10 mm.
    leaves : sequence of float, optional
        Leaf positions, bank A then bank B; default each pair open to the jaws
        where it lies within ``y1..y2``, closed (at ``x1``) elsewhere.
    setup_number : int
        Referenced Patient Setup Number.
    description : str
    dose_rate : float, optional
        Dose Rate Set, MU/min.

    Returns
    -------
    Beam
        Two control points (cumulative meterset weight 0 and 1).

    Raises
    ------
    InvalidInputError
        If the jaws are inverted or ``leaves`` does not match the boundaries.
    """
    x1, x2, y1, y2 = (float(v) for v in jaws)
    if x1 >= x2 or y1 >= y2:
        raise InvalidInputError(f"beam {number}: jaws {jaws} must have x1 < x2 and y1 < y2")
    bounds = tuple(float(b) for b in (leaf_boundaries if leaf_boundaries is not None
                                      else range(-200, 201, 10)))
    pairs = len(bounds) - 1
    if leaves is None:
        inside = [lo < y2 and hi > y1 for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)]
        positions = tuple([x1] * pairs + [x2 if open_ else x1 for open_ in inside])
    else:
        positions = tuple(float(v) for v in leaves)
    if len(positions) != 2 * pairs:
        raise InvalidInputError(f"beam {number}: {len(positions)} leaf positions for {pairs} "
                                f"pairs (expected {2 * pairs})", tag="LeafJawPositions")
    devices = (DevicePosition(RTBeamLimitingDeviceType.ASYMX, (x1, x2)),
               DevicePosition(RTBeamLimitingDeviceType.ASYMY, (y1, y2)),
               DevicePosition(RTBeamLimitingDeviceType.MLCX, positions))
    points = tuple(ControlPoint(
        index=n, cumulative_meterset_weight=float(n), nominal_beam_energy=energy,
        dose_rate_set=dose_rate, gantry_angle=gantry,
        gantry_rotation_direction=RotationDirection.NONE, beam_limiting_device_angle=collimator,
        beam_limiting_device_rotation_direction=RotationDirection.NONE,
        patient_support_angle=couch, patient_support_rotation_direction=RotationDirection.NONE,
        table_top_eccentric_angle=0.0, table_top_pitch_angle=0.0, table_top_roll_angle=0.0,
        table_top_vertical_position=None, table_top_longitudinal_position=None,
        table_top_lateral_position=None,
        isocenter_position=(float(isocenter[0]), float(isocenter[1]), float(isocenter[2])),
        source_to_surface_distance=None, device_positions=devices) for n in (0, 1))
    return Beam(
        number=number, name=name, description=description, beam_type=BeamType.STATIC,
        radiation_type=RadiationType.PHOTON,
        treatment_delivery_type=TreatmentDeliveryType.TREATMENT, machine_name=machine_name,
        manufacturer="", primary_dosimeter_unit="MU", source_axis_distance=sad,
        beam_limiting_devices=(BeamLimitingDevice(RTBeamLimitingDeviceType.ASYMX, 1),
                               BeamLimitingDevice(RTBeamLimitingDeviceType.ASYMY, 1),
                               BeamLimitingDevice(RTBeamLimitingDeviceType.MLCX, pairs, None,
                                                  bounds)),
        control_points=points, referenced_patient_setup_number=setup_number,
        final_cumulative_meterset_weight=1.0)


def build_rtplan(beams: Sequence[Beam], fraction_groups: Sequence[FractionGroup],
                 patient_setups: Sequence[PatientSetup], *, label: str, name: str = "",
                 description: str = "",
                 geometry: RTPlanGeometry | str = RTPlanGeometry.PATIENT,
                 structure_set_uid: str | None = None,
                 dose_references: Sequence[DoseReference] = (),
                 tolerance_tables: Sequence[ToleranceTable] = (),
                 source: Dataset | None = None,
                 options: PlanExportOptions | None = None,
                 series_uid: str | None = None, series_number: int = 1,
                 instance_number: int = 1, sop_instance_uid: str | None = None,
                 approval_status: str = "UNAPPROVED",
                 config: ExportConfig | None = None,
                 timestamp: datetime | None = None) -> Dataset:
    """An external-beam RT Plan data set (iPlan tables 8-27 to 8-32).

    Parameters
    ----------
    beams : sequence of Beam
        Their control points as :func:`parse_rtplan` returns them (every value
        in force at each point); only what changes is written after the first.
    fraction_groups : sequence of FractionGroup
    patient_setups : sequence of PatientSetup
        Each with a Patient Position.
    label, name, description : str
        Fill the ``{label}``, ``{name}``, ``{description}`` fields of the
        options' plan templates (Note 8-4).
    geometry : RTPlanGeometry or str
    structure_set_uid : str, optional
        SOP Instance UID of the RT Structure Set; required for ``PATIENT``.
    dose_references : sequence of DoseReference
        RT Prescription; referenced by every fraction group and control point.
    tolerance_tables : sequence of ToleranceTable
    source : pydicom.Dataset, optional
        The structure set or a CT header: patient, study and Frame of Reference
        are carried over (a new Study Instance UID otherwise).
    options : PlanExportOptions, optional
    series_uid, sop_instance_uid : str, optional
        New ones by default.
    series_number, instance_number : int
    approval_status : str
        ``UNAPPROVED`` (default), or ``APPROVED`` with today's review date.
    config : ExportConfig, optional
    timestamp : datetime, optional
        RT Plan, series and instance creation date and time (now by default).

    Returns
    -------
    pydicom.Dataset

    Raises
    ------
    InvalidInputError
        If a fraction group references a missing beam, beam numbers repeat, a
        beam references a missing patient setup or has no control points, a
        PATIENT plan has no structure set, the first control point lacks a
        required value, or a template is invalid.
    ConformanceError
        If a value breaks its VR.
    """
    options = options or PlanExportOptions()
    _check_numbers(beams, fraction_groups, patient_setups)
    return _plan_dataset(
        RT_PLAN_IOD, {
            "ToleranceTableSequence": [_item(_TOLERANCE_TABLE_ITEM, {
                "ToleranceTableNumber": t.number, "ToleranceTableLabel": t.label})
                for t in tolerance_tables],
            "PatientSetupSequence": _setup_items(patient_setups),
            "BeamSequence": [_beam_item(b, options, dose_references) for b in beams],
        }, fraction_groups, label=label, name=name, description=description,
        geometry=geometry, structure_set_uid=structure_set_uid,
        dose_references=dose_references, source=source, options=options, series_uid=series_uid,
        series_number=series_number, instance_number=instance_number,
        sop_instance_uid=sop_instance_uid, approval_status=approval_status, config=config,
        timestamp=timestamp)
