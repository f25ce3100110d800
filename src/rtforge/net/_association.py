"""An association we request, for Verification and Storage (synchronous, one thread)."""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections.abc import Sequence
from types import TracebackType

from rtforge.config import Node
from rtforge.errors import NetworkError
from rtforge.net._dimse import Command, encode_command
from rtforge.net._upper_layer import (
    A_ABORT_TYPE,
    A_ASSOCIATE_AC_TYPE,
    A_ASSOCIATE_RJ_TYPE,
    A_RELEASE_RP_TYPE,
    A_RELEASE_RQ_TYPE,
    RELEASE_RP_PDU,
    RELEASE_RQ_PDU,
    MessageReader,
    PduStream,
    ProposedContext,
    ProtocolError,
    decode_associate_ac,
    encode_associate_rq,
    encode_message,
    peer_aborted,
    read_associate_pdu,
    rejection_text,
)
from rtforge.net.tls import client_context, failure_text

__all__ = ["RequestedAssociation", "AssociationRejected"]

logger = logging.getLogger(__name__)


class AssociationRejected(NetworkError):
    """The peer answered our A-ASSOCIATE-RQ with an A-ASSOCIATE-RJ.

    Attributes
    ----------
    result, source, reason : int
        The codes of the A-ASSOCIATE-RJ PDU (PS3.8 9.3.4).
    """

    def __init__(self, message: str, peer: str, result: int, source: int, reason: int) -> None:
        super().__init__(message, peer=peer)
        self.result = result
        self.source = source
        self.reason = reason


class _Discard:
    """Sink for a data set nobody asked for (a response should carry none)."""

    def write(self, fragment: memoryview) -> None:
        del fragment


class RequestedAssociation:
    """An established association with ``node``, as requestor.

    Parameters
    ----------
    node : Node
        The peer; its timeout bounds connecting, negotiation and every read,
        and its ``max_pdu`` is the Maximum Length we announce.
    calling_ae : str
        Our AE title.
    contexts : sequence of ProposedContext
        At most 128, proposed with IDs 1, 3, 5, ...
    ssl_context : ssl.SSLContext, optional
        Speak TLS with this context (the node's host is checked against its
        certificate unless the context says otherwise); by default the
        node's TLS settings decide (:func:`rtforge.net.tls.client_context`).

    Raises
    ------
    AssociationRejected
        If the peer rejects the association.
    NetworkError
        If the connection or the TLS handshake fails (the reason in words),
        times out or the peer aborts.
    InvalidInputError
        If a TLS file of the node cannot be loaded.

    Notes
    -----
    Use as a context manager: leaving it normally releases the association,
    leaving it through an exception aborts it.
    """

    def __init__(self, node: Node, calling_ae: str, contexts: Sequence[ProposedContext],
                 ssl_context: ssl.SSLContext | None = None) -> None:
        if not 0 < len(contexts) <= 128:
            raise ValueError(f"1 to 128 presentation contexts can be proposed, got {len(contexts)}")
        self.node = node
        self.proposed = {2 * i + 1: cx for i, cx in enumerate(contexts)}
        peer = str(node)
        if ssl_context is None:
            ssl_context = client_context(node)
        try:
            sock = socket.create_connection((node.host, node.port), timeout=node.timeout)
        except TimeoutError:
            raise NetworkError(f"no connection within {node.timeout:g} s", peer=peer) from None
        except OSError as exc:
            raise NetworkError(f"cannot connect: {exc.strerror or exc}", peer=peer) from None
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if ssl_context is not None:
            try:
                sock = ssl_context.wrap_socket(sock, server_hostname=node.host)
            except OSError as exc:
                sock.close()
                raise NetworkError(failure_text(exc, node), peer=peer) from None
        self._stream = PduStream(sock, peer)
        self._message_id = 0
        try:
            self.accepted, self.peer_max_pdu = self._negotiate(calling_ae, contexts)
        except NetworkError as exc:
            self._stream.close()
            # TLS 1.3: a refused client certificate shows on the first read, not in the handshake
            if isinstance(exc.__context__, ssl.SSLError):
                raise NetworkError(failure_text(exc.__context__, node), peer=peer) from None
            raise
        except BaseException:
            self._stream.close()
            raise
        self._reader = MessageReader(self._stream, node.max_pdu, self.accepted)
        logger.info("associated with %s: %d of %d contexts accepted, peer maximum PDU %d",
                    peer, len(self.accepted), len(contexts), self.peer_max_pdu)

    def _negotiate(self, calling_ae: str, contexts: Sequence[ProposedContext]
                   ) -> tuple[dict[int, str], int]:
        stream = self._stream
        stream.send(encode_associate_rq(calling_ae, self.node.ae_title, contexts, self.node.max_pdu))
        pdu_type, pdu = read_associate_pdu(stream)
        if pdu_type == A_ASSOCIATE_AC_TYPE:
            try:
                return decode_associate_ac(pdu)
            except Exception as exc:  # pynetdicom raises assorted errors on bad items
                stream.send_abort(2, 6)
                raise ProtocolError(f"invalid A-ASSOCIATE-AC: {exc}", peer=stream.peer) from None
        if pdu_type == A_ASSOCIATE_RJ_TYPE:
            text, result, source, reason = rejection_text(pdu)
            raise AssociationRejected(text, stream.peer, result, source, reason)
        if pdu_type == A_ABORT_TYPE:
            raise peer_aborted(stream, pdu[6:])
        stream.send_abort(2, 2)
        raise ProtocolError(f"unexpected PDU type 0x{pdu_type:02X} in answer to A-ASSOCIATE-RQ",
                            peer=stream.peer)

    @property
    def peer(self) -> str:
        """The peer, as ``AET@HOST:PORT``."""
        return self._stream.peer

    def context_id(self, abstract_syntax: str, transfer_syntax: str) -> int | None:
        """The ID of an accepted context for this pair, if there is one."""
        for context_id, accepted_ts in self.accepted.items():
            if accepted_ts == transfer_syntax \
                    and self.proposed[context_id].abstract_syntax == abstract_syntax:
                return context_id
        return None

    def next_message_id(self) -> int:
        """A fresh Message ID (1 to 65535, wrapping)."""
        self._message_id = self._message_id % 0xFFFF + 1
        return self._message_id

    def request(self, context_id: int, command: Command,
                data_set: bytes | bytearray | memoryview | None = None) -> Command:
        """Send a request and wait for its response.

        Parameters
        ----------
        context_id : int
            An accepted presentation context.
        command : Command
            The request; ``has_data_set`` is set from ``data_set``.
        data_set : bytes-like, optional
            The encoded data set, in the context's transfer syntax.

        Returns
        -------
        Command
            The response.

        Raises
        ------
        NetworkError
            If the connection fails or times out, the peer aborts or answers
            something other than the response to this request.
        """
        command.has_data_set = data_set is not None
        for batch in encode_message(context_id, encode_command(command), data_set,
                                    self.peer_max_pdu):
            self._stream.send(batch)
        _, response, _ = self._reader.read_message(lambda _cx, _cmd: _Discard())
        if response.message_id_being_responded_to != command.message_id \
                or response.command_field != command.command_field | 0x8000:
            raise ProtocolError(
                f"expected the response to message {command.message_id}, got command "
                f"0x{response.command_field:04X} for message "
                f"{response.message_id_being_responded_to}", peer=self.peer)
        return response

    def release(self) -> None:
        """Release the association (A-RELEASE-RQ, wait for the -RP) and close."""
        stream = self._stream
        try:
            stream.send(RELEASE_RQ_PDU)
            deadline = time.monotonic() + self.node.timeout
            while time.monotonic() < deadline:
                pdu_type, _ = stream.read_pdu(1 << 26)
                if pdu_type == A_RELEASE_RP_TYPE:
                    break
                if pdu_type == A_RELEASE_RQ_TYPE:  # release collision, PS3.8 7.2.2
                    stream.send(RELEASE_RP_PDU)
                if pdu_type == A_ABORT_TYPE:
                    break
        except NetworkError as exc:
            logger.info("%s: release not confirmed: %s", self.peer, exc)
        finally:
            stream.close()

    def abort(self) -> None:
        """Abort the association (A-ABORT, source service user) and close."""
        self._stream.send_abort(0, 0)
        self._stream.close()

    def __enter__(self) -> RequestedAssociation:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.release()
        else:
            self.abort()
