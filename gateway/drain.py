"""Graceful shutdown: requests in flight get ``SERVER_DRAIN_TIMEOUT`` to finish, then are cut cleanly.

Shutdown has three steps, each one method here. On the first SIGTERM the process *leaves*: ``/ready``
answers 503 (see ``readiness``) while new requests are still served for ``SERVER_DRAIN_DELAY``, so
the load balancer stops sending before anything is refused. The HTTP server (``gateway.server``)
then stops accepting connections and begins the drain. Every
request waiting on a provider is watched (``relay._Watch``) and registered here; at the deadline
each is interrupted: a stream ends with an error event and ``data: [DONE]`` so its client knows the
answer was cut, a request not yet answered gets a 503 it can retry.

    drain = Drain(timeout=20.0)
    drain.leave()        # on SIGTERM: not ready any more, still serving
    drain.begin()        # after the delay (at once on SIGINT): the deadline starts
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
        self.leaving = False
        self.draining = False
        self.is_cut = False
        self._watched: set[Interruptible] = set()
        self._timer: asyncio.TimerHandle | None = None

    def add(self, watch: Interruptible) -> None:
        self._watched.add(watch)

    def discard(self, watch: Interruptible) -> None:
        self._watched.discard(watch)

    def leave(self) -> None:
        """The process is going away: it answers not ready from now on, and serves on."""
        self.leaving = True

    def begin(self) -> None:
        """Start the deadline (once); a request that finishes before it is never touched."""
        if self.draining:
            return
        self.leaving = self.draining = True
        if self.is_cut:
            return
        if self._watched:
            log.info("draining: %d request(s) in flight get %.0fs to finish", len(self._watched), self.timeout)
        self._timer = asyncio.get_running_loop().call_later(self.timeout, self.cut)

    def cut(self) -> None:
        """Interrupt every request still in flight (each answers its client and ends)."""
        if self.is_cut:
            return
        self.leaving = self.is_cut = True
        if self._timer is not None:
            self._timer.cancel()
        if self._watched:
            log.warning("drain deadline: cutting %d request(s) still in flight", len(self._watched))
        for watch in list(self._watched):
            watch.interrupt()
