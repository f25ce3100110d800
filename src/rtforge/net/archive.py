"""File/Restore: move a patient's case to an archive and back (Oncentra 4.1.2.3, 4.2.3).

Filing (Oncentra 4.2.3.3.1) sends a patient's (or one study's) local
instances to an archive node with C-STORE, each file proposed in its own
transfer syntax (:func:`rtforge.net.store.send`), and deletes the local files
only once every instance is *proven* to be held by the archive:

1. C-FIND (IMAGE level, series by series) lists the SOP Instance UIDs the
   archive already holds.  Those are C-MOVEd back to a temporary Storage SCP
   (the one restore uses) and their data set SHA-256 compared with the
   catalog's: an identical copy is not sent again (a re-run resumes); a copy
   with other content, or one that does not arrive, is sent again.
2. C-STORE of everything not proven identical in step 1.  A compressed
   file the archive accepts only uncompressed is sent decompressed
   (:func:`rtforge.net.store.send`; lossy ones only when allowed), and the
   local file is then replaced by that decompressed copy, re-indexed: what
   the archive holds is what was filed, so step 3 can prove it and restore
   brings it back byte for byte.  The copy is in Implicit VR Little Endian,
   the syntax ``send`` proposes first and the one every re-encoding by the
   archive maps back to exactly (Explicit VR may turn 8-bit Pixel Data from
   OB into OW).
3. Verification of what was sent, by the node's ``verify`` setting
   (:class:`rtforge.config.Node`):

   ``"commitment"``
       Storage Commitment Push Model (PS3.4 Annex J,
       :mod:`rtforge.net.commitment`): one N-ACTION for the instances the
       archive did not hold before step 2; the N-EVENT-REPORT comes on the
       same association or a new one to the temporary SCP's AE title and
       port (the N-ACTION's calling AE is that title, so an archive that
       knows the restore destination can report), within the node's
       timeout.  A commitment proves that the archive holds, and takes
       responsibility for, an instance of that SOP Class with that SOP
       Instance UID; it does not prove the content.  It is relied on only
       for UIDs the archive did not hold before this run sent them, so the
       copy it holds is the one sent (unless a third party stored the same
       UID in between).  Instances the archive held with other content
       (sent again in step 2, and an archive may keep its old copy) and
       instances stored with a warning status (the archive may have coerced
       attributes) are verified by retrieval instead.
   ``"retrieve"``
       Every instance sent is C-MOVEd back and its data set SHA-256
       compared with the catalog's (an uncompressed object returned in
       another uncompressed transfer syntax is first re-encoded, losslessly,
       in its own).  This proves the archive returns exactly the data set
       filed.
   ``"auto"`` (default)
       Commitment where the node accepts the Storage Commitment Push Model
       SOP Class, retrieve otherwise.

   A UID alone (C-FIND) never proves anything.  Any instance not proven is
   listed in ``FileReport.missing``; nothing of the patient is deleted.
4. Deletion, in an order such that a crash loses nothing (see
   :mod:`rtforge.net.catalog`): the rows become ``deleting``, with the
   archive and the time, committed; the files are unlinked and their folders
   flushed; the rows become ``filed``, committed.

Filing to a folder (a Part 10 file set on external storage, 4.1.2.3.3)
copies each file there atomically (``.<name>.<pid>.tmp``, then a rename; the
next filing to the folder removes what a killed one left) and verifies it by
reading it back.

Quarantined files are never filed, verified, deleted or restored (only
catalogued instances are).  For a conflicting copy (another file of a
catalogued SOP Instance UID, of other content; :mod:`rtforge.net.catalog`)
this is a decision: the catalogued copy is filed, verified and its file
deleted as before, since it is the copy the catalog's checksums and the
archive describe and the conflict does not make it less safe in the
archive; the conflicting copy stays local, listed by ``rtforge store ls``
and named by ``rtforge file``, until someone decides which copy is right.
So does a conflicting copy of a filed instance (an edited object of its SOP
Instance UID that arrived after filing, typically at the path the filed
file had): the archive's copy stays the catalogued one, and a patient with
nothing else local is refused (``no local instances``, the conflicting
copies counted), so the edited object is never sent under the filed one's
UID.

Restoring (Oncentra 4.2.3.3.2) opens a temporary Storage SCP with the
configured AE title and port, enumerates the filed instances on the archive
with C-FIND, C-MOVEs each study to itself, stops the SCP once the C-MOVE
association is released, and checks every expected instance arrived with the
data set checksum recorded at filing (re-encoded as above where the archive
changed the uncompressed transfer syntax).  Only when every one is intact:
the rows become ``restoring`` (committed); each file is written back to its
recorded path, File Meta Information included (byte-identical to the one
filed), through ``.<name>.<pid>.tmp`` and a rename; the rows become
``local`` (committed); the received copies are removed.  Only instances filed
from this catalog can be restored: their records name the archive.  An
incomplete restore is reported; what arrived stays in the aside folder and
the records stay filed.  Restore never writes over a file: when a filed
row's path holds one (after the recovery below, a conflicting copy kept
aside), it refuses before anything is retrieved, naming the file; once
someone has moved it away, restore writes the archive's copy there and the
quarantine row goes (:meth:`~rtforge.net.catalog.Catalog.mark_restored`).

Crash recovery: what the temporary SCP receives (in both commands) goes to
``.restore/<name>.<pid>.partial`` beside the catalog, removed when the command
ends.  Every ``file`` and ``restore`` first reconciles what a killed run
left: ``.partial`` folders of processes that no longer exist are removed,
and :meth:`~rtforge.net.catalog.Catalog.recover` settles ``deleting`` and
``restoring`` rows (and ``filed`` rows whose file is back) from the disk and
removes their stale temporary files: a file of the recorded content makes
the row local, one of other content is kept aside as a conflicting copy and
the row is filed (the archive holds the instance), in the order the
catalog's notes give.  A kill before the deletion step leaves
every row local and every file in place; the archive may hold copies, which
the next run proves identical and does not send again.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import os
import re
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydicom import dcmread, dcmwrite
from pydicom.errors import InvalidDicomError
from pydicom.filebase import DicomBytesIO
from pydicom.uid import ImplicitVRLittleEndian

from rtforge.config import Node
from rtforge.errors import InvalidInputError, NetworkError
from rtforge.net._part10 import uid_problem
from rtforge.net.catalog import (
    Catalog,
    InstanceRecord,
    InstanceState,
    conflicting_copies,
    file_sha256,
    pid_alive,
    scan_folders,
    split_part10,
    temporary_path,
)
from rtforge.net.commitment import request_commitment
from rtforge.net.nodes import resolve_node
from rtforge.net.query import QueryLevel, ServiceRejected, find, move
from rtforge.net.receiver import StorageSCP, StoredObject
from rtforge.net.store import (
    UNCOMPRESSED_TRANSFER_SYNTAXES,
    decompress_file,
    encode_for_transfer_syntax,
    send,
)
from rtforge.net.tls import listener_context

__all__ = ["FOLDER_PREFIX", "FileReport", "RestoreReport", "file_case", "restore_case"]

logger = logging.getLogger(__name__)

#: How a folder archive is named in the catalog: ``folder:/absolute/path``.
FOLDER_PREFIX = "folder:"
_UID_RE = re.compile(r"^[0-9]+(\.[0-9]+)*$")
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
#: A folder of the temporary SCP while a command runs: ``<name>.<pid>.partial``.
_PARTIAL_RE = re.compile(r"^.+\.(?P<pid>[0-9]+)\.partial$")


@dataclass
class FileReport:
    """What :func:`file_case` did.

    Parameters
    ----------
    patient_id : str
    archive : str
        Where to (``AET@HOST:PORT`` or ``folder:PATH``).
    total : int
        Local instances to file.
    already : int
        Held by the archive before sending (an earlier, interrupted run
        stored them) and proven identical by retrieval; not sent again.
    sent : int
        Stored by the archive (or copied to the folder) in this run.
    verified : int
        Proven held by the archive (identical, where retrieved).
    deleted : int
        Local files deleted (their records are now filed).
    decompressed : int
        Sent decompressed because the archive accepts none of their compressed
        syntax (:func:`rtforge.net.store.send`); their local files are now the
        decompressed copies.
    missing : list of str
        SOP Instance UIDs not stored, or not proven held (or identical) in
        the archive.
    differed : list of str
        SOP Instance UIDs the archive already held with other content (or
        could not return): sent again.
    verified_by : list of str
        How the instances were proven: ``"retrieve"`` (C-MOVE back,
        checksum), ``"commitment"`` (Storage Commitment), ``"read back"``
        (folder).
    failure : str or None
        Why nothing was deleted.
    """

    patient_id: str
    archive: str
    total: int = 0
    already: int = 0
    sent: int = 0
    verified: int = 0
    deleted: int = 0
    decompressed: int = 0
    missing: list[str] = field(default_factory=list)
    differed: list[str] = field(default_factory=list)
    verified_by: list[str] = field(default_factory=list)
    failure: str | None = None

    @property
    def ok(self) -> bool:
        """Whether every instance was filed and its local file deleted."""
        return self.failure is None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"patient_id": self.patient_id, "archive": self.archive, "total": self.total,
                "already": self.already, "sent": self.sent, "verified": self.verified,
                "deleted": self.deleted, "decompressed": self.decompressed,
                "missing": self.missing, "differed": self.differed,
                "verified_by": self.verified_by, "failure": self.failure, "ok": self.ok}


@dataclass
class RestoreReport:
    """What :func:`restore_case` did.

    Parameters
    ----------
    patient_id : str
    archives : list of str
        Where the filed instances were.
    expected : int
        Filed instances of the patient.
    received : int
        Objects that arrived (or were read back from a folder).
    restored : int
        Instances written back and marked local.
    missing : list of str
        Expected SOP Instance UIDs that did not arrive, or arrived with
        another checksum.
    aside : Path or None
        Where what arrived is kept when the restore is incomplete.
    failure : str or None
        Why the restore is incomplete.
    """

    patient_id: str
    archives: list[str] = field(default_factory=list)
    expected: int = 0
    received: int = 0
    restored: int = 0
    missing: list[str] = field(default_factory=list)
    aside: Path | None = None
    failure: str | None = None

    @property
    def ok(self) -> bool:
        """Whether every filed instance is local again."""
        return self.failure is None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {"patient_id": self.patient_id, "archives": self.archives,
                "expected": self.expected, "received": self.received, "restored": self.restored,
                "missing": self.missing, "aside": None if self.aside is None else str(self.aside),
                "failure": self.failure, "ok": self.ok}


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a flushed temporary file and a rename."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temporary_path(path)
    try:
        with open(temp, "wb") as fp:
            fp.write(data)
            fp.flush()
            os.fsync(fp.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def _folder_path(folder: Path, record: InstanceRecord) -> Path:
    """``FOLDER/<PatientID>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``."""
    for uid in (record.study_uid, record.series_uid, record.sop_instance_uid):
        if not _UID_RE.match(uid) or len(uid) > 64:
            raise InvalidInputError(f"{uid!r} is not a valid UID; cannot name its file",
                                    path=record.path)
    patient = _UNSAFE.sub("_", record.patient_id).lstrip(".") or "NO_PATIENT_ID"
    return folder / patient / record.study_uid / record.series_uid / \
        f"{record.sop_instance_uid}.dcm"


def _archive_has(node: Node, records: Sequence[InstanceRecord], ae_title: str) -> set[str]:
    """SOP Instance UIDs the archive answers at IMAGE level, queried series by series."""
    present: set[str] = set()
    for study_uid, series_uid in dict.fromkeys((r.study_uid, r.series_uid) for r in records):
        for match in find(node, QueryLevel.IMAGE, filters={"StudyInstanceUID": study_uid,
                                                           "SeriesInstanceUID": series_uid},
                          ae_title=ae_title):
            present.add(str(match.get("SOPInstanceUID", "")))
    return present


def _file_to_folder(folder: Path, records: Sequence[InstanceRecord], report: FileReport,
                    progress: Callable[[int, int], None] | None) -> None:
    """Copy each file atomically, then read each copy back and compare its checksum."""
    scan_folders(_folder_path(folder, r) for r in records)  # a killed run's temporaries
    for record in records:
        try:
            _atomic_write(_folder_path(folder, record), record.path.read_bytes())
        except OSError as exc:
            report.failure = f"cannot copy {record.path} to {folder}: {exc.strerror or exc}"
            report.missing = [r.sop_instance_uid for r in records[report.sent:]]
            return
        report.sent += 1
        if progress is not None:
            progress(report.sent, report.total)
    report.missing = [r.sop_instance_uid for r in records
                      if file_sha256(_folder_path(folder, r)) != r.sha256]
    report.verified = len(records) - len(report.missing)


@dataclass(frozen=True)
class _Listener:
    """The temporary Storage SCP (and Storage Commitment report listener) of a command."""

    ae_title: str
    port: int
    host: str


def _partial_folder(catalog: Catalog, name: str) -> Path:
    """A new folder for what the temporary SCP receives, removed when the command ends."""
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S%f")
    return catalog.path.parent / ".restore" / \
        f"{_UNSAFE.sub('_', name)}-{stamp}.{os.getpid()}.partial"


def _recover(catalog: Catalog) -> None:
    """Reconcile what a killed ``file`` or ``restore`` left (module notes, crash recovery)."""
    root = catalog.path.parent / ".restore"
    if root.is_dir():
        for entry in root.iterdir():
            match = _PARTIAL_RE.match(entry.name)
            if match and entry.is_dir() and not pid_alive(int(match["pid"])):
                logger.warning("removing %s, left by an interrupted file or restore", entry)
                shutil.rmtree(entry, ignore_errors=True)
    catalog.recover()


def _retrieve_identical(node: Node, records: Sequence[InstanceRecord], aside: Path,
                        listener: _Listener, ae_title: str) -> tuple[set[str], str | None]:
    """C-MOVE ``records`` back to the temporary SCP: (UIDs that came back identical, failure)."""
    try:
        arrived, failure = _receive_from_node(node, records, aside, listener=listener,
                                              ae_title=ae_title, progress=None)
        good, _ = _check_arrived(records, arrived)
    finally:
        shutil.rmtree(aside, ignore_errors=True)
    return set(good), failure


def _commit(node: Node, records: Sequence[InstanceRecord], listener: _Listener,
            report: FileReport) -> set[str] | None:
    """UIDs the archive commits to; ``None`` when it does not support Storage Commitment."""
    try:
        result = request_commitment(node, [(r.sop_class_uid, r.sop_instance_uid)
                                           for r in records],
                                    ae_title=listener.ae_title, listen_port=listener.port,
                                    listen_host=listener.host)
    except ServiceRejected:
        if node.verify == "commitment":
            raise
        return None
    report.verified_by.append("commitment")
    for uid, reason in result.failed.items():
        logger.warning("%s did not commit to %s (Failure Reason 0x%04X)", node, uid, reason)
    return result.committed


def _prove_sent(node: Node, sent: Sequence[InstanceRecord], trust_commitment: set[str],
                listener: _Listener, aside: Path, ae_title: str, report: FileReport) -> set[str]:
    """Step 3 of the module notes: the UIDs of ``sent`` proven held by the archive.

    ``trust_commitment``: the UIDs a commitment may prove (the archive did not
    hold them before, and stored them without a warning).
    """
    committed = None
    fresh = [r for r in sent if r.sop_instance_uid in trust_commitment]
    if fresh and node.verify != "retrieve":
        committed = _commit(node, fresh, listener, report)
    proven = set(committed or ())
    rest = [r for r in sent if committed is None or r.sop_instance_uid not in trust_commitment]
    if rest:
        good, failure = _retrieve_identical(node, rest, aside, listener, ae_title)
        proven |= good
        if "retrieve" not in report.verified_by:
            report.verified_by.append("retrieve")
        if failure is not None and len(good) < len(rest):
            report.failure = f"verification by retrieval failed: {failure}"
    return proven


def _keep_decompressed(catalog: Catalog, records: Sequence[InstanceRecord],
                       paths: Sequence[Path]) -> list[InstanceRecord]:
    """Replace each file sent decompressed by its decompressed copy (step 2 of the module
    notes), re-index it, and return ``records`` with their rows as they now are."""
    for path in paths:
        ds = decompress_file(path)
        ds.file_meta.TransferSyntaxUID = ImplicitVRLittleEndian
        buffer = DicomBytesIO()
        dcmwrite(buffer, ds, enforce_file_format=True)
        _atomic_write(path, buffer.getvalue())
    catalog.import_paths(paths)
    changed = {str(p) for p in paths}
    fresh = {r.sop_instance_uid: r for r in catalog.instances(records[0].patient_id)
             if str(r.path) in changed}
    return [fresh.get(r.sop_instance_uid, r) for r in records]


def _file_to_node(catalog: Catalog, node: Node, records: Sequence[InstanceRecord],
                  report: FileReport, ae_title: str, listener: _Listener, aside: Path,
                  progress: Callable[[int, int], None] | None,
                  allow_lossy_decompress: bool) -> None:
    """Steps 1 to 3 of the module notes: what the archive holds, send, prove."""
    try:
        before = _archive_has(node, records, ae_title)
        held = [r for r in records if r.sop_instance_uid in before]
        identical = _retrieve_identical(node, held, aside, listener, ae_title)[0] \
            if held else set()
    except NetworkError as exc:
        report.failure = f"the archive cannot be queried or retrieved from: {exc}"
        report.missing = [r.sop_instance_uid for r in records]
        return
    report.already = len(identical)
    report.differed = [r.sop_instance_uid for r in held if r.sop_instance_uid not in identical]
    if report.differed:
        logger.warning("%s holds %d instance(s) with other content (or could not return "
                       "them): sending them again", node, len(report.differed))
    if identical:
        report.verified_by.append("retrieve")
    to_send = [r for r in records if r.sop_instance_uid not in identical]
    proven = set(identical)
    if to_send:
        store = send([r.path for r in to_send], node, ae_title=ae_title, progress=progress,
                     allow_lossy_decompress=allow_lossy_decompress)
        report.sent, report.decompressed = store.sent, len(store.decompressed)
        if store.decompressed:
            to_send = _keep_decompressed(catalog, to_send, store.decompressed)
        if not store.ok:
            unsent = {str(p) for p in store.remaining} | {str(i.file) for i in store.refused}
            if store.failed is not None:
                unsent.add(str(store.failed.file))
                report.failure = f"storing {store.failed.file} failed: {store.failed.reason}"
            else:
                first = store.refused[0]
                report.failure = (f"{len(store.refused)} not sent, first {first.file}: "
                                  f"{first.reason}")
            report.missing = [r.sop_instance_uid for r in to_send if str(r.path) in unsent]
            return
        coerced = {str(w.file) for w in store.warnings}
        trust = {r.sop_instance_uid for r in to_send
                 if r.sop_instance_uid not in before and str(r.path) not in coerced}
        try:
            proven |= _prove_sent(node, to_send, trust, listener, aside, ae_title, report)
        except NetworkError as exc:
            report.failure = f"verification failed: {exc}"
    report.missing = [r.sop_instance_uid for r in records if r.sop_instance_uid not in proven]
    report.verified = len(records) - len(report.missing)


def _delete_local(catalog: Catalog, records: Sequence[InstanceRecord], archive: str) -> int:
    """Step 4 of the module notes; the count deleted."""
    uids = [r.sop_instance_uid for r in records]
    catalog.mark_deleting(uids, archive)
    folders: set[Path] = set()
    for record in records:
        record.path.unlink(missing_ok=True)
        folders.add(record.path.parent)
    for folder in folders:
        if folder.is_dir():
            _fsync_dir(folder)
    catalog.mark_filed(uids)
    return len(uids)


def file_case(catalog: Catalog, patient_id: str, to: Node | str | os.PathLike[str], *,
              study_uid: str | None = None, ae_title: str = "RTFORGE",
              scp_ae_title: str = "RTFORGE_RST", scp_port: int = 11113, scp_host: str = "",
              progress: Callable[[int, int], None] | None = None,
              allow_lossy_decompress: bool = False) -> FileReport:
    """File a patient's local instances (or one study's) to an archive node or a folder.

    Parameters
    ----------
    catalog : Catalog
        The local store's catalog.
    patient_id : str
    to : Node, str or path-like
        The archive: a :class:`~rtforge.config.Node` (its ``verify`` says
        how the copies are proven, see the module notes), or a folder (a
        ``str`` or path) where a Part 10 file set is written.
    study_uid : str, optional
        Only this study.
    ae_title : str
        Our (calling) AE title for C-FIND, C-STORE and C-MOVE.
    scp_ae_title : str
        AE title of the temporary SCP that receives the retrieved copies and
        the Storage Commitment report (the archive must know it, as for
        restore); also the calling AE title of the N-ACTION.
    scp_port : int
        Its port.
    scp_host : str
        Address it listens on (default every interface).
    progress : callable, optional
        Called as ``progress(sent, total)`` after each stored object.
    allow_lossy_decompress : bool
        Send lossy JPEG files decompressed when the archive does not accept
        their syntax (lossless ones always are); either way such a local file
        is replaced by its decompressed copy (see the module notes).

    Returns
    -------
    FileReport
        ``report.ok`` is false, with the reason and the SOP Instance UIDs
        not proven in the archive, when anything failed; nothing was deleted
        then.

    Raises
    ------
    InvalidInputError
        If the patient has no local instances or a recorded file is gone.
    """
    _recover(catalog)
    records = catalog.instances(patient_id, study_uid=study_uid, states=[InstanceState.LOCAL])
    what = f"patient {patient_id!r}" + (f", study {study_uid}" if study_uid else "")
    if not records:
        aside = [r for r in conflicting_copies(catalog.quarantined(patient_id))
                 if study_uid is None or r.study_uid == study_uid]
        kept = f"; {len(aside)} conflicting copy(ies) kept aside, never filed" if aside else ""
        raise InvalidInputError(f"{what} has no local instances in the catalog{kept} (see "
                                "'rtforge store ls')", path=catalog.path)
    gone = [r for r in records if not r.path.is_file()]
    if gone:
        raise InvalidInputError(f"{len(gone)} recorded file(s) of {what} are missing locally; "
                                "re-import the store ('rtforge store import')", path=gone[0].path)
    if isinstance(to, Node):
        _check_restorable(records, what, to)
        archive = str(to)
    else:
        folder = Path(to).resolve()
        archive = FOLDER_PREFIX + str(folder)
    report = FileReport(patient_id=patient_id, archive=archive, total=len(records))
    if isinstance(to, Node):
        _file_to_node(catalog, to, records, report, ae_title, _Listener(scp_ae_title, scp_port, scp_host),
                      _partial_folder(catalog, f"file-{patient_id}"), progress,
                      allow_lossy_decompress)
    else:
        _file_to_folder(folder, records, report, progress)
        report.verified_by.append("read back")
    if report.failure is None and report.missing:
        report.failure = (f"{len(report.missing)} of {len(records)} instance(s) not proven "
                          f"identical in {archive}")
    if report.failure is not None:
        logger.warning("filing %s to %s: %s; nothing deleted", what, archive, report.failure)
        return report
    report.deleted = _delete_local(catalog, records, archive)
    logger.info("filed %s to %s: %d instances, local files deleted", what, archive,
                report.deleted)
    return report


def _check_restorable(records: Sequence[InstanceRecord], what: str, node: Node) -> None:
    """Refuse to file to a node what could not come back through restore's receiver.

    The temporary SCP that takes back retrieved copies refuses an object whose SOP
    Instance, Series or Study Instance UID is not a valid UID (PS3.5 9.1), as every
    rtforge receiver does: such an object, once deleted here, could not be restored.
    """
    for record in records:
        for name, value in (("SOP Instance UID", record.sop_instance_uid),
                            ("Series Instance UID", record.series_uid),
                            ("Study Instance UID", record.study_uid)):
            problem = uid_problem(value)
            if problem is not None:
                raise InvalidInputError(
                    f"{what}: {name} {problem} ({ascii(value)}): restore could not take it "
                    f"back from {node}, so nothing is filed there; file to a folder "
                    "(--to-folder) or give the objects valid UIDs (rtforge relink)",
                    path=record.path)


def _as_filed(record: InstanceRecord, path: Path) -> bytes | None:
    """The data set of an arrived object, in the transfer syntax it was filed in.

    An archive may send an uncompressed object back in another uncompressed
    transfer syntax than the one it received (Orthanc: Explicit VR Little
    Endian for an object filed in Implicit VR): that is undone here, losslessly
    (:func:`rtforge.net.store.encode_for_transfer_syntax`); the checksum then
    tells whether it is the object filed.  ``None`` when it cannot be read.
    """
    try:
        dataset = split_part10(path.read_bytes())[1]
        if hashlib.sha256(dataset).hexdigest() == record.dataset_sha256:
            return dataset
        ds = dcmread(path)
        received = str(ds.file_meta.get("TransferSyntaxUID", ""))
        if received != record.transfer_syntax and received in UNCOMPRESSED_TRANSFER_SYNTAXES \
                and record.transfer_syntax in UNCOMPRESSED_TRANSFER_SYNTAXES:
            return encode_for_transfer_syntax(ds, record.transfer_syntax)
        return dataset
    except (OSError, InvalidDicomError, InvalidInputError, EOFError, ValueError) as exc:
        logger.warning("%s: cannot read what arrived: %s", path, exc)
        return None


def _check_arrived(records: Sequence[InstanceRecord], arrived: dict[str, Path]
                   ) -> tuple[dict[str, bytes], list[str]]:
    """Data sets of the expected instances that arrived intact; the others' UIDs."""
    good: dict[str, bytes] = {}
    missing: list[str] = []
    for record in records:
        path = arrived.get(record.sop_instance_uid)
        dataset = None if path is None else _as_filed(record, path)
        if dataset is not None and hashlib.sha256(dataset).hexdigest() == record.dataset_sha256:
            good[record.sop_instance_uid] = dataset
        else:
            missing.append(record.sop_instance_uid)
    return good, missing


#: Simultaneous associations the temporary restore SCP accepts.
_RESTORE_ASSOCIATIONS = 4


def _receive_from_node(node: Node, records: Sequence[InstanceRecord], aside: Path, *,
                       listener: _Listener, ae_title: str,
                       progress: Callable[[int, int], None] | None
                       ) -> tuple[dict[str, Path], str | None]:
    """Run the temporary SCP around C-FIND and C-MOVE; (SOP Instance UID -> file, failure)."""
    arrived: dict[str, Path] = {}

    def on_stored(obj: StoredObject) -> None:
        if obj.path is not None:
            arrived[obj.sop_instance_uid] = obj.path
            if progress is not None:
                progress(len(arrived), len(records))

    # The archive may open a new association for each group of transfer syntaxes and
    # start the next before the last is fully closed: one at a time is not enough.
    scp = StorageSCP(aside, ae_title=listener.ae_title, port=listener.port, host=listener.host,
                     max_associations=_RESTORE_ASSOCIATIONS, network_timeout=node.timeout,
                     ssl_context=listener_context(node), on_stored=on_stored)
    failure = None
    scp.start()
    try:
        available = _archive_has(node, records, ae_title)
        absent = sum(r.sop_instance_uid not in available for r in records)
        if absent:
            failure = f"{absent} instance(s) not found in {node} by C-FIND"
        for study_uid in dict.fromkeys(r.study_uid for r in records):
            move(node, listener.ae_title, study_uid=study_uid, ae_title=ae_title)
    except NetworkError as exc:
        failure = str(exc)
    finally:
        scp.stop()
    return arrived, failure


def _receive_from_folder(folder: Path, records: Sequence[InstanceRecord]) -> dict[str, Path]:
    return {r.sop_instance_uid: _folder_path(folder, r) for r in records
            if _folder_path(folder, r).is_file()}


def restore_case(catalog: Catalog, patient_id: str, *, scp_ae_title: str, scp_port: int,
                 scp_host: str = "", node: Node | None = None, ae_title: str = "RTFORGE",
                 aside_dir: str | os.PathLike[str] | None = None,
                 progress: Callable[[int, int], None] | None = None) -> RestoreReport:
    """Bring a filed patient back from the archive its records name.

    Parameters
    ----------
    catalog : Catalog
    patient_id : str
    scp_ae_title : str
        AE title of the temporary Storage SCP (the archive must know it as a
        move destination).
    scp_port : int
        Its port.
    scp_host : str
        Address it listens on (default every interface).
    node : Node, optional
        The archive node to use instead of the recorded ``AET@HOST:PORT``
        (for a changed timeout or address); its AE title must match the record.
    ae_title : str
        Our (calling) AE title.
    aside_dir : path-like, optional
        Where received objects land (default
        ``.restore/<patient>-<time>.<pid>.partial`` beside the catalog,
        renamed without ``.<pid>.partial`` and kept when the restore is
        incomplete; removed by the next command when this one is killed).
    progress : callable, optional
        Called as ``progress(received, expected)`` as objects arrive.

    Returns
    -------
    RestoreReport
        ``report.ok`` is false, with the reason and the missing UIDs, when
        the restore is incomplete; the records then stay filed.

    Raises
    ------
    InvalidInputError
        If nothing of the patient is filed, or ``node`` is not the archive
        the records name.
    NetworkError
        If the temporary SCP cannot listen.
    """
    _recover(catalog)
    records = catalog.instances(patient_id, states=[InstanceState.FILED])
    if not records:
        raise InvalidInputError(f"patient {patient_id!r} has no filed instances in the catalog "
                                "(only cases filed from this system can be restored)",
                                path=catalog.path)
    _check_paths_free(records, patient_id)
    aside = Path(aside_dir) if aside_dir is not None else _partial_folder(catalog, patient_id)
    by_archive: dict[str, list[InstanceRecord]] = {}
    for record in records:
        by_archive.setdefault(record.archive or "", []).append(record)
    report = RestoreReport(patient_id=patient_id, archives=sorted(by_archive),
                           expected=len(records))
    arrived: dict[str, Path] = {}
    failures = []
    for archive, members in by_archive.items():
        if archive.startswith(FOLDER_PREFIX):
            arrived.update(_receive_from_folder(Path(archive[len(FOLDER_PREFIX):]), members))
            continue
        recorded = resolve_node(archive)
        if node is not None and node.ae_title != recorded.ae_title:
            raise InvalidInputError(f"the records name archive {archive}, not {node}")
        got, failure = _receive_from_node(node or recorded, members, aside,
                                          listener=_Listener(scp_ae_title, scp_port, scp_host),
                                          ae_title=ae_title, progress=progress)
        arrived.update(got)
        if failure is not None:
            failures.append(failure)
    report.received = len(arrived)
    good, report.missing = _check_arrived(records, arrived)
    if report.missing and not failures:
        failures.append(f"{len(report.missing)} of {len(records)} instance(s) did not arrive "
                        "intact")
    if failures:
        report.failure = "; ".join(failures)
        report.aside = _keep_aside(aside) if aside_dir is None else aside
        report.aside = report.aside if report.aside.exists() else None
        logger.warning("restore of %r incomplete: %s; records stay filed", patient_id,
                       report.failure)
        return report
    uids = [r.sop_instance_uid for r in records]
    catalog.mark_restoring(uids)
    for record in records:
        _atomic_write(record.path, catalog.meta(record.sop_instance_uid)
                      + good[record.sop_instance_uid])
    catalog.mark_restored(uids)
    report.restored = len(records)
    for path in arrived.values():
        if aside in path.parents:
            path.unlink(missing_ok=True)
    if aside_dir is None:
        shutil.rmtree(aside, ignore_errors=True)
    logger.info("restored %r: %d instances", patient_id, report.restored)
    return report


def _check_paths_free(records: Sequence[InstanceRecord], patient_id: str) -> None:
    """Refuse to restore over a file: at a filed row's path, after :meth:`Catalog.recover`,
    a file is one of other content, kept aside (a conflicting copy, see the module notes)."""
    taken = [r for r in records if r.path.exists()]
    if taken:
        raise InvalidInputError(
            f"restore of patient {patient_id!r}: {len(taken)} recorded path(s) hold a file of "
            f"other content than the filed instance, first SOP Instance UID "
            f"{taken[0].sop_instance_uid} (a conflicting copy listed by 'rtforge store ls', or "
            "not a DICOM object); restore never writes over a file: move it away once you "
            "decided which copy is right, then restore again", path=taken[0].path)


def _keep_aside(partial: Path) -> Path:
    """The temporary SCP's folder of an incomplete restore, kept: ``.partial`` dropped."""
    kept = partial.with_name(partial.name.rsplit(".", 2)[0])
    try:
        partial.rename(kept)
    except OSError:
        return partial
    return kept
