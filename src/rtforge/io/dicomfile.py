"""Telling a DICOM file from anything else, and reading one with or without Part 10 meta.

A file is DICOM when it has the Part 10 ``DICM`` prefix at byte 128, or,
without it (a bare data set, as many archives and Monaco hold plans, and as
pydicom's ``rtstruct.dcm`` is), when its first bytes are a data element of
group 0002 or 0008 in either byte order (with a valid explicit VR, or a
plausible implicit length).  Only then is it handed to pydicom's permissive
``force=True`` parser, and the parse must yield a SOP Class UID: anything else
(text, PNG, a random binary) is not DICOM.  Readers say when a file was read
without its meta (:attr:`DicomFile.bare`), so that reports can tell the user.
"""

from __future__ import annotations

import logging
import os
import struct
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from io import BytesIO
from pathlib import Path
from typing import Any

import pydicom
from pydicom import uid as dicom_uid
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset, read_preamble

from rtforge.errors import InvalidInputError

__all__ = ["DicomFile", "looks_like_dicom", "quiet_pydicom", "read_dicom_file",
           "transfer_syntax_of", "sop_class_name", "split_part10", "same_content"]

_UNDEFINED_LENGTH = 0xFFFFFFFF
_VR_BYTES = frozenset(
    b"AE AS AT CS DA DS DT FD FL IS LO LT OB OD OF OL OV OW PN SH SL SQ SS ST SV TM UC UI UL "
    b"UN UR US UT UV".split())


def _not_group_0002(tag: Any, vr: str | None, length: int) -> bool:
    return bool(tag.group != 2)


def _read_meta(data: bytes) -> tuple[Dataset, int]:
    """(File Meta Information, offset of the data set) of a Part 10 file's bytes."""
    fp = BytesIO(data)
    read_preamble(fp, False)
    meta = read_dataset(fp, is_implicit_VR=False, is_little_endian=True,
                        stop_when=_not_group_0002)
    return meta, fp.tell()


def split_part10(data: bytes) -> tuple[bytes, bytes]:
    """(preamble, prefix and File Meta Information; data set) of a Part 10 file's bytes.

    Raises
    ------
    InvalidDicomError
        If ``data`` is not a Part 10 file.
    """
    offset = _read_meta(data)[1]
    return data[:offset], data[offset:]


def same_content(first: bytes, second: bytes) -> bool:
    """Whether two Part 10 files' bytes hold the same object.

    The same Transfer Syntax UID and the same data set bytes, as the
    receiver compares copies (the File Meta Information may differ
    otherwise); bytes that are not a Part 10 file are compared whole.
    """
    try:
        (meta_1, offset_1), (meta_2, offset_2) = _read_meta(first), _read_meta(second)
    except (InvalidDicomError, EOFError, ValueError, KeyError, AttributeError, TypeError):
        return first == second
    return meta_1.get("TransferSyntaxUID") == meta_2.get("TransferSyntaxUID") \
        and first[offset_1:] == second[offset_2:]


def sop_class_name(uid: str) -> str:
    """A SOP Class UID's name in pydicom's UID dictionary (``"RT Dose Storage"``), or
    ``"an unknown SOP Class"`` for a UID it does not know."""
    name = dicom_uid.UID(uid).name
    return "an unknown SOP Class" if name == uid else name


def looks_like_dicom(head: bytes, size: int) -> bool:
    """True for a Part 10 file, or a bare data set starting at group 0002 or 0008.

    Parameters
    ----------
    head : bytes
        The first 132 bytes of the file (fewer when it is shorter).
    size : int
        The file's size in bytes.

    Returns
    -------
    bool
    """
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    if len(head) < 8:
        return False
    for order in "<>":
        group = struct.unpack(order + "H", head[:2])[0]
        if group not in (0x0002, 0x0008):
            continue
        if head[4:6] in _VR_BYTES:
            return True  # explicit VR
        if order == "<":  # implicit VR is little endian only
            length = struct.unpack("<L", head[4:8])[0]
            if length == _UNDEFINED_LENGTH or length <= size - 8:
                return True
    return False


def transfer_syntax_of(ds: Dataset) -> dicom_uid.UID:
    """The transfer syntax ``ds`` was read in: its meta's, or the encoding pydicom found.

    Parameters
    ----------
    ds : pydicom.Dataset

    Returns
    -------
    pydicom.uid.UID
    """
    meta = getattr(ds, "file_meta", None)
    named = dicom_uid.UID(str(meta.get("TransferSyntaxUID", "") or "")) if meta else None
    if named is not None and named.is_transfer_syntax:
        return named
    implicit, little = ds.original_encoding
    if implicit:
        return dicom_uid.ImplicitVRLittleEndian
    return dicom_uid.ExplicitVRLittleEndian if little else dicom_uid.ExplicitVRBigEndian


@dataclass(frozen=True)
class DicomFile:
    """A data set read from a file.

    Parameters
    ----------
    ds : pydicom.Dataset
    bare : bool
        True when the file has no Part 10 preamble and meta: the data set was
        read with pydicom's ``force=True`` after :func:`looks_like_dicom` said so.
    """

    ds: Dataset
    bare: bool


def read_dicom_file(path: str | os.PathLike, *, stop_before_pixels: bool = False) -> DicomFile:
    """Read a Part 10 file, or a bare data set, checked as the module docstring says.

    Parameters
    ----------
    path : str or path-like
    stop_before_pixels : bool, optional
        Do not read Pixel Data.

    Returns
    -------
    DicomFile

    Raises
    ------
    InvalidInputError
        Naming the file: it does not exist, is a folder, is not DICOM, or cannot
        be parsed.
    """
    file = Path(path)
    if file.is_dir():
        raise InvalidInputError("is a folder, not a DICOM file", path=file)
    try:
        with open(file, "rb") as fp:
            size = os.fstat(fp.fileno()).st_size
            head = fp.read(132)
    except FileNotFoundError:
        raise InvalidInputError("no such file", path=file) from None
    except OSError as exc:
        raise InvalidInputError(f"cannot be read: {exc.strerror or exc}", path=file) from None
    if not looks_like_dicom(head, size):
        raise InvalidInputError("not a DICOM file (no 'DICM' prefix at byte 128 and no DICOM "
                                "data element at the start)", path=file)
    bare = head[128:132] != b"DICM"
    try:
        ds = pydicom.dcmread(file, force=bare, stop_before_pixels=stop_before_pixels)
    except Exception as exc:  # pydicom raises many types on damaged input
        raise InvalidInputError(f"cannot be parsed as DICOM: {exc}", path=file) from None
    if bare and "SOPClassUID" not in ds:
        raise InvalidInputError("not a DICOM file: no SOP Class UID could be parsed", path=file)
    return DicomFile(ds, bare)


class _QuietThreads(logging.Filter):
    """Drops pydicom's log records made on a thread inside :func:`quiet_pydicom`."""

    local = threading.local()

    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(self.local, "quiet", False)


_QUIET_FILTER = _QuietThreads()
#: warnings.catch_warnings swaps process-wide state: one thread at a time.
_WARNINGS_LOCK = threading.Lock()


@contextmanager
def quiet_pydicom() -> Iterator[None]:
    """Neither pydicom's warnings nor its log lines, where the caller reports itself
    (bytes that may not be DICOM at all, a DICOMDIR's missing files).  Per thread
    (files are checked on several threads); other threads' records pass."""
    logger = logging.getLogger("pydicom")
    if _QUIET_FILTER not in logger.filters:
        logger.addFilter(_QUIET_FILTER)
    _QuietThreads.local.quiet = True
    try:
        with _WARNINGS_LOCK, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        _QuietThreads.local.quiet = False
