"""Graceful shutdown: requests in flight get ``SERVER_DRAIN_TIMEOUT`` to finish, then are cut cleanly.

The HTTP server (``gateway.server``) begins the drain when it stops accepting connections. Every
request waiting on a provider is watched (``relay._Watch``) and registered here; at the deadline
each is interrupted: a stream ends with an error event and ``data: [DONE]`` so its client knows the
answer was cut, a request not yet answered gets a 503 it can retry.

    drain = Drain(timeout=20.0)
    drain.begin()        # on SIGTERM: the deadline starts
    drain.cut()          # at the deadline, or at once on a second signal
"""

from __future__ import annotations

import asyncio
import logging
from typing import Protocol

__all__ = ["Drain", "Interruptible"]

log = logging.getLogger("polyrelay")


class Interruptible(Protocol):
    def interrupt(self) -> None: ...


class Drain:
    """The shutdown deadline of one server process and the requests it will cut."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.draining = False
        self.is_cut = False
        self._watched: set[Interruptible] = set()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, watch: Interruptible) -> None:
        self._watched.add(watch)

    def discard(self, watch: Interruptible) -> None:
        self._watched.discard(watch)

    def begin(self) -> None:
        """Start the deadline (once); a request that finishes before it is never touched."""
        if self.draining:
            return
        self.draining = True
        if self._watched:
            log.info("draining: %d request(s) in flight get %.0fs to finish", len(self._watched), self.timeout)
        self._timer = asyncio.get_running_loop().call_later(self.timeout, self.cut)

    def cut(self) -> None:
        """Interrupt every request still in flight (each answers its client and ends)."""
        if self.is_cut:
            return
        self.is_cut = True
        if self._timer is not None:
            self._timer.cancel()
        if self._watched:
            log.warning("drain deadline: cutting %d request(s) still in flight", len(self._watched))
        for watch in list(self._watched):
            watch.interrupt()
