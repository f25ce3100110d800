"""Storage SOP Classes and Verification as SCP: a receiver that loses nothing.

Conformance (Oncentra 4.2.2, tables 4-18 to 4-22, but stricter where it
matters):

- every Storage SOP Class pynetdicom knows (PS3.4 B.5) and Verification;
- transfer syntaxes Implicit VR LE, Explicit VR LE, Explicit VR BE, JPEG
  Baseline, JPEG Lossless SV1 and RLE Lossless (table 4-22); the compressed
  ones can be refused; of those the requestor proposes in one context, the
  requestor's first wins (it knows its data: nothing needs transcoding);
- up to ``max_associations`` simultaneous associations (table 4-20 says 10);
  one more is rejected with A-ASSOCIATE-RJ (transient, local limit
  exceeded), never dropped;
- an optional calling-AE allowlist (rejected: permanent, calling AE title not
  recognized) and optional TLS.

Admission control (:class:`~rtforge.config.ReceiveLimits`, ``[network]``
and ``rtforge receive`` flags; defaults in brackets).  What a peer that
says little, slowly, or declares much can hold is bounded:

- *pending connections* (accepted, not yet answered: TLS handshake and
  A-ASSOCIATE-RQ) are counted apart from the association slots: at most
  ``max_pending`` [64] in all and ``max_pending_per_address`` [8] from one
  IP address.  One more is closed at once, with a log line (nothing was
  asked yet, so there is nothing to reject);
- ``acse_timeout`` [10 s] is the whole time from the connection to the
  last byte of its A-ASSOCIATE-RQ (the TLS handshake included: ARTIM,
  PS3.8 9.1.5), however the bytes trickle in; past it the connection is
  closed with a log line;
- one IP address holds at most ``max_associations_per_address`` [8] of the
  association slots at once, so that slow associations from one host leave
  slots for the others; one more is rejected (transient, local limit
  exceeded);
- the calling AE title is judged as soon as the request's fixed fields are
  read (74 bytes), before its variable items; a protocol version other than
  1 is rejected (permanent, protocol version not supported);
- once associated, each PDU has ``pdu_timeout`` [30 s] from its header to
  its last byte; while a message arrives, every ``rate_window`` [10 s] must
  bring ``min_rate`` [1024] bytes per second on average (0: no minimum);
  between messages an association may stay silent ``network_timeout``
  [60 s].  Past any of these the association is aborted (A-ABORT, service
  provider) with a log line, and its slot is free again;
- a P-DATA-TF longer than the Maximum Length we announce (``max_pdu``) by
  more than :data:`~rtforge.net._upper_layer.PDU_TOLERANCE` (64) bytes
  is aborted (A-ABORT, invalid PDU parameter value);
- memory: no declared length is ever allocated.  PDUs are read in pieces of
  at most 256 KiB (an A-ASSOCIATE-RQ: 1 MiB at most); an association holds
  that buffer and the object in transfer, in memory up to 32 MiB, beyond it
  on disk: about 33 MiB per association, whatever ``max_pdu`` is.

Each object is kept exactly as received: the data set bytes go unchanged
into a Part 10 file behind a File Meta Information header, under
``OUT/<PatientID>/<StudyInstanceUID>/<SeriesInstanceUID>/<SOPInstanceUID>.dcm``.
An answered success is a stored object: no two objects ever get one name.
The UIDs name their file and folders as they are, so they must be valid
UIDs (PS3.5 9.1: ASCII digits and dots, components without leading zeros,
at most 64 characters); the Patient ID folder is the ID as received with
every byte other than letters, digits, ``-``, ``_`` and ``.`` (and a leading
dot) written ``%XX`` (an empty ID: ``%NO_PATIENT_ID``); an object without
Study or Series Instance UID goes to ``NO_STUDY_UID`` / ``NO_SERIES_UID``.
The object is gathered in memory (up to 32 MiB) and written, while it
arrives, to ``OUT/.incoming/<random>.part``; once complete it is parsed
(structure only, values larger than 1 KiB are skipped), flushed as the
:class:`SyncPolicy` says, renamed to its final name, and only then is
success answered (:mod:`rtforge.net._part10`).  A write that fails answers
0xA700 (Refused: Out of Resources) and deletes the partial file; a data set
that cannot be parsed, or lacks its SOP Class/Instance UIDs, answers 0xC000
(Cannot understand); one whose UIDs differ from the request answers 0xA900.

Invalid UIDs answer 0xA900 (Error: Data Set does not match SOP Class, PS3.4
B.2.3; pynetdicom's storage status table) with the attribute, the value and
the problem in Error Comment: SOP Class UID, SOP Instance UID, Study and
Series Instance UID of the data set (Type 1 attributes of every IOD, of VR
UI), and the Affected SOP Class and Instance UIDs of the request, including
values with bytes outside ASCII.  The data set is well formed and was
understood (0xC000 stays for data sets that cannot be parsed); it does not
conform to its IOD.  Nothing of the object is kept, the response leaves out
an Affected SOP Instance UID it cannot encode, and the association goes on.
Leftover ``.part`` files (never acknowledged) are deleted when the receiver
starts.

What success promises (``sync``, ``rtforge receive --sync``):

- ``object`` (the default): the file's data (fdatasync) and its name (fsync
  of the folder after the rename) are on the disk before success is
  answered, object by object.  An object answered with success survives a
  power cut or a kernel crash.  This costs two disk flushes per object, and
  a sender that waits for each response (dcmtk ``storescu``, ``rtforge
  send``) cannot overlap them with anything: on the benchmark machine (ext4
  on a virtual disk, ``bench/compare_store.py``) they are half of the time
  per 512 KiB CT slice (2.4 ms against 1.2 ms), and far more while other
  work writes to the same filesystem.
- ``none`` (``--no-fsync``, ``durable=False``): no flush.  The file is
  still whole under its final name when success is answered (temporary
  name, then rename: never half-written under its final name), but objects
  answered in the last seconds before a power cut or a kernel crash (up to
  the kernel's write-back delay, about 30 s on Linux) can be lost; a crash
  of the receiver process alone loses nothing.  For a tmpfs, a disk with a
  protected write cache, or senders that resend.

Flushing once per batch of objects (one ``syncfs`` per association, say) was
left out on purpose: success would then be answered before the object is on
the disk, which is what ``none`` promises, not ``object``.

A SOP Instance UID received again (in this run, or already on disk at the
same place) is compared by content (transfer syntax and data set bytes) with
every copy stored: identical to one, it is a duplicate (success, counted,
one copy kept).  Other content is never dropped: by default
(:class:`DuplicatePolicy`) it is kept beside the first as ``<UID>_2.dcm``
(``_3`` ...; no valid UID contains ``_``), logged and counted in
:attr:`StorageSCP.conflicts`.

One receiver per folder: :meth:`StorageSCP.prepare` takes an ``flock`` on
``OUT/.rtforge-receive.lock`` (the kernel releases it when the process
ends, however it ends) before it deletes leftover partial files; a second
receiver on the same folder refuses to start.  The order of operations of
``rtforge receive --catalog`` and what its start-up reconciles after a
crash are in :mod:`rtforge.net.reconcile`.

Stopping (:meth:`StorageSCP.request_stop`, e.g. from SIGTERM) closes the
listening socket, lets every message in flight finish (file written and
answered), then aborts the associations at their next message boundary.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import logging
import os
import select
import socket
import ssl
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Collection, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from enum import Enum
from pathlib import Path
from types import TracebackType

from pydicom.uid import (
    UID,
    ExplicitVRBigEndian,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEGBaseline8Bit,
    JPEGLosslessSV1,
    RLELossless,
)
from pynetdicom import AllStoragePresentationContexts
from pynetdicom.pdu_primitives import A_ASSOCIATE
from pynetdicom.presentation import PresentationContext

from rtforge.config import ReceiveLimits, check_ae_title
from rtforge.errors import InvalidInputError, NetworkError
from rtforge.io.fileset import copy_names
from rtforge.net._admission import LogThrottle, PendingConnections
from rtforge.net._dimse import C_ECHO_RQ, C_ECHO_RSP, C_STORE_RQ, C_STORE_RSP, Command, encode_command
from rtforge.net._part10 import (
    PATIENT_ID,
    SERIES_UID,
    SOP_CLASS_UID,
    SOP_INSTANCE_UID,
    STUDY_UID,
    Arena,
    IncomingObject,
    file_meta,
    fsync_dir,
    uid_problem,
    unlink_quietly,
)
from rtforge.net._upper_layer import (
    APPLICATION_CONTEXT_NAME,
    RELEASE_RP_PDU,
    LimitExceeded,
    MessageReader,
    PduStream,
    PeerAborted,
    ProtocolError,
    ReleaseRequested,
    encode_associate_ac,
    encode_associate_rj,
    encode_message,
    read_associate_rq_head,
    read_associate_rq_rest,
)
from rtforge.net.echo import VERIFICATION_SOP_CLASS

__all__ = [
    "ACCEPTED_TRANSFER_SYNTAXES",
    "COMPRESSED_TRANSFER_SYNTAXES",
    "DuplicatePolicy",
    "SyncPolicy",
    "StoredObject",
    "StorageSCP",
]

logger = logging.getLogger(__name__)

#: Oncentra table 4-22.
ACCEPTED_TRANSFER_SYNTAXES: tuple[UID, ...] = (
    ExplicitVRLittleEndian, ImplicitVRLittleEndian, ExplicitVRBigEndian,
    JPEGBaseline8Bit, JPEGLosslessSV1, RLELossless)
#: The ones ``refuse_compressed`` leaves out (Oncentra table 4-29).
COMPRESSED_TRANSFER_SYNTAXES: tuple[UID, ...] = (JPEGBaseline8Bit, JPEGLosslessSV1, RLELossless)
_UNCOMPRESSED = (ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian)
_STORAGE_SOP_CLASSES = frozenset(str(cx.abstract_syntax) for cx in AllStoragePresentationContexts)

#: C-STORE statuses we answer (PS3.4 B.2.3).
_SUCCESS = 0x0000
_OUT_OF_RESOURCES = 0xA700
_DOES_NOT_MATCH = 0xA900
_CANNOT_UNDERSTAND = 0xC000

#: Bytes of a Patient ID kept as they are in its folder name; any other is written %XX.
_PLAIN = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.")
#: The folder of objects without a Patient ID (no escaped ID reads ``%N...``).
_NO_PATIENT_ID = "%NO_PATIENT_ID"
#: Longer escaped Patient IDs are cut and end in ``%%`` and their SHA-256 (file names: 255 bytes).
_LONGEST_NAME = 160
_INCOMING = ".incoming"
_PART = ".part"
#: Held (flock) by the receiver writing to the folder; a second one refuses to start.
LOCK_NAME = ".rtforge-receive.lock"


class DuplicatePolicy(str, Enum):
    """What to do with a SOP Instance UID that was already received with other content.

    Either way, a copy identical to one already stored (same transfer syntax,
    same data set bytes) is answered with success, counted as a duplicate and
    not written again.
    """

    KEEP_FIRST = "keep-first"
    """Keep the first copy under its name; keep the new one beside it (``<UID>_2.dcm`` ...)."""
    REPLACE = "replace"
    """Replace the earlier copy with the new one (atomically); the earlier one is deleted."""


class SyncPolicy(str, Enum):
    """When a received object is flushed to the disk: what a success status promises."""

    OBJECT = "object"
    """Flush each object's file and folder entry before answering success (default)."""
    NONE = "none"
    """Never flush: success means whole under its final name, in the operating system's cache."""


@dataclass(frozen=True)
class StoredObject:
    """One C-STORE the receiver answered.

    Parameters
    ----------
    sop_class_uid, sop_instance_uid : str
        From the request.
    calling_ae : str
        Who sent it.
    status : int
        What we answered.
    path : Path or None
        Where it is (for a duplicate kept first, the earlier copy); ``None``
        on failure.
    duplicate : bool
        Whether an identical copy was already stored (nothing was written).
    reason : str
        Why it failed, empty on success.
    conflict : bool
        Whether an object of the same SOP Instance UID but other content
        was already stored: this one was kept beside it (``path`` ends in
        ``_2.dcm`` ...) or, with :attr:`DuplicatePolicy.REPLACE`, replaced it.
    """

    sop_class_uid: str
    sop_instance_uid: str
    calling_ae: str
    status: int
    path: Path | None
    duplicate: bool = False
    reason: str = ""
    conflict: bool = False


@dataclass
class _Association:
    """What negotiation settled for one accepted association."""

    calling_ae: str
    peer: str
    contexts: dict[int, tuple[str, str]]  # context ID -> (abstract syntax, transfer syntax)
    peer_max_pdu: int


class _StoreFailed(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


def _patient_folder(patient_id: str) -> str:
    """The folder name of a Patient ID: injective, safe on any file system we write to.

    Letters, digits, ``-``, ``_`` and ``.`` (but not a leading dot) stay; every
    other byte of the value as received (``/``, space, ``%``, bytes outside
    ASCII ...) is written ``%XX``, so two different IDs never share a folder
    (``A/B`` is ``A%2FB``, ``A_B`` stays ``A_B``).  An empty ID gives
    :data:`_NO_PATIENT_ID`, which no escaped ID can be; an escaped ID longer
    than :data:`_LONGEST_NAME` is cut and ends in ``%%`` and the SHA-256 of
    the whole value (no escaped ID contains ``%%``).
    """
    raw = patient_id.encode("utf-8", "surrogateescape")
    if not raw:
        return _NO_PATIENT_ID
    pieces = [chr(b) if b in _PLAIN and (i or b != 0x2E) else f"%{b:02X}"
              for i, b in enumerate(raw)]
    name = "".join(pieces)
    if len(name) <= _LONGEST_NAME:
        return name
    kept, length = [], 0
    for piece in pieces:
        if length + len(piece) > _LONGEST_NAME // 2:
            break
        kept.append(piece)
        length += len(piece)
    return "".join(kept) + "%%" + hashlib.sha256(raw).hexdigest()


def _uid_failure(keyword: str, value: str) -> _StoreFailed | None:
    """The failure to answer for an invalid UID, or ``None`` (see the module's conformance notes)."""
    problem = uid_problem(value)
    if problem is None:
        return None
    return _StoreFailed(_DOES_NOT_MATCH, f"{keyword} {problem}: {ascii(value)}")


class _Discard:
    """Takes the data set of a message whose object is not kept; ``failure`` is then answered."""

    def __init__(self, failure: _StoreFailed | None = None) -> None:
        self.failure = failure

    def write(self, fragment: memoryview) -> None:
        del fragment


def _command_failure(command: Command) -> _StoreFailed | None:
    """Why a C-STORE-RQ's object cannot be kept, known from its command set alone."""
    return (_uid_failure("Affected SOP Class UID", command.affected_sop_class_uid or "")
            or _uid_failure("Affected SOP Instance UID", command.affected_sop_instance_uid or ""))


def _ascii_or_none(value: str | None) -> str | None:
    """``value`` when it can be sent back in a command set (ASCII), else ``None``."""
    return value if value is not None and value.isascii() else None


class StorageSCP:
    """A Storage and Verification SCP writing Part 10 files under ``out_dir``.

    Parameters
    ----------
    out_dir : path-like
        Root of the received files (created if missing).
    ae_title : str
        Our AE title (any Called AE Title is accepted; vendors' SCPs do the same).
    port : int
        TCP port; 0 picks a free one (see :attr:`port` once started).
    host : str
        Address to listen on; ``""`` means every interface.
    max_associations : int
        Simultaneous associations (default 10, Oncentra table 4-20).
    max_pdu : int
        Maximum Length we announce, in bytes (default 16384, Oncentra table 4-19).
    refuse_compressed : bool
        Refuse JPEG Baseline, JPEG Lossless and RLE (Oncentra table 4-29).
    allowed_aets : iterable of str, optional
        Calling AE titles allowed to associate; everyone when ``None``.
    duplicates : DuplicatePolicy or str
        What to do with a SOP Instance UID received twice (default keep-first).
    ssl_context : ssl.SSLContext, optional
        Server-side TLS context; set ``verify_mode`` to require client certificates.
    acse_timeout : float, optional
        Seconds a new connection has to send its whole A-ASSOCIATE-RQ (ARTIM;
        default ``limits.acse_timeout``, 10).
    network_timeout : float, optional
        Seconds an association may stay silent between messages (default
        ``limits.network_timeout``, 60).
    limits : ReceiveLimits, optional
        Admission limits (see the module notes); ``acse_timeout`` and
        ``network_timeout``, when given, take precedence over its fields.
    sync : SyncPolicy or str, optional
        What success promises (see :class:`SyncPolicy` and the module
        notes): ``"object"`` (default) flushes each file (fdatasync) and its
        folder (fsync) to the disk before answering success; ``"none"``
        skips both flushes: files still appear only whole, under their final
        name, but those answered in the last seconds before a power cut or a
        kernel crash can be lost.
    durable : bool, optional
        The older spelling: ``True`` is ``sync="object"``, ``False`` is
        ``sync="none"``.  Give one of the two.
    on_stored : callable, optional
        Called with a :class:`StoredObject` once each C-STORE's status is
        settled (the object stored as ``sync`` promises, or failed), just
        before the response is sent, from the association's thread.

    Raises
    ------
    InvalidInputError
        If a parameter is out of range, ``sync`` is not a :class:`SyncPolicy`,
        or ``sync`` and ``durable`` contradict each other.
    """

    def __init__(self, out_dir: str | os.PathLike[str], *, ae_title: str = "RTFORGE",
                 port: int = 11112, host: str = "", max_associations: int = 10,
                 max_pdu: int = 16384, refuse_compressed: bool = False,
                 allowed_aets: Iterable[str] | None = None,
                 duplicates: DuplicatePolicy | str = DuplicatePolicy.KEEP_FIRST,
                 ssl_context: ssl.SSLContext | None = None, acse_timeout: float | None = None,
                 network_timeout: float | None = None, sync: SyncPolicy | str | None = None,
                 durable: bool | None = None,
                 on_stored: Callable[[StoredObject], None] | None = None,
                 limits: ReceiveLimits | None = None) -> None:
        self.ae_title = check_ae_title(ae_title)
        if not 0 <= port <= 65535:
            raise InvalidInputError(f"port must be 0 to 65535, got {port}")
        if not 1 <= max_associations <= 1000:
            raise InvalidInputError(f"max_associations must be 1 to 1000, got {max_associations}")
        if not 4096 <= max_pdu < 2**32:
            raise InvalidInputError(f"max_pdu must be 4096 to 4294967295 bytes, got {max_pdu}")
        given = {name: value for name, value in (("acse_timeout", acse_timeout),
                                                 ("network_timeout", network_timeout))
                 if value is not None}
        self.limits = replace(limits or ReceiveLimits(), **given)
        try:
            policy = SyncPolicy(sync) if sync is not None else None
        except ValueError:
            raise InvalidInputError(f"sync must be one of {', '.join(p.value for p in SyncPolicy)}, "
                                    f"got {sync!r}") from None
        implied = None if durable is None else SyncPolicy.OBJECT if durable else SyncPolicy.NONE
        if policy is not None and implied is not None and policy is not implied:
            raise InvalidInputError(f"sync={policy.value!r} contradicts durable={durable}: give one")
        self.sync = policy or implied or SyncPolicy.OBJECT
        self.out_dir = Path(out_dir)
        self._requested_port = port
        self.host = host
        self.max_associations = max_associations
        self.max_pdu = max_pdu
        self.transfer_syntaxes = tuple(ts for ts in ACCEPTED_TRANSFER_SYNTAXES
                                       if not (refuse_compressed
                                               and ts in COMPRESSED_TRANSFER_SYNTAXES))
        self.allowed_aets = None if allowed_aets is None else frozenset(
            check_ae_title(a, "allowed AE title") for a in allowed_aets)
        self.duplicates = DuplicatePolicy(duplicates)
        self.ssl_context = ssl_context
        self.acse_timeout = self.limits.acse_timeout
        self.network_timeout = self.limits.network_timeout
        self._pending = PendingConnections(self.limits.max_pending,
                                           self.limits.max_pending_per_address)
        self.on_stored = on_stored
        self._listener: socket.socket | None = None
        self._stop_r = self._stop_w = -1  # a pipe, readable once a stop is requested
        self._lock = threading.Lock()
        self._commit_lock = threading.Lock()
        self._handlers: set[threading.Thread] = set()
        self._active = 0
        self._active_by_address: Counter[str] = Counter()
        self._log_throttle = LogThrottle()
        self._seen: dict[str, list[Path]] = {}  # SOP Instance UID -> copies stored in this run
        self._folders: set[Path] = set()  # output folders known to exist
        self._thread: threading.Thread | None = None
        #: Threads that wait for fdatasync while the associations' threads parse.
        self._flusher = ThreadPoolExecutor(max_workers=max_associations,
                                           thread_name_prefix="scp-flush")
        self._stopping = False
        self._lock_fd = -1  # the open lock file while we hold it
        self._serving = False
        self.stored = 0
        self.duplicate_count = 0
        self.conflicts = 0
        self.failed = 0
        self.rejected = 0

    @property
    def pending(self) -> int:
        """Connections accepted and not yet answered (TLS handshake, A-ASSOCIATE-RQ) now."""
        return self._pending.total

    @property
    def durable(self) -> bool:
        """Whether each object is flushed to the disk before success is answered."""
        return self.sync is SyncPolicy.OBJECT

    # -- life cycle -----------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The port we listen on (the real one when 0 was asked for), once started."""
        if self._listener is None:
            return self._requested_port
        return int(self._listener.getsockname()[1])

    def prepare(self) -> None:
        """Create the output folder, lock it, and delete the partial files an earlier run left.

        The lock (``flock`` on ``OUT/.rtforge-receive.lock``) is held until
        the receiver stops, and the kernel drops it when the process ends,
        however it ends: a second receiver on the same folder refuses to
        start instead of deleting the first one's files in transfer, and the
        lock of a dead process never blocks.  Only under the lock are the
        partial files of ``OUT/.incoming`` deleted: they belong to a receiver
        that died (never acknowledged).  :meth:`listen` calls it when not done
        yet; call it first to do work of your own under the lock before the
        port opens (``rtforge receive --catalog`` reconciles the catalog).

        Raises
        ------
        InvalidInputError
            If the output folder cannot be created, or another receiver holds it.
        """
        if self._lock_fd >= 0:
            return
        incoming = self.out_dir / _INCOMING
        try:
            incoming.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.out_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise InvalidInputError(f"cannot create the output folder: {exc}",
                                    path=self.out_dir) from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            holder = os.read(fd, 32).decode("ascii", "replace").strip() or "unknown"
            os.close(fd)
            raise InvalidInputError(f"another receiver (process {holder}) is writing to this "
                                    "folder; give each receiver its own --out",
                                    path=self.out_dir) from None
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode("ascii"))
        self._lock_fd = fd
        stale = list(incoming.glob("*" + _PART))
        for path in stale:
            unlink_quietly(path)
        if stale:
            logger.warning("deleted %d partial file(s) left by an earlier run (never acknowledged)",
                           len(stale))

    def _unlock(self) -> None:
        """Let another receiver use the folder (the lock file stays: deleting it would race)."""
        fd, self._lock_fd = self._lock_fd, -1
        if fd >= 0:
            os.close(fd)  # closing the only descriptor of the open file drops the flock

    def listen(self) -> None:
        """Prepare the output folder (:meth:`prepare`) and bind the port.

        :meth:`start` and :meth:`serve_forever` do it when it is not done yet.

        Raises
        ------
        NetworkError
            If the port cannot be bound (the folder is then unlocked).
        InvalidInputError
            If the output folder cannot be created, or another receiver holds it.
        """
        if self._listener is not None:
            raise RuntimeError("the receiver is already listening")
        self.prepare()
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        listener = socket.socket(family, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            listener.bind((self.host, self._requested_port))
            listener.listen(64)
        except OSError as exc:
            listener.close()
            self._unlock()
            raise NetworkError(f"cannot listen on port {self._requested_port}: {exc.strerror}"
                               ) from None
        self._listener = listener
        self._stop_r, self._stop_w = os.pipe()
        if self._stopping:  # asked to stop before it started
            os.write(self._stop_w, b"x")
        logger.info("%s listening on %s:%d, storing under %s", self.ae_title, self.host or "*",
                    self.port, self.out_dir)

    def start(self) -> StorageSCP:
        """Listen and serve in a background thread; returns ``self``.

        Raises
        ------
        NetworkError
            If the port cannot be bound.
        InvalidInputError
            If the output folder cannot be created.
        """
        if self._listener is None:
            self.listen()
        self._thread = threading.Thread(target=self._serve, name=f"scp-{self.port}", daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Listen and serve in this thread until :meth:`request_stop`, then drain.

        Raises
        ------
        NetworkError
            If the port cannot be bound.
        InvalidInputError
            If the output folder cannot be created.
        """
        if self._listener is None:
            self.listen()
        self._serve()

    def request_stop(self) -> None:
        """Ask the receiver to stop; safe from a signal handler and from any thread."""
        self._stopping = True
        stop_w = self._stop_w
        if stop_w >= 0:
            with contextlib.suppress(OSError):
                os.write(stop_w, b"x")

    def stop(self) -> None:
        """Stop accepting, let messages in flight finish, wait for every association, unlock."""
        self.request_stop()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if not self._serving:  # prepared or listening, but never served
            self._unlock()

    def __enter__(self) -> StorageSCP:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def _serve(self) -> None:
        assert self._listener is not None
        listener = self._listener
        self._serving = True
        try:
            while True:
                ready, _, _ = select.select([listener.fileno(), self._stop_r], [], [])
                if self._stop_r in ready:
                    break
                try:
                    conn, address = listener.accept()
                except OSError as exc:
                    logger.warning("accept failed: %s", exc)
                    continue
                crowded = self._pending.enter(address[0])
                if crowded is not None:
                    held = self._log_throttle.allow(address[0])
                    if held is not None:
                        logger.warning("%s:%d: closed at once: already %s%s", address[0],
                                       address[1], crowded,
                                       f" ({held} more from it since the last line)" if held
                                       else "")
                    conn.close()
                    continue
                thread = threading.Thread(target=self._handle,
                                          args=(conn, address, time.monotonic()),
                                          name=f"assoc-{address[0]}:{address[1]}", daemon=True)
                with self._lock:
                    self._handlers.add(thread)
                try:
                    thread.start()
                except RuntimeError as exc:  # no thread to be had: the connection cannot wait
                    logger.warning("%s:%d: closed at once: %s", address[0], address[1], exc)
                    with self._lock:
                        self._handlers.discard(thread)
                    self._pending.leave(address[0])
                    conn.close()
        finally:
            listener.close()
            with self._lock:
                handlers = list(self._handlers)
            for thread in handlers:
                thread.join()
            self._flusher.shutdown()
            stop_r, stop_w = self._stop_r, self._stop_w
            self._stop_r = self._stop_w = -1
            os.close(stop_r)
            os.close(stop_w)
            self._serving = False
            self._unlock()
            logger.info("%s stopped: %d stored (%d beside another of their SOP Instance UID), "
                        "%d duplicates, %d failed, %d rejected", self.ae_title, self.stored,
                        self.conflicts, self.duplicate_count, self.failed, self.rejected)

    # -- one connection -------------------------------------------------------------------

    def _handle(self, conn: socket.socket, address: tuple[str, int], accepted_at: float) -> None:
        """Serve one connection; ``accepted_at`` (``time.monotonic()``) starts its ARTIM."""
        peer = f"{address[0]}:{address[1]}"
        stream: PduStream | None = None
        accepted: _Association | None = None
        pending = True
        try:
            conn.settimeout(self.acse_timeout)  # bounds the whole TLS handshake
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if self.ssl_context is not None:
                conn = self.ssl_context.wrap_socket(conn, server_side=True)
            stream = PduStream(conn, peer)
            stream.limit_wait(accepted_at + self.acse_timeout - time.monotonic(),
                              f"A-ASSOCIATE-RQ (--acse-timeout {self.acse_timeout:g} s)")
            try:
                accepted = self._negotiate(stream, accepted_at, address[0])
            finally:
                stream.limit_wait(None)
                self._pending.leave(address[0])
                pending = False
            if accepted is not None:
                self._serve_association(stream, accepted)
        except ReleaseRequested:
            assert stream is not None
            stream.send(RELEASE_RP_PDU)
            _linger_close(stream)
        except ProtocolError as exc:
            logger.warning("%s: protocol error, aborting: %s", peer, exc)
            if stream is not None:
                stream.send_abort(2, exc.reason)
        except LimitExceeded as exc:
            if accepted is None:
                logger.warning("%s: closed: %s", peer, exc)
            else:
                logger.warning("%s: aborting the association: %s", peer, exc)
                assert stream is not None
                stream.send_abort(2, 0)
        except TimeoutError as exc:  # the TLS handshake outlasted acse_timeout
            logger.warning("%s: closed: %s (--acse-timeout %g s)", peer,
                           str(exc) or "TLS handshake not complete in time", self.acse_timeout)
        except PeerAborted as exc:
            logger.info("%s", exc)
        except (NetworkError, ssl.SSLError, OSError) as exc:
            logger.info("%s: connection ended: %s", peer, exc)
        except Exception:
            logger.exception("%s: unexpected error, aborting", peer)
            if stream is not None:
                stream.send_abort(2, 0)
        finally:
            if stream is not None:
                stream.close()
            else:
                conn.close()
            if pending:  # the TLS handshake failed
                self._pending.leave(address[0])
            if accepted is not None:
                self._leave_slot(address[0])
            with self._lock:
                self._handlers.discard(threading.current_thread())

    def _reject(self, stream: PduStream, result: int, source: int, reason: int, why: str) -> None:
        logger.warning("%s: association rejected: %s", stream.peer, why)
        with self._lock:
            self.rejected += 1
        stream.send(encode_associate_rj(result, source, reason))
        _linger_close(stream)

    def _leave_slot(self, address: str) -> None:
        """An association from ``address`` ended: its slot is free."""
        with self._lock:
            self._active -= 1
            self._active_by_address[address] -= 1
            if not self._active_by_address[address]:
                del self._active_by_address[address]

    def _negotiate(self, stream: PduStream, accepted_at: float,
                   address: str) -> _Association | None:
        left = accepted_at + self.acse_timeout - time.monotonic()
        event = stream.wait_readable(max(left, 0.0), self._stop_r)
        if event != "data":  # ARTIM expired, or we are stopping: just close
            if event == "stop":
                logger.info("%s: closed: stopping", stream.peer)
            else:
                logger.warning("%s: closed: no A-ASSOCIATE-RQ within %g s (--acse-timeout)",
                               stream.peer, self.acse_timeout)
            return None
        head = read_associate_rq_head(stream)
        calling = head.calling_ae
        stream.peer = f"{calling}@{stream.peer}"
        if not head.protocol_version & 1:
            self._reject(stream, 1, 2, 2, f"protocol version 0x{head.protocol_version:04X}")
            return None
        if self.allowed_aets is not None and calling not in self.allowed_aets:
            self._reject(stream, 1, 1, 3, f"calling AE title {calling!r} is not allowed")
            return None
        request = read_associate_rq_rest(stream, head)
        if request.application_context_name != APPLICATION_CONTEXT_NAME:
            self._reject(stream, 1, 1, 2, "application context name not supported")
            return None
        per_address = self.limits.max_associations_per_address
        with self._lock:
            full = self._active >= self.max_associations or self._stopping
            crowded = not full and self._active_by_address[address] >= per_address
            if not (full or crowded):
                self._active += 1
                self._active_by_address[address] += 1
        if full or crowded:
            self._reject(stream, 2, 3, 2, "stopping" if self._stopping else
                         f"local limit of {self.max_associations} associations reached" if full
                         else f"local limit of {per_address} associations from {address} "
                              "reached (--max-associations-per-address)")
            return None
        try:
            results, contexts = self._negotiate_contexts(request)
            stream.send(encode_associate_ac(request, results, self.max_pdu))
        except BaseException:
            self._leave_slot(address)
            raise
        logger.info("%s: association accepted (%d of %d contexts)", stream.peer, len(contexts),
                    len(results))
        return _Association(calling, stream.peer, contexts,
                            int(request.maximum_length_received or 0))

    def _negotiate_contexts(self, request: A_ASSOCIATE
                            ) -> tuple[list[PresentationContext], dict[int, tuple[str, str]]]:
        results: list[PresentationContext] = []
        contexts: dict[int, tuple[str, str]] = {}
        for proposed in request.presentation_context_definition_list:
            result = PresentationContext()
            result.context_id = proposed.context_id
            abstract = str(proposed.abstract_syntax)
            offered = [str(ts) for ts in proposed.transfer_syntax]
            if abstract == VERIFICATION_SOP_CLASS:
                ours: Collection[str] = _UNCOMPRESSED
            elif abstract in _STORAGE_SOP_CLASSES:
                ours = self.transfer_syntaxes
            else:
                ours = ()
            chosen = next((ts for ts in offered if ts in ours), None)
            if chosen is not None:
                result.result = 0x00
                result.transfer_syntax = [UID(chosen)]
                contexts[int(proposed.context_id or 0)] = (abstract, chosen)
            else:
                result.result = 0x04 if ours else 0x03
                result.transfer_syntax = [UID(offered[0])] if offered else []
            results.append(result)
        return results, contexts

    def _serve_association(self, stream: PduStream, assoc: _Association) -> None:
        stream.set_timeout(self.network_timeout)
        limits = self.limits
        reader = MessageReader(stream, self.max_pdu, assoc.contexts,
                               pdu_timeout=limits.pdu_timeout, min_rate=limits.min_rate,
                               rate_window=limits.rate_window)
        arena = Arena()
        current: IncomingObject | None = None

        def sink_for(context_id: int, command: Command) -> IncomingObject | _Discard:
            nonlocal current
            if command.command_field != C_STORE_RQ:
                return _Discard()
            failure = _command_failure(command)
            if failure is not None:  # nothing is written: the data set is read and dropped
                return _Discard(failure)
            current = self._open_incoming(assoc, context_id, command, arena)
            return current

        while True:
            if not reader.pending():
                event = stream.wait_readable(self.network_timeout, self._stop_r)
                if event != "data":
                    logger.info("%s: %s, aborting the association", stream.peer,
                                "stopping" if event == "stop" else
                                f"silent for {self.network_timeout:g} s")
                    stream.send_abort(0, 0)
                    return
            current = None
            try:
                context_id, command, sink = reader.read_message(sink_for)
                refusal = sink.failure if isinstance(sink, _Discard) else None
                response = self._answer(assoc, context_id, command, current, refusal)
            except BaseException:
                if current is not None:
                    current.discard()
                raise
            for batch in encode_message(context_id, encode_command(response), None,
                                        assoc.peer_max_pdu):
                stream.send(batch)

    # -- C-ECHO and C-STORE ---------------------------------------------------------------

    def _answer(self, assoc: _Association, context_id: int, command: Command,
                obj: IncomingObject | None, refusal: _StoreFailed | None) -> Command:
        abstract = assoc.contexts[context_id][0]
        if command.command_field == C_ECHO_RQ and abstract == VERIFICATION_SOP_CLASS:
            return Command(C_ECHO_RSP, message_id_being_responded_to=command.message_id,
                           affected_sop_class_uid=VERIFICATION_SOP_CLASS, status=_SUCCESS)
        if command.command_field != C_STORE_RQ or abstract == VERIFICATION_SOP_CLASS \
                or (obj is None and refusal is None):
            raise ProtocolError(f"unsupported request 0x{command.command_field:04X} on "
                                f"presentation context {context_id}", peer=assoc.peer)
        sop_class = command.affected_sop_class_uid or ""
        sop_instance = command.affected_sop_instance_uid or ""
        path, duplicate, conflict = None, False, False
        try:
            if refusal is not None:
                raise refusal
            assert obj is not None
            path, duplicate, conflict = self._commit(assoc, command, obj)
            status, reason = _SUCCESS, ""
        except _StoreFailed as exc:
            if obj is not None:
                obj.discard()
            status, reason = exc.status, exc.reason
            logger.warning("%s: C-STORE of %s answered 0x%04X: %s", assoc.peer,
                           ascii(sop_instance), status, reason)
        with self._lock:
            if status != _SUCCESS:
                self.failed += 1
            elif duplicate:
                self.duplicate_count += 1
            else:
                self.stored += 1
                self.conflicts += conflict
        if self.on_stored is not None:
            try:
                self.on_stored(StoredObject(sop_class, sop_instance, assoc.calling_ae, status,
                                            path, duplicate, reason, conflict))
            except Exception:  # the object is stored: a failing observer must not undo that
                logger.exception("on_stored callback failed")
        comment = reason.encode("ascii", "replace").decode("ascii")[:64]
        return Command(C_STORE_RSP, message_id_being_responded_to=command.message_id,
                       affected_sop_class_uid=_ascii_or_none(sop_class),
                       affected_sop_instance_uid=_ascii_or_none(sop_instance),
                       status=status, error_comment=comment or None)

    def _open_incoming(self, assoc: _Association, context_id: int, command: Command,
                       arena: Arena) -> IncomingObject:
        meta = file_meta(command.affected_sop_class_uid or "",
                          command.affected_sop_instance_uid or "",
                          assoc.contexts[context_id][1], assoc.calling_ae)
        temp = self.out_dir / _INCOMING / f"{uuid.uuid4().hex}{_PART}"
        return IncomingObject(temp, meta, assoc.contexts[context_id][1], arena)

    def _commit(self, assoc: _Association, command: Command,
                obj: IncomingObject) -> tuple[Path, bool, bool]:
        """Check, flush and rename a received object; (path, duplicate, conflict).

        Raises
        ------
        _StoreFailed
            With the status to answer; nothing of the object is then kept.
        """
        obj.start_flush(self._flusher if self.durable else None)  # the disk works while we parse
        if obj.error is not None:
            raise _StoreFailed(_OUT_OF_RESOURCES, f"cannot write: {obj.error.strerror or obj.error}")
        try:
            values = obj.identify()
        except Exception as exc:  # pydicom raises many kinds on malformed data
            raise _StoreFailed(_CANNOT_UNDERSTAND, f"malformed data set: {exc}") from None
        sop_class = values.get(SOP_CLASS_UID, "")
        sop_instance = values.get(SOP_INSTANCE_UID, "")
        if not sop_class or not sop_instance:
            raise _StoreFailed(_CANNOT_UNDERSTAND, "the data set lacks its SOP Class UID or SOP "
                                                   "Instance UID")
        study, series = values.get(STUDY_UID, ""), values.get(SERIES_UID, "")
        failure = (_uid_failure("SOP Class UID", sop_class)
                   or _uid_failure("SOP Instance UID", sop_instance)
                   or (_uid_failure("Study Instance UID", study) if study else None)
                   or (_uid_failure("Series Instance UID", series) if series else None))
        if failure is not None:
            raise failure
        if sop_class != command.affected_sop_class_uid \
                or sop_instance != command.affected_sop_instance_uid:
            raise _StoreFailed(_DOES_NOT_MATCH, "SOP Class/Instance UID of the data set differ "
                                                "from the request's")
        # Valid UIDs name their folders as they are; the fallbacks have letters: no UID.
        folder = (self.out_dir / _patient_folder(values.get(PATIENT_ID, ""))
                  / (study or "NO_STUDY_UID") / (series or "NO_SERIES_UID"))
        try:
            self._make_dirs(folder)
            obj.persist()
            with self._commit_lock:
                path, duplicate, conflict, replaced = self._place(obj, folder, sop_instance)
            if duplicate:
                logger.warning("%s: SOP Instance UID %s received again, identical to %s: "
                               "kept one", assoc.peer, sop_instance, path)
                return path, True, False
            for earlier in replaced:
                unlink_quietly(earlier)
            if self.durable:
                fsync_dir(folder)
        except OSError as exc:
            raise _StoreFailed(_OUT_OF_RESOURCES, f"cannot write: {exc.strerror or exc}") from None
        if conflict:
            logger.warning("%s: SOP Instance UID %s received again with other content: %s %s",
                           assoc.peer, sop_instance,
                           "replaced the earlier copy by" if self.duplicates is DuplicatePolicy.REPLACE
                           else "kept beside the earlier copy as", path)
        return path, False, conflict

    def _place(self, obj: IncomingObject, folder: Path,
               uid: str) -> tuple[Path, bool, bool, list[Path]]:
        """Name a persisted object; (path, duplicate, conflict, earlier copies to delete).

        The copies of ``uid`` already stored (in ``folder``, and wherever this
        run put one) are compared with the object: an identical one makes it
        a duplicate (the temporary file is deleted).  Otherwise it goes to
        the first free name of :func:`~rtforge.io.fileset.copy_names`, or, with
        :attr:`DuplicatePolicy.REPLACE`, over the first copy.  Called under
        ``_commit_lock``.
        """
        names = copy_names(folder / f"{uid}.dcm")
        free = next(names)
        on_disk = []
        while free.exists():
            on_disk.append(free)
            free = next(names)
        copies = list(dict.fromkeys([*on_disk, *(p for p in self._seen.get(uid, ())
                                                   if p.exists())]))
        same = next((copy for copy in copies if obj.same_content(copy)), None)
        if same is not None:
            obj.discard()
            return same, True, False, []
        replace = bool(copies) and self.duplicates is DuplicatePolicy.REPLACE
        final = folder / f"{uid}.dcm" if replace else free
        try:
            obj.rename(final)
        except FileNotFoundError:  # the folder was removed since we made it
            self._folders.discard(folder)
            self._make_dirs(folder)
            obj.rename(final)
        if replace:
            self._seen[uid] = [final]
            return final, False, True, [copy for copy in copies if copy != final]
        self._seen.setdefault(uid, []).append(final)
        return final, False, bool(copies), []

    def _make_dirs(self, folder: Path) -> None:
        """Create ``folder`` and its parents, flushing each new entry to disk (when durable).

        Folders made or found once are remembered (one series is one folder:
        no system call per object); :meth:`_commit` forgets one that vanished.
        """
        if folder in self._folders:
            return
        missing = []
        for parent in (folder, *folder.parents):
            if parent.is_dir():
                break
            missing.append(parent)
        for path in reversed(missing):
            path.mkdir(exist_ok=True)
            if self.durable:
                fsync_dir(path.parent)
        self._folders.add(folder)


def _linger_close(stream: PduStream) -> None:
    """After a reject or release: let the peer read our last PDU and close first (1 s at most)."""
    with contextlib.suppress(OSError):
        stream.sock.shutdown(socket.SHUT_WR)
        stream.sock.settimeout(1.0)
        while stream.sock.recv(4096):  # drain until the peer closes
            continue
