"""The adapter for every provider that speaks OpenAI's chat API: bytes relayed, not re-encoded.

The request is the client's JSON with ``model`` set to the provider's own name and the fields the
provider rejects removed; the answer and every stream event pass through as the provider sent them.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

from .base import Adapter, ChatRequest, EventStream
from .errors import InvalidRequest, UpstreamUnreachable
from .json_codec import dump_json
from .sse import DONE, SSEDecoder
from .transport import UpstreamResponse

__all__ = ["OpenAICompatibleAdapter"]

_ERROR_EVENT = (b'data: {"error"', b'data:{"error"')  # with or without the optional space


class OpenAICompatibleAdapter(Adapter):
    """``POST {url}{chat_path}`` with the provider's credential; models from ``{url}{models_path}``."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        spec = self.provider.spec
        self._chat_url = self.provider.endpoint(spec.chat_path)
        self._sse_headers = {**self._json_headers, "Accept": "text/event-stream"}
        self._drop = spec.drop_params
        self._drop_in_messages = spec.drop_message_params
        self._max_choices = spec.max_choices

    def _encode(self, request: ChatRequest) -> bytes:
        """The client's JSON with the provider's model name; copied only when something must change."""
        payload = request.payload
        n = payload.get("n")
        if self._max_choices is not None and isinstance(n, int) and n > self._max_choices:
            raise InvalidRequest(
                f"{self.provider.id} returns at most {self._max_choices} choice(s) per request; lower 'n'.", param="n"
            )
        if payload.get("model") != request.model or any(k in payload for k in self._drop):
            payload = {k: v for k, v in payload.items() if k not in self._drop}
            payload["model"] = request.model
        if self._drop_in_messages:
            drop = self._drop_in_messages
            messages = [
                {k: v for k, v in m.items() if k not in drop} if any(k in m for k in drop) else m
                for m in payload["messages"]
            ]
            payload = {**payload, "messages": messages}
        return dump_json(payload)

    async def chat(self, request: ChatRequest) -> bytes:
        response = await self.http.request(
            "POST",
            self._chat_url,
            headers=self._json_headers,
            body=self._encode(request),
            timeouts=self.options.timeouts.chat,
        )
        await self._checked(response)
        return await response.read()

    async def stream(self, request: ChatRequest) -> EventStream:
        response = await self.http.request(
            "POST",
            self._chat_url,
            headers=self._sse_headers,
            body=self._encode(request),
            timeouts=self.options.timeouts.stream,
        )
        await self._checked(response)
        return EventStream(response, _relay(response))


async def _relay(response: UpstreamResponse) -> AsyncGenerator[bytes, None]:
    """The provider's events, as they arrive and unchanged, up to its ``[DONE]``.

    Each upstream chunk yields the events it completed as one piece, so one read becomes one write.
    A stream that ends without ``[DONE]`` was cut off, unless it ended with an error event (then
    that event already told the client).
    """
    decoder = SSEDecoder()
    errored = False
    async for chunk in response.iter_chunks():
        out: list[bytes] = []
        for event in decoder.feed(chunk):
            if event.endswith(DONE) and _is_done(event):
                if out:
                    yield b"".join(out)
                return
            errored = errored or event.startswith(_ERROR_EVENT)
            out.append(event + b"\n\n")
        if out:
            yield b"".join(out)
    for event in decoder.flush():
        if _is_done(event):
            return
        errored = errored or event.startswith(_ERROR_EVENT)
        yield event + b"\n\n"
    if not errored:
        raise UpstreamUnreachable("The provider's stream ended before it was complete.")


def _is_done(event: bytes) -> bool:
    return event in (b"data: [DONE]", b"data:[DONE]")
