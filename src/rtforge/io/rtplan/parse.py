"""RT Plan parser: a file or data set into an :class:`~rtforge.io.rtplan.RTPlan`.

A control point in a file lists only what changes (PS3.3 C.8.8.14); the parser
carries the values in force from earlier points, so every
:class:`~rtforge.io.rtplan.ControlPoint` is complete.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError
from pydicom.tag import Tag
from pydicom.uid import RTPlanStorage

from rtforge.core.beam import PatientPosition
from rtforge.errors import GeometryError, InvalidInputError
from rtforge.io.dicomfile import sop_class_name
from rtforge.io.rtplan._brachy_records import (
    ApplicationSetup,
    BrachyApplicationSetups,
    BrachyChannel,
    BrachyControlPoint,
    BrachySource,
    BrachyTreatmentTechnique,
    BrachyTreatmentType,
    ChannelShield,
    SourceMovementType,
)
from rtforge.io.rtplan._common import _check_references
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
    ReferencedBeam,
    ReferencedBrachySetup,
    RotationDirection,
    RTBeamLimitingDeviceType,
    RTPlan,
    RTPlanGeometry,
    ToleranceTable,
    TreatmentDeliveryType,
)

__all__ = ["parse_rtplan", "read_rtplan"]


_T = TypeVar("_T")


_E = TypeVar("_E", bound=Enum)


def _label(keyword: str) -> str:
    tag = Tag(keyword)
    return f"{keyword} ({tag.group:04X},{tag.element:04X})"


def _opt(ds: Dataset, keyword: str, where: str, convert: Callable[[object], _T]) -> _T | None:
    """``convert(ds.keyword)``, or None when the attribute is absent or empty."""
    value = ds.get(keyword)
    if value is None or value == "" or (isinstance(value, list | tuple) and not value):
        return None
    try:
        return convert(value)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"{where}: {_label(keyword)} {value!r} is not valid: {exc}",
                                tag=keyword) from None


def _req(ds: Dataset, keyword: str, where: str, convert: Callable[[object], _T]) -> _T:
    """``convert(ds.keyword)``; an error when the attribute is absent or empty."""
    value = _opt(ds, keyword, where, convert)
    if value is None:
        raise InvalidInputError(f"{where}: {_label(keyword)} is missing or empty", tag=keyword)
    return value


def _finite(value: object) -> float:
    v = float(str(value))
    if not math.isfinite(v):
        raise ValueError("not a finite number")
    return v


def _floats(value: object) -> tuple[float, ...]:
    if isinstance(value, str) or not isinstance(value, Iterable):
        return (_finite(value),)
    return tuple(_finite(v) for v in value)


def _text(value: object) -> str:
    return str(value).strip()


def _int(value: object) -> int:
    return int(str(value))


def _enum(kind: type[_E]) -> Callable[[object], _E]:
    def convert(value: object) -> _E:
        text = str(value).strip().upper()
        try:
            return kind(text)
        except ValueError:
            names = ", ".join(str(m.value) for m in kind)
            raise ValueError(f"not one of the defined terms {names}") from None
    return convert


def _position(value: object) -> PatientPosition:
    try:
        return PatientPosition.parse(str(value))
    except GeometryError as exc:
        raise ValueError(str(exc)) from None


def _devices(beam: Dataset, where: str) -> tuple[BeamLimitingDevice, ...]:
    out = []
    for n, item in enumerate(beam.get("BeamLimitingDeviceSequence") or [], start=1):
        at = f"{where} > Beam Limiting Device {n}"
        kind = _req(item, "RTBeamLimitingDeviceType", at, _enum(RTBeamLimitingDeviceType))
        pairs = _req(item, "NumberOfLeafJawPairs", at, _int)
        boundaries = _opt(item, "LeafPositionBoundaries", at, _floats)
        if kind.is_mlc and boundaries is not None and len(boundaries) != pairs + 1:
            raise InvalidInputError(f"{at}: {len(boundaries)} Leaf Position Boundaries for "
                                    f"{pairs} leaf pairs (expected {pairs + 1})",
                                    tag="LeafPositionBoundaries")
        out.append(BeamLimitingDevice(kind, pairs,
                                      _opt(item, "SourceToBeamLimitingDeviceDistance", at, _finite),
                                      boundaries))
    return tuple(out)


# Control-point attributes carried from the previous point when absent.
_CARRIED = {
    "nominal_beam_energy": ("NominalBeamEnergy", _finite),
    "dose_rate_set": ("DoseRateSet", _finite),
    "gantry_angle": ("GantryAngle", _finite),
    "gantry_rotation_direction": ("GantryRotationDirection", _enum(RotationDirection)),
    "beam_limiting_device_angle": ("BeamLimitingDeviceAngle", _finite),
    "beam_limiting_device_rotation_direction": ("BeamLimitingDeviceRotationDirection",
                                                _enum(RotationDirection)),
    "patient_support_angle": ("PatientSupportAngle", _finite),
    "patient_support_rotation_direction": ("PatientSupportRotationDirection",
                                           _enum(RotationDirection)),
    "table_top_eccentric_angle": ("TableTopEccentricAngle", _finite),
    "table_top_pitch_angle": ("TableTopPitchAngle", _finite),
    "table_top_roll_angle": ("TableTopRollAngle", _finite),
    "table_top_vertical_position": ("TableTopVerticalPosition", _finite),
    "table_top_longitudinal_position": ("TableTopLongitudinalPosition", _finite),
    "table_top_lateral_position": ("TableTopLateralPosition", _finite),
    "isocenter_position": ("IsocenterPosition", _floats),
    "source_to_surface_distance": ("SourceToSurfaceDistance", _finite),
}


# What the first control point must give (the rest default as stated).
_FIRST_REQUIRED = ("gantry_angle", "beam_limiting_device_angle", "patient_support_angle",
                   "isocenter_position")


_FIRST_DEFAULTS: dict[str, object] = {
    "gantry_rotation_direction": RotationDirection.NONE,
    "beam_limiting_device_rotation_direction": RotationDirection.NONE,
    "patient_support_rotation_direction": RotationDirection.NONE,
    "table_top_eccentric_angle": 0.0, "table_top_pitch_angle": 0.0, "table_top_roll_angle": 0.0,
}


def _control_points(beam: Dataset, where: str,
                    devices: tuple[BeamLimitingDevice, ...]) -> tuple[ControlPoint, ...]:
    items = list(beam.get("ControlPointSequence") or [])
    if not items:
        raise InvalidInputError(f"{where}: Control Point Sequence (300A,0111) is empty",
                                tag="ControlPointSequence")
    state: dict[str, Any] = dict(_FIRST_DEFAULTS)  # values of the _CARRIED types
    positions: dict[RTBeamLimitingDeviceType, tuple[float, ...]] = {}
    pairs = {d.type: d.number_of_pairs for d in devices}
    out = []
    for n, item in enumerate(items):
        at = f"{where} > Control Point {n}"
        for name, (keyword, convert) in _CARRIED.items():
            value = _opt(item, keyword, at, convert)
            if value is not None:
                state[name] = value
        if n == 0:
            missing = [_CARRIED[k][0] for k in _FIRST_REQUIRED if k not in state]
            if missing:
                raise InvalidInputError(f"{at}: the first control point lacks "
                                        f"{', '.join(missing)}", tag=missing[0])
        iso = state["isocenter_position"]
        if len(iso) != 3:
            raise InvalidInputError(f"{at}: Isocenter Position needs 3 values, got {iso}",
                                    tag="IsocenterPosition")
        for m, dev in enumerate(item.get("BeamLimitingDevicePositionSequence") or [], start=1):
            dat = f"{at} > Beam Limiting Device Position {m}"
            kind = _req(dev, "RTBeamLimitingDeviceType", dat, _enum(RTBeamLimitingDeviceType))
            values = _req(dev, "LeafJawPositions", dat, _floats)
            expected = 2 * pairs.get(kind, len(values) // 2)
            if len(values) != expected:
                raise InvalidInputError(f"{dat}: {len(values)} Leaf/Jaw Positions, expected "
                                        f"{expected}", tag="LeafJawPositions")
            positions[kind] = values
        index = _opt(item, "ControlPointIndex", at, _int)
        out.append(ControlPoint(
            index=n if index is None else index,
            cumulative_meterset_weight=_opt(item, "CumulativeMetersetWeight", at, _finite),
            device_positions=tuple(DevicePosition(k, v) for k, v in positions.items()),
            **{name: state.get(name) for name in _CARRIED},  # type: ignore[arg-type]
        ))
    return tuple(out)


def _beam(item: Dataset, n: int) -> Beam:
    number = _req(item, "BeamNumber", f"Beam Sequence item {n}", _int)
    where = f"beam {number}"
    devices = _devices(item, where)
    name = _opt(item, "BeamName", where, _text) or ""
    return Beam(
        number=number,
        name=name,
        description=_opt(item, "BeamDescription", where, _text) or "",
        beam_type=_req(item, "BeamType", where, _enum(BeamType)),
        radiation_type=_req(item, "RadiationType", where, _enum(RadiationType)),
        treatment_delivery_type=_opt(item, "TreatmentDeliveryType", where,
                                     _enum(TreatmentDeliveryType)),
        machine_name=_opt(item, "TreatmentMachineName", where, _text) or "",
        manufacturer=_opt(item, "Manufacturer", where, _text) or "",
        primary_dosimeter_unit=_opt(item, "PrimaryDosimeterUnit", where, _text) or "",
        source_axis_distance=_opt(item, "SourceAxisDistance", where, _finite),
        beam_limiting_devices=devices,
        control_points=_control_points(item, where, devices),
        referenced_patient_setup_number=_opt(item, "ReferencedPatientSetupNumber", where, _int),
        final_cumulative_meterset_weight=_opt(item, "FinalCumulativeMetersetWeight", where,
                                              _finite),
        number_of_blocks=_opt(item, "NumberOfBlocks", where, _int) or 0,
        cone_id=_cone_id(item),
        **_fluence_mode(item, where),
    )


def _fluence_mode(beam: Dataset, where: str) -> dict[str, str]:
    """Fluence Mode and Fluence Mode ID of Primary Fluence Mode Sequence, or ''."""
    for item in beam.get("PrimaryFluenceModeSequence") or []:
        return {"fluence_mode": _opt(item, "FluenceMode", where, _text) or "",
                "fluence_mode_id": _opt(item, "FluenceModeID", where, _text) or ""}
    return {}


def _cone_id(beam: Dataset) -> str:
    """The conical collimator identifier (Note 8-12), or ''."""
    for item in beam.get("ApplicatorSequence") or []:
        if str(item.get("ApplicatorType", "")).strip() == "STEREOTACTIC":
            return _text(item.get("ApplicatorID", "") or "")
    for item in beam.get("WedgeSequence") or []:
        if item.get("WedgeAngle") in (None, ""):
            return _text(item.get("WedgeID", "") or "")
    for item in beam.get("BlockSequence") or []:
        if not item.get("BlockNumberOfPoints"):
            return _text(item.get("BlockTrayID", "") or "")
    return ""


def _dose_reference(item: Dataset, n: int) -> DoseReference:
    number = _req(item, "DoseReferenceNumber", f"Dose Reference Sequence item {n}", _int)
    where = f"dose reference {number}"
    point = _opt(item, "DoseReferencePointCoordinates", where, _floats)
    return DoseReference(
        number=number,
        structure_type=_req(item, "DoseReferenceStructureType", where, _text),
        description=_opt(item, "DoseReferenceDescription", where, _text) or "",
        target_prescription_dose=_opt(item, "TargetPrescriptionDose", where, _finite),
        referenced_roi_number=_opt(item, "ReferencedROINumber", where, _int),
        point_coordinates=(point[0], point[1], point[2]) if point and len(point) == 3 else None,
        dose_reference_type=_opt(item, "DoseReferenceType", where, _text) or "TARGET",
        constraint_doses={keyword: value for keyword in _CONSTRAINT_KEYWORDS
                          if (value := _opt(item, keyword, where, _finite)) is not None})


#: Dose Reference Sequence's constraint attributes (PS3.3 C.8.8.10), as plan info shows them.
_CONSTRAINT_KEYWORDS = (
    "ConstraintWeight", "DeliveryWarningDose", "DeliveryMaximumDose", "TargetMinimumDose",
    "TargetMaximumDose", "TargetUnderdoseVolumeFraction",
    "OrganAtRiskFullVolumeDose", "OrganAtRiskLimitDose", "OrganAtRiskMaximumDose",
    "OrganAtRiskOverdoseVolumeFraction")


def _brachy_control_points(item: Dataset, where: str) -> tuple[BrachyControlPoint, ...]:
    points = []
    for n, cp in enumerate(item.get("BrachyControlPointSequence") or []):
        at = f"{where} > Brachy Control Point {n}"
        position = _opt(cp, "ControlPoint3DPosition", at, _floats)
        points.append(BrachyControlPoint(
            index=_opt(cp, "ControlPointIndex", at, _int) or n,
            cumulative_time_weight=_opt(cp, "CumulativeTimeWeight", at, _finite),
            relative_position=_req(cp, "ControlPointRelativePosition", at, _finite),
            position=(position[0], position[1], position[2])
            if position and len(position) == 3 else None))
    if not points:
        raise InvalidInputError(f"{where}: Brachy Control Point Sequence (300A,02D0) is empty: "
                                "a channel needs its control points",
                                tag="BrachyControlPointSequence")
    return tuple(points)


def _channel(item: Dataset, setup: int, n: int) -> BrachyChannel:
    number = _req(item, "ChannelNumber", f"brachytherapy application setup {setup} > Channel "
                  f"Sequence item {n}", _int)
    where = f"brachytherapy application setup {setup} > channel {number}"
    tube = _opt(item, "TransferTubeNumber", where, _int)
    return BrachyChannel(
        number=number,
        length=_opt(item, "ChannelLength", where, _finite),
        total_time=_req(item, "ChannelTotalTime", where, _finite),
        source_movement_type=_req(item, "SourceMovementType", where, _enum(SourceMovementType)),
        referenced_source_number=_req(item, "ReferencedSourceNumber", where, _int),
        control_points=_brachy_control_points(item, where),
        final_cumulative_time_weight=_opt(item, "FinalCumulativeTimeWeight", where, _finite),
        number_of_pulses=_opt(item, "NumberOfPulses", where, _int),
        pulse_repetition_interval=_opt(item, "PulseRepetitionInterval", where, _finite),
        applicator_number=_opt(item, "SourceApplicatorNumber", where, _int),
        applicator_id=_opt(item, "SourceApplicatorID", where, _text) or "",
        applicator_type=_opt(item, "SourceApplicatorType", where, _text) or "",
        applicator_length=_opt(item, "SourceApplicatorLength", where, _finite),
        step_size=_opt(item, "SourceApplicatorStepSize", where, _finite),
        transfer_tube_number=tube,
        transfer_tube_length=_opt(item, "TransferTubeLength", where, _finite),
        shields=tuple(ChannelShield(_req(sh, "ChannelShieldNumber", where, _int),
                                    _opt(sh, "ChannelShieldID", where, _text) or "")
                      for sh in item.get("ChannelShieldSequence") or []),
        referenced_roi_number=_opt(item, "ReferencedROINumber", where, _int))


def _brachy(ds: Dataset) -> BrachyApplicationSetups:
    where = "brachytherapy plan"
    machines = ds.get("TreatmentMachineSequence") or [Dataset()]
    sources = []
    for n, item in enumerate(ds.get("SourceSequence") or [], start=1):
        at = f"brachytherapy Source Sequence item {n}"
        sources.append(BrachySource(
            number=_req(item, "SourceNumber", at, _int),
            isotope_name=_req(item, "SourceIsotopeName", at, _text),
            half_life_days=_req(item, "SourceIsotopeHalfLife", at, _finite),
            reference_air_kerma_rate=_req(item, "ReferenceAirKermaRate", at, _finite),
            strength_reference_date=_req(item, "SourceStrengthReferenceDate", at, _text),
            strength_reference_time=_req(item, "SourceStrengthReferenceTime", at, _text),
            source_type=_opt(item, "SourceType", at, _text) or "POINT",
            model_id=_opt(item, "SourceModelID", at, _text) or "",
            manufacturer=_opt(item, "SourceManufacturer", at, _text) or ""))
    setups = []
    for n, item in enumerate(ds.ApplicationSetupSequence, start=1):
        number = _req(item, "ApplicationSetupNumber",
                      f"brachytherapy Application Setup Sequence item {n}", _int)
        at = f"brachytherapy application setup {number}"
        setups.append(ApplicationSetup(
            number=number,
            setup_type=_req(item, "ApplicationSetupType", at, _text),
            name=_opt(item, "ApplicationSetupName", at, _text) or "",
            total_reference_air_kerma=_req(item, "TotalReferenceAirKerma", at, _finite),
            channels=tuple(_channel(ch, number, m)
                           for m, ch in enumerate(item.get("ChannelSequence") or [], start=1))))
    return BrachyApplicationSetups(
        technique=_req(ds, "BrachyTreatmentTechnique", where, _enum(BrachyTreatmentTechnique)),
        treatment_type=_req(ds, "BrachyTreatmentType", where, _enum(BrachyTreatmentType)),
        machine_name=_opt(machines[0], "TreatmentMachineName", where, _text) or "",
        machine_manufacturer=_opt(machines[0], "Manufacturer", where, _text) or "",
        sources=tuple(sources), setups=tuple(setups))


def _fraction_group(item: Dataset, n: int) -> FractionGroup:
    number = _req(item, "FractionGroupNumber", f"Fraction Group Sequence item {n}", _int)
    where = f"fraction group {number}"
    refs = []
    for m, ref in enumerate(item.get("ReferencedBeamSequence") or [], start=1):
        at = f"{where} > Referenced Beam {m}"
        refs.append(ReferencedBeam(
            beam_number=_req(ref, "ReferencedBeamNumber", at, _int),
            beam_dose=_opt(ref, "BeamDose", at, _finite),
            beam_meterset=_opt(ref, "BeamMeterset", at, _finite)))
    return FractionGroup(
        number=number,
        fractions_planned=_opt(item, "NumberOfFractionsPlanned", where, _int),
        referenced_beams=tuple(refs),
        number_of_brachy_application_setups=_opt(item, "NumberOfBrachyApplicationSetups", where,
                                                 _int) or 0,
        referenced_brachy_setups=tuple(
            ReferencedBrachySetup(
                _req(ref, "ReferencedBrachyApplicationSetupNumber", where, _int),
                _opt(ref, "BrachyApplicationSetupDose", where, _finite))
            for ref in item.get("ReferencedBrachyApplicationSetupSequence") or []))


def _setup(item: Dataset, n: int) -> PatientSetup:
    number = _req(item, "PatientSetupNumber", f"Patient Setup Sequence item {n}", _int)
    where = f"patient setup {number}"
    return PatientSetup(number=number,
                        patient_position=_opt(item, "PatientPosition", where, _position),
                        setup_technique=_opt(item, "SetupTechnique", where, _text) or "",
                        label=_opt(item, "PatientSetupLabel", where, _text) or "")


def parse_rtplan(ds: Dataset, path: str | os.PathLike | None = None) -> RTPlan:
    """An RT Plan data set (external-beam or brachytherapy) as an :class:`RTPlan`.

    Parameters
    ----------
    ds : pydicom.Dataset
    path : str or path-like, optional
        Named in errors.

    Returns
    -------
    RTPlan

    Raises
    ------
    InvalidInputError
        If ``ds`` is not an RT Plan, has neither beams nor application setups,
        lacks a required attribute, holds a value outside its defined terms, a
        fraction group references a beam or application setup the plan does
        not have, a brachytherapy channel has no control points or references
        a missing source.
    """
    where = str(path) if path is not None else "RT Plan"
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class != RTPlanStorage:
        raise InvalidInputError(f"not an RT Plan but "
                                f"{sop_class_name(sop_class) if sop_class else 'a data set'} "
                                f"(SOP Class UID {sop_class or 'missing'})",
                                path=path, tag="SOPClassUID")
    if "BeamSequence" not in ds and "ApplicationSetupSequence" not in ds:
        raise InvalidInputError("a plan without beams or application setups (neither Beam "
                                "Sequence nor Application Setup Sequence)", path=path,
                                tag="BeamSequence")
    try:
        beams = tuple(_beam(item, n) for n, item in enumerate(ds.get("BeamSequence") or [],
                                                                start=1))
        brachy = _brachy(ds) if "ApplicationSetupSequence" in ds else None
        groups = tuple(_fraction_group(item, n)
                       for n, item in enumerate(ds.get("FractionGroupSequence") or [], start=1))
        setups = tuple(_setup(item, n)
                       for n, item in enumerate(ds.get("PatientSetupSequence") or [], start=1))
        geometry = _opt(ds, "RTPlanGeometry", where, _enum(RTPlanGeometry)) \
            or RTPlanGeometry.PATIENT
        dose_references = tuple(
            _dose_reference(item, n)
            for n, item in enumerate(ds.get("DoseReferenceSequence") or [], start=1))
        tolerance_tables = tuple(
            ToleranceTable(_req(item, "ToleranceTableNumber", f"Tolerance Table {n}", _int),
                           _opt(item, "ToleranceTableLabel", f"Tolerance Table {n}", _text) or "")
            for n, item in enumerate(ds.get("ToleranceTableSequence") or [], start=1))
    except InvalidInputError as exc:
        raise InvalidInputError(exc.reason, path=path, tag=exc.tag) from None
    try:
        _check_references(beams, groups, brachy)
    except InvalidInputError as exc:
        raise InvalidInputError(exc.reason, path=path, tag=exc.tag) from None
    structure_sets = ds.get("ReferencedStructureSetSequence") or []
    return RTPlan(
        sop_class_uid=sop_class,
        sop_instance_uid=str(ds.get("SOPInstanceUID", "")),
        study_instance_uid=str(ds.get("StudyInstanceUID", "")),
        series_instance_uid=str(ds.get("SeriesInstanceUID", "")),
        frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "") or ""),
        patient_id=str(ds.get("PatientID", "") or ""),
        patient_name=str(ds.get("PatientName", "") or ""),
        label=_text(ds.get("RTPlanLabel", "") or ""),
        name=_text(ds.get("RTPlanName", "") or ""),
        description=_text(ds.get("RTPlanDescription", "") or ""),
        geometry=geometry,
        fraction_groups=groups,
        beams=beams,
        patient_setups=setups,
        referenced_structure_set_uid=str(structure_sets[0].get("ReferencedSOPInstanceUID", ""))
        if structure_sets else "",
        dose_references=dose_references,
        tolerance_tables=tolerance_tables,
        referenced_plans=tuple((str(item.get("ReferencedSOPInstanceUID", "")),
                                str(item.get("RTPlanRelationship", "") or ""))
                               for item in ds.get("ReferencedRTPlanSequence") or []),
        brachy=brachy,
    )


def read_rtplan(source: str | os.PathLike | Dataset) -> RTPlan:
    """Read an RT Plan file (external-beam or brachytherapy).

    Parameters
    ----------
    source : str, path-like or pydicom.Dataset

    Returns
    -------
    RTPlan

    Raises
    ------
    InvalidInputError
        If the file does not exist or is not DICOM, or as :func:`parse_rtplan`.
    """
    if isinstance(source, Dataset):
        return parse_rtplan(source)
    path = Path(source)
    if not path.is_file():
        raise InvalidInputError("RT Plan file not found", path=path)
    try:
        ds = dcmread(path)
    except InvalidDicomError as exc:
        raise InvalidInputError(f"not a DICOM file: {exc}", path=path) from None
    except Exception as exc:  # pydicom raises many kinds on damaged files
        raise InvalidInputError(f"cannot be read as DICOM: {type(exc).__name__}: {exc}",
                                path=path) from None
    return parse_rtplan(ds, path)
