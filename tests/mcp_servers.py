"""Real MCP servers for the tests, built with the SDK's ``MCPServer`` and served by uvicorn on
loopback: streamable HTTP (stateful or stateless) or the older HTTP+SSE transport. Their tools add,
echo, fail, sleep and return a large result; ``tools/list`` comes in pages of two. ``stall`` names
HTTP methods (``DELETE``) or MCP methods (``tools/list``) the server takes in and never answers.
Each keeps the ``_meta`` of every ``tools/call`` it receives (where the caller's trace context is)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable, Collection
from typing import Any

import anyio
import uvicorn
from mcp import MCPError
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import INVALID_PARAMS
from sse_starlette.sse import AppStatus
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

PAGE = 2
TOKEN = "mcp-server-secret"

# The SDK's SSE responses (sse_starlette) end when "the" uvicorn server exits, found through the
# process's SIGTERM handler: here, the last gateway a test started. Every gateway stopped by a test
# would cut the streams of every MCP test server (and the sessions of the other gateways) with it.
# These servers end their streams themselves, in kill() and stop().
AppStatus.disable_automatic_graceful_drain()


async def paginated(ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
    """Server middleware cutting tools/list into pages, so clients must follow the cursor."""
    result = await call_next(ctx)
    if ctx.method != "tools/list" or not isinstance(result, dict):
        return result
    cursor = (ctx.params or {}).get("cursor")
    try:
        start = int(cursor or 0)
    except ValueError:
        raise MCPError(code=INVALID_PARAMS, message=f"bad cursor {cursor!r}") from None
    tools = result.get("tools", [])
    page = {k: v for k, v in result.items() if k != "nextCursor"}
    page["tools"] = tools[start : start + PAGE]
    if start + PAGE < len(tools):
        page["nextCursor"] = str(start + PAGE)
    return page


Hold = Callable[[str], Awaitable[None]]


async def _no_hold(method: str) -> None:
    return None


def build(prefix: str = "", hold: Hold = _no_hold, metas: list[dict[str, Any]] | None = None) -> MCPServer:
    async def stalling(ctx: Any, call_next: Callable[[Any], Awaitable[Any]]) -> Any:
        await hold(ctx.method)
        if ctx.method == "tools/call" and metas is not None:
            metas.append(dict(ctx.meta or {}))
        return await call_next(ctx)

    server = MCPServer("test-tools", version="1.0", log_level="CRITICAL", middleware=[stalling, paginated])

    @server.tool(name=f"{prefix}add")
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool(name=f"{prefix}echo")
    def echo(text: str) -> str:
        """Say the text back."""
        return text

    @server.tool(name=f"{prefix}fail")
    def fail() -> str:
        """Always fails."""
        raise ToolError("this tool always fails")

    @server.tool(name=f"{prefix}sleep")
    async def sleep(seconds: float) -> str:
        """Wait, then answer."""
        await anyio.sleep(seconds)
        return f"slept {seconds}"

    @server.tool(name=f"{prefix}big")
    def big(n: int) -> str:
        """Return n characters."""
        return "x" * n

    return server


def _guard(app: ASGIApp, seen: list[bytes], token: bool, hold: Hold) -> ASGIApp:
    """Record every Authorization header received; with ``token``, refuse requests without ours."""

    async def guarded(scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await hold(scope["method"])
            authorization = dict(scope["headers"]).get(b"authorization", b"")
            seen.append(authorization)
            if token and authorization != f"Bearer {TOKEN}".encode():
                await PlainTextResponse("unauthorized", status_code=401)(scope, receive, send)
                return
        await app(scope, receive, send)

    return guarded


class MCPTestServer:
    """One server; ``kill`` drops every connection at once, ``start`` again on the same port."""

    def __init__(
        self, kind: str, *, prefix: str = "", token: bool = False, stall: Collection[str] = (), port: int = 0
    ) -> None:
        self.kind, self.prefix, self.token, self.stall = kind, prefix, token, set(stall)
        self.stalled = asyncio.Event()  # set once a request to stall has come in
        if not port:
            with socket.socket() as sock:
                sock.bind(("127.0.0.1", 0))
                port = sock.getsockname()[1]
        self.port = port
        self.url = f"http://127.0.0.1:{self.port}" + ("/sse" if kind == "sse" else "/mcp")
        self._server: uvicorn.Server | None = None
        self._task: asyncio.Task[None] | None = None
        self.authorizations: list[bytes] = []
        self.metas: list[dict[str, Any]] = []  # the _meta of each tools/call received

    async def start(self) -> MCPTestServer:
        server = build(self.prefix, self._hold, self.metas)
        if self.kind == "sse":
            app = server.sse_app()
        else:
            app = server.streamable_http_app(
                stateless_http=self.kind == "stateless", json_response=self.kind == "stateless"
            )
        app = _guard(app, self.authorizations, self.token, self._hold)
        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_config=None, log_level="critical", lifespan="on"
        )
        self._server = uvicorn.Server(config)
        self._task = asyncio.create_task(self._server.serve())
        while not self._server.started:
            if self._task.done():
                self._task.result()
            await asyncio.sleep(0.01)
        return self

    async def _hold(self, method: str) -> None:
        if method in self.stall:
            self.stalled.set()
            await asyncio.Event().wait()  # until the server is stopped

    async def kill(self) -> None:
        assert self._server is not None and self._task is not None
        for connection in list(self._server.server_state.connections):
            connection.transport.abort()  # type: ignore[attr-defined]
        for task in list(self._server.server_state.tasks):
            task.cancel()
        self._server.should_exit = True
        await self._task

    async def stop(self) -> None:
        if self._server is not None and self._task is not None and not self._task.done():
            await self.kill()
