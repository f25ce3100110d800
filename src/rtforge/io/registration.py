"""Spatial Registration (modality REG): rigid registrations between frames of reference.

:func:`build_registration` writes the IOD as Oncentra Brachy 8.1.1.2.10 does:
a Registration Sequence with one item per frame of reference, the first the
registration's own frame with the identity matrix; each item a rigid 4x4
matrix (type ``RIGID``), the registration type code and the images it was
computed from; and the Common Instance Reference module listing those
images.  :func:`parse_registration` returns the matrices, and
:func:`rtforge.core.geometry.transform_grid` applies one to a Grid.
:func:`series_references` reads what a registration needs of an image
series (its header and a reference to each image), as ``rtforge reg`` does
for the fixed and the moving series.

Matrices
--------
A matrix maps patient coordinates (LPS, mm) of the item's frame into the
registration's frame (PS3.3 C.20.2.1.1): ``x_reg = M @ (x, y, z, 1)``.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
from pydicom import Dataset, dcmread
from pydicom.errors import InvalidDicomError
from pydicom.uid import ExplicitVRLittleEndian, SpatialRegistrationStorage

from rtforge.config import ExportConfig
from rtforge.core.geometry import check_rigid
from rtforge.errors import GeometryError, InvalidInputError
from rtforge.io.fileset import instance_path, write_dataset_file
from rtforge.io.modules import (
    FRAME_OF_REFERENCE,
    GENERAL_EQUIPMENT,
    GENERAL_SERIES,
    GENERAL_STUDY,
    PATIENT,
    SOP_COMMON,
    Module,
    build_dataset,
    carried_values,
    equipment_values,
    format_da,
    format_tm,
)
from rtforge.io.modules import ModuleAttribute as _A
from rtforge.io.series import discover_series
from rtforge.io.uids import new_uid

__all__ = [
    "ImageReference",
    "FrameRegistration",
    "SpatialRegistration",
    "IMAGE_CONTENT_BASED_ALIGNMENT",
    "SPATIAL_REGISTRATION_IOD",
    "build_registration",
    "parse_registration",
    "read_registration",
    "series_references",
    "write_registration",
]

#: Registration Type Code of Oncentra (DCM 125024).
IMAGE_CONTENT_BASED_ALIGNMENT = ("125024", "DCM", "Image Content-based Alignment")


@dataclass(frozen=True)
class ImageReference:
    """An image a registration was computed from."""

    sop_class_uid: str
    sop_instance_uid: str
    series_instance_uid: str
    study_instance_uid: str


@dataclass(frozen=True, eq=False)
class FrameRegistration:
    """One item of Registration Sequence (0070,0308).

    Parameters
    ----------
    frame_of_reference_uid : str
        The registered frame.
    matrix : ndarray of shape (4, 4)
        Rigid: from this frame into the registration's (see the module docstring).
    images : tuple of ImageReference
        The images of this frame used (Referenced Image Sequence).
    registration_type : tuple of str
        Registration Type Code: (Code Value, Coding Scheme Designator, Code Meaning).
    comment : str
        Frame of Reference Transformation Comment.

    Raises
    ------
    InvalidInputError
        If ``matrix`` is not rigid (:func:`~rtforge.core.geometry.check_rigid`).
    """

    frame_of_reference_uid: str
    matrix: np.ndarray
    images: tuple[ImageReference, ...] = ()
    registration_type: tuple[str, str, str] = IMAGE_CONTENT_BASED_ALIGNMENT
    comment: str = ""

    def __post_init__(self) -> None:
        try:
            matrix = check_rigid(self.matrix, f"matrix of frame {self.frame_of_reference_uid}")
        except GeometryError as exc:
            raise InvalidInputError(str(exc), tag="FrameOfReferenceTransformationMatrix") from None
        matrix.setflags(write=False)
        object.__setattr__(self, "matrix", matrix)
        object.__setattr__(self, "images", tuple(self.images))


@dataclass(frozen=True)
class SpatialRegistration:
    """A Spatial Registration as rtforge reads it."""

    sop_instance_uid: str
    frame_of_reference_uid: str
    registrations: tuple[FrameRegistration, ...]

    def matrix(self, frame_of_reference_uid: str) -> np.ndarray:
        """The matrix from one frame into the registration's.

        Raises
        ------
        InvalidInputError
            If the registration does not register that frame.
        """
        for item in self.registrations:
            if item.frame_of_reference_uid == frame_of_reference_uid:
                return item.matrix
        raise InvalidInputError(f"the registration has no frame {frame_of_reference_uid}",
                                tag="FrameOfReferenceUID")


SPATIAL_REGISTRATION_SERIES = Module("Spatial Registration Series", "C.20.1", "-", (
    _A("Modality", "1", note="REG"),
))
SPATIAL_REGISTRATION = Module("Spatial Registration", "C.20.2", "-", (
    _A("ContentDate", "1"),
    _A("ContentTime", "1"),
    _A("InstanceNumber", "1"),
    _A("ContentLabel", "1", note="Oncentra: REGISTRATION"),
    _A("ContentDescription", "2"),
    _A("ContentCreatorName", "2", note="Oncentra: the workstation name"),
    _A("RegistrationSequence", "1", note="the first item is the identity"),
))
COMMON_INSTANCE_REFERENCE = Module("Common Instance Reference", "C.12.2", "-", (
    _A("ReferencedSeriesSequence", "3",
       note="PS3.3 1C: required when an image of this study is referenced; written then"),
    _A("StudiesContainingOtherReferencedInstancesSequence", "3",
       note="PS3.3 1C: required when an image of another study is referenced; written then"),
))
#: Modules of the Spatial Registration IOD, Oncentra 8.1.1.2.10.1.
SPATIAL_REGISTRATION_IOD: tuple[Module, ...] = (
    PATIENT, GENERAL_STUDY, GENERAL_SERIES, SPATIAL_REGISTRATION_SERIES, FRAME_OF_REFERENCE,
    GENERAL_EQUIPMENT, SPATIAL_REGISTRATION, COMMON_INSTANCE_REFERENCE, SOP_COMMON,
)
_REGISTRATION_ITEM = Module("Registration Sequence item", "C.20.2", "-", (
    _A("FrameOfReferenceUID", "1"),
    _A("ReferencedImageSequence", "3", note="PS3.3 1C; written when images are given"),
    _A("MatrixRegistrationSequence", "1"),
))
_IMAGE_ITEM = Module("Referenced Image Sequence item", "C.20.2", "-", (
    _A("ReferencedSOPClassUID", "1"),
    _A("ReferencedSOPInstanceUID", "1"),
))
_MATRIX_REGISTRATION_ITEM = Module("Matrix Registration Sequence item", "C.20.2", "-", (
    _A("FrameOfReferenceTransformationComment", "3"),
    _A("RegistrationTypeCodeSequence", "2"),
    _A("MatrixSequence", "1"),
))
_CODE_ITEM = Module("Code Sequence item", "8.8", "-", (
    _A("CodeValue", "1"),
    _A("CodingSchemeDesignator", "1"),
    _A("CodeMeaning", "1"),
))
_MATRIX_ITEM = Module("Matrix Sequence item", "C.20.2", "-", (
    _A("FrameOfReferenceTransformationMatrix", "1"),
    _A("FrameOfReferenceTransformationMatrixType", "1", note="RIGID"),
))
_SERIES_ITEM = Module("Referenced Series Sequence item", "C.12.2", "-", (
    _A("SeriesInstanceUID", "1"),
    _A("ReferencedInstanceSequence", "1"),
))
_STUDY_ITEM = Module("Studies Containing Other Referenced Instances Sequence item", "C.12.2",
                     "-", (
    _A("StudyInstanceUID", "1"),
    _A("ReferencedSeriesSequence", "1"),
))


def _item(module: Module, values: dict[str, object]) -> Dataset:
    return build_dataset((module,), values)


def _registration_item(reg: FrameRegistration) -> Dataset:
    value, scheme, meaning = reg.registration_type
    return _item(_REGISTRATION_ITEM, {
        "FrameOfReferenceUID": reg.frame_of_reference_uid,
        "ReferencedImageSequence": [_item(_IMAGE_ITEM, {
            "ReferencedSOPClassUID": i.sop_class_uid,
            "ReferencedSOPInstanceUID": i.sop_instance_uid}) for i in reg.images],
        "MatrixRegistrationSequence": [_item(_MATRIX_REGISTRATION_ITEM, {
            "FrameOfReferenceTransformationComment": reg.comment,
            "RegistrationTypeCodeSequence": [_item(_CODE_ITEM, {
                "CodeValue": value, "CodingSchemeDesignator": scheme, "CodeMeaning": meaning})],
            "MatrixSequence": [_item(_MATRIX_ITEM, {
                "FrameOfReferenceTransformationMatrix": reg.matrix.ravel().tolist(),
                "FrameOfReferenceTransformationMatrixType": "RIGID"})],
        })],
    })


def _common_instance_reference(images: Sequence[ImageReference],
                               study_uid: str) -> dict[str, object]:
    by_study: dict[str, dict[str, list[ImageReference]]] = {}
    for image in images:
        series = by_study.setdefault(image.study_instance_uid, {})
        series.setdefault(image.series_instance_uid, []).append(image)

    def series_items(series: dict[str, list[ImageReference]]) -> list[Dataset]:
        return [_item(_SERIES_ITEM, {
            "SeriesInstanceUID": uid,
            "ReferencedInstanceSequence": [_item(_IMAGE_ITEM, {
                "ReferencedSOPClassUID": i.sop_class_uid,
                "ReferencedSOPInstanceUID": i.sop_instance_uid}) for i in members]})
            for uid, members in series.items()]

    return {
        "ReferencedSeriesSequence": series_items(by_study.get(study_uid, {})),
        "StudiesContainingOtherReferencedInstancesSequence": [
            _item(_STUDY_ITEM, {"StudyInstanceUID": study,
                                "ReferencedSeriesSequence": series_items(series)})
            for study, series in by_study.items() if study != study_uid],
    }


def build_registration(registrations: Sequence[FrameRegistration], *, source: Dataset,
                       reference_images: Sequence[ImageReference] = (),
                       content_label: str = "REGISTRATION", content_description: str = "",
                       series_uid: str | None = None, series_number: int = 1,
                       instance_number: int = 1, config: ExportConfig | None = None,
                       timestamp: datetime | None = None) -> Dataset:
    """A Spatial Registration data set (Oncentra 8.1.1.2.10).

    Parameters
    ----------
    registrations : sequence of FrameRegistration
        The other frames, each with its matrix into the source's frame.
    source : pydicom.Dataset
        A header of the reference image series: patient, study and the
        registration's Frame of Reference are carried over.
    reference_images : sequence of ImageReference
        Images of the reference frame (the identity item's Referenced Image Sequence).
    content_label, content_description : str
    series_uid : str, optional
    series_number, instance_number : int
    config : ExportConfig, optional
    timestamp : datetime, optional

    Returns
    -------
    pydicom.Dataset

    Raises
    ------
    InvalidInputError
        If there is no registration, the source has no Frame of Reference or
        Study Instance UID, or a frame is registered twice (or is the source's).
    ConformanceError
        If a value breaks its VR.
    """
    config = config or ExportConfig()
    when = timestamp or datetime.now()
    day, clock = format_da(when), format_tm(when)
    values = carried_values(source, (PATIENT, GENERAL_STUDY, FRAME_OF_REFERENCE))
    for keyword in ("FrameOfReferenceUID", "StudyInstanceUID"):
        if keyword not in values:
            raise InvalidInputError(f"the source header has no {keyword}", tag=keyword)
    if not registrations:
        raise InvalidInputError("a Spatial Registration needs at least one registered frame")
    frames = [str(values["FrameOfReferenceUID"])] + [r.frame_of_reference_uid
                                                      for r in registrations]
    if len(set(frames)) != len(frames):
        raise InvalidInputError(f"each frame of reference may be registered once: {frames}",
                                tag="FrameOfReferenceUID")
    identity = FrameRegistration(frames[0], np.eye(4), tuple(reference_images))
    items = [identity, *registrations]
    values.update(equipment_values(config))
    values.update(_common_instance_reference([i for r in items for i in r.images],
                                             str(values["StudyInstanceUID"])))
    values.update({
        "Modality": "REG",
        "SeriesInstanceUID": series_uid or str(new_uid(config.uid_root)),
        "SeriesNumber": series_number,
        "SeriesDate": day, "SeriesTime": clock,
        "ContentDate": day, "ContentTime": clock,
        "InstanceNumber": instance_number,
        "ContentLabel": content_label,
        "ContentDescription": content_description,
        "ContentCreatorName": None,
        "RegistrationSequence": [_registration_item(r) for r in items],
        "SOPClassUID": SpatialRegistrationStorage,
        "SOPInstanceUID": str(new_uid(config.uid_root)),
        "InstanceCreationDate": day, "InstanceCreationTime": clock,
    })
    return build_dataset(SPATIAL_REGISTRATION_IOD, values, config=config)


def parse_registration(ds: Dataset, path: str | os.PathLike | None = None
                       ) -> SpatialRegistration:
    """The frames and rigid matrices of a Spatial Registration.

    Parameters
    ----------
    ds : pydicom.Dataset
    path : str or path-like, optional
        Named in errors.

    Returns
    -------
    SpatialRegistration

    Raises
    ------
    InvalidInputError
        If ``ds`` is not a Spatial Registration, an item lacks its frame or
        matrix, a matrix type is not RIGID, or a matrix is not rigid.
    """
    if str(ds.get("SOPClassUID", "")) != SpatialRegistrationStorage:
        raise InvalidInputError("not a Spatial Registration", path=path, tag="SOPClassUID")
    out = []
    for n, item in enumerate(ds.get("RegistrationSequence") or [], start=1):
        where = f"Registration Sequence item {n}"
        frame = str(item.get("FrameOfReferenceUID", "") or "")
        matrices = [m for reg in item.get("MatrixRegistrationSequence") or []
                    for m in reg.get("MatrixSequence") or []]
        if not frame or len(matrices) != 1:
            raise InvalidInputError(f"{where}: needs a Frame of Reference UID and exactly one "
                                    f"matrix, has {len(matrices)}", path=path,
                                    tag="MatrixSequence")
        kind = str(matrices[0].get("FrameOfReferenceTransformationMatrixType", ""))
        if kind != "RIGID":
            raise InvalidInputError(f"{where}: matrix type {kind or 'missing'} is not supported "
                                    "(only RIGID)", path=path,
                                    tag="FrameOfReferenceTransformationMatrixType")
        code = (item.MatrixRegistrationSequence[0].get("RegistrationTypeCodeSequence") or [None])[0]
        try:
            out.append(FrameRegistration(
                frame, np.array([float(v) for v in
                                 matrices[0].get("FrameOfReferenceTransformationMatrix") or []]),
                tuple(ImageReference(str(i.ReferencedSOPClassUID),
                                     str(i.ReferencedSOPInstanceUID), "", "")
                      for i in item.get("ReferencedImageSequence") or []),
                (str(code.CodeValue), str(code.CodingSchemeDesignator), str(code.CodeMeaning))
                if code is not None else IMAGE_CONTENT_BASED_ALIGNMENT,
                str(item.MatrixRegistrationSequence[0].get(
                    "FrameOfReferenceTransformationComment", "") or "")))
        except InvalidInputError as exc:
            raise InvalidInputError(f"{where}: {exc.reason}", path=path, tag=exc.tag) from None
    if not out:
        raise InvalidInputError("Registration Sequence is empty", path=path,
                                tag="RegistrationSequence")
    return SpatialRegistration(str(ds.get("SOPInstanceUID", "")),
                               str(ds.get("FrameOfReferenceUID", "") or ""), tuple(out))


def read_registration(source: str | os.PathLike | Dataset) -> SpatialRegistration:
    """Read a Spatial Registration file (or take a data set).

    Raises
    ------
    InvalidInputError
        If the file is missing or not DICOM, or as :func:`parse_registration`.
    """
    if isinstance(source, Dataset):
        return parse_registration(source)
    path = Path(source)
    if not path.is_file():
        raise InvalidInputError("Spatial Registration file not found", path=path)
    try:
        ds = dcmread(path)
    except (InvalidDicomError, OSError, ValueError) as exc:
        raise InvalidInputError(f"not a DICOM file: {exc}", path=path) from None
    return parse_registration(ds, path)


def write_registration(ds: Dataset, out_dir: str | os.PathLike,
                       transfer_syntax: str = ExplicitVRLittleEndian, *,
                       fsync: bool = True) -> Path:
    """Write a Spatial Registration in the output layout, atomically.

    Returns
    -------
    pathlib.Path
    """
    return write_dataset_file(ds, instance_path(out_dir, ds), transfer_syntax, fsync=fsync)


_REFERENCE_TAGS = ("SOPClassUID", "SOPInstanceUID", "SeriesInstanceUID", "StudyInstanceUID",
                   "FrameOfReferenceUID")


def series_references(source: str | os.PathLike) -> tuple[Dataset, tuple[ImageReference, ...]]:
    """The header of an image series and a reference to each of its images.

    Parameters
    ----------
    source : str or path-like
        A folder holding one image series (searched recursively), or one
        image file.

    Returns
    -------
    pydicom.Dataset
        The first image's header (no Pixel Data): patient, study and Frame of
        Reference for :func:`build_registration`.
    tuple of ImageReference
        Every image of the series, sorted by path.

    Raises
    ------
    InvalidInputError
        If ``source`` holds no image series or several, or its images do not
        share one Frame of Reference UID.
    """
    path = Path(source)
    found = discover_series(path).series
    if len(found) != 1:
        raise InvalidInputError(f"holds {len(found)} image series; give a folder or file of "
                                "one", path=path)
    references = []
    frames = set()
    header: Dataset | None = None
    for image_path in found[0].paths:
        try:
            ds = dcmread(image_path, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError) as exc:
            raise InvalidInputError(f"cannot read its header: {exc}", path=image_path) from None
        missing = [k for k in _REFERENCE_TAGS if not ds.get(k)]
        if missing:
            raise InvalidInputError(f"the image has no {', '.join(missing)}", path=image_path,
                                    tag=missing[0])
        header = header or ds
        frames.add(str(ds.FrameOfReferenceUID))
        references.append(ImageReference(str(ds.SOPClassUID), str(ds.SOPInstanceUID),
                                         str(ds.SeriesInstanceUID), str(ds.StudyInstanceUID)))
    if len(frames) != 1:
        raise InvalidInputError(f"its images have {len(frames)} Frames of Reference; a "
                                "registration needs one per series", path=path,
                                tag="FrameOfReferenceUID")
    assert header is not None
    return header, tuple(references)
