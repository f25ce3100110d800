"""Find and read image series (CT, MR, PET) into int16 volumes with exact slice geometry.

Two entry points:

- :func:`discover_series` walks folders and reads headers only, up to group
  0028 (it never touches Pixel Data or the bulk of RT objects), and groups
  image instances by Series Instance UID.  It scales to archives of thousands
  of files.
- :func:`read_series` reads one series: it validates every slice's header
  before reading any pixels, sorts slices along the slice normal, and reads
  uncompressed Pixel Data straight from the file into the preallocated
  ``int16`` output (no per-slice ``pixel_array``, no float volume).

Conventions
-----------
Arrays are indexed ``[k, j, i]`` = ``[slice, row, column]``.  Slice ``k`` is
the ``k``-th in increasing offset along the slice normal ``n = row × column``
of Image Orientation (Patient); :attr:`ImageSeries.stack` holds each slice's
Image Position (Patient), the centre of its pixel ``[j=0, i=0]``, in LPS mm.

How a DICOM file is told from anything else
-------------------------------------------
As :mod:`rtforge.io.dicomfile` says (Part 10 prefix, or a bare data set whose first
element is of group 0002 or 0008); the parse must then yield attributes of group
0008 (SOP Class UID, Modality, ...).  Anything else (text, PNG, a random binary)
is not DICOM and is never handed to pydicom's permissive ``force=True`` parser.

Notes
-----
PS3.3 C.7.6.2 (Image Plane module), C.7.6.3 (Image Pixel module), C.11.1
(Modality LUT: Rescale Slope/Intercept), C.7.5.1.1.2 (Pixel Padding Value).
"""

from __future__ import annotations

import logging
import math
import os
import struct
import sys
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import pydicom
from pydicom import uid as dicom_uid
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filereader import read_partial
from pydicom.pixels import get_decoder
from pydicom.tag import BaseTag, Tag

from rtforge.core.geometry import SliceStack, Volume
from rtforge.errors import GeometryError, InvalidInputError
from rtforge.io._pixels import PixelFormat, convert_slice, normalise_stored, stored_view
from rtforge.io.dicomfile import looks_like_dicom, transfer_syntax_of
from rtforge.io.integrity import finite_numbers, pixel_data_shortfall, truncation

if TYPE_CHECKING:
    from rtforge.io.rtstruct import ImageSeriesReference

__all__ = ["SeriesInfo", "DiscoveryResult", "ImageSeries", "discover_series", "read_series",
           "reference_image_series"]

logger = logging.getLogger(__name__)

PathLike = str | os.PathLike[str]

ORIENTATION_TOLERANCE = 1e-4
"""Largest difference between two slices' direction cosines in one series."""
PIXEL_SPACING_TOLERANCE_MM = 1e-4
"""Largest difference between two slices' Pixel Spacing values in one series (mm)."""
DUPLICATE_POSITION_TOLERANCE_MM = 1e-3
"""Slices closer than this along the normal are duplicates (mm)."""
TILT_MISMATCH_DEGREES = 0.5
"""Largest difference between derived and nominal tilt magnitudes before a warning."""

_DIRECTION_TOLERANCE = 1e-3  # unit length / orthogonality of one slice's cosines
_PIXEL_DATA = 0x7FE00010
_PIXEL_TAGS = frozenset({0x7FE00008, 0x7FE00009, 0x7FE00010})
_END_OF_IMAGE_GROUPS = 0x0028FFFF  # everything discovery needs is at or below group 0028
_ROWS = 0x00280010
_UNDEFINED_LENGTH = 0xFFFFFFFF
_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "UC", "UN", "UR", "UT"})
_NATIVE_SYNTAXES = frozenset({dicom_uid.ImplicitVRLittleEndian, dicom_uid.ExplicitVRLittleEndian,
                              dicom_uid.ExplicitVRBigEndian})
_MONOCHROME = frozenset({"MONOCHROME1", "MONOCHROME2"})



# Objects with pixels that are not slices of an image series.
_NOT_SLICES = {
    dicom_uid.MediaStorageDirectoryStorage: "DICOMDIR (a file-set directory, not an image)",
    dicom_uid.RTDoseStorage: "RT Dose (a dose grid, not an image slice; read it as RT Dose)",
    dicom_uid.RTImageStorage: "RT Image (a projection image, not a slice)",
    dicom_uid.SegmentationStorage: "Segmentation (not an image slice)",
}
# Image storage classes: an instance of one of these is an image even when
# Rows is missing (it is then reported as broken, never silently skipped).
_IMAGE_SOP_CLASSES = frozenset({
    dicom_uid.CTImageStorage, dicom_uid.EnhancedCTImageStorage,
    dicom_uid.LegacyConvertedEnhancedCTImageStorage, dicom_uid.MRImageStorage,
    dicom_uid.EnhancedMRImageStorage, dicom_uid.LegacyConvertedEnhancedMRImageStorage,
    dicom_uid.PositronEmissionTomographyImageStorage, dicom_uid.EnhancedPETImageStorage,
    dicom_uid.LegacyConvertedEnhancedPETImageStorage, dicom_uid.NuclearMedicineImageStorage,
    dicom_uid.SecondaryCaptureImageStorage,
})

# Tags discovery keeps (all in groups 0008 to 0028, so it can stop there).
_DISCOVERY_TAGS: list[BaseTag | int] = [Tag(k) for k in (
    "SpecificCharacterSet", "ImageType", "SOPClassUID", "SOPInstanceUID", "Modality",
    "SeriesDescription", "PatientID", "StudyInstanceUID", "SeriesInstanceUID", "Rows",
    "Columns", "NumberOfFrames")]


def _tag_label(keyword: str) -> str:
    t = Tag(keyword)
    return f"{keyword} ({t.group:04X},{t.element:04X})"


# ---------------------------------------------------------------- records
@dataclass(frozen=True)
class SeriesInfo:
    """One image series found by :func:`discover_series`, from headers only.

    Parameters
    ----------
    series_uid : str
        Series Instance UID (0020,000E).
    modality : str
        Modality (0008,0060) of the series' first file.
    study_uid : str
        Study Instance UID (0020,000D).
    patient_id : str
        Patient ID (0010,0020); empty when absent.
    paths : tuple of Path
        The series' image files, sorted by path (not by slice position).
    description : str
        Series Description (0008,103E); empty when absent.
    voxels : int
        Rows x Columns x frames summed over the files (what reading the
        series will hold in memory, in voxels); 0 when unknown.
    """

    series_uid: str
    modality: str
    study_uid: str
    patient_id: str
    paths: tuple[Path, ...]
    description: str
    voxels: int = 0

    @property
    def n_instances(self) -> int:
        """Number of image files in the series."""
        return len(self.paths)


@dataclass(frozen=True)
class DiscoveryResult:
    """What :func:`discover_series` found.

    Parameters
    ----------
    series : list of SeriesInfo
        Image series, ordered by patient, study, description and UID.
    skipped : list of (Path, str)
        Files that are not part of an image series, each with the reason:
        not DICOM, unreadable, DICOMDIR, a non-image object (RTSTRUCT,
        RTPLAN, ...), a modality not asked for, a hidden file.
    """

    series: list[SeriesInfo]
    skipped: list[tuple[Path, str]]


@dataclass
class ImageSeries:
    """One image series read by :func:`read_series`.

    Attributes
    ----------
    array : ndarray of shape (nk, nj, ni), dtype int16
        Values after Rescale Slope/Intercept (HU for CT), rounded to nearest
        (ties to even) and clipped to int16; indexed ``[slice, row,
        column]``, slices in increasing offset along the slice normal.
    stack : SliceStack
        Exact per-slice geometry in the same order (positions, orientation,
        pixel spacing as ``(si, sj)``).
    headers : list of pydicom.Dataset
        Each slice's header without Pixel Data, same order (elements after
        Pixel Data, such as trailing padding, are not read).
    paths : list of Path
        Each slice's file, same order.
    series_uid : str
        Series Instance UID.
    modality : str
        Modality of the first slice.
    nominal_tilt : float or None
        Gantry/Detector Tilt (0018,1120) in degrees when present.  Its sign is
        vendor dependent; it is a cross-check only.
    tilt_degrees : float
        Tilt derived from the positions (:meth:`SliceStack.tilt_degrees`).
    uneven_spacing : bool
        True when the gaps along the normal differ by more than the spacing
        tolerance.
    gaps : ndarray of shape (nk - 1,), dtype float64
        Distance along the normal between neighbouring slices, mm.
    padding_voxels : int
        Voxels whose stored value was the Pixel Padding Value (or inside the
        Pixel Padding Range); they hold ``air``.
    clipped_voxels : int
        Voxels whose rescaled value lay outside int16 and was clipped.
    warnings : list of str
        Human-readable notes: uneven spacing, tilt, tilt mismatch, clipping,
        non-integral rescale, mixed Frame of Reference.
    """

    array: np.ndarray
    stack: SliceStack
    headers: list[Dataset]
    paths: list[Path]
    series_uid: str
    modality: str
    nominal_tilt: float | None
    tilt_degrees: float
    uneven_spacing: bool
    gaps: np.ndarray
    padding_voxels: int
    clipped_voxels: int
    warnings: list[str] = field(default_factory=list)

    def to_volume(self, tolerance_mm: float = 0.01) -> Volume:
        """The series as a :class:`~rtforge.core.geometry.Volume` on its regular grid.

        A tilted series gives a sheared grid (see :meth:`SliceStack.to_grid`);
        the array is shared, not copied.

        Raises
        ------
        GeometryError
            If the slices are unevenly spaced: no regular grid holds them;
            use :attr:`stack` instead.
        """
        return Volume(array=self.array, grid=self.stack.to_grid(tolerance_mm))


# ------------------------------------------------------------- scanning
class _NotDicomError(InvalidInputError):
    """A file that is not DICOM at all (as opposed to a damaged DICOM file)."""


@dataclass(frozen=True)
class _PixelElement:
    """Where a file's Pixel Data value is."""

    tag: int
    vr: str | None
    length: int
    value_offset: int | None  # None: the value is only reachable through pydicom (deflated)


@dataclass
class _Scanned:
    path: Path
    ds: Dataset
    size: int
    pixel: _PixelElement | None
    transfer_syntax: dicom_uid.UID
    bare: bool = False  # no Part 10 preamble and meta: read as a bare data set


def _deflated(ts: dicom_uid.UID) -> bool:
    return ts.is_transfer_syntax and ts.is_deflated


def _read_element_header(fp: object, implicit: bool, little: bool) -> _PixelElement | None:
    """The data element header at the current position, or None at end of file."""
    start = fp.tell()  # type: ignore[attr-defined]
    head = fp.read(8)  # type: ignore[attr-defined]
    if len(head) < 8:
        return None
    e = "<" if little else ">"
    group, elem = struct.unpack(e + "HH", head[:4])
    tag = (group << 16) | elem
    if implicit:
        return _PixelElement(tag, None, struct.unpack(e + "L", head[4:8])[0], start + 8)
    vr = head[4:6].decode("latin-1")
    if vr in _LONG_VRS:
        extra = fp.read(4)  # type: ignore[attr-defined]
        if len(extra) < 4:
            return None
        return _PixelElement(tag, vr, struct.unpack(e + "L", extra)[0], start + 12)
    return _PixelElement(tag, vr, struct.unpack(e + "H", head[6:8])[0], start + 8)


def _scan(path: Path, *, headers_only: bool) -> _Scanned:
    """Read one file's header.

    ``headers_only``: keep only the discovery tags and stop after group 0028.
    Otherwise read the whole header and stop before Pixel Data, whose
    position is recorded; a file without Rows stops after group 0028 too (it
    is not an image, and its bulk is not worth parsing).

    Raises
    ------
    _NotDicomError
        The file is not DICOM.
    InvalidInputError
        The file cannot be opened or parsed.
    """
    seen_rows = False

    # BaseTag compares through Python methods: compare plain ints (called per element).
    def stop_full(tag: BaseTag, vr: str | None, length: int) -> bool:
        nonlocal seen_rows
        t = int(tag)
        if t == _ROWS:
            seen_rows = True
        return t in _PIXEL_TAGS or (t > _END_OF_IMAGE_GROUPS and not seen_rows)

    def stop_headers(tag: BaseTag, vr: str | None, length: int) -> bool:
        return int(tag) > _END_OF_IMAGE_GROUPS

    try:
        fp = open(path, "rb")  # noqa: SIM115 - closed by the with block below
    except OSError as exc:
        raise InvalidInputError(f"cannot open: {exc.strerror or exc}", path) from exc
    with fp:
        size = os.fstat(fp.fileno()).st_size
        head = fp.read(132)
        if not looks_like_dicom(head, size):
            raise _NotDicomError(
                "not a DICOM file (no 'DICM' prefix at byte 128 and no DICOM data element at "
                "the start); remove it or pass only DICOM files", path)
        fp.seek(0)
        stop: Callable[[BaseTag, str | None, int], bool] = (
            stop_headers if headers_only else stop_full)
        try:
            ds = read_partial(fp, stop_when=stop, force=True,
                              specific_tags=_DISCOVERY_TAGS if headers_only else None)
        except Exception as exc:  # pydicom raises many types on damaged input
            raise InvalidInputError(f"cannot parse as DICOM: {exc}", path) from exc
        if not headers_only:
            cut = truncation(ds)
            if cut is not None:
                raise InvalidInputError(cut, path)
        if not any((int(t) >> 16) == 0x0008 for t in ds.keys()):
            meta = getattr(ds, "file_meta", None)
            media = str(meta.get("MediaStorageSOPClassUID", "") or "") if meta else ""
            if media == dicom_uid.MediaStorageDirectoryStorage:
                pass  # a DICOMDIR holds group 0004 only; the caller skips it
            elif head[128:132] == b"DICM":
                raise InvalidInputError(
                    "no data set after the File Meta Information: the file is truncated or "
                    "damaged", path)
            else:
                raise _NotDicomError(
                    "not a DICOM file: no identifying attributes (group 0008) could be parsed",
                    path)
        ts = transfer_syntax_of(ds)
        pixel: _PixelElement | None = None
        if not headers_only:
            if _deflated(ts):
                # The data set is one zlib stream: let pydicom inflate it all.
                fp.seek(0)
                try:
                    full = pydicom.dcmread(fp, force=True)
                except Exception as exc:
                    raise InvalidInputError(f"cannot inflate deflated data set: {exc}",
                                            path) from exc
                for tag in sorted(_PIXEL_TAGS & {int(t) for t in full.keys()}):
                    value = full.get_item(tag).value
                    pixel = _PixelElement(tag, None, len(value) if value is not None else 0,
                                          None)
                    break
            else:
                implicit, little = ds.original_encoding
                pixel = _read_element_header(fp, bool(implicit), bool(little))
                if pixel is not None and pixel.tag not in _PIXEL_TAGS:
                    pixel = None
        return _Scanned(path, ds, size, pixel, ts, bare=head[128:132] != b"DICM")


def _skip_reason(ds: Dataset, path: Path) -> str | None:
    """Why a DICOM object is not part of an image series, or None for an image."""
    sop = str(ds.get("SOPClassUID", "") or "")
    if not sop:
        meta = getattr(ds, "file_meta", None)
        sop = str(meta.get("MediaStorageSOPClassUID", "") or "") if meta is not None else ""
    if path.name.upper() == "DICOMDIR":
        return _NOT_SLICES[dicom_uid.MediaStorageDirectoryStorage]
    if sop in _NOT_SLICES:
        return _NOT_SLICES[dicom_uid.UID(sop)]
    if "Rows" in ds or sop in _IMAGE_SOP_CLASSES:
        return None
    modality = str(ds.get("Modality", "") or "") or "object"
    name = dicom_uid.UID(sop).name if sop else "no SOP Class UID"
    return f"{modality} ({name}) is not an image: it has no Rows or Pixel Data"


# ----------------------------------------------------------------- inputs
def _collect(source: PathLike | Sequence[PathLike]
             ) -> tuple[list[Path], Path | None, list[tuple[Path, str]]]:
    """Files named by ``source`` (folders walked recursively, in sorted order).

    Returns the files, the folder to name in errors (None for a file list)
    and hidden entries skipped during the walk.
    """
    if isinstance(source, (str, os.PathLike)):
        items = [Path(source)]
    else:
        items = [Path(p) for p in source]
        if not items:
            raise InvalidInputError("no files or folders given")
    files: list[Path] = []
    hidden: list[tuple[Path, str]] = []
    seen: set[Path] = set()

    def add(path: Path) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            files.append(path)

    for item in items:
        if item.is_dir():
            before = len(files)
            for root, dirs, names in os.walk(item):
                dirs.sort()
                for name in [d for d in dirs if d.startswith(".")]:
                    hidden.append((Path(root) / name, "hidden folder (not searched)"))
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                for name in sorted(names):
                    path = Path(root) / name
                    if name.startswith("."):
                        hidden.append((path, "hidden file (not read)"))
                    elif path.is_file():
                        add(path)
            if len(files) == before and len(items) == 1:
                raise InvalidInputError("folder holds no files", item)
        elif item.is_file():
            add(item)
        else:
            raise InvalidInputError("no such file or folder", item)
    folder = items[0] if len(items) == 1 and items[0].is_dir() else None
    return files, folder, hidden


def _source_label(source: PathLike | Sequence[PathLike], folder: Path | None) -> str:
    if folder is not None:
        return str(folder)
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    items = list(source)
    return str(items[0]) if len(items) == 1 else f"{len(items)} given paths"


# ------------------------------------------------------------- discovery
def discover_series(source: PathLike | Sequence[PathLike], *,
                    modalities: Collection[str] | None = None,
                    strict: bool = False, executor: Executor | None = None) -> DiscoveryResult:
    """Find the image series under folders (recursively) or among files.

    Reads headers only, up to group 0028 (no Pixel Data), and groups image
    instances by Series Instance UID.

    Parameters
    ----------
    source : path or sequence of paths
        Folders (searched recursively; hidden files and folders, whose names
        start with ``.``, are skipped and listed) and/or files.
    modalities : collection of str, optional
        Keep only series of these Modality values (e.g. ``{"CT"}``); images
        of other modalities are listed in ``skipped``.
    strict : bool
        When True a DICOM file that cannot be parsed (damaged, truncated)
        raises instead of being listed in ``skipped``.  A file that is not
        DICOM at all (a text note, a PNG beside the slices) is always skipped
        and listed.
    executor : concurrent.futures.Executor, optional
        Scan the headers of a large collection (2048 files or more) in
        parallel: this thread and the executor's workers share the files.
        The result is the same as without.

    Returns
    -------
    DiscoveryResult

    Raises
    ------
    InvalidInputError
        If ``source`` names nothing that exists, a folder is empty, no image
        series (of the wanted modalities) is found (naming the folder), or,
        with ``strict``, a DICOM file cannot be parsed (naming the file).

    Notes
    -----
    An instance is an image when it has Rows (0028,0010) or its SOP Class
    is an image storage class (CT, MR, PET, NM, SC, ...), unless it is a
    DICOMDIR, RT Dose, RT Image or Segmentation.
    """
    wanted = None if modalities is None else frozenset(str(m).upper() for m in modalities)
    files, folder, skipped = _collect(source)
    chunks = [files[i:i + _SCAN_CHUNK] for i in range(0, len(files), _SCAN_CHUNK)]
    groups: dict[str, list[tuple[Path, _FileEntry]]] = {}
    scans = _scan_chunks(chunks, wanted, executor)
    try:
        for chunk, entries in zip(chunks, scans, strict=True):
            for path, entry in zip(chunk, entries, strict=True):
                if entry.error is not None and strict:
                    raise InvalidInputError(entry.error[0], path, entry.error[1])
                if entry.skip is not None:
                    skipped.append((path, entry.skip))
                else:
                    groups.setdefault(entry.series_uid, []).append((path, entry))
    finally:
        scans.close()  # on an error, chunks no worker has started are dropped now
    label = _source_label(source, folder)
    if not groups:
        what = "image series" if wanted is None else f"image series of modality {sorted(wanted)}"
        raise InvalidInputError(
            f"no {what} found ({len(files)} files, {len(skipped)} skipped"
            + (f"; first skipped: {skipped[0][0].name}: {skipped[0][1]}" if skipped else "")
            + ")", label)
    series = [_series_info(uid, members) for uid, members in groups.items()]
    series.sort(key=lambda s: (s.patient_id, s.study_uid, s.description, s.series_uid))
    logger.info("%s: %d image series, %d files skipped", label, len(series), len(skipped))
    return DiscoveryResult(series=series, skipped=skipped)


#: Files per discovery task; a chunk takes about 0.05 s to scan.
_SCAN_CHUNK = 128
#: Chunks below which an executor is not used: its workers would start about
#: when this thread had scanned everything itself.
_PARALLEL_SCAN_CHUNKS = 16


@dataclass(frozen=True)
class _FileEntry:
    """What discovery keeps of one file: small, so that a worker process can send it."""

    series_uid: str = ""
    modality: str = ""
    study_uid: str = ""
    patient_id: str = ""
    description: str = ""
    voxels: int = 0
    skip: str | None = None  # why the file is not part of a series
    error: tuple[str, str | None] | None = None  # (reason, tag) to raise when strict


def _scan_files(paths: Sequence[Path], wanted: frozenset[str] | None) -> list[_FileEntry]:
    """Discovery's look at each file (headers up to group 0028); runs in worker processes too."""
    return [_file_entry(path, wanted) for path in paths]


def _file_entry(path: Path, wanted: frozenset[str] | None) -> _FileEntry:
    if path.name.upper() == "DICOMDIR":
        return _FileEntry(skip=_NOT_SLICES[dicom_uid.MediaStorageDirectoryStorage])
    try:
        ds = _scan(path, headers_only=True).ds
    except _NotDicomError as exc:
        return _FileEntry(skip=exc.reason)  # never part of a series, strict or not
    except InvalidInputError as exc:
        return _FileEntry(skip=exc.reason, error=(exc.reason, exc.tag))
    reason = _skip_reason(ds, path)
    if reason is not None:
        return _FileEntry(skip=reason)
    uid = str(ds.get("SeriesInstanceUID", "") or "")
    modality = str(ds.get("Modality", "") or "")
    if not uid:
        return _FileEntry(skip="image without a Series Instance UID (0020,000E)",
                          error=("image without a Series Instance UID",
                                 _tag_label("SeriesInstanceUID")))
    if wanted is not None and modality.upper() not in wanted:
        return _FileEntry(
            skip=f"modality {modality.upper() or '(none)'} not among {sorted(wanted)}")
    try:
        voxels = (int(ds.get("Rows", 0) or 0) * int(ds.get("Columns", 0) or 0)
                  * max(1, int(ds.get("NumberOfFrames", 1) or 1)))
    except (TypeError, ValueError):  # a malformed value: read_series will name it
        voxels = 0
    return _FileEntry(series_uid=uid, modality=modality,
                      study_uid=str(ds.get("StudyInstanceUID", "") or ""),
                      patient_id=str(ds.get("PatientID", "") or ""),
                      description=str(ds.get("SeriesDescription", "") or ""), voxels=voxels)


def _scan_chunks(chunks: list[list[Path]], wanted: frozenset[str] | None,
                 executor: Executor | None) -> Iterator[list[_FileEntry]]:
    """Each chunk's entries, in order; with an executor, scanned from both ends.

    This thread scans from the first chunk on while the executor's workers
    take chunks from the last one back (they were submitted last first):
    reaching a chunk no worker has started, this thread withdraws it and
    scans it itself, so that workers still starting cost no waiting.
    """
    if executor is None or len(chunks) < _PARALLEL_SCAN_CHUNKS:
        for chunk in chunks:
            yield _scan_files(chunk, wanted)
        return
    futures = {i: executor.submit(_scan_files, chunks[i], wanted)
               for i in reversed(range(len(chunks)))}
    try:
        for i, chunk in enumerate(chunks):
            future = futures.pop(i)
            yield _scan_files(chunk, wanted) if future.cancel() else future.result()
    finally:
        for future in futures.values():  # an error ended the scan: drop what has not started
            future.cancel()


def _series_info(uid: str, members: list[tuple[Path, _FileEntry]]) -> SeriesInfo:
    first = members[0][1]
    return SeriesInfo(
        series_uid=uid, modality=first.modality, study_uid=first.study_uid,
        patient_id=first.patient_id, paths=tuple(sorted((path for path, _ in members), key=str)),
        description=first.description, voxels=sum(entry.voxels for _, entry in members))


# ------------------------------------------------------------ one slice
@dataclass
class _Slice:
    scanned: _Scanned
    position: np.ndarray
    orientation: np.ndarray
    pixel_spacing: tuple[float, float]  # as DICOM writes it: (row spacing sj, column spacing si)
    fmt: PixelFormat
    slope: float
    intercept: float
    padding: tuple[int, int] | None

    @property
    def path(self) -> Path:
        return self.scanned.path


_KEYWORD_TAGS: dict[str, BaseTag] = {}
_BINARY_VRS = frozenset({"US", "SS", "OW"})
_TEXT_VRS = frozenset({"AE", "AS", "CS", "DA", "DS", "DT", "IS", "LO", "LT", "PN", "SH", "ST",
                       "TM", "UC", "UI", "UR", "UT"})


def _tag(keyword: str) -> BaseTag:
    tag = _KEYWORD_TAGS.get(keyword)
    if tag is None:
        tag = _KEYWORD_TAGS[keyword] = Tag(keyword)
    return tag


def _value(ds: Dataset, keyword: str, path: Path, binary: bool = False) -> object:
    """An attribute's value (None when absent or empty), decoding errors named.

    The attributes the reader needs are numbers and code strings; for a raw
    (not yet converted) element they are decoded here directly, which is
    several times cheaper than pydicom's general conversion: ``binary``
    attributes (US/SS) give an int or a list of ints, the others a list of
    the backslash-separated strings (one string when single-valued).
    Elements pydicom has already converted are used as they are.
    """
    try:
        elem = ds.get_item(_tag(keyword))
        if elem is None:
            return None
        if isinstance(elem, RawDataElement) and isinstance(elem.value, bytes):
            raw = elem.value
            if not raw:
                return None
            if elem.VR in _BINARY_VRS or (binary and elem.VR not in _TEXT_VRS):
                n = len(raw) // 2
                values = struct.unpack(("<" if elem.is_little_endian else ">") + "H" * n,
                                       raw[:2 * n])
                return values[0] if n == 1 else list(values)
            parts = raw.decode("latin-1").strip(" \x00").split("\\")
            return parts[0] if len(parts) == 1 else parts
        value = ds[_tag(keyword)].value
    except Exception as exc:
        raise InvalidInputError(f"cannot decode the value: {exc}", path, _tag_label(keyword)) \
            from exc
    if value is None or value == "" or value == b"":
        return None
    return value


def _floats(ds: Dataset, keyword: str, path: Path, count: int) -> np.ndarray:
    value = _value(ds, keyword, path)
    if value is None:
        raise InvalidInputError("missing: the slice cannot be placed in the patient", path,
                                _tag_label(keyword))
    try:
        return finite_numbers(value, count)
    except ValueError as exc:
        raise InvalidInputError(str(exc), path, _tag_label(keyword)) from None


def _int(ds: Dataset, keyword: str, path: Path, default: int | None = None, *,
         binary: bool = True) -> int:
    value = _value(ds, keyword, path, binary=binary)
    if value is None:
        if default is None:
            raise InvalidInputError("missing", path, _tag_label(keyword))
        return default
    try:
        return int(cast(Any, value))
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"not an integer: {value!r}", path, _tag_label(keyword)) from exc


def _float(ds: Dataset, keyword: str, path: Path, default: float | None) -> float | None:
    value = _value(ds, keyword, path)
    if value is None:
        return default
    try:
        out = float(cast(Any, value))
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(f"not a number: {value!r}", path, _tag_label(keyword)) from exc
    if not math.isfinite(out):
        raise InvalidInputError(f"not finite: {value!r}", path, _tag_label(keyword))
    return out


def _parse_slice(scanned: _Scanned) -> _Slice:
    """Validate one image header; raise InvalidInputError naming the file and tag."""
    ds, path = scanned.ds, scanned.path
    ts = scanned.transfer_syntax
    if ts not in _NATIVE_SYNTAXES and not _deflated(ts):
        if not (ts.is_transfer_syntax and ts.is_compressed):
            raise InvalidInputError(f"unknown transfer syntax {ts}", path,
                                    _tag_label("TransferSyntaxUID"))
        try:
            available = get_decoder(ts).is_available
        except NotImplementedError:
            available = False
        if not available:
            raise InvalidInputError(
                f"no decoder installed for {ts.name} ({ts}); install the pylibjpeg plugins "
                "or decompress the files first", path, _tag_label("TransferSyntaxUID"))
    frames = _int(ds, "NumberOfFrames", path, default=1, binary=False)
    if frames != 1:
        raise InvalidInputError(
            f"{frames} frames: only single-frame slice series are supported", path,
            _tag_label("NumberOfFrames"))
    samples = _int(ds, "SamplesPerPixel", path, default=1)
    if samples != 1:
        raise InvalidInputError(f"{samples} samples per pixel: only grayscale (1) is supported",
                                path, _tag_label("SamplesPerPixel"))
    photometric = str(_value(ds, "PhotometricInterpretation", path) or "MONOCHROME2").strip()
    if photometric not in _MONOCHROME:
        raise InvalidInputError(f"{photometric}: only MONOCHROME1 and MONOCHROME2 are supported",
                                path, _tag_label("PhotometricInterpretation"))
    rows = _int(ds, "Rows", path)
    columns = _int(ds, "Columns", path)
    if rows < 1 or columns < 1:
        raise InvalidInputError(f"image size {rows}x{columns} is empty", path, _tag_label("Rows"))
    bits_allocated = _int(ds, "BitsAllocated", path)
    if bits_allocated not in (8, 16):
        raise InvalidInputError(f"{bits_allocated}: only 8 and 16 are supported", path,
                                _tag_label("BitsAllocated"))
    bits_stored = _int(ds, "BitsStored", path, default=bits_allocated)
    if not 1 <= bits_stored <= bits_allocated:
        raise InvalidInputError(f"{bits_stored} with Bits Allocated {bits_allocated}", path,
                                _tag_label("BitsStored"))
    high_bit = _int(ds, "HighBit", path, default=bits_stored - 1)
    if not bits_stored - 1 <= high_bit <= bits_allocated - 1:
        raise InvalidInputError(f"{high_bit} with Bits Stored {bits_stored} and Bits Allocated "
                                f"{bits_allocated}", path, _tag_label("HighBit"))
    representation = _int(ds, "PixelRepresentation", path, default=0)
    if representation not in (0, 1):
        raise InvalidInputError(f"{representation}: must be 0 or 1", path,
                                _tag_label("PixelRepresentation"))
    signed = representation == 1
    fmt = PixelFormat(rows, columns, bits_allocated, bits_stored, high_bit, signed,
                      big_endian=ts == dicom_uid.ExplicitVRBigEndian)

    position = _floats(ds, "ImagePositionPatient", path, 3)
    orientation = _floats(ds, "ImageOrientationPatient", path, 6)
    r, c = orientation[:3], orientation[3:]
    if (abs(np.linalg.norm(r) - 1) > _DIRECTION_TOLERANCE
            or abs(np.linalg.norm(c) - 1) > _DIRECTION_TOLERANCE
            or abs(float(r @ c)) > _DIRECTION_TOLERANCE):
        raise InvalidInputError(
            f"{orientation.tolist()} are not two orthogonal unit vectors", path,
            _tag_label("ImageOrientationPatient"))
    spacing = _floats(ds, "PixelSpacing", path, 2)
    if np.any(spacing <= 0):
        raise InvalidInputError(f"{spacing.tolist()} must be positive", path,
                                _tag_label("PixelSpacing"))
    slope = _float(ds, "RescaleSlope", path, 1.0)
    intercept = _float(ds, "RescaleIntercept", path, 0.0)
    assert slope is not None and intercept is not None
    if slope == 0:
        raise InvalidInputError("0 maps every pixel to one value", path,
                                _tag_label("RescaleSlope"))
    padding = _padding(ds, path, bits_stored, signed)

    pixel = scanned.pixel
    if pixel is None:
        raise InvalidInputError("no Pixel Data: the file is truncated or holds no image", path,
                                _tag_label("PixelData"))
    if pixel.tag != _PIXEL_DATA:
        raise InvalidInputError(f"({pixel.tag >> 16:04X},{pixel.tag & 0xFFFF:04X}) float pixel "
                                "data is not supported", path, _tag_label("PixelData"))
    if ts in _NATIVE_SYNTAXES or _deflated(ts):
        if pixel.length == _UNDEFINED_LENGTH:
            raise InvalidInputError(
                f"encapsulated (undefined length) Pixel Data in uncompressed {ts.name}", path,
                _tag_label("PixelData"))
        short = pixel_data_shortfall(pixel.length, rows, columns, bits_allocated)
        if short is not None:
            raise InvalidInputError(short, path, _tag_label("PixelData"))
        if pixel.value_offset is not None and pixel.value_offset + fmt.nbytes > scanned.size:
            raise InvalidInputError(
                f"the file is truncated: Pixel Data needs {fmt.nbytes} bytes from offset "
                f"{pixel.value_offset}, the file has {scanned.size} bytes", path,
                _tag_label("PixelData"))
    elif pixel.value_offset is not None and pixel.value_offset >= scanned.size:
        raise InvalidInputError("the file is truncated: encapsulated Pixel Data is empty", path,
                                _tag_label("PixelData"))
    return _Slice(scanned, position, orientation, (float(spacing[0]), float(spacing[1])), fmt,
                  slope, intercept, padding)


def _padding(ds: Dataset, path: Path, bits_stored: int, signed: bool) -> tuple[int, int] | None:
    """Pixel Padding Value [and Range Limit] as an inclusive range of stored values."""
    values: list[int | None] = []
    for keyword in ("PixelPaddingValue", "PixelPaddingRangeLimit"):
        # US or SS: a raw element gives the 16-bit word, normalise_stored reads it
        value = _value(ds, keyword, path, binary=True)
        if value is None:
            values.append(None)
            continue
        if isinstance(value, Iterable) and not isinstance(value, str):
            value = list(value)[0]
        try:
            values.append(normalise_stored(int(cast(Any, value)), bits_stored, signed))
        except (TypeError, ValueError) as exc:
            raise InvalidInputError(f"not an integer: {value!r}", path, _tag_label(keyword)) \
                from exc
    pad, limit = values
    if pad is None:
        return None
    if limit is None:
        return (pad, pad)
    return (min(pad, limit), max(pad, limit))


# --------------------------------------------------------------- pixels
def _read_pixels(s: _Slice, out: np.ndarray, scratch8: np.ndarray, air: int) -> tuple[int, int]:
    """Read slice ``s`` into ``out`` (int16, (rows, columns)); return (padding, clipped)."""
    fmt, path, ts = s.fmt, s.path, s.scanned.transfer_syntax
    if ts in _NATIVE_SYNTAXES:
        raw = out.view(np.uint16) if fmt.bits_allocated == 16 else scratch8
        offset = s.scanned.pixel.value_offset  # type: ignore[union-attr]
        try:
            with open(path, "rb") as fp:
                fp.seek(offset)  # type: ignore[arg-type]
                n = fp.readinto(raw.data.cast("B"))
        except OSError as exc:
            raise InvalidInputError(f"cannot read Pixel Data: {exc}", path,
                                    _tag_label("PixelData")) from exc
        if n < fmt.nbytes:
            raise InvalidInputError(f"the file is truncated: read {n} of {fmt.nbytes} bytes of "
                                    "Pixel Data", path, _tag_label("PixelData"))
        if fmt.bits_allocated == 16 and fmt.big_endian != (sys.byteorder == "big"):
            raw.byteswap(inplace=True)
        stored = stored_view(raw, fmt)
    else:
        try:
            ds = pydicom.dcmread(path, force=True)
        except Exception as exc:
            raise InvalidInputError(f"cannot parse as DICOM: {exc}", path) from exc
        if _deflated(ts):
            data = ds.PixelData
            dtype = np.dtype("<u2") if fmt.bits_allocated == 16 else np.dtype("u1")
            raw = out.view(np.uint16) if fmt.bits_allocated == 16 else scratch8
            raw.reshape(-1)[:] = np.frombuffer(data, dtype=dtype, count=raw.size)
            stored = stored_view(raw, fmt)
        else:
            if "PixelData" not in ds:
                raise InvalidInputError(
                    "the file is truncated: the encapsulated Pixel Data ends before its "
                    "Sequence Delimitation Item", path, _tag_label("PixelData"))
            try:
                stored = ds.pixel_array
            except Exception as exc:
                raise InvalidInputError(f"cannot decode {ts.name} Pixel Data: {exc}", path,
                                        _tag_label("PixelData")) from exc
            if stored.shape != out.shape or stored.dtype.kind not in "iu":
                raise InvalidInputError(
                    f"decoded Pixel Data has shape {stored.shape} and dtype {stored.dtype}, "
                    f"expected {out.shape} integers", path, _tag_label("PixelData"))
    counts = convert_slice(stored, out, slope=s.slope, intercept=s.intercept,
                           padding=s.padding, air=air)
    return counts.padding, counts.clipped


# ---------------------------------------------------------------- series
def _select(groups: dict[str, list[_Scanned]], series_uid: str | None, label: str,
            skipped: list[tuple[Path, str]]) -> tuple[str, list[_Scanned]]:
    if series_uid is not None:
        if series_uid in groups:
            return series_uid, groups[series_uid]
        raise InvalidInputError(
            f"no image series with Series Instance UID {series_uid}; found: "
            + (", ".join(groups) or "none"), label)
    if not groups:
        raise InvalidInputError(
            "no image series found"
            + (f" ({len(skipped)} files skipped; first: {skipped[0][0].name}: {skipped[0][1]})"
               if skipped else ""), label)
    if len(groups) > 1:
        listing = "; ".join(
            f"{uid} ({m[0].ds.get('Modality', '?')}, {len(m)} files"
            + (f", '{m[0].ds.get('SeriesDescription')}'" if m[0].ds.get("SeriesDescription")
               else "") + ")"
            for uid, m in groups.items())
        raise InvalidInputError(
            f"{len(groups)} image series found; choose one with series_uid=: {listing}", label)
    uid, members = next(iter(groups.items()))
    return uid, members


def _check_consistent(slices: list[_Slice]) -> None:
    first = slices[0]
    for s in slices[1:]:
        if (s.fmt.rows, s.fmt.columns) != (first.fmt.rows, first.fmt.columns):
            tag = "Rows" if s.fmt.rows != first.fmt.rows else "Columns"
            raise InvalidInputError(
                f"mixed image sizes: {s.fmt.rows}x{s.fmt.columns} here, "
                f"{first.fmt.rows}x{first.fmt.columns} in {first.path}", s.path, _tag_label(tag))
        if np.max(np.abs(s.orientation - first.orientation)) > ORIENTATION_TOLERANCE:
            raise InvalidInputError(
                f"mixed orientations: {s.orientation.tolist()} here, "
                f"{first.orientation.tolist()} in {first.path}", s.path,
                _tag_label("ImageOrientationPatient"))
        if max(abs(a - b) for a, b in zip(s.pixel_spacing, first.pixel_spacing, strict=True)) \
                > PIXEL_SPACING_TOLERANCE_MM:
            raise InvalidInputError(
                f"mixed pixel spacings: {list(s.pixel_spacing)} here, "
                f"{list(first.pixel_spacing)} in {first.path}", s.path, _tag_label("PixelSpacing"))


def _frame(orientation: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Orthonormal row and column directions from rounded direction cosines."""
    r = orientation[:3] / np.linalg.norm(orientation[:3])
    c = orientation[3:] - (orientation[3:] @ r) * r
    return r, c / np.linalg.norm(c)


def read_series(source: PathLike | Sequence[PathLike], *, series_uid: str | None = None,
                air: int = -1000, strict: bool = True,
                spacing_tolerance_mm: float = 0.01) -> ImageSeries:
    """Read one image series into an int16 volume with its exact slice geometry.

    Parameters
    ----------
    source : path or sequence of paths
        A folder (searched recursively; it must hold exactly one image series
        unless ``series_uid`` picks one), a file, or a list of files and
        folders.  Non-image DICOM objects (RTSTRUCT, RTPLAN, RTDOSE,
        DICOMDIR, ...) among them are ignored.
    series_uid : str, optional
        The Series Instance UID to read when the source holds several.
    air : int
        HU given to voxels that hold the Pixel Padding Value.
    strict : bool
        When True (default) a file that is not DICOM is an error; when False
        it is skipped with a log message.
    spacing_tolerance_mm : float
        Gaps along the normal that differ from the median gap by more than
        this make the spacing uneven.

    Returns
    -------
    ImageSeries

    Raises
    ------
    InvalidInputError
        Naming the file (and tag): a file that is not DICOM or cannot be
        parsed; an empty folder; no image series, or several without
        ``series_uid``; a missing or invalid Image Position (Patient), Image
        Orientation (Patient), Pixel Spacing, Rows or Columns; mixed
        orientation, pixel spacing or image size; duplicate positions; missing
        or truncated Pixel Data, a truncated file; more than one frame,
        Samples per Pixel other than 1, a Photometric Interpretation other
        than MONOCHROME1/MONOCHROME2, Bits Allocated other than 8 or 16; a
        compressed transfer syntax without an installed decoder.

    Notes
    -----
    Every header is validated before any pixel is read.  Slices are sorted
    by their offset along the normal ``row × column`` of Image Orientation
    (Patient).  Values are ``round(stored * RescaleSlope + RescaleIntercept)``
    per slice (slices may differ).  Stored values equal to the Pixel Padding
    Value (0028,0120), or between it and the Pixel Padding Range Limit
    (0028,0121), compared as stored values with the pixels' signedness and
    Bits Stored, become ``air`` and are counted: they are outside the
    patient, never tissue.  MONOCHROME1 values are read as stored (only the
    display is inverted).  The tilt is derived from the positions; Gantry/
    Detector Tilt (0018,1120), whose sign is vendor dependent, is only
    compared in magnitude.
    """
    files, folder, skipped = _collect(source)
    label = _source_label(source, folder)
    groups: dict[str, list[_Scanned]] = {}
    for path in files:
        if path.name.upper() == "DICOMDIR":
            skipped.append((path, _NOT_SLICES[dicom_uid.MediaStorageDirectoryStorage]))
            continue
        try:
            scanned = _scan(path, headers_only=False)
        except _NotDicomError as exc:
            if strict:
                raise InvalidInputError(
                    exc.reason + " (or read with strict=False to skip it)", path) from exc
            logger.warning("skipped %s: %s", path, exc.reason)
            skipped.append((path, exc.reason))
            continue
        reason = _skip_reason(scanned.ds, path)
        if reason is not None:
            logger.debug("skipped %s: %s", path, reason)
            skipped.append((path, reason))
            continue
        uid = str(scanned.ds.get("SeriesInstanceUID", "") or "")
        if not uid:
            raise InvalidInputError("image without a Series Instance UID", path,
                                    _tag_label("SeriesInstanceUID"))
        groups.setdefault(uid, []).append(scanned)
    uid, members = _select(groups, series_uid, label, skipped)

    slices = [_parse_slice(m) for m in members]
    _check_consistent(slices)
    first = slices[0]
    r, c = _frame(first.orientation)
    normal = np.cross(r, c)
    positions = np.array([s.position for s in slices])
    offsets = positions @ normal
    order = np.argsort(offsets, kind="stable")
    slices = [slices[i] for i in order]
    positions = positions[order]
    offsets = offsets[order]
    gaps = np.diff(offsets)
    for dup in np.nonzero(gaps < DUPLICATE_POSITION_TOLERANCE_MM)[0]:
        a, b = slices[dup], slices[dup + 1]
        same = "the same Image Position (Patient)" if np.allclose(
            a.position, b.position, atol=DUPLICATE_POSITION_TOLERANCE_MM) else \
            "the same offset along the slice normal"
        raise InvalidInputError(
            f"duplicate slice: {same} {b.position.tolist()} as {a.path}; remove one of the two",
            b.path, _tag_label("ImagePositionPatient"))
    sj, si = first.pixel_spacing
    try:
        stack = SliceStack(positions=positions, row_direction=r, column_direction=c,
                           pixel_spacing=(si, sj), rows=first.fmt.rows,
                           columns=first.fmt.columns)
    except GeometryError as exc:  # pragma: no cover - the checks above make this unreachable
        raise InvalidInputError(str(exc), first.path) from exc

    nk = len(slices)
    array = np.empty((nk, first.fmt.rows, first.fmt.columns), dtype=np.int16)
    scratch8 = np.empty((first.fmt.rows, first.fmt.columns), dtype=np.uint8)
    padding_voxels = clipped_voxels = 0
    for k, s in enumerate(slices):
        npad, nclip = _read_pixels(s, array[k], scratch8, air)
        padding_voxels += npad
        clipped_voxels += nclip

    headers = [s.scanned.ds for s in slices]
    nominal_tilt = None
    for s in slices:
        nominal_tilt = _float(s.scanned.ds, "GantryDetectorTilt", s.path, None)
        if nominal_tilt is not None:
            break
    tilt = stack.tilt_degrees()
    uneven = stack.is_uneven(spacing_tolerance_mm)
    warnings = _warnings(stack, slices, tilt, nominal_tilt, uneven, clipped_voxels)
    for w in warnings:
        logger.warning("series %s: %s", uid, w)
    logger.info("read series %s: %d slices %dx%d from %s", uid, nk, first.fmt.rows,
                first.fmt.columns, label)
    return ImageSeries(
        array=array, stack=stack, headers=headers, paths=[s.path for s in slices],
        series_uid=uid, modality=str(first.scanned.ds.get("Modality", "") or ""),
        nominal_tilt=nominal_tilt, tilt_degrees=tilt, uneven_spacing=uneven, gaps=gaps,
        padding_voxels=padding_voxels, clipped_voxels=clipped_voxels, warnings=warnings)


def _warnings(stack: SliceStack, slices: list[_Slice], tilt: float, nominal: float | None,
              uneven: bool, clipped: int) -> list[str]:
    out = []
    gaps = stack.gaps
    if uneven:
        out.append(f"uneven slice spacing: gaps along the normal from {gaps.min():.3f} to "
                   f"{gaps.max():.3f} mm (median {np.median(gaps):.3f} mm)")
    if stack.is_tilted():
        out.append(f"gantry tilt: the slices are stacked {tilt:.2f} degrees off the slice "
                   "normal (derived from Image Position (Patient))")
    if nominal is not None and abs(abs(tilt) - abs(nominal)) > TILT_MISMATCH_DEGREES:
        out.append(f"Gantry/Detector Tilt (0018,1120) says {nominal:g} degrees but the slice "
                   f"positions give {tilt:.2f} degrees; the positions are used")
    if clipped:
        out.append(f"{clipped} voxels outside the int16 range after rescale were clipped")
    bare = sum(1 for s in slices if s.scanned.bare)
    if bare:
        out.append(f"{bare} of {len(slices)} files have no Part 10 file meta (preamble, DICM, "
                   "group 0002): read as bare data sets")
    fractional = sum(1 for s in slices
                     if not (float(s.slope).is_integer() and float(s.intercept).is_integer()))
    if fractional:
        out.append(f"{fractional} slices have a non-integral Rescale Slope/Intercept: values "
                   "were rounded to integers")
    frames = {str(s.scanned.ds.get("FrameOfReferenceUID", "") or "") for s in slices} - {""}
    if len(frames) > 1:
        out.append(f"mixed Frame of Reference UIDs in one series: {sorted(frames)}")
    return out


def reference_image_series(source: str | os.PathLike | Sequence[str | os.PathLike], *,
                           series_uid: str | None = None) -> ImageSeriesReference:
    """The image series on disk that a structure set will reference.

    Parameters
    ----------
    source : path or sequence of paths
        A folder holding the series (or files), as :func:`read_series`.
    series_uid : str, optional
        The series to use when the folder holds several.

    Returns
    -------
    rtforge.io.rtstruct.ImageSeriesReference
        What :func:`rtforge.io.rtstruct.build_rtstruct` takes as ``images``.

    Raises
    ------
    InvalidInputError
        As :func:`read_series`, or when the series has no
        Frame of Reference UID.
    """
    from rtforge.io.rtstruct import ImageReference, ImageSeriesReference

    series = read_series(source, series_uid=series_uid)
    header = series.headers[0]
    frame = _header_text(header, "FrameOfReferenceUID")
    if not frame:
        raise InvalidInputError("the image series has no Frame of Reference UID: contours "
                                "cannot be placed in it", path=series.paths[0],
                                tag="FrameOfReferenceUID")
    images = tuple(ImageReference(_header_text(h, "SOPClassUID"), _header_text(h, "SOPInstanceUID"))
                   for h in series.headers)
    return ImageSeriesReference(study_uid=_header_text(header, "StudyInstanceUID"),
                                series_uid=series.series_uid, frame_of_reference_uid=frame,
                                images=images, stack=series.stack, header=header)


def _header_text(ds: Dataset, keyword: str) -> str:
    value = ds.get(keyword)
    return "" if value is None else str(value)
