"""Calls of the OpenAI endpoints a provider serves as OpenAI does, relayed as they are.

The registry's ``endpoints`` map says which of them an entry serves and where; a ``Relay`` is one
provider's: the request goes to that path with the provider's credential, the answer comes back
through the provider's ``Redactor``, an error answer becomes ours (``upstream_error``) with its
status and message kept.

    relay = Relay(adapter, http)
    answer = await relay.post("moderations", body)                 # an open answer, status < 400
    data = await relay.json(answer, "a moderation")                 # its JSON bytes, checked
    events = await relay.events(await relay.post("completions", body, stream=True), payload)
    answer = await relay.post("transcriptions", chunks, content_type=..., length=...)
"""

from __future__ import annotations

from collections.abc import AsyncIterable
from typing import Any

from .base import Adapter, EventStream, looks_like_json_object
from .openai_compatible import relayed_events
from .transport import HttpClient, UpstreamResponse

__all__ = ["Relay"]


class Relay:
    """One provider's relayed endpoints, over the gateway's HTTP client (a traced one when tracing
    is on). Built once per configured provider; a call costs what the proxy's does."""

    def __init__(self, adapter: Adapter, http: HttpClient) -> None:
        self.adapter = adapter
        self.provider = adapter.provider
        self.http = http
        self.urls = {name: self.provider.endpoint_url(name) for name in self.provider.spec.endpoints}
        self._auth = self.provider.auth_headers()
        self._json = {**self._auth, "Content-Type": "application/json", "Accept": "application/json"}
        self._sse = {**self._json, "Accept": "text/event-stream"}
        self._any = {**self._json, "Accept": "*/*"}

    async def post(
        self,
        endpoint: str,
        body: bytes | AsyncIterable[bytes],
        *,
        stream: bool = False,
        binary: bool = False,
        content_type: str | None = None,
        length: int | None = None,
    ) -> UpstreamResponse:
        """POST ``body`` to ``endpoint`` and wait for the answer's headers; a 4xx/5xx raises.

        ``stream``: an event stream is expected (no total timeout, an idle one). ``binary``: a body
        of any type, read as it comes (speech). ``content_type`` and ``length``: an upload's own
        (multipart), its length sent when known so the provider sees no chunked body.
        """
        timeouts = self.adapter.options.timeouts
        if content_type is not None:
            headers = {**self._auth, "Content-Type": content_type, "Accept": "application/json"}
            if length is not None:
                headers["Content-Length"] = str(length)
        else:
            headers = self._sse if stream else self._any if binary else self._json
        response = await self.http.request(
            "POST",
            self.urls[endpoint],
            headers=headers,
            body=body,
            timeouts=timeouts.stream if stream or binary else timeouts.chat,
            redactor=self.adapter.redactor,
        )
        checked = await self.adapter._checked(response)
        if stream:
            await self.adapter._checked_stream(checked)
        return checked

    async def json(self, response: UpstreamResponse, what: str) -> bytes:
        """The whole answer, which must be a JSON object (a 502 naming what came instead)."""
        body = await response.read()
        if not looks_like_json_object(body):
            raise self.adapter._not_json(response, body, what)
        return body

    def events(self, response: UpstreamResponse, payload: dict[str, Any]) -> EventStream:
        """An open event stream's events, without its ``[DONE]``; one cut off raises."""
        return relayed_events(response, payload, self.adapter.options.max_event_size)
