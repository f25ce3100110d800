"""RT Image IOD: DRRs as RT Images (builder, writer, geometry parser) and PNG previews.

Follows iPlan RT Dose 4.1 tables 8-5 and 8-35 and Oncentra Brachy 4.5.3
8.1.1.2.8, with PS3.3 C.8.8.2 where they disagree:

- Image Type ``DERIVED\\SECONDARY\\DRR``, Conversion Type ``WSD``, RT Image
  Plane ``NORMAL``, X-Ray Image Receptor Translation ``(0, 0, SAD - SID)`` and
  Angle 0, Image Plane Pixel Spacing (row\\column, at the receptor plane), RT
  Image Position (the upper-left pixel's centre), RT Image SID, Radiation
  Machine Name, SAD and SSD, Primary Dosimeter Unit, gantry, beam limiting
  device, patient support and table top eccentric angles, table-top positions,
  Isocenter Position and Patient Position: all from the
  :class:`~rtforge.core.beam.BeamGeometry` that made the image (and the beam
  of the plan, when there is one), so the image can be re-projected from its
  own attributes (:func:`rt_image_geometry`).
- With a plan: Referenced RT Plan Sequence, Referenced Beam Number,
  Referenced Fraction Group Number and an Exposure Sequence item holding the
  beam's jaws and MLC leaves (with leaf boundaries) at the control point used
  (Number of Blocks 0; a beam with blocks gets no Exposure Sequence, as its
  blocks are not read).  Without a plan (a geometry typed by an operator): no
  references.  Reported Values Origin, which iPlan writes as ``PLAN``, is
  PS3.3 Type 2C for SIMULATOR and PORTAL images only and must be absent from
  a DRR: it is not written.
- RT Image Label, Name and Description from the beam or the isocentre, as
  :class:`RTImageLabels` templates say (iPlan Note 8-9: configurable; the
  defaults are Oncentra's: the beam name, ``plan:beam`` and the plan label).
- 16-bit unsigned MONOCHROME2 pixels, Rescale Slope/Intercept/Type ``US``
  (Modality LUT, PS3.3 C.11.1, a User module of the RT Image IOD, absent from
  the iPlan table), Pixel Intensity Relationship and Sign, and a VOI LUT
  window in rescaled units with VOI LUT Function ``LINEAR_EXACT``
  (:func:`rtforge.core.drr.quantize` states the rule).
- How the DRR was made (method, HU to μ with energy and HU window, mapping,
  inversion) is written in Derivation Description; Oncentra's private
  ``NUCLETRON`` DRR Generation attributes (group 3007) are not written under
  another vendor's creator.
- Optionally (off by default, iPlan Note 8-15) the private group 3273 with
  Isocenter Position (3273,1000) and Patient Position (3273,1001), under the
  configured private creator (:attr:`ExportConfig.private_creator`), switched
  on by :attr:`ExportConfig.private_isocenter_block` (the configuration file,
  ``rtforge drr --private-isocenter``) or per image.

:func:`write_drrs` runs a whole job (a CT and many geometries or plan beams:
cast together, one RT Image series, optional PNG previews with the field
outline); :func:`write_png` writes one preview through the image's window.

Patient, study, patient-study and Frame of Reference values are carried over
from the CT the DRR was computed from (a CT header without a Frame of
Reference UID gives an RT Image without the Frame of Reference module, which
the RT Image IOD makes optional).
"""

from __future__ import annotations

import logging
import math
import os
import re
import struct
import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path

import numpy as np
from pydicom import DataElement, Dataset
from pydicom.uid import RTImageStorage, RTPlanStorage

import rtforge
from rtforge.config import ExportConfig
from rtforge.core.beam import BeamGeometry, PatientPosition, direction_letters
from rtforge.core.drr import (
    Attenuation,
    Device,
    DrrMethod,
    PixelMapping,
    QuantizedDrr,
    body_pixel_spacing,
    central_axis_ssd,
    compute_drr,
    prepare_volume,
    quantize,
)
from rtforge.core.geometry import Volume
from rtforge.core.pictures import annotate_drr
from rtforge.errors import GeometryError, InvalidInputError
from rtforge.io.ct import IMAGE_PIXEL
from rtforge.io.fileset import atomic_write, file_meta, instance_path, write_dataset_file
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
from rtforge.io.rtplan import RTPlan
from rtforge.io.uids import new_uid

__all__ = [
    "GENERAL_IMAGE",
    "RT_IMAGE",
    "MODALITY_LUT",
    "VOI_LUT",
    "RT_IMAGE_IOD",
    "PRIVATE_ISOCENTER_GROUP",
    "RTImageLabels",
    "BEAM_LABELS",
    "ISOCENTER_LABELS",
    "image_label",
    "build_rt_image",
    "write_rt_image",
    "rt_image_geometry",
    "patient_orientation",
    "preview_rgb",
    "encode_png",
    "write_png",
    "DrrRequest",
    "WrittenDrr",
    "DrrRun",
    "plan_requests",
    "fit_to_body",
    "write_drrs",
]

logger = logging.getLogger(__name__)

_A = ModuleAttribute

GENERAL_IMAGE = Module("General Image", "C.7.6.1", "8-16", (
    _A("PatientOrientation", "2",
       note="PS3.3 Type 2C (no Image Orientation (Patient)): the patient directions of the "
            "image's rows and columns, from the geometry (Oncentra writes it empty)"),
    _A("ContentDate", "2", note="PS3.3 Type 2C; always written"),
    _A("ContentTime", "2", note="PS3.3 Type 2C; always written"),
    _A("InstanceNumber", "2"),
    _A("ImageType", "3", note="also Type 1 in the RT Image module"),
    _A("DerivationDescription", "3",
       note="how the DRR was made (method, HU to mu, mapping, inversion)"),
))

RT_IMAGE = Module("RT Image", "C.8.8.2", "8-35", (
    _A("SamplesPerPixel", "1"),
    _A("PhotometricInterpretation", "1"),
    _A("BitsAllocated", "1"),
    _A("BitsStored", "1"),
    _A("HighBit", "1"),
    _A("PixelRepresentation", "1"),
    _A("PixelIntensityRelationship", "3", note="not in the iPlan table: LOG or LIN"),
    _A("PixelIntensityRelationshipSign", "1",
       note="PS3.3 Type 1C (Pixel Intensity Relationship present): always written with it"),
    _A("RTImageLabel", "1", note="iPlan Note 8-9: from the beam or isocentre, configurable"),
    _A("RTImageName", "3", note="iPlan: ALWAYS"),
    _A("RTImageDescription", "3", note="iPlan: ALWAYS"),
    _A("ImageType", "1"),
    _A("ConversionType", "2"),
    _A("RTImagePlane", "1"),
    _A("XRayImageReceptorTranslation", "3", note="iPlan: ALWAYS"),
    _A("XRayImageReceptorAngle", "2"),
    _A("ImagePlanePixelSpacing", "2"),
    _A("RTImagePosition", "2"),
    _A("RadiationMachineName", "2"),
    _A("PrimaryDosimeterUnit", "2"),
    _A("RadiationMachineSAD", "2"),
    _A("RadiationMachineSSD", "3",
       note="iPlan: ALWAYS; from the plan, else measured on the CT along the beam axis, "
            "absent when the axis misses the patient"),
    _A("RTImageSID", "2"),
    _A("ReferencedRTPlanSequence", "3", note="iPlan: ALWAYS; absent without a plan"),
    _A("ReferencedBeamNumber", "3", note="absent without a plan"),
    _A("ReferencedFractionGroupNumber", "3",
       note="iPlan: ALWAYS; absent without a plan or when no fraction group has the beam"),
    _A("ExposureSequence", "3", note="the beam's jaws and MLC at the control point used"),
    _A("GantryAngle", "3", note="iPlan: ALWAYS"),
    _A("BeamLimitingDeviceAngle", "3", note="iPlan: ALWAYS"),
    _A("PatientSupportAngle", "3", note="iPlan: ALWAYS"),
    _A("TableTopEccentricAngle", "3", note="Oncentra: provided"),
    _A("TableTopVerticalPosition", "3", note="iPlan: ALWAYS; written when the plan gives it"),
    _A("TableTopLongitudinalPosition", "3",
       note="iPlan: ALWAYS; written when the plan gives it"),
    _A("TableTopLateralPosition", "3", note="iPlan: ALWAYS; written when the plan gives it"),
    _A("IsocenterPosition", "3", note="iPlan: ALWAYS"),
    _A("PatientPosition", "1",
       note="PS3.3 Type 1C (Isocenter Position present): always written"),
))

MODALITY_LUT = Module("Modality LUT", "C.11.1", "-", (
    _A("RescaleIntercept", "1", note="PS3.3 Type 1C (no Modality LUT Sequence)"),
    _A("RescaleSlope", "1", note="PS3.3 Type 1C (no Modality LUT Sequence)"),
    _A("RescaleType", "1", note="PS3.3 Type 1C: US (unspecified: a line integral or a "
                                "transmission)"),
))

VOI_LUT = Module("VOI LUT", "C.11.2", "8-21", (
    _A("WindowCenter", "1", note="PS3.3 Type 1C; always written, in rescaled units"),
    _A("WindowWidth", "1", note="PS3.3 Type 1C; always written, in rescaled units"),
    _A("WindowCenterWidthExplanation", "3"),
    _A("VOILUTFunction", "3",
       note="LINEAR_EXACT: the rescaled values are line integrals or transmissions, whose "
            "windows are narrower than 1, which LINEAR does not allow (C.11.2.1.2.1)"),
))

#: The modules of the RT Image IOD as rtforge writes it, iPlan table 8-5 plus
#: the Modality LUT (the Clinical Trial modules are not written).
RT_IMAGE_IOD: tuple[Module, ...] = (
    PATIENT, GENERAL_STUDY, PATIENT_STUDY, RT_SERIES, FRAME_OF_REFERENCE, GENERAL_EQUIPMENT,
    GENERAL_IMAGE, IMAGE_PIXEL, RT_IMAGE, MODALITY_LUT, VOI_LUT, SOP_COMMON,
)

#: Group of the optional private block of iPlan Note 8-15 (table 8-37).
PRIVATE_ISOCENTER_GROUP = 0x3273
_PRIVATE_ISOCENTER = 0x00  # (3273,xx00) Isocenter Position DS 3
_PRIVATE_POSITION = 0x01  # (3273,xx01) Patient Position CS 1


@dataclass(frozen=True)
class RTImageLabels:
    """Templates of RT Image Label, Name and Description (iPlan Note 8-9).

    Each is a :meth:`str.format` template with the fields ``beam_number``,
    ``beam_name``, ``beam_description``, ``plan_label``, ``plan_name`` (empty
    without a plan, except ``beam_name`` when the caller names the image),
    ``gantry``, ``collimator``, ``couch`` (degrees, floats) and ``isocenter``
    (``"x, y, z"`` in mm).  Results longer than the VR
    allows (SH 16, LO 64, ST 1024) are cut, with a warning; an empty label
    becomes ``G<gantry>``.
    """

    label: str = "{beam_name}"
    name: str = "{plan_label}:{beam_name}"
    description: str = "{plan_label}"


#: Oncentra's choice for images of a plan's beams: beam name, ``plan:beam``, plan label.
BEAM_LABELS = RTImageLabels()
#: For a geometry typed by an operator (no beam): the angles and the isocentre.
ISOCENTER_LABELS = RTImageLabels(
    label="G{gantry:g} C{collimator:g} T{couch:g}",
    name="gantry {gantry:g} collimator {collimator:g} couch {couch:g}",
    description="isocenter {isocenter} mm")

def patient_orientation(geometry: BeamGeometry) -> list[str]:
    """Patient Orientation (0020,0020) of the image: the patient directions of
    increasing column and increasing row (PS3.3 C.7.6.1.1.1).

    Each is up to three letters (L/R, A/P, H/F) of the direction's components,
    largest first; components under 1e-4 are left out.

    Returns
    -------
    list of str
        ``[row direction, column direction]``, e.g. ``["L", "F"]`` for HFS at
        gantry 0.
    """
    _, column_step, row_step = geometry.detector_frame()
    return [direction_letters(column_step), direction_letters(row_step)]


def _fit(keyword: str, text: str) -> str:
    limit = MAX_VALUE_LENGTH.get({"RTImageLabel": "SH", "RTImageName": "LO",
                                  "RTImageDescription": "ST"}[keyword], 64)
    if len(text) > limit:
        logger.warning("%s %r is longer than %d characters: cut", keyword, text, limit)
        return text[:limit]
    return text


def _labels(labels: RTImageLabels | None, geometry: BeamGeometry, plan: RTPlan | None,
            beam_number: int | None, beam_name: str) -> dict[str, str]:
    """RT Image Label, Name and Description by keyword (see :func:`build_rt_image`)."""
    labels = labels or (BEAM_LABELS if plan is not None else ISOCENTER_LABELS)
    beam = plan.beam(beam_number) if plan is not None and beam_number is not None else None
    fields = {
        "beam_number": "" if beam is None else str(beam.number),
        "beam_name": beam_name if beam is None else beam.name,
        "beam_description": "" if beam is None else beam.description,
        "plan_label": "" if plan is None else plan.label,
        "plan_name": "" if plan is None else plan.name,
        "gantry": geometry.gantry_angle,
        "collimator": geometry.collimator_angle,
        "couch": geometry.couch_angle,
        "isocenter": ", ".join(f"{v:.1f}" for v in geometry.isocenter),
    }
    out = {}
    for keyword, template in (("RTImageLabel", labels.label), ("RTImageName", labels.name),
                              ("RTImageDescription", labels.description)):
        try:
            text = template.format(**fields).strip()
        except (KeyError, IndexError, ValueError) as exc:
            raise InvalidInputError(f"RT Image label template {template!r} is not valid: "
                                    f"{exc}") from None
        out[keyword] = _fit(keyword, text)
    if not out["RTImageLabel"]:
        out["RTImageLabel"] = _fit("RTImageLabel", f"G{geometry.gantry_angle:g}")
    return out


def image_label(geometry: BeamGeometry, *, plan: RTPlan | None = None,
                beam_number: int | None = None, beam_name: str = "",
                labels: RTImageLabels | None = None) -> str:
    """The RT Image Label :func:`build_rt_image` writes for these arguments: the
    label an annotated preview shows (:func:`encode_png`).

    Parameters
    ----------
    geometry : BeamGeometry
    plan, beam_number, beam_name, labels
        As :func:`build_rt_image`.

    Returns
    -------
    str
        E.g. ``G90 C0 T10`` for a typed geometry (:data:`ISOCENTER_LABELS`).

    Raises
    ------
    InvalidInputError
        If the label template is invalid or the beam is not in the plan.
    """
    return _labels(labels, geometry, plan, beam_number, beam_name)["RTImageLabel"]


def _exposure_item(plan: RTPlan, beam_number: int, control_point: int) -> Dataset | None:
    beam = plan.beam(beam_number)
    if beam.number_of_blocks:
        logger.warning("beam %d has %d block(s), which are not read: no Exposure Sequence",
                       beam_number, beam.number_of_blocks)
        return None
    cp = beam.control_points[control_point]
    devices = []
    for device in beam.beam_limiting_devices:
        positions = cp.position(device.type)
        if positions is None:
            continue
        item = Dataset()
        item.RTBeamLimitingDeviceType = device.type.value
        item.NumberOfLeafJawPairs = str(device.number_of_pairs)
        if device.type.is_mlc and device.leaf_position_boundaries:
            item.LeafPositionBoundaries = [format_ds(v) for v in device.leaf_position_boundaries]
        item.LeafJawPositions = [format_ds(v) for v in positions]
        devices.append(item)
    if not devices:
        return None
    exposure = Dataset()
    exposure.BeamLimitingDeviceSequence = devices
    exposure.NumberOfBlocks = "0"
    return exposure


def build_rt_image(image: QuantizedDrr, geometry: BeamGeometry, *, ct: Dataset,
                   plan: RTPlan | None = None, beam_number: int | None = None,
                   control_point: int = 0, labels: RTImageLabels | None = None,
                   beam_name: str = "",
                   derivation: str | None = None, ssd: float | None = None,
                   series_uid: str | None = None, series_number: int = 1,
                   instance_number: int = 1, operators_name: str = "",
                   private_isocenter_block: bool | None = None,
                   config: ExportConfig | None = None,
                   timestamp: datetime | None = None) -> Dataset:
    """An RT Image data set of one DRR.

    Parameters
    ----------
    image : QuantizedDrr
        The 16-bit image (:func:`rtforge.core.drr.quantize`); its size must be
        the geometry's.
    geometry : BeamGeometry
        The geometry the DRR was computed with.
    ct : pydicom.Dataset
        A header of the CT series: patient, study and Frame of Reference are
        carried over.
    plan : RTPlan, optional
        The plan of the beam; with it ``beam_number`` is required.
    beam_number : int, optional
    control_point : int
        The control point of the beam the geometry comes from (default 0).
    labels : RTImageLabels, optional
        Default :data:`BEAM_LABELS` with a plan, :data:`ISOCENTER_LABELS` without.
    beam_name : str
        The ``beam_name`` of the label templates when there is no plan beam.
    derivation : str, optional
        Derivation Description: how the DRR was made.
    ssd : float, optional
        Radiation Machine SSD (mm) when known otherwise; the plan's control
        point SSD wins.
    series_uid : str, optional
        Series Instance UID (new by default): give the same to every image of a run.
    series_number, instance_number : int
    operators_name : str
        Operators' Name (Type 2: empty by default).
    private_isocenter_block : bool, optional
        Add the private group 3273 with Isocenter Position and Patient
        Position (iPlan Note 8-15); by default as ``config`` says (off).
    config : ExportConfig, optional
        UID root, station name, private creator.
    timestamp : datetime, optional
        Series, content and instance creation date and time (now by default).

    Returns
    -------
    pydicom.Dataset
        With ``file_meta`` (Explicit VR Little Endian).

    Raises
    ------
    InvalidInputError
        If the image size differs from the geometry's, a plan is given
        without a beam number (or the beam or control point is not in it),
        the plan's Frame of Reference differs from the CT's, or a label
        template is invalid.
    ConformanceError
        If a value breaks its VR (from :func:`~rtforge.io.modules.build_dataset`).
    """
    config = config or ExportConfig()
    when = timestamp or datetime.now()
    if image.pixels.shape != (geometry.rows, geometry.columns):
        raise InvalidInputError(f"image is {image.pixels.shape[0]}x{image.pixels.shape[1]}, the "
                                f"geometry {geometry.rows}x{geometry.columns}")
    if plan is not None and beam_number is None:
        raise InvalidInputError("a plan was given without the beam number of the image")
    values = carried_values(ct, (PATIENT, GENERAL_STUDY, PATIENT_STUDY, FRAME_OF_REFERENCE))
    if "StudyInstanceUID" not in values:
        raise InvalidInputError("the CT header has no Study Instance UID", tag="StudyInstanceUID")
    day, clock = format_da(when), format_tm(when)
    values.update(equipment_values(config))
    values.update(_labels(labels, geometry, plan, beam_number, beam_name))
    values.update({
        "SOPClassUID": RTImageStorage,
        "SOPInstanceUID": str(new_uid(config.uid_root)),
        "Modality": "RTIMAGE",
        "SeriesInstanceUID": series_uid or str(new_uid(config.uid_root)),
        "SeriesNumber": series_number,
        "SeriesDate": day, "SeriesTime": clock,
        "ContentDate": day, "ContentTime": clock,
        "InstanceCreationDate": day, "InstanceCreationTime": clock,
        "OperatorsName": operators_name or None,
        "InstanceNumber": instance_number,
        "PatientOrientation": patient_orientation(geometry),
        "ImageType": ["DERIVED", "SECONDARY", "DRR"],
        "DerivationDescription": derivation,
        "SamplesPerPixel": 1,
        "PhotometricInterpretation": "MONOCHROME2",
        "Rows": geometry.rows,
        "Columns": geometry.columns,
        "BitsAllocated": 16, "BitsStored": 16, "HighBit": 15, "PixelRepresentation": 0,
        "PixelIntensityRelationship": image.relationship.value,
        "PixelIntensityRelationshipSign": image.sign,
        "RescaleIntercept": image.rescale_intercept,
        "RescaleSlope": image.rescale_slope,
        "RescaleType": "US",
        "WindowCenter": image.window_center,
        "WindowWidth": image.window_width,
        "WindowCenterWidthExplanation": _window_explanation(image),
        "VOILUTFunction": "LINEAR_EXACT",
        "ConversionType": "WSD",
        "RTImagePlane": "NORMAL",
        "XRayImageReceptorTranslation": list(geometry.receptor_translation),
        "XRayImageReceptorAngle": 0,
        "ImagePlanePixelSpacing": list(geometry.image_plane_pixel_spacing),
        "RTImagePosition": list(geometry.rt_image_position),
        "RadiationMachineSAD": geometry.sad,
        "RTImageSID": geometry.sid,
        "GantryAngle": geometry.gantry_angle,
        "BeamLimitingDeviceAngle": geometry.collimator_angle,
        "PatientSupportAngle": geometry.couch_angle,
        "TableTopEccentricAngle": geometry.table_top_eccentric_angle or None,
        "IsocenterPosition": list(geometry.isocenter),
        "PatientPosition": geometry.patient_position.value,
        "RadiationMachineSSD": ssd,
    })
    if plan is not None and beam_number is not None:
        values.update(_plan_values(plan, beam_number, control_point, ct))
    modules = RT_IMAGE_IOD
    if "FrameOfReferenceUID" not in values:
        logger.warning("the CT header has no Frame of Reference UID: the RT Image has none")
        modules = tuple(m for m in RT_IMAGE_IOD if m is not FRAME_OF_REFERENCE)
    ds = build_dataset(modules, values, config=config, omit=("PixelData",))
    ds["PixelData"] = DataElement(0x7FE00010, "OW", image.pixels.astype("<u2").tobytes())
    if config.private_isocenter_block if private_isocenter_block is None \
            else private_isocenter_block:
        block = ds.private_block(PRIVATE_ISOCENTER_GROUP, config.private_creator, create=True)
        block.add_new(_PRIVATE_ISOCENTER, "DS", [format_ds(v) for v in geometry.isocenter])
        block.add_new(_PRIVATE_POSITION, "CS", geometry.patient_position.value)
    ds.file_meta = file_meta(RTImageStorage, str(ds.SOPInstanceUID))
    return ds


def _window_explanation(image: QuantizedDrr) -> str:
    kind = "line integral" if image.relationship is PixelMapping.LOG else "transmission"
    return f"{kind}{', inverted' if image.inverted else ''}: 0.5 to 99.5 percentile"


def _check_frame(plan: RTPlan, ct: Dataset) -> None:
    """Raise when the plan and the CT name different Frames of Reference."""
    ct_frame = str(ct.get("FrameOfReferenceUID", "") or "")
    if plan.frame_of_reference_uid and ct_frame and plan.frame_of_reference_uid != ct_frame:
        raise InvalidInputError(f"the plan's Frame of Reference UID {plan.frame_of_reference_uid} "
                                f"differs from the CT's {ct_frame}: they are not registered",
                                tag="FrameOfReferenceUID")


def _plan_values(plan: RTPlan, beam_number: int, control_point: int, ct: Dataset
                 ) -> dict[str, object]:
    _check_frame(plan, ct)
    beam = plan.beam(beam_number)
    cp = beam._control_point(control_point)
    reference = Dataset()
    reference.ReferencedSOPClassUID = RTPlanStorage
    reference.ReferencedSOPInstanceUID = plan.sop_instance_uid
    group = plan.fraction_group_of(beam_number)
    exposure = _exposure_item(plan, beam_number, control_point)
    values: dict[str, object] = {
        "ReferencedRTPlanSequence": [reference],
        "ReferencedBeamNumber": beam_number,
        "ReferencedFractionGroupNumber": None if group is None else group.number,
        "RadiationMachineName": beam.machine_name or None,
        "PrimaryDosimeterUnit": beam.primary_dosimeter_unit or None,
        "ExposureSequence": None if exposure is None else [exposure],
        "TableTopVerticalPosition": cp.table_top_vertical_position,
        "TableTopLongitudinalPosition": cp.table_top_longitudinal_position,
        "TableTopLateralPosition": cp.table_top_lateral_position,
    }
    if cp.source_to_surface_distance is not None:
        values["RadiationMachineSSD"] = cp.source_to_surface_distance
    return values


def write_rt_image(ds: Dataset, out_dir: str | os.PathLike) -> Path:
    """Write an RT Image under ``out_dir`` in the file-set layout, atomically.

    Parameters
    ----------
    ds : pydicom.Dataset
        From :func:`build_rt_image`.
    out_dir : str or path-like
        Root of the output file set.

    Returns
    -------
    pathlib.Path
        ``<out_dir>/<PatientID>/<Study>/<Series>/<SOPInstanceUID>.dcm``.
    """
    return write_dataset_file(ds, instance_path(out_dir, ds))


# ------------------------------------------------------------------ parser
def _numbers(ds: Dataset, keyword: str, count: int) -> tuple[float, ...]:
    value = ds.get(keyword)
    if value is None or value == "":
        raise InvalidInputError(f"RT Image has no {keyword}: its geometry is unknown", tag=keyword)
    items = list(value) if count > 1 else [value]
    try:
        values = tuple(float(v) for v in items)
    except (TypeError, ValueError):
        raise InvalidInputError(f"RT Image {keyword} {value!r} is not numeric",
                                tag=keyword) from None
    if len(values) != count:
        raise InvalidInputError(f"RT Image {keyword} needs {count} values, got {len(values)}",
                                tag=keyword)
    return values


def rt_image_geometry(ds: Dataset) -> BeamGeometry:
    """The projection geometry an RT Image's attributes describe.

    Parameters
    ----------
    ds : pydicom.Dataset
        An RT Image with RT Image Plane NORMAL, Isocenter Position, Patient
        Position, SAD, SID, pixel spacing and position.

    Returns
    -------
    BeamGeometry
        A receptor translated in its plane is folded into ``image_offset``.

    Raises
    ------
    InvalidInputError
        If a needed attribute is missing or not numeric.
    GeometryError
        If the image plane is not NORMAL, the receptor is rotated, or the
        receptor translation's z is not SAD - SID.
    """
    if str(ds.get("RTImagePlane", "NORMAL")) != "NORMAL":
        raise GeometryError("only RT Image Plane NORMAL is supported")
    if abs(float(ds.get("XRayImageReceptorAngle", 0) or 0)) % 360 > 1e-6:
        raise GeometryError("a rotated X-Ray Image Receptor Angle is not supported")
    (sad,) = _numbers(ds, "RadiationMachineSAD", 1)
    (sid,) = _numbers(ds, "RTImageSID", 1)
    tx, ty, tz = (_numbers(ds, "XRayImageReceptorTranslation", 3)
                  if "XRayImageReceptorTranslation" in ds else (0.0, 0.0, sad - sid))
    if not math.isclose(tz, sad - sid, abs_tol=1e-3):
        raise GeometryError(f"X-Ray Image Receptor Translation z {tz} is not SAD - SID "
                            f"({sad - sid:g})")
    rows, columns = int(ds.Rows), int(ds.Columns)
    dr, dc = _numbers(ds, "ImagePlanePixelSpacing", 2)
    x0, y0 = _numbers(ds, "RTImagePosition", 2)
    offset = (x0 + (columns - 1) / 2.0 * dc + tx, y0 - (rows - 1) / 2.0 * dr + ty)
    position = ds.get("PatientPosition")
    if not position:
        raise InvalidInputError("RT Image has no Patient Position", tag="PatientPosition")
    return BeamGeometry(
        gantry_angle=float(ds.get("GantryAngle", 0) or 0),
        collimator_angle=float(ds.get("BeamLimitingDeviceAngle", 0) or 0),
        couch_angle=float(ds.get("PatientSupportAngle", 0) or 0),
        table_top_eccentric_angle=float(ds.get("TableTopEccentricAngle", 0) or 0),
        isocenter=np.array(_numbers(ds, "IsocenterPosition", 3)), sad=sad, sid=sid, rows=rows,
        columns=columns, pixel_spacing=(dc, dr), image_offset=offset,
        patient_position=PatientPosition.parse(str(position)))


# ----------------------------------------------------------------- previews
#: Colour of field outlines drawn on previews (RGB).
OUTLINE_RGB = (255, 220, 0)


def preview_rgb(image: QuantizedDrr, outlines: Sequence[np.ndarray] = ()) -> np.ndarray:
    """An 8-bit RGB rendering of a DRR through its VOI window, with outlines.

    Parameters
    ----------
    image : QuantizedDrr
    outlines : sequence of ndarray of shape (N, 2)
        Polylines in fractional ``(row, column)`` pixel coordinates, drawn in
        :data:`OUTLINE_RGB` (parts outside the image are left out).

    Returns
    -------
    ndarray of shape (rows, columns, 3), dtype uint8
        MONOCHROME2: higher rescaled values are brighter.
    """
    lo = image.window_center - image.window_width / 2.0
    gray = np.clip((image.rescaled() - lo) / image.window_width, 0.0, 1.0)
    rgb = np.repeat(np.rint(gray * 255).astype(np.uint8)[:, :, None], 3, axis=2)
    rows, cols = gray.shape
    for line in outlines:
        pts = np.asarray(line, dtype=np.float64)
        for p, q in zip(pts[:-1], pts[1:], strict=True):
            n = int(np.ceil(np.max(np.abs(q - p)) * 2)) + 1
            seg = np.rint(p + np.linspace(0.0, 1.0, n)[:, None] * (q - p)).astype(np.intp)
            keep = (seg[:, 0] >= 0) & (seg[:, 0] < rows) & (seg[:, 1] >= 0) & (seg[:, 1] < cols)
            rgb[seg[keep, 0], seg[keep, 1]] = OUTLINE_RGB
    return rgb


def _png(rgb: np.ndarray) -> bytes:
    """PNG encoding (8-bit RGB, no interlace) of an image."""
    rows, cols, _ = rgb.shape
    raw = b"".join(b"\x00" + rgb[r].tobytes() for r in range(rows))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", cols, rows, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b""))


def encode_png(image: QuantizedDrr, outlines: Sequence[np.ndarray] = (), *,
               geometry: BeamGeometry | None = None, label: str = "") -> bytes:
    """A PNG preview of a DRR (see :func:`preview_rgb`): the bytes of the file
    :func:`write_png` writes.

    Parameters
    ----------
    image : QuantizedDrr
    outlines : sequence of ndarray of shape (N, 2)
        Polylines in ``(row, column)`` pixel coordinates.
    geometry : BeamGeometry, optional
        The DRR's geometry: the preview is then zoomed and annotated with its
        orientation letters, ``label``, angles, isocentre and a scale
        (:func:`rtforge.core.pictures.annotate_drr`); without it the PNG is
        the image as it is (``rows`` x ``columns``).
    label : str
        The image label drawn with ``geometry`` (:func:`image_label`).

    Returns
    -------
    bytes
        8-bit RGB PNG.

    Raises
    ------
    InvalidInputError
        If ``geometry`` is not of the image's size.
    """
    rgb = preview_rgb(image, outlines)
    if geometry is not None:
        rgb = annotate_drr(rgb, geometry, label).rgb
    return _png(rgb)


def write_png(path: str | os.PathLike, image: QuantizedDrr,
              outlines: Sequence[np.ndarray] = (), *, geometry: BeamGeometry | None = None,
              label: str = "") -> Path:
    """Write a PNG preview of a DRR (:func:`encode_png`), atomically.

    Parameters
    ----------
    path : str or path-like
        The file; its folder must exist.
    image, outlines, geometry, label
        As :func:`encode_png`.

    Returns
    -------
    pathlib.Path
    """
    return atomic_write(path, [encode_png(image, outlines, geometry=geometry, label=label)])


# ------------------------------------------------------------ a whole run
@dataclass(frozen=True)
class DrrRequest:
    """One DRR to make.

    Parameters
    ----------
    geometry : BeamGeometry
    beam_number : int, optional
        For a plan's beam: its number (the plan is given to :func:`write_drrs`).
    control_point : int
        The beam's control point the geometry comes from.
    jaws : tuple of float, optional
        ``(x1, x2, y1, y2)`` mm at the isocentre: a field outlined on the
        preview when there is no plan beam to take it from.
    name : str
        The ``beam_name`` of the label templates when there is no plan beam.
    """

    geometry: BeamGeometry
    beam_number: int | None = None
    control_point: int = 0
    jaws: tuple[float, float, float, float] | None = None
    name: str = ""


@dataclass(frozen=True)
class WrittenDrr:
    """One RT Image written by :func:`write_drrs` (``max_integral``: its largest ∫μ dl)."""

    path: Path
    png: Path | None
    label: str
    beam_number: int | None
    geometry: BeamGeometry
    max_integral: float
    window_center: float
    window_width: float


@dataclass(frozen=True)
class DrrRun:
    """What :func:`write_drrs` made: one RT Image series."""

    series_uid: str
    images: tuple[WrittenDrr, ...]
    method: DrrMethod
    device: Device
    seconds: float

    def to_dict(self) -> dict[str, object]:
        """A JSON-ready summary."""
        return {
            "series_uid": self.series_uid, "method": self.method.value,
            "device": self.device.value, "seconds": round(self.seconds, 3),
            "images": [{
                "path": str(i.path), "png": None if i.png is None else str(i.png),
                "label": i.label, "beam_number": i.beam_number,
                "gantry": i.geometry.gantry_angle, "collimator": i.geometry.collimator_angle,
                "couch": i.geometry.couch_angle, "isocenter": i.geometry.isocenter.tolist(),
                "sad": i.geometry.sad, "sid": i.geometry.sid,
                "rows": i.geometry.rows, "columns": i.geometry.columns,
                "pixel_spacing": list(i.geometry.pixel_spacing),
                "max_integral": i.max_integral, "window_center": i.window_center,
                "window_width": i.window_width} for i in self.images],
        }


def plan_requests(plan: RTPlan, beams: Sequence[int] | None = None, *, sid: float = 1500.0,
                  rows: int = 512, columns: int = 512, pixel_spacing: float = 1.0,
                  sad: float | None = None, field_margin: float | None = None
                  ) -> list[DrrRequest]:
    """One request per beam of a plan, at its first control point.

    Parameters
    ----------
    plan : RTPlan
    beams : sequence of int, optional
        Beam Numbers; every beam of the plan by default.
    sid, rows, columns, pixel_spacing : float, int, int, float
        The receptor (square pixels, mm at the receptor plane).
    sad : float, optional
        For beams that give no Source-Axis Distance.
    field_margin : float, optional
        Field DRRs: each image covers its beam's field plus this margin (mm at
        the isocentre), at most ``rows`` x ``columns`` (see
        :meth:`RTPlan.beam_geometry`).

    Returns
    -------
    list of DrrRequest

    Raises
    ------
    InvalidInputError
        If a beam is not in the plan.
    GeometryError
        As :meth:`RTPlan.beam_geometry`.
    """
    numbers = plan.beam_numbers if beams is None else tuple(beams)
    return [DrrRequest(plan.beam_geometry(n, sid=sid, rows=rows, columns=columns,
                                          pixel_spacing=(pixel_spacing, pixel_spacing), sad=sad,
                                          field_margin=field_margin),
                       beam_number=n) for n in numbers]


def fit_to_body(volume: Volume, requests: Sequence[DrrRequest]) -> list[DrrRequest]:
    """The requests with one square pixel spacing at which every image shows the whole
    body (:func:`rtforge.core.drr.body_pixel_spacing`); sizes and centres are kept.

    Parameters
    ----------
    volume : Volume
        The CT (HU, int16).
    requests : sequence of DrrRequest

    Returns
    -------
    list of DrrRequest
    """
    spacing = body_pixel_spacing(volume, [r.geometry for r in requests])
    return [replace(r, geometry=replace(r.geometry, pixel_spacing=(spacing, spacing)))
            for r in requests]


def _derivation(method: DrrMethod, step_mm: float | None, attenuation: Attenuation,
                mapping: PixelMapping, invert: bool) -> str:
    how = ("exact radiological path (Siddon/Jacobs)" if method is DrrMethod.SIDDON else
           f"trilinear sampling every {step_mm:g} mm" if step_mm else
           "trilinear sampling every voxel spacing")
    stored = "line integral (LOG)" if mapping is PixelMapping.LOG else "transmission (LIN)"
    return (f"DRR by rtforge {rtforge.__version__}: {how}; {attenuation.describe()}; pixels: "
            f"{stored}{', inverted' if invert else ''}")


def _outlines(plan: RTPlan | None, request: DrrRequest) -> list[np.ndarray]:
    """The jaws and MLC opening of a plan beam, else the request's jaws, in pixels."""
    beam = None if plan is None or request.beam_number is None else plan.beam(
        request.beam_number)
    jaws = beam.jaws(request.control_point) if beam is not None else request.jaws
    if jaws is None:
        return []
    x1, x2, y1, y2 = jaws
    shapes = [np.array([[x1, y1], [x2, y1], [x2, y2], [x1, y2], [x1, y1]])]
    if beam is not None:
        shapes += beam.aperture(request.control_point)
    return [request.geometry.beam_limiting_device_to_pixel(s) for s in shapes]


def _png_name(number: int, label: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_") or "drr"
    return f"{number:03d}_{safe}.png"


def write_drrs(volume: Volume, ct: Dataset, requests: Sequence[DrrRequest],
               out_dir: str | os.PathLike, *, plan: RTPlan | None = None,
               method: str | DrrMethod = DrrMethod.SIDDON, device: str | Device = Device.CPU,
               attenuation: Attenuation | None = None, step_mm: float | None = None,
               mapping: str | PixelMapping = PixelMapping.LOG, invert: bool = False,
               png_dir: str | os.PathLike | None = None, labels: RTImageLabels | None = None,
               config: ExportConfig | None = None, batch: int = 8,
               progress: Callable[[int, int], None] | None = None) -> DrrRun:
    """Compute DRRs of one CT and write them as one RT Image series (and PNG previews).

    Images of one size are cast together, ``batch`` at a time, sharing the
    volume (converted to μ once).

    Parameters
    ----------
    volume : Volume
        The CT (HU, int16).
    ct : pydicom.Dataset
        A header of the CT series (patient, study, Frame of Reference).
    requests : sequence of DrrRequest
    out_dir : str or path-like
        Root of the output file set.
    plan : RTPlan, optional
        Needed when requests name beams.
    method, device, attenuation, step_mm
        As :func:`rtforge.core.drr.compute_drr`.
    mapping, invert
        As :func:`rtforge.core.drr.quantize`.
    png_dir : str or path-like, optional
        Also write ``NNN_<label>.png`` previews there, with the field outline
        (jaws and MLC opening) of plan beams, or the requests' jaws, annotated
        (see :func:`write_png`).
    labels : RTImageLabels, optional
    config : ExportConfig, optional
    batch : int
        DRRs per kernel call (the progress granularity).
    progress : callable, optional
        ``progress(done, total)`` after each batch.

    Returns
    -------
    DrrRun

    Raises
    ------
    InvalidInputError, GeometryError
        As the functions called; nothing is written when geometry or input
        is wrong, as all images are computed before the first is written.
    """
    if not requests:
        raise InvalidInputError("no DRR requested")
    if any(r.beam_number is not None for r in requests) and plan is None:
        raise InvalidInputError("requests name beams but no plan was given")
    if plan is not None:
        _check_frame(plan, ct)
    config = config or ExportConfig()
    kind = DrrMethod.parse(method, "method")
    where = Device.parse(device, "device")
    pixels = PixelMapping.parse(mapping, "mapping")
    attenuation = attenuation or Attenuation()
    start = time.perf_counter()
    prepared = prepare_volume(volume, attenuation)
    images: dict[int, QuantizedDrr] = {}
    peaks: dict[int, float] = {}
    by_size: dict[tuple[int, int], list[int]] = {}
    for n, r in enumerate(requests):
        by_size.setdefault((r.geometry.rows, r.geometry.columns), []).append(n)
    step = max(1, batch)
    for members in by_size.values():
        for first in range(0, len(members), step):
            chunk = members[first:first + step]
            out = compute_drr(prepared, [requests[n].geometry for n in chunk], method=kind,
                              step_mm=step_mm, device=where)
            for n, integrals in zip(chunk, out, strict=True):
                images[n] = quantize(integrals, pixels, invert)
                peaks[n] = float(integrals.max())
            if progress is not None:
                progress(len(images), len(requests))
    series_uid = str(new_uid(config.uid_root))
    derivation = _derivation(kind, step_mm, attenuation, pixels, invert)
    when = datetime.now()
    png_root = None if png_dir is None else Path(png_dir)
    if png_root is not None:
        png_root.mkdir(parents=True, exist_ok=True)
    written = []
    for n, request in enumerate(requests):
        image = images[n]
        ds = build_rt_image(image, request.geometry, ct=ct, plan=plan,
                            beam_number=request.beam_number, control_point=request.control_point,
                            labels=labels, beam_name=request.name, derivation=derivation,
                            ssd=central_axis_ssd(volume, request.geometry), series_uid=series_uid,
                            instance_number=n + 1, config=config, timestamp=when)
        path = write_rt_image(ds, out_dir)
        png = None
        if png_root is not None:
            png = write_png(png_root / _png_name(n + 1, str(ds.RTImageLabel)), image,
                            _outlines(plan, request), geometry=request.geometry,
                            label=str(ds.RTImageLabel))
        written.append(WrittenDrr(path=path, png=png, label=str(ds.RTImageLabel),
                                  beam_number=request.beam_number, geometry=request.geometry,
                                  max_integral=peaks[n], window_center=image.window_center,
                                  window_width=image.window_width))
    return DrrRun(series_uid=series_uid, images=tuple(written), method=kind, device=where,
                  seconds=time.perf_counter() - start)
