"""MCP in the app: the server connections, the toolbox, the chat runner and ``GET /v1/mcp/tools``.

When MCP is off (or no server is configured) this is a no-op: chats run directly and the tools
route lists no tool (403 unless MCP_EXPOSE, as with MCP on), so no handler has to ask whether MCP is on.

    client   one connection per MCP server, owned by a long-lived task (reconnects with backoff)
    tools    the toolbox: exposed names, include/exclude filters, result limits
    selector two meta-tools that list and run the toolbox's tools (MCP_TOOL_MODE=selector)
    agent    the chat runner that calls the model, runs MCP tools and calls it again
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

import orjson
from starlette.requests import Request
from starlette.responses import Response

from providers.errors import PermissionDenied

from ..settings import Settings
from ..telemetry import Telemetry
from .agent import Agent, ChatRunner, Direct
from .selector import Selector
from .tools import Toolbox

if TYPE_CHECKING:
    from .client import MCPConnection

__all__ = ["MCP", "bypassed"]

log = logging.getLogger("polyrelay")

# Shutdown waits this long for the connection tasks; each ends within client.STOP_GRACE (1 s).
CLOSE_TIMEOUT = 2.0


def bypassed(request: Request) -> bool:
    """``X-MCP-Bypass`` with any non-empty value skips MCP for the request (inference-gateway's rule)."""
    return bool(request.headers.get("x-mcp-bypass", "").strip())


class MCP:
    def __init__(self, connections: list[MCPConnection], toolbox: Toolbox, runner: ChatRunner, expose: bool) -> None:
        self.connections = connections
        self.toolbox = toolbox
        self.runner = runner
        self.expose = expose
        self._tasks: list[asyncio.Task[None]] = []

    @classmethod
    def from_settings(cls, settings: Settings, telemetry: Telemetry | None = None) -> MCP:
        if not settings.mcp_enabled or not settings.mcp_servers:
            return cls([], Toolbox([]), Direct(), expose=settings.mcp_expose)
        # The MCP SDK is imported only when MCP is on: it is most of the gateway's start-up time.
        from .client import ConnectionOptions, MCPConnection, parse_servers

        options = ConnectionOptions(
            http_timeout=settings.mcp_client_timeout,
            request_timeout=settings.mcp_request_timeout,
            reconnect=settings.mcp_enable_reconnect,
            reconnect_interval=settings.mcp_reconnect_interval,
            reconnect_max_interval=settings.mcp_reconnect_max_interval,
            polling=settings.mcp_polling_enabled,
            polling_interval=settings.mcp_polling_interval,
            polling_timeout=settings.mcp_polling_timeout,
        )
        servers = parse_servers(settings.mcp_servers, settings.mcp_server_headers)
        connections = [MCPConnection(server, options) for server in servers]
        toolbox = Toolbox(
            connections,
            include=settings.mcp_include_tools,
            exclude=settings.mcp_exclude_tools,
            max_result_bytes=settings.mcp_max_result_bytes,
            telemetry=telemetry,
        )
        offer = Selector(toolbox) if settings.mcp_tool_mode == "selector" else toolbox
        # A call may not outlive the bound of its own connection, plus a little for the HTTP around it.
        agent = Agent(offer, settings.mcp_max_iterations, call_timeout=settings.mcp_request_timeout + 1)
        return cls(connections, toolbox, agent, settings.mcp_expose)

    async def start(self) -> None:
        """One owning task per server; a server that is down does not hold up start-up."""
        self._tasks = [asyncio.create_task(c.run(), name=f"mcp:{c.name}") for c in self.connections]

    async def close(self) -> None:
        """Cancel the connection tasks and wait for them, CLOSE_TIMEOUT at most: a server never holds
        up the gateway's shutdown."""
        for task in self._tasks:
            task.cancel()
        if not self._tasks:
            return
        done, pending = await asyncio.wait(self._tasks, timeout=CLOSE_TIMEOUT)
        for task in pending:
            log.warning("%s did not end within %.0fs; shutdown goes on without it.", task.get_name(), CLOSE_TIMEOUT)
        for task in done:
            if not task.cancelled() and (exc := task.exception()) is not None:
                log.warning("%s had failed: %r", task.get_name(), exc)

    async def list_tools(self, request: Request) -> Response:
        if not self.expose:
            raise PermissionDenied(
                "The MCP tool list is not exposed on this gateway (MCP_EXPOSE=true exposes it).", code="mcp_not_exposed"
            )
        data = [
            {
                "name": t.exposed,
                "description": t.description,
                "server": t.server,
                "input_schema": t.input_schema,
                "available": self.toolbox.available(t),
            }
            for t in self.toolbox.tools()
        ]
        return Response(orjson.dumps({"object": "list", "data": data}), media_type="application/json")
