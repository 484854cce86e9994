"""The reconciler: makes this process's data planes (the ``Runtime``) follow the store, and records
what became of each gateway in its status. One per process; every replica runs its own.

At ``start`` every stored gateway is applied (the store is the truth; nothing is kept between
runs), then the store's change feed is followed. Each gateway has at most one worker at a time;
a change arriving while it works is taken up after (changes coalesce, the newest spec wins).

    spec changed (a generation not yet applied here)  -> runtime.apply -> STATUS_READY + endpoints
        GatewayUnavailable -> STATUS_ERROR, retried with backoff (0.5 s doubling to 30 s)
        ValueError         -> STATUS_FAILED, not retried (a PATCH makes a new generation)
    STATUS_DELETING        -> runtime.remove (drains) -> the row removed
    row gone               -> runtime.remove

Status writes go through ``Store.update``: each is computed from the row as it is under its lock
and skipped if it would change nothing, or if the row moved to a newer generation meanwhile. So
several replicas recording the same transition write it once, and none overwrites a newer PATCH.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass, replace

from . import lifecycle
from .spec import GatewayStatus, GatewayUnavailable, Runtime
from .store import Record, Store, StoreError
from .store.record import now, seconds

__all__ = ["Reconciler"]

log = logging.getLogger("polyrelay")

FIRST_RETRY = 0.5
LAST_RETRY = 30.0
START_TIMEOUT = 30.0  # start() waits this long for the first applies, then serves anyway


class Reconciler:
    """``Reconciler(store, runtime)``; ``await start()`` once the store is open, ``await close()``."""

    def __init__(self, store: Store, runtime: Runtime, *, first_retry: float = FIRST_RETRY) -> None:
        self.store = store
        self.runtime = runtime
        self.first_retry = first_retry
        self.applied: dict[str, int] = {}  # gateway id -> the generation this process applied (or failed)
        self._dirty: set[str] = set()
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._retries: dict[str, _Retry] = {}
        self._feed: asyncio.Task[None] | None = None

    async def start(self) -> None:
        for record in await self.store.list():
            self.kick(record.spec.id)
        workers = list(self._workers.values())
        if workers:
            _, pending = await asyncio.wait(workers, timeout=START_TIMEOUT)
            if pending:
                log.warning("gateways: %d still applying after %gs; serving anyway", len(pending), START_TIMEOUT)
        self._feed = asyncio.create_task(self._follow(), name="gateways-feed")

    async def close(self) -> None:
        for retry in self._retries.values():
            retry.timer.cancel()
        self._retries.clear()
        tasks = [t for t in (self._feed, *self._workers.values()) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    def kick(self, gateway_id: str) -> None:
        """Reconcile this gateway soon (after its current worker, if one runs)."""
        self._dirty.add(gateway_id)
        if gateway_id not in self._workers:
            self._workers[gateway_id] = asyncio.create_task(self._work(gateway_id), name=f"gateway-{gateway_id}")

    async def idle(self) -> None:
        """Until no worker runs (for tests and orderly shutdown)."""
        while self._workers:
            await asyncio.gather(*self._workers.values(), return_exceptions=True)

    # -- the feed ---------------------------------------------------------------------------------

    async def _follow(self) -> None:
        while True:
            try:
                async with contextlib.aclosing(self.store.changes()) as feed:  # closed when cancelled
                    async for changed in feed:
                        if changed is None:
                            changed = set(self.applied) | {r.spec.id for r in await self.store.list()}
                        for gateway_id in changed:
                            self.kick(gateway_id)
            except StoreError as exc:  # the store's health tells the log of the outage, once
                log.debug("gateways: the change feed failed (%s); following again in 1s", exc)
                await asyncio.sleep(1.0)
            except Exception:  # a bug, not an outage: said, and the feed goes on (it is the only one)
                log.exception("gateways: the change feed failed; following again in 1s")
                await asyncio.sleep(1.0)

    async def _work(self, gateway_id: str) -> None:
        try:
            while gateway_id in self._dirty:
                self._dirty.discard(gateway_id)
                try:
                    await self._reconcile(gateway_id)
                except StoreError as exc:
                    log.debug("gateways: %s: the store failed (%s); retrying", gateway_id, exc)
                    self._retry(gateway_id)
                except Exception:
                    log.exception("gateways: %s: reconciling failed; retrying", gateway_id)
                    self._retry(gateway_id)
        finally:
            del self._workers[gateway_id]

    # -- one gateway ------------------------------------------------------------------------------

    async def _reconcile(self, gateway_id: str) -> None:
        record = await self.store.get(gateway_id)
        if record is None:
            self._forget(gateway_id)
            await self.runtime.remove(gateway_id)
            return
        status = record.status
        if status.status == "STATUS_DELETING":
            self._forget(gateway_id)
            await self.runtime.remove(gateway_id)
            await self._remove_row(gateway_id)
            return
        generation = status.generation
        retry = self._retries.get(gateway_id)
        if retry is not None and retry.generation == generation and not retry.due:
            return  # failed to apply; the backoff says when to try again
        if self.applied.get(gateway_id) == generation:
            return  # applied here already; another replica's status write, or our own
        if status.status == "STATUS_FAILED" and gateway_id not in self.applied:
            self.applied[gateway_id] = generation  # terminal: applied again only after a PATCH
            return
        try:
            endpoints = await self.runtime.apply(record.spec)
        except GatewayUnavailable as exc:
            reason, message = exc.reason, exc.message
            # Once per spell of one reason; the retries of a long one would flood the log.
            again = retry is not None and retry.reason == reason
            log.log(
                logging.DEBUG if again else logging.WARNING,
                "gateways: %s cannot serve yet: %s: %s",
                gateway_id,
                reason,
                message,
            )
            await self._record(record, lambda s, at: lifecycle.errored(s, reason, message, at))
            self._retry(gateway_id, generation, reason)
            return
        except ValueError as exc:
            problem = str(exc)
            log.warning("gateways: %s failed: %s", gateway_id, problem)
            await self.runtime.remove(gateway_id)  # a failed gateway serves nothing
            await self._record(record, lambda s, at: lifecycle.failed(s, problem, at))
        else:
            await self._record(record, lambda s, at: lifecycle.ready(s, tuple(endpoints), at))
        # Only once recorded: if the write failed, the retry applies and records again.
        self.applied[gateway_id] = generation
        self._forget_retry(gateway_id)

    async def _record(self, read: Record, move: Callable[[GatewayStatus, str], GatewayStatus]) -> None:
        """Write the transition ``move`` makes, if the row is still at the generation applied and
        the transition changes something there."""
        generation = read.status.generation

        def change(current: Record) -> Record | None:
            status = current.status
            if status.generation != generation or status.status == "STATUS_DELETING":
                return None  # a newer spec or a delete came meanwhile: its own reconcile writes
            moved = move(status, seconds(now()))
            if _same(moved, status):
                return None  # already recorded (by another replica, or by us before a restart)
            return replace(current, status=moved)

        await self.store.update(read.spec.id, change)

    async def _remove_row(self, gateway_id: str) -> None:
        record = await self.store.get(gateway_id)
        while record is not None and record.status.status == "STATUS_DELETING":
            if await self.store.remove(gateway_id, record.revision):
                return
            record = await self.store.get(gateway_id)  # written meanwhile: look again

    # -- retries ----------------------------------------------------------------------------------

    def _retry(self, gateway_id: str, generation: int = 0, reason: str = "") -> None:
        previous = self._retries.pop(gateway_id, None)
        attempts = 0
        if previous is not None:
            previous.timer.cancel()
            attempts = previous.attempts
        delay = min(LAST_RETRY, self.first_retry * 2**attempts)
        timer = asyncio.get_running_loop().call_later(delay, self._due, gateway_id)
        retry = _Retry(attempts + 1, generation, timer, reason)
        self._retries[gateway_id] = retry

    def _due(self, gateway_id: str) -> None:
        retry = self._retries.get(gateway_id)
        if retry is not None:
            retry.due = True
        self.kick(gateway_id)

    def _forget_retry(self, gateway_id: str) -> None:
        retry = self._retries.pop(gateway_id, None)
        if retry is not None:
            retry.timer.cancel()

    def _forget(self, gateway_id: str) -> None:
        self.applied.pop(gateway_id, None)
        self._forget_retry(gateway_id)


@dataclass(slots=True)
class _Retry:
    attempts: int
    generation: int  # what failed to apply (0: a store failure, retried whatever the generation)
    timer: asyncio.TimerHandle
    reason: str = ""  # the GatewayUnavailable's, if that was the failure
    due: bool = False


def _same(a: GatewayStatus, b: GatewayStatus) -> bool:
    """The same state, reason, message and endpoints (times aside)."""

    def key(s: GatewayStatus) -> tuple[object, ...]:
        return (s.status, s.endpoints, tuple((c.type, c.status, c.reason, c.message) for c in s.conditions))

    return key(a) == key(b)
