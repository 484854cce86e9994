"""Request bodies, read within the size and time limits of the settings.

A declared ``Content-Length`` over the limit is refused before a byte is read; a chunked body is
counted as it arrives and refused as soon as it passes the limit. ``Upload`` carries a body streamed
on to a provider (the proxy's, an audio upload's), keeping the real cause when it fails midway.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.requests import ClientDisconnect, Request
from starlette.types import Receive

from providers.errors import APIError, InvalidRequest, PayloadTooLarge

from .relay import BODY_EXTENSION, ClientGone

__all__ = ["Upload", "check_declared_length", "read_body", "stream_body"]


def _too_large(limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The request body is larger than the gateway accepts ({limit} bytes, SERVER_MAX_REQUEST_BODY_SIZE)."
    )


def check_declared_length(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is None:
        return
    if not declared.isdigit():
        raise InvalidRequest("The Content-Length header is not a number.")
    if int(declared) > limit:
        raise _too_large(limit)


async def stream_body(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The body's chunks as they arrive, failing with 413 past ``limit`` bytes."""
    check_declared_length(request, limit)
    seen = 0
    try:
        async for chunk in request.stream():
            seen += len(chunk)
            if seen > limit:
                raise _too_large(limit)
            if chunk:
                yield chunk
    except ClientDisconnect as exc:
        raise ClientGone from exc


async def read_body(request: Request, limit: int, timeout: float) -> bytes:
    """The whole body, within ``limit`` bytes and ``timeout`` seconds (SERVER_READ_TIMEOUT)."""
    extensions = request.scope.get("extensions")
    arrived = extensions.get(BODY_EXTENSION) if extensions else None
    if arrived is not None and arrived():
        # Already here (the server says so): nothing to wait for, and its size is counted as read.
        return await _whole(request.receive, limit)
    check_declared_length(request, limit)
    try:
        async with asyncio.timeout(timeout or None):
            return await _whole(request.receive, limit)
    except TimeoutError:
        raise InvalidRequest(
            f"The request body did not arrive within {timeout:g}s (SERVER_READ_TIMEOUT).", status=408
        ) from None


async def _whole(receive: Receive, limit: int) -> bytes:
    """The body's messages read straight from ``receive`` (what ``stream_body`` yields, without its
    two generators: a small body is one message, read on every request)."""
    message = await receive()
    parts: list[bytes] = []
    seen = 0
    while True:
        if message["type"] == "http.disconnect":
            raise ClientGone
        body: bytes = message.get("body", b"")
        seen += len(body)
        if seen > limit:
            raise _too_large(limit)
        if not message.get("more_body", False):
            if not parts:
                return body
            parts.append(body)
            return b"".join(parts)
        if body:
            parts.append(body)
        message = await receive()


class Upload:
    """The client's body on its way upstream. The HTTP client would report any failure of it as a
    connection error; ``error`` keeps the real cause, and ``done`` tells when ``receive`` is free."""

    def __init__(self, chunks: AsyncIterator[bytes] | None) -> None:
        self.done = asyncio.Event()
        self.error: Exception | None = None
        self.body = None if chunks is None else self._relay(chunks)
        if chunks is None:
            self.done.set()

    async def _relay(self, chunks: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        try:
            async for chunk in chunks:
                yield chunk
        except (APIError, ClientGone) as exc:
            self.error = exc
            raise
        self.done.set()
