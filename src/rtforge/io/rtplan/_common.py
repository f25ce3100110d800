"""What both RT Plan builders share: export options, the plan-level module tables, the
plan data set around the beams or application setups, and the checks of references.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum

from pydicom import Dataset
from pydicom.uid import RTPlanStorage, RTStructureSetStorage

from rtforge.config import ExportConfig
from rtforge.errors import InvalidInputError
from rtforge.io.modules import (
    FRAME_OF_REFERENCE,
    GENERAL_STUDY,
    PATIENT,
    PATIENT_STUDY,
    Module,
    build_dataset,
    carried_values,
    equipment_values,
    format_da,
    format_tm,
)
from rtforge.io.modules import ModuleAttribute as _A
from rtforge.io.rtplan._brachy_records import BrachyApplicationSetups
from rtforge.io.rtplan._records import Beam, DoseReference, FractionGroup, PatientSetup, RTPlanGeometry
from rtforge.io.uids import new_uid

__all__ = ["DoseRateMode", "ConeIdentifier", "PlanExportOptions"]


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


RT_PATIENT_SETUP = Module("RT Patient Setup", "C.8.8.12", "8-30", (
    _A("PatientSetupSequence", "1"),
))


RT_FRACTION_SCHEME = Module("RT Fraction Scheme", "C.8.8.13", "8-31", (
    _A("FractionGroupSequence", "1"),
))


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


_FRACTION_DOSE_REFERENCE_ITEM = Module("Referenced Dose Reference Sequence item", "C.8.8.13",
                                       "8-31", (
    _A("ReferencedDoseReferenceNumber", "1"),
))


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
