"""What every adapter offers the gateway, whatever wire protocol it speaks.

An adapter turns an OpenAI chat request into its provider's native call and the answer back into
OpenAI's shape. The gateway only ever sees OpenAI JSON bytes, OpenAI SSE events and ``APIError``s.

    adapter = build_adapter(provider, http, options)
    models = await adapter.list_models()                       # [ModelInfo, ...]
    body = await adapter.chat(ChatRequest(payload, "gpt-4o"))  # OpenAI JSON bytes
    events = await adapter.stream(ChatRequest(payload, "gpt-4o", stream=True))
    async for data in events: ...                              # OpenAI SSE bytes, no [DONE]
    await events.aclose()
    body = await adapter.embed(EmbeddingRequest(payload, "text-embedding-3-small", texts))  # OpenAI JSON bytes
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

from .embeddings import EmbeddingRequest
from .errors import InvalidRequest, UpstreamInvalidAnswer, UpstreamStatusError
from .json_codec import dump_json
from .model_lists import FORMATS, ModelInfo, list_models
from .rate_limits import rate_limit_headers
from .redact import Redactor
from .registry import Provider
from .sampling import sampled
from .sse import DEFAULT_MAX_EVENT_SIZE
from .transport import HttpClient, Timeouts, UpstreamResponse

__all__ = [
    "Adapter",
    "AdapterOptions",
    "AdapterTimeouts",
    "ChatRequest",
    "EmbeddingRequest",
    "EventStream",
    "ModelInfo",
    "looks_like_json_object",
    "upstream_error",
]


@dataclass(frozen=True, slots=True)
class AdapterTimeouts:
    """``chat`` bounds a whole non-streaming call; ``stream`` has only an idle-read bound."""

    chat: Timeouts
    stream: Timeouts
    models: Timeouts


@dataclass(frozen=True, slots=True)
class AdapterOptions:
    """What adapters are configured with, beyond their provider."""

    timeouts: AdapterTimeouts
    # For protocols that require max_tokens (Anthropic's) when the client gives none.
    default_max_tokens: int = 4096
    # The largest stream event read from a provider (STREAM_MAX_EVENT_SIZE).
    max_event_size: int = DEFAULT_MAX_EVENT_SIZE


@dataclass(slots=True)
class ChatRequest:
    """An OpenAI chat request, parsed once: ``payload`` is the client's JSON object and ``model``
    the provider's own model name (the ``provider/`` prefix already removed)."""

    payload: dict[str, Any]
    model: str
    stream: bool = False


class EventStream:
    """OpenAI SSE events (``data: {...}\\n\\n`` bytes, never ``[DONE]``) read from an open upstream
    answer. Ending normally means the provider finished the stream; a broken one raises
    ``UpstreamError``. ``aclose`` releases the upstream connection whether or not it was iterated:
    back to the pool after a complete stream, dropped otherwise."""

    __slots__ = ("_complete", "_events", "_response")

    def __init__(self, response: UpstreamResponse, events: AsyncGenerator[bytes, None]) -> None:
        self._response = response
        self._events = events
        self._complete = False

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> bytes:
        try:
            return await self._events.__anext__()
        except StopAsyncIteration:
            self._complete = True
            raise

    async def aclose(self) -> None:
        try:
            await self._events.aclose()
        finally:
            if self._complete:
                await self._response.finish()
            else:
                self._response.close()


class Adapter(ABC):
    """Base of the adapters: one per wire protocol, one instance per configured provider."""

    # Upstream statuses reported under another one (Anthropic's 529 "overloaded" is a 503).
    status_map: ClassVar[Mapping[int, int]] = {}

    def __init__(self, provider: Provider, http: HttpClient, options: AdapterOptions) -> None:
        self.provider = provider
        self.http = http
        self.options = options
        # Masks the provider's key in all of its answers; pass it on every call to the provider.
        self.redactor = Redactor.of(provider.secrets)
        self._json_headers = {
            **provider.auth_headers(),
            "Content-Type": "application/json",
            "Accept": "application/json",
        }
        self._models_url = provider.endpoint(provider.spec.models_path)
        self._models_format = FORMATS[provider.spec.models_format]
        self._sampling = provider.spec.sampling
        self._tool_ids = provider.spec.tool_call_ids

    def conformed(self, request: ChatRequest) -> ChatRequest:
        """The request as this provider takes it (OpenAI-shaped still): the sampling fields its
        model refuses dropped, tool-call ids made to fit its rule. The same request when nothing
        must change; a changed one is a shallow copy (messages copied only where an id changes)."""
        payload = sampled(request.payload, self._sampling, request.model)
        if self._tool_ids is not None:
            messages = self._tool_ids.conform_messages(payload["messages"])
            if messages is not None:
                payload = {**payload, "messages": messages}
        if payload is request.payload:
            return request
        return ChatRequest(payload, request.model, request.stream)

    async def list_models(self) -> list[ModelInfo]:
        """The provider's models, read page by page from its native list format."""
        return await list_models(self._fetch_json, self._models_url, self._models_format, self.provider.id)

    async def _fetch_json(self, url: str) -> Any:
        response = await self.http.request(
            "GET", url, headers=self._json_headers, timeouts=self.options.timeouts.models, redactor=self.redactor
        )
        await self._checked(response)
        body = await response.read()
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise self._not_json(response, body, "its model list") from None

    @abstractmethod
    async def chat(self, request: ChatRequest) -> bytes:
        """A complete OpenAI ``chat.completion`` as JSON bytes."""

    @abstractmethod
    async def stream(self, request: ChatRequest) -> EventStream:
        """Open a streaming call; errors before the first byte raise here, with their status."""

    async def embed(self, request: EmbeddingRequest) -> bytes:
        """An OpenAI embeddings answer (``{"object": "list", "data": [...]}``) as JSON bytes. The
        route asks only providers whose registry entry lists ``embeddings``; an adapter for a
        protocol that has none keeps this refusal."""
        raise InvalidRequest(
            f"Provider '{self.provider.id}' does not serve /v1/embeddings.",
            param="model",
            code="endpoint_not_supported",
        )

    async def _post_json(self, url: str, document: Any, what: str) -> Any:
        """POST ``document`` to the provider and its JSON answer, parsed (an error status raised)."""
        response = await self.http.request(
            "POST",
            url,
            headers=self._json_headers,
            body=dump_json(document),
            timeouts=self.options.timeouts.chat,
            redactor=self.redactor,
        )
        await self._checked(response)
        body = await response.read()
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            raise self._not_json(response, body, what) from None

    def proxy_headers(self) -> dict[str, str]:
        """Headers the raw proxy injects: the provider's credential and fixed headers."""
        return self.provider.auth_headers()

    def _not_json(
        self, response: UpstreamResponse, body: bytes, what: str, expected: str = "JSON"
    ) -> UpstreamInvalidAnswer:
        """The 502 for an answer that should have been JSON: what came instead, never a credential."""
        kind = response.headers.get("Content-Type") or "no content type"
        if body.strip():
            start = body.strip()[:80].decode("utf-8", "replace")
            if self.provider.api_key:
                start = start.replace(self.provider.api_key, "***")
            said = f"{len(body)} bytes of {kind} starting {start!r}"
        else:
            said = f"an empty body ({kind})"
        return UpstreamInvalidAnswer(
            f"{self.provider.id} answered HTTP {response.status} with {said} instead of {expected} for {what}. "
            f"Check that {self.provider.spec.env_prefix}_API_URL points at the provider's API."
        )

    async def _checked_stream(self, response: UpstreamResponse) -> UpstreamResponse:
        """A stream's answer, refused (502) when its type says it is a page or a JSON document, not
        events: relayed, it would reach the client as garbage events. Other types pass (some servers
        label their events loosely)."""
        if response.content_type.startswith(("text/html", "application/json")):
            try:
                body = await response.read()
            finally:
                response.close()
            raise self._not_json(response, body, "a stream", expected="an event stream")
        return response

    async def _checked(self, response: UpstreamResponse) -> UpstreamResponse:
        if response.status < 400:
            return response
        try:
            body = await response.read()
        finally:
            response.close()
        status = self.status_map.get(response.status, response.status)
        raise upstream_error(self.provider, status, body, response.headers.get("Retry-After"), response.headers)


def looks_like_json_object(body: bytes) -> bool:
    """Whether ``body`` starts with ``{`` and ends with ``}`` (around whitespace): the cheap check of
    an answer relayed without parsing. HTML, an empty body and most truncations fail it."""
    if body[:1] == b"{" and body[-1:] == b"}":
        return True
    # Whitespace around (a pretty-printed answer ends with a newline): skipped, not copied.
    start, end = 0, len(body) - 1
    while start <= end and body[start] in _WHITESPACE:
        start += 1
    while end > start and body[end] in _WHITESPACE:
        end -= 1
    return start < end and body[start] == 0x7B and body[end] == 0x7D  # { and }


_WHITESPACE = b" \t\r\n"


def upstream_error(
    provider: Provider,
    status: int,
    body: bytes,
    retry_after: str | None = None,
    answer_headers: Mapping[str, str] | None = None,
) -> UpstreamStatusError:
    """The provider's error answer as ours: same status, its message, type and code kept."""
    message, kind, code, param = _error_fields(body)
    if kind not in OPENAI_ERROR_TYPES:
        # A provider's own vocabulary (Anthropic's overloaded_error, Google's RESOURCE_EXHAUSTED)
        # goes in ``code``; ``type`` stays one OpenAI's SDKs know.
        code = code or kind
        kind = None
    if not message:
        message = f"The provider answered with HTTP {status}."
    redactor = Redactor.of(provider.secrets)  # the body's bytes are masked already; this catches a key JSON-escaped
    if redactor is not None:
        message = redactor.text(message)
    headers = {"Retry-After": retry_after} if retry_after else {}
    if status == 429 and answer_headers is not None:
        # The provider's own limits (x-ratelimit-limit-requests..., Anthropic's in those names),
        # relayed with its 429 so the caller can pace itself: they count the gateway's key, and say
        # nothing secret.
        headers.update(rate_limit_headers(answer_headers))
    return UpstreamStatusError(
        status,
        f"{provider.id}: {message}",
        type=kind,
        code=code,
        param=param,
        headers=headers,
    )


OPENAI_ERROR_TYPES = frozenset(
    {
        "invalid_request_error",
        "authentication_error",
        "permission_error",
        "not_found_error",
        "rate_limit_error",
        "api_error",
        "server_error",
        "insufficient_quota",
    }
)


def _error_fields(body: bytes) -> tuple[str, str | None, str | None, str | None]:
    """message, type, code, param from the error shapes providers use (OpenAI's envelope, a bare
    string, Anthropic's nested one, FastAPI's ``detail``, Cloudflare's ``errors`` list...)."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body.decode("utf-8", "replace").strip()[:500], None, None, None
    if isinstance(data, list) and data and isinstance(data[0], dict):
        data = data[0]  # Google wraps its error in a list on some endpoints
    if not isinstance(data, dict):
        return str(data)[:500], None, None, None
    error = data.get("error")
    if isinstance(error, str):
        return error, None, None, None
    if isinstance(error, dict):
        code = error.get("code")
        if isinstance(code, int):  # Google repeats the HTTP status there; its name is in "status"
            code = error.get("status")
        return (
            str(error.get("message") or ""),
            _str_or_none(error.get("type")) or _str_or_none(error.get("status")),
            None if code is None else str(code),
            _str_or_none(error.get("param")),
        )
    errors = data.get("errors")
    if isinstance(errors, list) and errors and isinstance(errors[0], dict):
        return str(errors[0].get("message") or ""), None, None, None
    for key in ("message", "detail", "error_message"):
        if key in data:
            return str(data[key]), None, None, None
    return "", None, None, None


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None
