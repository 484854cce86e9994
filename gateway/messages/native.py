"""Messages requests to a provider that speaks them (its registry entry lists ``messages``): relayed.

The client's body goes out as it came, with only its ``model`` replaced by the provider's own
name (a byte splice, no re-encoding); the provider's credential and fixed headers are injected,
the caller's ``anthropic-version`` (else the registry's) and ``anthropic-beta`` passed on, and no
other header of the caller's. The answer comes back as the provider wrote it (through its
``Redactor``): JSON, an error with its status, or events relayed as they arrive (whole events, so
a stream cut mid-event can still end with a readable error event). The token usage is read from a
few bytes of it for telemetry, not by parsing the answer.

    relay = NativeRelay(http, adapters, timeouts)
    response = await relay.send(request, body, provider, model, "messages", stream=True)
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from providers import Adapter, AdapterTimeouts, HttpClient
from providers.base import upstream_error
from providers.errors import UpstreamUnreachable
from providers.registry import Provider
from providers.sse import SSEDecoder
from providers.transport import UpstreamResponse

from ..errors import anthropic_error_event
from ..relay import RelayResponse, until_disconnect
from ..telemetry import current
from ..telemetry.exchange import Exchange
from .answer import telemetry_usage

__all__ = ["NativeRelay", "with_model"]

# The caller's headers a native provider is given; every other one stays at the gateway.
PASSED = ("anthropic-version", "anthropic-beta")
# The provider's answer headers the caller is given (its limits and request id, for support).
_RETURNED = re.compile(r"^(retry-after|request-id|anthropic-ratelimit-.*)$", re.I)
_SSE = (b"content-type", b"text/event-stream; charset=utf-8")
_NO_CACHE = ((b"cache-control", b"no-cache"), (b"x-accel-buffering", b"no"))

# JSON tokens that change the depth, and strings (skipped whole, however long: a base64 image is
# one match), the value after a key.
_TOKEN = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[{}\[\]]')
_KEY_BEFORE = re.compile(rb'"model"\s*:\s*\Z')
_VALUE = re.compile(rb'\s*:\s*("[^"\\]*(?:\\.[^"\\]*)*")')
_USAGE_FIELD = re.compile(
    rb'"(input_tokens|output_tokens|cache_read_input_tokens|cache_creation_input_tokens)"\s*:\s*(\d+)'
)
_USAGE_SPAN = 1024  # bytes after a "usage" key where its counts are
# A Message names its model before its content (where a tool's input could hold such a key).
_MODEL = re.compile(rb'"model"\s*:\s*"([^"\\]{1,256})"')


def _model_of(data: bytes) -> str | None:
    found = _MODEL.search(data)
    return None if found is None else found.group(1).decode("utf-8", "replace")


def with_model(body: bytes, model: str, named: str) -> bytes:
    """``body`` with its top-level ``model`` string (``named``) replaced by ``model``, every other
    byte as it was. Outside strings (where quotes are escaped) the bytes ``"<named>"`` after
    ``"model":`` are a key's value: when they occur once in the body, they are the top-level
    model's (which exists), found by one byte search; else the body's tokens are walked to the key
    at depth 1."""
    quoted = orjson.dumps(named)
    if body.count(quoted) == 1:
        at = body.find(quoted)
        if _KEY_BEFORE.search(body, max(at - 64, 0), at) is not None:
            return _spliced(body, at, at + len(quoted), model)
    depth = 0
    for match in _TOKEN.finditer(body):
        first = body[match.start()]
        if first in b"{[":
            depth += 1
        elif first in b"}]":
            depth -= 1
        elif depth == 1 and match.group() == b'"model"':
            value = _VALUE.match(body, match.end())
            if value is not None:
                return _spliced(body, value.start(1), value.end(1), model)
    return body  # parse() saw a model: unreachable, but the body is then sent as it is


def _spliced(body: bytes, start: int, end: int, model: str) -> bytes:
    """``body`` with ``model`` (as a JSON string) in place of its bytes ``start:end``: one copy."""
    view = memoryview(body)
    return b"".join((view[:start], orjson.dumps(model), view[end:]))


def _usage_after(data: bytes, at: int) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in _USAGE_FIELD.findall(data, at, at + _USAGE_SPAN)}


def answer_usage(body: bytes) -> dict[str, int]:
    """The counts of a Message's usage (its last ``usage`` object)."""
    at = body.rfind(b'"usage"')
    return {} if at < 0 else _usage_after(body, at)


class NativeRelay:
    def __init__(self, http: HttpClient, adapters: Mapping[str, Adapter], timeouts: AdapterTimeouts) -> None:
        self.http = http
        self.adapters = adapters
        self.timeouts = timeouts

    async def send(
        self, request: Request, body: bytes, provider: Provider, model: str, path: str, *, stream: bool, named: str
    ) -> Response | RelayResponse:
        """Relay the request to the provider's Messages endpoint plus ``path`` ("" or "/count_tokens");
        ``named`` is the model as the body names it (``?provider=anthropic`` with a bare name: as is)."""
        adapter = self.adapters[provider.name]
        headers = {**provider.auth_headers(), "Content-Type": "application/json"}
        for name in PASSED:
            value = request.headers.get(name)
            if value:
                headers[name] = value
        url = provider.endpoint_url("messages") + path
        sent = body if named == model else with_model(body, model, named)
        timeouts = self.timeouts.stream if stream else self.timeouts.chat
        call = self.http.request("POST", url, headers=headers, body=sent, timeouts=timeouts, redactor=adapter.redactor)
        upstream = await until_disconnect(request, call)
        exchange = current()
        returned = [(k, v) for k, v in upstream.raw_headers if _RETURNED.match(k.decode("latin-1"))]
        if upstream.status >= 400 or not stream or not _is_events(upstream):
            answer = await until_disconnect(request, upstream.read())
            if upstream.status >= 400:
                return _refusal(provider, upstream, answer, returned, exchange)
            if path == "":
                exchange.usage = telemetry_usage(answer_usage(answer))
                exchange.response_model = _model_of(answer)
            return Response(answer, status_code=upstream.status, headers=_str(returned), media_type="application/json")
        exchange.stream_started()
        return RelayResponse(
            _watched(upstream, exchange, adapter.options.max_event_size),
            close=upstream.aclose,
            headers=[_SSE, *_NO_CACHE, *returned],
            on_error=anthropic_error_event,
        )


def _is_events(upstream: UpstreamResponse) -> bool:
    return upstream.headers.get("Content-Type", "").startswith("text/event-stream")


def _str(headers: list[tuple[bytes, bytes]]) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in headers}


def _refusal(
    provider: Provider,
    upstream: UpstreamResponse,
    answer: bytes,
    returned: list[tuple[bytes, bytes]],
    exchange: Exchange,
) -> Response:
    """The provider's error answer: as it wrote it when it is Anthropic's shape, else ours in that
    shape (an HTML page from a proxy in front of it...), the status kept either way."""
    error = upstream_error(provider, upstream.status, answer, upstream.headers.get("Retry-After"))
    exchange.failed(error)
    try:
        data: Any = orjson.loads(answer)
    except orjson.JSONDecodeError:
        data = None
    if not (isinstance(data, dict) and data.get("type") == "error" and isinstance(data.get("error"), dict)):
        raise error
    return Response(answer, status_code=upstream.status, headers=_str(returned), media_type="application/json")


async def _watched(upstream: UpstreamResponse, exchange: Exchange, max_event_size: int) -> AsyncIterator[bytes]:
    """The provider's events as they come, whole (a stream cut mid-event ends on a boundary, so the
    error event that follows is read as one); the usage of message_start (the prompt's counts) and
    of message_delta (cumulative counts) read for telemetry. A stream that ends before its
    message_stop, or an error event, was cut off: that raises, for the relay's error event."""
    decoder = SSEDecoder(max_event_size)
    usage: dict[str, int] = {}
    ended = False
    async for chunk in upstream.iter_chunks():
        events = decoder.feed(chunk)
        if not events:
            continue
        for event in events:
            head = event[:32]
            if b"message_start" in head:
                exchange.response_model = _model_of(event)
            if b"message_start" in head or b"message_delta" in head:
                at = event.find(b'"usage"')
                if at >= 0:
                    usage.update(_usage_after(event, at))
            elif b"message_stop" in head or b"event: error" in head:
                ended = True
        yield b"\n\n".join(events) + b"\n\n"
        if ended:
            break
    if usage:
        exchange.usage = telemetry_usage(usage)
    if not ended:
        raise UpstreamUnreachable("The provider's stream ended before it was complete.")
