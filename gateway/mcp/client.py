"""One MCP server, connected once and shared: a long-lived task owns the session.

The task (started by the app's lifespan) connects over streamable HTTP, or over the older HTTP+SSE
transport when the server speaks only that, lists every page of tools, then keeps the session open
and pings it. When the server is down at start-up, or goes away later, the task reconnects in the
background, backing off (``Backoff``), and lists the tools again; meanwhile its tools stay on offer
and calls to them get an error *result*, which the model reads, never a failed request. Requests of
any task call tools on the shared session.

    run()  (owner: one per server, sleeps between attempts, holds nothing while it waits)
      '-- attempt task: _serve() -> _open() (HTTP client, MCP session, initialize, tools/list)
                                 -> _up() (serve and ping until the session breaks)

    server = MCPConnection(ServerConfig("search", "http://mcp:8000/mcp"), options)
    task = asyncio.create_task(server.run())
    result = await server.call("search", {"q": "gateways"})   # ToolResult(text, is_error)
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx2
import orjson
from mcp import ClientSession
from mcp import types as mcp_types
from mcp.client.sse import sse_client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError
from mcp.types import REQUEST_TIMEOUT

from ..errors import describe
from .tools import ToolResult

__all__ = ["Backoff", "ConnectionOptions", "MCPConnection", "ServerConfig", "parse_servers"]

log = logging.getLogger("polyrelay")


@dataclass(frozen=True)
class ServerConfig:
    name: str
    url: str
    headers: Mapping[str, str] = field(default_factory=dict)

    def __repr__(self) -> str:  # headers may hold credentials
        return f"ServerConfig(name={self.name!r}, url={self.url!r})"


@dataclass(frozen=True)
class ConnectionOptions:
    http_timeout: float = 5.0  # MCP_CLIENT_TIMEOUT
    request_timeout: float = 5.0  # MCP_REQUEST_TIMEOUT: initialize, tools/list, each call
    reconnect: bool = True
    reconnect_interval: float = 30.0  # MCP_RECONNECT_INTERVAL: the ceiling of the first delay
    reconnect_max_interval: float = 300.0  # MCP_RECONNECT_MAX_INTERVAL: the ceiling of every delay
    polling: bool = True
    polling_interval: float = 30.0
    polling_timeout: float = 5.0


def parse_servers(entries: Sequence[str], headers: Mapping[str, Mapping[str, str]]) -> list[ServerConfig]:
    """``url`` or ``name=url`` entries; a server without a name is named after its host."""
    servers = []
    for entry in entries:
        name, sep, url = entry.partition("=")
        if not sep or "://" in name:
            name, url = "", entry
        name = name.strip() or (urlsplit(url).hostname or "mcp").split(".")[0]
        servers.append(ServerConfig(name, url.strip(), dict(headers.get(name, {}))))
    taken: dict[str, int] = {}
    for i, server in enumerate(servers):  # two servers on one host: web, web_2
        taken[server.name] = taken.get(server.name, 0) + 1
        if taken[server.name] > 1:
            servers[i] = ServerConfig(f"{server.name}_{taken[server.name]}", server.url, server.headers)
    return servers


# Tool results arrive as one SSE event; the SDK's 1 MiB default would fail a large one before the
# gateway could cut it down to MCP_MAX_RESULT_BYTES.
MAX_EVENT_BYTES = 16 * 1024 * 1024


# A connection being shut down is cancelled again every STOP_NUDGE seconds, for STOP_GRACE at most:
# the SDK's clean-up can wait on the server (the DELETE that ends a session has no read timeout).
STOP_NUDGE = 0.25
STOP_GRACE = 1.0
# The shortest first delay, whatever MCP_RECONNECT_INTERVAL says: 0s would reconnect in a hot loop.
MIN_RECONNECT_INTERVAL = 0.01


class _Broken(Exception):
    """The session stopped answering: reconnect."""


class Backoff:
    """Delays between reconnection attempts: exponential, with full jitter, capped.

    The n-th delay of a run of failures (n from 0) is drawn uniformly from [0, min(cap, first * 2**n)],
    so gateways that lost the same server do not come back to it in step, and a server that stays
    down costs two attempts per ``cap`` on average. ``reset`` starts again from ``first``.

    >>> backoff, ceilings = Backoff(first=1.0, cap=4.0), []
    >>> for _ in range(4):
    ...     ceilings.append(backoff.ceiling)
    ...     assert 0 <= backoff.next() <= ceilings[-1]
    >>> ceilings
    [1.0, 2.0, 4.0, 4.0]
    """

    def __init__(self, first: float, cap: float, rng: random.Random | None = None) -> None:
        self.first = max(first, MIN_RECONNECT_INTERVAL)
        self.cap = max(cap, self.first)
        self.failures = 0
        self._rng = rng or random.Random()

    @property
    def ceiling(self) -> float:
        return min(self.cap, self.first * 2.0 ** min(self.failures, 64))

    def next(self) -> float:
        delay = self._rng.uniform(0, self.ceiling)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0


class MCPConnection:
    def __init__(self, config: ServerConfig, options: ConnectionOptions) -> None:
        self.config = config
        self.name = config.name
        self.options = options
        self.session: ClientSession | None = None
        self.transport: str | None = None  # "streamable-http" or "sse", once known
        self._tools: list[mcp_types.Tool] = []
        self._generation = 0
        self._broken = asyncio.Event()
        self._up_since: float | None = None  # loop time the current session came up
        self._tls: ssl.SSLContext | None = None
        self._left_behind: asyncio.Task[None] | None = None
        self.connected = asyncio.Event()  # set while a session is up (tests and readiness wait on it)

    @property
    def tools(self) -> Sequence[mcp_types.Tool]:
        """The tools of the last connection: a server that drops out keeps its tools on offer, and a
        call to one gets an "unavailable" result, so the model's view does not flicker with it."""
        return self._tools

    @property
    def available(self) -> bool:
        return self.session is not None

    @property
    def generation(self) -> int:
        return self._generation

    async def run(self) -> None:
        """Connect, serve, and reconnect until cancelled (or once, with reconnection off).

        Each attempt runs in a task of its own, which this one waits on with ``asyncio.wait``; the
        SDK never runs in this task. Why: the SDK runs on anyio task groups, and a group whose host
        is cancelled while one of its children fails (the connection refused just as the gateway
        shuts down, say) raises the child's error in an ExceptionGroup and drops the CancelledError.
        When the session ran in this task, ``except Exception`` took that group for one more failed
        attempt, and the loop went on reconnecting for ever with its cancellation lost: shutdown
        (``MCP.close``) waited on it, uvicorn had taken SIGTERM/SIGINT, so nothing stopped the process
        while it built an HTTP client and a TLS context per attempt. Now a cancellation of this task
        always reaches it, and ``_stop`` ends the attempt, whatever the SDK does with it.
        """
        loop = asyncio.get_running_loop()
        backoff = Backoff(self.options.reconnect_interval, self.options.reconnect_max_interval)
        while True:
            self._up_since = None
            attempt = asyncio.create_task(self._serve(), name=f"mcp:{self.name}:session")
            try:
                await asyncio.wait([attempt])
            except asyncio.CancelledError:
                await self._stop(attempt)
                raise
            finally:
                self._down()
            reason = _outcome(attempt)
            del attempt  # its exception holds the frames of the session: nothing is kept while waiting
            if not self.options.reconnect:
                log.warning("MCP server '%s' (%s) is unavailable: %s", self.name, self.config.url, reason)
                return
            if self._up_since is not None and loop.time() - self._up_since >= backoff.first:
                backoff.reset()  # it stayed up: a server that drops once is retried soon
            delay = backoff.next()
            log.warning(
                "MCP server '%s' (%s) is unavailable, retry %d in %.2fs: %s",
                self.name,
                self.config.url,
                backoff.failures,
                delay,
                reason,
            )
            await asyncio.sleep(delay)

    async def _stop(self, attempt: asyncio.Task[None]) -> None:
        """Cancel the attempt until it ends, STOP_GRACE at most; then leave it, saying so."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + STOP_GRACE
        while not attempt.done() and (left := deadline - loop.time()) > 0:
            attempt.cancel()  # again: its clean-up may wait on the server, or lose the first one
            await asyncio.wait([attempt], timeout=min(STOP_NUDGE, left))
        if attempt.done():
            _outcome(attempt)  # ending with the shutdown is no failure to report
            return
        log.warning(
            "The connection to MCP server '%s' did not close within %.0fs of shutdown; it is left to end alone.",
            self.name,
            STOP_GRACE,
        )
        self._left_behind = attempt  # referenced until it ends, so it is not collected half-way
        attempt.add_done_callback(_outcome)

    async def call(self, tool: str, arguments: dict[str, Any]) -> ToolResult:
        session = self.session
        if session is None:
            return ToolResult(f"The MCP server '{self.name}' that provides {tool} is unavailable right now.", True)
        try:
            result = await session.call_tool(tool, arguments, read_timeout_seconds=self.options.request_timeout)
        except Exception as exc:
            log.warning("MCP call %s on '%s' failed: %s", tool, self.name, describe(exc))
            if not (isinstance(exc, MCPError) and exc.code == REQUEST_TIMEOUT):
                self._broken.set()  # the connection, not the tool, failed (closed, session lost): reconnect
            return ToolResult(f"Calling {tool} on the MCP server '{self.name}' failed: {describe(exc)}", True)
        return _result(result)

    async def _serve(self) -> None:
        kinds = [self.transport] if self.transport else ["streamable-http", "sse"]
        failure: Exception | None = None
        for kind in kinds:
            try:
                async with self._open(kind) as session:
                    self.transport = kind
                    await self._up(session)
                return
            except Exception as exc:  # _Broken arrives wrapped in the SDK's ExceptionGroup
                if self.transport == kind:  # this transport worked: the session failed, not the transport
                    raise
                failure = exc  # this transport did not work; try the next one
        raise failure or RuntimeError("no transport")

    @contextlib.asynccontextmanager
    async def _open(self, kind: str) -> AsyncIterator[ClientSession]:
        headers = dict(self.config.headers)
        timeout = self.options.http_timeout
        if self._tls is None:
            # Built once per server and kept: httpx2 builds one per client otherwise, i.e. per attempt,
            # reading the whole CA bundle each time (tens of ms of CPU, and memory churn).
            self._tls = await asyncio.to_thread(httpx2.create_ssl_context)
        async with contextlib.AsyncExitStack() as stack:
            if kind == "sse":
                streams = await stack.enter_async_context(
                    sse_client(self.config.url, headers=headers, timeout=timeout, httpx_client_factory=self._client)
                )
            else:
                # No read bound on the HTTP client: each call has its own (read_timeout_seconds).
                client = await stack.enter_async_context(self._client(headers, httpx2.Timeout(timeout, read=None)))
                streams = await stack.enter_async_context(
                    streamable_http_client(self.config.url, http_client=client, max_sse_event_size=MAX_EVENT_BYTES)
                )
            session = await stack.enter_async_context(ClientSession(streams[0], streams[1]))
            async with asyncio.timeout(self.options.request_timeout):
                await session.initialize()
                tools = await _all_tools(session)
            if [t.model_dump() for t in tools] != [t.model_dump() for t in self._tools]:
                self._tools = tools
                self._generation += 1
            yield session

    def _client(
        self,
        headers: dict[str, str] | None = None,
        timeout: httpx2.Timeout | None = None,
        auth: httpx2.Auth | None = None,
    ) -> httpx2.AsyncClient:
        """An HTTP client for one session, on the server's one TLS context (the SDK's factory shape)."""
        if timeout is None:
            timeout = httpx2.Timeout(self.options.http_timeout, read=None)
        return httpx2.AsyncClient(headers=headers, timeout=timeout, auth=auth, verify=self._tls or True)

    async def _up(self, session: ClientSession) -> None:
        self.session = session
        self._up_since = asyncio.get_running_loop().time()
        self._broken.clear()
        self.connected.set()
        log.info("MCP server '%s' connected (%s): %d tool(s)", self.name, self.transport, len(self._tools))
        while True:
            wait = self.options.polling_interval if self.options.polling else None
            try:
                await asyncio.wait_for(self._broken.wait(), wait)
            except TimeoutError:
                try:
                    async with asyncio.timeout(self.options.polling_timeout):
                        await session.send_ping()
                except Exception as exc:
                    raise _Broken(f"it did not answer a ping ({describe(exc)})") from exc
                continue
            raise _Broken("a call failed on its connection")

    def _down(self) -> None:
        self.session = None
        self.connected.clear()


def _outcome(attempt: asyncio.Task[None]) -> str:
    """Why an attempt ended, for a log line; retrieving its exception keeps asyncio from reporting it."""
    if attempt.cancelled():
        return "its session was cancelled"
    exc = attempt.exception()
    return describe(exc) if exc is not None else "its session ended"


async def _all_tools(session: ClientSession) -> list[mcp_types.Tool]:
    tools: list[mcp_types.Tool] = []
    cursor = None
    for _ in range(100):  # a server that pages forever is cut off
        params = mcp_types.PaginatedRequestParams(cursor=cursor) if cursor else None
        page = await session.list_tools(params=params)
        tools.extend(page.tools)
        cursor = page.next_cursor
        if not cursor:
            break
    return tools


def _result(result: mcp_types.CallToolResult) -> ToolResult:
    texts = []
    for item in result.content:
        if isinstance(item, mcp_types.TextContent):
            texts.append(item.text)
        else:  # images, audio, resources: the model gets what they are, not their bytes
            texts.append(f"[{item.type} content omitted by the gateway]")
    if not texts and result.structured_content is not None:
        texts.append(orjson.dumps(result.structured_content).decode())
    return ToolResult("\n".join(texts), bool(result.is_error))
