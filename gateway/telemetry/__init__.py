"""Telemetry: one place that sees every request, and the outputs fed from it.

    middleware    TelemetryMiddleware: the request id, the overhead header, one Exchange per request
    exchange      Exchange: what one request did (route, provider, model, status, times, tokens)
    usage         reading tokens and the response model from an OpenAI answer's bytes
    sink          Sink: the hooks an output implements; ToolCall: one MCP tool call
    logs          the request log (one line per request) and the log format (text or JSON)
    metrics       Prometheus metrics on a port of their own (TELEMETRY_ENABLED; loaded only then)
    tracing       OpenTelemetry spans over OTLP/HTTP (TELEMETRY_TRACING_ENABLED; loaded only then)
    upstream      tracing's client spans around each upstream call (wrapped adapters, proxy client)
    push          POST /v1/metrics: clients' own token usage, pushed in OTLP (TELEMETRY_METRICS_PUSH_ENABLED)

``Telemetry.from_settings`` chooses the sinks once; an output that is off is simply not among them,
so the request path never asks whether something is enabled.

    telemetry = Telemetry.from_settings(settings)
    app = TelemetryMiddleware(app, telemetry=telemetry, routes={chat.handle: "/v1/chat/completions"})
    with telemetry.tool_call("search", "web_search") as call: ...
    chat = ChatEndpoint(settings, telemetry.wrap_adapters(adapters), ...)   # traced when tracing is on
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from .exchange import Exchange, current
from .sink import Sink, ToolCall

if TYPE_CHECKING:
    from providers import Adapter, HttpClient

    from ..settings import Settings
    from .metrics import Metrics

__all__ = ["Exchange", "Sink", "Telemetry", "ToolCall", "current"]

log = logging.getLogger("polyrelay")


class Telemetry:
    """The sinks every request and tool call is reported to, in order."""

    def __init__(self, sinks: Sequence[Sink] = (), metrics: Metrics | None = None) -> None:
        self.sinks = tuple(sinks)
        self.metrics = metrics  # the Prometheus sink, when on (POST /v1/metrics adds to it)
        # Each request's hooks, only of the sinks that have them (the request log has no begin).
        self._begin = _having(self.sinks, "begin")
        self._stream_started = _having(self.sinks, "stream_started")
        self._end = _having(self.sinks, "end")

    @classmethod
    def from_settings(cls, settings: Settings) -> Telemetry:
        sinks: list[Sink] = []
        if settings.telemetry_tracing_enabled or settings.otel_exporter_otlp_endpoint:
            from .tracing import Tracing  # the OpenTelemetry SDK and exporter load only when tracing is on

            sinks.append(Tracing.from_settings(settings))
        if settings.server_access_log:
            from .logs import RequestLog

            sinks.append(RequestLog())
        if settings.telemetry_enabled:
            from .metrics import Metrics  # prometheus-client loads only when metrics are on

            metrics = Metrics.from_settings(settings)
            sinks.append(metrics)
            return cls(sinks, metrics)
        return cls(sinks)

    def wrap_adapters(self, adapters: Mapping[str, Adapter]) -> dict[str, Adapter]:
        """The adapters as the chat route calls them: the same objects unless a sink watches them."""
        wrapped = dict(adapters)
        for sink in self.sinks:
            wrapped = {pid: sink.wrap_adapter(adapter) for pid, adapter in wrapped.items()}
        return wrapped

    def wrap_client(self, http: HttpClient) -> HttpClient:
        """The HTTP client as the raw proxy calls it."""
        for sink in self.sinks:
            http = sink.wrap_client(http)
        return http

    async def start(self) -> None:
        for sink in self.sinks:
            await sink.start()

    async def close(self) -> None:
        for sink in reversed(self.sinks):
            try:
                await sink.close()
            except Exception:
                log.exception("closing %s failed", type(sink).__name__)

    def begin(self, exchange: Exchange) -> None:
        for sink in self._begin:
            sink.begin(exchange)

    def stream_started(self, exchange: Exchange) -> None:
        for sink in self._stream_started:
            sink.stream_started(exchange)

    def end(self, exchange: Exchange) -> None:
        if exchange.outcome == "ok" and exchange.status >= 400:
            exchange.outcome = "error"
            if exchange.error_type is None:
                exchange.error_type = str(exchange.status)
        for sink in self._end:
            try:
                sink.end(exchange)
            except Exception:  # an output's bug must not fail a request that already ended
                log.exception("telemetry output %s failed", type(sink).__name__)

    @contextmanager
    def tool_call(self, server: str, tool: str) -> Iterator[ToolCall]:
        """Around one MCP tool call; set ``call.error`` when its result is an error."""
        call = ToolCall(server, tool)
        for sink in self.sinks:
            sink.tool_begin(call)
        try:
            yield call
        except BaseException as exc:
            call.error = call.error or type(exc).__name__
            raise
        finally:
            call.duration = time.perf_counter() - call.started
            for sink in self.sinks:
                sink.tool_end(call)


def _having(sinks: Sequence[Sink], hook: str) -> tuple[Sink, ...]:
    """The sinks whose ``hook`` does something (not ``Sink``'s no-op), in order."""
    return tuple(sink for sink in sinks if getattr(type(sink), hook) is not getattr(Sink, hook))
