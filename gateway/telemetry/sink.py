"""``Sink``: what a telemetry output (the request log, metrics, traces) is told, and ``ToolCall``.

Every hook is a no-op here, so a sink implements only what it reads. Hooks run on the request's
task, in its context (a sink may keep per-request state in ``Exchange.extra``), and must be cheap:
they are on every request's path. Two more are called once, by ``create_app``: ``wrap_adapter`` and
``wrap_client`` let a sink watch the upstream calls themselves (tracing wraps them in client spans);
by default they hand back what they were given, so a sink that does not watch costs nothing there.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from providers import Adapter, HttpClient

    from .exchange import Exchange

__all__ = ["Sink", "ToolCall"]


class ToolCall:
    """One MCP tool call: which server and tool, how long, and whether it failed."""

    __slots__ = ("duration", "error", "extra", "server", "started", "tool")

    def __init__(self, server: str, tool: str) -> None:
        self.server = server
        self.tool = tool
        self.started = time.perf_counter()
        self.duration = 0.0
        self.error: str | None = None  # None: a result; else why not (error, timeout...)
        self.extra: object = None


class Sink:
    def wrap_adapter(self, adapter: Adapter) -> Adapter:
        """The adapter the chat route calls (once per provider, at start-up)."""
        return adapter

    def wrap_client(self, http: HttpClient) -> HttpClient:
        """The HTTP client the raw proxy calls (once, at start-up)."""
        return http

    async def start(self) -> None:
        """At start-up (the app's lifespan), before the first request."""

    async def close(self) -> None:
        """At shutdown, after the last request."""

    def begin(self, exchange: Exchange) -> None:
        """A request arrived (its method, path, client and request id are known)."""

    def stream_started(self, exchange: Exchange) -> None:
        """The request's answer is a stream of events, now starting."""

    def end(self, exchange: Exchange) -> None:
        """The request is over: its answer was sent, or failed, or its client left."""

    def tool_begin(self, call: ToolCall) -> None:
        """The gateway is about to run an MCP tool for the current request."""

    def tool_end(self, call: ToolCall) -> None:
        """The tool call is over (``call.error`` says whether it failed)."""
