"""``UsageReporter``: each request's token usage, sent to the gateway's W&B server in batches.

W&B documents no endpoint that takes token usage from a gateway, so polyrelay defines its own
(the README's "Weights & Biases authentication" shows it):

    POST <server_url>/api/v1/polyrelay/usage
    Authorization: Basic base64("api:" + weightsAndBiasesAuth.apiKey)
    Idempotency-Key: <batch_id>
    {"batch_id": "<uuid>", "records": [{"gateway_id", "entity", "provider", "model",
      "prompt_tokens", "completion_tokens", "total_tokens", "request_id", "time"}]}

Any 2xx is success. The pieces:

    record     O(1) on the request's path: a tuple appended to a bounded deque; a full queue
               drops the record, counts it (``polyrelay_wandb_usage_dropped_total``) and says so
               in a log line at most every 10 s
    sender     one task: a batch every ``batch_size`` records or ``interval`` seconds, whichever
               comes first; a failed batch (connection, timeout, 408/425/429/5xx) is retried
               with capped exponential backoff and jitter (``Retry-After`` honoured); another
               4xx drops the batch (counted, logged), since sending it again cannot help
    close      sends what is queued, retrying until ``close_timeout``; what is left then is
               counted as dropped

    reporter = usage_reporter(spec.wandb, spec.id, http, dropped=metrics.wandb_usage_dropped)
    await reporter.start()
    reporter.record("my-team", "openai", "gpt-4o", 12, 30, request_id)
    await reporter.close()
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import uuid
from collections import deque
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Protocol

import orjson

from providers import HttpClient, Timeouts
from providers.errors import UpstreamError

from ...errors import describe
from .verifier import basic_credentials

if TYPE_CHECKING:
    from ...telemetry.exchange import Exchange
    from ..spec import WandbAuth

__all__ = ["USAGE_PATH", "DropCounter", "NoUsageReports", "UsageReporter", "usage_reporter"]

log = logging.getLogger("polyrelay")

USAGE_PATH = "/api/v1/polyrelay/usage"
_RETRIED = frozenset({408, 425, 429})
_LOG_EVERY = 10.0  # seconds between two log lines about drops


class DropCounter(Protocol):
    """A counter family labelled (gateway, reason): ``Metrics.wandb_usage_dropped``."""

    def labels(self, *values: str) -> Any: ...


# One record as queued: (entity, provider, model, prompt, completion, request_id, unix time).
_Record = tuple[str, str, str, int, int, str, float]


class UsageReporter:
    """Batches usage records of one gateway to its W&B server."""

    def __init__(
        self,
        auth: WandbAuth,
        gateway_id: str,
        http: HttpClient,
        *,
        dropped: DropCounter | None = None,
        batch_size: int = 100,
        interval: float = 5.0,
        max_queue: int = 10_000,
        timeout: float = 10.0,
        backoff: float = 0.5,
        max_backoff: float = 30.0,
        close_timeout: float = 5.0,
    ) -> None:
        self.url = auth.server_url.rstrip("/") + USAGE_PATH
        self.gateway_id = gateway_id
        self.http = http
        self.batch_size = batch_size
        self.interval = interval
        self.max_queue = max_queue
        self.timeouts = Timeouts(connect=timeout, total=timeout)
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.close_timeout = close_timeout
        self.dropped = 0  # records dropped, whatever the reason
        self._authorization = basic_credentials(auth.api_key)
        self._counter = dropped
        self._children: dict[str, Any] = {}
        self._queue: deque[_Record] = deque()
        self._in_flight: list[_Record] = []
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self._logged_at = -_LOG_EVERY
        self._unlogged = 0

    # -- the request's path ----------------------------------------------------------------------

    def record(
        self, entity: str, provider: str, model: str, prompt_tokens: int, completion_tokens: int, request_id: str
    ) -> None:
        """Queue one request's usage; never waits, never fails."""
        if self._closing or len(self._queue) >= self.max_queue:
            self._drop(1, "closed" if self._closing else "queue_full")
            return
        self._queue.append((entity, provider, model, prompt_tokens, completion_tokens, request_id, time.time()))
        if len(self._queue) >= self.batch_size:
            self._wake.set()

    def record_exchange(self, exchange: Exchange, entity: str | None = None) -> None:
        """Queue the usage an ended request's answer reported (nothing if it reported none)."""
        usage = exchange.tokens()
        entity = entity or exchange.identity
        if usage is None or entity is None:
            return
        model = exchange.response_model or exchange.model or ""
        self.record(entity, exchange.provider or "", model, usage.input, usage.output, exchange.request_id)

    # -- the sender --------------------------------------------------------------------------------

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def close(self) -> None:
        """Send what is queued (within ``close_timeout``), then stop."""
        self._closing = True
        self._wake.set()
        task = self._task
        if task is None:
            left = len(self._queue)
        else:
            try:
                await asyncio.wait_for(asyncio.shield(task), self.close_timeout)
            except TimeoutError:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            left = len(self._queue) + len(self._in_flight)
        self._queue.clear()
        self._in_flight = []
        if left:
            self._drop(left, "shutdown")
            self._log_drops(force=True)

    async def _run(self) -> None:
        while True:
            if not self._closing and len(self._queue) < self.batch_size:
                self._wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self.interval)
            if not self._queue:
                if self._closing:
                    return
                continue
            count = min(self.batch_size, len(self._queue))
            self._in_flight = [self._queue.popleft() for _ in range(count)]
            await self._deliver(self._in_flight)
            self._in_flight = []

    async def _deliver(self, batch: list[_Record]) -> None:
        """Send one batch until it is taken or refused for good."""
        batch_id = str(uuid.uuid4())
        body = orjson.dumps({"batch_id": batch_id, "records": [self._json(record) for record in batch]})
        headers = {
            "Authorization": self._authorization,
            "Content-Type": "application/json",
            "Idempotency-Key": batch_id,  # a retried batch the server already took is not counted twice
        }
        delay = self.backoff
        while True:
            wait: float | None = None
            try:
                response = await self.http.request("POST", self.url, headers=headers, body=body, timeouts=self.timeouts)
                status = response.status
                retry_after = response.headers.get("Retry-After", "")
                response.close()
            except UpstreamError as exc:
                problem = describe(exc)
            else:
                if 200 <= status < 300:
                    return
                if status < 500 and status not in _RETRIED:
                    self._drop(len(batch), "rejected")
                    log.error(
                        "W&B usage reports of gateway %s: %s refused a batch of %d records with HTTP %d; dropped",
                        self.gateway_id,
                        self.url,
                        len(batch),
                        status,
                    )
                    return
                problem = f"HTTP {status}"
                if retry_after.isdigit():
                    wait = min(float(retry_after), self.max_backoff)
            if wait is None:
                wait = delay * random.uniform(0.5, 1.0)  # jittered: gateways do not retry in step
            delay = min(delay * 2, self.max_backoff)
            log.warning(
                "W&B usage reports of gateway %s: sending %d records to %s failed (%s); retrying in %.1fs",
                self.gateway_id,
                len(batch),
                self.url,
                problem,
                wait,
            )
            await asyncio.sleep(wait)

    def _json(self, record: _Record) -> dict[str, Any]:
        entity, provider, model, prompt, completion, request_id, at = record
        return {
            "gateway_id": self.gateway_id,
            "entity": entity,
            "provider": provider,
            "model": model,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "request_id": request_id,
            "time": datetime.fromtimestamp(at, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        }

    # -- drops ---------------------------------------------------------------------------------------

    def _drop(self, count: int, reason: str) -> None:
        self.dropped += count
        self._unlogged += count
        if self._counter is not None:
            child = self._children.get(reason)
            if child is None:
                child = self._children[reason] = self._counter.labels(self.gateway_id, reason)
            child.inc(count)
        if reason in ("queue_full", "closed"):
            self._log_drops()

    def _log_drops(self, force: bool = False) -> None:
        now = time.monotonic()
        if self._unlogged and (force or now - self._logged_at >= _LOG_EVERY):
            log.warning(
                "W&B usage reports of gateway %s: %d records dropped (queue of %d full, or closing); %d in all",
                self.gateway_id,
                self._unlogged,
                self.max_queue,
                self.dropped,
            )
            self._logged_at = now
            self._unlogged = 0


class NoUsageReports:
    """What a gateway without ``enableUsageReports`` records with: nothing."""

    dropped = 0

    def record(
        self, entity: str, provider: str, model: str, prompt_tokens: int, completion_tokens: int, request_id: str
    ) -> None:
        pass

    def record_exchange(self, exchange: Exchange, entity: str | None = None) -> None:
        pass

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass


def usage_reporter(
    auth: WandbAuth, gateway_id: str, http: HttpClient, *, dropped: DropCounter | None = None, **options: Any
) -> UsageReporter | NoUsageReports:
    """The gateway's reporter: a real one with ``enableUsageReports``, else the no-op."""
    if not auth.enable_usage_reports:
        return NoUsageReports()
    return UsageReporter(auth, gateway_id, http, dropped=dropped, **options)
