"""The receiver's folder and the catalog made to agree again, at start-up after a crash.

``rtforge receive --catalog`` keeps one object in three places, written in
this order (:mod:`rtforge.net.receiver` has the details of 1 to 4):

1. ``OUT/.incoming/<random>.part``: the object while it arrives;
2. ``OUT/<PatientID>/<Study>/<Series>/<SOPInstanceUID>.dcm``: renamed there
   once whole, checked and (``--sync object``) flushed;
3. the C-STORE response: success is answered only after 2;
4. the catalog row, written by the indexer's thread after 3 (its own
   SQLite transaction, ``synchronous=FULL``); for a copy of other content
   kept beside the first (``<UID>_2.dcm``), a quarantine row instead
   (a conflicting copy), in the same way; so too for an object of other
   content than a filed instance of its SOP Instance UID, written at the
   free ``<SOPInstanceUID>.dcm`` the filed row names (the row stays
   ``filed``: the archive holds the catalogued copy).

A ``kill -9`` between any two steps leaves: a ``.part`` file (before 2:
never acknowledged, the sender resends), or a file without a row (between 2
and 4: answered or not, the object is whole on disk).  A row is never
written before its file, so a row without a file comes from outside the
receiver (a file deleted by hand, an interrupted ``rtforge file``).

At start-up, holding the folder's lock (no other receiver writes there) and
before the port opens, :meth:`rtforge.net.StorageSCP.prepare` deletes the
``.part`` files, and then :func:`reconcile_store`:

1. settles rows left ``deleting`` by an interrupted filing, and ``filed``
   rows whose file is back (:meth:`~rtforge.net.catalog.Catalog.recover`):
   a file of other content at a filed row's path (an edited object of that
   SOP Instance UID received after filing, the indexer not yet run) is
   quarantined as a conflicting copy of the archive's copy and reported in
   one line naming the archive; the row stays ``filed``;
2. indexes every file under the folder that has no row, and re-reads a
   file whose size differs from its row (``--duplicates replace``
   interrupted after the rename); a file whose SOP Instance UID already has
   a row for another file that exists, or for a filed copy (a copy of other
   content the receiver kept beside the first, ``<UID>_2.dcm``), is
   quarantined as a conflicting copy and reported in one line naming both
   files (the catalog holds one row per SOP Instance UID; see
   :mod:`rtforge.net.catalog`); a file of another patient's study is
   quarantined, as the indexer does;
3. settles ``local`` rows whose file is gone: ``filed`` when an archive
   holds the instance (it was filed before, then restored), otherwise the
   row is deleted (nothing holds the object any more); quarantine rows
   whose file is gone are deleted.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rtforge.net.catalog import (
    Catalog,
    InstanceState,
    QuarantinedRecord,
    conflicting_copies,
    quarantine_lines,
    scan_file,
)

__all__ = ["ReconcileReport", "reconcile_store"]

logger = logging.getLogger(__name__)


@dataclass
class ReconcileReport:
    """What :func:`reconcile_store` changed.

    Parameters
    ----------
    indexed : int
        Files without a row, now recorded.
    refreshed : int
        Files whose size differed from their row, re-read.
    filed : int
        ``local`` rows without a file, of instances an archive holds: now ``filed``.
    forgotten : int
        Rows without a file that no archive holds (``local`` or quarantined): deleted.
    recovered : int
        Rows an interrupted filing had left ``deleting``, settled.
    conflicts : list of Path
        Files quarantined as conflicting copies: another file (or a filed
        copy) of their SOP Instance UID, of other content, has the row.
    skipped : list of Path
        Files that are not DICOM Part 10 files.
    quarantined : list of str
        One line per patient and study of the files of another patient's study
        indexed into the quarantine, and one per conflicting copy.
    """

    indexed: int = 0
    refreshed: int = 0
    filed: int = 0
    forgotten: int = 0
    recovered: int = 0
    conflicts: list[Path] = field(default_factory=list)
    skipped: list[Path] = field(default_factory=list)
    quarantined: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        """Whether the catalog was changed."""
        return bool(self.indexed or self.refreshed or self.filed or self.forgotten
                    or self.recovered or self.conflicts)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"indexed": self.indexed, "refreshed": self.refreshed, "filed": self.filed,
                "forgotten": self.forgotten, "recovered": self.recovered,
                "conflicts": [str(p) for p in self.conflicts],
                "skipped": [str(p) for p in self.skipped], "quarantined": self.quarantined}

    def summary(self) -> str:
        """One line for the user."""
        return (f"{self.indexed} file(s) indexed, {self.refreshed} re-read, {self.filed} row(s) "
                f"set filed and {self.forgotten} removed (files gone), {self.recovered} "
                f"interrupted deletion(s) settled, {len(self.conflicts)} copies of other content "
                "kept aside as conflicting copies (see 'rtforge store ls')")


def _files(root: Path) -> set[Path]:
    """The files under ``root``, hidden entries (``.incoming``, the lock) left out."""
    found = set()
    for folder, subfolders, names in os.walk(root):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        found.update(Path(folder, name) for name in names if not name.startswith("."))
    return found


def reconcile_store(catalog: Catalog, root: str | os.PathLike[str]) -> ReconcileReport:
    """Make the catalog agree with the files under a receiver's folder (see the module notes).

    Call it while no receiver writes to ``root`` (under the receiver's lock,
    :meth:`rtforge.net.StorageSCP.prepare`).

    Parameters
    ----------
    catalog : Catalog
    root : path-like
        The receiver's output folder.

    Returns
    -------
    ReconcileReport
    """
    root = Path(root).resolve()
    report = ReconcileReport()
    recovered: list[QuarantinedRecord] = []
    report.recovered = sum(catalog.recover(on_quarantine=recovered.append).values())
    records = catalog.records_under(root)
    by_path = {record.path: record for record in records}
    aside = {q.path for q in catalog.quarantined() if q.path.is_relative_to(root)}
    files = _files(root) - {catalog.path.resolve()}
    new: list[Path] = []
    uids: set[str] = set()  # of the files indexed now (a name sorts before its _2 copy)
    for path in sorted(files - by_path.keys() - aside):
        scanned = scan_file(path)
        if scanned is None:
            report.skipped.append(path)
            continue
        new.append(path)
        uids.add(scanned.sop_instance_uid)
    changed = sorted(path for path in files & by_path.keys()
                     if by_path[path].state is InstanceState.LOCAL
                     and path.stat().st_size != by_path[path].size)
    imported = catalog.import_paths([*new, *changed]).quarantined if new or changed else []
    report.quarantined = quarantine_lines([*recovered, *imported])
    report.conflicts = [r.path for r in conflicting_copies([*recovered, *imported])]
    report.indexed = len(new) - len(conflicting_copies(imported))
    report.refreshed = len(changed)
    gone = [record for record in records if record.state is InstanceState.LOCAL
            and record.path not in files and record.sop_instance_uid not in uids]
    filed = [record.sop_instance_uid for record in gone if record.archive]
    forgotten = [record.sop_instance_uid for record in gone if not record.archive]
    if filed:
        catalog.mark_filed(filed)
    gone_aside = sorted(aside - files)
    if forgotten or gone_aside:
        catalog.forget(forgotten, gone_aside)
    report.filed, report.forgotten = len(filed), len(forgotten) + len(gone_aside)
    if report.changed:
        logger.warning("catalog %s and %s reconciled: %s", catalog.path, root, report.summary())
    return report
