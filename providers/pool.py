"""``IdleCappedConnector``: aiohttp's connection pool, with a cap on the connections it keeps idle.

aiohttp keeps every connection released to its pool until its keep-alive timeout, and reuses the
oldest first, so a burst leaves all its connections behind: after 1,000 concurrent streams, 1,000
idle upstream connections, about fifty garbage-collected objects each (transport, protocol,
parser, buffers, and the context of the request that opened it, its telemetry included). They
cost nothing while idle but make every collection of the garbage collector longer: measured, the
same process then served JSON passthrough at 0.75-0.84 of its rate before the burst, until the
keep-alive timeout closed them. Capped as Go's ``http.Transport`` caps them
(``MaxIdleConnsPerHost``, ``MaxIdleConns``: ``CLIENT_MAX_IDLE_CONNS_PER_HOST``,
``CLIENT_MAX_IDLE_CONNS``), a connection released beyond a cap is closed at once, the longest
idle first.

    connector = IdleCappedConnector(max_idle=20, max_idle_per_host=20, keepalive_timeout=30.0)
"""

from __future__ import annotations

from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.client_reqrep import ConnectionKey

__all__ = ["IdleCappedConnector"]


class IdleCappedConnector(aiohttp.TCPConnector):
    """A ``TCPConnector`` keeping at most ``max_idle_per_host`` idle connections per endpoint and
    ``max_idle`` in all (0: no cap)."""

    def __init__(self, *, max_idle: int = 0, max_idle_per_host: int = 0, **options: Any) -> None:
        super().__init__(**options)
        self._max_idle = max_idle
        self._max_idle_per_host = max_idle_per_host

    # aiohttp's one place where a connection returns to the pool (its idle lists, ``_conns``: a
    # deque per endpoint of (protocol, time released), reused from the left). Private, so a test
    # (tests/test_pool.py) checks the cap on every aiohttp this runs with.
    def _release(self, key: ConnectionKey, protocol: ResponseHandler, *, should_close: bool = False) -> None:
        super()._release(key, protocol, should_close=should_close)
        idle = self._conns.get(key)
        if idle is None:  # closed rather than kept
            return
        cap = self._max_idle_per_host
        while cap and len(idle) > cap:
            idle.popleft()[0].close()
        if self._max_idle:
            self._cap_total()

    def _cap_total(self) -> None:
        pools = self._conns
        extra = sum(len(idle) for idle in pools.values()) - self._max_idle
        while extra > 0:
            # The longest idle of all: the one at the left of its endpoint's list that left first.
            key = min(pools, key=lambda k: pools[k][0][1])
            idle = pools[key]
            idle.popleft()[0].close()
            if not idle:
                del pools[key]
            extra -= 1

    def idle_count(self) -> int:
        """Connections kept idle in the pool right now."""
        return sum(len(idle) for idle in self._conns.values())
