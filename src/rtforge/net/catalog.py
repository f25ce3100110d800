"""The local store's catalog: patients, studies, series and instances in SQLite.

Every DICOM file of the local store (the folder our Storage SCP writes to, or
files imported in place) has one row in ``instances``, with its UIDs, SOP
Class, transfer syntax, file path, size, checksums, state and, once filed,
the archive that holds it (Oncentra 4.2.3.3.1: the records are kept after
filing so that the case can be restored from the same archive).

Checksums are SHA-256 of the whole file and of the data set alone (the bytes
after the File Meta Information): an archive sends back the data set, so a
restored object is checked by the second and rebuilt, byte for byte, from the
File Meta Information kept in the catalog and the data set received.

States of an instance (:class:`InstanceState`)::

    local ──file──> deleting ──unlink, commit──> filed
    filed ──restore──> restoring ──write, commit──> local

``deleting`` is written (and committed) before the file is unlinked, and
``filed`` after; ``restoring`` is written before the file is written back
(through a temporary ``.<name>.<pid>.tmp`` beside it and a rename), and
``local`` after.  A crash leaves rows in one of the two transient states,
which :meth:`Catalog.recover` settles from what is on disk, in this order:

1. file gone: ``filed`` (the archive was verified to hold the instance
   before the row became ``deleting``; a ``restoring`` row is written only
   once every object arrived intact);
2. file there with the recorded checksum: ``local``;
3. file there with other content: indexed (:meth:`Catalog.import_paths`):
   the same data set in the same transfer syntax (File Meta Information
   aside) takes the row, ``local``; another object is a conflicting copy of
   the archive's copy (below): kept aside, the row ``filed``.

It does the same for ``filed`` rows whose file is back on disk (a file
already kept aside so, unchanged, is left as it is), and removes the
temporary files that a dead process left beside the rows it settles.  No
state ever claims a file is local when it is not, no file is unlinked
before the archive was verified to hold it, and no row an archive holds
takes the checksums of another object (the archive's copy would be
forgotten, and the other object filed under its SOP Instance UID).

Identity: a study belongs to one patient.  An object is catalogued under
(Patient ID, Study Instance UID): one whose study, series or SOP Instance UID
the catalog already holds under another Patient ID is never merged into that
patient.  It is kept aside in the ``quarantine`` table (state
``quarantined``), reported (:class:`QuarantineGroup`, one line naming both
patients) and listed by ``rtforge store ls``; no query of a patient's
instances (export, filing, restore) returns it.  Catalogs of schema 1 (which
merged such objects) are migrated on opening: each local row whose file holds
another Patient ID than its study's is moved to the quarantine.

Conflicting copies: one row per SOP Instance UID, so a file of a catalogued
SOP Instance UID with other content (another transfer syntax or other data
set bytes, as the receiver compares them) at another path is never merged
either, when the catalogued copy still exists: its file is on disk, or an
archive holds it (``filed``, ``deleting``, ``restoring``).  Typically the
receiver kept it beside the first as ``<UID>_2.dcm``.  It is quarantined
with the reason :attr:`QuarantineReason.CONFLICTING_COPY`, the catalogued
copy's path and checksum beside its own, reported in one line naming the
SOP Instance UID and both files (:meth:`QuarantinedRecord.line`) and listed
by ``rtforge store ls``.  Someone must decide which copy is right; until
then the catalogued copy is exported, filed (verified, its file deleted)
and restored as before, since it is the copy the catalog's checksums and
any archive describe, and the conflicting copy stays where it is: never
exported, filed, restored or deleted by rtforge (filing reports it as kept
local).  A catalogued ``local`` row whose file is gone holds no copy: a file
of its SOP Instance UID found elsewhere takes the row, as a moved file does;
an identical copy elsewhere takes it too (as before).  Which of two copies
is catalogued follows the order they are indexed in (the receiver indexes
in the order it stored them).

A filed instance's copy is the archive's: a file of other content is a
conflicting copy of it at the row's own path too.  Once a filed instance's
file is deleted, the receiver writes an edited object of the same SOP
Instance UID (a re-exported plan) at the free ``<UID>.dcm`` the row names;
it is kept aside like any conflicting copy, the row stays ``filed`` with
the archive's checksums, and its report names the archive that holds the
catalogued copy (:attr:`QuarantinedRecord.copy_archive`).  Restore never
writes over it (:mod:`rtforge.net.archive`); once it is gone (someone
decided), a restore writes the archive's copy there and its quarantine row
goes.  A file of the same data set (a restore, the same object sent again,
wherever it is) is the instance: the row is ``local`` again, as before.

Schema 3 adds the reason (and the catalogued copy's path and checksum) to
each quarantine row; catalogs of schema 2 get the columns on opening, their
rows the reason ``another patient``.  Each column is added only when
missing and the version is written last, so a migration a crash cut short
is completed by the next opening.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import os
import queue
import re
import sqlite3
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any, NamedTuple

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.uid import MediaStorageDirectoryStorage

from rtforge.errors import InvalidInputError
from rtforge.io.dicomfile import split_part10
from rtforge.io.integrity import read_checked

__all__ = [
    "CATALOG_NAME",
    "InstanceState",
    "InstanceRecord",
    "CaseSummary",
    "SeriesSummary",
    "QuarantineReason",
    "QuarantinedRecord",
    "QuarantineGroup",
    "group_quarantine",
    "conflicting_copies",
    "quarantine_lines",
    "ImportReport",
    "ScannedFile",
    "split_part10",
    "scan_file",
    "temporary_path",
    "scan_folders",
    "file_sha256",
    "pid_alive",
    "Catalog",
    "CatalogIndexer",
]

logger = logging.getLogger(__name__)

#: File name of the catalog in the store's root, unless configured elsewhere.
CATALOG_NAME = "catalog.sqlite"
_SCHEMA_VERSION = 3

_SCHEMA = """
CREATE TABLE IF NOT EXISTS patients (
    patient_id   TEXT PRIMARY KEY,
    patient_name TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS studies (
    study_uid   TEXT PRIMARY KEY,
    patient_id  TEXT NOT NULL REFERENCES patients(patient_id),
    study_date  TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS series (
    series_uid  TEXT PRIMARY KEY,
    study_uid   TEXT NOT NULL REFERENCES studies(study_uid),
    modality    TEXT NOT NULL DEFAULT '',
    description TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS instances (
    sop_instance_uid TEXT PRIMARY KEY,
    series_uid       TEXT NOT NULL REFERENCES series(series_uid),
    sop_class_uid    TEXT NOT NULL,
    transfer_syntax  TEXT NOT NULL,
    path             TEXT NOT NULL,
    size             INTEGER NOT NULL,
    sha256           TEXT NOT NULL,
    dataset_sha256   TEXT NOT NULL,
    meta             BLOB NOT NULL,
    state            TEXT NOT NULL,
    archive          TEXT,
    filed_at         TEXT,
    restored_at      TEXT
);
CREATE TABLE IF NOT EXISTS quarantine (
    path             TEXT PRIMARY KEY,
    sop_instance_uid TEXT NOT NULL,
    sop_class_uid    TEXT NOT NULL,
    patient_id       TEXT NOT NULL,
    patient_name     TEXT NOT NULL DEFAULT '',
    study_uid        TEXT NOT NULL,
    series_uid       TEXT NOT NULL,
    modality         TEXT NOT NULL DEFAULT '',
    owner_patient_id TEXT NOT NULL,
    size             INTEGER NOT NULL,
    sha256           TEXT NOT NULL,
    found_at         TEXT NOT NULL,
    reason           TEXT NOT NULL DEFAULT 'another patient',
    copy_of          TEXT,
    copy_of_sha256   TEXT
);
CREATE INDEX IF NOT EXISTS instances_series ON instances(series_uid);
CREATE INDEX IF NOT EXISTS studies_patient ON studies(patient_id);
"""


class InstanceState(str, Enum):
    """Where an instance's file is."""

    LOCAL = "local"
    """In the local store."""
    DELETING = "deleting"
    """Verified in the archive; the local file is being deleted."""
    FILED = "filed"
    """Only in the archive the record names."""
    QUARANTINED = "quarantined"
    """Kept aside (:class:`QuarantineReason`): never exported, filed or restored."""
    RESTORING = "restoring"
    """Received intact from the archive; the local file is being written back."""


class QuarantineReason(str, Enum):
    """Why a file is kept aside in the quarantine."""

    ANOTHER_PATIENT = "another patient"
    """Its study, series or SOP Instance UID belongs to another Patient ID in the catalog."""
    CONFLICTING_COPY = "conflicting copy"
    """Its SOP Instance UID is catalogued for another file (or a filed copy) of other content."""


#: Columns schema 3 added to ``quarantine`` (the migration adds the missing ones).
_QUARANTINE_COLUMNS_3 = {"reason": "TEXT NOT NULL DEFAULT 'another patient'",
                         "copy_of": "TEXT", "copy_of_sha256": "TEXT"}


@dataclass(frozen=True)
class ScannedFile:
    """What the catalog records of one Part 10 file (see :func:`scan_file`)."""

    path: Path
    patient_id: str
    patient_name: str
    study_uid: str
    study_date: str
    study_description: str
    series_uid: str
    modality: str
    series_description: str
    sop_class_uid: str
    sop_instance_uid: str
    transfer_syntax: str
    size: int
    sha256: str
    dataset_sha256: str
    meta: bytes


@dataclass(frozen=True)
class InstanceRecord:
    """One row of the catalog.

    Parameters
    ----------
    sop_instance_uid, sop_class_uid, series_uid, study_uid, patient_id : str
        Its identity.
    transfer_syntax : str
        Of the file.
    path : Path
        Where the file is (or was, and will be again once restored).
    size : int
        File size in bytes.
    sha256, dataset_sha256 : str
        SHA-256 (hex) of the whole file and of its data set alone.
    state : InstanceState
    archive : str or None
        The archive it was filed to (``AET@HOST:PORT``, or ``folder:PATH``).
    filed_at, restored_at : str or None
        ISO 8601 UTC times.
    """

    sop_instance_uid: str
    sop_class_uid: str
    series_uid: str
    study_uid: str
    patient_id: str
    transfer_syntax: str
    path: Path
    size: int
    sha256: str
    dataset_sha256: str
    state: InstanceState
    archive: str | None
    filed_at: str | None
    restored_at: str | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"sop_instance_uid": self.sop_instance_uid, "sop_class_uid": self.sop_class_uid,
                "series_uid": self.series_uid, "study_uid": self.study_uid,
                "patient_id": self.patient_id, "transfer_syntax": self.transfer_syntax,
                "path": str(self.path), "size": self.size, "sha256": self.sha256,
                "state": self.state.value, "archive": self.archive, "filed_at": self.filed_at,
                "restored_at": self.restored_at}


@dataclass(frozen=True)
class CaseSummary:
    """One patient of the catalog, as ``rtforge store ls`` lists it.

    Parameters
    ----------
    patient_id, patient_name : str
    studies, series, instances : int
        Counts.
    size : int
        Bytes of all its files.
    states : dict of str to int
        Instances per state.
    archives : tuple of str
        The archives its filed instances are in.
    quarantine : tuple of QuarantineGroup
        Its objects kept aside, per study (counted in ``instances`` and
        ``states`` as ``quarantined``).
    conflicts : tuple of QuarantinedRecord
        Its conflicting copies kept aside (counted as ``quarantined`` too).
    """

    patient_id: str
    patient_name: str
    studies: int
    series: int
    instances: int
    size: int
    states: dict[str, int]
    archives: tuple[str, ...]
    quarantine: tuple[QuarantineGroup, ...] = ()
    conflicts: tuple[QuarantinedRecord, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"patient_id": self.patient_id, "patient_name": self.patient_name,
                "studies": self.studies, "series": self.series, "instances": self.instances,
                "size": self.size, "states": self.states, "archives": list(self.archives),
                "quarantine": [g.as_dict() for g in self.quarantine],
                "conflicting_copies": [r.as_dict() for r in self.conflicts]}


@dataclass(frozen=True)
class SeriesSummary:
    """One series of a patient, as ``rtforge store ls --patient`` lists it.

    Parameters
    ----------
    study_uid, study_date, study_description : str
    series_uid, modality, series_description : str
    instances, size : int
        Count and bytes.
    states : dict of str to int
        Instances per state (``quarantined`` included).
    """

    study_uid: str
    study_date: str
    study_description: str
    series_uid: str
    modality: str
    series_description: str
    instances: int
    size: int
    states: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"study_uid": self.study_uid, "study_date": self.study_date,
                "study_description": self.study_description, "series_uid": self.series_uid,
                "modality": self.modality, "series_description": self.series_description,
                "instances": self.instances, "size": self.size, "states": self.states}


@dataclass(frozen=True)
class QuarantinedRecord:
    """One file kept aside (see the module notes).

    Parameters
    ----------
    path : Path
    sop_instance_uid, sop_class_uid, series_uid, study_uid, modality : str
    patient_id : str
        The Patient ID the file holds.
    owner_patient_id : str
        The patient the catalog holds the study (series, instance) under.
    size : int
    sha256 : str
    found_at : str
        ISO 8601 UTC time it was kept aside.
    reason : QuarantineReason
    copy_of : Path or None
        For a conflicting copy: the catalogued copy's file (on disk, or filed).
    copy_of_sha256 : str or None
        For a conflicting copy: the catalogued copy's SHA-256.
    copy_archive : str or None
        For a conflicting copy of a filed instance (``filed``, ``deleting``,
        ``restoring``): the archive that holds the catalogued copy.
    """

    path: Path
    sop_instance_uid: str
    sop_class_uid: str
    series_uid: str
    study_uid: str
    modality: str
    patient_id: str
    owner_patient_id: str
    size: int
    sha256: str
    found_at: str
    reason: QuarantineReason = QuarantineReason.ANOTHER_PATIENT
    copy_of: Path | None = None
    copy_of_sha256: str | None = None
    copy_archive: str | None = None

    @property
    def state(self) -> InstanceState:
        """Always :attr:`InstanceState.QUARANTINED`."""
        return InstanceState.QUARANTINED

    def line(self) -> str:
        """The one-line report (for a conflicting copy: the SOP Instance UID and both files)."""
        if self.reason is QuarantineReason.CONFLICTING_COPY:
            held = f"the catalogued {self.copy_of}" if self.copy_archive is None else \
                f"the copy filed to {self.copy_archive} (from {self.copy_of})"
            return (f"conflicting copy of SOP Instance UID {self.sop_instance_uid}: {self.path} "
                    f"holds other content than {held}; kept aside, not merged (never exported, "
                    "filed, restored or deleted): decide which is right")
        return QuarantineGroup(self.patient_id, self.study_uid, self.owner_patient_id, 1).line()

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"path": str(self.path), "sop_instance_uid": self.sop_instance_uid,
                "sop_class_uid": self.sop_class_uid, "series_uid": self.series_uid,
                "study_uid": self.study_uid, "modality": self.modality,
                "patient_id": self.patient_id, "owner_patient_id": self.owner_patient_id,
                "size": self.size, "sha256": self.sha256, "state": self.state.value,
                "found_at": self.found_at, "reason": self.reason.value,
                "copy_of": None if self.copy_of is None else str(self.copy_of),
                "copy_of_sha256": self.copy_of_sha256, "copy_archive": self.copy_archive,
                "report": self.line()}


class _HeldCopy(NamedTuple):
    """The catalogued copy a conflicting copy is kept aside from (its row's path and SHA-256,
    and the archive that holds it when it is filed)."""

    path: Path | None
    sha256: str | None
    archive: str | None


@dataclass(frozen=True)
class QuarantineGroup:
    """The objects of one patient and study kept aside because another patient owns the study.

    Parameters
    ----------
    patient_id : str
        The Patient ID the objects hold.
    study_uid : str
    owner_patient_id : str
        The patient the catalog holds the study under.
    instances : int
    """

    patient_id: str
    study_uid: str
    owner_patient_id: str
    instances: int

    def line(self) -> str:
        """The one-line report, naming both patients."""
        return (f"quarantined {self.instances} object(s) of patient {self.patient_id!r}: study "
                f"{self.study_uid} belongs to patient {self.owner_patient_id!r} in the catalog; "
                "kept aside, not merged (never exported, filed or restored)")

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"patient_id": self.patient_id, "study_uid": self.study_uid,
                "owner_patient_id": self.owner_patient_id, "instances": self.instances,
                "report": self.line()}


def group_quarantine(records: Iterable[QuarantinedRecord]) -> list[QuarantineGroup]:
    """Records of another patient's study counted per (patient, study, owner), in that order.

    Conflicting copies (:func:`conflicting_copies`) are left out: each is reported alone.
    """
    counts: dict[tuple[str, str, str], int] = {}
    for r in records:
        if r.reason is not QuarantineReason.ANOTHER_PATIENT:
            continue
        key = (r.patient_id, r.study_uid, r.owner_patient_id)
        counts[key] = counts.get(key, 0) + 1
    return [QuarantineGroup(*key, n) for key, n in sorted(counts.items())]


def conflicting_copies(records: Iterable[QuarantinedRecord]) -> list[QuarantinedRecord]:
    """The records kept aside as conflicting copies, in the order given."""
    return [r for r in records if r.reason is QuarantineReason.CONFLICTING_COPY]


def quarantine_lines(records: Iterable[QuarantinedRecord]) -> list[str]:
    """The report: one line per patient and study of another patient, one per conflicting copy."""
    records = list(records)
    return [g.line() for g in group_quarantine(records)] + \
        [r.line() for r in conflicting_copies(records)]


@dataclass
class ImportReport:
    """What :meth:`Catalog.import_paths` did.

    Parameters
    ----------
    added : int
        New instances recorded.
    updated : int
        Instances already recorded whose file was found again (path and
        checksums refreshed; a filed instance found locally becomes local).
    skipped : list of Path
        Files that are not DICOM Part 10 files, or are DICOMDIRs.
    quarantined : list of QuarantinedRecord
        Files kept aside, not merged: of a patient whose study (series, SOP
        Instance UID) the catalog holds under another patient, and
        conflicting copies (:class:`QuarantineReason`).
    rejected : list of (Path, str)
        DICOM files left out because they are damaged
        (:func:`rtforge.io.integrity.check_dataset`), with the one-line error.
    """

    added: int = 0
    updated: int = 0
    skipped: list[Path] = field(default_factory=list)
    quarantined: list[QuarantinedRecord] = field(default_factory=list)
    rejected: list[tuple[Path, str]] = field(default_factory=list)

    def quarantine_lines(self) -> list[str]:
        """One line per patient and study kept aside, naming both patients, and one per
        conflicting copy, naming its SOP Instance UID and both files."""
        return quarantine_lines(self.quarantined)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"added": self.added, "updated": self.updated,
                "skipped": [str(p) for p in self.skipped],
                "quarantined": [g.as_dict() for g in group_quarantine(self.quarantined)],
                "conflicting_copies": [r.as_dict() for r in
                                       conflicting_copies(self.quarantined)],
                "rejected": [{"path": str(p), "error": e} for p, e in self.rejected]}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def scan_file(path: str | os.PathLike[str]) -> ScannedFile | None:
    """Read what the catalog records of a file; ``None`` if it is not a DICOM Part 10 file.

    Parameters
    ----------
    path : path-like

    Returns
    -------
    ScannedFile or None
        ``None`` also for DICOMDIRs and for files without SOP Instance,
        Study or Series Instance UIDs.

    Raises
    ------
    OSError
        If the file cannot be read.
    InvalidInputError
        If it is a DICOM object but damaged (:func:`rtforge.io.integrity.read_checked`).
    """
    path = Path(path)
    data = path.read_bytes()
    ds = read_checked(path, data)
    if ds is None:
        logger.debug("%s: not a DICOM file", path)
        return None
    try:
        meta, dataset = split_part10(data)
    except (InvalidDicomError, EOFError, ValueError, KeyError, AttributeError, TypeError) as exc:
        logger.debug("%s: not a DICOM Part 10 file: %s", path, exc)
        return None
    file_meta = ds.file_meta
    sop_class = str(ds.get("SOPClassUID", file_meta.get("MediaStorageSOPClassUID", "")) or "")
    sop_instance = str(ds.get("SOPInstanceUID", "") or "")
    study = str(ds.get("StudyInstanceUID", "") or "")
    series = str(ds.get("SeriesInstanceUID", "") or "")
    if sop_class == MediaStorageDirectoryStorage or not (sop_instance and study and series):
        return None
    return ScannedFile(
        path=path.resolve(), patient_id=str(ds.get("PatientID", "") or ""),
        patient_name=str(ds.get("PatientName", "") or ""), study_uid=study,
        study_date=str(ds.get("StudyDate", "") or ""),
        study_description=str(ds.get("StudyDescription", "") or ""), series_uid=series,
        modality=str(ds.get("Modality", "") or ""),
        series_description=str(ds.get("SeriesDescription", "") or ""), sop_class_uid=sop_class,
        sop_instance_uid=sop_instance,
        transfer_syntax=str(file_meta.get("TransferSyntaxUID", "")), size=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
        dataset_sha256=hashlib.sha256(dataset).hexdigest(), meta=meta)


def file_sha256(path: Path) -> str | None:
    """SHA-256 (hex) of a file's bytes; ``None`` when it cannot be read."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def temporary_path(path: Path) -> Path:
    """Where a store file is written before its rename: ``.<name>.<pid>.tmp`` beside it."""
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (a temporary file or folder it names is in use)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


_TEMPORARY_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>[0-9]+)\.tmp$")


def scan_folders(paths: Iterable[Path]) -> set[Path]:
    """Which of ``paths`` exist (one listing per folder); stale temporaries removed.

    A temporary ``.<name>.<pid>.tmp`` (:func:`temporary_path`) of one of
    ``paths`` is removed when process ``pid`` no longer exists: a killed
    writer left it.
    """
    wanted: dict[Path, set[str]] = {}
    for path in paths:
        wanted.setdefault(path.parent, set()).add(path.name)
    present: set[Path] = set()
    for folder, names in wanted.items():
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            match = _TEMPORARY_RE.match(entry.name)
            if entry.name in names:
                present.add(folder / entry.name)
            elif match and match["name"] in names and not pid_alive(int(match["pid"])):
                logger.warning("removing %s, left by a killed writer", entry.path)
                Path(entry.path).unlink(missing_ok=True)
    return present


def _files_under(paths: Iterable[str | os.PathLike[str]]) -> Iterator[Path]:
    for item in map(Path, paths):
        if item.is_dir():
            yield from sorted(p for p in item.rglob("*")
                              if p.is_file() and not any(part.startswith(".") for part in
                                                         p.relative_to(item).parts))
        elif item.is_file():
            yield item
        else:
            raise InvalidInputError("no such file or folder", path=item)


_SELECT = """
SELECT i.sop_instance_uid, i.sop_class_uid, i.series_uid, s.study_uid, st.patient_id,
       i.transfer_syntax, i.path, i.size, i.sha256, i.dataset_sha256, i.state, i.archive,
       i.filed_at, i.restored_at
FROM instances i JOIN series s ON s.series_uid = i.series_uid
                 JOIN studies st ON st.study_uid = s.study_uid
"""


#: Every object of the catalog with its own patient: the catalogued instances (under their
#: study's patient) and the quarantined files (under the Patient ID they hold).
_OBJECTS = """
WITH objects AS (
    SELECT st.patient_id, p.patient_name, st.study_uid, s.series_uid, s.modality, i.size,
           i.state, i.archive
    FROM instances i JOIN series s ON s.series_uid = i.series_uid
                     JOIN studies st ON st.study_uid = s.study_uid
                     JOIN patients p ON p.patient_id = st.patient_id
    UNION ALL
    SELECT q.patient_id, q.patient_name, q.study_uid, q.series_uid, q.modality, q.size,
           'quarantined', NULL
    FROM quarantine q
)
"""


def _record(row: Sequence[Any]) -> InstanceRecord:
    return InstanceRecord(row[0], row[1], row[2], row[3], row[4], row[5], Path(row[6]), row[7],
                          row[8], row[9], InstanceState(row[10]), row[11], row[12], row[13])


class Catalog:
    """The SQLite catalog of a local store.

    Parameters
    ----------
    path : path-like
        The database file (created, with its folder, when missing).

    Raises
    ------
    InvalidInputError
        If the file is not an rtforge catalog.

    Notes
    -----
    Every change is its own transaction, committed with ``synchronous=FULL``
    before the method returns.  Use as a context manager, or call
    :meth:`close`.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30.0)
        try:
            self._db.execute("PRAGMA foreign_keys = ON")
            self._db.execute("PRAGMA synchronous = FULL")
            version = self._db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, 1, 2, _SCHEMA_VERSION):
                raise InvalidInputError(f"catalog schema version {version} is not "
                                        f"{_SCHEMA_VERSION}", path=self.path)
            self._db.executescript(_SCHEMA)
            self._add_quarantine_columns()
            with self._transaction() as db:
                if version == 1:
                    self._split_merged_patients(db)
                db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise InvalidInputError(f"not an rtforge catalog: {exc}", path=self.path) from None
        except InvalidInputError:
            self._db.close()
            raise

    def _add_quarantine_columns(self) -> None:
        """Schema 2 to 3: the reason (and the catalogued copy) of each quarantine row.

        Each missing column is added in its own committed statement, the
        reason defaulting to ``another patient`` (the only reason schema 2
        knew); the version is written after, so this runs again, adding what
        is still missing, after a crash.
        """
        present = {row[1] for row in self._db.execute("PRAGMA table_info(quarantine)")}
        for name, kind in _QUARANTINE_COLUMNS_3.items():
            if name not in present:
                with self._transaction() as db:
                    db.execute(f"ALTER TABLE quarantine ADD COLUMN {name} {kind}")

    def _split_merged_patients(self, db: sqlite3.Connection) -> None:
        """Schema 1 to 2: quarantine the local rows whose file holds another patient's ID.

        Schema 1 catalogued an object under its study's patient whatever its
        own Patient ID.  Filed rows cannot be checked (no local file); they
        keep their patient.
        """
        rows = db.execute("SELECT i.path, st.patient_id FROM instances i "
                          "JOIN series s ON s.series_uid = i.series_uid "
                          "JOIN studies st ON st.study_uid = s.study_uid WHERE i.state = ?",
                          (InstanceState.LOCAL.value,)).fetchall()
        moved = 0
        for path, owner in rows:
            try:
                ds = dcmread(path, stop_before_pixels=True, specific_tags=["PatientID"])
                found = None if str(ds.get("PatientID", "") or "") == owner else scan_file(path)
            except (OSError, InvalidDicomError, EOFError, ValueError) as exc:
                logger.warning("catalog %s: cannot check %s: %s", self.path, path, exc)
                continue
            if found is not None and isinstance(self._add(db, found), QuarantinedRecord):
                moved += 1
        if moved:
            logger.warning("catalog %s: schema 1 had merged patients; %d instance(s) moved to "
                           "the quarantine (see 'rtforge store ls')", self.path, moved)

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def __enter__(self) -> Catalog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        with self._db:
            yield self._db

    # -- import ---------------------------------------------------------------------------

    @staticmethod
    def _owner(db: sqlite3.Connection, f: ScannedFile) -> str | None:
        """The other patient that holds ``f``'s study, series or SOP Instance UID, if any."""
        row = db.execute(
            "SELECT patient_id FROM studies WHERE study_uid = ?1 AND patient_id != ?4 "
            "UNION ALL SELECT st.patient_id FROM series s "
            "JOIN studies st ON st.study_uid = s.study_uid "
            "WHERE s.series_uid = ?2 AND st.patient_id != ?4 "
            "UNION ALL SELECT st.patient_id FROM instances i "
            "JOIN series s ON s.series_uid = i.series_uid "
            "JOIN studies st ON st.study_uid = s.study_uid "
            "WHERE i.sop_instance_uid = ?3 AND st.patient_id != ?4 LIMIT 1",
            (f.study_uid, f.series_uid, f.sop_instance_uid, f.patient_id)).fetchone()
        return None if row is None else str(row[0])

    @staticmethod
    def _catalogued_copy(db: sqlite3.Connection, f: ScannedFile) -> _HeldCopy | None:
        """The catalogued copy ``f`` conflicts with, if any (module notes)."""
        row = db.execute("SELECT path, sha256, dataset_sha256, transfer_syntax, state, archive "
                         "FROM instances WHERE sop_instance_uid = ?",
                         (f.sop_instance_uid,)).fetchone()
        if row is None:
            return None
        path, sha256, dataset_sha256, transfer_syntax, state, archive = row
        if (dataset_sha256, transfer_syntax) == (f.dataset_sha256, f.transfer_syntax):
            return None  # the same object: it takes the row (moved, sent again, restored)
        if state != InstanceState.LOCAL.value:  # an archive holds the catalogued copy
            return _HeldCopy(Path(path), str(sha256), archive)
        if path == str(f.path) or not Path(path).is_file():
            return None  # the row's own file re-read, or no copy left: this one takes the row
        return _HeldCopy(Path(path), str(sha256), None)

    @staticmethod
    def _quarantine(db: sqlite3.Connection, f: ScannedFile, owner: str,
                    reason: QuarantineReason = QuarantineReason.ANOTHER_PATIENT,
                    copy_of: _HeldCopy | None = None) -> QuarantinedRecord:
        """Keep ``f`` aside; a stale local row that recorded this very file under ``owner``
        goes (a row an archive holds stays: its path is where the archive's copy returns)."""
        db.execute("DELETE FROM instances WHERE sop_instance_uid = ? AND path = ? AND state = ?",
                   (f.sop_instance_uid, str(f.path), InstanceState.LOCAL.value))
        held = copy_of or _HeldCopy(None, None, None)
        record = QuarantinedRecord(f.path, f.sop_instance_uid, f.sop_class_uid, f.series_uid,
                                   f.study_uid, f.modality, f.patient_id, owner, f.size,
                                   f.sha256, _now(), reason, held.path, held.sha256,
                                   held.archive)
        db.execute("INSERT OR REPLACE INTO quarantine (path, sop_instance_uid, sop_class_uid, "
                   "patient_id, patient_name, study_uid, series_uid, modality, owner_patient_id, "
                   "size, sha256, found_at, reason, copy_of, copy_of_sha256) "
                   "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                   (str(f.path), f.sop_instance_uid, f.sop_class_uid, f.patient_id,
                    f.patient_name, f.study_uid, f.series_uid, f.modality, owner, f.size,
                    f.sha256, record.found_at, reason.value,
                    None if held.path is None else str(held.path), held.sha256))
        return record

    @classmethod
    def _add(cls, db: sqlite3.Connection, f: ScannedFile) -> bool | QuarantinedRecord:
        """Record one scanned file; ``True`` if it was new, the record if kept aside.

        A SOP Instance UID already recorded gets the new path and checksums
        and becomes local (its archive and filing time are kept).  A file
        whose study, series or SOP Instance UID another patient holds, and a
        conflicting copy, are quarantined (see the module notes).
        """
        owner = cls._owner(db, f)
        if owner is not None:
            return cls._quarantine(db, f, owner)
        held = cls._catalogued_copy(db, f)
        if held is not None:
            return cls._quarantine(db, f, f.patient_id, QuarantineReason.CONFLICTING_COPY, held)
        db.execute("DELETE FROM quarantine WHERE path = ?", (str(f.path),))
        db.execute("INSERT INTO patients (patient_id, patient_name) VALUES (?, ?) "
                   "ON CONFLICT(patient_id) DO UPDATE SET patient_name = excluded.patient_name",
                   (f.patient_id, f.patient_name))
        db.execute("INSERT INTO studies (study_uid, patient_id, study_date, description) "
                   "VALUES (?, ?, ?, ?) ON CONFLICT(study_uid) DO NOTHING",
                   (f.study_uid, f.patient_id, f.study_date, f.study_description))
        db.execute("INSERT INTO series (series_uid, study_uid, modality, description) "
                   "VALUES (?, ?, ?, ?) ON CONFLICT(series_uid) DO NOTHING",
                   (f.series_uid, f.study_uid, f.modality, f.series_description))
        new = db.execute("SELECT 1 FROM instances WHERE sop_instance_uid = ?",
                         (f.sop_instance_uid,)).fetchone() is None
        db.execute(
            "INSERT INTO instances (sop_instance_uid, series_uid, sop_class_uid, transfer_syntax, "
            "path, size, sha256, dataset_sha256, meta, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(sop_instance_uid) DO UPDATE SET path = excluded.path, "
            "size = excluded.size, sha256 = excluded.sha256, "
            "dataset_sha256 = excluded.dataset_sha256, meta = excluded.meta, "
            "transfer_syntax = excluded.transfer_syntax, state = excluded.state",
            (f.sop_instance_uid, f.series_uid, f.sop_class_uid, f.transfer_syntax, str(f.path),
             f.size, f.sha256, f.dataset_sha256, f.meta, InstanceState.LOCAL.value))
        return new

    def import_paths(self, paths: Iterable[str | os.PathLike[str]]) -> ImportReport:
        """Index every DICOM file under ``paths`` in place (files are not moved).

        Parameters
        ----------
        paths : iterable of path-like
            Files and folders (searched recursively; hidden entries such as
            the receiver's ``.incoming`` are left out).

        Returns
        -------
        ImportReport
            Damaged DICOM files are left out and listed in ``rejected``.

        Raises
        ------
        InvalidInputError
            If a path does not exist.
        """
        report = ImportReport()
        scanned: list[ScannedFile] = []
        for path in _files_under(paths):
            if path.resolve() == self.path.resolve():
                continue
            try:
                found = scan_file(path)
            except InvalidInputError as exc:
                logger.warning("not catalogued: %s", exc)
                report.rejected.append((path, str(exc)))
                continue
            if found is None:
                report.skipped.append(path)
            else:
                scanned.append(found)
        with self._transaction() as db:
            for item in scanned:
                outcome = self._add(db, item)
                if isinstance(outcome, QuarantinedRecord):
                    report.quarantined.append(outcome)
                elif outcome:
                    report.added += 1
                else:
                    report.updated += 1
        logger.info("catalog %s: %d added, %d updated, %d skipped, %d quarantined", self.path,
                    report.added, report.updated, len(report.skipped), len(report.quarantined))
        return report

    # -- queries --------------------------------------------------------------------------

    def instances(self, patient_id: str, *, study_uid: str | None = None,
                  states: Iterable[InstanceState] | None = None) -> list[InstanceRecord]:
        """The instances of a patient (or of one of its studies), in UID order.

        Parameters
        ----------
        patient_id : str
        study_uid : str, optional
        states : iterable of InstanceState, optional
            Only these states.
        """
        sql = _SELECT + " WHERE st.patient_id = ?"
        params: list[Any] = [patient_id]
        if study_uid is not None:
            sql += " AND st.study_uid = ?"
            params.append(study_uid)
        wanted = None if states is None else [InstanceState(s).value for s in states]
        if wanted is not None:
            sql += f" AND i.state IN ({', '.join('?' * len(wanted))})"
            params.extend(wanted)
        sql += " ORDER BY st.study_uid, s.series_uid, i.sop_instance_uid"
        return [_record(row) for row in self._db.execute(sql, params)]

    def meta(self, sop_instance_uid: str) -> bytes:
        """The preamble, prefix and File Meta Information the instance's file had."""
        row = self._db.execute("SELECT meta FROM instances WHERE sop_instance_uid = ?",
                               (sop_instance_uid,)).fetchone()
        if row is None:
            raise InvalidInputError(f"SOP Instance UID {sop_instance_uid} is not in the catalog",
                                    path=self.path)
        return bytes(row[0])

    def cases(self, patient_id: str | None = None) -> list[CaseSummary]:
        """One summary per patient (or only ``patient_id``), in Patient ID order.

        A patient's quarantined objects count in its summary (state
        ``quarantined``), and a patient with nothing but quarantined objects
        has a summary too.
        """
        where, params = ("WHERE o.patient_id = ?", [patient_id]) if patient_id is not None \
            else ("", [])
        rows = self._db.execute(
            _OBJECTS + "SELECT o.patient_id, MAX(o.patient_name), COUNT(DISTINCT o.study_uid), "
            "COUNT(DISTINCT o.series_uid), COUNT(*), COALESCE(SUM(o.size), 0) FROM objects o "
            f"{where} GROUP BY o.patient_id ORDER BY o.patient_id", params).fetchall()
        aside = self.quarantined(patient_id)
        quarantine, conflicts = group_quarantine(aside), conflicting_copies(aside)
        out = []
        for pid, name, studies, series, count, size in rows:
            states: dict[str, int] = {}
            archives: set[str] = set()
            for state, archive, n in self._db.execute(
                    _OBJECTS + "SELECT o.state, o.archive, COUNT(*) FROM objects o "
                    "WHERE o.patient_id = ? GROUP BY o.state, o.archive", (pid,)):
                states[state] = states.get(state, 0) + n
                if archive and state != InstanceState.LOCAL.value:
                    archives.add(archive)
            out.append(CaseSummary(pid, name, studies, series, count, size, states,
                                   tuple(sorted(archives)),
                                   tuple(g for g in quarantine if g.patient_id == pid),
                                   tuple(r for r in conflicts if r.patient_id == pid)))
        return out

    def series(self, patient_id: str) -> list[SeriesSummary]:
        """A patient's series, quarantined objects included, in study and series UID order."""
        out: dict[tuple[str, str], dict[str, Any]] = {}
        for row in self._db.execute(
                _OBJECTS + "SELECT o.study_uid, o.series_uid, o.state, COUNT(*), SUM(o.size), "
                "MAX(o.modality), COALESCE(MAX(st.study_date), ''), "
                "COALESCE(MAX(st.description), ''), COALESCE(MAX(s.description), '') "
                "FROM objects o LEFT JOIN studies st ON st.study_uid = o.study_uid "
                "LEFT JOIN series s ON s.series_uid = o.series_uid WHERE o.patient_id = ? "
                "GROUP BY o.study_uid, o.series_uid, o.state ORDER BY o.study_uid, o.series_uid",
                (patient_id,)):
            study, series, state, n, size, modality, date, study_desc, series_desc = row
            item = out.setdefault((study, series), {
                "study_uid": study, "study_date": date, "study_description": study_desc,
                "series_uid": series, "modality": modality, "series_description": series_desc,
                "instances": 0, "size": 0, "states": {}})
            item["instances"] += n
            item["size"] += size
            item["states"][state] = n
        return [SeriesSummary(**item) for item in out.values()]

    def quarantined(self, patient_id: str | None = None) -> list[QuarantinedRecord]:
        """The files kept aside (of one patient, or all), in patient, study and UID order.

        A conflicting copy names the catalogued copy as its row is now (its
        path and checksum; the archive while it is filed): the row may have
        moved, been filed or restored since the copy was kept aside.
        """
        sql = ("SELECT q.path, q.sop_instance_uid, q.sop_class_uid, q.series_uid, q.study_uid, "
               "q.modality, q.patient_id, q.owner_patient_id, q.size, q.sha256, q.found_at, "
               "q.reason, COALESCE(i.path, q.copy_of), COALESCE(i.sha256, q.copy_of_sha256), "
               "CASE WHEN i.state != ? THEN i.archive END FROM quarantine q "
               "LEFT JOIN instances i ON q.reason = ? "
               "AND i.sop_instance_uid = q.sop_instance_uid")
        params: list[Any] = [InstanceState.LOCAL.value, QuarantineReason.CONFLICTING_COPY.value]
        if patient_id is not None:
            sql += " WHERE q.patient_id = ?"
            params.append(patient_id)
        sql += " ORDER BY q.patient_id, q.study_uid, q.series_uid, q.sop_instance_uid, q.path"
        return [QuarantinedRecord(Path(row[0]), *row[1:11], QuarantineReason(row[11]),
                                  None if row[12] is None else Path(row[12]), *row[13:])
                for row in self._db.execute(sql, params)]

    # -- state changes --------------------------------------------------------------------

    def _set_state(self, uids: Sequence[str], state: InstanceState, **columns: Any) -> None:
        assignments = ", ".join(["state = ?"] + [f"{name} = ?" for name in columns])
        values = [state.value, *columns.values()]
        with self._transaction() as db:
            db.executemany(f"UPDATE instances SET {assignments} WHERE sop_instance_uid = ?",
                           [(*values, uid) for uid in uids])

    def mark_deleting(self, uids: Sequence[str], archive: str) -> None:
        """Record that ``archive`` holds these instances and their files are being deleted."""
        self._set_state(uids, InstanceState.DELETING, archive=archive, filed_at=_now())

    def mark_filed(self, uids: Sequence[str]) -> None:
        """Record that these instances' files are deleted (only the archive holds them)."""
        self._set_state(uids, InstanceState.FILED)

    def mark_restored(self, uids: Sequence[str]) -> None:
        """Record that these instances' files are back in the local store.

        A quarantine row of a file that was at one of their paths goes: the
        restored file is there now (restore never writes over a file).
        """
        self._set_state(uids, InstanceState.LOCAL, restored_at=_now())
        self._forget_aside_at(uids)

    def _forget_aside_at(self, uids: Sequence[str]) -> None:
        """Delete the quarantine rows at these instances' paths (their own files are there)."""
        with self._transaction() as db:
            db.executemany("DELETE FROM quarantine WHERE path = (SELECT path FROM instances "
                           "WHERE sop_instance_uid = ?)", [(uid,) for uid in uids])

    def _state(self, uid: str) -> InstanceState | None:
        row = self._db.execute("SELECT state FROM instances WHERE sop_instance_uid = ?",
                               (uid,)).fetchone()
        return None if row is None else InstanceState(row[0])

    def mark_restoring(self, uids: Sequence[str]) -> None:
        """Record that these filed instances' files are being written back."""
        self._set_state(uids, InstanceState.RESTORING)

    def recover(self, *, on_quarantine: Callable[[QuarantinedRecord], None] | None = None
                ) -> dict[str, int]:
        """Settle what a crash of File or Restore left, from what is on disk.

        Rows in ``deleting`` or ``restoring``, and ``filed`` rows whose file
        is on disk again: file gone, ``filed``; file there with the recorded
        checksum (or the same data set), ``local``; file there with other
        content, kept aside as a conflicting copy of the archive's copy and
        the row ``filed`` (see the module notes).  A file already kept aside
        so is left as it is.  Temporary files a dead process left beside
        these rows are removed.

        Parameters
        ----------
        on_quarantine : callable, optional
            Called with each file kept aside now.

        Returns
        -------
        dict of str to int
            ``{"filed": n, "local": m}``: rows settled as filed (transient
            rows whose file is gone or holds other content) and as local
            (rows whose file is there, with their content).
        """
        rows = [(uid, Path(path), sha, InstanceState(state)) for uid, path, sha, state in
                self._db.execute("SELECT sop_instance_uid, path, sha256, state FROM instances "
                                 "WHERE state IN (?, ?, ?)",
                                 (InstanceState.DELETING.value, InstanceState.RESTORING.value,
                                  InstanceState.FILED.value))]
        present = scan_folders(path for _, path, _, _ in rows)
        gone = [uid for uid, path, _, state in rows
                if path not in present and state is not InstanceState.FILED]
        aside = {Path(path): sha for path, sha in
                 self._db.execute("SELECT path, sha256 FROM quarantine")}
        same: list[str] = []
        changed: dict[str, Path] = {}
        for uid, path, sha, state in rows:
            found = file_sha256(path) if path in present else None
            if found == sha:
                same.append(uid)
            elif found is not None and not (state is InstanceState.FILED
                                            and aside.get(path) == found):
                changed[uid] = path
        if gone:
            self.mark_filed(gone)
        if same:
            self._set_state(same, InstanceState.LOCAL)
            self._forget_aside_at(same)
        kept: list[QuarantinedRecord] = []
        if changed:
            kept = self.import_paths(changed.values()).quarantined
            # a row whose path now holds another object: the archive's copy is the only one
            stuck = [uid for uid in changed if self._state(uid) in (InstanceState.DELETING,
                                                                     InstanceState.RESTORING)]
            if stuck:
                self.mark_filed(stuck)
            gone += stuck
            same += [uid for uid in changed if self._state(uid) is InstanceState.LOCAL]
        for record in kept:
            logger.warning("catalog %s: %s", self.path, record.line())
            if on_quarantine is not None:
                on_quarantine(record)
        if gone or same or kept:
            logger.warning("catalog %s: recovered %d row(s) of interrupted deletions or "
                           "restores, or filed with their file back: %d filed, %d local, "
                           "%d file(s) of other content kept aside", self.path,
                           len(gone) + len(same), len(gone), len(same), len(kept))
        return {"filed": len(gone), "local": len(same)}

    def records_under(self, root: str | os.PathLike[str]) -> list[InstanceRecord]:
        """The instances whose file is (or was) under the folder ``root``, in path order."""
        prefix = str(Path(root).resolve()).rstrip(os.sep) + os.sep
        rows = self._db.execute(_SELECT + " WHERE substr(i.path, 1, ?) = ? ORDER BY i.path",
                                (len(prefix), prefix))
        return [_record(row) for row in rows]

    def forget(self, uids: Sequence[str] = (), quarantined: Sequence[Path] = ()) -> None:
        """Delete rows whose files are gone: instances no archive holds, quarantined files."""
        with self._transaction() as db:
            db.executemany("DELETE FROM instances WHERE sop_instance_uid = ?",
                           [(uid,) for uid in uids])
            db.executemany("DELETE FROM quarantine WHERE path = ?",
                           [(str(path),) for path in quarantined])


class CatalogIndexer:
    """Index files into a :class:`Catalog` from any thread, as they arrive.

    The receiver calls :meth:`add` from its association threads; one thread
    of this object owns the SQLite connection and records each file (SQLite
    connections are not shared between threads).  :meth:`close` records
    what is queued, then stops.  An object whose study another patient holds
    is quarantined (:meth:`Catalog.import_paths`) and reported once per
    patient and study, a conflicting copy (a ``<UID>_2.dcm`` the receiver
    kept beside the first) once per file: a warning in the log, and
    ``on_quarantine``.

    Parameters
    ----------
    path : path-like
        The catalog database.
    on_quarantine : callable, optional
        Called (from the indexing thread) with the one-line report
        (:meth:`QuarantineGroup.line`) the first time objects of a patient
        and study are kept aside, and (:meth:`QuarantinedRecord.line`) for
        each conflicting copy.

    Attributes
    ----------
    indexed, quarantined : int
        Objects recorded, and kept aside, so far.
    """

    def __init__(self, path: str | os.PathLike[str], *,
                 on_quarantine: Callable[[str], None] | None = None) -> None:
        self.path = Path(path)
        Catalog(self.path).close()  # fail now, in the caller, if it is not a catalog
        self._queue: queue.Queue[Path | None] = queue.Queue()
        self.indexed = 0
        self.quarantined = 0
        self._on_quarantine = on_quarantine
        self._reported: set[tuple[str, ...]] = set()
        self._thread = threading.Thread(target=self._run, name="rtforge-catalog", daemon=True)
        self._thread.start()

    def add(self, path: str | os.PathLike[str]) -> None:
        """Queue one stored file for indexing."""
        self._queue.put(Path(path))

    def _run(self) -> None:
        with Catalog(self.path) as catalog:
            while True:
                item = self._queue.get()
                if item is None:
                    return
                try:
                    report = catalog.import_paths([item])
                except Exception:  # the file is stored; a later 'store import' can index it
                    logger.exception("could not index %s in %s", item, self.path)
                    continue
                self.indexed += report.added
                self.quarantined += len(report.quarantined)
                self._report(report.quarantined)

    def _report(self, records: list[QuarantinedRecord]) -> None:
        reports = [((g.patient_id, g.study_uid, g.owner_patient_id), g.line())
                   for g in group_quarantine(records)]
        reports += [((str(r.path),), r.line()) for r in conflicting_copies(records)]
        for key, line in reports:
            if key in self._reported:
                continue
            self._reported.add(key)
            logger.warning("%s: %s", self.path, line)
            if self._on_quarantine is not None:
                self._on_quarantine(line)

    def close(self) -> None:
        """Index what is queued and stop."""
        self._queue.put(None)
        self._thread.join()
