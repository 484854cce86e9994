"""The relayed routes whose request is a file upload: audio transcriptions and translations.

The ``multipart/form-data`` body streams through to the provider: only the parts up to the
``model`` field are read (``FormHead``), to route the request and give the provider its own model
name; the rest (the audio) is relayed as it arrives, within SERVER_MAX_REQUEST_BODY_SIZE (a 413
stops the upload midway). The answer, JSON or text (``response_format`` text, srt, vtt), is
relayed with its content type; with ``stream=true`` its events are relayed as they come.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response

from providers.errors import InvalidRequest, UpstreamError

from ..body import Upload, check_declared_length, stream_body
from ..relay import RelayResponse, until_disconnect
from ..settings import Settings
from ..telemetry import current
from .multipart import FormHead, boundary_of
from .target import Targets

__all__ = ["UploadEndpoint"]


class UploadEndpoint:
    """One relayed upload route, for the registry endpoint ``endpoint``."""

    def __init__(self, settings: Settings, targets: Targets, endpoint: str) -> None:
        self.limit = settings.server_max_request_body_size
        self.read_timeout = settings.server_read_timeout
        self.targets = targets
        self.endpoint = endpoint

    async def handle(self, request: Request) -> Response | RelayResponse:
        content_type = request.headers.get("content-type", "")
        head = FormHead(boundary_of(content_type))
        check_declared_length(request, self.limit)
        chunks = stream_body(request, self.limit)
        try:
            async with asyncio.timeout(self.read_timeout or None):
                await head.read(chunks)
        except TimeoutError:
            raise InvalidRequest(
                f"The form's 'model' field did not arrive within {self.read_timeout:g}s (SERVER_READ_TIMEOUT).",
                status=408,
            ) from None
        relay, model = await self.targets.resolve(request, head.model, self.endpoint)
        first = head.rewritten(model)
        declared = request.headers.get("content-length")
        # The provider gets the body's length when the client gave one (the check above made it a
        # number): some servers refuse a chunked upload.
        length = None if declared is None else int(declared) + len(first) - len(head.buffer)
        upload = Upload(_then(first, chunks))
        try:
            upstream = await until_disconnect(
                request,
                relay.post(self.endpoint, upload.body or b"", content_type=content_type, length=length),
                watch_after=upload.done,
            )
        except UpstreamError:
            if upload.error is not None:  # the client's body failed (too large, or the client left)
                raise upload.error from None
            raise
        kind = upstream.headers.get("Content-Type") or "application/json"
        if kind.startswith("text/event-stream"):  # stream=true: the transcript's events as they come
            return RelayResponse(
                upstream.iter_chunks(), close=upstream.aclose, headers=[(b"content-type", kind.encode("latin-1"))]
            )
        answer = await until_disconnect(request, upstream.read())
        if kind.startswith("application/json"):
            current().answered(answer)
        return Response(answer, media_type=kind)


async def _then(first: bytes, rest: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    yield first
    async for chunk in rest:
        yield chunk
