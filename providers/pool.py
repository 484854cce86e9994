"""``IdleCappedConnector``: aiohttp's connection pool, with a cap on the connections it keeps idle.

aiohttp keeps every connection released to its pool until its keep-alive timeout, and reuses the
oldest first, so a burst leaves all its connections behind: after 1,000 concurrent streams, 1,000
idle upstream connections, about fifty garbage-collected objects each (transport, protocol,
parser, buffers, and the context of the request that opened it, its telemetry included). They
cost nothing while idle but make every collection of the garbage collector longer: measured, the
same process then served JSON passthrough at 0.75-0.84 of its rate before the burst, until the
keep-alive timeout closed them. Capped as Go's ``http.Transport`` caps them
(``MaxIdleConnsPerHost``, ``MaxIdleConns``: ``CLIENT_MAX_IDLE_CONNS_PER_HOST``,
``CLIENT_MAX_IDLE_CONNS``), the connections beyond a cap are closed, the longest idle first, but
only once idle for a grace of a second (a sweep, armed when a release passes a cap): closed at
once, as Go does, a load of 32 concurrent calls to one host with the cap at 20 reopened a
connection for one request in ten.

    connector = IdleCappedConnector(max_idle=20, max_idle_per_host=20, keepalive_timeout=30.0)
"""

from __future__ import annotations

import asyncio
from time import monotonic
from typing import Any

import aiohttp
from aiohttp.client_proto import ResponseHandler
from aiohttp.client_reqrep import ConnectionKey

__all__ = ["IdleCappedConnector"]


class IdleCappedConnector(aiohttp.TCPConnector):
    """A ``TCPConnector`` keeping at most ``max_idle_per_host`` idle connections per endpoint and
    ``max_idle`` in all (0: no cap), past ``grace`` seconds of idleness."""

    def __init__(self, *, max_idle: int = 0, max_idle_per_host: int = 0, grace: float = 1.0, **options: Any) -> None:
        super().__init__(**options)
        self._max_idle = max_idle
        self._max_idle_per_host = max_idle_per_host
        self._grace = grace
        self._sweep: asyncio.TimerHandle | None = None

    # aiohttp's one place where a connection returns to the pool (its idle lists, ``_conns``: a
    # deque per endpoint of (protocol, time released), oldest at the left, reused from there).
    # Private, so tests/test_pool.py checks the caps on every aiohttp this runs with.
    def _release(self, key: ConnectionKey, protocol: ResponseHandler, *, should_close: bool = False) -> None:
        super()._release(key, protocol, should_close=should_close)
        if self._sweep is None and self._over_a_cap(key):
            self._sweep = self._loop.call_later(self._grace, self._swept)

    def _over_a_cap(self, grown: ConnectionKey | None = None) -> bool:
        """Whether the idle connections pass a cap; of the endpoints, only ``grown``'s can have
        passed its own since the last look (a release adds to one), when it is given."""
        per_host, total = self._max_idle_per_host, self._max_idle
        pools = self._conns
        if per_host:
            if grown is not None:
                if len(pools.get(grown, ())) > per_host:
                    return True
            elif any(len(idle) > per_host for idle in pools.values()):
                return True
        return bool(total) and sum(len(idle) for idle in pools.values()) > total

    def _swept(self) -> None:
        self._sweep = None
        if self._closed:  # the session closed meanwhile: nothing pooled is left
            return
        pools = self._conns
        # Only connections idle for the whole grace: a steady load above a cap reuses every
        # connection within it (oldest first), so it never has one closed and opened again.
        deadline = monotonic() - self._grace
        per_host = self._max_idle_per_host
        for key in list(pools):
            idle = pools[key]
            while per_host and len(idle) > per_host and idle[0][1] <= deadline:
                idle.popleft()[0].close()
        extra = sum(len(idle) for idle in pools.values()) - self._max_idle if self._max_idle else 0
        while extra > 0:
            # The longest idle of all: the one at the left of its endpoint's list that came back first.
            key = min(pools, key=lambda k: pools[k][0][1])
            idle = pools[key]
            if idle[0][1] > deadline:
                break
            idle.popleft()[0].close()
            if not idle:
                del pools[key]
            extra -= 1
        if self._over_a_cap():  # some are still within their grace
            self._sweep = self._loop.call_later(self._grace, self._swept)

    def idle_count(self) -> int:
        """Connections kept idle in the pool right now."""
        return sum(len(idle) for idle in self._conns.values())
