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

    local ──file──> deleting ──unlink, commit──> filed ──restore──> local

``deleting`` is written (and committed) before the file is unlinked, and
``filed`` after: a crash between the two leaves ``deleting`` rows, which
:meth:`Catalog.recover` settles from what is on disk (file gone: ``filed``;
file still there: ``local``).  No state ever claims a file is local when it
is not, and no file is unlinked before the archive was verified to hold it.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import os
import queue
import sqlite3
import threading
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from enum import Enum
from io import BytesIO
from pathlib import Path
from typing import Any

from pydicom import dcmread
from pydicom.errors import InvalidDicomError
from pydicom.filereader import read_dataset, read_preamble
from pydicom.uid import MediaStorageDirectoryStorage

from rtforge.errors import InvalidInputError

__all__ = [
    "CATALOG_NAME",
    "InstanceState",
    "InstanceRecord",
    "CaseSummary",
    "ImportReport",
    "ScannedFile",
    "split_part10",
    "scan_file",
    "Catalog",
    "CatalogIndexer",
]

logger = logging.getLogger(__name__)

#: File name of the catalog in the store's root, unless configured elsewhere.
CATALOG_NAME = "catalog.sqlite"
_SCHEMA_VERSION = 1

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
    """

    patient_id: str
    patient_name: str
    studies: int
    series: int
    instances: int
    size: int
    states: dict[str, int]
    archives: tuple[str, ...]

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"patient_id": self.patient_id, "patient_name": self.patient_name,
                "studies": self.studies, "series": self.series, "instances": self.instances,
                "size": self.size, "states": self.states, "archives": list(self.archives)}


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
    """

    added: int = 0
    updated: int = 0
    skipped: list[Path] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"added": self.added, "updated": self.updated,
                "skipped": [str(p) for p in self.skipped]}


def _now() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _not_group_0002(tag: Any, vr: str | None, length: int) -> bool:
    return bool(tag.group != 2)


def split_part10(data: bytes) -> tuple[bytes, bytes]:
    """(preamble, prefix and File Meta Information; data set) of a Part 10 file's bytes.

    Raises
    ------
    InvalidDicomError
        If ``data`` is not a Part 10 file.
    """
    fp = BytesIO(data)
    read_preamble(fp, False)
    read_dataset(fp, is_implicit_VR=False, is_little_endian=True, stop_when=_not_group_0002)
    offset = fp.tell()
    return data[:offset], data[offset:]


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
    """
    path = Path(path)
    data = path.read_bytes()
    try:
        meta, dataset = split_part10(data)
        ds = dcmread(BytesIO(data), stop_before_pixels=True)
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
            if version not in (0, _SCHEMA_VERSION):
                raise InvalidInputError(f"catalog schema version {version} is not "
                                        f"{_SCHEMA_VERSION}", path=self.path)
            with self._db:
                self._db.executescript(_SCHEMA)
                self._db.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")
        except sqlite3.DatabaseError as exc:
            self._db.close()
            raise InvalidInputError(f"not an rtforge catalog: {exc}", path=self.path) from None
        except InvalidInputError:
            self._db.close()
            raise

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
    def _add(db: sqlite3.Connection, f: ScannedFile) -> bool:
        """Record one scanned file; ``True`` if it was new.

        A SOP Instance UID already recorded gets the new path and checksums
        and becomes local (its archive and filing time are kept).
        """
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
            found = scan_file(path)
            if found is None:
                report.skipped.append(path)
            else:
                scanned.append(found)
        with self._transaction() as db:
            for item in scanned:
                if self._add(db, item):
                    report.added += 1
                else:
                    report.updated += 1
        logger.info("catalog %s: %d added, %d updated, %d skipped", self.path, report.added,
                    report.updated, len(report.skipped))
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
        """One summary per patient (or only ``patient_id``), in Patient ID order."""
        sql = ("SELECT p.patient_id, p.patient_name, COUNT(DISTINCT st.study_uid), "
               "COUNT(DISTINCT s.series_uid), COUNT(i.sop_instance_uid), COALESCE(SUM(i.size), 0) "
               "FROM patients p JOIN studies st ON st.patient_id = p.patient_id "
               "JOIN series s ON s.study_uid = st.study_uid "
               "JOIN instances i ON i.series_uid = s.series_uid")
        params: list[Any] = []
        if patient_id is not None:
            sql += " WHERE p.patient_id = ?"
            params.append(patient_id)
        sql += " GROUP BY p.patient_id ORDER BY p.patient_id"
        out = []
        for pid, name, studies, series, count, size in self._db.execute(sql, params).fetchall():
            states: dict[str, int] = {}
            archives: set[str] = set()
            for state, archive, n in self._db.execute(
                    "SELECT i.state, i.archive, COUNT(*) FROM instances i "
                    "JOIN series s ON s.series_uid = i.series_uid "
                    "JOIN studies st ON st.study_uid = s.study_uid WHERE st.patient_id = ? "
                    "GROUP BY i.state, i.archive", (pid,)):
                states[state] = states.get(state, 0) + n
                if archive and state != InstanceState.LOCAL.value:
                    archives.add(archive)
            out.append(CaseSummary(pid, name, studies, series, count, size, states,
                                   tuple(sorted(archives))))
        return out

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
        """Record that these instances' files are back in the local store."""
        self._set_state(uids, InstanceState.LOCAL, restored_at=_now())

    def recover(self) -> dict[str, int]:
        """Settle instances left in ``deleting`` by a crash, from what is on disk.

        Returns
        -------
        dict of str to int
            ``{"filed": n, "local": m}``: rows whose file is gone (the archive
            holds them: filed) and rows whose file is still there (local).
        """
        rows = self._db.execute("SELECT sop_instance_uid, path FROM instances WHERE state = ?",
                                (InstanceState.DELETING.value,)).fetchall()
        gone = [uid for uid, path in rows if not Path(path).exists()]
        kept = [uid for uid, path in rows if Path(path).exists()]
        if gone:
            self.mark_filed(gone)
        if kept:
            self._set_state(kept, InstanceState.LOCAL)
        if rows:
            logger.warning("catalog %s: recovered %d interrupted deletion(s): %d filed, %d local",
                           self.path, len(rows), len(gone), len(kept))
        return {"filed": len(gone), "local": len(kept)}


class CatalogIndexer:
    """Index files into a :class:`Catalog` from any thread, as they arrive.

    The receiver calls :meth:`add` from its association threads; one thread
    of this object owns the SQLite connection and records each file (SQLite
    connections are not shared between threads).  :meth:`close` records
    what is queued, then stops.

    Parameters
    ----------
    path : path-like
        The catalog database.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        Catalog(self.path).close()  # fail now, in the caller, if it is not a catalog
        self._queue: queue.Queue[Path | None] = queue.Queue()
        self.indexed = 0
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
                    self.indexed += catalog.import_paths([item]).added
                except Exception:  # the file is stored; a later 'store import' can index it
                    logger.exception("could not index %s in %s", item, self.path)

    def close(self) -> None:
        """Index what is queued and stop."""
        self._queue.put(None)
        self._thread.join()
