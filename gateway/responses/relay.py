"""Relaying a Responses request to a provider that serves ``/responses`` itself (OpenAI, Groq, Ollama).

The client's JSON goes on with ``model`` set to the provider's own name, under the provider's
credential (the caller's headers are not forwarded); the answer, JSON or its stream's events, comes
back byte for byte, through the provider's ``Redactor``. An error answer becomes the gateway's
error (OpenAI's envelope, the provider's status); a stream cut off after it began ends with an
``error`` event, numbered after the last event relayed.
"""

from __future__ import annotations

import re
from collections.abc import AsyncGenerator, Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from providers import Adapter, HttpClient
from providers.base import looks_like_json_object, upstream_error
from providers.errors import APIError, UpstreamError, UpstreamInvalidAnswer
from providers.json_codec import dump_json
from providers.registry import Provider
from providers.transport import UpstreamResponse

from ..relay import RelayResponse, until_disconnect
from ..telemetry.exchange import Exchange
from ..telemetry.usage import Usage
from .usage import read_relayed

__all__ = ["SSE_HEADERS", "ResponsesRelay"]

SSE_HEADERS = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
)
_SEQUENCE = re.compile(rb'"sequence_number"\s*:\s*(\d+)')
# The last event of a stream that failed.
_FAILURES = frozenset({b"response.failed", b"error"})


def _last_event(data: bytes) -> bytes:
    """The name of the last event in ``data`` (a data line holds no newline, so an ``event:`` after
    one is a field of its own)."""
    at = data.rfind(b"\nevent:")
    if at < 0 and not data.startswith(b"event:"):
        return b""
    line = data[at + 7 :].split(b"\n", 1)[0]
    return line.strip()


class _Told(UpstreamError):
    """The stream ended with the provider's own failure event (counted as an upstream error)."""


class _Target:
    """What a relayed call needs of one provider, built once."""

    __slots__ = ("adapter", "json_headers", "provider", "sse_headers", "url")

    def __init__(self, adapter: Adapter) -> None:
        self.adapter = adapter
        self.provider = adapter.provider
        self.url = self.provider.endpoint_url("responses")
        self.json_headers = {**self.provider.auth_headers(), "Content-Type": "application/json"}
        self.sse_headers = {**self.json_headers, "Accept": "text/event-stream"}
        self.json_headers["Accept"] = "application/json"


class ResponsesRelay:
    """``POST {provider url}{endpoints.responses}`` with the provider's credential, for the
    providers of ``adapters`` whose registry entry lists ``responses``."""

    def __init__(self, http: HttpClient, adapters: Mapping[str, Adapter]) -> None:
        self.http = http
        self.targets = {pid: _Target(a) for pid, a in adapters.items() if a.provider.serves("responses")}

    async def relay(
        self, request: Request, pid: str, payload: dict[str, Any], model: str, exchange: Exchange
    ) -> Response | RelayResponse:
        target = self.targets[pid]
        provider, adapter = target.provider, target.adapter
        stream = payload.get("stream") is True
        if payload["model"] != model:
            payload = {**payload, "model": model}
        timeouts = adapter.options.timeouts
        upstream = await until_disconnect(
            request,
            self.http.request(
                "POST",
                target.url,
                headers=target.sse_headers if stream else target.json_headers,
                body=dump_json(payload),
                timeouts=timeouts.stream if stream else timeouts.chat,
                redactor=adapter.redactor,
            ),
        )
        try:
            if upstream.status >= 400:
                body = await until_disconnect(request, upstream.read())
                status = adapter.status_map.get(upstream.status, upstream.status)
                raise upstream_error(provider, status, body, upstream.headers.get("Retry-After"), upstream.headers)
            kind = upstream.headers.get("Content-Type", "")
            if not stream:
                body = await until_disconnect(request, upstream.read())
                if not looks_like_json_object(body):
                    raise _not_expected(provider, upstream, kind, "a response object")
                _report(exchange, read_relayed(body))
                return Response(body, status_code=upstream.status, media_type="application/json")
            if kind.startswith(("text/html", "application/json")):
                raise _not_expected(provider, upstream, kind, "an event stream")
        except BaseException:
            upstream.close()
            raise
        relayed = _Relayed(upstream, exchange)
        exchange.stream_started()
        return RelayResponse(relayed.chunks(), close=upstream.aclose, headers=SSE_HEADERS, on_error=relayed.failed)


def _report(exchange: Exchange, usage: Usage | None) -> None:
    exchange.usage = usage
    if usage is not None:
        exchange.response_model = usage.model


def _not_expected(provider: Provider, upstream: UpstreamResponse, kind: str, what: str) -> UpstreamInvalidAnswer:
    return UpstreamInvalidAnswer(
        f"{provider.id} answered HTTP {upstream.status} with {kind or 'no content type'} instead of {what} for "
        f"/responses. Check that {provider.spec.env_prefix}_API_URL points at the provider's API."
    )


class _Relayed:
    """The upstream's chunks as they come; the last two are kept for the usage (in
    ``response.completed``, read once at the end) and the number of a closing ``error`` event."""

    def __init__(self, upstream: UpstreamResponse, exchange: Exchange) -> None:
        self.upstream = upstream
        self.exchange = exchange
        self.previous = self.last = b""

    async def chunks(self) -> AsyncGenerator[bytes, None]:
        async for chunk in self.upstream.iter_chunks():
            self.previous, self.last = self.last, chunk
            yield chunk
        tail = self.previous + self.last
        _report(self.exchange, read_relayed(tail))
        if _last_event(tail) in _FAILURES:
            raise _Told("The provider ended its stream with a failure event, relayed as it came.")

    def failed(self, error: APIError) -> bytes:
        if isinstance(error, _Told):
            return b""  # the provider's own event said it
        numbers = _SEQUENCE.findall(self.previous + self.last)
        sequence = int(numbers[-1]) + 1 if numbers else 0
        event = {
            "type": "error",
            "code": error.code or error.type,
            "message": error.message,
            "param": error.param,
            "sequence_number": sequence,
        }
        # A cut may fall inside an event: a blank line first ends it, so the error is an event of its own.
        return b"\n\nevent: error\ndata: " + orjson.dumps(event) + b"\n\n"
