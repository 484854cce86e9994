"""Retries of upstream calls that failed before anything reached the client.

A provider that is briefly down, overloaded or limiting answers before the gateway has sent the
client a byte, so the call can be made again: on a failed connection or a reset, and on 429, 500,
502, 503, 504 and Anthropic's 529. Waits grow exponentially with full jitter, a ``Retry-After``
the provider sends is honoured up to ``max_retry_after`` (a longer one is relayed to the caller
instead: its wait is the caller's to choose), and no retry starts past ``budget`` seconds from
the first attempt. A timeout is not retried (the caller has already waited that long), nor is a
body that cannot be replayed (the raw proxy's streamed upload), nor anything after the answer's
headers: a stream that broke midway has reached the client.

    client = RetryingClient(http, RetryPolicy(retries=2))
    response = await client.request("POST", url, headers=..., body=payload, timeouts=...)

A request routed through a model alias with retries of its own sets them with ``retry_count``
for the rest of its task (a context variable: each request runs in a context of its own), and
every call it makes takes that count instead of its provider's.

    retry_count.set(0)    # this request's calls are not retried
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterable
from contextvars import ContextVar
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

from .errors import UpstreamUnreachable
from .redact import Redactor
from .transport import Headers, HttpClient, Timeouts, UpstreamResponse
from .waiting import waiting

__all__ = ["RETRIED_STATUSES", "RetryPolicy", "RetryingClient", "retry_count"]

log = logging.getLogger("polyrelay")

RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504, 529})
_DEFAULT_TIMEOUTS = Timeouts()
# The current request's retries when they are not its provider's (an alias's ``retries``).
retry_count: ContextVar[int | None] = ContextVar("polyrelay_retry_count", default=None)


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    retries: int = 2  # attempts after the first; 0 turns retrying off
    base_delay: float = 0.25  # the first wait is up to this, doubling per retry...
    max_delay: float = 2.0  # ...up to this
    max_retry_after: float = 10.0  # the longest Retry-After waited for
    budget: float = 30.0  # no retry starts later than this after the first attempt

    def delay(self, retry: int) -> float:
        """The wait before retry number ``retry`` (0-based): full jitter over the exponential bound."""
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**retry))


class RetryingClient(HttpClient):
    """``HttpClient.request`` with retries: what an adapter is given instead of the client itself.
    It shares the wrapped client's pool (``start``/``close`` are the app's business, on that one)."""

    def __init__(self, http: HttpClient, policy: RetryPolicy, name: str = "") -> None:
        super().__init__()
        self.http = http
        self.policy = policy
        self.name = name  # the provider's id, for the log

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Headers | None = None,
        body: bytes | AsyncIterable[bytes] | None = None,
        timeouts: Timeouts = _DEFAULT_TIMEOUTS,
        raw: bool = False,
        redactor: Redactor | None = None,
    ) -> UpstreamResponse:
        policy = self.policy
        replayable = body is None or isinstance(body, bytes)
        override = retry_count.get()
        retries = (policy.retries if override is None else override) if replayable else 0
        started = time.monotonic()
        attempt = 0
        while True:
            try:
                response = await self.http.request(
                    method, url, headers=headers, body=body, timeouts=timeouts, raw=raw, redactor=redactor
                )
            except UpstreamUnreachable as exc:
                wait = policy.delay(attempt)
                if attempt >= retries or time.monotonic() - started + wait > policy.budget:
                    raise
                reason = exc.message
            else:
                if response.status not in RETRIED_STATUSES or attempt >= retries:
                    return response
                asked = _retry_after(response.headers.get("Retry-After"))
                if asked is not None and asked > policy.max_retry_after:
                    return response  # a long wait is the caller's to decide on
                wait = policy.delay(attempt) if asked is None else asked
                if time.monotonic() - started + wait > policy.budget:
                    return response
                response.close()
                reason = f"HTTP {response.status}"
            attempt += 1
            log.info("%s: %s; retry %d of %d in %.2fs", self.name or url, reason, attempt, retries, wait)
            with waiting():  # the provider's time, not the gateway's
                await asyncio.sleep(wait)


def _retry_after(value: str | None) -> float | None:
    """Seconds to wait from a Retry-After header (a number of seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, moment.timestamp() - time.time())
