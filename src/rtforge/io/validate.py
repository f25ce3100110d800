"""Check DICOM files: rtforge's own checks, then dciodvfy when installed.

Our checks (:func:`validate_file`) need nothing outside pydicom:

- the file is a readable Part 10 file (preamble, ``DICM``, File Meta
  Information).  A data set without file meta (as many archives hold them) is
  read with pydicom's ``force=True`` when it parses completely and names a
  valid SOP Class and SOP Instance UID, and the result says so (a warning);
- SOP Class and SOP Instance UID are present and match Media Storage SOP
  Class and Instance UID of the file meta; a DICOMDIR (Media Storage
  Directory, which has no SOP Class UID in its data set) is instead loaded as
  a File-set and every file its records reference must exist;
- every value of a string VR is within its VR's length (DS at most 16
  characters, IS 12, UI 64, ...; PS3.5 table 6.2-1) and DS, IS and UI values
  are well formed;
- no element of an explicit-VR file has VR UN (an error in files rtforge
  wrote, recognised by their Implementation Class UID; a warning in others);
- every private element has its Private Creator;
- native Pixel Data is as long as Rows, Columns, Samples per Pixel, Bits
  Allocated and Number of Frames say.

dciodvfy (dicom3tools) then checks the IOD.  It prints the IOD it recognised,
then ``Error - ...`` and ``Warning - ...`` lines, on stderr; exit status 0
means no error.  Its note that it does not know rtforge's own private block
(Export Platform Name, :mod:`rtforge.io.private`) is dropped when the block's
creator is ours and the element has the VR of our dictionary.

The Debian build of dciodvfy aborts (SIGABRT) on any 32-bit Pixel Data.  Such
a file is checked again as a copy whose pixel module is made 16-bit (same
Rows and Columns), so that every other module is still verified by dciodvfy;
the result then says that the pixel module was checked by our own checks only.
When dciodvfy cannot verify a file at all (it crashed, timed out or is not
installed), the result is *not verified* (:attr:`ValidationResult.not_verified`):
a finding to report, never an error and never a pass.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from pydicom import Dataset, dcmread
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.errors import InvalidDicomError
from pydicom.tag import BaseTag
from pydicom.uid import (
    UID,
    MediaStorageDirectoryStorage,
)

from rtforge.config import ExportConfig
from rtforge.io.dicomfile import looks_like_dicom, quiet_pydicom, transfer_syntax_of
from rtforge.io.fileset import IMPLEMENTATION_CLASS_UID
from rtforge.io.media import load_file_set, resolve_file_id
from rtforge.io.modules import MAX_VALUE_LENGTH
from rtforge.io.private import PRIVATE_DICTIONARY, PRIVATE_GROUP

__all__ = ["DciodvfyRun", "ValidationResult", "dciodvfy_available", "is_dicom_file",
           "run_dciodvfy", "validate_file"]

#: Seconds dciodvfy may take on one file.
DCIODVFY_TIMEOUT = 120.0

_DS_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_IS_RE = re.compile(r"^[+-]?\d+$")
_UID_RE = re.compile(r"^(0|[1-9]\d*)(\.(0|[1-9]\d*))*$")
_SIGABRT_SHELL_STATUS = 134
_TEXT_VRS = frozenset({"SH", "LO", "ST", "LT"})
#: dciodvfy's note on a private element it has no dictionary for.
_UNKNOWN_PRIVATE_RE = re.compile(r"^\(0x([0-9a-f]{4}),0x([0-9a-f]{4})\)\s+\?\s+- Warning - "
                                 r"Unrecognized tag - assuming explicit value representation OK$")


@dataclass(frozen=True)
class ValidationResult:
    """Outcome of :func:`validate_file`.

    Parameters
    ----------
    path : pathlib.Path
        The file.
    errors : list of str
        Problems that make the file non-conformant (ours, then dciodvfy's).
    warnings : list of str
        Problems that do not, and notes on how the file was read or checked.
    dciodvfy_ran : bool
        True when dciodvfy ran to completion on the file (or on its 16-bit copy).
    iod : str or None
        The IOD dciodvfy recognised (e.g. ``CTImage``), when it ran.
    kind : str or None
        What the file holds: the SOP Class name (``CT Image Storage``), ``Media
        Storage Directory Storage`` for a DICOMDIR, None when it is not DICOM.
    not_verified : str or None
        Why dciodvfy could not verify the file, when it could not (it crashed,
        timed out, or is not installed).
    """

    path: Path
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dciodvfy_ran: bool = False
    iod: str | None = None
    kind: str | None = None
    not_verified: str | None = None

    @property
    def ok(self) -> bool:
        """True when there is no error."""
        return not self.errors


def dciodvfy_available() -> bool:
    """True when the ``dciodvfy`` program (dicom3tools) is on the PATH."""
    return shutil.which("dciodvfy") is not None


class DciodvfyRun(NamedTuple):
    """What one run of dciodvfy found.

    Parameters
    ----------
    errors : list of str
        ``Error - ...`` lines, or one line saying dciodvfy failed without saying why.
    warnings : list of str
        ``Warning - ...`` lines.
    iod : str or None
        The IOD name dciodvfy printed.
    failure : str or None
        Why dciodvfy did not run to completion (crashed, timed out, could not be
        started); None when it did.
    """

    errors: list[str]
    warnings: list[str]
    iod: str | None
    failure: str | None

    @property
    def completed(self) -> bool:
        """True when dciodvfy ran to completion."""
        return self.failure is None


def run_dciodvfy(path: str | os.PathLike, timeout: float = DCIODVFY_TIMEOUT) -> DciodvfyRun:
    """Run dciodvfy on one file.

    Parameters
    ----------
    path : str or path-like
    timeout : float, optional
        Seconds before dciodvfy is stopped (the file is then not verified).

    Returns
    -------
    DciodvfyRun
        A crash (the Debian build aborts on 32-bit Pixel Data), a timeout or a
        failure to start is a ``failure``, not an error: the file was not
        verified.  A non-zero exit without an ``Error`` line is an error.
    """
    try:
        proc = subprocess.run(["dciodvfy", os.fspath(path)], capture_output=True, text=True,
                              errors="replace", timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return DciodvfyRun([], [], None, f"dciodvfy timed out after {timeout:g} s")
    except OSError as exc:
        return DciodvfyRun([], [], None, f"dciodvfy could not run: {exc}")
    errors: list[str] = []
    warnings: list[str] = []
    iod = None
    for line in (proc.stderr + proc.stdout).splitlines():
        text = line.strip()
        if "Error - " in text:
            errors.append(f"dciodvfy: {text}")
        elif "Warning - " in text:
            warnings.append(f"dciodvfy: {text}")
        elif text and iod is None and re.fullmatch(r"[A-Za-z0-9]+", text):
            iod = text
    code = proc.returncode
    if code < 0 or code == _SIGABRT_SHELL_STATUS:
        return DciodvfyRun(errors, warnings, None, f"dciodvfy crashed (exit status {code})")
    if code != 0 and not errors:
        errors.append(f"dciodvfy: exit status {code} without an error message")
    return DciodvfyRun(errors, warnings, iod, None)


def _vr_of(elem: object, tag: int) -> str | None:
    vr = getattr(elem, "VR", None)
    if vr:
        return str(vr)
    try:
        return dictionary_VR(tag)
    except KeyError:
        return None


def _check_values(vr: str, raw: bytes, name: str, errors: list[str]) -> None:
    if vr in _TEXT_VRS and not raw.isascii():
        return  # lengths count characters of the file's character set: not checked here
    values = raw.decode("ascii", errors="replace").rstrip("\x00 ").split("\\") if raw else []
    limit = MAX_VALUE_LENGTH.get(vr)
    for n, value in enumerate(values, start=1):
        text = value.strip(" \x00") if vr in ("DS", "IS", "UI") else value.rstrip(" ")
        where = f"{name} value {n}"
        if limit is not None and len(value) > limit:
            errors.append(f"{where} {value!r} is {len(value)} characters; {vr} allows {limit}")
        elif vr == "DS" and text and not _DS_RE.match(text):
            errors.append(f"{where} {value!r} is not a decimal string")
        elif vr == "IS" and text and (not _IS_RE.match(text)
                                       or not -(2**31) <= int(text) < 2**31):
            errors.append(f"{where} {value!r} is not an integer string in range")
        elif vr == "UI" and text and not _UID_RE.match(text):
            errors.append(f"{where} {value!r} is not a valid UID")


@dataclass
class _Walk:
    """What the element walk needs to know about the file, and what it found."""

    implicit: bool
    little_endian: bool
    ours: bool
    data: bytes
    errors: list[str]
    warnings: list[str]

    def written_un(self, elem: object, tag: BaseTag) -> bool:
        """True when the file encodes ``elem`` with VR UN.

        pydicom replaces UN by the dictionary VR when it reads a public
        element, so the header bytes before the value are looked at.
        """
        if self.implicit or getattr(elem, "VR", None) == "UN":
            return not self.implicit
        pos = getattr(elem, "value_tell", None)
        if pos is None or pos < 12:
            return False
        order = "<" if self.little_endian else ">"
        header = self.data[pos - 12:pos - 4]
        return header == struct.pack(f"{order}HH", tag.group, tag.element) + b"UN\x00\x00"


def _walk(ds: Dataset, walk: _Walk, prefix: str = "") -> None:
    creators = {int(tag) for tag in ds.keys() if tag.group % 2 and 0x0010 <= tag.element <= 0x00FF}
    for tag in ds.keys():
        elem = ds.get_item(tag)
        name = f"{prefix}({tag.group:04X},{tag.element:04X}) {keyword_for_tag(tag)}".rstrip()
        if tag.group % 2 and tag.element >= 0x1000:
            creator = (tag.group << 16) | (tag.element >> 8)
            if creator not in creators:
                walk.errors.append(f"{name}: private element without its Private Creator "
                                   f"({tag.group:04X},{tag.element >> 8:04X})")
            if walk.implicit:
                continue
        if walk.written_un(elem, tag):
            (walk.errors if walk.ours else walk.warnings).append(f"{name}: VR UN")
            continue
        vr = _vr_of(elem, tag)
        if vr == "SQ":
            for n, item in enumerate(ds[tag].value, start=1):
                _walk(item, walk, f"{name} item {n} > ")
        elif vr in MAX_VALUE_LENGTH and isinstance(elem.value, bytes):
            _check_values(vr, elem.value, name, walk.errors)
        elif vr in MAX_VALUE_LENGTH and isinstance(elem.value, str):
            _check_values(vr, elem.value.encode("utf-8"), name, walk.errors)


def _check_pixel_data(ds: Dataset, transfer_syntax: UID, errors: list[str],
                      warnings: list[str]) -> None:
    if "PixelData" not in ds or transfer_syntax.is_compressed:
        return
    try:
        expected = (int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1))
                    * int(ds.get("NumberOfFrames", 1) or 1) * int(ds.BitsAllocated) + 7) // 8
    except (AttributeError, TypeError, ValueError) as exc:
        errors.append(f"Pixel Data present but its size attributes are missing or bad: {exc}")
        return
    actual = len(ds.get_item(0x7FE00010).value or b"")
    if actual < expected:
        errors.append(f"Pixel Data holds {actual} bytes; Rows, Columns, Samples per Pixel, "
                      f"Bits Allocated and Number of Frames need {expected}")
    elif actual > expected + (expected % 2):
        warnings.append(f"Pixel Data holds {actual} bytes, more than the {expected} needed")


class _Unreadable(Exception):
    """The file cannot be read as DICOM (the message says why)."""


def _read_raw(path: Path, *, stop_before_pixels: bool = False) -> Dataset | None:
    """A data set without Part 10 file meta, or None when the file is not one.

    Only bytes that :func:`~rtforge.io.dicomfile.looks_like_dicom` accepts are
    parsed, and the result is accepted only when every element parses and it
    names a valid SOP Class and SOP Instance UID.
    """
    try:
        with open(path, "rb") as fp:
            if not looks_like_dicom(fp.read(132), os.fstat(fp.fileno()).st_size):
                return None
        with quiet_pydicom():
            ds = dcmread(path, force=True, stop_before_pixels=stop_before_pixels)
            for elem in ds.iterall():
                _ = elem.value
    except Exception:  # whatever pydicom raises on bytes that are not a data set
        return None
    uids = (str(ds.get("SOPClassUID", "") or ""), str(ds.get("SOPInstanceUID", "") or ""))
    if not all(_UID_RE.match(uid) and len(uid) <= 64 for uid in uids):
        return None
    return ds


def is_dicom_file(path: str | os.PathLike) -> bool:
    """True when ``path`` is a Part 10 file or a data set without file meta.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    bool
        False for anything else (a PNG, a text file, an empty file).
    """
    file = Path(path)
    with open(file, "rb") as f:
        head = f.read(132)
    if head[128:132] == b"DICM":
        return True
    return _read_raw(file, stop_before_pixels=True) is not None


def _read(path: Path) -> tuple[Dataset, bool]:
    """The data set, and whether it was read without Part 10 file meta."""
    try:
        return dcmread(path), False
    except InvalidDicomError as exc:
        ds = _read_raw(path)
        if ds is None:
            raise _Unreadable(f"not a DICOM Part 10 file, nor a data set without file meta: "
                              f"{exc}") from None
        return ds, True
    except Exception as exc:  # any read failure is the finding, whatever pydicom raises
        raise _Unreadable(f"cannot be read as DICOM: {type(exc).__name__}: {exc}") from None


def _meta(ds: Dataset) -> Dataset:
    """The file meta of ``ds``, empty when it was read without one."""
    return getattr(ds, "file_meta", None) or Dataset()


def _check_dicomdir(ds: Dataset, path: Path, errors: list[str]) -> None:
    """A DICOMDIR loads as a File-set and every file its records name exists."""
    try:
        load_file_set(ds)  # missing files are counted below, once
    except Exception as exc:  # pydicom's message is the finding
        errors.append(f"DICOMDIR cannot be loaded as a File-set: {exc}")
        return
    missing = []
    listings: dict[Path, dict[str, Path]] = {}
    for record in ds.get("DirectoryRecordSequence", []):
        file_id = record.get("ReferencedFileID")
        if file_id:
            parts = [file_id] if isinstance(file_id, str) else list(file_id)
            if not resolve_file_id(path.parent, parts, listings).is_file():
                missing.append("/".join(parts))
    if missing:
        shown = ", ".join(missing[:5]) + (f" and {len(missing) - 5} more" if len(missing) > 5
                                          else "")
        errors.append(f"DICOMDIR references {len(missing)} file(s) missing beside it in "
                      f"{path.parent}: {shown}")


def _own_checks(path: Path, ds: Dataset, raw: bool, errors: list[str],
                warnings: list[str]) -> str | None:
    """Our checks of a data set read from ``path``; returns what the file holds."""
    meta = _meta(ds)
    uid = transfer_syntax_of(ds)
    if raw:
        warnings.append(f"no Part 10 file meta (preamble, DICM prefix, group 0002): read as "
                        f"a bare data set in {uid.name}")
    elif not meta.get("TransferSyntaxUID"):
        errors.append("file meta has no Transfer Syntax UID")
    if meta.get("MediaStorageSOPClassUID") == MediaStorageDirectoryStorage:
        _check_dicomdir(ds, path, errors)
        kind: str | None = MediaStorageDirectoryStorage.name
    else:
        for keyword, meta_keyword in (("SOPClassUID", "MediaStorageSOPClassUID"),
                                      ("SOPInstanceUID", "MediaStorageSOPInstanceUID")):
            value, meta_value = ds.get(keyword), meta.get(meta_keyword)
            if not value:
                errors.append(f"{keyword} is missing")
            elif not raw and value != meta_value:
                errors.append(f"{keyword} {value} differs from the file meta's {meta_keyword} "
                              f"{meta_value}")
        sop_class = UID(str(ds.get("SOPClassUID", "") or ""))
        kind = sop_class.name if sop_class else None
    walk = _Walk(implicit=uid.is_implicit_VR, little_endian=uid.is_little_endian,
                 # written by rtforge, not received by it (the receiver names the sender)
                 ours=meta.get("ImplementationClassUID") == IMPLEMENTATION_CLASS_UID
                 and "SourceApplicationEntityTitle" not in meta,
                 data=path.read_bytes() if not uid.is_deflated else b"",
                 errors=errors, warnings=warnings)
    _walk(ds, walk)
    _check_pixel_data(ds, uid, errors, warnings)
    return kind


def _is_our_private_note(line: str, ds: Dataset, creators: frozenset[str]) -> bool:
    """True for dciodvfy's 'Unrecognized tag' note on an element of our private block."""
    found = _UNKNOWN_PRIVATE_RE.match(line.removeprefix("dciodvfy: "))
    if found is None:
        return False
    group, element = int(found.group(1), 16), int(found.group(2), 16)
    creator = ds.get((group, element >> 8))
    entry = next((a for a in PRIVATE_DICTIONARY if a.offset == element & 0xFF), None)
    item = ds.get((group, element))
    return (group == PRIVATE_GROUP and creator is not None and str(creator.value) in creators
            and entry is not None and item is not None and item.VR == entry.vr)


def _dciodvfy_16_bit_copy(ds: Dataset, folder: str) -> DciodvfyRun:
    """dciodvfy on a copy of a 32-bit image whose pixel module is 16-bit."""
    copy = Dataset(ds)
    copy.file_meta = Dataset(_meta(ds))
    frames = int(ds.get("NumberOfFrames", 1) or 1)
    copy.BitsAllocated, copy.BitsStored, copy.HighBit = 16, 16, 15
    copy.PixelData = bytes(int(ds.Rows) * int(ds.Columns) * int(ds.get("SamplesPerPixel", 1))
                           * frames * 2)
    target = Path(folder) / "copy16.dcm"
    uid = transfer_syntax_of(ds)
    copy.save_as(target, implicit_vr=uid.is_implicit_VR, little_endian=uid.is_little_endian,
                 enforce_file_format=False)
    return run_dciodvfy(target)


def _run_dciodvfy_on(path: Path, ds: Dataset, errors: list[str], warnings: list[str],
                     creators: frozenset[str]) -> tuple[str | None, str | None]:
    """dciodvfy's findings added to ours; returns (IOD, why not verified)."""
    run = run_dciodvfy(path)
    native = not transfer_syntax_of(ds).is_compressed
    if not run.completed and native and int(ds.get("BitsAllocated", 0) or 0) == 32 \
            and "PixelData" in ds:
        with tempfile.TemporaryDirectory(prefix="rtforge-validate-") as folder:
            try:
                copy = _dciodvfy_16_bit_copy(ds, folder)
            except Exception as exc:  # the size attributes are the file's own finding
                copy = DciodvfyRun([], [], None, f"{run.failure}; no 16-bit copy could be "
                                   f"made ({type(exc).__name__}: {exc})")
        if copy.completed:
            warnings.append("dciodvfy checked a copy with a 16-bit pixel module (the Debian "
                            "build aborts on 32-bit Pixel Data); Pixel Data itself was checked "
                            "by rtforge only")
            run = copy
    errors += run.errors
    warnings += [w for w in run.warnings if not _is_our_private_note(w, ds, creators)]
    if not run.completed:
        warnings.append(f"not verified by dciodvfy: {run.failure}")
    return run.iod, run.failure


def validate_file(path: str | os.PathLike, *, dciodvfy: bool = True,
                  private_creators: tuple[str, ...] = ()) -> ValidationResult:
    """Check one file: our own checks, then dciodvfy when installed.

    Parameters
    ----------
    path : str or path-like
    dciodvfy : bool, optional
        Run dciodvfy when it is installed (default).  Not run on a file our
        checks cannot read.
    private_creators : tuple of str, optional
        Private Creators of rtforge's own block besides the default
        (``ExportConfig.private_creator``), e.g. the configured one.

    Returns
    -------
    ValidationResult
        Never raises for a bad file: whatever goes wrong is an error of the result.
    """
    file = Path(path)
    errors: list[str] = []
    warnings: list[str] = []
    try:
        ds, raw = _read(file)
        kind = _own_checks(file, ds, raw, errors, warnings)
    except _Unreadable as exc:
        return ValidationResult(path=file, errors=[str(exc)])
    except Exception as exc:  # a check broken by a strange file is a finding, not a crash
        return ValidationResult(path=file, errors=errors + [
            f"could not be checked: {type(exc).__name__}: {exc}"], warnings=warnings)
    iod, failure = None, None
    if not dciodvfy:
        return ValidationResult(path=file, errors=errors, warnings=warnings, kind=kind)
    if dciodvfy_available():
        creators = frozenset((ExportConfig().private_creator, *private_creators))
        iod, failure = _run_dciodvfy_on(file, ds, errors, warnings, creators)
    else:
        failure = "dciodvfy is not installed (Debian package dicom3tools)"
    return ValidationResult(path=file, errors=errors, warnings=warnings,
                            dciodvfy_ran=failure is None, iod=iod, kind=kind,
                            not_verified=failure)
