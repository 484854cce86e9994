"""Tracing: OpenTelemetry spans of every request, exported over OTLP/HTTP (loaded only when on).

    Tracing.from_settings    a TracerProvider of its own (not the process-global one), its
                             resource (OTEL_SERVICE_NAME, default polyrelay; OTEL_RESOURCE_ATTRIBUTES),
                             its sampler (OTEL_TRACES_SAMPLER), a BatchSpanProcessor and an OTLP/HTTP
                             exporter to {endpoint}/v1/traces
    begin / end              a SERVER span per request, continuing the caller's W3C ``traceparent``
    tool_begin / tool_end    an ``execute_tool {tool}`` span per MCP tool call, the current OTel span
                             while it runs, so the MCP SDK puts its traceparent in the call's ``_meta``
    wrap_adapter/wrap_client a CLIENT span per upstream call (``upstream``: ``chat {model}``, and the
                             proxy's ``{method}``), whose traceparent the provider receives

The request's server span is kept in ``Exchange.extra``; the client spans find their parent there,
so nothing is attached to the process's OTel context per request. Nothing of a request's content
is recorded: no prompt, no completion, no header but the user agent, no query string.

    tracing = Tracing.from_settings(settings)     # TELEMETRY_TRACING_ENABLED or OTEL_EXPORTER_OTLP_ENDPOINT
    telemetry = Telemetry([tracing, ...])
    await telemetry.close()                        # flushes the spans still queued, then shuts down
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry.context import Context
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import SERVICE_NAME, SERVICE_VERSION, OTELResourceDetector, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor
from opentelemetry.trace import Span, SpanKind, StatusCode, Tracer, set_span_in_context
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from .exchange import Exchange, current
from .sink import Sink, ToolCall
from .upstream import OPEN, SPAN, TracedAdapter, TracedClient, parent_context

if TYPE_CHECKING:
    from providers import Adapter, HttpClient

    from ..settings import Settings

__all__ = ["Tracing", "traces_endpoint"]

TRACES_PATH = "/v1/traces"
# The methods the HTTP conventions name; any other is reported as _OTHER (a bounded value).
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH"})
# How a stream that had begun well may still end badly (the status was 200 by then).
_FAILED_OUTCOMES = frozenset({"upstream_error", "internal_error", "drained"})
_ROOT = Context()  # the parent of a request that brings no trace context: none (not an ambient span)
_W3C = TraceContextTextMapPropagator()


def traces_endpoint(settings: Settings, environ: Mapping[str, str] = os.environ) -> str:
    """Where spans go: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT as it is (the standard's signal-specific
    URL), else OTEL_EXPORTER_OTLP_ENDPOINT or TELEMETRY_TRACING_OTLP_ENDPOINT plus /v1/traces.

    The environment is read here like the SDK reads the other OTEL_* variables; the two base URLs
    come from the settings, so a config file may give them too."""
    signal = environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "").strip()
    if signal:
        return signal
    base = settings.otel_exporter_otlp_endpoint or settings.telemetry_tracing_otlp_endpoint
    return base.rstrip("/") + TRACES_PATH


class Tracing(Sink):
    """Spans of the requests, upstream calls and tool calls, to one OTLP/HTTP collector."""

    def __init__(self, provider: TracerProvider, *, scheme: str = "http") -> None:
        from .. import __version__

        self.provider = provider
        self.tracer: Tracer = provider.get_tracer("polyrelay", __version__)
        self.scheme = scheme

    @classmethod
    def from_settings(cls, settings: Settings) -> Tracing:
        from .. import __version__

        # Our defaults first, then what OTEL_RESOURCE_ATTRIBUTES and OTEL_SERVICE_NAME say over them.
        resource = Resource.create({SERVICE_NAME: "polyrelay", SERVICE_VERSION: __version__}).merge(
            OTELResourceDetector().detect()
        )
        # No sampler given: the SDK reads OTEL_TRACES_SAMPLER(_ARG), parent-based always-on by default.
        # Shut down by close(), not at interpreter exit (tests build many apps in one process).
        provider = TracerProvider(resource=resource, shutdown_on_exit=False)
        # Headers, timeout, compression and TLS files come from OTEL_EXPORTER_OTLP_(TRACES_)*, the
        # batching from OTEL_BSP_*, both read by the SDK.
        exporter = OTLPSpanExporter(endpoint=traces_endpoint(settings))
        provider.add_span_processor(BatchSpanProcessor(exporter))
        return cls(provider, scheme="https" if settings.server_tls_cert_path else "http")

    # -- assembly --------------------------------------------------------------------------------

    def wrap_adapter(self, adapter: Adapter) -> Adapter:
        return TracedAdapter(adapter, self.tracer)

    def wrap_client(self, http: HttpClient) -> HttpClient:
        return TracedClient(http, self.tracer)

    async def close(self) -> None:
        # Exports what is queued (a blocking HTTP call, bounded by the exporter's timeout), off the loop.
        await asyncio.to_thread(self.provider.shutdown)

    # -- requests --------------------------------------------------------------------------------

    def begin(self, exchange: Exchange) -> None:
        traceparent = tracestate = agent = None
        for key, value in exchange.headers:  # one pass over the raw headers for the three we read
            if key == b"traceparent":
                traceparent = value
            elif key == b"tracestate":
                tracestate = value
            elif key == b"user-agent":
                agent = value
        parent = _ROOT if traceparent is None else _continued(traceparent, tracestate)
        method = _method(exchange.method)
        attributes: dict[str, Any] = {
            "http.request.method": method,
            "url.path": exchange.path,
            "url.scheme": self.scheme,
            "polyrelay.request_id": exchange.request_id,
        }
        if method == "_OTHER":
            attributes["http.request.method_original"] = exchange.method
        if exchange.client is not None:
            attributes["client.address"] = exchange.client
        if agent is not None:
            attributes["user_agent.original"] = agent.decode("latin-1")
        # Named by its method until the route is known, at the end (unknown methods are "HTTP").
        name = "HTTP" if method == "_OTHER" else method
        span = self.tracer.start_span(name, parent, SpanKind.SERVER, attributes, start_time=exchange.started_ns)
        extra = exchange.extra
        if extra is None:
            exchange.extra = {SPAN: span}
        else:
            extra[SPAN] = span

    def end(self, exchange: Exchange) -> None:
        extra = exchange.extra
        if not extra:
            return
        span: Span | None = extra.pop(SPAN, None)
        pending: list[Span] = extra.pop(OPEN, ())
        failed = exchange.status >= 500 or exchange.outcome in _FAILED_OUTCOMES
        for child in pending:  # the proxy's upstream call, over with the relay that read its body
            if failed and exchange.outcome == "upstream_error":
                child.set_attribute("error.type", exchange.error_type or "upstream_error")
                child.set_status(StatusCode.ERROR, exchange.error_type)
            child.end()
        if span is None:
            return
        if span.is_recording():
            attributes: dict[str, Any] = {"polyrelay.outcome": exchange.outcome}
            route = exchange.route
            if route != "unmatched":
                method = _method(exchange.method)
                span.update_name(f"{'HTTP' if method == '_OTHER' else method} {route}")
                attributes["http.route"] = route
            if exchange.status:
                attributes["http.response.status_code"] = exchange.status
            if failed:
                kind = exchange.error_type or str(exchange.status)
                attributes["error.type"] = kind
                span.set_status(StatusCode.ERROR, kind)
            span.set_attributes(attributes)  # in one call: the SDK checks and locks per call
        span.end()

    # -- MCP tool calls --------------------------------------------------------------------------

    def tool_begin(self, call: ToolCall) -> None:
        span = self.tracer.start_span(
            f"execute_tool {call.tool}",
            parent_context(current()),
            SpanKind.CLIENT,
            {
                "gen_ai.operation.name": "execute_tool",
                "gen_ai.tool.name": call.tool,
                "mcp.method.name": "tools/call",
                "polyrelay.mcp.server": call.server,
            },
        )
        # Current while the call runs: the MCP SDK injects the current span's traceparent in the
        # request's _meta (the MCP trace-context convention). Begin and end run in one task.
        call.extra = (span, otel_context.attach(set_span_in_context(span)))

    def tool_end(self, call: ToolCall) -> None:
        if not isinstance(call.extra, tuple):
            return
        span, token = call.extra
        call.extra = None
        otel_context.detach(token)
        if call.error is not None:
            span.set_attribute("error.type", call.error)
            span.set_status(StatusCode.ERROR, call.error)
        span.end()


def _method(method: str) -> str:
    return method if method in _METHODS else "_OTHER"


def _continued(traceparent: bytes, tracestate: bytes | None) -> Context:
    """The caller's trace context (the SDK's W3C parser checks it); a malformed one starts a new trace."""
    carrier = {"traceparent": traceparent.decode("latin-1")}
    if tracestate is not None:
        carrier["tracestate"] = tracestate.decode("latin-1")
    return _W3C.extract(carrier, _ROOT)
