"""RT Plan records of a brachytherapy plan (RT Brachy Application Setups, Oncentra 8.1.1.2.7.11)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum

__all__ = ["BrachyTreatmentTechnique", "BrachyTreatmentType", "SourceMovementType", "BrachySource",
           "BrachyControlPoint", "ChannelShield", "BrachyChannel", "ApplicationSetup",
           "BrachyApplicationSetups"]


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
