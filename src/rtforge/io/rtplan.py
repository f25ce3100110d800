"""RT Plan: parser and builders of external-beam and brachytherapy plans, and plan splitting.

:func:`read_rtplan` reads a file (or takes a data set) into an :class:`RTPlan`:
plan label, name and description, geometry, fraction groups with their
referenced beams, patient setups, and beams with their beam limiting device
definitions and control points.  :func:`build_rtplan` writes an
external-beam plan from the same records (iPlan tables 8-27 to 8-32), and
:func:`split_rtplan` writes one plan per fraction group (iPlan Notes 8-5 and
8-8).  Brachytherapy plans (RT Brachy Application Setups, Oncentra 8.1.1.2.7.11)
are read into :attr:`RTPlan.brachy` and written by :func:`build_brachy_rtplan`.

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

import copy
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from pydicom import Dataset, dcmread
from pydicom.datadict import dictionary_VR
from pydicom.errors import InvalidDicomError
from pydicom.tag import Tag
from pydicom.uid import ExplicitVRLittleEndian, RTPlanStorage, RTStructureSetStorage

from rtforge.config import ExportConfig
from rtforge.core.beam import BeamGeometry, PatientPosition, aperture_outline
from rtforge.errors import GeometryError, InvalidInputError
from rtforge.io.charset import conformed, output_character_set
from rtforge.io.dicomfile import sop_class_name
from rtforge.io.fileset import instance_path, write_dataset_file
from rtforge.io.modules import (
    FRAME_OF_REFERENCE,
    GENERAL_EQUIPMENT,
    GENERAL_STUDY,
    MAX_VALUE_LENGTH,
    PATIENT,
    PATIENT_STUDY,
    RT_SERIES,
    SOP_COMMON,
    Module,
    build_dataset,
    carried_values,
    equipment_values,
    format_da,
    format_tm,
)
from rtforge.io.modules import ModuleAttribute as _A
from rtforge.io.rtstruct import APPROVAL
from rtforge.io.uids import new_uid

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
    "DoseReference",
    "ToleranceTable",
    "ReferencedBrachySetup",
    "BrachyTreatmentTechnique",
    "BrachyTreatmentType",
    "SourceMovementType",
    "BrachySource",
    "BrachyControlPoint",
    "ChannelShield",
    "BrachyChannel",
    "ApplicationSetup",
    "BrachyApplicationSetups",
    "build_brachy_rtplan",
    "DoseRateMode",
    "ConeIdentifier",
    "PlanExportOptions",
    "RT_PLAN_IOD",
    "RT_BRACHY_PLAN_IOD",
    "read_rtplan",
    "parse_rtplan",
    "build_rtplan",
    "static_beam",
    "split_rtplan",
    "write_rtplan",
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
    cone_id : str
        Identifier of a conical collimator ('' for none), written in Wedge
        ID, Block Tray ID or Applicator ID as :class:`PlanExportOptions`
        says (iPlan Note 8-12); read back from an outline-less block, an
        angle-less wedge or a STEREOTACTIC applicator.
    fluence_mode : str
        ``STANDARD`` or ``NON_STANDARD`` from Primary Fluence Mode Sequence
        (300A,0308), '' when absent.
    fluence_mode_id : str
        Fluence Mode ID of a NON_STANDARD mode (e.g. ``FFF``), '' otherwise.
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
    cone_id: str = ""
    fluence_mode: str = ""
    fluence_mode_id: str = ""

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
    referenced_brachy_setups: tuple[ReferencedBrachySetup, ...] = ()

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
    label: str = ""


@dataclass(frozen=True)
class ReferencedBrachySetup:
    """One item of Referenced Brachy Application Setup Sequence (300C,000A) of a fraction group."""

    setup_number: int
    dose: float | None = None


class BrachyTreatmentTechnique(str, Enum):
    """Brachy Treatment Technique (300A,0200)."""

    INTRALUMENARY = "INTRALUMENARY"
    INTRACAVITARY = "INTRACAVITARY"
    INTERSTITIAL = "INTERSTITIAL"
    CONTACT = "CONTACT"
    INTRAVASCULAR = "INTRAVASCULAR"
    PERMANENT = "PERMANENT"


class BrachyTreatmentType(str, Enum):
    """Brachy Treatment Type (300A,0202)."""

    MANUAL = "MANUAL"
    HDR = "HDR"
    MDR = "MDR"
    LDR = "LDR"
    PDR = "PDR"


class SourceMovementType(str, Enum):
    """Source Movement Type (300A,0288)."""

    STEPWISE = "STEPWISE"
    FIXED = "FIXED"
    OSCILLATING = "OSCILLATING"
    UNIDIRECTIONAL = "UNIDIRECTIONAL"


@dataclass(frozen=True)
class BrachySource:
    """One item of Source Sequence (300A,0210).

    Parameters
    ----------
    number : int
    isotope_name : str
        e.g. ``Ir-192``.
    half_life_days : float
        Source Isotope Half Life.
    reference_air_kerma_rate : float
        µGy/h in air at 1 m, at the strength reference date and time.
    strength_reference_date, strength_reference_time : str
        DA ``YYYYMMDD`` and TM ``HHMMSS``.
    source_type : str
        ``POINT``, ``LINE``, ``CYLINDER`` or ``SPHERE``.
    model_id, manufacturer : str
    """

    number: int
    isotope_name: str
    half_life_days: float
    reference_air_kerma_rate: float
    strength_reference_date: str
    strength_reference_time: str
    source_type: str = "POINT"
    model_id: str = ""
    manufacturer: str = ""


@dataclass(frozen=True)
class BrachyControlPoint:
    """One item of Brachy Control Point Sequence (300A,02D0).

    ``relative_position`` is mm along the channel from its tip end;
    ``position`` the 3D position (mm, LPS) when given.
    """

    index: int
    cumulative_time_weight: float | None
    relative_position: float
    position: tuple[float, float, float] | None = None


@dataclass(frozen=True)
class ChannelShield:
    """One item of Channel Shield Sequence (300A,0310)."""

    number: int
    shield_id: str = ""


@dataclass(frozen=True)
class BrachyChannel:
    """One item of Channel Sequence (300A,0280).

    Parameters
    ----------
    number : int
    length : float or None
        Channel Length, mm.
    total_time : float
        Channel Total Time, s.
    source_movement_type : SourceMovementType
    referenced_source_number : int
    control_points : tuple of BrachyControlPoint
    final_cumulative_time_weight : float or None
    number_of_pulses, pulse_repetition_interval : int, float or None
        PDR only (interval in s).
    applicator_number : int or None
    applicator_id, applicator_type : str
    applicator_length, step_size : float or None
        mm; the step size is required for STEPWISE movement.
    transfer_tube_number : int or None
    transfer_tube_length : float or None
    shields : tuple of ChannelShield
    referenced_roi_number : int or None
    """

    number: int
    length: float | None
    total_time: float
    source_movement_type: SourceMovementType
    referenced_source_number: int
    control_points: tuple[BrachyControlPoint, ...]
    final_cumulative_time_weight: float | None
    number_of_pulses: int | None = None
    pulse_repetition_interval: float | None = None
    applicator_number: int | None = None
    applicator_id: str = ""
    applicator_type: str = ""
    applicator_length: float | None = None
    step_size: float | None = None
    transfer_tube_number: int | None = None
    transfer_tube_length: float | None = None
    shields: tuple[ChannelShield, ...] = ()
    referenced_roi_number: int | None = None


@dataclass(frozen=True)
class ApplicationSetup:
    """One item of Application Setup Sequence (300A,0230)."""

    number: int
    setup_type: str
    name: str
    total_reference_air_kerma: float
    channels: tuple[BrachyChannel, ...]


@dataclass(frozen=True)
class BrachyApplicationSetups:
    """The RT Brachy Application Setups module (PS3.3 C.8.8.15, Oncentra 8.1.1.2.7.11)."""

    technique: BrachyTreatmentTechnique
    treatment_type: BrachyTreatmentType
    machine_name: str
    sources: tuple[BrachySource, ...]
    setups: tuple[ApplicationSetup, ...]
    machine_manufacturer: str = ""


@dataclass(frozen=True)
class DoseReference:
    """One item of Dose Reference Sequence (300A,0010), RT Prescription (iPlan table 8-28).

    Parameters
    ----------
    number : int
        Dose Reference Number.
    structure_type : str
        Dose Reference Structure Type: ``COORDINATES`` or ``VOLUME`` for a
        PATIENT plan, ``SITE`` otherwise.
    description : str
        Dose Reference Description (the builder may template it, Note 8-6).
    target_prescription_dose : float or None
        Gy.
    referenced_roi_number : int or None
        For ``VOLUME``.
    point_coordinates : tuple of float or None
        mm (LPS), for ``COORDINATES``.
    dose_reference_type : str
        ``TARGET`` (iPlan) or ``ORGAN_AT_RISK``.
    constraint_doses : dict of str to float
        The constraint doses present (Gy), by keyword: Delivery Warning/Maximum
        Dose, Target Minimum/Maximum Dose, Target Underdose Volume Fraction (%),
        Organ at Risk Full-volume/Limit/Maximum Dose, Organ at Risk Overdose
        Volume Fraction (%), Constraint Weight.
    """

    number: int
    structure_type: str
    description: str
    target_prescription_dose: float | None
    referenced_roi_number: int | None = None
    point_coordinates: tuple[float, float, float] | None = None
    dose_reference_type: str = "TARGET"
    constraint_doses: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ToleranceTable:
    """One item of Tolerance Table Sequence (300A,0040), iPlan table 8-29."""

    number: int
    label: str


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
    dose_references : tuple of DoseReference
        RT Prescription (empty when the plan has none).
    tolerance_tables : tuple of ToleranceTable
    referenced_plans : tuple of tuple of str
        Referenced RT Plan Sequence: ``(SOP Instance UID, RT Plan Relationship)``.
    brachy : BrachyApplicationSetups or None
        For a brachytherapy plan (which has no beams).
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
    dose_references: tuple[DoseReference, ...] = ()
    tolerance_tables: tuple[ToleranceTable, ...] = ()
    referenced_plans: tuple[tuple[str, str], ...] = ()
    brachy: BrachyApplicationSetups | None = None

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


def _check_references(beams: Sequence[Beam], groups: Sequence[FractionGroup],
                      brachy: BrachyApplicationSetups | None) -> None:
    """Every beam and application setup a fraction group references exists."""
    numbers = {b.number for b in beams}
    setups = {a.number for a in brachy.setups} if brachy is not None else set()
    for group in groups:
        missing = sorted(set(group.beam_numbers) - numbers)
        if missing:
            raise InvalidInputError(f"fraction group {group.number} references beam(s) "
                                    f"{', '.join(map(str, missing))} that the plan does not have",
                                    tag="ReferencedBeamNumber")
        missing = sorted({r.setup_number for r in group.referenced_brachy_setups} - setups)
        if missing:
            raise InvalidInputError(f"fraction group {group.number} references brachytherapy "
                                    f"application setup(s) {', '.join(map(str, missing))} that "
                                    "the plan does not have",
                                    tag="ReferencedBrachyApplicationSetupNumber")
    if brachy is not None:
        sources = {src.number for src in brachy.sources}
        for setup in brachy.setups:
            for channel in setup.channels:
                if channel.referenced_source_number not in sources:
                    raise InvalidInputError(
                        f"brachytherapy channel {channel.number} of application setup "
                        f"{setup.number} references source {channel.referenced_source_number}, "
                        "which the plan does not have", tag="ReferencedSourceNumber")


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



# ------------------------------------------------------------------ builder
class DoseRateMode(str, Enum):
    """How Dose Rate Set (300A,0115) is written (iPlan Note 8-11)."""

    NONE = "None"
    """Not written at all."""
    NULL = "Null"
    """0 is written."""
    DEFINED = "Defined"
    """The machine profile's dose rate (:attr:`PlanExportOptions.defined_dose_rate`)."""
    ACTUAL = "Actual"
    """Each control point's own dose rate, where it has one."""


class ConeIdentifier(str, Enum):
    """Where a conical collimator's identifier goes (iPlan Note 8-12)."""

    WEDGE_ID = "WedgeID"
    BLOCK_TRAY_ID = "BlockTrayID"
    APPLICATOR_ID = "ApplicatorID"


@dataclass(frozen=True)
class PlanExportOptions:
    """The configurable parts of an exported plan (iPlan Notes 8-4, 8-6, 8-9 to 8-12).

    The text options are :meth:`str.format` templates.  Plan fields:
    ``{label}``, ``{name}``, ``{description}``; beam fields: ``{number}``,
    ``{name}``, ``{description}``; dose reference fields: ``{description}``,
    ``{number}``, ``{label}`` (the plan's).

    Parameters
    ----------
    plan_label, plan_name, plan_description : str
        RT Plan Label, Name and Description (Note 8-4).
    beam_name, beam_description : str
        Beam Name and Description (Note 8-9).
    dose_reference_description : str
        Dose Reference Description (Note 8-6: PTV name, isocentre name, course ID).
    dose_rate : DoseRateMode or str
        Note 8-11.
    defined_dose_rate : float, optional
        MU/min, required by :attr:`DoseRateMode.DEFINED`.
    manufacturer : str, optional
        Beam Manufacturer (0008,0070) written instead of the beam's own
        (Note 8-10: some systems read it as the collimator's manufacturer).
    cone_identifier : ConeIdentifier or str
        Note 8-12.
    """

    plan_label: str = "{label}"
    plan_name: str = "{name}"
    plan_description: str = "{description}"
    beam_name: str = "{name}"
    beam_description: str = "{description}"
    dose_reference_description: str = "{description}"
    dose_rate: DoseRateMode | str = DoseRateMode.ACTUAL
    defined_dose_rate: float | None = None
    manufacturer: str | None = None
    cone_identifier: ConeIdentifier | str = ConeIdentifier.APPLICATOR_ID

    def __post_init__(self) -> None:
        object.__setattr__(self, "dose_rate", DoseRateMode(self.dose_rate))
        object.__setattr__(self, "cone_identifier", ConeIdentifier(self.cone_identifier))
        if self.dose_rate is DoseRateMode.DEFINED and self.defined_dose_rate is None:
            raise InvalidInputError("dose_rate 'Defined' needs defined_dose_rate (Note 8-11)")


RT_GENERAL_PLAN = Module("RT General Plan", "C.8.8.9", "8-27", (
    _A("RTPlanLabel", "1", note="Note 8-4: templated by PlanExportOptions"),
    _A("RTPlanName", "3"),
    _A("RTPlanDescription", "3"),
    _A("InstanceNumber", "3", note="iPlan: ALWAYS"),
    _A("RTPlanDate", "2"),
    _A("RTPlanTime", "2"),
    _A("RTPlanGeometry", "1"),
    _A("ReferencedStructureSetSequence", "1",
       note="PS3.3 Type 1C (geometry PATIENT); the builder requires a structure set then"),
    _A("ReferencedRTPlanSequence", "3", note="Note 8-5: PARTIAL siblings of a split plan"),
))
RT_PRESCRIPTION = Module("RT Prescription", "C.8.8.10", "8-28", (
    _A("DoseReferenceSequence", "3", note="iPlan: ALWAYS in the module"),
))
RT_TOLERANCE_TABLES = Module("RT Tolerance Tables", "C.8.8.11", "8-29", (
    _A("ToleranceTableSequence", "3", note="iPlan: ALWAYS in the module"),
))
RT_PATIENT_SETUP = Module("RT Patient Setup", "C.8.8.12", "8-30", (
    _A("PatientSetupSequence", "1"),
))
RT_FRACTION_SCHEME = Module("RT Fraction Scheme", "C.8.8.13", "8-31", (
    _A("FractionGroupSequence", "1"),
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

# Sequence items, as tables (PS3.3 section of their module).
_REFERENCED_SOP_ITEM = Module("Referenced SOP item", "C.8.8.9", "8-27", (
    _A("ReferencedSOPClassUID", "1"),
    _A("ReferencedSOPInstanceUID", "1"),
    _A("RTPlanRelationship", "3", note="Referenced RT Plan Sequence only (Type 1 there)"),
))
_DOSE_REFERENCE_ITEM = Module("Dose Reference Sequence item", "C.8.8.10", "8-28", (
    _A("DoseReferenceNumber", "1"),
    _A("DoseReferenceStructureType", "1"),
    _A("DoseReferenceDescription", "3", note="iPlan: ALWAYS (Note 8-6)"),
    _A("ReferencedROINumber", "3", note="PS3.3 1C: VOLUME only"),
    _A("DoseReferencePointCoordinates", "3", note="PS3.3 1C: COORDINATES only"),
    _A("DoseReferenceType", "1"),
    _A("TargetPrescriptionDose", "3", note="iPlan: ALWAYS"),
))
_TOLERANCE_TABLE_ITEM = Module("Tolerance Table Sequence item", "C.8.8.11", "8-29", (
    _A("ToleranceTableNumber", "1"),
    _A("ToleranceTableLabel", "3", note="iPlan: ALWAYS, from the machine profile"),
))
_PATIENT_SETUP_ITEM = Module("Patient Setup Sequence item", "C.8.8.12", "8-30", (
    _A("PatientSetupNumber", "1"),
    _A("PatientSetupLabel", "3", note="iPlan: ALWAYS"),
    _A("PatientPosition", "1", note="PS3.3 1C (or Patient Additional Position)"),
    _A("SetupTechnique", "3"),
))
_REFERENCED_BEAM_ITEM = Module("Referenced Beam Sequence item", "C.8.8.13", "8-31", (
    _A("BeamDose", "3", note="iPlan: ALWAYS (Gy)"),
    _A("BeamMeterset", "3", note="iPlan: ALWAYS"),
    _A("ReferencedBeamNumber", "1"),
))
_FRACTION_GROUP_ITEM = Module("Fraction Group Sequence item", "C.8.8.13", "8-31", (
    _A("FractionGroupNumber", "1"),
    _A("ReferencedDoseReferenceSequence", "3", note="iPlan: ALWAYS; with a prescription"),
    _A("NumberOfFractionsPlanned", "2"),
    _A("NumberOfBeams", "1"),
    _A("ReferencedBeamSequence", "3", note="PS3.3 1C (Number of Beams > 0)"),
    _A("NumberOfBrachyApplicationSetups", "1", note="0 for an external-beam plan"),
    _A("ReferencedBrachyApplicationSetupSequence", "3",
       note="PS3.3 1C (Number of Brachy Application Setups > 0)"),
))
_REFERENCED_BRACHY_SETUP_ITEM = Module("Referenced Brachy Application Setup Sequence item",
                                       "C.8.8.13", "-", (
    _A("BrachyApplicationSetupDose", "3", note="Gy"),
    _A("ReferencedBrachyApplicationSetupNumber", "1"),
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
_FRACTION_DOSE_REFERENCE_ITEM = Module("Referenced Dose Reference Sequence item", "C.8.8.13",
                                       "8-31", (
    _A("ReferencedDoseReferenceNumber", "1"),
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


def _item(module: Module, values: dict[str, object]) -> Dataset:
    """A sequence item built from its table (types and VRs checked)."""
    return build_dataset((module,), values)


def _fmt(template: str, what: str, **fields: object) -> str:
    try:
        return template.format(**fields)
    except (KeyError, IndexError, ValueError) as exc:
        names = ", ".join("{" + k + "}" for k in fields)
        raise InvalidInputError(f"{what} template {template!r} is invalid ({exc}); its fields "
                                f"are {names}") from None


def _value_of(value: object) -> object:
    return value.value if isinstance(value, Enum) else value


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


def _setup_items(patient_setups: Sequence[PatientSetup]) -> list[Dataset]:
    return [_item(_PATIENT_SETUP_ITEM, {
        "PatientSetupNumber": s.number, "PatientSetupLabel": s.label,
        "PatientPosition": _value_of(s.patient_position),
        "SetupTechnique": s.setup_technique}) for s in patient_setups]


def _plan_dataset(iod: Sequence[Module], specific: dict[str, object],
                  fraction_groups: Sequence[FractionGroup], *, label: str, name: str,
                  description: str, geometry: RTPlanGeometry | str,
                  structure_set_uid: str | None, dose_references: Sequence[DoseReference],
                  source: Dataset | None, options: PlanExportOptions, series_uid: str | None,
                  series_number: int, instance_number: int, sop_instance_uid: str | None,
                  approval_status: str, config: ExportConfig | None,
                  timestamp: datetime | None) -> Dataset:
    """The modules every RT Plan shares, plus the external-beam or brachy ``specific`` ones."""
    config = config or ExportConfig()
    geometry = RTPlanGeometry(_value_of(geometry))
    when = timestamp or datetime.now()
    day, clock = format_da(when), format_tm(when)
    if geometry is RTPlanGeometry.PATIENT and not structure_set_uid:
        raise InvalidInputError("a PATIENT plan must reference its structure set: give "
                                "structure_set_uid", tag="ReferencedStructureSetSequence")
    if approval_status not in ("UNAPPROVED", "APPROVED"):
        raise InvalidInputError(f"approval_status must be UNAPPROVED or APPROVED, got "
                                f"{approval_status!r}", tag="ApprovalStatus")
    fields = {"label": label, "name": name, "description": description}
    values = carried_values(source, (PATIENT, GENERAL_STUDY, PATIENT_STUDY, FRAME_OF_REFERENCE))
    values.setdefault("StudyInstanceUID", str(new_uid(config.uid_root)))
    values.update(equipment_values(config))
    for ref in dose_references:
        needed = {"VOLUME": ref.referenced_roi_number, "COORDINATES": ref.point_coordinates}
        if ref.structure_type in needed and needed[ref.structure_type] is None:
            raise InvalidInputError(f"dose reference {ref.number} of type {ref.structure_type} "
                                    "needs a referenced ROI number (VOLUME) or point coordinates "
                                    "(COORDINATES)", tag="DoseReferenceStructureType")
    dose_refs = [_item(_DOSE_REFERENCE_ITEM, {
        "DoseReferenceNumber": ref.number,
        "DoseReferenceStructureType": ref.structure_type,
        "DoseReferenceDescription": _fmt(options.dose_reference_description,
                                         "dose_reference_description", number=ref.number,
                                         description=ref.description, label=label),
        "ReferencedROINumber": ref.referenced_roi_number,
        "DoseReferencePointCoordinates": list(ref.point_coordinates)
        if ref.point_coordinates else None,
        "DoseReferenceType": ref.dose_reference_type,
        "TargetPrescriptionDose": ref.target_prescription_dose,
    }) for ref in dose_references]
    values.update({
        "Modality": "RTPLAN",
        "SeriesInstanceUID": series_uid or str(new_uid(config.uid_root)),
        "SeriesNumber": series_number,
        "SeriesDate": day, "SeriesTime": clock,
        "OperatorsName": None,
        "RTPlanLabel": _fmt(options.plan_label, "plan_label", **fields),
        "RTPlanName": _fmt(options.plan_name, "plan_name", **fields),
        "RTPlanDescription": _fmt(options.plan_description, "plan_description", **fields),
        "InstanceNumber": instance_number,
        "RTPlanDate": day, "RTPlanTime": clock,
        "RTPlanGeometry": geometry.value,
        "ReferencedStructureSetSequence": [_item(_REFERENCED_SOP_ITEM, {
            "ReferencedSOPClassUID": RTStructureSetStorage,
            "ReferencedSOPInstanceUID": structure_set_uid})] if structure_set_uid else None,
        "DoseReferenceSequence": dose_refs,
        "FractionGroupSequence": [_item(_FRACTION_GROUP_ITEM, {
            "FractionGroupNumber": g.number,
            "ReferencedDoseReferenceSequence": [
                _item(_FRACTION_DOSE_REFERENCE_ITEM, {"ReferencedDoseReferenceNumber": r.number})
                for r in dose_references],
            "NumberOfFractionsPlanned": g.fractions_planned,
            "NumberOfBeams": len(g.referenced_beams),
            "ReferencedBeamSequence": [_item(_REFERENCED_BEAM_ITEM, {
                "BeamDose": b.beam_dose, "BeamMeterset": b.beam_meterset,
                "ReferencedBeamNumber": b.beam_number}) for b in g.referenced_beams],
            "NumberOfBrachyApplicationSetups": len(g.referenced_brachy_setups),
            "ReferencedBrachyApplicationSetupSequence": [
                _item(_REFERENCED_BRACHY_SETUP_ITEM, {
                    "BrachyApplicationSetupDose": r.dose,
                    "ReferencedBrachyApplicationSetupNumber": r.setup_number})
                for r in g.referenced_brachy_setups],
        }) for g in fraction_groups],
        "ApprovalStatus": approval_status,
        "SOPClassUID": RTPlanStorage,
        "SOPInstanceUID": sop_instance_uid or str(new_uid(config.uid_root)),
        "InstanceCreationDate": day, "InstanceCreationTime": clock,
    })
    values.update(specific)
    if approval_status == "APPROVED":
        values.update({"ReviewDate": day, "ReviewTime": clock})
    modules = iod if "FrameOfReferenceUID" in values else tuple(
        m for m in iod if m is not FRAME_OF_REFERENCE)
    return build_dataset(modules, values, config=config)


RT_BRACHY_APPLICATION_SETUPS = Module("RT Brachy Application Setups", "C.8.8.15",
                                      "Oncentra 8.1.1.2.7.11", (
    _A("BrachyTreatmentTechnique", "1"),
    _A("BrachyTreatmentType", "1"),
    _A("TreatmentMachineSequence", "1"),
    _A("SourceSequence", "1"),
    _A("ApplicationSetupSequence", "1"),
))

#: The modules of a brachytherapy RT Plan as rtforge writes it (RT Patient Setup only with
#: patient setups; no tolerance tables or beams).
RT_BRACHY_PLAN_IOD: tuple[Module, ...] = (
    PATIENT, GENERAL_STUDY, PATIENT_STUDY, RT_SERIES, FRAME_OF_REFERENCE, GENERAL_EQUIPMENT,
    RT_GENERAL_PLAN, RT_PRESCRIPTION, RT_PATIENT_SETUP, RT_FRACTION_SCHEME,
    RT_BRACHY_APPLICATION_SETUPS, APPROVAL, SOP_COMMON,
)
_TREATMENT_MACHINE_ITEM = Module("Treatment Machine Sequence item", "C.8.8.15", "-", (
    _A("Manufacturer", "3"),
    _A("TreatmentMachineName", "2"),
))
_SOURCE_ITEM = Module("Source Sequence item", "C.8.8.15", "-", (
    _A("SourceManufacturer", "3"),
    _A("SourceNumber", "1"),
    _A("SourceType", "1"),
    _A("SourceModelID", "3"),
    _A("SourceIsotopeName", "1"),
    _A("SourceIsotopeHalfLife", "1", note="days"),
    _A("ReferenceAirKermaRate", "1", note="µGy/h at 1 m"),
    _A("SourceStrengthReferenceDate", "1"),
    _A("SourceStrengthReferenceTime", "1"),
))
_APPLICATION_SETUP_ITEM = Module("Application Setup Sequence item", "C.8.8.15", "-", (
    _A("ApplicationSetupType", "1"),
    _A("ApplicationSetupNumber", "1"),
    _A("ApplicationSetupName", "3"),
    _A("TotalReferenceAirKerma", "1"),
    _A("ChannelSequence", "1"),
))
_CHANNEL_ITEM = Module("Channel Sequence item", "C.8.8.15", "-", (
    _A("ChannelNumber", "1"),
    _A("ChannelLength", "2", note="mm"),
    _A("ChannelTotalTime", "1", note="s"),
    _A("SourceMovementType", "1"),
    _A("NumberOfPulses", "3", note="PS3.3 1C: PDR"),
    _A("PulseRepetitionInterval", "3", note="PS3.3 1C: PDR, s"),
    _A("SourceApplicatorNumber", "3"),
    _A("SourceApplicatorID", "3", note="PS3.3 2C: with an applicator number"),
    _A("SourceApplicatorType", "3", note="PS3.3 1C: with an applicator number"),
    _A("SourceApplicatorLength", "3", note="PS3.3 1C: with an applicator number"),
    _A("SourceApplicatorStepSize", "3", note="PS3.3 1C: STEPWISE movement"),
    _A("TransferTubeNumber", "2"),
    _A("TransferTubeLength", "3", note="PS3.3 2C: with a transfer tube number"),
    _A("ChannelShieldSequence", "3"),
    _A("ReferencedROINumber", "3"),
    _A("ReferencedSourceNumber", "1"),
    _A("NumberOfControlPoints", "1"),
    _A("FinalCumulativeTimeWeight", "3", note="PS3.3 1C: with cumulative time weights"),
    _A("BrachyControlPointSequence", "1"),
))
_CHANNEL_SHIELD_ITEM = Module("Channel Shield Sequence item", "C.8.8.15", "-", (
    _A("ChannelShieldNumber", "1"),
    _A("ChannelShieldID", "2"),
    _A("ReferencedROINumber", "2", note="written empty: shields are not ROIs in rtforge"),
))
_BRACHY_CONTROL_POINT_ITEM = Module("Brachy Control Point Sequence item", "C.8.8.15", "-", (
    _A("ControlPointIndex", "1"),
    _A("CumulativeTimeWeight", "2"),
    _A("ControlPointRelativePosition", "1", note="mm"),
    _A("ControlPoint3DPosition", "3", note="mm, LPS"),
))


def _channel_item(channel: BrachyChannel, setup: int) -> Dataset:
    where = f"brachytherapy application setup {setup}, channel {channel.number}"
    if not channel.control_points:
        raise InvalidInputError(f"{where} has no control points", tag="BrachyControlPointSequence")
    checks = (
        (channel.source_movement_type is SourceMovementType.STEPWISE
         and channel.step_size is None, "STEPWISE movement needs step_size"),
        (channel.applicator_number is not None
         and (not channel.applicator_type or channel.applicator_length is None),
         "an applicator needs applicator_type and applicator_length"),
    )
    for failed, message in checks:
        if failed:
            raise InvalidInputError(f"{where}: {message}", tag="ChannelSequence")
    has_weights = any(cp.cumulative_time_weight is not None for cp in channel.control_points)
    if has_weights and channel.final_cumulative_time_weight is None:
        raise InvalidInputError(f"{where}: control points with time weights need "
                                "final_cumulative_time_weight", tag="FinalCumulativeTimeWeight")
    applicator = channel.applicator_number is not None
    return _item(_CHANNEL_ITEM, {
        "ChannelNumber": channel.number,
        "ChannelLength": channel.length,
        "ChannelTotalTime": channel.total_time,
        "SourceMovementType": channel.source_movement_type.value,
        "NumberOfPulses": channel.number_of_pulses,
        "PulseRepetitionInterval": channel.pulse_repetition_interval,
        "SourceApplicatorNumber": channel.applicator_number,
        "SourceApplicatorID": channel.applicator_id if applicator else None,
        "SourceApplicatorType": channel.applicator_type if applicator else None,
        "SourceApplicatorLength": channel.applicator_length if applicator else None,
        "SourceApplicatorStepSize": channel.step_size,
        "TransferTubeNumber": channel.transfer_tube_number,
        "TransferTubeLength": channel.transfer_tube_length,
        "ChannelShieldSequence": [_item(_CHANNEL_SHIELD_ITEM, {
            "ChannelShieldNumber": sh.number, "ChannelShieldID": sh.shield_id})
            for sh in channel.shields],
        "ReferencedROINumber": channel.referenced_roi_number,
        "ReferencedSourceNumber": channel.referenced_source_number,
        "NumberOfControlPoints": len(channel.control_points),
        "FinalCumulativeTimeWeight": channel.final_cumulative_time_weight,
        "BrachyControlPointSequence": [_item(_BRACHY_CONTROL_POINT_ITEM, {
            "ControlPointIndex": cp.index,
            "CumulativeTimeWeight": cp.cumulative_time_weight,
            "ControlPointRelativePosition": cp.relative_position,
            "ControlPoint3DPosition": list(cp.position) if cp.position else None})
            for cp in channel.control_points],
    })


def build_brachy_rtplan(brachy: BrachyApplicationSetups,
                        fraction_groups: Sequence[FractionGroup], *, label: str,
                        name: str = "", description: str = "",
                        structure_set_uid: str | None = None,
                        dose_references: Sequence[DoseReference] = (),
                        patient_setups: Sequence[PatientSetup] = (),
                        source: Dataset | None = None,
                        options: PlanExportOptions | None = None,
                        series_uid: str | None = None, series_number: int = 1,
                        instance_number: int = 1, sop_instance_uid: str | None = None,
                        approval_status: str = "UNAPPROVED",
                        config: ExportConfig | None = None,
                        timestamp: datetime | None = None) -> Dataset:
    """A brachytherapy RT Plan data set (Oncentra 8.1.1.2.7, PS3.3 C.8.8.15).

    Parameters
    ----------
    brachy : BrachyApplicationSetups
        Technique, type (HDR, PDR, ...), machine, sources and application
        setups with their channels and control points.
    fraction_groups : sequence of FractionGroup
        With ``referenced_brachy_setups`` (and no beams).
    label, name, description, structure_set_uid, dose_references, source, options
        As :func:`build_rtplan` (the geometry is PATIENT).
    patient_setups : sequence of PatientSetup
        Optional for a brachytherapy plan.
    series_uid, series_number, instance_number, sop_instance_uid, approval_status
        As :func:`build_rtplan`.
    config : ExportConfig, optional
    timestamp : datetime, optional

    Returns
    -------
    pydicom.Dataset

    Raises
    ------
    InvalidInputError
        If a channel has no control points, references a missing source,
        lacks what its movement type or applicator requires, a fraction group
        references a missing application setup or a beam, or as :func:`build_rtplan`.
    ConformanceError
        If a value breaks its VR.
    """
    if not brachy.sources or not brachy.setups:
        raise InvalidInputError("a brachytherapy plan needs at least one source and one "
                                "application setup", tag="ApplicationSetupSequence")
    if any(g.referenced_beams for g in fraction_groups):
        raise InvalidInputError("a brachytherapy plan has no beams: its fraction groups must "
                                "not reference any", tag="ReferencedBeamSequence")
    if not fraction_groups:
        raise InvalidInputError("a plan needs at least one fraction group",
                                tag="FractionGroupSequence")
    _check_references((), fraction_groups, brachy)
    machine = _item(_TREATMENT_MACHINE_ITEM, {"Manufacturer": brachy.machine_manufacturer,
                                              "TreatmentMachineName": brachy.machine_name})
    specific: dict[str, object] = {
        "BrachyTreatmentTechnique": brachy.technique.value,
        "BrachyTreatmentType": brachy.treatment_type.value,
        "TreatmentMachineSequence": [machine],
        "SourceSequence": [_item(_SOURCE_ITEM, {
            "SourceManufacturer": src.manufacturer, "SourceNumber": src.number,
            "SourceType": src.source_type, "SourceModelID": src.model_id,
            "SourceIsotopeName": src.isotope_name, "SourceIsotopeHalfLife": src.half_life_days,
            "ReferenceAirKermaRate": src.reference_air_kerma_rate,
            "SourceStrengthReferenceDate": src.strength_reference_date,
            "SourceStrengthReferenceTime": src.strength_reference_time})
            for src in brachy.sources],
        "ApplicationSetupSequence": [_item(_APPLICATION_SETUP_ITEM, {
            "ApplicationSetupType": setup.setup_type,
            "ApplicationSetupNumber": setup.number,
            "ApplicationSetupName": setup.name,
            "TotalReferenceAirKerma": setup.total_reference_air_kerma,
            "ChannelSequence": [_channel_item(ch, setup.number) for ch in setup.channels]})
            for setup in brachy.setups],
    }
    iod = RT_BRACHY_PLAN_IOD
    if patient_setups:
        specific["PatientSetupSequence"] = _setup_items(patient_setups)
    else:
        iod = tuple(m for m in iod if m is not RT_PATIENT_SETUP)
    return _plan_dataset(
        iod, specific, fraction_groups, label=label, name=name, description=description,
        geometry=RTPlanGeometry.PATIENT, structure_set_uid=structure_set_uid,
        dose_references=dose_references, source=source,
        options=options or PlanExportOptions(), series_uid=series_uid,
        series_number=series_number, instance_number=instance_number,
        sop_instance_uid=sop_instance_uid, approval_status=approval_status, config=config,
        timestamp=timestamp)


_LABEL_LENGTH = MAX_VALUE_LENGTH[dictionary_VR("RTPlanLabel")]  # SH in PS3.6: 16


def split_rtplan(ds: Dataset, *, config: ExportConfig | None = None) -> list[Dataset]:
    """One RT Plan per fraction group (iPlan Notes 8-5 and 8-8).

    Each plan keeps one fraction group and the beams (or brachytherapy
    application setups) it delivers, gets a new
    SOP Instance UID and ``" (n/N)"`` appended to its label (the label cut to
    fit 16 characters), and references its
    siblings in Referenced RT Plan Sequence with RT Plan Relationship
    ``PARTIAL``.  Everything else (patient, study, series, prescription,
    setups) is kept.

    Parameters
    ----------
    ds : pydicom.Dataset
        An RT Plan; not modified.
    config : ExportConfig, optional
        UID root of the new SOP Instance UIDs, and the character set the
        plans are re-encoded in (:mod:`rtforge.io.charset`).

    Returns
    -------
    list of pydicom.Dataset
        One per fraction group, in the plan's order; a plan with one
        fraction group comes back as an unchanged copy.

    Raises
    ------
    InvalidInputError
        As :func:`parse_rtplan` (a group referencing a missing beam included),
        or if a value does not fit the output character set.
    """
    config = config or ExportConfig()
    plan = parse_rtplan(ds)
    ds = conformed(ds, output_character_set(config))
    if len(plan.fraction_groups) <= 1:
        return [copy.deepcopy(ds)]
    uids = [str(new_uid(config.uid_root)) for _ in plan.fraction_groups]
    total = len(uids)
    out = []
    for n, (group, item) in enumerate(zip(plan.fraction_groups, ds.FractionGroupSequence,
                                          strict=True)):
        part = copy.deepcopy(ds)
        part.FractionGroupSequence = [copy.deepcopy(item)]
        if "BeamSequence" in part:
            keep = set(group.beam_numbers)
            part.BeamSequence = [b for b in part.BeamSequence if int(b.BeamNumber) in keep]
        if "ApplicationSetupSequence" in part:
            keep = {r.setup_number for r in group.referenced_brachy_setups}
            part.ApplicationSetupSequence = [a for a in part.ApplicationSetupSequence
                                             if int(a.ApplicationSetupNumber) in keep]
        part.SOPInstanceUID = uids[n]
        suffix = f" ({n + 1}/{total})"
        part.RTPlanLabel = str(ds.get("RTPlanLabel", "") or "")[: _LABEL_LENGTH - len(suffix)] \
            + suffix
        part.ReferencedRTPlanSequence = [_item(_REFERENCED_SOP_ITEM, {
            "ReferencedSOPClassUID": RTPlanStorage, "ReferencedSOPInstanceUID": uid,
            "RTPlanRelationship": "PARTIAL"}) for m, uid in enumerate(uids) if m != n]
        out.append(part)
    return out


def write_rtplan(ds: Dataset, out_dir: str | os.PathLike,
                 transfer_syntax: str = ExplicitVRLittleEndian, *, flat: bool = False,
                 fsync: bool = True) -> Path:
    """Write an RT Plan as a Part 10 file, atomically.

    Parameters
    ----------
    ds : pydicom.Dataset
        From :func:`build_rtplan` or :func:`split_rtplan`; not modified.
    out_dir : str or path-like
        Root of the file set (the layout of
        :func:`~rtforge.io.fileset.instance_path`), or the folder itself when ``flat``.
    transfer_syntax : str, optional
    flat : bool, optional
        Write ``<out_dir>/<SOPInstanceUID>.dcm``.
    fsync : bool, optional

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ConformanceError
        If SOP Class or Instance UID is missing.
    """
    path = Path(out_dir) / f"{ds.SOPInstanceUID}.dcm" if flat else instance_path(out_dir, ds)
    return write_dataset_file(ds, path, transfer_syntax, fsync=fsync)
