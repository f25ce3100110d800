"""Remote nodes: named in the configuration or written as ``AET@HOST:PORT``.

The :class:`~rtforge.config.Node` record itself lives in :mod:`rtforge.config`
(the configuration file holds the known nodes); this module turns what a user
types into one.
"""

from __future__ import annotations

import re
from dataclasses import replace

from rtforge.config import DEFAULT_MAX_PDU, DEFAULT_TIMEOUT, NetworkConfig, Node
from rtforge.errors import InvalidInputError

__all__ = ["Node", "resolve_node"]

_ADDRESS_RE = re.compile(r"^(?P<aet>[^@]+)@(?:\[(?P<ipv6>[0-9A-Fa-f:.]+)\]|(?P<host>[^:@\[\]]+))"
                         r":(?P<port>[0-9]+)$")


def resolve_node(text: str, network: NetworkConfig | None = None, *,
                 timeout: float | None = None, max_pdu: int | None = None) -> Node:
    """The node a user named, by configured name or as ``AET@HOST:PORT``.

    Parameters
    ----------
    text : str
        A node name from ``[network.nodes]``, or ``AET@HOST:PORT`` (an IPv6
        address in brackets: ``AET@[::1]:104``).
    network : NetworkConfig, optional
        Where named nodes are looked up; without it only addresses resolve.
    timeout : float, optional
        Overrides the node's timeout (seconds).
    max_pdu : int, optional
        Overrides the node's maximum PDU size (bytes).

    Returns
    -------
    Node

    Raises
    ------
    InvalidInputError
        If ``text`` is neither a known name nor a valid address, or an
        override is out of range.
    """
    match = _ADDRESS_RE.match(text.strip())
    if match is not None:
        node = Node(ae_title=match["aet"], host=match["ipv6"] or match["host"],
                    port=int(match["port"]), timeout=DEFAULT_TIMEOUT, max_pdu=DEFAULT_MAX_PDU)
    elif network is not None and text in network.nodes:
        node = network.nodes[text]
    else:
        known = ", ".join(sorted(network.nodes)) if network is not None and network.nodes else "none"
        raise InvalidInputError(
            f"unknown node {text!r}: give a name from [network.nodes] in the configuration "
            f"(known: {known}) or AET@HOST:PORT")
    if timeout is not None:
        node = replace(node, timeout=timeout)
    if max_pdu is not None:
        node = replace(node, max_pdu=max_pdu)
    return node
