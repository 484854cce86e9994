"""Relaying upstream bytes to a client that may leave at any moment.

Both helpers watch the client's connection while an upstream call runs: when the client
disconnects, the upstream call is cancelled at once (its connection closed), not at the next write.

    body = await until_disconnect(receive, adapter.chat(request))
    return RelayResponse(chunks, close=events.aclose, on_error=error_event, tail=b"data: [DONE]\\n\\n")
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterable, Awaitable, Callable, Sequence
from typing import TypeVar

from starlette.types import Receive, Scope, Send

from providers.errors import APIError

__all__ = ["ClientGone", "RelayResponse", "until_disconnect"]

log = logging.getLogger("polyrelay")
T = TypeVar("T")


class ClientGone(Exception):
    """The client disconnected before its answer was ready; there is no one left to answer."""


async def _disconnected(receive: Receive, after: asyncio.Event | None = None) -> None:
    if after is not None:
        await after.wait()
    # Body messages still unread (a request we did not consume) are skipped, not lost: we only
    # get here once the handler has read everything it wanted.
    while (await receive())["type"] != "http.disconnect":
        pass


async def until_disconnect(receive: Receive, call: Awaitable[T], *, watch_after: asyncio.Event | None = None) -> T:
    """``await call``, cancelling it and raising ``ClientGone`` if the client disconnects first.

    ``watch_after`` delays the watch until the request body has been consumed by someone else (the
    proxy's upload), since both would otherwise read the same ``receive``.
    """
    work = asyncio.ensure_future(call)
    watcher = asyncio.ensure_future(_disconnected(receive, watch_after))
    try:
        await asyncio.wait((work, watcher), return_when=asyncio.FIRST_COMPLETED)
    finally:
        watcher.cancel()
    if not work.done():
        work.cancel()
        await asyncio.gather(work, return_exceptions=True)
        raise ClientGone
    return work.result()


class RelayResponse:
    """An ASGI response streaming ``chunks`` as they come.

    ``on_error`` turns an ``APIError`` raised mid-stream into final bytes (an SSE error event);
    without it the connection is dropped so the client sees a truncated body, not a false end.
    ``tail`` is sent after the chunks, error or not (``data: [DONE]``). ``close`` releases the
    upstream in every case: end, error or client disconnect.
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
        try:
            await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
            pump = asyncio.ensure_future(self._pump(send))
            watcher = asyncio.ensure_future(_disconnected(receive))
            try:
                await asyncio.wait((pump, watcher), return_when=asyncio.FIRST_COMPLETED)
            finally:
                watcher.cancel()
            if not pump.done():
                log.info("client disconnected from %s; upstream closed", scope.get("path"))
                pump.cancel()
                await asyncio.gather(pump, return_exceptions=True)
            else:
                pump.result()  # re-raise what the pump could not handle
        finally:
            await self.close()

    async def _pump(self, send: Send) -> None:
        try:
            async for chunk in self.chunks:
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
        except APIError as error:
            if self.on_error is None:
                raise
            log.warning("stream from upstream failed: %s", error.message)
            await send({"type": "http.response.body", "body": self.on_error(error), "more_body": True})
        except Exception:
            if self.on_error is None:
                raise
            log.exception("stream relay failed")
            failure = APIError("The gateway hit an internal error during the stream; it has been logged.")
            await send({"type": "http.response.body", "body": self.on_error(failure), "more_body": True})
        await send({"type": "http.response.body", "body": self.tail, "more_body": False})
