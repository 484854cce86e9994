"""Relaying upstream bytes to a client that may leave at any moment.

Both helpers watch the client's connection while an upstream call runs: when the client
disconnects, the upstream call is cancelled at once (its connection closed), not at the next write.
Under the gateway's own server the connection says when it is lost (``Hangup``, a scope extension:
no task per request); under any other server a small task waits for ``http.disconnect``.

    body = await until_disconnect(request, adapter.chat(chat))
    return RelayResponse(chunks, close=events.aclose, on_error=error_event, tail=b"data: [DONE]\\n\\n")
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from typing import TypeVar

from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from providers.errors import APIError, ServiceUnavailable
from providers.sse import holds_error_event

from .drain import Drain
from .telemetry.exchange import Exchange, current

__all__ = [
    "ABORT_EXTENSION",
    "BODY_EXTENSION",
    "DRAIN_EXTENSION",
    "HANGUP_EXTENSION",
    "ClientGone",
    "Hangup",
    "RelayResponse",
    "until_disconnect",
]

log = logging.getLogger("polyrelay")
T = TypeVar("T")

# ASGI scope extensions set by the gateway's HTTP protocol (gateway.server): the process's Drain,
# a callable that drops the connection of a response that cannot be completed, quietly, the
# connection's Hangup, and whether the body is all in.
DRAIN_EXTENSION = "polyrelay.drain"
ABORT_EXTENSION = "polyrelay.abort"
HANGUP_EXTENSION = "polyrelay.hangup"
# A callable telling whether the request's whole body has arrived (reading it then cannot wait).
BODY_EXTENSION = "polyrelay.body_arrived"


class Hangup:
    """What to call when a connection is lost before its answer is complete: one per connection,
    fired by the server's protocol. Cheaper than a task per request reading ``receive`` for
    ``http.disconnect``, which is what it replaces when the server offers it."""

    __slots__ = ("callbacks", "gone")

    def __init__(self) -> None:
        self.callbacks: list[Callable[[], None]] = []
        self.gone = False

    def lost(self) -> None:
        self.gone = True
        callbacks, self.callbacks = self.callbacks, []
        for callback in callbacks:
            callback()


class ClientGone(Exception):
    """The client disconnected before its answer was ready; there is no one left to answer."""


async def _disconnected(receive: Receive, after: asyncio.Event | None = None) -> None:
    if after is not None:
        await after.wait()
    # Body messages still unread (a request we did not consume) are skipped, not lost: we only
    # get here once the handler has read everything it wanted.
    while (await receive())["type"] != "http.disconnect":
        pass


class _Watch:
    """Cancels the current task when the client disconnects (told by the connection's ``Hangup``,
    else seen by one small watcher task: cheaper, on every request, than running the work in a task
    of its own and waiting on both), or when the server's drain deadline cuts the requests still in
    flight."""

    __slots__ = ("current", "cut", "drain", "hangup", "left", "watcher")

    def __init__(self, receive: Receive, scope: Scope, after: asyncio.Event | None = None) -> None:
        current = asyncio.current_task()
        assert current is not None
        self.current = current
        self.left = False
        self.cut = False
        extensions = scope.get("extensions") or {}
        drain: Drain | None = extensions.get(DRAIN_EXTENSION)
        hangup: Hangup | None = extensions.get(HANGUP_EXTENSION)
        self.drain, self.hangup = drain, hangup
        self.watcher: asyncio.Task[None] | None = None
        if hangup is not None:
            if hangup.gone:  # lost already (between the answer's start and this watch, say)
                self._left()
            else:
                hangup.callbacks.append(self._left)
        else:
            self.watcher = asyncio.get_running_loop().create_task(self._watch(receive, after))
        if drain is not None:
            drain.add(self)

    async def _watch(self, receive: Receive, after: asyncio.Event | None) -> None:
        await _disconnected(receive, after)
        self._left()

    def _left(self) -> None:
        self.left = True
        self.current.cancel()

    def interrupt(self) -> None:
        """The drain deadline passed: stop waiting on the upstream and answer what we can."""
        self.cut = True
        self.current.cancel()

    def gone(self) -> bool:
        """Whether a CancelledError being handled came from the client leaving (and no one else)."""
        return self.left and self.current.uncancel() == 0

    def drained(self) -> bool:
        """Whether a CancelledError being handled came from the drain deadline (and no one else)."""
        return self.cut and not self.left and self.current.uncancel() == 0

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.cancel()
        elif self.hangup is not None and not self.left:  # once fired, no longer listed
            self.hangup.callbacks.remove(self._left)
        if self.drain is not None:
            self.drain.discard(self)


def _shutting_down() -> ServiceUnavailable:
    return ServiceUnavailable(
        "The gateway is shutting down and could not finish this request in time; retry it.",
        code="shutting_down",
        headers={"Retry-After": "1", "Connection": "close"},
    )


async def until_disconnect(request: Request, call: Awaitable[T], *, watch_after: asyncio.Event | None = None) -> T:
    """``await call``, cancelling it and raising ``ClientGone`` if the client disconnects first (or
    ``ServiceUnavailable`` if the server's drain deadline passes first).

    ``watch_after`` delays the watch until the request body has been consumed by someone else (the
    proxy's upload), since both would otherwise read the same ``receive``.
    """
    watch = _Watch(request.receive, request.scope, watch_after)
    try:
        return await call
    except asyncio.CancelledError:
        if watch.gone():
            raise ClientGone from None
        if watch.drained():
            raise _shutting_down() from None
        raise
    finally:
        watch.stop()


class RelayResponse:
    """An ASGI response streaming ``chunks`` as they come.

    ``on_error`` turns an ``APIError`` raised mid-stream into final bytes (an SSE error event);
    without it the connection is dropped so the client sees a truncated body, not a false end.
    ``tail`` is sent after the chunks, error or not (``data: [DONE]``). ``close`` releases the
    upstream in every case: end, error, client disconnect or the drain deadline.
    """

    def __init__(
        self,
        chunks: AsyncIterable[bytes],
        *,
        close: Callable[[], Awaitable[object]],
        status: int = 200,
        headers: Sequence[tuple[bytes, bytes]] = (),
        on_error: Callable[[APIError], bytes] | None = None,
        tail: bytes = b"",
    ) -> None:
        self.chunks = chunks
        self.close = close
        self.status = status
        self.headers = list(headers)
        self.on_error = on_error
        self.tail = tail

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        watch = None
        exchange = current()
        try:
            await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
            watch = _Watch(receive, scope)
            try:
                await self._pump(scope, send, exchange)
            except asyncio.CancelledError:
                if watch.gone():
                    exchange.outcome = "client_gone"
                    log.debug("client disconnected from %s; upstream closed", scope.get("path"))
                    return
                if watch.drained():
                    exchange.failed(_shutting_down(), "drained", "drained")
                    await self._fail(scope, send, _shutting_down())
                    return
                raise
        finally:
            if watch is not None:
                watch.stop()
            await self.close()

    async def _pump(self, scope: Scope, send: Send, exchange: Exchange) -> None:
        # The last two chunks are kept for telemetry: the usage and final model are in them.
        previous = last = b""
        try:
            async for chunk in self.chunks:
                if exchange.first_token is None:
                    exchange.first_token = time.perf_counter()
                previous, last = last, chunk
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except APIError as error:
            exchange.failed(error, "upstream_error")
            log.warning("stream from upstream failed on %s: %s", scope.get("path"), error.message)
            await self._fail(scope, send, error)
            return
        except Exception as exc:
            exchange.failed(exc, "internal_error")
            if self.on_error is None:
                raise  # the server logs it and drops the connection
            log.exception("stream relay failed on %s", scope.get("path"))
            failure = APIError("The gateway hit an internal error during the stream; it has been logged.")
            await self._fail(scope, send, failure)
            return
        finally:
            exchange.stream_tail((previous, last))
        # A provider's own error event, relayed as it came, ends the stream too: not a complete one.
        if self.on_error is not None and holds_error_event(last):
            exchange.outcome, exchange.error_type = "upstream_error", "stream_error"
        else:
            exchange.outcome = "complete"
        await send({"type": "http.response.body", "body": self.tail, "more_body": False})

    async def _fail(self, scope: Scope, send: Send, error: APIError) -> None:
        """End a response that cannot be completed: with a final error event and the tail when the
        protocol has one, else by dropping the connection so the client sees a truncated body."""
        if self.on_error is not None:
            await send({"type": "http.response.body", "body": self.on_error(error), "more_body": True})
            await send({"type": "http.response.body", "body": self.tail, "more_body": False})
            return
        extensions = scope.get("extensions") or {}
        abort = extensions.get(ABORT_EXTENSION)
        if abort is None:  # a server without the extension drops the connection when the app raises
            raise error
        abort()
