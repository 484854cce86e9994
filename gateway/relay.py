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

    The call runs in the request's own task; one small watcher task cancels it when the client
    leaves (cheaper than a task per side and ``asyncio.wait``, on every request). ``watch_after``
    delays the watch until the request body has been consumed by someone else (the proxy's upload),
    since both would otherwise read the same ``receive``.
    """
    current = asyncio.current_task()
    assert current is not None
    left = False

    async def watch() -> None:
        nonlocal left
        await _disconnected(receive, watch_after)
        left = True
        current.cancel()

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        return await call
    except asyncio.CancelledError:
        if left and current.uncancel() == 0:
            raise ClientGone from None
        raise
    finally:
        watcher.cancel()


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
        current = asyncio.current_task()
        assert current is not None
        left = False

        async def watch() -> None:
            nonlocal left
            await _disconnected(receive)
            left = True
            current.cancel()

        watcher = None
        try:
            await send({"type": "http.response.start", "status": self.status, "headers": self.headers})
            watcher = asyncio.get_running_loop().create_task(watch())
            try:
                await self._pump(send)
            except asyncio.CancelledError:
                if left and current.uncancel() == 0:
                    log.info("client disconnected from %s; upstream closed", scope.get("path"))
                    return
                raise
        finally:
            if watcher is not None:
                watcher.cancel()
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
