"""Integrity of one DICOM object: the checks every reader applies before using it.

``reslice`` and ``dvh`` read what they compute on strictly; ``deid``,
``relink``, ``media import`` and ``store import`` copy or rewrite objects of
any class.  All of them reject the same damage, through this module:

- a truncated file: an element (at any depth of the last sequence item)
  whose value is shorter than its declared length, or a Part 10 file with no
  data set after its File Meta Information;
- Pixel Data shorter than Rows x Columns x Samples x Frames x Bits
  Allocated / 8 (native transfer syntaxes), encapsulated Pixel Data whose
  items run past its end, or an image (Rows present) without Pixel Data;
- non-finite geometry: Image Position / Orientation (Patient), Pixel
  Spacing, Grid Frame Offset Vector, Isocenter Position, ... (wherever they
  sit, sequences included) that are not finite numbers, or not as many as
  the attribute holds;
- broken contours in an RT Structure Set: what
  :func:`rtforge.io.rtstruct.parse_rtstruct` rejects (Contour Data that is
  not finite numbers in triplets, Number of Contour Points that does not
  match it, fewer than 3 points in a CLOSED_PLANAR contour, ...).

:func:`read_checked` reads a file and applies :func:`check_dataset`; a file
that is not DICOM at all (no ``DICM`` prefix and no DICOM element at its
start, see :mod:`rtforge.io.dicomfile`) is told apart so that folders holding
previews and notes beside the objects can still be read.

Notes
-----
A file cut exactly at an element boundary before its Pixel Data shows as an
image without Pixel Data; a non-image object cut exactly between two
top-level elements cannot be told from a complete one by its encoding.
PS3.5 7.1 (data elements), A.4 (encapsulation); PS3.3 C.7.6.2, C.7.6.3.
"""

from __future__ import annotations

import logging
import math
import os
import struct
import threading
import warnings
from collections.abc import Iterable
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pydicom
from pydicom.datadict import dictionary_VR
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.tag import BaseTag, Tag
from pydicom.uid import UID, MediaStorageDirectoryStorage, RTStructureSetStorage

from rtforge.errors import InvalidInputError
from rtforge.io.dicomfile import looks_like_dicom

__all__ = ["truncation", "finite_numbers", "pixel_data_shortfall",
           "check_dataset", "read_checked"]

logger = logging.getLogger(__name__)

_UNDEFINED_LENGTH = 0xFFFFFFFF
_ITEM = 0xFFFEE000
#: Geometry attributes and how many values each holds (None: any number, at least one).
_GEOMETRY: dict[int, int | None] = {int(Tag(k)): n for k, n in (
    ("ImagePositionPatient", 3), ("ImageOrientationPatient", 6), ("PixelSpacing", 2),
    ("ImagerPixelSpacing", 2), ("ImagePlanePixelSpacing", 2), ("RTImagePosition", 2),
    ("SliceThickness", 1), ("SpacingBetweenSlices", 1), ("GridFrameOffsetVector", None),
    ("IsocenterPosition", 3), ("XRayImageReceptorTranslation", 3),
    ("TableTopVerticalPosition", 1), ("TableTopLongitudinalPosition", 1),
    ("TableTopLateralPosition", 1), ("DoseGridScaling", 1), ("RescaleSlope", 1),
    ("RescaleIntercept", 1))}
_PIXEL_DATA = {int(Tag("PixelData")): None, int(Tag("FloatPixelData")): 32,
               int(Tag("DoubleFloatPixelData")): 64}
_ROWS = int(Tag("Rows"))
_SQ_TAGS: dict[int, bool] = {}
#: warnings.catch_warnings swaps process-wide state: one thread at a time (the receiver's
#: indexer thread reads files while association threads run).
_WARNINGS_LOCK = threading.Lock()


def _is_sequence(ds: Dataset, tag: BaseTag) -> bool:
    """Whether an element is a sequence, without converting any other element's value."""
    vr = ds.get_item(tag).VR
    if vr:
        return vr == "SQ"
    t = int(tag)
    known = _SQ_TAGS.get(t)
    if known is None:
        try:
            known = dictionary_VR(t) == "SQ"
        except KeyError:  # private or unknown: a sequence only if pydicom read it as one
            known = False
        _SQ_TAGS[t] = known
    return known


def _label(tag: int) -> str:
    return f"({tag >> 16:04X},{tag & 0xFFFF:04X})"


def truncation(ds: Dataset) -> str | None:
    """Why ``ds`` looks cut short, or None.

    A file that ends early leaves its last element (the last one of the last
    item, when that element is a sequence) with fewer bytes than it declares;
    nothing after it was read.

    Parameters
    ----------
    ds : pydicom.Dataset
        As read from the file (elements not yet converted).

    Returns
    -------
    str or None
    """
    while len(ds):
        tag = max(ds.keys())
        elem = ds.get_item(tag)
        if isinstance(elem, RawDataElement):
            if (elem.length != _UNDEFINED_LENGTH and elem.value is not None
                    and len(elem.value) < elem.length):
                return (f"the file is truncated: {_label(int(tag))} declares {elem.length} "
                        f"bytes but the file ends after {len(elem.value)}")
        if not _is_sequence(ds, tag):
            return None
        value = ds[tag].value
        if not value:
            return None
        ds = value[-1]
    return None


def finite_numbers(value: object, count: int | None) -> np.ndarray:
    """``value`` (one number, or several) as float64, all finite and ``count`` of them.

    Parameters
    ----------
    value : object
        A DS/FD/FL value as pydicom gives it (a number, a string, a list of them).
    count : int or None
        How many values there must be (None: at least one).

    Returns
    -------
    ndarray of shape (count,), dtype float64

    Raises
    ------
    ValueError
        With the message to show (the caller names the file and the attribute).
    """
    seq: list[Any] = list(value) if isinstance(value, Iterable) and not isinstance(
        value, (str, bytes)) else [value]
    try:
        arr = np.array([float(v) for v in seq], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"not numeric: {value!r}") from None
    if (arr.shape != (count,) if count is not None else not arr.size) \
            or not np.all(np.isfinite(arr)):
        raise ValueError(f"must be {count or 'one or more'} finite numbers, got {value!r}")
    return arr


def pixel_data_shortfall(length: int, rows: int, columns: int, bits_allocated: int, *,
                         frames: int = 1, samples: int = 1) -> str | None:
    """Why ``length`` bytes of native Pixel Data are too few for the image, or None.

    Parameters
    ----------
    length : int
        Bytes of the Pixel Data value.
    rows, columns, bits_allocated, frames, samples : int
        Rows, Columns, Bits Allocated, Number of Frames, Samples per Pixel.

    Returns
    -------
    str or None
    """
    needed = math.ceil(rows * columns * frames * samples * bits_allocated / 8)
    if length >= needed:
        return None
    parts = [str(rows), str(columns)] + [str(n) for n in (samples, frames) if n != 1]
    names = ["Rows", "Columns"] + [n for n, v in (("Samples", samples), ("Frames", frames))
                                   if v != 1]
    return (f"truncated Pixel Data: {length} bytes, but {' x '.join(names)} x Bits Allocated "
            f"/ 8 = {' x '.join(parts)} x {bits_allocated} / 8 = {needed}")


def _int(ds: Dataset, keyword: str, default: int | None) -> int | None:
    value = ds.get(keyword)
    if value in (None, ""):
        return default
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{keyword} is not an integer: {value!r}") from None


def _encapsulated_problem(value: bytes, little: bool) -> str | None:
    """Why encapsulated Pixel Data items do not fit in the value, or None."""
    offset, items = 0, 0
    fmt = "<HHL" if little else ">HHL"
    while offset + 8 <= len(value):
        group, element, length = struct.unpack_from(fmt, value, offset)
        if (group << 16 | element) != _ITEM:
            return f"encapsulated Pixel Data holds {_label(group << 16 | element)} where an " \
                   "item should be"
        offset += 8 + length
        items += 1
    if offset != len(value):
        return "the file is truncated: an encapsulated Pixel Data item runs past its end"
    if items < 2:
        return "the file is truncated: encapsulated Pixel Data holds no fragment"
    return None


def _pixel_problem(ds: Dataset) -> str | None:
    """Why the image's pixel data cannot be whole, or None."""
    present = [t for t in _PIXEL_DATA if t in ds]
    if _ROWS not in ds:
        return None
    if not present:
        return "no Pixel Data: the file is truncated or holds no image"
    tag = present[0]
    elem = ds.get_item(tag)
    raw = elem.value if isinstance(elem, RawDataElement) else ds[tag].value
    if raw is None:
        raw = b""
    try:
        rows, columns = _int(ds, "Rows", None), _int(ds, "Columns", None)
        frames = _int(ds, "NumberOfFrames", 1)
        samples = _int(ds, "SamplesPerPixel", 1)
        bits = _PIXEL_DATA[tag] or _int(ds, "BitsAllocated", None)
    except ValueError as exc:
        return str(exc)
    if rows is None or columns is None or bits is None:
        return "Rows, Columns or Bits Allocated is empty"
    meta = getattr(ds, "file_meta", None)
    ts = UID(str(meta.get("TransferSyntaxUID", "") or "")) if meta is not None else UID("")
    encapsulated = (elem.length == _UNDEFINED_LENGTH if isinstance(elem, RawDataElement)
                    else bool(ts) and ts.is_transfer_syntax and ts.is_compressed)
    if encapsulated:
        little = ts.is_little_endian if ts.is_transfer_syntax else True
        return _encapsulated_problem(bytes(raw), little)
    return pixel_data_shortfall(len(raw), rows, columns, bits, frames=frames or 1,
                                samples=samples or 1)


def _geometry_problem(ds: Dataset, where: str = "") -> tuple[str, str] | None:
    """(attribute, problem) of the first non-finite geometry value, or None."""
    for tag in ds.keys():
        t = int(tag)
        if t in _GEOMETRY:
            value = ds[tag].value
            if value is None or value == "" or (isinstance(value, list) and not value):
                continue
            try:
                finite_numbers(value, _GEOMETRY[t])
            except ValueError as exc:
                return f"{where}{ds[tag].keyword}", str(exc)
        elif t not in _PIXEL_DATA and _is_sequence(ds, tag):
            elem = ds[tag]
            for n, item in enumerate(elem.value or []):
                found = _geometry_problem(item, f"{where}{elem.keyword or _label(t)}[{n}].")
                if found is not None:
                    return found
    return None


def check_dataset(ds: Dataset, path: str | os.PathLike | None = None) -> None:
    """Raise if ``ds`` is damaged (see the module docstring); otherwise do nothing.

    Parameters
    ----------
    ds : pydicom.Dataset
        As read from the file (a whole data set, Pixel Data included).
    path : str or path-like, optional
        The file, named in the error.

    Raises
    ------
    InvalidInputError
        Naming the file, the attribute where there is one, and the problem.
    """
    cut = truncation(ds)
    if cut is not None:
        raise InvalidInputError(cut, path)
    meta = getattr(ds, "file_meta", None)
    if meta is not None and meta.get("MediaStorageSOPClassUID") == MediaStorageDirectoryStorage:
        return  # a DICOMDIR: records, no object
    if "SOPClassUID" not in ds or "SOPInstanceUID" not in ds:
        raise InvalidInputError("no SOP Class or SOP Instance UID: the file is truncated or "
                                "damaged", path)
    problem = _pixel_problem(ds)
    if problem is not None:
        raise InvalidInputError(problem, path, "PixelData")
    try:
        found = _geometry_problem(ds)
    except Exception as exc:  # pydicom raises many types on values it cannot decode
        raise InvalidInputError(f"cannot decode a value: {exc}", path) from None
    if found is not None:
        raise InvalidInputError(found[1], path, found[0])
    if str(ds.SOPClassUID) == RTStructureSetStorage:
        from rtforge.io.rtstruct import parse_rtstruct

        parse_rtstruct(ds, path)


def read_checked(path: str | os.PathLike, data: bytes | None = None) -> Dataset | None:
    """Read one file and check it (:func:`check_dataset`); None when it is not DICOM.

    Parameters
    ----------
    path : str or path-like
    data : bytes, optional
        The file's bytes, when the caller has read them already.

    Returns
    -------
    pydicom.Dataset or None
        None for a file that is not DICOM at all (text, PNG, ...).

    Raises
    ------
    InvalidInputError
        If the file cannot be read, or is DICOM but damaged.
    """
    file = Path(path)
    try:
        with open(file, "rb") if data is None else BytesIO(data) as fp:
            head = fp.read(132)
            size = os.fstat(fp.fileno()).st_size if data is None else len(data)
            if not looks_like_dicom(head, size):
                return None
            fp.seek(0)
            with _WARNINGS_LOCK, warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                ds = pydicom.dcmread(fp, force=True)
    except OSError as exc:
        raise InvalidInputError(f"cannot be read: {exc.strerror or exc}", file) from None
    except Exception as exc:  # pydicom raises many types on damaged input
        raise InvalidInputError(f"cannot parse as DICOM: {exc}", file) from None
    for warning in caught:  # pydicom's word is reported here, not on the terminal
        text = str(warning.message)
        if "End of file" in text:
            raise InvalidInputError(f"the file is truncated: {text.split(' in file ')[0]}", file)
        logger.debug("%s: %s", file, text)
    check_dataset(ds, file)
    return ds
