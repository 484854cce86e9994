"""``Limits``: admits a request against every counter its caller and model are held to, or refuses it.

A route calls ``admit`` once it knows the model (after routing, before the provider call). The
request's cost is one request and an estimate of its tokens (the body's bytes / 4 for the prompt,
plus ``max_tokens`` or ``max_completion_tokens``), reserved on every counter at once. The ticket
left in the request's scope is settled by ``LimitsMiddleware`` when the answer ends: the reserved
tokens are replaced by those the answer reported (none when it failed; the estimate stays when no
usage was reported), and the concurrency slot is freed.

    limits = Limits(rules, MemoryStore(), fail_open=True, claim="")
    await limits.admit(request.scope, payload, len(body), "groq", "llama-3.3-70b-versatile")

When no limit is configured, ``create_app`` gives the routes ``UNLIMITED`` instead (and no middleware).
"""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from starlette.types import Scope

from providers.errors import APIError, ServiceUnavailable

from ..auth import identity_of
from .rules import Counter, Rules
from .store import MemoryStore, Store, StoreUnavailable, Verdict

if TYPE_CHECKING:
    from ..settings import Settings

__all__ = ["UNLIMITED", "Limits", "RateLimited", "Ticket", "Unlimited", "format_reset"]

log = logging.getLogger("polyrelay")

TICKET = "limits"  # the scope state's key of a request's ticket
_RETRY_DOWN = 1.0  # after a failed call to the store, how long it is not asked again
_CACHED = 4096  # (identity, models) pairs whose counters are remembered


class RateLimited(APIError):
    status = 429
    type = "requests"
    code = "rate_limit_exceeded"


class Unlimited:
    """The routes' limiter when no limit is configured: admits everything, costs one call."""

    async def admit(self, scope: Scope, payload: Mapping[str, Any], size: int, provider: str, model: str) -> None:
        return None


UNLIMITED = Unlimited()


class _Plan:
    """The counters of one (caller, model) pair, and what they need, worked out once."""

    __slots__ = ("counters", "freed", "headed", "leased", "settled", "slots", "tokens", "uses_tokens")

    def __init__(self, counters: tuple[Counter, ...]) -> None:
        self.counters = counters
        self.tokens = tuple(c.measure == "tokens" for c in counters)  # which take the token estimate
        self.uses_tokens = any(self.tokens)  # else the answer's usage is never read
        self.leased = any(c.kind == "concurrency" for c in counters)  # a slot to free at the end
        # What a settlement gives back: the slots alone (the estimate stood), or the slots and the
        # token counters' difference; ``slots`` says which of ``settled`` are slots (given back 1).
        self.freed = tuple(c for c in counters if c.kind == "concurrency")
        self.settled = tuple(c for c in counters if c.kind == "concurrency" or c.measure == "tokens")
        self.slots = tuple(c.kind == "concurrency" for c in self.settled)
        # Per measure, in the order first met, its two other header names and its counters as
        # (index, limit header): concurrency has no header of OpenAI's.
        measures: dict[str, list[tuple[int, tuple[bytes, bytes]]]] = {}
        for index, counter in enumerate(counters):
            if counter.kind != "concurrency":
                limit = (_NAMES[counter.measure][0], b"%d" % counter.limit)
                measures.setdefault(counter.measure, []).append((index, limit))
        self.headed = tuple((_NAMES[m][1], _NAMES[m][2], tuple(found)) for m, found in measures.items())


class Ticket:
    """One admitted request: what it reserved, for the settlement and the answer's headers."""

    __slots__ = ("estimate", "headers", "lease", "limits", "plan")

    def __init__(
        self, limits: Limits, plan: _Plan, estimate: int, lease: str, headers: list[tuple[bytes, bytes]]
    ) -> None:
        self.limits = limits
        self.plan: _Plan | None = plan  # None once settled
        self.estimate = estimate
        self.lease = lease
        self.headers = headers

    async def settle(self, used: Callable[[], int | None]) -> None:
        """Replace the reserved tokens by ``used()`` (``None``: keep the estimate) and free the slot; once."""
        plan, self.plan = self.plan, None
        if plan is None:
            return
        delta = 0
        if plan.uses_tokens and (tokens := used()) is not None:
            delta = tokens - self.estimate
        if delta:
            counters, deltas = plan.settled, [1 if slot else delta for slot in plan.slots]
        elif self.lease:  # the estimate was right, or stands: only the slot to free
            counters, deltas = plan.freed, [1] * len(plan.freed)
        else:
            return
        if self.limits.memory is not None:
            self.limits.memory.give(counters, deltas)
        else:
            await self.limits.settle(counters, deltas, self.lease)


class Limits:
    """The configured limiter over one store (memory or Redis)."""

    def __init__(self, rules: Rules, store: Store, *, fail_open: bool, claim: str = "") -> None:
        self.rules = rules
        self.store = store
        self.fail_open = fail_open
        self.claim = claim
        self.down: str | None = None  # why the store failed last, until it answers again
        self._down_until = 0.0
        self._plans: dict[tuple[str, str, str, str], _Plan] = {}
        # The in-memory store answers at once and is never down: called without a coroutine.
        self.memory = store if isinstance(store, MemoryStore) else None
        # A lease names one request in flight to every replica sharing the store: a random prefix
        # of this limiter's and a count, rather than random bytes per request (every worker process
        # builds its own app, and so its own limiter).
        self._leases = map(f"{os.urandom(6).hex()}-{{}}".format, itertools.count())

    @classmethod
    def from_settings(cls, settings: Settings) -> Limits | None:
        """The limiter the settings configure, or ``None`` when they configure no limit."""
        if not settings.limits:
            return None
        store: Store
        if settings.redis_url:
            from .redis_store import RedisStore  # redis-py loads only when it is used

            store = RedisStore(settings.redis_url)
        else:
            store = MemoryStore()
        return cls(
            settings.limits,
            store,
            fail_open=settings.limits_fail_mode == "open",
            claim=settings.limits_identity_claim,
        )

    async def admit(self, scope: Scope, payload: Mapping[str, Any], size: int, provider: str, model: str) -> None:
        """Reserve the cost of a request for ``payload["model"]`` (an alias, or a model) routed to
        ``provider``'s ``model``, of ``size`` bytes; or raise ``RateLimited`` (429, with ``Retry-After``)."""
        caller = self.caller(scope)
        cached = (caller, payload["model"], provider, model)
        plan = self._plans.get(cached)
        if plan is None:
            plan = self._plans[cached] = _Plan(
                self.rules.counters(caller, (payload["model"].strip(), f"{provider}/{model}", f"{provider}/*"))
            )
            if len(self._plans) > _CACHED:
                self._plans.clear()
        counters = plan.counters
        if not counters:
            return
        estimate = size // 4 + _max_tokens(payload)
        costs = [estimate if tokens else 1 for tokens in plan.tokens]
        lease = next(self._leases) if plan.leased else ""
        if self.memory is not None:
            verdict = self.memory.take(counters, costs)
        elif (found := await self._admit(counters, costs, lease)) is not None:
            verdict = found
        else:
            return  # the store is down and the limits fail open
        headers = _headers(plan, verdict.standing)
        if verdict.refused is not None:
            raise _refusal(counters[verdict.refused], verdict, estimate, headers)
        scope.setdefault("state", {})[TICKET] = Ticket(self, plan, estimate, lease, headers)

    def caller(self, scope: Scope) -> str:
        """Whose counters: the configured claim's value, else the key name or token subject, else
        (authentication off) the client's address."""
        identity = identity_of(scope)
        if identity is None:
            client = scope.get("client")
            return f"address:{client[0]}" if client else "address:unknown"
        if self.claim:
            value = identity.claims.get(self.claim)
            if isinstance(value, str | int) and not isinstance(value, bool):
                return str(value)
        return identity.subject

    async def settle(self, counters: tuple[Counter, ...], deltas: list[int], lease: str) -> None:
        try:
            await self.store.settle(counters, deltas, lease)
        except StoreUnavailable as exc:
            self._failed(exc)

    async def probe(self) -> str:
        """The store's state for ``/ready``: ok, or down and what the limits then do."""
        try:
            await self.store.ping()
        except StoreUnavailable as exc:
            self._failed(exc)
        else:
            self._recovered()
        if self.down is None:
            return "ok"
        return "down, failing open" if self.fail_open else "down, failing closed"

    async def _admit(self, counters: tuple[Counter, ...], costs: list[int], lease: str) -> Verdict | None:
        if self.down is None or time.monotonic() >= self._down_until:
            try:
                verdict = await self.store.admit(counters, costs, lease)
            except StoreUnavailable as exc:
                self._failed(exc)
            else:
                if self.down is not None:
                    self._recovered()
                return verdict
        if self.fail_open:
            return None
        raise ServiceUnavailable(
            "The gateway cannot check its rate limits (their store is unreachable) and refuses requests "
            "until it can (LIMITS_FAIL_MODE=closed). Try again shortly.",
            code="limits_unavailable",
            headers={"Retry-After": "1"},
        )

    def _failed(self, exc: StoreUnavailable) -> None:
        if self.down is None:
            mode = "letting requests through unlimited" if self.fail_open else "refusing requests"
            log.error(
                "rate limits: the %s store at %s is unreachable (%s); %s until it answers",
                self.store.name,
                self.store.location,
                exc,
                mode,
            )
        self.down = str(exc)
        self._down_until = time.monotonic() + _RETRY_DOWN

    def _recovered(self) -> None:
        if self.down is not None:
            log.warning(
                "rate limits: the %s store at %s answers again; limits apply", self.store.name, self.store.location
            )
        self.down = None


def _max_tokens(payload: Mapping[str, Any]) -> int:
    # Chat's two names, and the Responses API's.
    value = payload.get("max_completion_tokens") or payload.get("max_tokens") or payload.get("max_output_tokens")
    return value if type(value) is int and value > 0 else 0


def format_reset(seconds: float) -> str:
    """A reset time as OpenAI writes it: ``20ms``, ``1.5s``, ``6m0s``."""
    if seconds < 1:
        return f"{math.ceil(seconds * 1000)}ms"
    if seconds < 60:
        return f"{math.ceil(seconds * 1000) / 1000:g}s"
    minutes, rest = divmod(math.ceil(seconds), 60)
    if minutes < 60:
        return f"{minutes}m{rest}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes}m{rest}s"


# Per measure, the header names: (limit, remaining, reset).
_NAMES = {
    m: tuple(f"x-ratelimit-{what}-{m}".encode() for what in ("limit", "remaining", "reset"))
    for m in ("requests", "tokens")
}


def _headers(plan: _Plan, standing: tuple[tuple[int, float], ...]) -> list[tuple[bytes, bytes]]:
    """OpenAI's six headers, each trio from the tightest counter of its measure (the one with the
    fewest units left, the first of equals)."""
    headers = []
    for remaining_name, reset_name, found in plan.headed:
        index, limit = found[0]
        remaining, reset = standing[index]
        for other, other_limit in found[1:]:
            if standing[other][0] < remaining:
                limit, (remaining, reset) = other_limit, standing[other]
        headers += [limit, (remaining_name, b"%d" % remaining), (reset_name, _reset(reset))]
    return headers


def _reset(seconds: float) -> bytes:
    # A rate limit far from full resets within the second: that notation without format_reset's call.
    return b"%dms" % math.ceil(seconds * 1000) if seconds < 1 else format_reset(seconds).encode()


_WHAT = {
    "requests_per_minute": "requests per minute",
    "tokens_per_minute": "tokens per minute",
    "concurrent_requests": "concurrent requests",
    "tokens_per_day": "tokens per day",
}


def _refusal(counter: Counter, verdict: Verdict, estimate: int, headers: list[tuple[bytes, bytes]]) -> RateLimited:
    scope, _, _ = counter.key.rpartition(":")
    whose = {"global": "this gateway"}.get(scope) or (
        (f"the provider {scope[6:-2]}" if scope.endswith("/*") else f"the model {scope[6:]}")
        if scope.startswith("model:")
        else "your credential"
    )
    wait = max(1, math.ceil(verdict.retry_after))
    what = _WHAT[counter.name]
    if counter.kind == "concurrency":
        message = f"Too many requests at once: {whose} is limited to {counter.limit} {what}. Retry when one ends."
    elif counter.measure == "tokens" and estimate > counter.limit:
        message = (
            f"This request alone (about {estimate} tokens, counting max_tokens) exceeds the limit of "
            f"{counter.limit} {what} of {whose}. Lower max_tokens or shorten the prompt."
        )
    else:
        message = f"Rate limit reached: {whose} is limited to {counter.limit} {what}. Try again in {wait}s."
    kind = "tokens" if counter.measure == "tokens" else "requests"
    error = RateLimited(message, type="insufficient_quota" if counter.kind == "quota" else kind)
    if counter.kind == "quota":
        error.code = "insufficient_quota"
    error.headers = {"Retry-After": str(wait), **{k.decode(): v.decode() for k, v in headers}}
    return error
