"""RT Dose IOD: module tables, parser and builders (grid dose, DVH-only, point doses).

Follows iPlan RT Dose 4.1 table 8-4 (the IOD), tables 8-33 (RT Dose), 8-34
(RT DVH), Notes 8-13 and 8-14, and Oncentra Brachy 4.5.3 8.1.1.2.9 (BEAM
dose, multi-frame, 32-bit, Grid Frame Offset Vector variants, RT Dose ROI
point doses), with PS3.3 A.18, C.8.8.3, C.8.8.4 and C.8.8.7 where they
disagree.

- :func:`read_rtdose` / :func:`parse_rtdose` read any RT Dose: single and
  multi-frame, Grid Frame Offset Vector relative (first value 0, variant a)
  or absolute (variant b, offsets are positions along the slice normal),
  16 or 32 bits, any transfer syntax pydicom decodes (Explicit VR Big Endian,
  RLE, ...), into :class:`RTDose` (dose as a :class:`~rtforge.core.geometry.Volume`
  in Gy, dose and summation type, the referenced plan, fraction group and
  beams, DVHs and point doses when present).
- Builders, as iPlan's note under table 8-4 asks, write a dose grid *or* a
  DVH, never both: :func:`build_dose_grid` (General Image, Image Plane, Image
  Pixel, Multi-frame and RT Dose modules; 32-bit by default as Oncentra
  writes, 16-bit selectable), :func:`build_dvh_dose` (RT Dose and RT DVH
  modules, no pixels) and :func:`build_point_dose` (Structure Set, ROI Contour
  and RT Dose ROI modules with POINT ROIs, as Oncentra writes its dose points).

Notes on the tables
-------------------
- Frame Increment Pointer is (3004,000C) Grid Frame Offset Vector; iPlan table
  8-20 prints (3004,0002), a typo (that is Dose Units): the standard wins.
- Dose Summation Type (Note 8-14): iPlan writes COMPOSITE, a non-standard
  term, for a sum of plans; rtforge writes the standard MULTI_PLAN and its
  Referenced RT Plan Sequence (one item per plan, required by PS3.3).
- DVH Data (3004,0058) is DS: in Explicit VR one element must fit 65534
  bytes, the same trap as Contour Data.  A 0.01 Gy histogram up to 70 Gy
  does not fit as it is, so runs of bins are merged (variable bin widths,
  which DVH Data allows) with the smallest tolerance that fits; every value
  is at most 16 characters and the error on the cumulative curve is returned.
- Cumulative DVH Data lists, for each bin, the volume receiving at least the
  bin's lower edge (the first volume is the ROI volume).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum
from typing import NamedTuple

import numpy as np
from pydicom import DataElement, Dataset
from pydicom.uid import RTDoseStorage, RTPlanStorage, RTStructureSetStorage

from rtforge.config import ExportConfig
from rtforge.core.contours import Contour, ContourGeometricType, Structure
from rtforge.core.dosegrid import dequantize_dose, quantize_dose
from rtforge.core.dvh import DVH, merge_bins
from rtforge.core.geometry import Grid, Volume
from rtforge.errors import ConformanceError, GeometryError, InvalidInputError, RtforgeError
from rtforge.io.ct import IMAGE_PIXEL, IMAGE_PLANE
from rtforge.io.dicomfile import read_dicom_file, sop_class_name
from rtforge.io.fileset import file_meta, write_dataset_file
from rtforge.io.modules import (
    FRAME_OF_REFERENCE,
    GENERAL_EQUIPMENT,
    GENERAL_STUDY,
    PATIENT,
    PATIENT_STUDY,
    RT_SERIES,
    SOP_COMMON,
    Module,
    ModuleAttribute,
    build_dataset,
    carried_values,
    equipment_values,
    format_da,
    format_ds,
    format_tm,
)
from rtforge.io.rtstruct import ROI_CONTOUR, STRUCTURE_SET, build_rtstruct
from rtforge.io.uids import new_uid

__all__ = [
    "GENERAL_IMAGE",
    "MULTI_FRAME",
    "RT_DOSE",
    "RT_DVH",
    "RT_DOSE_ROI",
    "DVH_DATA_MAX_BYTES",
    "DoseType",
    "DoseSummationType",
    "DVHType",
    "PlanReference",
    "PointDose",
    "RTDose",
    "DoseBuild",
    "read_rtdose",
    "parse_rtdose",
    "build_dose_grid",
    "build_dvh_dose",
    "build_point_dose",
    "encode_dvh_data",
    "write_rtdose",
]

logger = logging.getLogger(__name__)

_A = ModuleAttribute

GENERAL_IMAGE = Module("General Image", "C.7.6.1", "8-16", (
    _A("InstanceNumber", "2", note="Oncentra: zero length; written 1"),
    _A("PatientOrientation", "2", note="PS3.3 Type 2C; written empty as Oncentra does"),
    _A("ContentDate", "2", note="PS3.3 Type 2C; always written"),
    _A("ContentTime", "2", note="PS3.3 Type 2C; always written"),
))

MULTI_FRAME = Module("Multi-frame", "C.7.6.6", "8-20", (
    _A("NumberOfFrames", "1"),
    _A("FrameIncrementPointer", "1",
       note="(3004,000C) Grid Frame Offset Vector; iPlan table 8-20 prints (3004,0002), a typo"),
))

RT_DOSE = Module("RT Dose", "C.8.8.3", "8-33", (
    _A("SamplesPerPixel", "3", note="PS3.3 Type 1C (Pixel Data present): written with it"),
    _A("PhotometricInterpretation", "3", note="PS3.3 Type 1C (Pixel Data present)"),
    _A("BitsAllocated", "3", note="PS3.3 Type 1C (Pixel Data present): 32 (Oncentra) or 16"),
    _A("BitsStored", "3", note="PS3.3 Type 1C (Pixel Data present)"),
    _A("HighBit", "3", note="PS3.3 Type 1C (Pixel Data present)"),
    _A("PixelRepresentation", "3", note="PS3.3 Type 1C (Pixel Data present): 0, unsigned"),
    _A("DoseUnits", "1", note="GY"),
    _A("DoseType", "1", note="iPlan Note 8-13: PHYSICAL by default"),
    _A("DoseComment", "3"),
    _A("DoseSummationType", "1",
       note="iPlan Note 8-14; MULTI_PLAN (PS3.3) rather than iPlan's COMPOSITE"),
    _A("ReferencedRTPlanSequence", "3",
       note="PS3.3 Type 1C: required for every summation type rtforge writes"),
    _A("GridFrameOffsetVector", "3",
       note="PS3.3 Type 1C (multi-frame): relative offsets, first 0 (variant a)"),
    _A("DoseGridScaling", "3", note="PS3.3 Type 1C (Pixel Data present); iPlan: ALWAYS"),
))

RT_DVH = Module("RT DVH", "C.8.8.4", "8-34", (
    _A("ReferencedStructureSetSequence", "1"),
    _A("DVHSequence", "1"),
))

RT_DOSE_ROI = Module("RT Dose ROI", "C.8.8.7", "-", (
    _A("RTDoseROISequence", "1", note="Oncentra 8.1.1.2.9.13: point doses"),
))

_GRID_IOD = (PATIENT, GENERAL_STUDY, PATIENT_STUDY, RT_SERIES, FRAME_OF_REFERENCE,
             GENERAL_EQUIPMENT, GENERAL_IMAGE, IMAGE_PLANE, IMAGE_PIXEL, MULTI_FRAME, RT_DOSE,
             SOP_COMMON)
_DVH_IOD = (PATIENT, GENERAL_STUDY, PATIENT_STUDY, RT_SERIES, FRAME_OF_REFERENCE,
            GENERAL_EQUIPMENT, RT_DOSE, RT_DVH, SOP_COMMON)
_POINT_IOD = (PATIENT, GENERAL_STUDY, PATIENT_STUDY, RT_SERIES, FRAME_OF_REFERENCE,
              GENERAL_EQUIPMENT, RT_DOSE, STRUCTURE_SET, ROI_CONTOUR, RT_DOSE_ROI, SOP_COMMON)

#: Largest encoded DVH Data in Explicit VR (2-byte length, even).
DVH_DATA_MAX_BYTES = 65534

_GFOV_TAG = 0x3004000C


class DoseType(str, Enum):
    """Dose Type (3004,0004), PS3.3 C.8.8.3."""

    PHYSICAL = "PHYSICAL"
    EFFECTIVE = "EFFECTIVE"
    ERROR = "ERROR"


class DoseSummationType(str, Enum):
    """Dose Summation Type (3004,000A), PS3.3 C.8.8.3 (iPlan Note 8-14)."""

    PLAN = "PLAN"
    MULTI_PLAN = "MULTI_PLAN"
    FRACTION = "FRACTION"
    BEAM = "BEAM"
    BRACHY = "BRACHY"
    CONTROL_POINT = "CONTROL_POINT"


class DVHType(str, Enum):
    """DVH Type (3004,0001)."""

    CUMULATIVE = "CUMULATIVE"
    DIFFERENTIAL = "DIFFERENTIAL"
    NATURAL = "NATURAL"


@dataclass(frozen=True)
class PlanReference:
    """One item of the Referenced RT Plan Sequence.

    Parameters
    ----------
    sop_instance_uid : str
        The RT Plan's SOP Instance UID.
    fraction_group_number : int, optional
        Referenced Fraction Group Number (required for FRACTION, BEAM and
        CONTROL_POINT doses).
    beam_numbers : tuple of int
        Referenced Beam Numbers (required for BEAM and CONTROL_POINT doses).
    sop_class_uid : str
        RT Plan Storage by default.
    """

    sop_instance_uid: str
    fraction_group_number: int | None = None
    beam_numbers: tuple[int, ...] = ()
    sop_class_uid: str = RTPlanStorage


@dataclass(frozen=True)
class PointDose:
    """A dose at a POINT ROI (RT Dose ROI module).

    Parameters
    ----------
    roi_number : int
    dose_gy : float
    name : str
    position : tuple of float, optional
        The point in mm (needed to build; read from the ROI Contour module).
    """

    roi_number: int
    dose_gy: float
    name: str = ""
    position: tuple[float, float, float] | None = None


@dataclass(frozen=True, eq=False)
class RTDose:
    """An RT Dose as rtforge reads it.

    Parameters
    ----------
    volume : Volume or None
        Dose in Gy (float64) on its grid; None without Pixel Data.
    dose_units, dose_type, summation_type : str
        As stored (Dose Units GY or RELATIVE).
    plans : tuple of PlanReference
    scaling : float or None
        Dose Grid Scaling.
    bits : int or None
        Bits Allocated.
    dvhs : tuple of DVH
        From the DVH Sequence (named by ROI number).
    structure_set_uid : str or None
        Referenced Structure Set SOP Instance UID of the DVHs.
    point_doses : tuple of PointDose
    frame_of_reference_uid, sop_instance_uid : str
    dataset : pydicom.Dataset
    """

    volume: Volume | None
    dose_units: str
    dose_type: str
    summation_type: str
    plans: tuple[PlanReference, ...]
    scaling: float | None
    bits: int | None
    dvhs: tuple[DVH, ...]
    structure_set_uid: str | None
    point_doses: tuple[PointDose, ...]
    frame_of_reference_uid: str
    sop_instance_uid: str
    dataset: Dataset = field(repr=False)


class DoseBuild(NamedTuple):
    """What a builder made.

    Attributes
    ----------
    dataset : pydicom.Dataset
        With ``file_meta``.
    max_error : float
        Grid: the largest quantisation error in Gy; DVH: the largest error of
        any written cumulative DVH at the histogram's edges, in cm3;
        points: 0.
    """

    dataset: Dataset
    max_error: float


# ------------------------------------------------------------------ parser
def read_rtdose(source: str | os.PathLike | Dataset) -> RTDose:
    """Read an RT Dose file.

    Parameters
    ----------
    source : str, path-like or pydicom.Dataset

    Returns
    -------
    RTDose

    Raises
    ------
    InvalidInputError
        If the file is not DICOM or not an RT Dose, or an attribute needed is
        missing or malformed (naming the file and tag).
    GeometryError
        If the frames are not evenly spaced along the slice normal.
    """
    if isinstance(source, Dataset):
        return parse_rtdose(source)
    ds = read_dicom_file(source).ds
    try:
        return parse_rtdose(ds, source)
    except RtforgeError:
        raise
    except (ValueError, TypeError, AttributeError, KeyError) as exc:  # a malformed value
        raise InvalidInputError(f"malformed attribute value: {exc}", path=source) from None


def _need(ds: Dataset, keyword: str, path: object) -> object:
    value = ds.get(keyword)
    if value is None or value == "":
        raise InvalidInputError(f"{keyword} is missing: the RT Dose cannot be read", path=path,
                                tag=keyword)
    return value


def _grid(ds: Dataset, frames: int, path: object) -> Grid:
    orientation = np.array(_need(ds, "ImageOrientationPatient", path), dtype=np.float64)
    position = np.array(_need(ds, "ImagePositionPatient", path), dtype=np.float64)
    pixel = np.array(_need(ds, "PixelSpacing", path), dtype=np.float64)
    if orientation.shape != (6,) or position.shape != (3,) or pixel.shape != (2,):
        raise InvalidInputError("Image Orientation, Position or Pixel Spacing is malformed",
                                path=path, tag="ImageOrientationPatient")
    row, column = orientation[:3], orientation[3:]
    normal = np.cross(row, column)
    normal /= np.linalg.norm(normal)
    step, sign = 1.0, 1.0
    if frames > 1:
        gfov = np.array(_need(ds, "GridFrameOffsetVector", path), dtype=np.float64)
        if gfov.shape[0] < frames:
            raise InvalidInputError(f"Grid Frame Offset Vector has {gfov.shape[0]} values for "
                                    f"{frames} frames", path=path, tag="GridFrameOffsetVector")
        gfov = gfov[:frames]
        if gfov[0] != 0:  # variant b: positions along the normal
            expected = float(position @ normal)
            if abs(gfov[0] - expected) > 1e-3 * max(1.0, abs(expected)):
                logger.warning("%s: absolute Grid Frame Offset Vector starts at %g, Image "
                               "Position lies at %g along the normal; read as relative to "
                               "the first value", path, gfov[0], expected)
            gfov = gfov - gfov[0]
        gaps = np.diff(gfov)
        if np.any(gaps == 0) or np.ptp(gaps) > 1e-3 * max(1.0, float(np.abs(gaps).max())):
            raise GeometryError(f"{path}: Grid Frame Offset Vector is not evenly spaced "
                                f"({gfov.tolist()[:6]}...): such a dose is not a regular grid")
        step = float(np.mean(np.abs(gaps)))
        sign = 1.0 if gaps[0] > 0 else -1.0
    else:
        thickness = ds.get("SliceThickness")
        step = float(thickness) if thickness not in (None, "") and float(thickness) > 0 \
            else float(max(pixel))
    direction = np.stack([row, column, sign * normal], axis=1)
    return Grid((frames, int(ds.Rows), int(ds.Columns)), origin=position,
                spacing=np.array([pixel[1], pixel[0], step]), direction=direction)


def _plans(ds: Dataset) -> tuple[PlanReference, ...]:
    out = []
    for item in ds.get("ReferencedRTPlanSequence", []):
        groups = item.get("ReferencedFractionGroupSequence", [])
        group = groups[0] if groups else None
        number = group.get("ReferencedFractionGroupNumber") if group is not None else None
        beams = tuple(int(b.ReferencedBeamNumber) for b in
                      (group.get("ReferencedBeamSequence", []) if group is not None else [])
                      if "ReferencedBeamNumber" in b)
        out.append(PlanReference(str(item.get("ReferencedSOPInstanceUID", "")),
                                 None if number in (None, "") else int(number), beams,
                                 str(item.get("ReferencedSOPClassUID", RTPlanStorage))))
    return tuple(out)


def _dvhs(ds: Dataset, path: object) -> tuple[DVH, ...]:
    out = []
    for n, item in enumerate(ds.get("DVHSequence", [])):
        data = np.array(item.get("DVHData", []), dtype=np.float64)
        if data.size % 2:
            raise InvalidInputError(f"DVH Sequence item {n}: DVH Data has an odd number of "
                                    "values", path=path, tag="DVHData")
        scale = float(item.get("DVHDoseScaling", 1.0) or 1.0)
        kind = str(item.get("DVHType", "CUMULATIVE"))
        refs = item.get("DVHReferencedROISequence", [])
        number = int(refs[0].ReferencedROINumber) if refs else None

        def value(keyword: str, item: Dataset = item) -> float | None:
            v = item.get(keyword)
            return None if v in (None, "") else float(v)

        out.append(DVH.from_bins(data[0::2] * scale, data[1::2],
                                 cumulative=kind == DVHType.CUMULATIVE.value,
                                 min_gy=value("DVHMinimumDose"), mean_gy=value("DVHMeanDose"),
                                 max_gy=value("DVHMaximumDose"), roi_number=number))
    return tuple(out)


def _point_doses(ds: Dataset) -> tuple[PointDose, ...]:
    names = {int(i.ROINumber): str(i.get("ROIName", ""))
             for i in ds.get("StructureSetROISequence", []) if "ROINumber" in i}
    where: dict[int, tuple[float, float, float]] = {}
    for item in ds.get("ROIContourSequence", []):
        for contour in item.get("ContourSequence", []):
            data = contour.get("ContourData")
            if data is not None and len(data) >= 3:
                where[int(item.ReferencedROINumber)] = (float(data[0]), float(data[1]),
                                                        float(data[2]))
    return tuple(PointDose(int(i.ReferencedROINumber), float(i.DoseValue),
                           names.get(int(i.ReferencedROINumber), ""),
                           where.get(int(i.ReferencedROINumber)))
                 for i in ds.get("RTDoseROISequence", []) if "DoseValue" in i)


def parse_rtdose(ds: Dataset, path: str | os.PathLike | None = None) -> RTDose:
    """An RT Dose data set as :class:`RTDose`.

    Parameters
    ----------
    ds : pydicom.Dataset
    path : str or path-like, optional
        For error messages.

    Returns
    -------
    RTDose

    Raises
    ------
    InvalidInputError
        If it is not an RT Dose or a needed attribute is missing or malformed.
    GeometryError
        If the frames are not evenly spaced.
    """
    where = path if path is not None else "data set"
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class != RTDoseStorage and not (not sop_class and ds.get("Modality") == "RTDOSE"):
        what = sop_class_name(sop_class) if sop_class else "a data set without SOP Class UID"
        raise InvalidInputError(f"not an RT Dose but {what}", path=where, tag="SOPClassUID")
    volume = None
    scaling = None
    bits = None
    if "PixelData" in ds:
        frames = int(ds.get("NumberOfFrames", 1) or 1)
        scaling = float(_need(ds, "DoseGridScaling", where))  # type: ignore[arg-type]
        bits = int(_need(ds, "BitsAllocated", where))  # type: ignore[call-overload]
        try:
            pixels = ds.pixel_array
        except Exception as exc:  # pydicom raises many types for undecodable pixels
            raise InvalidInputError(f"cannot decode Pixel Data: {exc}", path=where,
                                    tag="PixelData") from None
        pixels = pixels.reshape(frames, int(ds.Rows), int(ds.Columns))
        grid = _grid(ds, frames, where)
        volume = Volume(dequantize_dose(pixels, scaling), grid)
    structure_set = None
    refs = ds.get("ReferencedStructureSetSequence", [])
    if refs:
        structure_set = str(refs[0].get("ReferencedSOPInstanceUID", "")) or None
    return RTDose(volume=volume, dose_units=str(ds.get("DoseUnits", "")),
                  dose_type=str(ds.get("DoseType", "")),
                  summation_type=str(ds.get("DoseSummationType", "")), plans=_plans(ds),
                  scaling=scaling, bits=bits, dvhs=_dvhs(ds, where),
                  structure_set_uid=structure_set, point_doses=_point_doses(ds),
                  frame_of_reference_uid=str(ds.get("FrameOfReferenceUID", "")),
                  sop_instance_uid=str(ds.get("SOPInstanceUID", "")), dataset=ds)


# ------------------------------------------------------------------ builders
def _plan_items(summation: DoseSummationType, plans: Sequence[PlanReference]) -> list[Dataset]:
    if not plans:
        raise ConformanceError(f"a {summation.value} dose needs its Referenced RT Plan Sequence "
                               "(PS3.3 C.8.8.3 Type 1C): give the plan reference(s)")
    if summation is not DoseSummationType.MULTI_PLAN and len(plans) != 1:
        raise ConformanceError(f"a {summation.value} dose references one plan, got {len(plans)}")
    items = []
    for plan in plans:
        item = Dataset()
        item.ReferencedSOPClassUID = plan.sop_class_uid
        item.ReferencedSOPInstanceUID = plan.sop_instance_uid
        needs_group = summation in (DoseSummationType.FRACTION, DoseSummationType.BEAM,
                                    DoseSummationType.CONTROL_POINT)
        needs_beams = summation in (DoseSummationType.BEAM, DoseSummationType.CONTROL_POINT)
        if needs_group and plan.fraction_group_number is None:
            raise ConformanceError(f"a {summation.value} dose needs the fraction group number")
        if needs_beams and not plan.beam_numbers:
            raise ConformanceError(f"a {summation.value} dose needs the beam number(s)")
        # PS3.3 C.8.8.3: the fraction group and beam references may be present
        # only for the summation types that require them (dciodvfy checks it).
        if needs_group:
            group = Dataset()
            group.ReferencedFractionGroupNumber = str(plan.fraction_group_number)
            if needs_beams:
                beams = []
                for number in plan.beam_numbers:
                    beam = Dataset()
                    beam.ReferencedBeamNumber = str(number)
                    beams.append(beam)
                group.ReferencedBeamSequence = beams
            item.ReferencedFractionGroupSequence = [group]
        items.append(item)
    return items


def _common(reference: Dataset | None, summation: DoseSummationType | str,
            dose_type: DoseType | str, plans: Sequence[PlanReference],
            frame_of_reference_uid: str | None, config: ExportConfig, when: datetime,
            series_uid: str | None, series_description: str | None,
            dose_comment: str | None) -> dict[str, object]:
    try:
        kind = DoseSummationType(summation)
        dtype = DoseType(dose_type)
    except ValueError as exc:
        raise InvalidInputError(str(exc)) from None
    values = carried_values(reference, (PATIENT, GENERAL_STUDY, PATIENT_STUDY,
                                        FRAME_OF_REFERENCE))
    values.setdefault("StudyInstanceUID", str(new_uid(config.uid_root)))
    if frame_of_reference_uid:
        values["FrameOfReferenceUID"] = frame_of_reference_uid
    elif "FrameOfReferenceUID" not in values and reference is not None:
        # an RT Structure Set has no top-level Frame of Reference UID: its frame is
        # in the Referenced Frame of Reference Sequence (PS3.3 C.8.8.5)
        frames = [str(f.FrameOfReferenceUID) for f in
                  reference.get("ReferencedFrameOfReferenceSequence") or []
                  if f.get("FrameOfReferenceUID")]
        if frames:
            values["FrameOfReferenceUID"] = frames[0]
    if "FrameOfReferenceUID" not in values:
        raise InvalidInputError("no Frame of Reference UID: give a reference data set that has "
                                "one or frame_of_reference_uid", tag="FrameOfReferenceUID")
    day, clock = format_da(when), format_tm(when)
    values.update(equipment_values(config))
    values.update({
        "SOPClassUID": RTDoseStorage,
        "SOPInstanceUID": str(new_uid(config.uid_root)),
        "Modality": "RTDOSE",
        "SeriesInstanceUID": series_uid or str(new_uid(config.uid_root)),
        "SeriesNumber": 1,
        "SeriesDate": day, "SeriesTime": clock,
        "SeriesDescription": series_description,
        "InstanceCreationDate": day, "InstanceCreationTime": clock,
        "DoseUnits": "GY",
        "DoseType": dtype.value,
        "DoseComment": dose_comment,
        "DoseSummationType": kind.value,
        "ReferencedRTPlanSequence": _plan_items(kind, plans),
    })
    return values


def _finish(ds: Dataset) -> Dataset:
    ds.file_meta = file_meta(RTDoseStorage, str(ds.SOPInstanceUID))
    return ds


def build_dose_grid(volume: Volume, *, summation_type: DoseSummationType | str,
                    plans: Sequence[PlanReference] = (),
                    dose_type: DoseType | str = DoseType.PHYSICAL, bits: int = 32,
                    reference: Dataset | None = None,
                    frame_of_reference_uid: str | None = None,
                    series_uid: str | None = None,
                    series_description: str | None = "rtforge dose",
                    dose_comment: str | None = None, config: ExportConfig | None = None,
                    timestamp: datetime | None = None) -> DoseBuild:
    """An RT Dose data set holding a dose grid (iPlan tables 8-4, 8-33).

    Parameters
    ----------
    volume : Volume
        Dose in Gy, non-negative, on a grid whose slice axis is perpendicular
        to its rows and columns (no shear; either direction along the normal).
    summation_type : DoseSummationType or str
        PLAN, MULTI_PLAN, FRACTION, BEAM, BRACHY or CONTROL_POINT.
    plans : sequence of PlanReference
        Referenced RT Plan Sequence: one plan (several for MULTI_PLAN), with
        the fraction group (FRACTION, BEAM, CONTROL_POINT) and beams (BEAM,
        CONTROL_POINT); they are written only for those types, as PS3.3
        C.8.8.3 allows.
    dose_type : DoseType or str
        PHYSICAL (default), EFFECTIVE or ERROR.
    bits : {32, 16}
        Bits Allocated (32 by default, as Oncentra writes).
    reference : pydicom.Dataset, optional
        Patient, study and Frame of Reference are carried over from it (the
        plan, the CT or the structure set: a structure set's frame is the
        first of its Referenced Frame of Reference Sequence).
    frame_of_reference_uid : str, optional
        Overrides the reference's.
    series_uid, series_description, dose_comment : str, optional
    config : ExportConfig, optional
    timestamp : datetime, optional

    Returns
    -------
    DoseBuild
        ``max_error`` is the largest quantisation error in Gy.

    Raises
    ------
    GeometryError
        If the grid is sheared (slices not along the normal).
    InvalidInputError
        If the dose is negative or not finite, a term is unknown, or there is
        no Frame of Reference UID.
    ConformanceError
        If the plan references the summation type needs are missing.
    """
    config = config or ExportConfig()
    when = timestamp or datetime.now()
    grid = volume.grid
    k_axis = grid.direction[:, 2]
    along = float(k_axis @ grid.slice_normal)
    if abs(abs(along) - 1.0) > 1e-6:
        raise GeometryError("RT Dose frames must lie along the slice normal (the grid is "
                            "sheared); resample the dose onto an unsheared grid first")
    q = quantize_dose(volume.array, bits)
    nk, nj, ni = grid.shape
    values = _common(reference, summation_type, dose_type, plans, frame_of_reference_uid,
                     config, when, series_uid, series_description, dose_comment)
    gfov = [k * grid.spacing[2] * np.sign(along) for k in range(nk)]
    values.update({
        "InstanceNumber": 1,
        "PatientOrientation": None,
        "ContentDate": format_da(when), "ContentTime": format_tm(when),
        "SliceThickness": grid.spacing[2] if nk > 1 else None,
        "ImagePositionPatient": list(grid.origin),
        "ImageOrientationPatient": list(grid.direction[:, 0]) + list(grid.direction[:, 1]),
        "PixelSpacing": [grid.spacing[1], grid.spacing[0]],
        "SamplesPerPixel": 1,
        "PhotometricInterpretation": "MONOCHROME2",
        "Rows": nj, "Columns": ni,
        "BitsAllocated": bits, "BitsStored": bits, "HighBit": bits - 1,
        "PixelRepresentation": 0,
        "NumberOfFrames": nk,
        "FrameIncrementPointer": _GFOV_TAG,
        "GridFrameOffsetVector": gfov,
        "DoseGridScaling": q.scaling_text,
    })
    ds = build_dataset(_GRID_IOD, values, config=config, omit=("PixelData",))
    # The 16-character text the pixels were computed from, verbatim.
    ds.DoseGridScaling = q.scaling_text
    dtype = "<u2" if bits == 16 else "<u4"
    ds["PixelData"] = DataElement(0x7FE00010, "OW", q.pixels.astype(dtype).tobytes())
    return DoseBuild(_finish(ds), q.max_error_gy)


def _volume_text(value: float) -> str:
    return format_ds(float(f"{value:.7g}"))


def encode_dvh_data(dvh: DVH, *, differential: bool = False,
                    max_bytes: int = DVH_DATA_MAX_BYTES) -> tuple[list[str], float]:
    """DVH Data (3004,0058) values of a DVH that fit one Explicit VR element.

    Parameters
    ----------
    dvh : DVH
    differential : bool
        DIFFERENTIAL data (volume per bin) instead of CUMULATIVE (volume at
        or above each bin's lower edge).
    max_bytes : int
        Encoded length limit (default 65534).

    Returns
    -------
    values : list of str
        ``width, volume`` pairs as DS strings of at most 16 characters, the
        first bin starting at 0 Gy; runs of bins are merged with the smallest
        tolerance that fits ``max_bytes``.
    max_error_cm3 : float
        Largest difference, at the DVH's own edges, between its cumulative
        curve and the one read back from ``values``.

    Raises
    ------
    ConformanceError
        If even two bins do not fit.
    """
    cum = dvh.cumulative

    def encode(tolerance: float) -> tuple[list[str], np.ndarray]:
        keep = merge_bins(dvh, tolerance, differential=differential)
        edges = dvh.edges[keep]
        widths = [format_ds(float(f"{w:.10g}")) for w in np.diff(edges)]
        volumes = cum[keep[:-1]] - cum[keep[1:]] if differential else cum[keep[:-1]]
        texts = [t for pair in zip(widths, (_volume_text(v) for v in volumes), strict=True)
                 for t in pair]
        return texts, keep

    lo, hi = 0.0, float(cum[0]) if cum.size else 0.0
    texts, keep = encode(0.0)
    if len("\\".join(texts)) > max_bytes:
        for _ in range(40):
            mid = 0.5 * (lo + hi)
            if len("\\".join(encode(mid)[0])) > max_bytes:
                lo = mid
            else:
                hi = mid
        texts, keep = encode(hi)
        if len("\\".join(texts)) > max_bytes:
            raise ConformanceError("the DVH cannot be written within the DVH Data limit")
    widths = np.array([float(t) for t in texts[0::2]])
    vols = np.array([float(t) for t in texts[1::2]])
    read = DVH.from_bins(widths, vols, cumulative=not differential)
    back = np.interp(dvh.edges, read.edges, read.cumulative) if differential \
        else _step_read(read, dvh.edges)
    return texts, float(np.abs(back - cum).max()) if cum.size else 0.0


def _step_read(read: DVH, edges: np.ndarray) -> np.ndarray:
    """Cumulative DVH Data read back as steps (each bin's volume at its lower edge)."""
    index = np.searchsorted(read.edges, edges + 1e-9, side="right") - 1
    out = read.cumulative[np.clip(index, 0, read.cumulative.shape[0] - 1)]
    return np.where(edges >= read.edges[-1] - 1e-9, 0.0, out)


def build_dvh_dose(dvhs: Sequence[DVH], *, structure_set: Dataset | str,
                   summation_type: DoseSummationType | str = DoseSummationType.PLAN,
                   plans: Sequence[PlanReference] = (),
                   dose_type: DoseType | str = DoseType.PHYSICAL, differential: bool = False,
                   reference: Dataset | None = None,
                   frame_of_reference_uid: str | None = None, series_uid: str | None = None,
                   series_description: str | None = "rtforge DVH",
                   config: ExportConfig | None = None,
                   timestamp: datetime | None = None) -> DoseBuild:
    """A DVH-only RT Dose data set (iPlan table 8-34; no Pixel Data).

    Parameters
    ----------
    dvhs : sequence of DVH
        One per ROI, each with its ``roi_number``.
    structure_set : pydicom.Dataset or str
        The structure set the ROIs belong to (or its SOP Instance UID).
        When a data set, patient, study and Frame of Reference are carried
        over from it unless ``reference`` is given.
    summation_type, plans, dose_type
        As :func:`build_dose_grid`; the DVH comprises the whole plan (iPlan).
    differential : bool
        DVH Type DIFFERENTIAL (as iPlan writes) instead of CUMULATIVE.
    reference, frame_of_reference_uid, series_uid, series_description, config, timestamp
        As :func:`build_dose_grid`.

    Returns
    -------
    DoseBuild
        ``max_error`` is the largest error of any cumulative curve written,
        in cm3 (from merging bins and rounding volumes).

    Raises
    ------
    InvalidInputError
        If a DVH has no ROI number or there are none.
    ConformanceError
        As :func:`build_dose_grid`, or a DVH that cannot fit DVH Data.
    """
    config = config or ExportConfig()
    when = timestamp or datetime.now()
    if not dvhs:
        raise InvalidInputError("build_dvh_dose needs at least one DVH")
    if isinstance(structure_set, Dataset):
        reference = reference if reference is not None else structure_set
        ss_uid = str(structure_set.SOPInstanceUID)
    else:
        ss_uid = str(structure_set)
    values = _common(reference, summation_type, dose_type, plans, frame_of_reference_uid,
                     config, when, series_uid, series_description, None)
    ref = Dataset()
    ref.ReferencedSOPClassUID = RTStructureSetStorage
    ref.ReferencedSOPInstanceUID = ss_uid
    items = []
    worst = 0.0
    for dvh in dvhs:
        if dvh.roi_number is None:
            raise InvalidInputError(f"DVH {dvh.name!r} has no ROI number")
        texts, error = encode_dvh_data(dvh, differential=differential)
        worst = max(worst, error)
        roi = Dataset()
        roi.ReferencedROINumber = str(dvh.roi_number)
        roi.DVHROIContributionType = "INCLUDED"
        item = Dataset()
        item.DVHReferencedROISequence = [roi]
        item.DVHType = (DVHType.DIFFERENTIAL if differential else DVHType.CUMULATIVE).value
        item.DoseUnits = "GY"
        item.DoseType = str(values["DoseType"])
        item.DVHDoseScaling = "1"
        item.DVHVolumeUnits = "CM3"
        item.DVHNumberOfBins = str(len(texts) // 2)
        item.DVHData = texts
        item.DVHMinimumDose = format_ds(dvh.min_gy)
        item.DVHMaximumDose = format_ds(dvh.max_gy)
        item.DVHMeanDose = format_ds(dvh.mean_gy)
        items.append(item)
    values["ReferencedStructureSetSequence"] = [ref]
    values["DVHSequence"] = items
    ds = build_dataset(_DVH_IOD, values, config=config)
    return DoseBuild(_finish(ds), worst)


def build_point_dose(points: Sequence[PointDose], *,
                     summation_type: DoseSummationType | str = DoseSummationType.PLAN,
                     plans: Sequence[PlanReference] = (),
                     dose_type: DoseType | str = DoseType.PHYSICAL,
                     reference: Dataset | None = None,
                     frame_of_reference_uid: str | None = None, series_uid: str | None = None,
                     series_description: str | None = "rtforge dose points",
                     config: ExportConfig | None = None,
                     timestamp: datetime | None = None) -> DoseBuild:
    """An RT Dose data set of point doses (Oncentra 8.1.1.2.9.11 to 8.1.1.2.9.13).

    The points are POINT ROIs of an embedded Structure Set (label
    ``PlanDosePoints``, as Oncentra writes) with an ROI Contour each; the RT
    Dose ROI module gives each one's dose in Gy.

    Parameters
    ----------
    points : sequence of PointDose
        Each with a unique ROI number and a ``position`` in mm.
    summation_type, plans, dose_type, reference, frame_of_reference_uid, series_uid,
    series_description, config, timestamp
        As :func:`build_dose_grid`.

    Returns
    -------
    DoseBuild

    Raises
    ------
    InvalidInputError
        If there are no points, a point has no position, or ROI numbers repeat.
    ConformanceError
        As :func:`build_dose_grid`.
    """
    config = config or ExportConfig()
    when = timestamp or datetime.now()
    if not points:
        raise InvalidInputError("build_point_dose needs at least one point")
    if len({p.roi_number for p in points}) != len(points):
        raise InvalidInputError("point dose ROI numbers must be unique")
    if any(p.position is None for p in points):
        raise InvalidInputError("every point dose needs its position (mm)")
    values = _common(reference, summation_type, dose_type, plans, frame_of_reference_uid,
                     config, when, series_uid, series_description, None)
    structures = [Structure(p.roi_number, p.name or f"Point {p.roi_number}",
                            (Contour(np.array([p.position], dtype=np.float64),
                                     ContourGeometricType.POINT),),
                            generation_algorithm="MANUAL")
                  for p in points]
    ss = build_rtstruct(structures, frame_of_reference_uid=str(values["FrameOfReferenceUID"]),
                        label="PlanDosePoints", name="PlanDosePoints", config=config,
                        timestamp=when).dataset
    for keyword in STRUCTURE_SET.keywords + ROI_CONTOUR.keywords:
        # Instance Number would mark the dose grid-based (PS3.3 A.18.3: the image
        # modules become required); Structure Set writes it as Type 3 only.
        if keyword in ss and keyword != "InstanceNumber":
            values[keyword] = ss[keyword].value
    rois = []
    for p in points:
        item = Dataset()
        item.ReferencedROINumber = str(p.roi_number)
        item.DoseUnits = "GY"
        item.DoseValue = format_ds(p.dose_gy)
        rois.append(item)
    values["RTDoseROISequence"] = rois
    ds = build_dataset(_POINT_IOD, values, config=config)
    return DoseBuild(_finish(ds), 0.0)


def write_rtdose(ds: Dataset, path: str | os.PathLike, *,
                 transfer_syntax: str = "1.2.840.10008.1.2.1") -> os.PathLike:
    """Write an RT Dose data set as a Part 10 file, atomically.

    Parameters
    ----------
    ds : pydicom.Dataset
        From a builder.
    path : str or path-like
    transfer_syntax : str, optional
        Explicit VR Little Endian by default; Explicit VR Big Endian swaps the
        pixel words (:func:`~rtforge.io.fileset.write_dataset_file`).

    Returns
    -------
    pathlib.Path
    """
    return write_dataset_file(ds, path, transfer_syntax)
