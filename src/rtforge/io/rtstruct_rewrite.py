"""Rewrite an RT Structure Set with its contours reduced, carrying over everything else.

A structure set rebuilt from :class:`~rtforge.core.contours.Structure` records keeps only
what they model; a rewrite must keep what other systems put there (RT ROI Identification
Code Sequence, ROI and observation descriptions, Observation Numbers, equipment, private
attributes, ...).  :func:`reduce_rtstruct` therefore copies the data set and changes only:

- Contour Data and Number of Contour Points of the contours that lose points (written to
  :data:`~rtforge.io.rtstruct.CONTOUR_DATA_PRECISION_MM`); other contours keep their bytes;
- SOP Instance UID, Instance Creation Date/Time and Structure Set Date/Time (new content);
- Approval: UNAPPROVED, without the previous review (the reduced contours need one);
- Structure Set Description, when a new one is given;
- a Contributing Equipment Sequence item naming rtforge as Modifying Equipment (PS3.3
  C.12.1.1.5), so the series and its General Equipment stay those of the original;
- attributes the IOD requires and the original lacks are added (Frame of Reference UID from
  the Referenced Frame of Reference Sequence, empty Type 2 Operators' Name and Position
  Reference Indicator, a Structure Set Label when it is empty): what we write is strict.

ROI Volume is kept as the original system computed it (the reduction moves each contour by
at most its reported Hausdorff distance).
"""

from __future__ import annotations

import copy
from datetime import datetime

from pydicom import Dataset

from rtforge.config import ExportConfig
from rtforge.core.contours import ContourGeometricType
from rtforge.errors import InvalidInputError
from rtforge.io.modules import equipment_values, format_da, format_tm
from rtforge.io.rtstruct import (
    ContourBudget,
    ContourReductionRow,
    RTStructBuild,
    _contour_data_element,
    parse_rtstruct,
    reduce_for_contour_data,
)
from rtforge.io.uids import new_uid

__all__ = ["MODIFYING_EQUIPMENT", "reduce_rtstruct"]

#: Purpose of Reference of a Contributing Equipment item (DICOM CID 7005).
MODIFYING_EQUIPMENT = ("109103", "DCM", "Modifying Equipment")
_CLOSED = (ContourGeometricType.CLOSED_PLANAR.value, ContourGeometricType.CLOSEDPLANAR_XOR.value)
_REVIEW = ("ReviewDate", "ReviewTime", "ReviewerName")


def reduce_rtstruct(ds: Dataset, budget: ContourBudget | None = None, *,
                    description: str | None = None, config: ExportConfig | None = None,
                    timestamp: datetime | None = None,
                    sop_instance_uid: str | None = None) -> RTStructBuild:
    """A copy of an RT Structure Set with its closed planar contours reduced.

    Parameters
    ----------
    ds : pydicom.Dataset
        The structure set as read (not modified).
    budget : ContourBudget, optional
        Point budget, tolerance and method; the
        :data:`~rtforge.io.rtstruct.CONTOUR_DATA_MAX_BYTES` limit applies regardless.
    description : str, optional
        New Structure Set Description (ST); the original's is kept without it.
    config : ExportConfig, optional
        UID root, station name of the Contributing Equipment item.
    timestamp : datetime, optional
        The new Instance Creation and Structure Set Date/Time; now by default.
    sop_instance_uid : str, optional
        New one under the configured root by default.

    Returns
    -------
    RTStructBuild
        ``volumes_cm3`` holds the ROI Volumes as the original states them.

    Raises
    ------
    InvalidInputError
        As :func:`~rtforge.io.rtstruct.parse_rtstruct`, or if the structure set has no
        Frame of Reference UID anywhere.
    GeometryError, ConformanceError
        As :func:`~rtforge.io.rtstruct.reduce_for_contour_data`.
    """
    config = config or ExportConfig()
    budget = budget or ContourBudget()
    parsed = parse_rtstruct(ds)
    out = copy.deepcopy(ds)
    by_number = {s.number: s for s in parsed.structures}
    slots = []  # (structure, contour number, Contour Sequence item)
    for roi_item in out.get("ROIContourSequence") or []:
        structure = by_number[int(roi_item.ReferencedROINumber)]
        for number, item in enumerate(roi_item.get("ContourSequence") or [], start=1):
            if (item.get("ContourGeometricType") or "CLOSED_PLANAR") in _CLOSED:
                slots.append((structure, number, item))
    rows: list[ContourReductionRow] = []
    if slots:
        originals = [s.contours[n - 1].points for s, n, _ in slots]
        written, report = reduce_for_contour_data(
            originals, max_points=budget.max_points, tolerance_mm=budget.tolerance_mm,
            method=budget.method)
        for (structure, number, item), original, points, line in zip(
                slots, originals, written, report, strict=True):
            changed = line.points_after < line.points_before
            if changed:
                item.NumberOfContourPoints = points.shape[0]
                element = _contour_data_element(points)
                item[element.tag] = element
            rows.append(ContourReductionRow(
                roi_number=structure.number, roi_name=structure.name, contour_number=number,
                points_before=line.points_before, points_after=line.points_after,
                hausdorff_mm=line.hausdorff_mm, area_change_percent=line.area_change_percent,
                status=line.status, original=original,
                written=points if changed else original))
    when = timestamp or datetime.now()
    day, clock = format_da(when), format_tm(when)
    uid = sop_instance_uid or str(new_uid(config.uid_root))
    out.SOPInstanceUID = uid
    if getattr(out, "file_meta", None) is not None and "MediaStorageSOPInstanceUID" in out.file_meta:
        out.file_meta.MediaStorageSOPInstanceUID = uid
    out.InstanceCreationDate, out.InstanceCreationTime = day, clock
    out.StructureSetDate, out.StructureSetTime = day, clock
    out.ApprovalStatus = "UNAPPROVED"
    for keyword in _REVIEW:
        if keyword in out:
            delattr(out, keyword)
    if description is not None:
        out.StructureSetDescription = description
    _add_required(out, parsed.frame_of_reference_uid)
    out.ContributingEquipmentSequence = [
        *(out.get("ContributingEquipmentSequence") or []),
        _modifying_equipment(config, when, "contour points reduced")]
    return RTStructBuild(dataset=out, contours=rows,
                         volumes_cm3={s.number: s.volume_cm3 for s in parsed.structures})


def _add_required(ds: Dataset, frame: str | None) -> None:
    """Attributes the IOD requires that a rewritten original lacks (none is changed)."""
    if not ds.get("FrameOfReferenceUID"):
        if not frame:
            raise InvalidInputError("the structure set has no Frame of Reference UID, neither "
                                    "at the top level nor in its Referenced Frame of Reference "
                                    "Sequence", tag="FrameOfReferenceUID")
        ds.FrameOfReferenceUID = frame
    for keyword in ("PositionReferenceIndicator", "OperatorsName"):  # Type 2
        if keyword not in ds:
            setattr(ds, keyword, None)
    if not ds.get("StructureSetLabel"):
        ds.StructureSetLabel = "RTFORGE"


def _modifying_equipment(config: ExportConfig, when: datetime, what: str) -> Dataset:
    """A Contributing Equipment Sequence item: rtforge as Modifying Equipment."""
    item = Dataset()
    purpose = Dataset()
    purpose.CodeValue, purpose.CodingSchemeDesignator, purpose.CodeMeaning = MODIFYING_EQUIPMENT
    item.PurposeOfReferenceCodeSequence = [purpose]
    for keyword, value in equipment_values(config).items():
        if value:
            setattr(item, keyword, value)
    item.ContributionDateTime = format_da(when) + format_tm(when)
    item.ContributionDescription = what
    return item
