"""RT Plan: a parser of external-beam plans into typed, frozen records.

:func:`read_rtplan` reads a file (or takes a data set) into an :class:`RTPlan`:
plan label, name and description, geometry, fraction groups with their
referenced beams, patient setups, and beams with their beam limiting device
definitions and control points.  Brachytherapy plans (RT Brachy Application
Setups) and the IOD builders follow in this module (issue 6).

Control points
--------------
A control point in a file lists only what changes (PS3.3 C.8.8.14: gantry,
collimator and couch angles, isocentre, jaw and leaf positions are required in
the first item and then only when they change).  The parser resolves this:
every :class:`ControlPoint` holds the values in force at that point, carried
from earlier points where the file leaves them out.

Leaf/Jaw Positions
------------------
Positions are in mm in the IEC BEAM LIMITING DEVICE system, projected to the
isocentre plane.  A jaw pair is ``(x1, x2)`` (or ``(y1, y2)``); an MLC of ``N``
pairs lists bank A (the negative side) for pairs 1..N, then bank B.  Leaf
Position Boundaries are the ``N + 1`` edges of the pairs across the leaf
motion.

Notes
-----
PS3.3 C.8.8.9 (RT General Plan), C.8.8.12 (RT Patient Setup), C.8.8.13 (RT
Fraction Scheme), C.8.8.14 (RT Beams); iPlan tables 8-27 to 8-32.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError
from pydicom.tag import Tag
from pydicom.uid import RTPlanStorage

from rtforge.core.beam import BeamGeometry, PatientPosition, aperture_outline
from rtforge.errors import GeometryError, InvalidInputError

__all__ = [
    "RTPlanGeometry",
    "BeamType",
    "RadiationType",
    "TreatmentDeliveryType",
    "RotationDirection",
    "RTBeamLimitingDeviceType",
    "BeamLimitingDevice",
    "DevicePosition",
    "ControlPoint",
    "Beam",
    "ReferencedBeam",
    "FractionGroup",
    "PatientSetup",
    "RTPlan",
    "read_rtplan",
    "parse_rtplan",
]

class RTPlanGeometry(str, Enum):
    """RT Plan Geometry (300A,000C)."""

    PATIENT = "PATIENT"
    TREATMENT_DEVICE = "TREATMENT_DEVICE"


class BeamType(str, Enum):
    """Beam Type (300A,00C4)."""

    STATIC = "STATIC"
    DYNAMIC = "DYNAMIC"


class RadiationType(str, Enum):
    """Radiation Type (300A,00C6)."""

    PHOTON = "PHOTON"
    ELECTRON = "ELECTRON"
    NEUTRON = "NEUTRON"
    PROTON = "PROTON"


class TreatmentDeliveryType(str, Enum):
    """Treatment Delivery Type (300A,00CE)."""

    TREATMENT = "TREATMENT"
    OPEN_PORTFILM = "OPEN_PORTFILM"
    TRMT_PORTFILM = "TRMT_PORTFILM"
    CONTINUATION = "CONTINUATION"
    SETUP = "SETUP"


class RotationDirection(str, Enum):
    """Gantry, Beam Limiting Device and Patient Support Rotation Direction."""

    CW = "CW"
    CC = "CC"
    NONE = "NONE"


class RTBeamLimitingDeviceType(str, Enum):
    """RT Beam Limiting Device Type (300A,00B8)."""

    X = "X"
    Y = "Y"
    ASYMX = "ASYMX"
    ASYMY = "ASYMY"
    MLCX = "MLCX"
    MLCY = "MLCY"

    @property
    def is_mlc(self) -> bool:
        """True for a multileaf collimator."""
        return self in (RTBeamLimitingDeviceType.MLCX, RTBeamLimitingDeviceType.MLCY)

    @property
    def axis(self) -> int:
        """0 when the device moves along ``Xb``, 1 along ``Yb``."""
        return 0 if self.value.endswith("X") else 1


# ------------------------------------------------------------------ records
@dataclass(frozen=True)
class BeamLimitingDevice:
    """One item of Beam Limiting Device Sequence (300A,00B6).

    Parameters
    ----------
    type : RTBeamLimitingDeviceType
    number_of_pairs : int
        Number of Leaf/Jaw Pairs.
    source_to_device_distance : float or None
        mm, when given.
    leaf_position_boundaries : tuple of float or None
        The ``N + 1`` pair edges (mm, isocentre plane), MLC only.
    """

    type: RTBeamLimitingDeviceType
    number_of_pairs: int
    source_to_device_distance: float | None = None
    leaf_position_boundaries: tuple[float, ...] | None = None


@dataclass(frozen=True)
class DevicePosition:
    """One item of Beam Limiting Device Position Sequence (300A,011A).

    Parameters
    ----------
    type : RTBeamLimitingDeviceType
    positions : tuple of float
        Leaf/Jaw Positions (mm, isocentre plane): ``(x1, x2)`` for jaws; bank
        A then bank B for an MLC.
    """

    type: RTBeamLimitingDeviceType
    positions: tuple[float, ...]


@dataclass(frozen=True)
class ControlPoint:
    """A control point with every value in force there (see the module docstring).

    Angles in degrees, positions in mm.  Values a plan never gives are None
    (table-top positions, SSD, energy, dose rate); the table-top pitch and
    roll default to 0 when the plan has none.
    """

    index: int
    cumulative_meterset_weight: float | None
    nominal_beam_energy: float | None
    dose_rate_set: float | None
    gantry_angle: float
    gantry_rotation_direction: RotationDirection
    beam_limiting_device_angle: float
    beam_limiting_device_rotation_direction: RotationDirection
    patient_support_angle: float
    patient_support_rotation_direction: RotationDirection
    table_top_eccentric_angle: float
    table_top_pitch_angle: float
    table_top_roll_angle: float
    table_top_vertical_position: float | None
    table_top_longitudinal_position: float | None
    table_top_lateral_position: float | None
    isocenter_position: tuple[float, float, float]
    source_to_surface_distance: float | None
    device_positions: tuple[DevicePosition, ...]

    def position(self, device_type: str | RTBeamLimitingDeviceType) -> tuple[float, ...] | None:
        """Leaf/Jaw Positions of one device, or None when the beam has no such device."""
        wanted = RTBeamLimitingDeviceType(device_type)
        for item in self.device_positions:
            if item.type is wanted:
                return item.positions
        return None


@dataclass(frozen=True)
class Beam:
    """One item of Beam Sequence (300A,00B0).

    Parameters
    ----------
    number : int
        Beam Number.
    name, description : str
        Beam Name and Beam Description ('' when absent).
    beam_type : BeamType
    radiation_type : RadiationType
    treatment_delivery_type : TreatmentDeliveryType or None
    machine_name : str
        Treatment Machine Name.
    manufacturer : str
        Manufacturer of the machine ('' when absent).
    primary_dosimeter_unit : str
        ``MU``, ``MINUTE``, ... ('' when absent).
    source_axis_distance : float or None
        Source-Axis Distance (mm).
    beam_limiting_devices : tuple of BeamLimitingDevice
    control_points : tuple of ControlPoint
        Resolved, in Control Point Index order.
    referenced_patient_setup_number : int or None
    final_cumulative_meterset_weight : float or None
    number_of_blocks : int
        Number of Blocks (the blocks themselves are not read yet).
    """

    number: int
    name: str
    description: str
    beam_type: BeamType
    radiation_type: RadiationType
    treatment_delivery_type: TreatmentDeliveryType | None
    machine_name: str
    manufacturer: str
    primary_dosimeter_unit: str
    source_axis_distance: float | None
    beam_limiting_devices: tuple[BeamLimitingDevice, ...]
    control_points: tuple[ControlPoint, ...]
    referenced_patient_setup_number: int | None
    final_cumulative_meterset_weight: float | None
    number_of_blocks: int = 0

    def device(self, device_type: str | RTBeamLimitingDeviceType) -> BeamLimitingDevice | None:
        """The beam's definition of one device type, or None."""
        wanted = RTBeamLimitingDeviceType(device_type)
        return next((d for d in self.beam_limiting_devices if d.type is wanted), None)

    def jaws(self, control_point: int = 0) -> tuple[float, float, float, float]:
        """``(x1, x2, y1, y2)``: the field's rectangle in mm at the isocentre.

        From the X/ASYMX and Y/ASYMY jaws; along an axis without jaws, from the
        MLC's open extent (leaf tips, or the leaf boundaries across the leaves).

        Raises
        ------
        GeometryError
            If an axis is limited by no device at all.
        """
        cp = self._control_point(control_point)
        bounds: list[tuple[float, float]] = []
        for axis, jaw_types in ((0, ("X", "ASYMX")), (1, ("Y", "ASYMY"))):
            found = next((cp.position(t) for t in jaw_types if cp.position(t) is not None), None)
            if found is None:
                found = self._mlc_extent(cp, axis)
            if found is None:
                raise GeometryError(f"beam {self.number}: no jaw or MLC limits the field along "
                                    f"{'XY'[axis]}")
            bounds.append((float(found[0]), float(found[-1])))
        return (bounds[0][0], bounds[0][1], bounds[1][0], bounds[1][1])

    def aperture(self, control_point: int = 0) -> list[np.ndarray]:
        """The field outline(s) at one control point, in the collimator frame.

        Returns
        -------
        list of ndarray of shape (N, 2)
            Closed polygons ``(Xb, Yb)`` in mm at the isocentre: the MLC
            opening clipped to the jaws, or the jaw rectangle without an MLC.
        """
        x1, x2, y1, y2 = self.jaws(control_point)
        cp = self._control_point(control_point)
        for device in self.beam_limiting_devices:
            positions = cp.position(device.type)
            if device.type.is_mlc and positions is not None and device.leaf_position_boundaries:
                return aperture_outline((x1, x2, y1, y2), device.type.axis,
                                        np.array(device.leaf_position_boundaries),
                                        np.array(positions))
        return [np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]])]

    def _control_point(self, index: int) -> ControlPoint:
        if not 0 <= index < len(self.control_points):
            raise InvalidInputError(f"beam {self.number} has {len(self.control_points)} control "
                                    f"points; there is no control point {index}")
        return self.control_points[index]

    def _mlc_extent(self, cp: ControlPoint, axis: int) -> tuple[float, float] | None:
        for device in self.beam_limiting_devices:
            positions = cp.position(device.type)
            if not device.type.is_mlc or positions is None:
                continue
            n = device.number_of_pairs
            if device.type.axis == axis:
                a, b = np.array(positions[:n]), np.array(positions[n:])
                open_ = b > a
                if open_.any():
                    return float(a[open_].min()), float(b[open_].max())
            elif device.leaf_position_boundaries:
                return (device.leaf_position_boundaries[0], device.leaf_position_boundaries[-1])
        return None


@dataclass(frozen=True)
class ReferencedBeam:
    """One item of Referenced Beam Sequence (300C,0004) of a fraction group."""

    beam_number: int
    beam_dose: float | None
    beam_meterset: float | None


@dataclass(frozen=True)
class FractionGroup:
    """One item of Fraction Group Sequence (300A,0070)."""

    number: int
    fractions_planned: int | None
    referenced_beams: tuple[ReferencedBeam, ...]
    number_of_brachy_application_setups: int

    @property
    def beam_numbers(self) -> tuple[int, ...]:
        """The numbers of the beams this group delivers."""
        return tuple(b.beam_number for b in self.referenced_beams)


@dataclass(frozen=True)
class PatientSetup:
    """One item of Patient Setup Sequence (300A,0180).

    ``patient_position`` is None when the setup gives Patient Additional
    Position instead (a position outside the defined terms).
    """

    number: int
    patient_position: PatientPosition | None
    setup_technique: str


@dataclass(frozen=True)
class RTPlan:
    """An RT Plan as rtforge reads it.

    Parameters
    ----------
    sop_class_uid, sop_instance_uid, study_instance_uid, series_instance_uid : str
    frame_of_reference_uid : str
        '' when the plan has none.
    patient_id, patient_name : str
    label, name, description : str
        RT Plan Label, Name and Description ('' when absent).
    geometry : RTPlanGeometry
    fraction_groups : tuple of FractionGroup
    beams : tuple of Beam
    patient_setups : tuple of PatientSetup
    referenced_structure_set_uid : str
        '' when none.
    """

    sop_class_uid: str
    sop_instance_uid: str
    study_instance_uid: str
    series_instance_uid: str
    frame_of_reference_uid: str
    patient_id: str
    patient_name: str
    label: str
    name: str
    description: str
    geometry: RTPlanGeometry
    fraction_groups: tuple[FractionGroup, ...]
    beams: tuple[Beam, ...]
    patient_setups: tuple[PatientSetup, ...]
    referenced_structure_set_uid: str

    @property
    def beam_numbers(self) -> tuple[int, ...]:
        """Every beam's number, in the plan's order."""
        return tuple(b.number for b in self.beams)

    def beam(self, number: int) -> Beam:
        """The beam of that Beam Number.

        Raises
        ------
        InvalidInputError
            If the plan has no such beam (the error lists those it has).
        """
        for beam in self.beams:
            if beam.number == number:
                return beam
        have = ", ".join(str(n) for n in self.beam_numbers) or "none"
        raise InvalidInputError(f"plan {self.label!r} has no beam {number} (beams: {have})",
                                tag="BeamNumber")

    def fraction_group_of(self, beam_number: int) -> FractionGroup | None:
        """The first fraction group that delivers a beam, or None."""
        return next((g for g in self.fraction_groups if beam_number in g.beam_numbers), None)

    def patient_position(self, beam_number: int) -> PatientPosition:
        """The Patient Position of a beam's setup.

        Raises
        ------
        GeometryError
            If the beam's setup is missing or gives no supported Patient Position.
        """
        beam = self.beam(beam_number)
        number = beam.referenced_patient_setup_number
        setups = [s for s in self.patient_setups if s.number == number] if number is not None \
            else list(self.patient_setups[:1])
        if not setups:
            raise GeometryError(f"beam {beam_number}: its patient setup {number} is not in the "
                                "plan's Patient Setup Sequence")
        if setups[0].patient_position is None:
            raise GeometryError(f"beam {beam_number}: the patient setup gives no Patient Position "
                                "(a Patient Additional Position is not supported)")
        return setups[0].patient_position

    def beam_geometry(self, beam_number: int, *, sid: float = 1500.0, rows: int = 512,
                      columns: int = 512, pixel_spacing: tuple[float, float] = (1.0, 1.0),
                      control_point: int = 0, sad: float | None = None,
                      field_margin: float | None = None) -> BeamGeometry:
        """The projection geometry of a beam at one control point.

        Parameters
        ----------
        beam_number : int
        sid : float
            RT Image SID, mm.
        rows, columns : int
            Image size (with ``field_margin``, the largest size).
        pixel_spacing : tuple of float
            ``(Δc, Δr)`` at the receptor plane, mm.
        control_point : int
            Which control point's angles and isocentre (default the first).
        sad : float, optional
            Source-axis distance (mm) for a beam that gives none; the beam's
            own Source-Axis Distance always wins.
        field_margin : float, optional
            A "field DRR" (Oncentra's DRR Generation Field DRR and Field
            Margin): the image covers the field's rectangle plus this margin
            (mm at the isocentre) and is centred on it.

        Returns
        -------
        BeamGeometry

        Raises
        ------
        InvalidInputError
            If the beam or control point does not exist.
        GeometryError
            If the plan's geometry is TREATMENT_DEVICE, the beam has no SAD and
            none is given, the table top is pitched or rolled, or the patient
            position is not supported.
        """
        if self.geometry is not RTPlanGeometry.PATIENT:
            raise GeometryError(f"plan {self.label!r} has RT Plan Geometry "
                                f"{self.geometry.value}: its isocentre is not in patient "
                                "coordinates, so it cannot be placed on a CT")
        beam = self.beam(beam_number)
        cp = beam._control_point(control_point)
        distance = beam.source_axis_distance if beam.source_axis_distance is not None else sad
        if distance is None:
            raise GeometryError(f"beam {beam_number} gives no Source-Axis Distance (300A,00B4); "
                                "pass sad")
        if cp.table_top_pitch_angle % 360 or cp.table_top_roll_angle % 360:
            raise GeometryError(f"beam {beam_number}: table top pitch/roll "
                                f"({cp.table_top_pitch_angle:g}, {cp.table_top_roll_angle:g} deg) "
                                "is not supported")
        geometry = BeamGeometry(
            gantry_angle=cp.gantry_angle, isocenter=np.array(cp.isocenter_position),
            collimator_angle=cp.beam_limiting_device_angle, couch_angle=cp.patient_support_angle,
            table_top_eccentric_angle=cp.table_top_eccentric_angle, sad=distance, sid=sid,
            rows=rows, columns=columns, pixel_spacing=pixel_spacing,
            patient_position=self.patient_position(beam_number))
        if field_margin is None:
            return geometry
        return geometry.fitted_to_field(beam.jaws(control_point), field_margin)


# ------------------------------------------------------------------ parser
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
    )


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
                                                 _int) or 0)


def _setup(item: Dataset, n: int) -> PatientSetup:
    number = _req(item, "PatientSetupNumber", f"Patient Setup Sequence item {n}", _int)
    where = f"patient setup {number}"
    return PatientSetup(number=number,
                        patient_position=_opt(item, "PatientPosition", where, _position),
                        setup_technique=_opt(item, "SetupTechnique", where, _text) or "")


def parse_rtplan(ds: Dataset, path: str | os.PathLike | None = None) -> RTPlan:
    """An external-beam RT Plan data set as an :class:`RTPlan`.

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
        If ``ds`` is not an RT Plan, is a brachytherapy plan, lacks a required
        attribute, holds a value outside its defined terms, or a fraction
        group references a beam the plan does not have.
    """
    where = str(path) if path is not None else "RT Plan"
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class != RTPlanStorage:
        raise InvalidInputError(f"not an RT Plan (SOP Class UID {sop_class or 'missing'})",
                                path=path, tag="SOPClassUID")
    if "BeamSequence" not in ds:
        kind = "a brachytherapy plan" if "ApplicationSetupSequence" in ds else "a plan without beams"
        raise InvalidInputError(f"{kind}: only external-beam plans are read so far",
                                path=path, tag="BeamSequence")
    try:
        beams = tuple(_beam(item, n) for n, item in enumerate(ds.BeamSequence, start=1))
        groups = tuple(_fraction_group(item, n)
                       for n, item in enumerate(ds.get("FractionGroupSequence") or [], start=1))
        setups = tuple(_setup(item, n)
                       for n, item in enumerate(ds.get("PatientSetupSequence") or [], start=1))
        geometry = _opt(ds, "RTPlanGeometry", where, _enum(RTPlanGeometry)) \
            or RTPlanGeometry.PATIENT
    except InvalidInputError as exc:
        raise InvalidInputError(exc.reason, path=path, tag=exc.tag) from None
    numbers = {b.number for b in beams}
    for group in groups:
        missing = sorted(set(group.beam_numbers) - numbers)
        if missing:
            raise InvalidInputError(f"fraction group {group.number} references beam(s) "
                                    f"{', '.join(map(str, missing))} that the plan does not have",
                                    path=path, tag="ReferencedBeamNumber")
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
    )


def read_rtplan(source: str | os.PathLike | Dataset) -> RTPlan:
    """Read an external-beam RT Plan file.

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

