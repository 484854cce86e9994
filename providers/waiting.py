"""The wall time a request spends waiting on others (providers, MCP tools), overlapping waits once.

The gateway's overhead header is a request's time minus this. Waits may nest or run in parallel
(``/v1/models`` asks every provider at once; MCP tools run side by side), so a clock counts the
waits in progress: the time runs while at least one is, and is never summed twice.

    clock = WaitClock()
    token = WAITS.set(clock)          # once per request; tasks it starts share the clock
    clock.begin(); ...; clock.end()   # around each wait (see ``waiting`` for a with-block)
    clock.waited(time.perf_counter())
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

__all__ = ["WAITS", "WaitClock", "waiting"]


class WaitClock:
    """Seconds during which at least one wait was in progress."""

    __slots__ = ("_since", "_total", "active")

    def __init__(self) -> None:
        self.active = 0
        self._since = 0.0
        self._total = 0.0

    def begin(self) -> None:
        if self.active == 0:
            self._since = time.perf_counter()
        self.active += 1

    def end(self) -> None:
        self.active -= 1
        if self.active == 0:
            self._total += time.perf_counter() - self._since

    def waited(self, now: float) -> float:
        """The waiting time up to ``now``, counting a wait still in progress."""
        return self._total + (now - self._since if self.active else 0.0)


# The current request's clock; None outside a request (then waits are not counted).
WAITS: ContextVar[WaitClock | None] = ContextVar("polyrelay_waits", default=None)


@contextmanager
def waiting() -> Iterator[None]:
    """Count the block as a wait of the current request."""
    clock = WAITS.get()
    if clock is None:
        yield
        return
    clock.begin()
    try:
        yield
    finally:
        clock.end()
