"""An association we request through pynetdicom (Query/Retrieve, Print, Storage Commitment).

One path for every service that uses pynetdicom's DIMSE as it is: the
node's timeout and maximum PDU, its TLS settings
(:func:`rtforge.net.tls.client_context`), and one-line errors that say why an
association was not established (no connection, TLS, rejection, context
refused).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from pydicom.uid import UID
from pynetdicom import evt
from pynetdicom.association import Association

from rtforge.config import Node
from rtforge.errors import NetworkError
from rtforge.net._ae import rtforge_ae
from rtforge.net._upper_layer import rejection_words
from rtforge.net.tls import client_context, failure_text

__all__ = ["ServiceRejected", "request_association"]


class ServiceRejected(NetworkError):
    """The peer accepted the association but not the presentation context of the service."""


def request_association(node: Node, ae_title: str,
                        contexts: Sequence[tuple[str, Sequence[str]]], *,
                        evt_handlers: Sequence[tuple[Any, Any]] = (),
                        failure: str = "") -> Association:
    """An established association with ``node``, at least one context accepted.

    Parameters
    ----------
    node : Node
        The peer; its timeout bounds connecting and every response, its
        ``max_pdu`` is the Maximum Length we announce, and its TLS settings
        apply.
    ae_title : str
        Our (calling) AE title.
    contexts : sequence of (str, sequence of str)
        Abstract syntax and transfer syntaxes of each proposed context.
    evt_handlers : sequence of (event, handler), optional
        pynetdicom event handlers bound to the association.
    failure : str
        Prefix of every error message (``"print job failed: "``).

    Returns
    -------
    pynetdicom.association.Association
        The caller releases or aborts it.

    Raises
    ------
    ServiceRejected
        If no proposed context was accepted.
    NetworkError
        If the connection, the TLS handshake or the negotiation fails.
    InvalidInputError
        If a TLS file of the node cannot be loaded.
    """
    ae = rtforge_ae(ae_title)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = node.timeout
    ae.connection_timeout = node.timeout
    ae.maximum_pdu_size = node.max_pdu
    for abstract_syntax, transfer_syntaxes in contexts:
        ae.add_requested_context(abstract_syntax, list(transfer_syntaxes))
    tls = client_context(node)
    connected: list[bool] = []
    assoc = ae.associate(node.host, node.port, ae_title=node.ae_title, max_pdu=node.max_pdu,
                         tls_args=(tls, node.host) if tls is not None else None,
                         evt_handlers=[(evt.EVT_CONN_OPEN, lambda event: connected.append(True)),
                                       *evt_handlers])
    names = [UID(abstract_syntax).name for abstract_syntax, _ in contexts]
    refused = f"{names[0]} was not accepted" if len(names) == 1 \
        else f"none of {', '.join(names)} was accepted"
    if assoc.is_established:
        if assoc.accepted_contexts:
            return assoc
        assoc.abort()
        raise ServiceRejected(failure + refused, peer=str(node))
    if tls is not None and tls.failure is not None:
        raise NetworkError(failure + failure_text(tls.failure, node), peer=str(node))
    if not connected:
        raise NetworkError(f"{failure}cannot connect (refused, or no answer within "
                           f"{node.timeout:g} s)", peer=str(node))
    if assoc.is_rejected and assoc.acceptor.primitive is not None:
        answer = assoc.acceptor.primitive
        raise NetworkError(failure + rejection_words(int(answer.result or 0),
                                                     int(answer.result_source or 0),
                                                     int(answer.diagnostic or 0)),
                           peer=str(node))
    if assoc.rejected_contexts and not assoc.accepted_contexts:
        raise ServiceRejected(failure + refused, peer=str(node))
    raise NetworkError(f"{failure}association aborted or unanswered during negotiation",
                       peer=str(node))
