"""The adapter for every provider that speaks OpenAI's chat API: bytes relayed, not re-encoded.

The request is the client's JSON with ``model`` set to the provider's own name and the fields the
provider rejects removed; the answer and every stream event pass through as the provider sent them.
Embeddings are relayed the same way, to the path the registry entry lists (``endpoints.embeddings``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import Any

import orjson

from .base import Adapter, ChatRequest, EmbeddingRequest, EventStream, looks_like_json_object
from .errors import InvalidRequest, UpstreamUnreachable
from .json_codec import dump_json
from .sampling import sampled
from .sse import DONE, ERROR_EVENT, SSEDecoder
from .transport import UpstreamResponse

__all__ = ["OpenAICompatibleAdapter", "relayed_events"]


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
        self._embeddings_url = self.provider.endpoint_url("embeddings") if self.provider.serves("embeddings") else None

    def _encode(self, request: ChatRequest) -> bytes:
        """The client's JSON with the provider's model name; copied only when something must change."""
        payload = sampled(request.payload, self._sampling, request.model)
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
        body = dump_json(payload)
        # Only a request that carries tool calls can hold an id to fix: a byte search finds out
        # (a false hit costs one walk of the messages); a fix costs a second encoding.
        if self._tool_ids is not None and b'"tool_call' in body:
            conformed = self._tool_ids.conform_messages(payload["messages"])
            if conformed is not None:
                body = dump_json({**payload, "messages": conformed})
        return body

    async def chat(self, request: ChatRequest) -> bytes:
        response = await self.http.request(
            "POST",
            self._chat_url,
            headers=self._json_headers,
            body=self._encode(request),
            timeouts=self.options.timeouts.chat,
            redactor=self.redactor,
        )
        await self._checked(response)
        body = await response.read()
        if not looks_like_json_object(body):
            raise self._not_json(response, body, "a chat completion")
        return body

    async def stream(self, request: ChatRequest) -> EventStream:
        response = await self.http.request(
            "POST",
            self._chat_url,
            headers=self._sse_headers,
            body=self._encode(request),
            timeouts=self.options.timeouts.stream,
            redactor=self.redactor,
        )
        await self._checked_stream(await self._checked(response))
        return relayed_events(response, request.payload, self.options.max_event_size)

    async def embed(self, request: EmbeddingRequest) -> bytes:
        if self._embeddings_url is None:
            return await super().embed(request)
        payload = request.payload
        if payload.get("model") != request.model:
            payload = {**payload, "model": request.model}
        response = await self.http.request(
            "POST",
            self._embeddings_url,
            headers=self._json_headers,
            body=dump_json(payload),
            timeouts=self.options.timeouts.chat,
            redactor=self.redactor,
        )
        await self._checked(response)
        body = await response.read()
        if not looks_like_json_object(body):
            raise self._not_json(response, body, "embeddings")
        return body  # as the provider wrote it: base64 or floats, its usage and model


def relayed_events(response: UpstreamResponse, payload: dict[str, Any], max_event_size: int) -> EventStream:
    """An OpenAI-style stream's events as they come, up to its ``[DONE]``: chat's, and the other
    endpoints' whose chunks carry ``choices`` and ``usage`` the same way (legacy completions)."""
    return EventStream(response, _relay(response, SSEDecoder(max_event_size), _Ending(payload)))


class _Ending:
    """Whether a stream that closed without ``[DONE]`` had finished anyway: every choice sent its
    ``finish_reason`` and, when the client asked for it, the usage chunk came.

    With one choice (nearly every stream) these are in the last two events, read only when the
    stream closes that way: nothing per event. With ``n`` > 1 a choice may finish long before the
    others, so each event gets one byte search, and the few with a finish reason are parsed.
    """

    __slots__ = ("choices", "finished", "usage_due")

    def __init__(self, payload: dict[str, Any]) -> None:
        n = payload.get("n")
        self.choices = n if type(n) is int and n > 1 else 1
        self.finished: set[int] = set()
        options = payload.get("stream_options")
        self.usage_due = isinstance(options, dict) and options.get("include_usage") is True

    def see(self, event: bytes) -> None:
        at = event.find(b'"finish_reason":')
        if at >= 0 and (event[at + 16 : at + 17] == b'"' or event[at + 16 : at + 18] == b' "'):
            self.read(event)

    def read(self, event: bytes) -> None:
        _, _, data = event.partition(b"data:")
        try:
            chunk = orjson.loads(data)
        except orjson.JSONDecodeError:
            return
        if not isinstance(chunk, dict):
            return
        for choice in chunk.get("choices") or ():
            if isinstance(choice, dict) and choice.get("finish_reason"):
                index = choice.get("index")
                self.finished.add(index if isinstance(index, int) else 0)
        if isinstance(chunk.get("usage"), dict):
            self.usage_due = False

    def complete(self, last: tuple[bytes, bytes]) -> bool:
        for event in last:
            if event:
                self.read(event)
        return len(self.finished) >= self.choices and not self.usage_due


async def _relay(response: UpstreamResponse, decoder: SSEDecoder, ending: _Ending) -> AsyncGenerator[bytes, None]:
    """The provider's events, as they arrive and unchanged, up to its ``[DONE]``.

    Each upstream chunk yields the events it completed as one piece, so one read becomes one write.
    A stream that ends without ``[DONE]`` was cut off, unless every choice had finished (and the
    usage came, when asked for) or it ended with an error event (that event told the client).
    """
    errored = False
    last = (b"", b"")  # the last two events: where one choice's finish and the usage are
    see = ending.see if ending.choices > 1 else None
    async for chunk in response.iter_chunks():
        out: list[bytes] = []
        for event in decoder.feed(chunk):
            if event.endswith(DONE) and _is_done(event):
                if out:
                    yield b"".join(out)
                return
            errored = errored or event.startswith(ERROR_EVENT)
            if see is not None:
                see(event)
            last = (last[1], event)
            out.append(event + b"\n\n")
        if out:
            yield b"".join(out)
    for event in decoder.flush():
        if _is_done(event):
            return
        errored = errored or event.startswith(ERROR_EVENT)
        if see is not None:
            see(event)
        last = (last[1], event)
        yield event + b"\n\n"
    if not errored and not ending.complete(last):
        raise UpstreamUnreachable("The provider's stream ended before it was complete.")


def _is_done(event: bytes) -> bool:
    return event in (b"data: [DONE]", b"data:[DONE]")
