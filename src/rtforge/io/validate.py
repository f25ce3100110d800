"""Check written DICOM files: rtforge's own checks, then dciodvfy when installed.

Our checks (:func:`validate_file`) need nothing outside pydicom:

- the file is a readable Part 10 file (preamble, ``DICM``, File Meta Information);
- SOP Class and SOP Instance UID are present and match Media Storage SOP
  Class and Instance UID of the file meta;
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
means no error.  The Debian build aborts (SIGABRT, shell status 134) on any
32-bit Pixel Data: that is reported as an error (a crash), never as a pass.
"""

from __future__ import annotations

import os
import re
import shutil
import struct
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from pydicom import Dataset, dcmread
from pydicom.datadict import dictionary_VR, keyword_for_tag
from pydicom.errors import InvalidDicomError
from pydicom.tag import BaseTag
from pydicom.uid import UID, ExplicitVRLittleEndian

from rtforge.io.fileset import IMPLEMENTATION_CLASS_UID
from rtforge.io.modules import MAX_VALUE_LENGTH

__all__ = ["ValidationResult", "dciodvfy_available", "run_dciodvfy", "validate_file"]

#: Seconds dciodvfy may take on one file.
DCIODVFY_TIMEOUT = 120.0

_DS_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_IS_RE = re.compile(r"^[+-]?\d+$")
_UID_RE = re.compile(r"^(0|[1-9]\d*)(\.(0|[1-9]\d*))*$")
_SIGABRT_SHELL_STATUS = 134
_TEXT_VRS = frozenset({"SH", "LO", "ST", "LT"})


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
        Problems that do not.
    dciodvfy_ran : bool
        True when dciodvfy ran to completion on the file.
    iod : str or None
        The IOD dciodvfy recognised (e.g. ``CTImage``), when it ran.
    """

    path: Path
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    dciodvfy_ran: bool = False
    iod: str | None = None

    @property
    def ok(self) -> bool:
        """True when there is no error."""
        return not self.errors


def dciodvfy_available() -> bool:
    """True when the ``dciodvfy`` program (dicom3tools) is on the PATH."""
    return shutil.which("dciodvfy") is not None


def run_dciodvfy(path: str | os.PathLike, timeout: float = DCIODVFY_TIMEOUT
                 ) -> tuple[list[str], list[str], str | None, bool]:
    """Run dciodvfy on one file.

    Parameters
    ----------
    path : str or path-like
    timeout : float, optional
        Seconds before dciodvfy is stopped (an error).

    Returns
    -------
    errors : list of str
        ``Error - ...`` lines, or one line saying dciodvfy crashed, timed out
        or failed without saying why.
    warnings : list of str
        ``Warning - ...`` lines.
    iod : str or None
        The IOD name dciodvfy printed.
    completed : bool
        False when dciodvfy crashed, timed out or could not be started.
    """
    try:
        proc = subprocess.run(["dciodvfy", os.fspath(path)], capture_output=True, text=True,
                              errors="replace", timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return [f"dciodvfy: timed out after {timeout:g} s"], [], None, False
    except OSError as exc:
        return [f"dciodvfy: could not run: {exc}"], [], None, False
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
        errors.append(f"dciodvfy: crashed (exit status {code}); the Debian build aborts on "
                      "32-bit Pixel Data, so this file was not verified")
        return errors, warnings, None, False
    if code != 0 and not errors:
        errors.append(f"dciodvfy: exit status {code} without an error message")
    return errors, warnings, iod, True


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


def _check_pixel_data(ds: Dataset, errors: list[str], warnings: list[str]) -> None:
    transfer_syntax = UID(ds.file_meta.get("TransferSyntaxUID", ""))
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


def _own_checks(path: Path) -> tuple[list[str], list[str], bool]:
    """Errors, warnings, and whether the file could be read at all."""
    errors: list[str] = []
    warnings: list[str] = []
    try:
        ds = dcmread(path)
    except InvalidDicomError as exc:
        return [f"not a DICOM Part 10 file: {exc}"], [], False
    except Exception as exc:  # any read failure is the finding, whatever pydicom raises
        return [f"cannot be read as DICOM: {type(exc).__name__}: {exc}"], [], False
    meta = ds.file_meta
    transfer_syntax = meta.get("TransferSyntaxUID")
    if not transfer_syntax:
        errors.append("file meta has no Transfer Syntax UID")
    for keyword, meta_keyword in (("SOPClassUID", "MediaStorageSOPClassUID"),
                                  ("SOPInstanceUID", "MediaStorageSOPInstanceUID")):
        value, meta_value = ds.get(keyword), meta.get(meta_keyword)
        if not value:
            errors.append(f"{keyword} is missing")
        elif value != meta_value:
            errors.append(f"{keyword} {value} differs from the file meta's {meta_keyword} "
                          f"{meta_value}")
    uid = UID(transfer_syntax or ExplicitVRLittleEndian)
    walk = _Walk(implicit=uid.is_implicit_VR, little_endian=uid.is_little_endian,
                 ours=meta.get("ImplementationClassUID") == IMPLEMENTATION_CLASS_UID,
                 data=path.read_bytes() if uid.is_transfer_syntax and not uid.is_deflated else b"",
                 errors=errors, warnings=warnings)
    _walk(ds, walk)
    _check_pixel_data(ds, errors, warnings)
    return errors, warnings, True


def validate_file(path: str | os.PathLike, *, dciodvfy: bool = True) -> ValidationResult:
    """Check one file: our own checks, then dciodvfy when installed.

    Parameters
    ----------
    path : str or path-like
    dciodvfy : bool, optional
        Run dciodvfy when it is installed (default).  Not run on a file our
        checks cannot read.

    Returns
    -------
    ValidationResult
    """
    file = Path(path)
    errors, warnings, readable = _own_checks(file)
    ran, iod = False, None
    if dciodvfy and readable and dciodvfy_available():
        more_errors, more_warnings, iod, ran = run_dciodvfy(file)
        errors += more_errors
        warnings += more_warnings
    return ValidationResult(path=file, errors=errors, warnings=warnings, dciodvfy_ran=ran,
                            iod=iod)
