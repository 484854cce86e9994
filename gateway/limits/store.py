"""Where counters live: the interface both backends share, and the in-memory one (one process).

Per-minute limits are token buckets kept as GCRA's "theoretical arrival time" (one number per
counter: a bucket of ``limit`` that refills at ``limit`` per minute), so a caller may burst up to
its limit and then gets one unit every ``period / limit`` seconds. A daily quota is a sum per UTC
day. Concurrency is the count of admitted requests not yet released. ``admit`` is all or nothing:
either every counter takes its cost, or none does and the verdict names the one that refused.

    store = MemoryStore()
    verdict = await store.admit(counters, costs, lease="r1")
    await store.settle(counters, deltas, lease="r1")       # tokens used minus those reserved

The Redis store (``redis_store.RedisStore``) runs the same arithmetic in Lua, atomically.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from .rules import DAY, Counter

__all__ = ["MemoryStore", "Store", "StoreUnavailable", "Verdict"]

_SWEEP_AT = 10_000  # buckets kept before the full ones are dropped


class StoreUnavailable(Exception):
    """The shared store could not be reached; the limiter's fail mode decides what happens."""


@dataclass(frozen=True, slots=True)
class Verdict:
    """What ``admit`` decided: ``refused`` is the index of the counter that said no (``None``: admitted),
    ``retry_after`` when it would say yes, and per counter its ``(remaining, reset)`` standing after
    this request, or without it when it was refused (reset: seconds until it is full again)."""

    refused: int | None
    retry_after: float
    standing: tuple[tuple[int, float], ...]


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
        # No await in here: on one event loop, checking every counter and then taking from them is atomic.
        now = time.time()
        day = int(now // DAY)
        standing: list[tuple[int, float]] = []
        before: list[tuple[int, float]] = []  # a refused request takes nothing: what is left without it
        updates: list[float | int] = []
        refused, wait = None, 0.0
        for index, (counter, cost) in enumerate(zip(counters, costs, strict=True)):
            limit = counter.limit
            if counter.kind == "rate":
                interval = counter.period / limit
                held = max(self._arrival.get(counter.key, now), now) - now  # how far the bucket is from full
                ahead = held + cost * interval
                if ahead > counter.period + 1e-9:
                    refused, wait = _worse(refused, wait, index, ahead - counter.period)
                updates.append(now + ahead)
                standing.append((max(0, math.floor((counter.period - ahead) / interval + 1e-9)), ahead))
                before.append((max(0, math.floor((counter.period - held) / interval + 1e-9)), held))
            elif counter.kind == "quota":
                seen, used = self._daily.get(counter.key, (day, 0))
                used = (used if seen == day else 0) + cost
                if used > limit:
                    refused, wait = _worse(refused, wait, index, until_midnight(now))
                updates.append(used)
                standing.append((max(0, limit - used), until_midnight(now)))
                before.append((max(0, limit - used + cost), until_midnight(now)))
            else:
                running = self._inflight.get(counter.key, 0) + cost
                if running > limit:
                    refused, wait = _worse(refused, wait, index, 1.0)
                updates.append(running)
                standing.append((max(0, limit - running), 0.0))
                before.append((max(0, limit - running + cost), 0.0))
        if refused is not None:
            return Verdict(refused, wait, tuple(before))
        for counter, value in zip(counters, updates, strict=True):
            if counter.kind == "rate":
                self._arrival[counter.key] = float(value)
            elif counter.kind == "quota":
                self._daily[counter.key] = (day, int(value))
            else:
                self._inflight[counter.key] = int(value)
        if len(self._arrival) > _SWEEP_AT:
            self._arrival = {k: v for k, v in self._arrival.items() if v > now}
        return Verdict(None, 0.0, tuple(standing))

    async def settle(self, counters: Sequence[Counter], deltas: Sequence[int], lease: str) -> None:
        now = time.time()
        day = int(now // DAY)
        for counter, delta in zip(counters, deltas, strict=True):
            if counter.kind == "rate":
                arrival = max(self._arrival.get(counter.key, now), now) + delta * counter.period / counter.limit
                self._arrival[counter.key] = max(arrival, now)
            elif counter.kind == "quota":
                seen, used = self._daily.get(counter.key, (day, 0))
                self._daily[counter.key] = (day, max(0, (used if seen == day else 0) + delta))
            else:
                running = self._inflight.get(counter.key, 0) - delta
                if running > 0:
                    self._inflight[counter.key] = running
                else:
                    self._inflight.pop(counter.key, None)

    async def ping(self) -> None:
        return None

    async def close(self) -> None:
        return None


def _worse(refused: int | None, wait: float, index: int, this: float) -> tuple[int, float]:
    """The refusal to report: the one that takes longest to lift."""
    if refused is None or this > wait:
        return index, this
    return refused, wait
