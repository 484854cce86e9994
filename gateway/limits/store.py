"""Where counters live: the interface both backends share, and the in-memory one (one process).

Per-minute limits are token buckets kept as GCRA's "theoretical arrival time" (one number per
counter: a bucket of ``limit`` that refills at ``limit`` per minute), so a caller may burst up to
its limit and then gets one unit every ``period / limit`` seconds. A daily quota is a sum per UTC
day. Concurrency is the count of admitted requests not yet released. ``admit`` is all or nothing:
either every counter takes its cost, or none does and the verdict names the one that refused.

    store = MemoryStore()
    verdict = await store.admit(counters, costs, lease="r1")
    await store.settle(counters, deltas, lease="r1")       # tokens used minus those reserved
    verdict = store.take(counters, costs)                  # the same, without a coroutine: what
    store.give(counters, deltas)                           # ``Limits`` calls on this store

The Redis store (``redis_store.RedisStore``) runs the same arithmetic in Lua, atomically.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any, Protocol

from .rules import DAY, Counter

__all__ = ["MemoryStore", "Store", "StoreUnavailable", "Verdict"]

_SWEEP_AT = 10_000  # buckets kept before the full ones are dropped


class StoreUnavailable(Exception):
    """The shared store could not be reached; the limiter's fail mode decides what happens."""


class Verdict:
    """What ``admit`` decided: ``refused`` is the index of the counter that said no (``None``: admitted),
    ``retry_after`` when it would say yes, and per counter its ``(remaining, reset)`` standing after
    this request, or without it when it was refused (reset: seconds until it is full again)."""

    __slots__ = ("refused", "retry_after", "standing")

    # A plain class, not a frozen dataclass: one is made per request, and a frozen one's
    # ``__init__`` costs three times as much.
    def __init__(self, refused: int | None, retry_after: float, standing: tuple[tuple[int, float], ...]) -> None:
        self.refused = refused
        self.retry_after = retry_after
        self.standing = standing

    def __repr__(self) -> str:
        return f"Verdict(refused={self.refused!r}, retry_after={self.retry_after!r}, standing={self.standing!r})"


class Store(Protocol):
    name: str
    location: str

    async def admit(self, counters: Sequence[Counter], costs: Sequence[int], lease: str) -> Verdict: ...

    async def settle(self, counters: Sequence[Counter], deltas: Sequence[int], lease: str) -> None: ...

    async def ping(self) -> None: ...

    async def close(self) -> None: ...


def until_midnight(now: float) -> float:
    return DAY - now % DAY


class MemoryStore:
    """Counters in this process's memory: right for one process, wrong for several (use Redis)."""

    name = "memory"
    location = "this process"

    def __init__(self) -> None:
        self._arrival: dict[str, float] = {}  # rate counters: the bucket's theoretical arrival time
        self._daily: dict[str, tuple[int, int]] = {}  # quota counters: (UTC day, used)
        self._inflight: dict[str, int] = {}

    async def admit(self, counters: Sequence[Counter], costs: Sequence[int], lease: str) -> Verdict:
        return self.take(counters, costs)

    async def settle(self, counters: Sequence[Counter], deltas: Sequence[int], lease: str) -> None:
        self.give(counters, deltas)

    def take(self, counters: Sequence[Counter], costs: Sequence[int]) -> Verdict:
        """``admit`` without a coroutine (``Limits`` calls it so). No await: on one event loop,
        checking every counter and then taking from them is atomic."""
        now = time.time()
        day = int(now // DAY)
        standing: list[tuple[int, float]] = []
        taken: list[tuple[dict[str, Any], str, Any]] = []  # (table, key, value), set once all say yes
        refused, wait = None, 0.0
        for index, counter in enumerate(counters):
            cost, limit, kind, key = costs[index], counter.limit, counter.kind, counter.key
            if kind == "rate":
                period = counter.period
                interval = period / limit
                held = self._arrival.get(key, now) - now  # how far the bucket is from full
                if held < 0:
                    held = 0.0
                ahead = held + cost * interval
                if ahead > period + 1e-9:
                    refused, wait = _worse(refused, wait, index, ahead - period)
                taken.append((self._arrival, key, now + ahead))
                remaining = math.floor((period - ahead) / interval + 1e-9)
                standing.append((remaining if remaining > 0 else 0, ahead))
            elif kind == "quota":
                seen, used = self._daily.get(key, (day, 0))
                used = (used if seen == day else 0) + cost
                if used > limit:
                    refused, wait = _worse(refused, wait, index, until_midnight(now))
                taken.append((self._daily, key, (day, used)))
                standing.append((max(0, limit - used), until_midnight(now)))
            else:
                running = self._inflight.get(key, 0) + cost
                if running > limit:
                    refused, wait = _worse(refused, wait, index, 1.0)
                taken.append((self._inflight, key, running))
                standing.append((max(0, limit - running), 0.0))
        if refused is not None:
            return Verdict(refused, wait, self._untaken(counters, now, day))
        for table, key, value in taken:
            table[key] = value
        if len(self._arrival) > _SWEEP_AT:
            self._arrival = {k: v for k, v in self._arrival.items() if v > now}
        return Verdict(None, 0.0, tuple(standing))

    def give(self, counters: Sequence[Counter], deltas: Sequence[int]) -> None:
        """``settle`` without a coroutine."""
        now = time.time()
        day = int(now // DAY)
        for counter, delta in zip(counters, deltas, strict=True):
            kind, key = counter.kind, counter.key
            if kind == "rate":
                arrival = self._arrival.get(key, now)
                if arrival < now:
                    arrival = now
                arrival += delta * counter.period / counter.limit
                self._arrival[key] = arrival if arrival > now else now
            elif kind == "quota":
                seen, used = self._daily.get(key, (day, 0))
                self._daily[key] = (day, max(0, (used if seen == day else 0) + delta))
            else:
                running = self._inflight.get(key, 0) - delta
                if running > 0:
                    self._inflight[key] = running
                else:
                    self._inflight.pop(key, None)

    def _untaken(self, counters: Sequence[Counter], now: float, day: int) -> tuple[tuple[int, float], ...]:
        """A refused request takes nothing: per counter, what is left without it (worked out only then)."""
        standing: list[tuple[int, float]] = []
        for counter in counters:
            limit = counter.limit
            if counter.kind == "rate":
                interval = counter.period / limit
                held = max(self._arrival.get(counter.key, now), now) - now
                standing.append((max(0, math.floor((counter.period - held) / interval + 1e-9)), held))
            elif counter.kind == "quota":
                seen, used = self._daily.get(counter.key, (day, 0))
                standing.append((max(0, limit - (used if seen == day else 0)), until_midnight(now)))
            else:
                standing.append((max(0, limit - self._inflight.get(counter.key, 0)), 0.0))
        return tuple(standing)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


def _worse(refused: int | None, wait: float, index: int, this: float) -> tuple[int, float]:
    """The refusal to report: the one that takes longest to lift."""
    if refused is None or this > wait:
        return index, this
    return refused, wait
