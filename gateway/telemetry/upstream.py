"""Client spans of upstream calls: what tracing wraps around the adapters and the proxy's client.

    TracedAdapter   ``chat {model}`` per model call (an MCP chat makes several): GenAI request
                    parameters at the start; response id, model, finish reasons and usage at the end
    TracedStream    the same span for a stream, ended when the stream is closed
                    (and ``embeddings {model}`` per embeddings call, with its input tokens)
    TracedClient    ``{method}`` per raw proxy call, ended with the request (the relay reads its body)

Each call's ``traceparent`` (and ``tracestate``) is added to ``providers.transport.OUTBOUND`` while
the call is made, so the provider sees this span as its parent. The wrappers exist only when
tracing is on (``Tracing.wrap_adapter``): with it off, the routes hold the adapters themselves.
Only parameters and counts are recorded, never the messages or the answer's text.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any
from urllib.parse import urlsplit

from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer, set_span_in_context

from providers import Adapter, ChatRequest, EmbeddingRequest, EventStream, HttpClient, ModelInfo, Timeouts
from providers.redact import Redactor
from providers.sse import holds_error_event
from providers.transport import OUTBOUND, Headers, UpstreamResponse

from .exchange import Exchange, current, error_kind
from .usage import read_embedding_usage, read_usage

__all__ = ["OPEN", "SPAN", "TracedAdapter", "TracedClient", "TracedStream", "finish_reasons", "request_attributes"]

SPAN = "otel.span"  # the key of the request's server span in Exchange.extra
OPEN = "otel.open"  # client spans that end with the request (the proxy's)
_ROOT = Context()
_DEFAULT_TIMEOUTS = Timeouts()

# Request fields -> GenAI attributes, each kept only when its value has the type the convention says.
_NUMBERS = (
    ("temperature", "gen_ai.request.temperature"),
    ("top_p", "gen_ai.request.top_p"),
    ("frequency_penalty", "gen_ai.request.frequency_penalty"),
    ("presence_penalty", "gen_ai.request.presence_penalty"),
)
_INTEGERS = (
    ("max_completion_tokens", "gen_ai.request.max_tokens"),
    ("max_tokens", "gen_ai.request.max_tokens"),
    ("seed", "gen_ai.request.seed"),
    ("top_k", "gen_ai.request.top_k"),
)
_FINISH = re.compile(rb'"finish_reason"\s*:\s*"([A-Za-z0-9_-]{1,64})"')


def parent_context(exchange: Exchange) -> Context | None:
    """A context holding the request's server span, to start its children in; ``None`` outside a
    traced request (the child then starts where the ambient context says)."""
    extra = exchange.extra
    span = extra.get(SPAN) if extra else None
    return None if span is None else set_span_in_context(span, _ROOT)


def request_attributes(payload: Mapping[str, Any]) -> dict[str, Any]:
    """The GenAI request parameters present in an OpenAI chat payload (values of the wrong type,
    which the provider will refuse anyway, are left out rather than logged by the SDK)."""
    found: dict[str, Any] = {}
    for field, name in _NUMBERS:
        value = payload.get(field)
        if value is not None and type(value) in (int, float):
            found[name] = value
    for field, name in _INTEGERS:
        value = payload.get(field)
        if type(value) is int and name not in found:
            found[name] = value
    stop = payload.get("stop")
    if type(stop) is str:
        found["gen_ai.request.stop_sequences"] = (stop,)
    elif type(stop) is list and stop and all(type(s) is str for s in stop):
        found["gen_ai.request.stop_sequences"] = tuple(stop)
    n = payload.get("n")
    if type(n) is int and n != 1:
        found["gen_ai.request.choice.count"] = n
    return found


def finish_reasons(data: bytes, choices: int) -> list[str]:
    """The finish reasons of an OpenAI answer (or a stream's last chunks), last first, at most
    ``choices`` of them: searched from the end, where they are, so a long answer costs little.
    Inside a JSON string the quotes are escaped, so a message's text never matches."""
    found: list[str] = []
    at = len(data)
    while len(found) < choices and (at := data.rfind(b'"finish_reason"', 0, at)) >= 0:
        match = _FINISH.match(data, at)
        if match is not None:
            found.append(match.group(1).decode())
    found.reverse()
    return found


def _outbound(span: Span) -> Mapping[str, str]:
    """The request's outbound headers plus this span's W3C trace context."""
    headers = OUTBOUND.get() or {}
    span_context = span.get_span_context()
    if not span_context.is_valid:  # OTEL_SDK_DISABLED: nothing to propagate
        return headers
    traced = {
        **headers,
        "traceparent": f"00-{span_context.trace_id:032x}-{span_context.span_id:016x}-{span_context.trace_flags:02x}",
    }
    if span_context.trace_state:
        traced["tracestate"] = span_context.trace_state.to_header()
    return traced


def _failed(span: Span, exc: BaseException) -> None:
    if isinstance(exc, asyncio.CancelledError):  # the client left: not the provider's failure
        span.set_attribute("error.type", "cancelled")
        return
    kind = error_kind(exc)
    span.set_attribute("error.type", kind)
    span.set_status(StatusCode.ERROR, kind)


@contextmanager
def _call_in(span: Span) -> Iterator[None]:
    """Around the upstream call ``span`` stands for: its trace context goes with the call, and a
    failure marks the span and ends it (a successful call's span is ended by its caller, later)."""
    token = OUTBOUND.set(_outbound(span))
    try:
        yield
    except BaseException as exc:
        _failed(span, exc)
        span.end()
        raise
    finally:
        OUTBOUND.reset(token)


def _server(url: str) -> dict[str, Any]:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    return {"server.address": parts.hostname or "", "server.port": port}


class TracedAdapter(Adapter):
    """An adapter whose chat calls are client spans; everything else is the wrapped adapter's."""

    def __init__(self, inner: Adapter, tracer: Tracer) -> None:
        super().__init__(inner.provider, inner.http, inner.options)
        self.inner = inner
        self.tracer = tracer
        # What every call of this provider says, built once.
        self._fixed = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": inner.provider.spec.telemetry_name or inner.provider.id,
            **_server(inner.provider.url),
        }

    def _start(self, request: ChatRequest) -> Span:
        attributes = {**self._fixed, "gen_ai.request.model": request.model, **request_attributes(request.payload)}
        if request.stream:
            attributes["gen_ai.request.stream"] = True
        return self.tracer.start_span(f"chat {request.model}", parent_context(current()), SpanKind.CLIENT, attributes)

    async def chat(self, request: ChatRequest) -> bytes:
        span = self._start(request)
        with _call_in(span):
            body = await self.inner.chat(request)
        if span.is_recording():
            span.set_attributes(_answered((body,), _choices(request.payload)))
        span.end()
        return body

    async def stream(self, request: ChatRequest) -> EventStream:
        span = self._start(request)
        started = time.perf_counter()
        with _call_in(span):
            events = await self.inner.stream(request)
        return TracedStream(events, span, started, _choices(request.payload))

    async def embed(self, request: EmbeddingRequest) -> bytes:
        attributes = {
            **self._fixed,
            "gen_ai.operation.name": "embeddings",
            "gen_ai.request.model": request.model,
            "gen_ai.request.encoding_formats": ("base64" if request.base64 else "float",),
        }
        if request.dimensions is not None:
            attributes["gen_ai.embeddings.dimension.count"] = request.dimensions
        name = f"embeddings {request.model}"
        span = self.tracer.start_span(name, parent_context(current()), SpanKind.CLIENT, attributes)
        with _call_in(span):
            body = await self.inner.embed(request)
        usage = read_embedding_usage(body) if span.is_recording() else None
        if usage is not None:
            answered: dict[str, Any] = {"gen_ai.usage.input_tokens": usage.input}
            if usage.model is not None:
                answered["gen_ai.response.model"] = usage.model
            span.set_attributes(answered)
        span.end()
        return body

    async def list_models(self) -> list[ModelInfo]:
        return await self.inner.list_models()

    def proxy_headers(self) -> dict[str, str]:
        return self.inner.proxy_headers()


def _choices(payload: Mapping[str, Any]) -> int:
    n = payload.get("n")
    return n if type(n) is int and n > 1 else 1


def _answered(tail: tuple[bytes, ...], choices: int) -> dict[str, Any]:
    """The response attributes, read from the answer's bytes (its end only). Set in one call: the
    SDK checks and locks per call, which is most of what an attribute costs."""
    attributes: dict[str, Any] = {}
    data = tail[0] if len(tail) == 1 else b"".join(tail)
    reasons = finish_reasons(data, choices)
    if reasons:
        attributes["gen_ai.response.finish_reasons"] = reasons
    usage = read_usage(tail)
    if usage is None:
        return attributes
    attributes["gen_ai.usage.input_tokens"] = usage.input
    attributes["gen_ai.usage.output_tokens"] = usage.output
    if usage.cache_read is not None:
        attributes["gen_ai.usage.cache_read.input_tokens"] = usage.cache_read
    if usage.cache_write is not None:
        attributes["gen_ai.usage.cache_creation.input_tokens"] = usage.cache_write
    if usage.reasoning is not None:
        attributes["gen_ai.usage.reasoning.output_tokens"] = usage.reasoning
    if usage.model is not None:
        attributes["gen_ai.response.model"] = usage.model
    if usage.response_id is not None:
        attributes["gen_ai.response.id"] = usage.response_id
    return attributes


class TracedStream(EventStream):
    """A stream whose span ends when it is closed: with its response attributes (from its last two
    events), the time to its first event, and ERROR when it broke or ended with an error event."""

    __slots__ = ("_choices", "_first", "_inner", "_last", "_previous", "_span", "_started")

    def __init__(self, inner: EventStream, span: Span, started: float, choices: int) -> None:
        # The wrapped stream owns the upstream response; this one only watches it go by.
        self._inner = inner
        self._span: Span | None = span
        self._started = started
        self._choices = choices
        self._first: float | None = None
        self._previous = self._last = b""
        self._complete = False

    def __aiter__(self) -> TracedStream:
        return self

    async def __anext__(self) -> bytes:
        try:
            data = await self._inner.__anext__()
        except StopAsyncIteration:
            self._complete = True
            raise
        except BaseException as exc:
            if self._span is not None:
                _failed(self._span, exc)
            raise
        if self._first is None:
            self._first = time.perf_counter()
        self._previous, self._last = self._last, data
        return data

    async def aclose(self) -> None:
        try:
            await self._inner.aclose()
        finally:
            self._end()

    def _end(self) -> None:
        span, self._span = self._span, None
        if span is None:
            return
        if span.is_recording():
            tail = (self._previous, self._last)
            attributes = _answered(tail, self._choices)
            if self._first is not None:
                attributes["gen_ai.response.time_to_first_chunk"] = self._first - self._started
            if any(holds_error_event(chunk) for chunk in tail):
                attributes["error.type"] = "stream_error"  # the provider's in-stream error event
                span.set_status(StatusCode.ERROR, "stream_error")
            span.set_attributes(attributes)
        span.end()


class TracedClient(HttpClient):
    """The proxy's HTTP client: each call a ``{method}`` client span, ended with the request.

    It shares the wrapped client's pool (``start``/``close`` are the app's business, on that one)."""

    def __init__(self, inner: HttpClient, tracer: Tracer) -> None:
        super().__init__()
        self.inner = inner
        self.tracer = tracer
        self._servers: dict[str, dict[str, Any]] = {}

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Headers | None = None,
        body: bytes | AsyncIterable[bytes] | None = None,
        timeouts: Timeouts = _DEFAULT_TIMEOUTS,
        raw: bool = False,
        redactor: Redactor | None = None,
    ) -> UpstreamResponse:
        exchange = current()
        netloc = url.split("/", 3)[2]  # scheme://netloc/...: the proxy's URLs are absolute
        server = self._servers.get(netloc)
        if server is None:
            server = self._servers[netloc] = _server(url)  # one entry per provider
        attributes = {"http.request.method": method, **server}
        if exchange.provider is not None:
            attributes["polyrelay.provider"] = exchange.provider
        span = self.tracer.start_span(method, parent_context(exchange), SpanKind.CLIENT, attributes)
        with _call_in(span):
            response = await self.inner.request(
                method, url, headers=headers, body=body, timeouts=timeouts, raw=raw, redactor=redactor
            )
        span.set_attribute("http.response.status_code", response.status)
        if response.status >= 400:
            span.set_attribute("error.type", str(response.status))
            span.set_status(StatusCode.ERROR, str(response.status))
        extra = exchange.extra
        if exchange.hub is None or extra is None or SPAN not in extra:
            span.end()  # no traced request to end it with
        else:
            extra.setdefault(OPEN, []).append(span)
        return response
