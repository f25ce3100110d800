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

Package layout
--------------
- :mod:`~rtforge.io.rtplan.parse`: the parser (:func:`read_rtplan`, :func:`parse_rtplan`).
- :mod:`~rtforge.io.rtplan.external`: the external-beam builder (:func:`build_rtplan`,
  :func:`static_beam`) and the module tables of RT Beams.
- :mod:`~rtforge.io.rtplan.brachy`: the brachytherapy builder (:func:`build_brachy_rtplan`).
- :mod:`~rtforge.io.rtplan.split`: :func:`split_rtplan` and :func:`write_rtplan`.
- Private: the records (``_records``, ``_brachy_records``) and what both builders share
  (``_common``: export options, plan-level module tables, fraction groups, setups).
Every public name is imported from here, ``rtforge.io.rtplan``.
"""

from __future__ import annotations

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
from rtforge.io.rtplan._common import (
    ConeIdentifier,
    DoseRateMode,
    PlanExportOptions,
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
    ReferencedBeam,
    ReferencedBrachySetup,
    RotationDirection,
    RTBeamLimitingDeviceType,
    RTPlan,
    RTPlanGeometry,
    ToleranceTable,
    TreatmentDeliveryType,
)
from rtforge.io.rtplan.brachy import (
    RT_BRACHY_PLAN_IOD,
    build_brachy_rtplan,
)
from rtforge.io.rtplan.external import (
    RT_PLAN_IOD,
    build_rtplan,
    static_beam,
)
from rtforge.io.rtplan.parse import (
    parse_rtplan,
    read_rtplan,
)
from rtforge.io.rtplan.split import (
    split_rtplan,
    write_rtplan,
)

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
