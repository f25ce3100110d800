"""Verification SOP Class as SCU: C-ECHO (Oncentra 4.2.1.3.1, iPlan table 4-1)."""

from __future__ import annotations

import logging
import ssl
import time
from dataclasses import dataclass

from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

from rtforge.config import Node, check_ae_title
from rtforge.errors import NetworkError
from rtforge.net._association import RequestedAssociation
from rtforge.net._dimse import C_ECHO_RQ, Command
from rtforge.net._upper_layer import ProposedContext
from rtforge.net.status import status_meaning

__all__ = ["VERIFICATION_SOP_CLASS", "EchoResult", "echo"]

logger = logging.getLogger(__name__)

VERIFICATION_SOP_CLASS = "1.2.840.10008.1.1"
#: Oncentra table 4-5: Verification with the three uncompressed transfer syntaxes.
_CONTEXT = ProposedContext(VERIFICATION_SOP_CLASS,
                           (ImplicitVRLittleEndian, ExplicitVRLittleEndian, ExplicitVRBigEndian))


@dataclass(frozen=True)
class EchoResult:
    """A successful C-ECHO.

    Parameters
    ----------
    node : Node
        Who answered.
    seconds : float
        From connecting to the release, in seconds.
    """

    node: Node
    seconds: float


def echo(node: Node, *, ae_title: str = "RTFORGE",
         ssl_context: ssl.SSLContext | None = None) -> EchoResult:
    """Verify that ``node`` answers: associate, C-ECHO, release.

    Parameters
    ----------
    node : Node
        The peer.
    ae_title : str
        Our (calling) AE title.
    ssl_context : ssl.SSLContext, optional
        Speak TLS with this context instead of the node's TLS settings
        (:func:`rtforge.net.tls.client_context`).

    Returns
    -------
    EchoResult

    Raises
    ------
    NetworkError
        Unless the peer answers with status 0x0000 (Oncentra 4.2.1.3.1.3: any
        other status, a timeout, a rejection or an abort is a failure).
    """
    start = time.perf_counter()
    with RequestedAssociation(node, check_ae_title(ae_title), [_CONTEXT], ssl_context) as assoc:
        if not assoc.accepted:
            raise NetworkError("the Verification SOP Class was not accepted", peer=assoc.peer)
        request = Command(C_ECHO_RQ, message_id=assoc.next_message_id(),
                          affected_sop_class_uid=VERIFICATION_SOP_CLASS)
        response = assoc.request(next(iter(assoc.accepted)), request)
        if response.status != 0x0000:
            status = response.status if response.status is not None else 0xFFFF
            raise NetworkError(f"C-ECHO answered {status_meaning(status)}", peer=assoc.peer,
                               status=status)
    elapsed = time.perf_counter() - start
    logger.info("%s answered C-ECHO in %.1f ms", node, elapsed * 1000)
    return EchoResult(node, elapsed)
