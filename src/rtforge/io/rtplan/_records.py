"""RT Plan records: the external-beam plan, its beams, control points and fraction groups."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from rtforge.core.beam import BeamGeometry, PatientPosition, aperture_outline
from rtforge.errors import GeometryError, InvalidInputError
from rtforge.io.rtplan._brachy_records import BrachyApplicationSetups

__all__ = ["RTPlanGeometry", "BeamType", "RadiationType", "TreatmentDeliveryType", "RotationDirection",
           "RTBeamLimitingDeviceType", "BeamLimitingDevice", "DevicePosition", "ControlPoint",
           "Beam", "ReferencedBeam", "FractionGroup", "PatientSetup", "ReferencedBrachySetup",
           "DoseReference", "ToleranceTable", "RTPlan"]


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
