"""Connection admission for ``rtforge serve``: bounded connections and request time.

uvicorn answers every connection it accepts, and it waits for a request's
headers and body for as long as the client takes.  A client that opens many
connections and sends half a request on each keeps them all.  Measured here:
1100 such connections left a service under the common limit of 1024 file
descriptors unable to answer ``/health`` at all.

:func:`guarded_h11` is uvicorn's own h11 protocol with admission added; it is
passed as ``uvicorn.Config(http=...)``.  It enforces three limits:

- At most ``max_connections`` connections are open at once, and at most
  ``max_per_address`` from one client.  A client is one IPv4 address, or one
  IPv6 /64 network, since one host holds a whole /64.  Any other connection
  is answered 503 with ``Retry-After`` and closed at once, which frees its
  descriptor.
- A request must arrive whole, headers and body, within ``request_timeout``
  seconds of its start.  The start is when the connection opens, or when the
  previous answer on it ends.  Past that, the connection is closed: after a
  408 when part of a request's headers came, silently when nothing did (as
  uvicorn's own keep-alive timeout), and with the application told the client
  is gone when the body is late.
- Refusals are logged at most once per client every 10 s
  (:class:`rtforge.net._admission.LogThrottle`); connections are counted as the
  receiver counts its pending ones (:class:`rtforge.net._admission.PendingConnections`).

Every answer is the service's JSON error, ``{"error": message}``.
"""

from __future__ import annotations

import asyncio
import ipaddress
import json
import logging
from dataclasses import dataclass

from uvicorn.protocols.http.h11_impl import H11Protocol
from uvicorn.protocols.utils import get_remote_addr

from rtforge.net._admission import LogThrottle, PendingConnections

__all__ = ["ConnectionLimits", "guarded_h11"]

log = logging.getLogger("rtforge.workflows.asgi")

#: Seconds an answered connection that is being ended may still take to close.
_PARTING_S = 1.0


@dataclass(frozen=True)
class ConnectionLimits:
    """What the service's clients may hold (see the module).

    Parameters
    ----------
    max_connections : int
        Open connections at once.
    max_per_address : int
        Open connections from one client (an IPv4 address or an IPv6 /64).
    request_timeout : float
        Seconds a request may take to arrive whole (headers and body).
    """

    max_connections: int = 512
    max_per_address: int = 128
    request_timeout: float = 10.0


def client_key(host: str | None) -> str:
    """The client a connection counts against: its IPv4 address or its IPv6 /64."""
    if not host:
        return "-"
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def _answer(status: int, reason: str, message: str, extra: str = "") -> bytes:
    body = json.dumps({"error": message}).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\nconnection: close\r\n{extra}\r\n").encode() + body


def guarded_h11(limits: ConnectionLimits) -> type[H11Protocol]:
    """uvicorn's h11 protocol with the admission of the module, for ``Config(http=...)``.

    Parameters
    ----------
    limits : ConnectionLimits

    Returns
    -------
    type
        A subclass of :class:`uvicorn.protocols.http.h11_impl.H11Protocol`
        whose instances share one count of open connections.
    """
    counts = PendingConnections(
        limits.max_connections, limits.max_per_address,
        full="the service holds its most connections ({most})",
        crowded="this client holds the most connections one client may ({per_address})")
    throttle = LogThrottle()

    class Guarded(H11Protocol):
        _key: str | None = None  # the client it counts against, once admitted
        _deadline: asyncio.TimerHandle | None = None
        _armed_after: object = None  # the request cycle that ended when the deadline was set
        _parting: asyncio.TimerHandle | None = None  # answered and ending: input discarded
        _started = False  # bytes of a request came since the deadline was set

        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            remote = get_remote_addr(transport)
            key = client_key(remote[0] if remote else None)
            why = counts.enter(key)
            if why is not None:  # never handed to uvicorn
                self.transport = transport
                self._part(_answer(503, "Service Unavailable", f"{why}; try again later",
                                   "retry-after: 1\r\n"))
                held = throttle.allow(key)
                if held is not None:
                    log.warning("refused a connection from %s: %s%s", key, why,
                                f" ({held} more since the last line)" if held else "")
                return
            self._key = key
            super().connection_made(transport)
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            if self._parting is not None:
                self._parting.cancel()
            if self._key is None:
                return  # refused: uvicorn never knew it
            counts.leave(self._key)
            self._key = None
            self._disarm()
            super().connection_lost(exc)

        def data_received(self, data: bytes) -> None:
            if self._parting is not None:
                return  # answered and ending: what still comes is read and dropped
            self._started = True
            super().data_received(data)
            cycle = self.cycle
            if cycle is not None and cycle is not self._armed_after and not cycle.more_body:
                self._disarm()  # the request is whole: the application has it

        def eof_received(self) -> bool | None:
            if self._parting is not None:
                return None  # the client has read the answer: close
            return super().eof_received()

        def on_response_complete(self) -> None:
            super().on_response_complete()
            if not self.transport.is_closing():
                self._arm()  # the next request on this connection has its own deadline

        def _part(self, answer: bytes) -> None:
            """Write ``answer``, end the output and close within a second.

            Closing at once with the client's bytes unread would reset the
            connection, and the client could lose the answer; reading and
            dropping them until the client closes (at most a second) delivers it.
            """
            self.transport.write(answer)
            if self.transport.can_write_eof():
                self.transport.write_eof()
            self._parting = asyncio.get_running_loop().call_later(_PARTING_S,
                                                                  self.transport.abort)

        def _arm(self) -> None:
            self._disarm()
            self._armed_after, self._started = self.cycle, False
            self._deadline = self.loop.call_later(limits.request_timeout, self._expired)

        def _disarm(self) -> None:
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None

        def _expired(self) -> None:
            self._deadline = None
            if self.transport.is_closing() or self._parting is not None:
                return
            if self.cycle is self._armed_after and self._started:  # half a request
                self._part(_answer(408, "Request Timeout", "the request did not arrive whole "
                                   f"within {limits.request_timeout:g} s"))
            else:  # idle (as uvicorn's keep-alive timeout), or its body is late: the
                self.transport.close()  # application sees the client gone

    return Guarded
