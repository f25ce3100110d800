"""Who may wait for an association: the receiver's count of pending connections.

A connection is *pending* from the moment it is accepted until its
A-ASSOCIATE-RQ is answered (TLS handshake and request included).  Pending
connections are counted apart from the association slots, in all and per
remote IP address, so that idle or slow connections from one host can
neither take the slots nor keep others from being heard.
"""

from __future__ import annotations

import threading
import time
from collections import Counter, OrderedDict

__all__ = ["LogThrottle", "PendingConnections"]


class PendingConnections:
    """Thread-safe counts of connections, in all and per address.

    The receiver counts its pending connections with it; ``rtforge serve``
    its open ones (:mod:`rtforge.workflows._http_admission`).

    Parameters
    ----------
    most : int
        Connections allowed in all.
    per_address : int
        Connections allowed from one address.
    full, crowded : str, optional
        Why a connection is refused when all are taken, and when its address
        holds its share: formats of ``most``, ``per_address`` and ``address``
        (by default the receiver's words).
    """

    def __init__(self, most: int, per_address: int, *,
                 full: str = "{most} connections waiting to associate (--max-pending)",
                 crowded: str = ("{per_address} connections from {address} waiting to "
                                 "associate (--max-pending-per-address)")) -> None:
        self.most = most
        self.per_address = per_address
        self._full, self._crowded = full, crowded
        self._lock = threading.Lock()
        self._by_address: Counter[str] = Counter()
        self._total = 0

    def enter(self, address: str) -> str | None:
        """Count one more connection from ``address``, or say why it cannot be one.

        Returns
        -------
        str or None
            ``None`` when counted (call :meth:`leave` once it ends);
            else the limit it would exceed, in words.
        """
        with self._lock:
            if self._total >= self.most:
                return self._full.format(most=self.most, per_address=self.per_address,
                                         address=address)
            if self._by_address[address] >= self.per_address:
                return self._crowded.format(most=self.most, per_address=self.per_address,
                                            address=address)
            self._total += 1
            self._by_address[address] += 1
            return None

    def leave(self, address: str) -> None:
        """Forget one connection from ``address`` counted by :meth:`enter`."""
        with self._lock:
            self._total -= 1
            self._by_address[address] -= 1
            if not self._by_address[address]:
                del self._by_address[address]

    @property
    def total(self) -> int:
        """Pending connections now."""
        return self._total


class LogThrottle:
    """At most one log line per address every ``interval`` seconds for refused connections.

    An attacker opening connections as fast as it can would otherwise write a
    line each into the receiver's log.  The line that is let through says how
    many were held back since the last one.

    Parameters
    ----------
    interval : float
        Seconds between two lines about one address.
    most_addresses : int
        Addresses remembered at once (the oldest is forgotten first), so that
        many addresses cannot grow this table without bound.
    """

    def __init__(self, interval: float = 10.0, most_addresses: int = 1024) -> None:
        self.interval = interval
        self.most_addresses = most_addresses
        self._lock = threading.Lock()
        self._last: OrderedDict[str, tuple[float, int]] = OrderedDict()

    def allow(self, address: str, now: float | None = None) -> int | None:
        """Whether to log a line about ``address`` now.

        Returns
        -------
        int or None
            ``None``: hold the line back; else how many lines about ``address``
            were held back since the last one (0 for the first).
        """
        now = time.monotonic() if now is None else now
        with self._lock:
            last, held = self._last.get(address, (float("-inf"), 0))
            if now - last < self.interval:
                self._last[address] = (last, held + 1)
                return None
            self._last[address] = (now, 0)
            self._last.move_to_end(address)
            while len(self._last) > self.most_addresses:
                self._last.popitem(last=False)
            return held
