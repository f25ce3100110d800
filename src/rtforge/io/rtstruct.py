"""RT Structure Set IOD: module tables, parser, builder and writer.

Follows iPlan RT Dose 4.1 table 8-2 (the IOD), tables 8-23 to 8-26 (Structure
Set, ROI Contour, RT ROI Observations, Approval) and Note 8-3, Oncentra
Brachy 4.5.3 section 8.1.1.2.6 (POINT contours, the RT ROI Interpreted Types)
and PS3.3 A.19, C.8.8.5, C.8.8.6, C.8.8.8 and C.8.8.16 where they disagree.

- :func:`read_rtstruct` / :func:`parse_rtstruct` read any RT Structure Set,
  with or without the Part 10 preamble, into :class:`StructureSet`
  (structures as :class:`~rtforge.core.contours.Structure`).
- :func:`build_rtstruct` builds one from structures, against a CT series on
  disk (:func:`rtforge.io.series.reference_image_series`: patient, study and Frame of
  Reference from its header, every image listed, each planar contour
  referencing the slice it lies on), against the references of another
  structure set, or against a Frame of Reference alone (a Grid, no images).
- :func:`write_rtstruct` checks the data set (:func:`check_encodable`) and
  writes it atomically.  Contour Data is held as raw DS bytes (a
  ``RawDataElement``, decoded by pydicom only when read) and encoded as it
  is, around pydicom's encoding of everything else: the bytes are those
  :func:`pydicom.dcmwrite` would write (tested), without converting
  millions of coordinates to ``DSfloat`` and back.

Contour Data (iPlan Note 8-3)
-----------------------------
Each coordinate is written as the shortest decimal string (at most 16
characters, no exponent) within :data:`CONTOUR_DATA_PRECISION_MM` of it
(:func:`~rtforge.core.contours.shortest_decimals`, spelt by
:func:`~rtforge.io.modules.format_ds`).  The encoded Contour Data of one
contour must fit the 2-byte length of Explicit VR: at most
:data:`CONTOUR_DATA_MAX_BYTES`, in every transfer syntax.  A closed planar
contour over that limit, over a point budget, or reduced by tolerance is
reduced by :func:`~rtforge.core.contours.reduce_contours`
(:func:`reduce_for_contour_data`), which is told what each point costs to
encode; the kept points are then rounded, and a contour the rounding would
make touch itself is reduced again from its rounded coordinates, so the
guarantees (budgets, closure, no self-intersection) hold for the file
itself.  The reduction report says what each contour lost.  pydicom would
silently write DS values over 16 characters, and silently turn an Explicit
VR element over 64 KiB into VR UN; :func:`check_encodable` refuses both
before anything is written.
"""

from __future__ import annotations

import logging
import math
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import NamedTuple

import numpy as np
from pydicom import Dataset
from pydicom.dataelem import DataElement, RawDataElement
from pydicom.tag import BaseTag
from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, RTStructureSetStorage
from pydicom.valuerep import EXPLICIT_VR_LENGTH_32

from rtforge.config import ExportConfig
from rtforge.core.contours import (
    Contour,
    ContourGeometricType,
    EndCap,
    ReductionMethod,
    ReductionReport,
    ReductionStatus,
    Structure,
    pack_contours,
    reduce_contours,
    reduce_packed,
    shortest_decimals,
    simple_packed,
    structure_volume,
)
from rtforge.core.geometry import Grid, SliceStack
from rtforge.errors import ConformanceError, GeometryError, InvalidInputError
from rtforge.io.charset import check_dataset
from rtforge.io.dicomfile import read_dicom_file, sop_class_name
from rtforge.io.fileset import (
    Part10Prefix,
    atomic_write,
    element_header,
    encode_dataset,
    encode_sequence,
    instance_path,
    parse_transfer_syntax,
)
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
    ModuleAttribute,
    build_dataset,
    carried_values,
    equipment_values,
    format_da,
    format_ds,
    format_tm,
)
from rtforge.io.uids import new_uid

__all__ = [
    "STRUCTURE_SET",
    "ROI_CONTOUR",
    "RT_ROI_OBSERVATIONS",
    "APPROVAL",
    "RT_STRUCTURE_SET_IOD",
    "CONTOUR_DATA_MAX_BYTES",
    "CONTOUR_DATA_PRECISION_MM",
    "DETACHED_STUDY_MANAGEMENT",
    "IMAGE_PLANE_TOLERANCE_MM",
    "ImageReference",
    "ReferencedSeries",
    "ReferencedStudy",
    "ReferencedFrameOfReference",
    "ImageSeriesReference",
    "StructureSet",
    "ContourBudget",
    "ContourReductionRow",
    "RTStructBuild",
    "read_rtstruct",
    "parse_rtstruct",
    "contour_data_encoding",
    "encode_contour_data",
    "reduce_for_contour_data",
    "build_rtstruct",
    "check_encodable",
    "write_rtstruct",
]

logger = logging.getLogger(__name__)

_A = ModuleAttribute

#: Largest encoded Contour Data (bytes) of one contour: the 2-byte length of Explicit VR
#: (65535) rounded down to even, applied in every transfer syntax.
CONTOUR_DATA_MAX_BYTES = 65534
#: Largest change (mm) of a coordinate when written as a decimal string.
CONTOUR_DATA_PRECISION_MM = 0.001
_MAX_POINT_BYTES = 3 * MAX_VALUE_LENGTH["DS"] + 3  # three 16-character values and separators
#: Referenced SOP Class UID of an RT Referenced Study Sequence item (PS3.3 C.8.8.5:
#: Detached Study Management SOP Class, retired, as the standard still asks).
DETACHED_STUDY_MANAGEMENT = "1.2.840.10008.3.1.2.3.1"
#: Largest distance (mm) between a contour's plane and an image's plane for the
#: contour to reference that image (Contour Image Sequence).
IMAGE_PLANE_TOLERANCE_MM = 0.05

# ------------------------------------------------------------------ tables
STRUCTURE_SET = Module("Structure Set", "C.8.8.5", "8-23", (
    _A("StructureSetLabel", "1", note="iPlan: CONFIG"),
    _A("StructureSetName", "3", note="iPlan: ALWAYS, CONFIG"),
    _A("StructureSetDescription", "3", note="iPlan: ALWAYS, CONFIG"),
    _A("InstanceNumber", "3", note="iPlan: ALWAYS"),
    _A("StructureSetDate", "2"),
    _A("StructureSetTime", "2"),
    _A("ReferencedFrameOfReferenceSequence", "3", note="iPlan: ALWAYS"),
    _A("StructureSetROISequence", "1", note="PS3.3 Type 1 (one or more items); iPlan: ALWAYS"),
))

ROI_CONTOUR = Module("ROI Contour", "C.8.8.6", "8-24", (
    _A("ROIContourSequence", "1"),
))

RT_ROI_OBSERVATIONS = Module("RT ROI Observations", "C.8.8.8", "8-25", (
    _A("RTROIObservationsSequence", "1"),
))

APPROVAL = Module("Approval", "C.8.8.16", "8-26", (
    _A("ApprovalStatus", "1", note="UNAPPROVED for what rtforge creates or changes"),
    _A("ReviewDate", "3", note="PS3.3 Type 2C (APPROVED or REJECTED): written then"),
    _A("ReviewTime", "3", note="PS3.3 Type 2C (APPROVED or REJECTED): written then"),
    _A("ReviewerName", "3", note="PS3.3 Type 2C (APPROVED or REJECTED): written then; "
                                 "iPlan table 8-26 misprints the tag as (300R,0008)"),
))

#: The modules of the RT Structure Set IOD as rtforge writes it, iPlan table 8-2 (the
#: Clinical Trial modules are not written) plus the Frame of Reference module, which PS3.3
#: A.19.3 now requires and iPlan does not list.
RT_STRUCTURE_SET_IOD: tuple[Module, ...] = (
    PATIENT, GENERAL_STUDY, PATIENT_STUDY, RT_SERIES, FRAME_OF_REFERENCE, GENERAL_EQUIPMENT,
    STRUCTURE_SET, ROI_CONTOUR, RT_ROI_OBSERVATIONS, APPROVAL, SOP_COMMON,
)

# Sequence items, as tables too (PS3.3 section of the module they belong to).
_REFERENCED_FRAME_OF_REFERENCE_ITEM = Module(
    "Referenced Frame of Reference Sequence item", "C.8.8.5", "8-23", (
        _A("FrameOfReferenceUID", "1"),
        _A("RTReferencedStudySequence", "3", note="iPlan: ALWAYS; absent without images"),
    ))
_RT_REFERENCED_STUDY_ITEM = Module("RT Referenced Study Sequence item", "C.8.8.5", "8-23", (
    _A("ReferencedSOPClassUID", "1", note="Detached Study Management SOP Class"),
    _A("ReferencedSOPInstanceUID", "1", note="the Study Instance UID"),
    _A("RTReferencedSeriesSequence", "1"),
))
_RT_REFERENCED_SERIES_ITEM = Module("RT Referenced Series Sequence item", "C.8.8.5", "8-23", (
    _A("SeriesInstanceUID", "1"),
    _A("ContourImageSequence", "1", note="every image of the series"),
))
_IMAGE_ITEM = Module("Contour Image Sequence item", "C.8.8.5", "8-23", (
    _A("ReferencedSOPClassUID", "1"),
    _A("ReferencedSOPInstanceUID", "1"),
))
_STRUCTURE_SET_ROI_ITEM = Module("Structure Set ROI Sequence item", "C.8.8.5", "8-23", (
    _A("ROINumber", "1"),
    _A("ReferencedFrameOfReferenceUID", "1"),
    _A("ROIName", "2"),
    _A("ROIDescription", "3"),
    _A("ROIVolume", "3", note="iPlan: ALWAYS; cm3 from the contours, absent when not computable"),
    _A("ROIGenerationAlgorithm", "2",
       note="iPlan table 8-23 gives the tag of ROI Generation Description (3006,0038)"),
))
_ROI_CONTOUR_ITEM = Module("ROI Contour Sequence item", "C.8.8.6", "8-24", (
    _A("ReferencedROINumber", "1"),
    _A("ROIDisplayColor", "3", note="iPlan: ALWAYS; absent when the structure has no colour"),
    _A("ContourSequence", "3", note="absent for a structure without contours"),
))
_CONTOUR_ITEM = Module("Contour Sequence item", "C.8.8.6", "8-24", (
    _A("ContourNumber", "3", note="iPlan: ALWAYS; 1, 2, ... within the ROI"),
    _A("ContourImageSequence", "3",
       note="iPlan: ALWAYS; the image the contour lies on, when known "
            "(Contour Offset Vector, iPlan ALWAYS, is not written: PS3.3 Type 3)"),
    _A("ContourGeometricType", "1"),
    _A("NumberOfContourPoints", "1"),
    _A("ContourData", "1", note="Note 8-3: reduced to fit; encoded by this module"),
))
_RT_ROI_OBSERVATIONS_ITEM = Module("RT ROI Observations Sequence item", "C.8.8.8", "8-25", (
    _A("ObservationNumber", "1", note="the ROI Number"),
    _A("ReferencedROINumber", "1"),
    _A("ROIObservationLabel", "3"),
    _A("RTROIInterpretedType", "2"),
    _A("ROIInterpreter", "2"),
    _A("ROIPhysicalPropertiesSequence", "3"),
))
_ROI_PHYSICAL_PROPERTIES_ITEM = Module("ROI Physical Properties Sequence item", "C.8.8.8",
                                       "8-25", (
    _A("ROIPhysicalProperty", "1"),
    _A("ROIPhysicalPropertyValue", "1"),
))

_CONTOUR_DATA = 0x30060050
_CONTOUR_SEQUENCE = 0x30060040
_ROI_CONTOUR_SEQUENCE = 0x30060039
_CS_RE = re.compile(r"^[A-Z0-9_ ]{0,16}$")
_APPROVAL_STATUSES = ("APPROVED", "UNAPPROVED", "REJECTED")
_WORD_SIZES = {"US": 2, "SS": 2, "UL": 4, "SL": 4, "FL": 4, "FD": 8, "AT": 4}


# ------------------------------------------------------------------ records
@dataclass(frozen=True)
class ImageReference:
    """An image a structure set refers to.

    Parameters
    ----------
    sop_class_uid, sop_instance_uid : str
    """

    sop_class_uid: str
    sop_instance_uid: str


@dataclass(frozen=True)
class ReferencedSeries:
    """An RT Referenced Series Sequence item: a series and its contour images."""

    series_uid: str
    images: tuple[ImageReference, ...] = ()


@dataclass(frozen=True)
class ReferencedStudy:
    """An RT Referenced Study Sequence item.

    Parameters
    ----------
    sop_class_uid : str
        Referenced SOP Class UID (Detached Study Management SOP Class).
    study_uid : str
        Referenced SOP Instance UID: the Study Instance UID.
    series : tuple of ReferencedSeries
    """

    sop_class_uid: str
    study_uid: str
    series: tuple[ReferencedSeries, ...] = ()


@dataclass(frozen=True)
class ReferencedFrameOfReference:
    """A Referenced Frame of Reference Sequence item."""

    frame_of_reference_uid: str
    studies: tuple[ReferencedStudy, ...] = ()


@dataclass(frozen=True, eq=False)
class ImageSeriesReference:
    """A CT (or other image) series a structure set is built against.

    Parameters
    ----------
    study_uid, series_uid, frame_of_reference_uid : str
    images : tuple of ImageReference
        One per slice, in slice order (increasing offset along the normal).
    stack : SliceStack
        The slices' geometry, same order.
    header : pydicom.Dataset
        The first slice's header: patient and study are carried from it.
    """

    study_uid: str
    series_uid: str
    frame_of_reference_uid: str
    images: tuple[ImageReference, ...]
    stack: SliceStack
    header: Dataset

    @property
    def references(self) -> ReferencedFrameOfReference:
        """The Referenced Frame of Reference Sequence item listing every image."""
        return ReferencedFrameOfReference(self.frame_of_reference_uid, (
            ReferencedStudy(DETACHED_STUDY_MANAGEMENT, self.study_uid,
                            (ReferencedSeries(self.series_uid, self.images),)),))

    def image_for(self, points: np.ndarray) -> ImageReference | None:
        """The image whose plane holds ``points`` (N, 3) in mm, if any.

        A planar contour references the slice whose plane it lies in (within
        :data:`IMAGE_PLANE_TOLERANCE_MM`); a single point the slice nearest
        to it, within half the slice spacing.
        """
        offsets = points @ self.stack.normal
        slices = self.stack.offsets
        level = float(np.mean(offsets))
        k = int(np.argmin(np.abs(slices - level)))
        if points.shape[0] == 1:
            half = self.stack.normal_spacing / 2 if self.stack.nslices > 1 else math.inf
            return self.images[k] if abs(slices[k] - level) <= half else None
        if float(np.max(np.abs(offsets - slices[k]))) <= IMAGE_PLANE_TOLERANCE_MM:
            return self.images[k]
        return None


@dataclass(frozen=True, eq=False)
class StructureSet:
    """An RT Structure Set as read by :func:`parse_rtstruct`.

    Parameters
    ----------
    structures : tuple of Structure
        In Structure Set ROI Sequence order.
    frame_of_reference_uid : str or None
        The first Referenced Frame of Reference's UID (or the first ROI's).
    references : tuple of ReferencedFrameOfReference
        The Referenced Frame of Reference Sequence.
    label, name, description : str
        Structure Set Label, Name and Description.
    sop_instance_uid, series_uid, study_uid : str
    approval_status : str
        Approval Status, empty when absent.
    contour_data_bytes : tuple of tuple of int
        Per structure, the length in bytes of each contour's encoded Contour
        Data as found in the file (as read back from a data set built in
        memory: the length it will be written with).
    dataset : pydicom.Dataset
        The data set read (patient and study are carried from it).
    """

    structures: tuple[Structure, ...]
    frame_of_reference_uid: str | None
    references: tuple[ReferencedFrameOfReference, ...]
    label: str
    name: str
    description: str
    sop_instance_uid: str
    series_uid: str
    study_uid: str
    approval_status: str
    contour_data_bytes: tuple[tuple[int, ...], ...]
    dataset: Dataset = field(repr=False)

    def structure(self, number: int) -> Structure:
        """The structure with ROI Number ``number``.

        Raises
        ------
        KeyError
            If there is none.
        """
        for s in self.structures:
            if s.number == number:
                return s
        raise KeyError(number)


@dataclass(frozen=True)
class ContourBudget:
    """How contours are reduced when a structure set is built (iPlan Note 8-3).

    The :data:`CONTOUR_DATA_MAX_BYTES` limit on encoded Contour Data always applies.

    Parameters
    ----------
    max_points : int, optional
        Most points per contour (for third-party systems); at least 3.
    tolerance_mm : float, optional
        Drop points while every original point stays within this distance.
    method : str or ReductionMethod
        ``"vw"`` (Visvalingam-Whyatt, default) or ``"rdp"`` (Douglas-Peucker).
    """

    max_points: int | None = None
    tolerance_mm: float | None = None
    method: ReductionMethod = ReductionMethod.VW

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "method", ReductionMethod(self.method))
        except ValueError:
            raise InvalidInputError(f"method must be 'vw' or 'rdp', got {self.method!r}") from None
        if self.max_points is not None and (isinstance(self.max_points, bool)
                                            or int(self.max_points) != self.max_points
                                            or self.max_points < 3):
            raise InvalidInputError(f"max_points must be an integer of at least 3, got "
                                    f"{self.max_points!r}")
        if self.tolerance_mm is not None and not (math.isfinite(self.tolerance_mm)
                                                  and self.tolerance_mm > 0):
            raise InvalidInputError(f"tolerance must be a positive number of mm, got "
                                    f"{self.tolerance_mm!r}")


class ContourReductionRow(NamedTuple):
    """One closed contour as written by :func:`build_rtstruct` (mm, percent).

    ``original`` holds the contour's points as given, ``written`` the points
    written (after the 0.001 mm decimal rounding and any reduction).
    """

    roi_number: int
    roi_name: str
    contour_number: int
    points_before: int
    points_after: int
    hausdorff_mm: float
    area_change_percent: float
    status: ReductionStatus
    original: np.ndarray
    written: np.ndarray


@dataclass(frozen=True, eq=False)
class RTStructBuild:
    """What :func:`build_rtstruct` made.

    Parameters
    ----------
    dataset : pydicom.Dataset
        The RT Structure Set, ready for :func:`write_rtstruct`.
    contours : list of ContourReductionRow
        Every closed planar contour written, in order.
    volumes_cm3 : dict of int to float or None
        ROI Volume written per ROI Number.
    """

    dataset: Dataset
    contours: list[ContourReductionRow]
    volumes_cm3: dict[int, float | None]

    @property
    def reduced(self) -> list[ContourReductionRow]:
        """The contours that lost points."""
        return [r for r in self.contours if r.points_after < r.points_before]


# ------------------------------------------------------------------ reading
def read_rtstruct(path: str | os.PathLike) -> StructureSet:
    """Read an RT Structure Set file (with or without the Part 10 preamble).

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    StructureSet

    Raises
    ------
    InvalidInputError
        If the file cannot be read, is not DICOM or not an RT Structure Set,
        or its content is broken (see :func:`parse_rtstruct`); the message
        names the file and the attribute.
    """
    file = Path(path)
    return parse_rtstruct(read_dicom_file(file).ds, path=file)


def _text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value)


def _uid_list(seq: Iterable[Dataset]) -> tuple[ImageReference, ...]:
    return tuple(ImageReference(_text(i, "ReferencedSOPClassUID"),
                                _text(i, "ReferencedSOPInstanceUID")) for i in seq)


def _references(ds: Dataset) -> tuple[ReferencedFrameOfReference, ...]:
    out = []
    for ref in ds.get("ReferencedFrameOfReferenceSequence") or []:
        studies = []
        for study in ref.get("RTReferencedStudySequence") or []:
            series = tuple(ReferencedSeries(_text(s, "SeriesInstanceUID"),
                                            _uid_list(s.get("ContourImageSequence") or []))
                           for s in study.get("RTReferencedSeriesSequence") or [])
            studies.append(ReferencedStudy(_text(study, "ReferencedSOPClassUID"),
                                           _text(study, "ReferencedSOPInstanceUID"), series))
        out.append(ReferencedFrameOfReference(_text(ref, "FrameOfReferenceUID"), tuple(studies)))
    return tuple(out)


def _contour_data(item: Dataset, where: str) -> tuple[np.ndarray, int]:
    """Contour Data of a Contour Sequence item as (N, 3) mm and its encoded length."""
    if _CONTOUR_DATA not in item:
        raise ValueError("has no Contour Data (3006,0050)")
    elem = item.get_item(_CONTOUR_DATA)
    if isinstance(elem, RawDataElement):
        raw = bytes(elem.value or b"")
        length = len(raw)
        texts = raw.decode("ascii", errors="replace").strip(" \x00").split("\\") if raw else []
    else:
        value = elem.value
        items = value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
        texts = [str(v) for v in items if v is not None and str(v) != ""]
        length = sum(len(t) for t in texts) + max(len(texts) - 1, 0)
        length += length % 2
    try:
        values = np.array(texts, dtype=np.float64)
    except ValueError:
        raise ValueError(f"Contour Data holds a value that is not a number ({where})") from None
    if values.size % 3:
        raise ValueError(f"Contour Data has {values.size} values, not a multiple of 3")
    return values.reshape(-1, 3), length


def _int_of(ds: Dataset, keyword: str, path: Path | None, where: str) -> int:
    value = ds.get(keyword)
    try:
        return int(value)
    except (TypeError, ValueError):
        raise InvalidInputError(f"{where}: {keyword} is missing or not an integer ({value!r})",
                                path=path, tag=keyword) from None


def parse_rtstruct(ds: Dataset, path: str | os.PathLike | None = None) -> StructureSet:
    """Read an RT Structure Set data set into :class:`StructureSet`.

    Lenient where the content is still usable (unknown RT ROI Interpreted
    Types are kept as text); strict where it is not.  These are the contour
    checks every reader applies (:mod:`rtforge.io.integrity`).

    Parameters
    ----------
    ds : pydicom.Dataset
    path : str or path-like, optional
        The file it came from, named in errors.

    Returns
    -------
    StructureSet

    Raises
    ------
    InvalidInputError
        If the data set is not an RT Structure Set; an ROI Number is missing
        or repeated; an ROI Contour or RT ROI Observations item refers to an
        ROI Number the Structure Set ROI Sequence does not have; a contour has
        an unknown Contour Geometric Type, Contour Data that is not numbers,
        not a multiple of 3 values, a NaN or infinite coordinate, fewer
        points than its type needs (3 for CLOSED_PLANAR), or a Number of
        Contour Points that does not match its Contour Data.
    """
    where_file = None if path is None else Path(path)
    sop_class = _text(ds, "SOPClassUID")
    modality = _text(ds, "Modality")
    if sop_class != RTStructureSetStorage and not (not sop_class and modality == "RTSTRUCT"):
        what = (f"but {sop_class_name(sop_class)} (SOP Class {sop_class})" if sop_class
                else f"(modality {modality or '(none)'})")
        raise InvalidInputError(f"not an RT Structure Set {what}", path=where_file,
                                tag="SOPClassUID")
    rois: dict[int, dict] = {}
    for n, item in enumerate(ds.get("StructureSetROISequence") or [], start=1):
        number = _int_of(item, "ROINumber", where_file, f"Structure Set ROI Sequence item {n}")
        if number in rois:
            raise InvalidInputError(f"ROI Number {number} appears twice in the Structure Set ROI "
                                    "Sequence", path=where_file, tag="ROINumber")
        volume = item.get("ROIVolume")
        rois[number] = {
            "number": number, "name": _text(item, "ROIName"),
            "description": _text(item, "ROIDescription"),
            "generation_algorithm": _text(item, "ROIGenerationAlgorithm") or None,
            "frame_of_reference_uid": _text(item, "ReferencedFrameOfReferenceUID") or None,
            "volume_cm3": float(volume) if volume not in (None, "") else None,
            "contours": [], "bytes": [],
        }
    for n, item in enumerate(ds.get("ROIContourSequence") or [], start=1):
        where = f"ROI Contour Sequence item {n}"
        number = _int_of(item, "ReferencedROINumber", where_file, where)
        if number not in rois:
            raise InvalidInputError(f"{where} refers to ROI Number {number}, which the Structure "
                                    "Set ROI Sequence does not define", path=where_file,
                                    tag="ReferencedROINumber")
        roi = rois[number]
        colour = item.get("ROIDisplayColor")
        if colour is not None and len(colour) == 3:
            roi["colour"] = tuple(int(c) for c in colour)
        for c, contour in enumerate(item.get("ContourSequence") or [], start=1):
            cwhere = f"ROI {number} contour {c}"
            kind = _text(contour, "ContourGeometricType") or "CLOSED_PLANAR"
            if kind not in ContourGeometricType.__members__:
                raise InvalidInputError(f"{cwhere}: Contour Geometric Type {kind!r} is not one of "
                                        f"{list(ContourGeometricType.__members__)}",
                                        path=where_file, tag="ContourGeometricType")
            try:
                points, length = _contour_data(contour, cwhere)
                built = Contour(points, ContourGeometricType(kind),
                                tuple((r.sop_class_uid, r.sop_instance_uid) for r in
                                      _uid_list(contour.get("ContourImageSequence") or [])))
            except (ValueError, GeometryError) as exc:
                reason = exc.reason if isinstance(exc, InvalidInputError) else str(exc)
                raise InvalidInputError(f"{cwhere}: {reason}", path=where_file,
                                        tag="ContourData") from None
            stated = contour.get("NumberOfContourPoints")
            if stated not in (None, "") and _int_of(contour, "NumberOfContourPoints", where_file,
                                                    cwhere) != built.n_points:
                raise InvalidInputError(f"{cwhere}: Number of Contour Points says {stated}, "
                                        f"Contour Data holds {built.n_points} points (truncated "
                                        "or damaged)", path=where_file,
                                        tag="NumberOfContourPoints")
            roi["contours"].append(built)
            roi["bytes"].append(length)
    for n, item in enumerate(ds.get("RTROIObservationsSequence") or [], start=1):
        where = f"RT ROI Observations Sequence item {n}"
        number = _int_of(item, "ReferencedROINumber", where_file, where)
        if number not in rois:
            raise InvalidInputError(f"{where} refers to ROI Number {number}, which the Structure "
                                    "Set ROI Sequence does not define", path=where_file,
                                    tag="ReferencedROINumber")
        roi = rois[number]
        roi["interpreted_type"] = _text(item, "RTROIInterpretedType") or None
        roi["interpreter"] = _text(item, "ROIInterpreter")
        roi["observation_label"] = _text(item, "ROIObservationLabel")
        props = []
        for prop in item.get("ROIPhysicalPropertiesSequence") or []:
            value = prop.get("ROIPhysicalPropertyValue")
            if prop.get("ROIPhysicalProperty") and value not in (None, ""):
                props.append((_text(prop, "ROIPhysicalProperty"), float(value)))
        roi["physical_properties"] = tuple(props)
    structures = []
    lengths = []
    for roi in rois.values():
        lengths.append(tuple(roi.pop("bytes")))
        roi["contours"] = tuple(roi["contours"])
        structures.append(Structure(**roi))
    references = _references(ds)
    frame = references[0].frame_of_reference_uid if references else None
    if not frame and structures:
        frame = structures[0].frame_of_reference_uid
    return StructureSet(
        structures=tuple(structures), frame_of_reference_uid=frame or None,
        references=references, label=_text(ds, "StructureSetLabel"),
        name=_text(ds, "StructureSetName"), description=_text(ds, "StructureSetDescription"),
        sop_instance_uid=_text(ds, "SOPInstanceUID"), series_uid=_text(ds, "SeriesInstanceUID"),
        study_uid=_text(ds, "StudyInstanceUID"), approval_status=_text(ds, "ApprovalStatus"),
        contour_data_bytes=tuple(lengths), dataset=ds)


# ------------------------------------------------------------------ encoding
def contour_data_encoding(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates as Contour Data will hold them, and each point's encoded size.

    Parameters
    ----------
    points : ndarray of shape (N, 3), dtype float64

    Returns
    -------
    quantized : ndarray of shape (N, 3)
        The values the written decimal strings read back as (within
        :data:`CONTOUR_DATA_PRECISION_MM`).
    point_bytes : ndarray of shape (N,), dtype int64
        Characters of the point's three values plus their three separators
        (the encoded Contour Data is their sum minus one, padded to even).

    Raises
    ------
    ConformanceError
        If a coordinate cannot be written in 16 characters at that precision.
    """
    try:
        quantized, nchars = shortest_decimals(points, CONTOUR_DATA_PRECISION_MM)
    except InvalidInputError as exc:
        raise ConformanceError(f"Contour Data cannot be written: {exc.reason}") from None
    if nchars.size and int(nchars.max()) > MAX_VALUE_LENGTH["DS"]:
        raise ConformanceError("a contour coordinate needs more than 16 characters at "
                               f"{CONTOUR_DATA_PRECISION_MM} mm (DS): coordinates beyond "
                               "1e11 mm are not patient coordinates")
    return quantized, nchars.astype(np.int64).sum(axis=-1) + 3


def encode_contour_data(points: np.ndarray) -> list[str]:
    """The Contour Data strings of quantized points (see :func:`contour_data_encoding`).

    Parameters
    ----------
    points : ndarray of shape (N, 3)
        Coordinates already quantized by :func:`contour_data_encoding` (once:
        rounding again may shorten a value, 0.561 becoming 0.56).

    Returns
    -------
    list of str
        ``3 N`` decimal strings, ``x1, y1, z1, x2, ...``.
    """
    return [format_ds(v) for v in np.asarray(points, dtype=np.float64).ravel().tolist()]


def _contour_data_element(points: np.ndarray) -> RawDataElement:
    """Contour Data as raw DS bytes (ASCII, backslash-separated, padded to even)."""
    value = "\\".join(encode_contour_data(points)).encode("ascii")
    if len(value) % 2:
        value += b" "
    return RawDataElement(BaseTag(_CONTOUR_DATA), "DS", len(value), value, 0, False, True,
                          True, False)


def reduce_for_contour_data(contours: Sequence[np.ndarray], *,
                            max_points: int | Sequence[int] | np.ndarray | None = None,
                            tolerance_mm: float | None = None,
                            method: str | ReductionMethod = ReductionMethod.VW
                            ) -> tuple[list[np.ndarray], ReductionReport]:
    """Closed planar contours as Contour Data will hold them, reduced to fit.

    :func:`~rtforge.core.contours.reduce_packed` keeps each contour within
    ``max_points`` (if given) and within :data:`CONTOUR_DATA_MAX_BYTES`
    encoded bytes (always; each point's size is that of its three values
    written by :func:`contour_data_encoding`, looked up only when the point
    budget does not already imply it), and with a tolerance reduces every
    contour.  The kept points are then rounded as written.  A reduced
    contour that the rounding would make touch itself (a feature under
    0.001 mm) is reduced again from its rounded coordinates, so the written
    contour keeps every guarantee.

    Parameters
    ----------
    contours : sequence of ndarray of shape (N, 3)
        Closed planar contours in mm.
    max_points : int or sequence of int, optional
        One budget for all, or one per contour.
    tolerance_mm : float, optional
    method : {"vw", "rdp"}

    Returns
    -------
    contours : list of ndarray of shape (M, 3)
        The points to write, rounded.
    report : ReductionReport
        Hausdorff distances and areas measured on the coordinates as given
        (the rounding moves a point by less than 0.001 mm in each axis).

    Raises
    ------
    GeometryError, InvalidInputError
        As :func:`~rtforge.core.contours.reduce_contours`.
    ConformanceError
        As :func:`contour_data_encoding`.
    """
    count = len(contours)
    implied = max_points is not None and np.size(max_points) > 0 \
        and int(np.max(max_points)) * _MAX_POINT_BYTES - 1 <= CONTOUR_DATA_MAX_BYTES
    sizes = None if implied else [contour_data_encoding(np.asarray(c, dtype=np.float64))[1]
                                  for c in contours]
    result = reduce_contours(contours, max_points=max_points,
                             max_bytes=None if implied else CONTOUR_DATA_MAX_BYTES,
                             point_bytes=sizes, tolerance_mm=tolerance_mm, method=method)
    report = result.report
    reduced, reduced_offsets = pack_contours(result.contours, check_finite=False)
    written = np.ascontiguousarray(contour_data_encoding(reduced)[0])
    claimed = np.isin(report.status, (ReductionStatus.REDUCED, ReductionStatus.REPAIRED))
    broken = np.flatnonzero(claimed & ~simple_packed(written, reduced_offsets))
    out = [written[reduced_offsets[c]:reduced_offsets[c + 1]] for c in range(count)]
    for c in broken.tolist():
        logger.info("contour %d touches itself once rounded to %g mm: reduced again from the "
                    "rounded coordinates", c, CONTOUR_DATA_PRECISION_MM)
        # Rounding is not idempotent (0.5614 -> 0.561 -> 0.56): the sizes are those of
        # the original values, which are what the rounded values are written as.
        rounded, point_bytes = contour_data_encoding(np.asarray(contours[c], dtype=np.float64))
        budget = None if max_points is None else np.broadcast_to(max_points, (count,))[c]
        rounded = np.ascontiguousarray(rounded)
        again, line = reduce_packed(rounded, np.array([0, rounded.shape[0]], dtype=np.intp),
                                    max_points=budget, max_bytes=CONTOUR_DATA_MAX_BYTES,
                                    point_bytes=point_bytes, tolerance_mm=tolerance_mm,
                                    method=method, index_base=c)
        out[c] = rounded[again]
        for name in ("points_after", "hausdorff_mm", "area_before_mm2", "area_after_mm2",
                     "status"):
            getattr(report, name)[c] = getattr(line, name)[0]
    return out, report


# ------------------------------------------------------------------ building
def _check_cs(value: object, what: str) -> str:
    text = str(value.value if hasattr(value, "value") else value)
    if not _CS_RE.match(text):
        raise InvalidInputError(f"{what} {text!r} is not a code string (CS: up to 16 upper-case "
                                "letters, digits, '_' or space)")
    return text


def _item(module: Module, values: Mapping[str, object], omit: Iterable[str] = ()) -> Dataset:
    return build_dataset((module,), values, omit=omit)


def _reference_items(refs: Sequence[ReferencedFrameOfReference]) -> list[Dataset]:
    """Referenced Frame of Reference Sequence items.  A referenced series
    without images cannot be written (Contour Image Sequence is Type 1) and
    is left out, as is a study left without series; both are logged."""
    items = []
    for ref in refs:
        studies = []
        for study in ref.studies:
            series = [s for s in study.series if s.images]
            for s in study.series:
                if not s.images:
                    logger.warning("reference to series %s left out: it lists no images",
                                   s.series_uid)
            if not series:
                logger.warning("reference to study %s left out: no series with images",
                               study.study_uid)
                continue
            studies.append(_item(_RT_REFERENCED_STUDY_ITEM, {
                "ReferencedSOPClassUID": study.sop_class_uid or DETACHED_STUDY_MANAGEMENT,
                "ReferencedSOPInstanceUID": study.study_uid,
                "RTReferencedSeriesSequence": [_item(_RT_REFERENCED_SERIES_ITEM, {
                    "SeriesInstanceUID": s.series_uid,
                    "ContourImageSequence": [_item(_IMAGE_ITEM, {
                        "ReferencedSOPClassUID": i.sop_class_uid,
                        "ReferencedSOPInstanceUID": i.sop_instance_uid}) for i in s.images],
                }) for s in series],
            }))
        items.append(_item(_REFERENCED_FRAME_OF_REFERENCE_ITEM, {
            "FrameOfReferenceUID": ref.frame_of_reference_uid,
            "RTReferencedStudySequence": studies or None}))
    return items


def _check_structures(structures: Sequence[Structure]) -> None:
    if not structures:
        raise InvalidInputError("a structure set needs at least one structure (Structure Set "
                                "ROI Sequence is Type 1)")
    seen: set[int] = set()
    for s in structures:
        if not isinstance(s, Structure):
            raise InvalidInputError(f"structures must be Structure objects, got {type(s).__name__}")
        if s.number in seen:
            raise InvalidInputError(f"ROI Number {s.number} is used by more than one structure")
        seen.add(s.number)
        if s.interpreted_type is not None:
            _check_cs(s.interpreted_type, f"RT ROI Interpreted Type of ROI {s.number}")
        if s.generation_algorithm is not None:
            _check_cs(s.generation_algorithm, f"ROI Generation Algorithm of ROI {s.number}")


def _slice_thickness(images: ImageSeriesReference | None, grid: Grid | None) -> float | None:
    if images is not None and images.stack.nslices > 1:
        return images.stack.normal_spacing
    if grid is not None:
        return float(grid.spacing[2] * abs(grid.direction[:, 2] @ grid.slice_normal))
    return None


def build_rtstruct(structures: Sequence[Structure], *,
                   images: ImageSeriesReference | None = None,
                   references: Sequence[ReferencedFrameOfReference] | None = None,
                   frame_of_reference_uid: str | None = None,
                   grid: Grid | None = None,
                   source: Dataset | None = None,
                   budget: ContourBudget | None = None,
                   label: str = "RTFORGE",
                   name: str | None = None,
                   description: str | None = None,
                   instance_number: int = 1,
                   series_number: int = 1,
                   series_description: str | None = "rtforge structure set",
                   approval_status: str = "UNAPPROVED",
                   reviewer_name: str | None = None,
                   config: ExportConfig | None = None,
                   timestamp: datetime | None = None,
                   series_uid: str | None = None,
                   sop_instance_uid: str | None = None,
                   overrides: Mapping[str, object] | None = None) -> RTStructBuild:
    """Build an RT Structure Set data set (iPlan tables 8-2, 8-23 to 8-26).

    Parameters
    ----------
    structures : sequence of Structure
        At least one; ROI Numbers unique.  Contour points in mm.
    images : ImageSeriesReference, optional
        The image series on disk the contours belong to
        (:func:`rtforge.io.series.reference_image_series`): Frame of Reference, study, patient
        and every image are referenced from it, and each contour references
        the slice it lies on.
    references : sequence of ReferencedFrameOfReference, optional
        Referenced Frame of Reference Sequence to write as it is (that of a
        structure set being rewritten); contours keep their own image
        references.
    frame_of_reference_uid : str, optional
        Without ``images`` or ``references`` (built against a Grid alone):
        the Frame of Reference UID; no image is referenced.
    grid : Grid, optional
        The grid the contours were drawn on: its slice spacing is the slab
        thickness of ROI Volume when there are no images.
    source : pydicom.Dataset, optional
        Patient and study are carried over from it (default: the images'
        header; without either, a new Study Instance UID is made).
    budget : ContourBudget, optional
        Point budget, tolerance and method for contour reduction; the
        :data:`CONTOUR_DATA_MAX_BYTES` limit applies regardless.
    label, name, description : str, optional
        Structure Set Label (SH), Name (LO) and Description (ST).
    instance_number, series_number : int, optional
    series_description : str, optional
    approval_status : {"UNAPPROVED", "APPROVED", "REJECTED"}, optional
        ``APPROVED`` and ``REJECTED`` need ``reviewer_name``.
    reviewer_name : str, optional
    config : ExportConfig, optional
    timestamp : datetime, optional
        Structure Set, Series and Instance Creation Date/Time; now by default.
    series_uid, sop_instance_uid : str, optional
        New ones under the configured root by default.
    overrides : mapping of str to object, optional
        Keyword to value for top-level attributes of the IOD's modules,
        applied last (e.g. ``PatientName``).

    Returns
    -------
    RTStructBuild

    Raises
    ------
    InvalidInputError
        If there is no structure, an ROI Number repeats, a coded value is not
        a code string, no Frame of Reference is given, the approval status is
        unknown or lacks a reviewer, or an override is outside the IOD.
    GeometryError
        If a closed contour that must be reduced is not planar, is degenerate
        or cannot be reduced within its budget without self-intersecting.
    ConformanceError
        If an open or point contour's Contour Data exceeds
        :data:`CONTOUR_DATA_MAX_BYTES`, or a value breaks its VR.
    """
    config = config or ExportConfig()
    budget = budget or ContourBudget()
    structures = list(structures)
    _check_structures(structures)
    if images is not None:
        refs: tuple[ReferencedFrameOfReference, ...] = (images.references,)
    elif references:
        refs = tuple(references)
    elif frame_of_reference_uid:
        refs = (ReferencedFrameOfReference(str(frame_of_reference_uid)),)
    else:
        raise InvalidInputError("a structure set needs a Frame of Reference: give images (a CT "
                                "series), references or frame_of_reference_uid")
    frame = refs[0].frame_of_reference_uid
    status = _check_cs(approval_status, "Approval Status")
    if status not in _APPROVAL_STATUSES:
        raise InvalidInputError(f"Approval Status must be one of {_APPROVAL_STATUSES}, got "
                                f"{status!r}")
    if status != "UNAPPROVED" and not reviewer_name:
        raise InvalidInputError(f"an {status} structure set needs reviewer_name")
    when = timestamp or datetime.now()
    date, time = format_da(when), format_tm(when)

    contours, roi_items, contour_items, observations, volumes = _contour_modules(
        structures, frame, images, grid, budget)

    values = carried_values(source if source is not None else
                            (images.header if images is not None else None),
                            (PATIENT, GENERAL_STUDY, PATIENT_STUDY, FRAME_OF_REFERENCE))
    if "StudyInstanceUID" not in values:
        logger.warning("no source data set or images: a new Study Instance UID is made")
        values["StudyInstanceUID"] = new_uid(config.uid_root)
    values.update(equipment_values(config))
    values.update({
        "Modality": "RTSTRUCT",
        "FrameOfReferenceUID": frame,
        "SeriesInstanceUID": series_uid or new_uid(config.uid_root),
        "SeriesNumber": series_number,
        "SeriesDescription": series_description,
        "SeriesDate": date, "SeriesTime": time,
        "OperatorsName": None,
        "StructureSetLabel": label,
        "StructureSetName": name,
        "StructureSetDescription": description,
        "InstanceNumber": instance_number,
        "StructureSetDate": date, "StructureSetTime": time,
        "ReferencedFrameOfReferenceSequence": _reference_items(refs),
        "StructureSetROISequence": roi_items,
        "RTROIObservationsSequence": observations,
        "ApprovalStatus": status,
        "SOPClassUID": RTStructureSetStorage,
        "SOPInstanceUID": sop_instance_uid or new_uid(config.uid_root),
        "InstanceCreationDate": date, "InstanceCreationTime": time,
    })
    if status != "UNAPPROVED":
        values.update({"ReviewDate": date, "ReviewTime": time, "ReviewerName": reviewer_name})
    values.update(dict(overrides or {}))
    ds = build_dataset(RT_STRUCTURE_SET_IOD, values, config=config,
                       omit=("ROIContourSequence",))
    ds.ROIContourSequence = contour_items  # attached last, as the Contour Sequences above
    return RTStructBuild(dataset=ds, contours=contours, volumes_cm3=volumes)


def _contour_modules(structures: list[Structure], frame: str,
                     images: ImageSeriesReference | None, grid: Grid | None,
                     budget: ContourBudget
                     ) -> tuple[list[ContourReductionRow], list[Dataset], list[Dataset],
                                list[Dataset], dict[int, float | None]]:
    """Reduce and encode every contour; the three ROI sequences and the volumes."""
    closed = [c for s in structures for c in s.contours if c.is_closed]
    written: list[np.ndarray] = []
    lines = []
    if closed:
        written, report = reduce_for_contour_data(
            [c.points for c in closed], max_points=budget.max_points,
            tolerance_mm=budget.tolerance_mm, method=budget.method)
        lines = list(report)
    by_contour = {id(c): n for n, c in enumerate(closed)}
    rows: list[ContourReductionRow] = []
    roi_items, contour_items, observations = [], [], []
    volumes: dict[int, float | None] = {}
    thickness = _slice_thickness(images, grid)
    for s in structures:
        sequence = []
        planar = []
        for number, contour in enumerate(s.contours, start=1):
            n = by_contour.get(id(contour))
            if n is None:
                points, point_bytes = contour_data_encoding(contour.points)
                if int(point_bytes.sum()) - 1 > CONTOUR_DATA_MAX_BYTES:
                    raise ConformanceError(
                        f"ROI {s.number} contour {number} ({contour.geometric_type.value}, "
                        f"{contour.n_points} points) needs {int(point_bytes.sum()) - 1} bytes of "
                        f"Contour Data, more than {CONTOUR_DATA_MAX_BYTES}; only closed planar "
                        "contours are reduced")
            else:
                points = written[n]
                planar.append(points)
                line = lines[n]
                rows.append(ContourReductionRow(
                    roi_number=s.number, roi_name=s.name, contour_number=number,
                    points_before=line.points_before, points_after=line.points_after,
                    hausdorff_mm=line.hausdorff_mm,
                    area_change_percent=line.area_change_percent, status=line.status,
                    original=contour.points, written=points))
            image = images.image_for(points) if images is not None else None
            uids = ((image.sop_class_uid, image.sop_instance_uid),) if image is not None \
                else contour.image_uids
            item = _item(_CONTOUR_ITEM, {
                "ContourNumber": number,
                "ContourImageSequence": [_item(_IMAGE_ITEM, {
                    "ReferencedSOPClassUID": c, "ReferencedSOPInstanceUID": i})
                    for c, i in uids] or None,
                "ContourGeometricType": contour.geometric_type.value,
                "NumberOfContourPoints": points.shape[0],
            }, omit=("ContourData",))
            item[_CONTOUR_DATA] = _contour_data_element(points)
            sequence.append(item)
        # Half end caps: the volume planning systems store and `rtforge dvh` finds.
        volume = structure_volume(planar, thickness, end_cap=EndCap.HALF) if planar else None
        volumes[s.number] = volume
        roi_items.append(_item(_STRUCTURE_SET_ROI_ITEM, {
            "ROINumber": s.number,
            "ReferencedFrameOfReferenceUID": s.frame_of_reference_uid or frame,
            "ROIName": s.name,
            "ROIDescription": s.description or None,
            "ROIVolume": None if volume is None else round(volume, 6),
            "ROIGenerationAlgorithm": None if s.generation_algorithm is None
            else _check_cs(s.generation_algorithm, "ROI Generation Algorithm"),
        }))
        # Contour Sequence is attached after build_dataset, which would decode the raw
        # Contour Data while looking for text; the items hold none (UI, CS, IS, DS only).
        roi_item = _item(_ROI_CONTOUR_ITEM, {
            "ReferencedROINumber": s.number,
            "ROIDisplayColor": list(s.colour) if s.colour is not None else None,
        }, omit=("ContourSequence",))
        if sequence:
            roi_item.ContourSequence = sequence
        contour_items.append(roi_item)
        observations.append(_item(_RT_ROI_OBSERVATIONS_ITEM, {
            "ObservationNumber": s.number,
            "ReferencedROINumber": s.number,
            "ROIObservationLabel": s.observation_label or None,
            "RTROIInterpretedType": None if s.interpreted_type is None
            else _check_cs(s.interpreted_type, "RT ROI Interpreted Type"),
            "ROIInterpreter": s.interpreter or None,
            "ROIPhysicalPropertiesSequence": [_item(_ROI_PHYSICAL_PROPERTIES_ITEM, {
                "ROIPhysicalProperty": p, "ROIPhysicalPropertyValue": v})
                for p, v in s.physical_properties] or None,
        }))
    return rows, roi_items, contour_items, observations, volumes


# ------------------------------------------------------------------ writing
def _value_length(elem: DataElement) -> int:
    """Bytes the element's value takes when encoded (even-padded)."""
    value = elem.value
    vr = elem.VR
    if value is None:
        return 0
    if vr in _WORD_SIZES:
        count = len(value) if isinstance(value, Sequence) and not isinstance(value, str) else 1
        return count * _WORD_SIZES[vr]
    if isinstance(value, bytes | bytearray):
        return len(value) + len(value) % 2
    items = value if isinstance(value, Sequence) and not isinstance(value, str) else [value]
    texts = [_text_of(v) for v in items]
    length = sum(len(t.encode("utf-8")) for t in texts) + max(len(texts) - 1, 0)
    return length + length % 2


def _text_of(value: object) -> str:
    """A value as pydicom writes it: its original string when it kept one."""
    original = getattr(value, "original_string", None)
    if isinstance(original, bytes):
        return original.decode("ascii", errors="replace")
    return original or str(value)


def _ds_texts(elem: DataElement | RawDataElement) -> list[str]:
    if isinstance(elem, RawDataElement):
        raw = bytes(elem.value or b"")
        return [t.strip(" ") for t in raw.decode("ascii", errors="replace").split("\\")] \
            if raw else []
    items = elem.value if isinstance(elem.value, Sequence) and not isinstance(elem.value, str) \
        else [elem.value]
    return [_text_of(v) for v in items if v is not None]


def _check_elements(ds: Dataset, explicit: bool, prefix: str, errors: list[str]) -> None:
    for tag in ds.keys():
        elem = ds.get_item(tag)
        raw = isinstance(elem, RawDataElement)
        name = f"{prefix}{tag if raw else ds[tag].keyword}"
        vr = elem.VR
        if vr == "SQ":
            for n, item in enumerate(ds[tag].value or [], start=1):
                _check_elements(item, explicit, f"{name} item {n} > ", errors)
            continue
        if vr == "DS":
            longest = max(_ds_texts(elem), key=len, default="")
            if len(longest) > MAX_VALUE_LENGTH["DS"]:
                errors.append(f"{name}: DS value {longest!r} is {len(longest)} characters "
                              f"(at most {MAX_VALUE_LENGTH['DS']})")
        if explicit and vr not in EXPLICIT_VR_LENGTH_32:
            length = len(elem.value or b"") if isinstance(elem, RawDataElement) \
                else _value_length(elem)
            if length > 0xFFFE:
                errors.append(f"{name}: {vr} value of {length} bytes does not fit the 2-byte "
                              "length of Explicit VR (at most 65534); pydicom would rewrite it "
                              "as VR UN")


def check_encodable(ds: Dataset, transfer_syntax: str = ExplicitVRLittleEndian) -> None:
    """Refuse what pydicom would write silently wrong.

    Checks every element, sequences included: no DS value longer than 16
    characters, and in Explicit VR no element with a 2-byte length whose
    value exceeds 65534 bytes (pydicom would write it as VR UN).  Raw
    elements are checked without being decoded.

    Parameters
    ----------
    ds : pydicom.Dataset
    transfer_syntax : str, optional
        A name or UID accepted by :func:`~rtforge.io.fileset.parse_transfer_syntax`.

    Raises
    ------
    ConformanceError
        Naming the offending elements.
    """
    uid = parse_transfer_syntax(transfer_syntax)
    errors: list[str] = []
    _check_elements(ds, uid in (ExplicitVRLittleEndian, ExplicitVRBigEndian), "", errors)
    if errors:
        more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
        raise ConformanceError("cannot be written conformantly: " + "; ".join(errors[:3]) + more)


def _split(ds: Dataset, tag: int) -> tuple[Dataset, Dataset]:
    """The elements of ``ds`` before and after ``tag`` (raw elements kept raw)."""
    before, after = Dataset(), Dataset()
    for t in ds.keys():
        if t != tag:
            (before if t < tag else after)[t] = ds.get_item(t)
    return before, after


def _encode_contour_item(item: Dataset, ts: str, charset: str | list[str]) -> bytes:
    elem = item.get_item(_CONTOUR_DATA) if _CONTOUR_DATA in item else None
    if not isinstance(elem, RawDataElement):
        return encode_dataset(item, ts, charset)
    rest, _ = _split(item, _CONTOUR_DATA)  # Contour Data is the item's last element
    value = bytes(elem.value)
    return encode_dataset(rest, ts, charset) + element_header(_CONTOUR_DATA, "DS", len(value),
                                                              ts) + value


def _encode_roi_contours(items: Sequence[Dataset], ts: str, charset: str | list[str]) -> bytes:
    encoded = []
    for item in items:
        if _CONTOUR_SEQUENCE not in item:
            encoded.append(encode_dataset(item, ts, charset))
            continue
        head, tail = _split(item, _CONTOUR_SEQUENCE)
        contours = [_encode_contour_item(c, ts, charset) for c in item[_CONTOUR_SEQUENCE].value]
        encoded.append(encode_dataset(head, ts, charset)
                       + encode_sequence(_CONTOUR_SEQUENCE, contours, ts)
                       + encode_dataset(tail, ts, charset))
    return encode_sequence(_ROI_CONTOUR_SEQUENCE, encoded, ts)


def write_rtstruct(ds: Dataset, out_dir: str | os.PathLike,
                   transfer_syntax: str = ExplicitVRLittleEndian, *,
                   flat: bool = False, fsync: bool = True) -> Path:
    """Write an RT Structure Set as a Part 10 file, atomically.

    Parameters
    ----------
    ds : pydicom.Dataset
        From :func:`build_rtstruct`; not modified.
    out_dir : str or path-like
        Root of the file set: the file goes to
        ``<out_dir>/<PatientID>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``,
        or straight into ``out_dir`` when ``flat``.
    transfer_syntax : str, optional
        ``"explicit"`` (default), ``"implicit"``, ``"big"`` or their UIDs.
    flat : bool, optional
    fsync : bool, optional

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ConformanceError
        If :func:`check_encodable` refuses the data set, or SOP Class or
        Instance UID is missing (nothing is written).
    InvalidInputError
        If a text value does not fit the character set
        (:func:`~rtforge.io.charset.check_dataset`; nothing is written).
    InvalidInputError
        If the transfer syntax is not supported.
    """
    ts = parse_transfer_syntax(transfer_syntax)
    for keyword in ("SOPClassUID", "SOPInstanceUID"):
        if not ds.get(keyword):
            raise ConformanceError(f"{keyword} is missing: cannot write a Part 10 file")
    check_encodable(ds, ts)
    check_dataset(ds, skip={_CONTOUR_SEQUENCE})  # contours hold numbers and UIDs only
    path = Path(out_dir) / f"{ds.SOPInstanceUID}.dcm" if flat else instance_path(out_dir, ds)
    charset = ds.get("SpecificCharacterSet", "ISO_IR 6")
    before, after = _split(ds, _ROI_CONTOUR_SEQUENCE)
    chunks = [Part10Prefix(str(ds.SOPClassUID), ts).encode(str(ds.SOPInstanceUID)),
              encode_dataset(before, ts, charset)]
    if _ROI_CONTOUR_SEQUENCE in ds:
        chunks.append(_encode_roi_contours(ds[_ROI_CONTOUR_SEQUENCE].value, ts, charset))
    chunks.append(encode_dataset(after, ts, charset))
    path.parent.mkdir(parents=True, exist_ok=True)
    return atomic_write(path, chunks, fsync=fsync)
