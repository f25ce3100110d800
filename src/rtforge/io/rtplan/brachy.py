"""Brachytherapy RT Plan builder (RT Brachy Application Setups, Oncentra 8.1.1.2.7.11)."""

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
from rtforge.io.rtplan._brachy_records import BrachyApplicationSetups, BrachyChannel, SourceMovementType
from rtforge.io.rtplan._common import (
    RT_FRACTION_SCHEME,
    RT_GENERAL_PLAN,
    RT_PATIENT_SETUP,
    RT_PRESCRIPTION,
    PlanExportOptions,
    _check_references,
    _item,
    _plan_dataset,
    _setup_items,
)
from rtforge.io.rtplan._records import DoseReference, FractionGroup, PatientSetup, RTPlanGeometry
from rtforge.io.rtstruct import APPROVAL

__all__ = ["RT_BRACHY_PLAN_IOD", "build_brachy_rtplan"]


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
