"""Clinical-trial de-identification of a set of objects (iPlan Note 8-1).

:func:`deidentify` applies the Basic Application Level Confidentiality Profile
(PS3.15 Annex E, table :data:`~rtforge.io._deid_profile.BASIC_PROFILE`) to
every object of a set, recursively inside sequences, and fills the Clinical
Trial Subject, Study and Series modules (iPlan tables 8-7, 8-10, 8-13) from a
:class:`TrialInfo` (read from TOML by :func:`load_trial`).

Actions (PS3.15 E.3.1)
----------------------
- ``X`` remove; ``Z`` keep the element, empty; ``D`` a dummy value of the VR;
- combined codes: ``Z/D``, ``X/Z``, ``X/Z/D`` → ``Z``; ``X/D`` → ``D`` (the
  element may be Type 1); ``X/Z/U*`` → keep, with its UIDs replaced;
- ``U``, and every other UID that is not a registered (well-known) UID:
  replaced by :func:`~rtforge.io.uids.derived_uid` of a secret key and the
  old UID.  The same key gives the same mapping, on every object and in
  every run, so every reference within the set still resolves;
- private attributes, curves (50xx) and overlay data (60xx) are removed;
- Patient Name and Patient ID become the trial's subject ID (allowed by
  ``Z``: a dummy consistent with the VR; the name in the ``Family^`` form of
  PS3.5 6.2), Patient Identity Removed ``YES`` and De-identification Method
  (Code Sequence) say what was done;
- Study Date, Study Time and Study ID (``Z``, Type 2) get dummy values
  (:data:`STUDY_DUMMIES`) rather than none: a DICOMDIR's STUDY record needs
  them (PS3.3 F.5), and the date is the one Series Date and the other ``D``
  dates get, so the study and its series stay consistent.

Options (PS3.15 E.3, each recorded in De-identification Method Code Sequence)
------------------------------------------------------------------------------
- ``keep_descriptors`` (Clean Descriptors Option, 113105): the descriptors of
  :data:`~rtforge.io._deid_profile.CLEAN_DESCRIPTORS` (ROI Name, ROI and
  Beam Description, Series Description, Protocol Name, ...) are kept as they
  are, instead of removed: the operator vouches that they hold no identifying
  text (de-identified DVHs keep their ROI names).
- ``date_shift_days`` (Retain Longitudinal Temporal Information with Modified
  Dates Option, 113107): every date of
  :data:`~rtforge.io._deid_profile.MODIFIED_DATES` (Study, Series, Content
  Dates, Source Strength Reference Date, ...) is moved by the same number of
  days, and times are kept, so that intervals (a brachytherapy source's decay)
  can still be computed; Longitudinal Temporal Information Modified is
  ``MODIFIED``.
- A value in a SOP Class UID slot is kept when it names a class (registered,
  or a private class nowhere used as an instance, series or study UID of the
  set) and replaced like any other UID when it is one of the set's own UIDs.
"""

from __future__ import annotations

import copy
import csv
import io
import os
import secrets
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from pathlib import Path

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from pydicom import DataElement, Dataset
from pydicom.dataset import FileMetaDataset
from pydicom.uid import UID_dictionary

from rtforge.config import DEFAULT_CHARACTER_SET, DEFAULT_UID_ROOT
from rtforge.errors import InvalidInputError
from rtforge.io._deid_profile import BASIC_PROFILE, CLEAN_DESCRIPTORS, MODIFIED_DATES
from rtforge.io.charset import conformed
from rtforge.io.uids import derived_uid

__all__ = [
    "TrialInfo",
    "DeidResult",
    "DEIDENTIFICATION_METHOD",
    "STUDY_DUMMIES",
    "load_trial",
    "new_key",
    "read_key",
    "deidentify",
    "uid_map_csv",
]

#: De-identification Method (0012,0063) written on every object.
DEIDENTIFICATION_METHOD = "PS3.15 Basic Application Confidentiality Profile (rtforge)"
_METHOD_CODE = ("113100", "DCM", "Basic Application Confidentiality Profile")
_DUMMY = {"PN": "ANONYMOUS^", "DA": "19000101", "TM": "000000", "DT": "19000101000000",
          "IS": "0", "DS": "0", "AS": "000Y", "CS": "DEIDENTIFIED", "SH": "DEIDENTIFIED",
          "LO": "DEIDENTIFIED", "ST": "DEIDENTIFIED", "LT": "DEIDENTIFIED", "UT": "DEIDENTIFIED",
          "UC": "DEIDENTIFIED", "AE": "DEIDENTIFIED", "UR": "", "US": 0, "SS": 0, "UL": 0,
          "SL": 0, "FL": 0.0, "FD": 0.0}
#: Dummy Study Date, Time and ID written on every object of a study (PS3.15 E.3.1 ``Z``
#: allows a dummy value; a DICOMDIR STUDY record needs all three, PS3.3 F.5.2).
STUDY_DUMMIES = {"StudyDate": _DUMMY["DA"], "StudyTime": _DUMMY["TM"],
                 "StudyID": "DEIDENTIFIED"}
_RESOLVED = {"Z/D": "Z", "X/Z": "Z", "X/Z/D": "Z", "X/D": "D", "X/Z/U*": "U"}
# Type 2 attributes of the Clinical Trial modules (PS3.3 C.7.1.3, C.7.2.3, C.7.3.2): written
# empty when the trial gives no value; the Type 3 ones are left out then.
_TRIAL_TYPE_2 = frozenset({"ClinicalTrialProtocolName", "ClinicalTrialSiteID",
                           "ClinicalTrialSiteName", "ClinicalTrialTimePointID",
                           "ClinicalTrialCoordinatingCenterName"})
_TRIAL_REQUIRED = ("sponsor_name", "protocol_id", "subject_id")
_CLASS_KEYWORDS = frozenset({"SOPClassUID", "ReferencedSOPClassUID"})
_CLEAN_DESCRIPTORS_CODE = ("113105", "DCM", "Clean Descriptors Option")
_MODIFIED_DATES_CODE = ("113107", "DCM",
                        "Retain Longitudinal Temporal Information Modified Dates Option")
#: Bound of a date shift, days (about 270 years): a shifted date stays a valid DA.
MAX_DATE_SHIFT_DAYS = 100_000


@dataclass(frozen=True)
class TrialInfo:
    """Clinical Trial Subject, Study and Series values (iPlan tables 8-7, 8-10, 8-13).

    Parameters
    ----------
    sponsor_name, protocol_id : str
        Clinical Trial Sponsor Name and Protocol ID (Type 1).
    subject_id : str
        Clinical Trial Subject ID; also the new Patient ID and Patient Name.
    protocol_name, site_id, site_name : str
    time_point_id, time_point_description : str
        Clinical Trial Study module.
    coordinating_center_name : str
        Clinical Trial Series module.
    """

    sponsor_name: str
    protocol_id: str
    subject_id: str
    protocol_name: str = ""
    site_id: str = ""
    site_name: str = ""
    time_point_id: str = ""
    time_point_description: str = ""
    coordinating_center_name: str = ""

    def __post_init__(self) -> None:
        for name in _TRIAL_REQUIRED:
            if not str(getattr(self, name)).strip():
                raise InvalidInputError(f"the trial needs a non-empty {name}", tag=name)
        for f in fields(self):
            value = getattr(self, f.name)
            limit = 1024 if f.name == "time_point_description" else 64
            if not isinstance(value, str) or len(value) > limit or "\\" in value:
                raise InvalidInputError(f"trial {f.name} must be text of at most {limit} "
                                        "characters without backslash", tag=f.name)

    def values(self) -> dict[str, str]:
        """The Clinical Trial attributes, keyword to value ('' when not given)."""
        return {
            "ClinicalTrialSponsorName": self.sponsor_name,
            "ClinicalTrialProtocolID": self.protocol_id,
            "ClinicalTrialProtocolName": self.protocol_name,
            "ClinicalTrialSiteID": self.site_id,
            "ClinicalTrialSiteName": self.site_name,
            "ClinicalTrialSubjectID": self.subject_id,
            "ClinicalTrialTimePointID": self.time_point_id,
            "ClinicalTrialTimePointDescription": self.time_point_description,
            "ClinicalTrialCoordinatingCenterName": self.coordinating_center_name,
        }


def load_trial(path: str | os.PathLike) -> TrialInfo:
    """Read a :class:`TrialInfo` from TOML: its field names, at the top or under ``[trial]``.

    Parameters
    ----------
    path : str or path-like

    Returns
    -------
    TrialInfo

    Raises
    ------
    InvalidInputError
        If the file is missing or unreadable, not TOML, has unknown keys,
        lacks a required one or has a value that is not text; the message
        names the file and the key.
    """
    p = Path(path)
    try:
        data = tomllib.loads(p.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInputError("trial file not found", path=p) from None
    except OSError as exc:
        raise InvalidInputError(f"cannot be read: {exc.strerror or exc}", path=p) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InvalidInputError(f"not valid TOML: {exc}", path=p) from None
    data = data.get("trial", data)
    if not isinstance(data, dict):
        raise InvalidInputError("'trial' must be a table ([trial])", path=p, tag="trial")
    known = [f.name for f in fields(TrialInfo)]
    unknown = sorted(set(data) - set(known))
    if unknown:
        raise InvalidInputError(f"unknown key(s) {', '.join(unknown)}; known: "
                                f"{', '.join(sorted(known))}", path=p)
    missing = [name for name in _TRIAL_REQUIRED if name not in data]
    if missing:
        raise InvalidInputError(f"incomplete trial: missing required key(s) "
                                f"{', '.join(missing)} (required: "
                                f"{', '.join(_TRIAL_REQUIRED)})", path=p)
    for name in known:
        if name in data and not isinstance(data[name], str):
            raise InvalidInputError(f"{name} must be text (a quoted TOML string), got "
                                    f"{type(data[name]).__name__} {data[name]!r}", path=p,
                                    tag=name)
    try:
        return TrialInfo(**data)
    except InvalidInputError as exc:
        raise InvalidInputError(exc.reason, path=p, tag=exc.tag) from None


def new_key() -> str:
    """A new secret de-identification key (64 hex digits)."""
    return secrets.token_hex(32)


def read_key(path: str | os.PathLike, *, create: bool = True) -> str:
    """The key in ``path``; a new one is written there (mode 0600) when it does not exist.

    Parameters
    ----------
    path : str or path-like
    create : bool
        Write a new key when the file is missing (default); else an error.

    Returns
    -------
    str

    Raises
    ------
    InvalidInputError
        If the file is empty, or missing and ``create`` is false.
    """
    p = Path(path)
    if not p.exists():
        if not create:
            raise InvalidInputError("key file not found", path=p)
        key = new_key()
        fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w", encoding="ascii") as fh:
            fh.write(key + "\n")
        return key
    key = p.read_text(encoding="utf-8").strip()
    if not key:
        raise InvalidInputError("key file is empty", path=p)
    return key


@dataclass(frozen=True)
class DeidResult:
    """De-identified objects and the UID mapping.

    Parameters
    ----------
    datasets : tuple of pydicom.Dataset
        In the input order.
    uid_map : dict of str to str
        Original UID to new UID, for every UID replaced.
    """

    datasets: tuple[Dataset, ...]
    uid_map: dict[str, str]


class _Deidentifier:
    def __init__(self, key: str, uid_root: str, *, keep_descriptors: bool,
                 date_shift_days: int | None, set_uids: frozenset[str]) -> None:
        self.key = key
        self.uid_root = uid_root
        self.keep_descriptors = keep_descriptors
        self.date_shift = None if date_shift_days is None else timedelta(days=date_shift_days)
        self.set_uids = set_uids  # UIDs the set uses outside SOP Class UID slots
        self.uid_map: dict[str, str] = {}

    def uid(self, old: str) -> str:
        if old in UID_dictionary:  # a well-known UID (SOP class, transfer syntax, ...)
            return old
        new = self.uid_map.get(old)
        if new is None:
            new = self.uid_map[old] = str(derived_uid(self.uid_root, "deid", self.key, old))
        return new

    def dataset(self, ds: Dataset) -> None:
        for elem in list(ds):
            self.element(ds, elem)

    def _kept_by_option(self, tag: int, elem: DataElement) -> bool:
        """True when an option keeps ``elem`` (shifting its date)."""
        if self.keep_descriptors and tag in CLEAN_DESCRIPTORS and elem.VR != "SQ":
            return True
        if self.date_shift is not None and tag in MODIFIED_DATES and elem.VR in ("DA", "DT",
                                                                                 "TM"):
            if elem.VR != "TM" and elem.value:
                shifted = [_shift(str(v), elem.VR, self.date_shift) for v in _values(elem)]
                if any(v is None for v in shifted):
                    return False  # not a date: the basic action applies
                elem.value = shifted if elem.VM > 1 else shifted[0]
            return True
        return False

    def element(self, ds: Dataset, elem: DataElement) -> None:
        tag = int(elem.tag)
        group = tag >> 16
        if elem.tag.is_private or (group & 0xFF00) == 0x5000 or (
                (group & 0xFF00) == 0x6000 and (tag & 0xFFFF) in (0x3000, 0x4000)):
            del ds[elem.tag]
            return
        if self._kept_by_option(tag, elem):
            return
        action = BASIC_PROFILE.get(tag, "")
        action = _RESOLVED.get(action, action)
        if action == "X":
            del ds[elem.tag]
        elif action == "Z":
            elem.value = [] if elem.VR == "SQ" else None
        elif action == "D" and elem.VR == "SQ":
            elem.value = []
        elif action == "D" and elem.VR != "UI":
            elem.value = _DUMMY.get(elem.VR)
        elif elem.VR == "SQ":
            for item in elem.value:
                self.dataset(item)
        elif elem.VR == "UI" and elem.value:
            values = elem.value if elem.VM > 1 else [elem.value]
            mapped = [v if elem.keyword in _CLASS_KEYWORDS and str(v) not in self.set_uids
                      else self.uid(str(v)) for v in values]
            elem.value = mapped if elem.VM > 1 else mapped[0]


def _values(elem: DataElement) -> list[object]:
    return list(elem.value) if elem.VM > 1 else [elem.value]


def _shift(value: str, vr: str, shift: timedelta) -> str | None:
    """A DA or DT value moved by ``shift`` (a DT keeps its time and offset), or None."""
    text = value.strip()
    if len(text) < 8 or not text[:8].isdigit():
        return None
    try:
        moved = datetime.strptime(text[:8], "%Y%m%d") + shift
    except (ValueError, OverflowError):
        return None
    if not 1 <= moved.year <= 9999:
        return None
    return moved.strftime("%Y%m%d") + (text[8:] if vr == "DT" else "")


def _instance_uids(datasets: Sequence[Dataset]) -> frozenset[str]:
    """Every UID the set uses outside SOP Class UID slots (its own objects' UIDs)."""
    found: set[str] = set()
    for ds in datasets:
        for elem in ds.iterall():
            if elem.VR == "UI" and elem.value and elem.keyword not in _CLASS_KEYWORDS:
                found.update(str(v) for v in _values(elem))
    return frozenset(found)


def _code(value: tuple[str, str, str]) -> Dataset:
    item = Dataset()
    item.CodeValue, item.CodingSchemeDesignator, item.CodeMeaning = value
    return item


def deidentify(datasets: Iterable[Dataset], trial: TrialInfo, *, key: str,
               uid_root: str = DEFAULT_UID_ROOT,
               character_set: str = DEFAULT_CHARACTER_SET, keep_descriptors: bool = False,
               date_shift_days: int | None = None) -> DeidResult:
    """De-identify a set of objects for a clinical trial (see the module docstring).

    Parameters
    ----------
    datasets : iterable of pydicom.Dataset
        Not modified (copies are de-identified).
    trial : TrialInfo
    key : str
        The secret that makes the UID mapping reproducible (:func:`new_key`).
    uid_root : str
        Root of the new UIDs.
    character_set : str
        Specific Character Set every object is re-encoded in
        (``ExportConfig.character_set``, :mod:`rtforge.io.charset`).
    keep_descriptors : bool
        The Clean Descriptors Option: keep ROI names, descriptions and the other
        descriptors of its table as they are (the caller vouches for them).
    date_shift_days : int, optional
        The Modified Dates Option: move every date of its table by this many
        days (negative: earlier) instead of removing it; times are kept.

    Returns
    -------
    DeidResult

    Raises
    ------
    InvalidInputError
        If ``key`` is empty, ``date_shift_days`` is beyond
        :data:`MAX_DATE_SHIFT_DAYS`, or a value (the trial's included) does not
        fit ``character_set``.
    """
    if not key:
        raise InvalidInputError("the de-identification key is empty")
    if date_shift_days is not None and abs(int(date_shift_days)) > MAX_DATE_SHIFT_DAYS:
        raise InvalidInputError(f"date shift of {date_shift_days} days is beyond "
                                f"{MAX_DATE_SHIFT_DAYS} days")
    sources = list(datasets)
    worker = _Deidentifier(key, uid_root, keep_descriptors=keep_descriptors,
                           date_shift_days=date_shift_days, set_uids=_instance_uids(sources))
    codes = [_METHOD_CODE] + ([_CLEAN_DESCRIPTORS_CODE] if keep_descriptors else []) \
        + ([_MODIFIED_DATES_CODE] if date_shift_days is not None else [])
    method = [DEIDENTIFICATION_METHOD] + [c[2] for c in codes[1:]]  # LO, VM 1-n
    out = []
    for source in sources:
        ds = copy.deepcopy(source)
        ds.file_meta = FileMetaDataset()  # the old one names the old SOP Instance UID
        if "TransferSyntaxUID" in getattr(source, "file_meta", {}):
            ds.file_meta.TransferSyntaxUID = source.file_meta.TransferSyntaxUID
        worker.dataset(ds)
        if "StudyInstanceUID" in ds:
            for keyword, value in STUDY_DUMMIES.items():
                if date_shift_days is None or keyword == "StudyID" or not ds.get(keyword):
                    setattr(ds, keyword, value)
        ds.PatientName = trial.subject_id if "^" in trial.subject_id else \
            f"{trial.subject_id}^"  # PS3.5 6.2: Family^Given, not the retired one-part form
        ds.PatientID = trial.subject_id
        ds.PatientIdentityRemoved = "YES"
        ds.DeidentificationMethod = method if len(method) > 1 else method[0]
        ds.DeidentificationMethodCodeSequence = [_code(c) for c in codes]
        if date_shift_days is not None:
            ds.LongitudinalTemporalInformationModified = "MODIFIED"
        for keyword, value in trial.values().items():
            if value or keyword in _TRIAL_TYPE_2:
                setattr(ds, keyword, value or None)
        out.append(conformed(ds, character_set))
    return DeidResult(tuple(out), dict(worker.uid_map))


def uid_map_csv(uid_map: dict[str, str], rows: Sequence[tuple[str, str]] = ()) -> str:
    """The mapping as CSV text (``original_uid,new_uid``), for the site to keep.

    Parameters
    ----------
    uid_map : dict of str to str
    rows : sequence of (str, str), optional
        Extra rows written first (e.g. the Patient ID and the subject ID).

    Returns
    -------
    str
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(("original", "replacement"))
    writer.writerows(rows)
    writer.writerows(sorted(uid_map.items()))
    return buffer.getvalue()
