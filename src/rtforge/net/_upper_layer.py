"""The DICOM Upper Layer protocol (PS3.8 9) on a blocking socket.

Why this exists
---------------
pynetdicom 3.0 runs every association as two threads that poll each other
with 1 ms sleeps (``DULServiceProvider.run_reactor`` and
``Association._run_reactor``).  Profiled sending 200 CT slices of 512x512
to dcmtk's storescp: the DUL thread slept 4131 times (4.6 of its 5.5 s),
about 20 sleeps per object, whenever the encoding thread had not yet queued
the next of the 34 P-DATA PDUs or the response had not arrived; pydicom's
encoding took 0.3 s.  None of pynetdicom's public settings reaches those
sleeps (``_config`` holds logging, validation and chunking options; the AE
and association attributes set timeouts and PDU sizes; the loop delay is a
private attribute and the association reactor's sleep is a literal).  Under
load the same design also loses responses: the association thread takes the
C-STORE-RSP meant for ``send_c_store`` ("Received unexpected C-STORE service
message") and the caller times out.  For the two services where throughput
matters, Storage and Verification, :mod:`rtforge.net` therefore drives the
protocol itself: one thread per association, blocking reads with timeouts,
whole DIMSE messages written with one ``sendall``.  No polling anywhere.

What is still pynetdicom's
--------------------------
The A-ASSOCIATE-RQ/-AC/-RJ PDUs (their variable items are the intricate part
of PS3.8) are encoded and decoded with :mod:`pynetdicom.pdu` and
:mod:`pynetdicom.pdu_primitives`.  This module frames P-DATA-TF, A-RELEASE and
A-ABORT PDUs (fixed layouts, PS3.8 9.3.5 to 9.3.8) and reassembles DIMSE
messages from presentation data values (PS3.8 Annex E).  Query/Retrieve
keeps using pynetdicom unchanged.
"""

from __future__ import annotations

import contextlib
import select
import socket
import ssl
import struct
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol

from pydicom.uid import UID
from pynetdicom.pdu import A_ASSOCIATE_AC, A_ASSOCIATE_RJ, A_ASSOCIATE_RQ
from pynetdicom.pdu_primitives import (
    A_ASSOCIATE,
    ImplementationClassUIDNotification,
    ImplementationVersionNameNotification,
    MaximumLengthNotification,
)
from pynetdicom.presentation import PresentationContext

from rtforge.errors import NetworkError
from rtforge.io.uids import IMPLEMENTATION_CLASS_UID, IMPLEMENTATION_VERSION_NAME
from rtforge.net._dimse import Command, decode_command

__all__ = [
    "A_ASSOCIATE_RQ_TYPE",
    "A_ASSOCIATE_AC_TYPE",
    "A_ASSOCIATE_RJ_TYPE",
    "P_DATA_TF_TYPE",
    "A_RELEASE_RQ_TYPE",
    "A_RELEASE_RP_TYPE",
    "A_ABORT_TYPE",
    "APPLICATION_CONTEXT_NAME",
    "IMPLEMENTATION_CLASS_UID",
    "IMPLEMENTATION_VERSION_NAME",
    "ProtocolError",
    "PeerAborted",
    "ReleaseRequested",
    "PduStream",
    "ProposedContext",
    "DataSetSink",
    "MessageReader",
    "abort_pdu",
    "RELEASE_RQ_PDU",
    "RELEASE_RP_PDU",
    "encode_message",
    "encode_associate_rq",
    "decode_associate_ac",
    "decode_associate_rq",
    "encode_associate_ac",
    "encode_associate_rj",
    "rejection_text",
    "rejection_words",
    "peer_aborted",
    "read_associate_pdu",
]

#: PDU types (PS3.8 9.3.1).
A_ASSOCIATE_RQ_TYPE = 0x01
A_ASSOCIATE_AC_TYPE = 0x02
A_ASSOCIATE_RJ_TYPE = 0x03
P_DATA_TF_TYPE = 0x04
A_RELEASE_RQ_TYPE = 0x05
A_RELEASE_RP_TYPE = 0x06
A_ABORT_TYPE = 0x07

APPLICATION_CONTEXT_NAME = UID("1.2.840.10008.3.1.1.1")

#: A-ASSOCIATE PDUs larger than this are refused (128 contexts take about 12 KiB).
_MAX_ASSOCIATE_PDU = 1 << 20
#: Data per PDV when the peer sets no maximum PDU length.
_UNLIMITED_FRAGMENT = 1 << 20
#: Bytes of PDUs collected before one ``sendall``.
_SEND_BATCH = 1 << 20
#: Initial size of a connection's receive buffer (it grows to the largest PDU read).
_RECV_BUFFER = 1 << 18
_PDU_HEADER = struct.Struct(">BBL")  # PDU type, reserved, length
_PDV_ITEM = struct.Struct(">LBB")  # PDV item length, context ID, message control header
_PDV_HEADER = struct.Struct(">BBLLBB")  # a P-DATA-TF header and its one PDV item's header


class ProtocolError(NetworkError):
    """The peer broke the Upper Layer protocol; the association must be aborted."""


class PeerAborted(NetworkError):
    """The peer sent an A-ABORT."""


class ReleaseRequested(Exception):
    """The peer sent an A-RELEASE-RQ between two messages (the normal end)."""


def abort_pdu(source: int = 0, reason: int = 0) -> bytes:
    """An A-ABORT PDU (PS3.8 9.3.8): source 0 service user, 2 service provider."""
    return struct.pack(">BBLBBBB", A_ABORT_TYPE, 0, 4, 0, 0, source, reason)


RELEASE_RQ_PDU = struct.pack(">BBLL", A_RELEASE_RQ_TYPE, 0, 4, 0)
RELEASE_RP_PDU = struct.pack(">BBLL", A_RELEASE_RP_TYPE, 0, 4, 0)

_ABORT_REASONS = {
    0: "reason not specified", 1: "unrecognized PDU", 2: "unexpected PDU",
    4: "unrecognized PDU parameter", 5: "unexpected PDU parameter", 6: "invalid PDU parameter value",
}


class PduStream:
    """Reads and writes PDUs on a connected, blocking socket (plain or TLS).

    Parameters
    ----------
    sock : socket.socket
        Connected; its timeout bounds every read and write.
    peer : str
        How the peer is named in errors.

    Notes
    -----
    Reads fill one reusable buffer with as much as the socket has (several
    PDUs per system call when they are queued) and hand out views of it, so
    a received byte is copied once, by whoever keeps it.
    """

    def __init__(self, sock: socket.socket, peer: str) -> None:
        self.sock = sock
        self.peer = peer
        self._buffer = bytearray(_RECV_BUFFER)
        self._view = memoryview(self._buffer)
        self._start = 0
        self._end = 0

    def pending(self) -> bool:
        """Whether bytes are already received and waiting to be read."""
        if self._start < self._end:
            return True
        return isinstance(self.sock, ssl.SSLSocket) and self.sock.pending() > 0

    def wait_readable(self, timeout: float | None, stop_fd: int | None = None) -> str:
        """Block until data arrives, ``stop_fd`` becomes readable, or ``timeout``.

        Returns
        -------
        str
            ``"data"``, ``"stop"`` or ``"timeout"``.  Data wins over stop.
        """
        if self.pending():
            return "data"
        watched = [self.sock.fileno()] + ([stop_fd] if stop_fd is not None else [])
        ready, _, _ = select.select(watched, [], [], timeout)
        if self.sock.fileno() in ready:
            return "data"
        return "stop" if ready else "timeout"

    def _recv_into(self, view: memoryview) -> int:
        try:
            count = self.sock.recv_into(view)
        except TimeoutError:
            raise NetworkError(f"no data within {self.sock.gettimeout():g} s",
                               peer=self.peer) from None
        except OSError as exc:
            raise NetworkError(f"connection lost: {exc}", peer=self.peer) from None
        if count == 0:
            raise NetworkError("connection closed by the peer", peer=self.peer)
        return count

    def _fill(self, count: int) -> memoryview:
        """The next ``count`` bytes, received if need be; valid until the next read."""
        start = self._start
        if self._end - start >= count:
            return self._view[start:start + count]
        if start + count > len(self._buffer):  # make room: move the tail to the front
            tail = self._end - start
            if count > len(self._buffer):
                grown = bytearray(max(count, 2 * len(self._buffer)))
                grown[:tail] = self._view[start:self._end]
                self._buffer, self._view = grown, memoryview(grown)
            else:
                self._buffer[:tail] = self._buffer[start:self._end]
            self._start, self._end = 0, tail
        while self._end - self._start < count:
            self._end += self._recv_into(self._view[self._end:])
        return self._view[self._start:self._start + count]

    def read_exact(self, count: int) -> bytes:
        """Read exactly ``count`` bytes.

        Raises
        ------
        NetworkError
            If the connection closes, fails or times out first.
        """
        data = bytes(self._fill(count))
        self._start += count
        return data

    def read_pdu(self, limit: int) -> tuple[int, memoryview]:
        """Read one whole PDU: its type and its body (valid until the next read).

        Parameters
        ----------
        limit : int
            Largest body accepted, in bytes.

        Raises
        ------
        ProtocolError
            If the PDU type is not one of PS3.8 9.3.1, or the body exceeds ``limit``.
        NetworkError
            If the connection closes, fails or times out first.
        """
        start = self._start
        if self._end - start < 6:
            self._fill(6)
            start = self._start
        pdu_type, _, length = _PDU_HEADER.unpack_from(self._buffer, start)
        if not A_ASSOCIATE_RQ_TYPE <= pdu_type <= A_ABORT_TYPE:
            raise ProtocolError(f"unrecognized PDU type 0x{pdu_type:02X}", peer=self.peer)
        if length > limit:
            raise ProtocolError(f"PDU type 0x{pdu_type:02X} of {length} bytes exceeds the "
                                f"{limit}-byte limit", peer=self.peer)
        end = start + 6 + length
        if end > self._end:  # not all received yet (the buffer may move)
            self._fill(6 + length)
            start = self._start
            end = start + 6 + length
        self._start = end
        return pdu_type, self._view[start + 6:end]

    def send(self, data: bytes | bytearray | memoryview) -> None:
        """Send all of ``data``.

        Raises
        ------
        NetworkError
            If the connection fails or the send times out.
        """
        try:
            self.sock.sendall(data)
        except TimeoutError:
            raise NetworkError(f"send blocked for {self.sock.gettimeout():g} s",
                               peer=self.peer) from None
        except OSError as exc:
            raise NetworkError(f"connection lost: {exc}", peer=self.peer) from None

    def send_abort(self, source: int = 0, reason: int = 0) -> None:
        """Send an A-ABORT, ignoring a connection that is already gone."""
        with contextlib.suppress(OSError):
            self.sock.sendall(abort_pdu(source, reason))

    def close(self) -> None:
        """Shut the connection down (both directions) and close the socket."""
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


def peer_aborted(stream: PduStream, body: bytes | bytearray) -> PeerAborted:
    """The error for a received A-ABORT whose 4-byte body is ``body``."""
    source, reason = (body[2], body[3]) if len(body) >= 4 else (0, 0)
    who = {0: "the peer", 2: "the peer's upper layer"}.get(source, "the peer")
    why = _ABORT_REASONS.get(reason, f"reason {reason}") if source == 2 else "no reason given"
    return PeerAborted(f"association aborted by {who} ({why})", peer=stream.peer)


class DataSetSink(Protocol):
    """Where the fragments of a received data set go, in order."""

    def write(self, fragment: memoryview) -> None:
        """Take one fragment; the view is only valid during the call."""


class MessageReader:
    """Reassembles DIMSE messages from P-DATA-TF PDUs (PS3.8 9.3.5 and Annex E).

    Parameters
    ----------
    stream : PduStream
    max_pdu : int
        The Maximum Length we announced (0: none); PDUs far beyond it are refused.
    contexts : collection of int
        The accepted presentation context IDs.
    """

    def __init__(self, stream: PduStream, max_pdu: int, contexts: Collection[int]) -> None:
        self._stream = stream
        self._limit = max(4 * max_pdu, 1 << 20) if max_pdu else 1 << 26
        self._contexts = contexts
        self._body = memoryview(b"")
        self._pos = 0

    def pending(self) -> bool:
        """Whether part of the next message is already received."""
        return self._pos < len(self._body) or self._stream.pending()

    def _read_pdu(self, at_boundary: bool) -> None:
        stream = self._stream
        pdu_type, body = stream.read_pdu(self._limit)
        if pdu_type == P_DATA_TF_TYPE:
            self._body, self._pos = body, 0
            return
        if pdu_type == A_ABORT_TYPE:
            raise peer_aborted(stream, bytes(body))
        if pdu_type == A_RELEASE_RQ_TYPE and at_boundary:
            raise ReleaseRequested()
        raise ProtocolError(f"unexpected PDU type 0x{pdu_type:02X} during data transfer",
                            peer=stream.peer)

    def read_message(self, sink_for: Callable[[int, Command], DataSetSink]
                     ) -> tuple[int, Command, DataSetSink | None]:
        """Read one whole message.

        Parameters
        ----------
        sink_for : callable
            Called with (context ID, command) when a command announces a data
            set; returns where the data set's fragments go.

        Returns
        -------
        (int, Command, DataSetSink or None)
            Presentation context ID, the command, and the sink that took the
            data set (``None`` when there was none).

        Raises
        ------
        ReleaseRequested
            If the peer asked to release instead of sending a message.
        PeerAborted
            If the peer aborted.
        ProtocolError
            If the PDUs do not form a valid message.
        NetworkError
            If the connection fails or times out.
        """
        peer = self._stream.peer
        command_set = bytearray()
        command: Command | None = None
        sink: DataSetSink | None = None
        context: int | None = None
        while True:
            body, pos = self._body, self._pos
            if pos >= len(body):
                self._read_pdu(at_boundary=context is None)
                continue
            # One presentation data value item (PS3.8 9.3.5.1), parsed here: the hot loop.
            if len(body) - pos < 6:
                raise ProtocolError("truncated presentation data value item", peer=peer)
            length, context_id, control = _PDV_ITEM.unpack_from(body, pos)
            end = pos + 4 + length
            if length < 2 or end > len(body):
                raise ProtocolError(f"presentation data value item of invalid length {length}",
                                    peer=peer)
            self._pos = end
            payload = body[pos + 6:end]
            if context_id != context:
                if context_id not in self._contexts:
                    raise ProtocolError(f"data on presentation context {context_id}, which is "
                                        "not accepted", peer=peer)
                if context is not None:
                    raise ProtocolError("one message on two presentation contexts", peer=peer)
                context = context_id
            if not control & 0x01:  # a data set fragment
                if command is None or sink is None:
                    raise ProtocolError("data set fragment before the command set", peer=peer)
                sink.write(payload)
                if control & 0x02:
                    return context_id, command, sink
                continue
            if command is not None:
                raise ProtocolError("command fragment after the last one", peer=peer)
            command_set += payload
            if len(command_set) > 1 << 16:
                raise ProtocolError("command set larger than 64 KiB", peer=peer)
            if control & 0x02:
                try:
                    command = decode_command(command_set)
                except ValueError as exc:
                    raise ProtocolError(f"invalid command set: {exc}", peer=peer) from None
                if not command.has_data_set:
                    return context_id, command, None
                sink = sink_for(context_id, command)


def encode_message(context_id: int, command_set: bytes,
                   data_set: bytes | bytearray | memoryview | None,
                   max_pdu: int) -> Iterator[bytearray]:
    """P-DATA-TF PDUs carrying one DIMSE message, in batches of about 1 MiB.

    Parameters
    ----------
    context_id : int
        The presentation context.
    command_set : bytes
        The encoded command set.
    data_set : bytes-like or None
        The encoded data set, if the message has one.
    max_pdu : int
        The peer's Maximum Length (0: none); each PDU holds one PDV that fits.

    Yields
    ------
    bytearray
        Consecutive PDUs, ready to send.
    """
    fragment = max(max_pdu - 6, 1) if max_pdu else _UNLIMITED_FRAGMENT
    out = bytearray()
    for control, payload in ((0x01, command_set), (0x00, data_set)):
        if payload is None:
            continue
        view = memoryview(payload)
        total = len(view)
        start = 0
        while True:
            chunk = view[start:start + fragment]
            start += len(chunk)
            last = start >= total
            out += _PDV_HEADER.pack(P_DATA_TF_TYPE, 0, len(chunk) + 6, len(chunk) + 2, context_id,
                                    control | (0x02 if last else 0x00))
            out += chunk
            if len(out) >= _SEND_BATCH:
                yield out
                out = bytearray()
            if last:
                break
    if out:
        yield out


@dataclass(frozen=True)
class ProposedContext:
    """A presentation context we propose: one abstract syntax, its transfer syntaxes in order."""

    abstract_syntax: str
    transfer_syntaxes: tuple[str, ...]


def _set_user_information(primitive: A_ASSOCIATE, max_pdu: int) -> None:
    """Maximum Length, Implementation Class UID and Version Name (PS3.7 D.3.3)."""
    length = MaximumLengthNotification()
    length.maximum_length_received = max_pdu
    klass = ImplementationClassUIDNotification()
    klass.implementation_class_uid = IMPLEMENTATION_CLASS_UID
    version = ImplementationVersionNameNotification()
    version.implementation_version_name = IMPLEMENTATION_VERSION_NAME
    primitive.user_information = [length, klass, version]


def encode_associate_rq(calling_ae: str, called_ae: str, contexts: Sequence[ProposedContext],
                        max_pdu: int) -> bytes:
    """An A-ASSOCIATE-RQ PDU proposing ``contexts`` with IDs 1, 3, 5, ... (at most 128)."""
    primitive = A_ASSOCIATE()
    primitive.application_context_name = APPLICATION_CONTEXT_NAME
    primitive.calling_ae_title = calling_ae
    primitive.called_ae_title = called_ae
    items = []
    for index, proposed in enumerate(contexts):
        item = PresentationContext()
        item.context_id = 2 * index + 1
        item.abstract_syntax = UID(proposed.abstract_syntax)
        item.transfer_syntax = [UID(ts) for ts in proposed.transfer_syntaxes]
        items.append(item)
    primitive.presentation_context_definition_list = items
    _set_user_information(primitive, max_pdu)
    pdu = A_ASSOCIATE_RQ()
    pdu.from_primitive(primitive)
    return pdu.encode()


def decode_associate_ac(header_and_body: bytes) -> tuple[dict[int, str], int]:
    """Accepted contexts and the peer's Maximum Length from an A-ASSOCIATE-AC PDU.

    Returns
    -------
    dict of int to str, int
        Accepted context ID -> its transfer syntax; the peer's maximum PDU length.
    """
    pdu = A_ASSOCIATE_AC()
    pdu.decode(header_and_body)
    primitive = pdu.to_primitive()
    accepted = {int(cx.context_id or 0): str(cx.transfer_syntax[0])
                for cx in primitive.presentation_context_definition_results_list
                if cx.result == 0 and cx.transfer_syntax}
    return accepted, int(primitive.maximum_length_received or 0)


#: A-ASSOCIATE-RJ sources and reasons (PS3.8 9.3.4).
_RJ_SOURCES = {1: "service user", 2: "service provider, ACSE",
               3: "service provider, presentation"}
_RJ_REASONS = {(1, 1): "no reason given", (1, 2): "application context name not supported",
               (1, 3): "calling AE title not recognized",
               (1, 7): "called AE title not recognized", (2, 1): "no reason given",
               (2, 2): "protocol version not supported", (3, 1): "temporary congestion",
               (3, 2): "local limit exceeded"}


def rejection_words(result: int, source: int, reason: int) -> str:
    """An A-ASSOCIATE-RJ in words.

    For example ``association rejected (transient: local limit exceeded, by the
    service provider, presentation)``.
    """
    kind = {1: "permanent", 2: "transient"}.get(result, f"result {result}")
    why = _RJ_REASONS.get((source, reason), f"reason {reason}")
    who = _RJ_SOURCES.get(source, f"source {source}")
    return f"association rejected ({kind}: {why}, by the {who})"


def rejection_text(header_and_body: bytes) -> tuple[str, int, int, int]:
    """Words and codes (result, source, reason) of an A-ASSOCIATE-RJ PDU."""
    pdu = A_ASSOCIATE_RJ()
    pdu.decode(header_and_body)
    primitive = pdu.to_primitive()
    result, source = int(primitive.result or 0), int(primitive.result_source or 0)
    reason = int(primitive.diagnostic or 0)
    return rejection_words(result, source, reason), result, source, reason


def decode_associate_rq(header_and_body: bytes) -> A_ASSOCIATE:
    """The A-ASSOCIATE primitive of a received A-ASSOCIATE-RQ PDU."""
    pdu = A_ASSOCIATE_RQ()
    pdu.decode(header_and_body)
    return pdu.to_primitive()


def encode_associate_ac(request: A_ASSOCIATE, results: Sequence[PresentationContext],
                        max_pdu: int) -> bytes:
    """An A-ASSOCIATE-AC PDU answering ``request`` with the context ``results``."""
    primitive = A_ASSOCIATE()
    primitive.application_context_name = APPLICATION_CONTEXT_NAME
    primitive.calling_ae_title = request.calling_ae_title
    primitive.called_ae_title = request.called_ae_title
    primitive.result = 0x00
    primitive.result_source = 0x01
    primitive.presentation_context_definition_results_list = list(results)
    _set_user_information(primitive, max_pdu)
    pdu = A_ASSOCIATE_AC()
    pdu.from_primitive(primitive)
    return pdu.encode()


def encode_associate_rj(result: int, source: int, reason: int) -> bytes:
    """An A-ASSOCIATE-RJ PDU (PS3.8 9.3.4): result 1 permanent / 2 transient."""
    return struct.pack(">BBLBBBB", A_ASSOCIATE_RJ_TYPE, 0, 4, 0, result, source, reason)


def read_associate_pdu(stream: PduStream) -> tuple[int, bytes]:
    """Read a whole PDU during association set-up: (type, header and body)."""
    pdu_type, body = stream.read_pdu(_MAX_ASSOCIATE_PDU)
    return pdu_type, _PDU_HEADER.pack(pdu_type, 0, len(body)) + bytes(body)
