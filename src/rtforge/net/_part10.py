"""Received objects as Part 10 files: gathered, checked, written and flushed, then renamed.

What :mod:`rtforge.net.receiver` needs to keep an object exactly as it came
(its data set bytes untouched, behind a File Meta Information header, PS3.10
7.1) without ever leaving a partial file under a final name.
"""

from __future__ import annotations

import contextlib
import errno
import io
import mmap
import os
import struct
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import BinaryIO

from pydicom.dataset import Dataset
from pydicom.filereader import read_dataset
from pydicom.uid import UID

from rtforge.net._structure import check_data_set
from rtforge.net._upper_layer import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME

__all__ = [
    "SOP_CLASS_UID", "SOP_INSTANCE_UID", "PATIENT_ID", "STUDY_UID", "SERIES_UID",
    "Arena", "IncomingObject", "file_meta", "fsync_dir", "unlink_quietly",
]

_PREAMBLE = b"\x00" * 128 + b"DICM"
#: Objects up to this size are kept whole in memory; larger ones are written in pieces this big.
_SPILL_BYTES = 32 << 20
#: Initial size of an association's receive buffer (it grows to the largest object kept).
_ARENA_BYTES = 1 << 20

#: fdatasync where there is one (it skips the inode times, which we do not need).
_SYNC = getattr(os, "fdatasync", os.fsync)

#: The attributes the receiver reads: where a file goes and whether it matches its request.
SOP_CLASS_UID, SOP_INSTANCE_UID = 0x00080016, 0x00080018
PATIENT_ID, STUDY_UID, SERIES_UID = 0x00100020, 0x0020000D, 0x0020000E


def _texts(ds: Dataset) -> dict[int, str]:
    """The values of the attributes above, as received: no conversion, no validation warnings."""
    found: dict[int, str] = {}
    for elem in ds.elements():
        if elem.tag in (SOP_CLASS_UID, SOP_INSTANCE_UID, PATIENT_ID, STUDY_UID, SERIES_UID):
            value = elem.value
            if isinstance(value, (bytes, bytearray)):
                value = bytes(value).decode("ascii", "replace")
            found[elem.tag] = str(value or "").strip("\x00 ")
    return found


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a new file or subfolder, a rename) to the disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fp: BinaryIO, data: memoryview) -> None:
    """Write all of ``data``: an unbuffered write may take only part (a file size limit, ...)."""
    while data:
        count = fp.write(data)
        if not count:
            raise OSError(errno.EIO, "the file took no bytes")
        data = data[count:]


def unlink_quietly(path: Path) -> None:
    """Delete a file if it is there."""
    with contextlib.suppress(OSError):
        path.unlink()


class Arena:
    """One association's receive buffer, reused object after object.

    Fresh memory costs a page fault per 4 KiB on first touch, as much as
    copying it: one buffer serves every object of the association.
    """

    def __init__(self) -> None:
        self.buffer = bytearray(_ARENA_BYTES)


class _MemoryFile(io.RawIOBase):
    """A read-only file over a memoryview, for pydicom: skipped values cost no copy."""

    name = "<received data set>"

    def __init__(self, view: memoryview) -> None:
        super().__init__()
        self._view = view
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, target: bytearray | memoryview) -> int:  # type: ignore[override]
        count = max(0, min(len(target), len(self._view) - self._pos))
        target[:count] = self._view[self._pos:self._pos + count]
        self._pos += count
        return count

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: len(self._view)}[whence]
        self._pos = max(0, base + offset)
        return self._pos

    def tell(self) -> int:
        return self._pos


class IncomingObject:
    """The data set of one C-STORE, gathered in memory and written to a temporary file.

    Fragments are gathered in the association's :class:`Arena`; objects up
    to :data:`_SPILL_BYTES` are written with one call once complete, larger
    ones every :data:`_SPILL_BYTES`.  :meth:`start_flush` writes the rest and
    has another thread wait for the disk while :meth:`identify` parses the
    object (from memory when it fits); :meth:`persist` waits for the flush.
    After a write error the remaining fragments are dropped and the partial
    file is deleted.

    Notes
    -----
    Measured on loopback with 512 KiB CT slices: one write at the end beats
    writing while the data arrives, a writer thread and ``posix_fadvise``
    write-back hints (on two cores the GIL and the extra system calls cost
    more than they overlap); overlapping only the fdatasync with the parse
    pays.
    """

    def __init__(self, temp: Path, meta: bytes, transfer_syntax: str, arena: Arena) -> None:
        self.temp = temp
        self.error: OSError | None = None
        self._ts = UID(transfer_syntax)
        self._meta_length = len(meta)
        self._arena = arena
        self._size = 0  # bytes of the arena in use
        self._written = 0  # of those, bytes already in the file
        self._in_memory = True  # whether the arena holds the whole object
        self._fp: BinaryIO | None = None
        self._created = False  # whether the temporary file exists (until renamed or deleted)
        self._flushing: Future[None] | None = None
        self._append(meta)

    def _append(self, data: bytes | memoryview) -> None:
        end = self._size + len(data)
        buffer = self._arena.buffer
        if end > len(buffer):
            grown = bytearray(max(end, 2 * len(buffer)))
            grown[:self._size] = memoryview(buffer)[:self._size]
            self._arena.buffer = buffer = grown
        buffer[self._size:end] = data
        self._size = end

    def write(self, fragment: memoryview) -> None:
        """Append one fragment."""
        if self.error is None:
            self._append(fragment)
            if self._size >= _SPILL_BYTES:
                self._write_out()
                self._in_memory = False
                self._size = self._written = 0

    def _write_out(self) -> None:
        try:
            if self._fp is None:
                try:
                    self._fp = open(self.temp, "xb", buffering=0)
                except FileNotFoundError:  # someone removed the folder: make it again
                    self.temp.parent.mkdir(parents=True, exist_ok=True)
                    self._fp = open(self.temp, "xb", buffering=0)
                self._created = True
            with memoryview(self._arena.buffer) as view:
                _write_all(self._fp, view[self._written:self._size])
            self._written = self._size
        except OSError as exc:
            self.error = exc
            self.discard()

    def _sync(self) -> None:
        assert self._fp is not None
        _SYNC(self._fp.fileno())

    def start_flush(self, executor: Executor | None) -> None:
        """Write what is left, and flush the file to the disk on ``executor`` (if given)."""
        if self.error is None:
            self._write_out()
        if self.error is None and executor is not None:
            self._flushing = executor.submit(self._sync)

    def identify(self) -> dict[int, str]:
        """Check the object's structure, then return its identifying values (see :func:`_texts`).

        The structure is walked by :func:`~rtforge.net._structure.check_data_set`
        (no value read); the values come from pydicom reading up to Series
        Instance UID.  Call after :meth:`start_flush`.

        Raises
        ------
        ValueError
            If the data set is malformed.
        Exception
            Whatever else pydicom raises on it.
        """
        implicit, little = self._ts.is_implicit_VR, self._ts.is_little_endian
        if self._in_memory:
            view = memoryview(self._arena.buffer)[:self._size]
            return self._identify(view[self._meta_length:], implicit, little)
        with open(self.temp, "rb") as fp, \
                mmap.mmap(fp.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            view = memoryview(mapped)
            try:
                return self._identify(view[self._meta_length:], implicit, little)
            finally:
                view.release()

    @staticmethod
    def _identify(data: memoryview, implicit: bool, little: bool) -> dict[int, str]:
        check_data_set(data, implicit, little)
        with io.BufferedReader(_MemoryFile(data)) as source:
            head = read_dataset(source, implicit, little,
                                stop_when=lambda tag, vr, length: tag > SERIES_UID)
        return _texts(head)

    def _wait(self) -> None:
        flushing, self._flushing = self._flushing, None
        if flushing is not None:
            try:
                flushing.result()
            except OSError as exc:
                self.error = self.error or exc

    def persist(self) -> None:
        """Wait until the file is on the disk (after :meth:`start_flush`), then close it.

        Raises
        ------
        OSError
            If writing or flushing failed (the partial file is then deleted).
        """
        self._wait()
        if self.error is not None:
            self.discard()
            raise self.error
        assert self._fp is not None
        fp, self._fp = self._fp, None
        fp.close()

    def rename(self, final: Path) -> None:
        """Give the persisted file its final name (atomically, replacing any file there)."""
        os.replace(self.temp, final)
        self._created = False

    def discard(self) -> None:
        """Forget the data and delete the temporary file, if any."""
        self._wait()
        self._size = self._written = 0
        if self._fp is not None:
            fp, self._fp = self._fp, None
            with contextlib.suppress(OSError):
                fp.close()
        if self._created:
            self._created = False
            unlink_quietly(self.temp)


def file_meta(sop_class_uid: str, sop_instance_uid: str, transfer_syntax: str,
               source_ae: str) -> bytes:
    """Preamble, prefix and File Meta Information of a Part 10 file (PS3.10 7.1)."""
    elements = bytearray()
    for element, vr, value in (
            (0x0001, b"OB", b"\x00\x01"),
            (0x0002, b"UI", sop_class_uid.encode("ascii")),
            (0x0003, b"UI", sop_instance_uid.encode("ascii")),
            (0x0010, b"UI", transfer_syntax.encode("ascii")),
            (0x0012, b"UI", IMPLEMENTATION_CLASS_UID.encode("ascii")),
            (0x0013, b"SH", IMPLEMENTATION_VERSION_NAME.encode("ascii")),
            (0x0016, b"AE", source_ae.encode("ascii", "replace"))):
        if len(value) % 2:
            value += b"\x00" if vr == b"UI" else b" "
        if vr == b"OB":
            elements += struct.pack("<HH2sHI", 2, element, vr, 0, len(value)) + value
        else:
            elements += struct.pack("<HH2sH", 2, element, vr, len(value)) + value
    return _PREAMBLE + struct.pack("<HH2sHI", 2, 0, b"UL", 4, len(elements)) + bytes(elements)
