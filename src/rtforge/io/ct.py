"""CT Image IOD: module tables, builder and a fast streaming series writer.

Follows iPlan RT Dose 4.1 tables 8-1 and 8-6 to 8-22 (with PS3.3 C.8.2 where
they disagree) for two kinds of series:

- **derived** (the reslice output, iPlan Note 8-2): Image Type
  ``DERIVED\\SECONDARY\\AXIAL``, Image Orientation (Patient) ``1\\0\\0\\0\\1\\0``,
  patient, study, Frame of Reference, KVP, Acquisition Number, Patient
  Position and window carried over from the source, a new Series Instance
  UID, Source Image Sequence per slice, Derivation Description and Derivation
  Code Sequence (DCM 113072 "Multiplanar reformatting"), no Gantry/Detector Tilt;
- **original** (phantoms, tests): Image Type ``ORIGINAL\\PRIMARY\\AXIAL``, any
  :class:`~rtforge.core.geometry.SliceStack` (oblique, tilted with
  Gantry/Detector Tilt written, uneven spacing), no source references.

Pixels are 16 bits, MONOCHROME2, Rescale Slope 1, Rescale Type HU, stored
either unsigned with Rescale Intercept -1024 (stored = HU + 1024, iPlan table
8-19) or signed with intercept 0.  HU outside the storable range are clamped
and counted in the :class:`CTWriteReport`.

Speed: a data set's encoding is its elements' encodings in tag order, so the
constant elements are encoded once per series
(:class:`~rtforge.io.fileset.DatasetTemplate`) and per slice only SOP Instance
UID, Source Image Sequence, Instance Number, Image Position (Patient), Slice
Location, the file meta's Media Storage SOP Instance UID and the Pixel Data
are encoded; the pixel buffer is written as it is.  The bytes are identical to
:func:`pydicom.dcmwrite` of :meth:`CTSeriesWriter.instance_dataset` (tested).
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from pathlib import Path

import numpy as np
from pydicom import DataElement, Dataset
from pydicom.datadict import tag_for_keyword
from pydicom.uid import CTImageStorage, ExplicitVRBigEndian, ExplicitVRLittleEndian

from rtforge.config import ExportConfig
from rtforge.core.geometry import SliceStack
from rtforge.errors import ConformanceError, GeometryError, InvalidInputError
from rtforge.io.fileset import (
    Chunk,
    DatasetTemplate,
    Part10Prefix,
    atomic_write,
    element_header,
    encode_dataset,
    encode_sequence,
    encode_text_element,
    file_meta,
    fsync_directory,
    parse_transfer_syntax,
    series_dir,
)
from rtforge.io.modules import (
    FRAME_OF_REFERENCE,
    GENERAL_EQUIPMENT,
    GENERAL_SERIES,
    GENERAL_STUDY,
    PATIENT,
    PATIENT_STUDY,
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
from rtforge.io.uids import derived_uid, new_uid

__all__ = [
    "GENERAL_IMAGE",
    "IMAGE_PLANE",
    "IMAGE_PIXEL",
    "CT_IMAGE",
    "VOI_LUT",
    "CT_IMAGE_IOD",
    "PER_INSTANCE",
    "PixelStorage",
    "CTWriteReport",
    "CTSeriesWriter",
    "write_ct_series",
]

logger = logging.getLogger(__name__)

_A = ModuleAttribute

GENERAL_IMAGE = Module("General Image", "C.7.6.1", "8-16", (
    _A("ContentDate", "2", note="PS3.3 Type 2C (temporally related images); always written"),
    _A("ContentTime", "2", note="PS3.3 Type 2C (temporally related images); always written"),
    _A("DerivationDescription", "3", note="derived series only"),
    _A("SourceImageSequence", "3", note="derived series only; per instance"),
    _A("InstanceNumber", "2", note="iPlan: ALWAYS; per instance (slice index + 1)"),
    _A("DerivationCodeSequence", "3", note="derived series only: DCM 113072"),
))

IMAGE_PLANE = Module("Image Plane", "C.7.6.2", "8-17", (
    _A("SliceThickness", "2", note="the slice spacing of the series"),
    _A("ImagePositionPatient", "1", note="per instance"),
    _A("ImageOrientationPatient", "1"),
    _A("SliceLocation", "3", note="per instance: offset along the slice normal"),
    _A("PixelSpacing", "1"),
))

IMAGE_PIXEL = Module("Image Pixel", "C.7.6.3", "8-18", (
    _A("SamplesPerPixel", "1"),
    _A("PhotometricInterpretation", "1"),
    _A("Rows", "1", note="iPlan table 8-18 gives VR IS; PS3.6: US"),
    _A("Columns", "1", note="iPlan table 8-18 gives VR DA; PS3.6: US"),
    _A("BitsAllocated", "1"),
    _A("BitsStored", "1"),
    _A("HighBit", "1"),
    _A("PixelRepresentation", "1"),
    _A("PixelData", "1", note="PS3.3 Type 1C (no Pixel Data Provider URL); per instance"),
))

CT_IMAGE = Module("CT Image", "C.8.2.1", "8-19", (
    _A("ImageType", "1"),
    _A("KVP", "2", carry=True, note="iPlan: EMPTY; carried over when the source has it"),
    _A("GantryDetectorTilt", "3", note="original tilted series only; removed when derived"),
    _A("AcquisitionNumber", "2", carry=True, note="iPlan: EMPTY; carried over when known"),
    _A("SamplesPerPixel", "1"),
    _A("PhotometricInterpretation", "1"),
    _A("BitsAllocated", "1"),
    _A("BitsStored", "1"),
    _A("HighBit", "1"),
    _A("RescaleIntercept", "1"),
    _A("RescaleSlope", "1"),
    _A("RescaleType", "3",
       note="PS3.3 Type 1C (multi-energy), may be present otherwise: written HU"),
))

VOI_LUT = Module("VOI LUT", "C.11.2", "8-21", (
    _A("WindowCenter", "3", carry=True,
       note="PS3.3 Type 1C; carried over only together with Window Width"),
    _A("WindowWidth", "3", carry=True,
       note="PS3.3 Type 1C; carried over only together with Window Center"),
    _A("WindowCenterWidthExplanation", "3", carry=True),
))

#: The modules of the CT Image IOD as rtforge writes it, iPlan table 8-1
#: (the Clinical Trial modules are not written).
CT_IMAGE_IOD: tuple[Module, ...] = (
    PATIENT, GENERAL_STUDY, PATIENT_STUDY, GENERAL_SERIES, FRAME_OF_REFERENCE,
    GENERAL_EQUIPMENT, GENERAL_IMAGE, IMAGE_PLANE, IMAGE_PIXEL, CT_IMAGE, VOI_LUT, SOP_COMMON,
)

#: Keywords whose values change from slice to slice, in tag order.
PER_INSTANCE: tuple[str, ...] = ("SOPInstanceUID", "SourceImageSequence", "InstanceNumber",
                                 "ImagePositionPatient", "SliceLocation", "PixelData")

_TAG = {kw: int(tag_for_keyword(kw)) for kw in PER_INSTANCE}  # type: ignore[arg-type]

# Set by the writer from its arguments; overriding them would break the series.
_NOT_OVERRIDABLE = frozenset(PER_INSTANCE) | {
    "SOPClassUID", "SeriesInstanceUID", "ImageOrientationPatient", "PixelSpacing", "Rows",
    "Columns", "SamplesPerPixel", "PhotometricInterpretation", "BitsAllocated", "BitsStored",
    "HighBit", "PixelRepresentation", "RescaleIntercept", "RescaleSlope", "RescaleType",
}
_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")

# Derivation Code Sequence item (CID 7203) and Purpose of Reference of each
# Source Image Sequence item (CID 7202).
_MPR_CODE = ("113072", "DCM", "Multiplanar reformatting")
_SOURCE_PURPOSE_CODE = ("121322", "DCM", "Source image for image processing operation")


class PixelStorage(str, Enum):
    """How HU are stored in the 16-bit pixels."""

    #: uint16, Pixel Representation 0, Rescale Intercept -1024 (iPlan table 8-19).
    UNSIGNED = "unsigned"
    #: int16, Pixel Representation 1, Rescale Intercept 0.
    SIGNED = "signed"

    @property
    def intercept(self) -> int:
        """Rescale Intercept: HU = stored + intercept."""
        return -1024 if self is PixelStorage.UNSIGNED else 0

    @property
    def hu_range(self) -> tuple[int, int]:
        """Lowest and highest storable HU."""
        if self is PixelStorage.UNSIGNED:
            return (-1024, 65535 - 1024)
        return (-32768, 32767)


@dataclass(frozen=True)
class CTWriteReport:
    """What a :class:`CTSeriesWriter` wrote.

    Parameters
    ----------
    series_uid : str
        Series Instance UID.
    series_dir : pathlib.Path
        The folder holding the files.
    paths : tuple of pathlib.Path
        One file per slice, in slice order.
    sop_instance_uids : tuple of str
        SOP Instance UIDs, in slice order.
    clamped_low, clamped_high : int
        Voxels below / above the storable HU range, written as its limits.
    dropped_values : tuple of str
        One line per source value that was not carried over because it breaks
        its VR's rules (e.g. a Patient's Age of ``0Y``).
    """

    series_uid: str
    series_dir: Path
    paths: tuple[Path, ...]
    sop_instance_uids: tuple[str, ...]
    clamped_low: int
    clamped_high: int
    dropped_values: tuple[str, ...] = ()


def _code_item(code: tuple[str, str, str]) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = code
    return item


def _source_item(sop_class_uid: str, sop_instance_uid: str) -> Dataset:
    item = Dataset()
    item.ReferencedSOPClassUID = sop_class_uid
    item.ReferencedSOPInstanceUID = sop_instance_uid
    item.PurposeOfReferenceCodeSequence = [_code_item(_SOURCE_PURPOSE_CODE)]
    return item


def _check_uid(uid: object, what: str) -> str:
    text = str(uid)
    if len(text) > 64 or not _UID_RE.match(text):
        raise InvalidInputError(f"{what} {uid!r} is not a UID")
    return text


def _to_stored(hu: np.ndarray, storage: PixelStorage, little_endian: bool
               ) -> tuple[np.ndarray, int, int]:
    """Stored pixel words of one slice and the numbers clamped low and high."""
    lo, hi = storage.hu_range
    if hu.dtype == np.int16:
        # Nothing below the range is the rule (air is -1000): one pass finds it out.
        low = 0 if int(hu.min(initial=0)) >= lo else int(np.count_nonzero(hu < lo))
        if storage is PixelStorage.UNSIGNED:
            # uint16 arithmetic wraps: -1024 -> 64512 + 1024 = 0, 32767 -> 33791.
            words = (np.maximum(hu, np.int16(lo)) if low else hu).view(np.uint16) + np.uint16(1024)
        else:
            words = hu if little_endian else hu.copy()  # never swap the caller's array
        high = 0
    else:
        wide = hu.astype(np.int64)
        low = int(np.count_nonzero(wide < lo))
        high = int(np.count_nonzero(wide > hi))
        dtype = np.uint16 if storage is PixelStorage.UNSIGNED else np.int16
        words = (np.clip(wide, lo, hi) - storage.intercept).astype(dtype)
    if not little_endian:
        words.byteswap(inplace=True)
    return np.ascontiguousarray(words), low, high


class CTSeriesWriter:
    """Write a CT series slice by slice as CT Image Storage Part 10 files.

    Streaming: call :meth:`write` with slabs of slices in any order while the
    next ones are computed, then :meth:`close`.  Each file is written
    atomically (:func:`~rtforge.io.fileset.atomic_write`).  As a context
    manager it closes on a normal exit (raising if slices are missing) and
    leaves the files written so far on an exception: write into a temporary
    folder (``flat=True``) and rename it to make a whole series appear at once.

    Parameters
    ----------
    stack : SliceStack
        Geometry of the slices: Image Position (Patient) per slice, orientation,
        pixel spacing ``(si, sj)`` (written as Pixel Spacing ``sj\\si``), rows
        and columns.  For a derived series its orientation must be the identity.
    out_dir : str or path-like
        Root of the file set: files go to
        ``<out_dir>/<PatientID>/<StudyInstanceUID>/<SeriesInstanceUID>/``
        (see :func:`~rtforge.io.fileset.series_dir`), or straight into
        ``out_dir`` when ``flat``.
    source : pydicom.Dataset, optional
        A data set of the source series (e.g. its first slice): patient,
        study, Frame of Reference, Patient Position, KVP, Acquisition Number,
        Series Number and Description and window are carried over from it.
    source_references : sequence of sequence of (str, str), optional
        For each slice, the ``(SOP Class UID, SOP Instance UID)`` of the source
        images it was interpolated from (Source Image Sequence); an empty entry
        leaves the sequence out of that slice.  Derived series only.
    derived : bool, optional
        A derived (resliced) series (default) or an original one.
    pixel_storage : str or PixelStorage, optional
        ``"unsigned"`` (default, intercept -1024) or ``"signed"`` (intercept 0).
    transfer_syntax : str, optional
        ``"explicit"`` (default), ``"implicit"``, ``"big"`` or their UIDs.
    config : ExportConfig, optional
        UID root, Station Name, private creator and platform name; defaults
        to ``ExportConfig()``.
    series_uid : str, optional
        Series Instance UID; a new one under the configured root by default.
        SOP Instance UIDs are derived from it and the slice index, so a re-run
        with the same Series Instance UID reproduces them.
    slice_thickness : float, optional
        Slice Thickness in mm; the stack's slice spacing along the normal by
        default (empty for a single slice).
    derivation_description : str, optional
        Derivation Description of a derived series; by default
        ``"Resliced to axial orientation by rtforge"``.
    timestamp : datetime, optional
        Instance Creation, Content and Series Date/Time; now by default.
    overrides : mapping of str to object, optional
        Keyword to value, applied last (e.g. ``PatientName``, ``StudyInstanceUID``,
        ``PatientPosition``, ``SeriesNumber`` for an original series); ``None``
        removes a Type 3 attribute or empties a Type 2 one.  Per-slice
        attributes (:data:`PER_INSTANCE`) and those that follow from the stack,
        ``pixel_storage`` or ``series_uid`` cannot be overridden.
    flat : bool, optional
        Write into ``out_dir`` itself rather than the patient/study/series layout.
    fsync : bool, optional
        fsync every file and, at :meth:`close`, the folder (default).
    writeback : bool, optional
        Without ``fsync``: start each file's write-back as it is written, for
        a later :func:`~rtforge.io.fileset.sync_files` (see
        :func:`~rtforge.io.fileset.atomic_write`).

    Raises
    ------
    GeometryError
        If a derived series' orientation is not ``1\\0\\0\\0\\1\\0``.
    InvalidInputError
        If ``source_references`` does not have one entry per slice or holds a
        non-UID, is given for an original series, ``overrides`` names a
        per-slice attribute or one outside the CT Image IOD, or
        ``pixel_storage`` or ``transfer_syntax`` is not one of those listed.
    ConformanceError
        If a value cannot be written conformantly.
    """

    def __init__(self, stack: SliceStack, out_dir: str | os.PathLike, *,
                 source: Dataset | None = None,
                 source_references: Sequence[Sequence[tuple[str, str]]] | None = None,
                 derived: bool = True,
                 pixel_storage: str | PixelStorage = PixelStorage.UNSIGNED,
                 transfer_syntax: str = ExplicitVRLittleEndian,
                 config: ExportConfig | None = None,
                 series_uid: str | None = None,
                 slice_thickness: float | None = None,
                 derivation_description: str | None = None,
                 timestamp: datetime | None = None,
                 overrides: Mapping[str, object] | None = None,
                 flat: bool = False,
                 fsync: bool = True,
                 writeback: bool = False) -> None:
        self._stack = stack
        self._config = config or ExportConfig()
        try:
            self._storage = PixelStorage(pixel_storage)
        except ValueError:
            raise InvalidInputError(f"pixel_storage {pixel_storage!r} must be 'unsigned' or "
                                    "'signed'") from None
        self._ts = parse_transfer_syntax(transfer_syntax)
        self._little = self._ts != ExplicitVRBigEndian
        self._fsync = fsync
        self._writeback = writeback
        if derived and not (np.allclose(stack.row_direction, (1, 0, 0), atol=1e-6)
                            and np.allclose(stack.column_direction, (0, 1, 0), atol=1e-6)):
            raise GeometryError("a derived CT series must have Image Orientation (Patient) "
                                "1\\0\\0\\0\\1\\0; reslice it onto an axis-aligned grid first")
        self._references = self._check_references(source_references, derived)
        overrides = dict(overrides or {})
        fixed = sorted(set(overrides) & _NOT_OVERRIDABLE)
        if fixed:
            raise InvalidInputError(
                f"attribute(s) {', '.join(fixed)} follow from the slices, the stack, "
                "pixel_storage or series_uid and cannot be overridden")
        self._dropped: list[str] = []
        self._values = self._series_values(source, derived, series_uid, slice_thickness,
                                           derivation_description, timestamp or datetime.now())
        self._values.update(overrides)
        template = build_dataset(CT_IMAGE_IOD, self._values, config=self._config,
                                 omit=PER_INSTANCE)
        self._character_set = str(template.SpecificCharacterSet)
        self.series_uid = str(template.SeriesInstanceUID)
        root = Path(out_dir)
        self.series_dir = root if flat else series_dir(
            root, str(template.get("PatientID", "") or ""), str(template.StudyInstanceUID),
            self.series_uid)
        self.series_dir.mkdir(parents=True, exist_ok=True)
        self.sop_instance_uids: tuple[str, ...] = tuple(
            str(derived_uid(self._config.uid_root, self.series_uid, "CT Image", str(k)))
            for k in range(stack.nslices))
        self._template = DatasetTemplate(template, list(_TAG.values()), self._ts)
        self._prefix = Part10Prefix(CTImageStorage, self._ts)
        frame_bytes = stack.rows * stack.columns * 2
        self._pixel_header = element_header(_TAG["PixelData"], "OW", frame_bytes, self._ts)
        self._items: dict[tuple[str, str], bytes] = {}
        purpose = Dataset()
        purpose.PurposeOfReferenceCodeSequence = [_code_item(_SOURCE_PURPOSE_CODE)]
        self._purpose = encode_dataset(purpose, self._ts, self._character_set)
        self._offsets = stack.offsets
        self._written = np.zeros(stack.nslices, dtype=bool)
        self._clamped_low = 0
        self._clamped_high = 0
        self._report: CTWriteReport | None = None

    # -------------------------------------------------------------- set-up
    def _check_references(self, refs: Sequence[Sequence[tuple[str, str]]] | None,
                          derived: bool) -> list[list[tuple[str, str]]] | None:
        if refs is None:
            return None
        if not derived:
            raise InvalidInputError("source_references apply to a derived series only")
        if len(refs) != self._stack.nslices:
            raise InvalidInputError(f"source_references has {len(refs)} entries for "
                                    f"{self._stack.nslices} slices")
        # Each output slice of an oblique source references dozens of source images, the
        # same few hundred again and again: each distinct UID is checked once.
        checked: set[str] = set()

        def check(uid: object, what: str) -> str:
            text = str(uid)
            if text not in checked:
                _check_uid(uid, what)
                checked.add(text)
            return text

        return [[(check(c, "Referenced SOP Class UID"), check(i, "Referenced SOP Instance UID"))
                 for c, i in slice_refs] for slice_refs in refs]

    def _series_values(self, source: Dataset | None, derived: bool, series_uid: str | None,
                       slice_thickness: float | None, description: str | None,
                       when: datetime) -> dict[str, object]:
        stack, storage, root = self._stack, self._storage, self._config.uid_root
        values = carried_values(source, CT_IMAGE_IOD, dropped=self._dropped)
        if ("WindowCenter" in values) != ("WindowWidth" in values):
            logger.warning("source has only one of Window Center and Window Width: "
                           "no window written")
            values.pop("WindowCenter", None)
            values.pop("WindowWidth", None)
        for keyword in ("StudyInstanceUID", "FrameOfReferenceUID"):
            if keyword not in values:
                if derived:
                    logger.warning("source has no %s: a new one is generated", keyword)
                values[keyword] = new_uid(root)
        source_description = str(source.get("SeriesDescription", "") or "") if source else ""
        if derived:
            values["SeriesDescription"] = f"{source_description or 'CT'}"[:55] + " resliced"
            values["ImageType"] = ["DERIVED", "SECONDARY", "AXIAL"]
            values["DerivationDescription"] = (
                description or "Resliced to axial orientation by rtforge")
            values["DerivationCodeSequence"] = [_code_item(_MPR_CODE)]
            orientation: list[object] = [1, 0, 0, 0, 1, 0]
        else:
            values["SeriesDescription"] = source_description or None
            values["ImageType"] = ["ORIGINAL", "PRIMARY", "AXIAL"]
            orientation = [*stack.row_direction, *stack.column_direction]
            if stack.is_tilted():
                values["GantryDetectorTilt"] = stack.tilt_degrees()
        if slice_thickness is None and stack.nslices > 1:
            slice_thickness = stack.normal_spacing
        date, time = format_da(when), format_tm(when)
        values.update(equipment_values(self._config))
        values.update({
            "SOPClassUID": CTImageStorage,
            "Modality": "CT",
            "SeriesInstanceUID": series_uid or new_uid(root),
            "SeriesDate": date, "SeriesTime": time,
            "ContentDate": date, "ContentTime": time,
            "InstanceCreationDate": date, "InstanceCreationTime": time,
            "ImageOrientationPatient": orientation,
            "PixelSpacing": [stack.pixel_spacing[1], stack.pixel_spacing[0]],
            "SliceThickness": slice_thickness,
            "SamplesPerPixel": 1,
            "PhotometricInterpretation": "MONOCHROME2",
            "Rows": stack.rows,
            "Columns": stack.columns,
            "BitsAllocated": 16,
            "BitsStored": 16,
            "HighBit": 15,
            "PixelRepresentation": 0 if storage is PixelStorage.UNSIGNED else 1,
            "RescaleIntercept": storage.intercept,
            "RescaleSlope": 1,
            "RescaleType": "HU",
        })
        return values

    # ------------------------------------------------------------ per slice
    def _instance_values(self, k: int) -> dict[str, object]:
        """Per-slice values as ``build_dataset`` takes them (reference path)."""
        refs = self._references[k] if self._references is not None else []
        return {
            "SOPInstanceUID": self.sop_instance_uids[k],
            "SourceImageSequence": [_source_item(c, i) for c, i in refs] or None,
            "InstanceNumber": k + 1,
            "ImagePositionPatient": list(self._stack.positions[k]),
            "SliceLocation": float(self._offsets[k]),
        }

    def _source_sequence(self, k: int) -> list[bytes]:
        if self._references is None or not self._references[k]:
            return []
        items = []
        for ref in self._references[k]:
            encoded = self._items.get(ref)
            if encoded is None:
                # An item is its two UIDs, then the constant Purpose of Reference.
                encoded = b"".join((
                    encode_text_element(0x00081150, "UI", ref[0], self._ts),
                    encode_text_element(0x00081155, "UI", ref[1], self._ts),
                    self._purpose))
                self._items[ref] = encoded
            items.append(encoded)
        return [encode_sequence(_TAG["SourceImageSequence"], items, self._ts)]

    def _encode(self, k: int, words: np.ndarray) -> list[Chunk]:
        ts = self._ts
        uid = self.sop_instance_uids[k]
        position = "\\".join(format_ds(v) for v in self._stack.positions[k])
        variable: dict[int, Sequence[Chunk]] = {
            _TAG["SOPInstanceUID"]: [encode_text_element(_TAG["SOPInstanceUID"], "UI", uid, ts)],
            _TAG["SourceImageSequence"]: self._source_sequence(k),
            _TAG["InstanceNumber"]: [
                encode_text_element(_TAG["InstanceNumber"], "IS", str(k + 1), ts)],
            _TAG["ImagePositionPatient"]: [
                encode_text_element(_TAG["ImagePositionPatient"], "DS", position, ts)],
            _TAG["SliceLocation"]: [encode_text_element(
                _TAG["SliceLocation"], "DS", format_ds(self._offsets[k]), ts)],
            _TAG["PixelData"]: [self._pixel_header, words],
        }
        return [self._prefix.encode(uid), *self._template.join(variable)]

    def _check_slab(self, k0: int, slab: np.ndarray) -> np.ndarray:
        arr = np.asarray(slab)
        if arr.ndim != 3:
            raise InvalidInputError(f"slab must have 3 dimensions (slice, row, column), got "
                                    f"{arr.ndim}")
        if arr.shape[1:] != (self._stack.rows, self._stack.columns):
            raise InvalidInputError(f"slab slices are {arr.shape[1:]}, the stack's are "
                                    f"{(self._stack.rows, self._stack.columns)}")
        if arr.dtype.kind not in "iu":
            raise InvalidInputError(f"slab must hold integer HU, got dtype {arr.dtype}; round "
                                    "to nearest first")
        if not 0 <= k0 <= self._stack.nslices - arr.shape[0]:
            raise InvalidInputError(f"slices {k0}..{k0 + arr.shape[0] - 1} are outside "
                                    f"0..{self._stack.nslices - 1}")
        return arr

    def path(self, k: int) -> Path:
        """File of slice ``k``: ``<series_dir>/<SOPInstanceUID>.dcm``."""
        return self.series_dir / f"{self.sop_instance_uids[k]}.dcm"

    def write(self, k0: int, slab: np.ndarray) -> None:
        """Write slices ``k0 .. k0 + len(slab) - 1``.

        Parameters
        ----------
        k0 : int
            Index of the first slice of ``slab`` in the stack.
        slab : ndarray of shape (n, rows, columns), integer dtype
            HU (int16 normally).  Values outside the storable range are
            clamped and counted.

        Raises
        ------
        InvalidInputError
            If the shape, dtype or slice range is wrong, or a slice was
            already written.
        ConformanceError
            If the writer is closed.
        OSError
            If a file cannot be written (no partial file is left).
        """
        if self._report is not None:
            raise ConformanceError("the series writer is closed")
        arr = self._check_slab(k0, slab)
        if np.any(self._written[k0:k0 + arr.shape[0]]):
            raise InvalidInputError(f"slices {k0}..{k0 + arr.shape[0] - 1}: some already "
                                    "written")
        for n, hu in enumerate(arr):
            k = k0 + n
            words, low, high = _to_stored(hu, self._storage, self._little)
            atomic_write(self.path(k), self._encode(k, words), fsync=self._fsync,
                         writeback=self._writeback)
            self._written[k] = True
            self._clamped_low += low
            self._clamped_high += high

    def instance_dataset(self, k: int, hu: np.ndarray) -> Dataset:
        """The full data set of slice ``k``, built the plain pydicom way.

        The reference the fast encoder is tested against, and a way to get
        one slice as a data set.  ``file_meta`` is set; Pixel Data is in
        little-endian word order (:func:`~rtforge.io.fileset.write_dataset_file`
        swaps it for Explicit VR Big Endian).

        Parameters
        ----------
        k : int
            Slice index.
        hu : ndarray of shape (rows, columns), integer dtype
            The slice's HU.

        Returns
        -------
        pydicom.Dataset
        """
        words, _, _ = _to_stored(self._check_slab(k, hu[np.newaxis])[0], self._storage, True)
        ds = build_dataset(CT_IMAGE_IOD, {**self._values, **self._instance_values(k)},
                           config=self._config, omit=("PixelData",))
        ds["PixelData"] = DataElement(_TAG["PixelData"], "OW", words.tobytes())
        ds.file_meta = file_meta(CTImageStorage, self.sop_instance_uids[k], self._ts)
        return ds

    def close(self) -> CTWriteReport:
        """Finish the series: check every slice was written, fsync the folder.

        Returns
        -------
        CTWriteReport

        Raises
        ------
        ConformanceError
            If some slices were not written (the series would be incomplete).
        """
        if self._report is not None:
            return self._report
        missing = np.flatnonzero(~self._written)
        if missing.size:
            raise ConformanceError(f"series {self.series_uid} incomplete: {missing.size} slice(s) "
                                   f"not written, first {missing[:5].tolist()}")
        if self._fsync:
            fsync_directory(self.series_dir)
        self._report = CTWriteReport(
            series_uid=self.series_uid, series_dir=self.series_dir,
            paths=tuple(self.path(k) for k in range(self._stack.nslices)),
            sop_instance_uids=self.sop_instance_uids,
            clamped_low=self._clamped_low, clamped_high=self._clamped_high,
            dropped_values=tuple(self._dropped))
        return self._report

    def __enter__(self) -> CTSeriesWriter:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.close()


def write_ct_series(array: np.ndarray, stack: SliceStack, out_dir: str | os.PathLike,
                    **kwargs: object) -> CTWriteReport:
    """Write a whole CT series (see :class:`CTSeriesWriter` for the options).

    Parameters
    ----------
    array : ndarray of shape stack.shape, integer dtype
        HU, indexed ``[k, j, i]``.
    stack : SliceStack
        Geometry of the slices.
    out_dir : str or path-like
        Root of the file set (or the series folder with ``flat=True``).
    **kwargs
        Keyword arguments of :class:`CTSeriesWriter`.

    Returns
    -------
    CTWriteReport

    Raises
    ------
    InvalidInputError
        If ``array`` does not have the stack's shape, or as :class:`CTSeriesWriter`.
    """
    arr = np.asarray(array)
    if arr.shape != stack.shape:
        raise InvalidInputError(f"array shape {arr.shape} differs from the stack's {stack.shape}")
    writer = CTSeriesWriter(stack, out_dir, **kwargs)  # type: ignore[arg-type]
    writer.write(0, arr)
    return writer.close()

