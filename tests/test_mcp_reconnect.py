"""MCP connections that fail: reconnects back off, cost nothing while they wait, and a shutdown ends
them promptly in every phase. Servers are real: the SDK's MCP servers of mcp_servers.py, and plain
TCP listeners on loopback that count, drop or never answer what they are sent."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import random
import re
import socket
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio

from gateway.mcp.client import Backoff, ConnectionOptions, MCPConnection, ServerConfig

from .conftest import GatewayFactory
from .mcp_servers import MCPTestServer

RETRY = re.compile(r"unavailable, retry (\d+) in ([\d.]+)s: ")


class Listener:
    """A TCP server on loopback that is no MCP server: ``drop`` reads the request head, notes it and
    closes; ``silent`` reads it and never answers. ``requests`` holds (loop time, request line)."""

    def __init__(self, mode: str, port: int = 0) -> None:
        self.mode, self.port = mode, port
        self.requests: list[tuple[float, bytes]] = []
        self.accepted = asyncio.Event()
        self.received = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._open: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> Listener:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", self.port, reuse_address=True)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for writer in self._open:
            writer.transport.abort()
        await self._server.wait_closed()

    def url(self, scheme: str = "http") -> str:
        return f"{scheme}://127.0.0.1:{self.port}/mcp"

    def posts(self) -> list[float]:
        return [at for at, line in self.requests if line.startswith(b"POST ")]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.append(writer)
        self.accepted.set()
        try:
            line = await reader.readline()
        except ConnectionError:
            line = b""
        self.requests.append((asyncio.get_running_loop().time(), line))
        self.received.set()
        if self.mode == "drop":
            writer.transport.abort()


def connection(url: str, **options: float) -> MCPConnection:
    defaults: dict[str, float] = {"http_timeout": 10, "request_timeout": 10, "reconnect_interval": 0.05}
    return MCPConnection(ServerConfig("probe", url), ConnectionOptions(**{**defaults, **options}))  # type: ignore[arg-type]


async def ends_within(task: asyncio.Task[None], seconds: float) -> float:
    """Cancel the task; how long it took to end (it must, within ``seconds``, cancelled)."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    task.cancel()
    done, _ = await asyncio.wait([task], timeout=seconds)
    assert done, f"the connection task was still running {seconds}s after it was cancelled"
    assert task.cancelled()
    return loop.time() - start


def retries(caplog: pytest.LogCaptureFixture) -> list[tuple[int, float]]:
    found = [RETRY.search(r.getMessage()) for r in caplog.records if r.name == "polyrelay"]
    return [(int(m.group(1)), float(m.group(2))) for m in found if m]


@pytest.fixture
def log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.WARNING, logger="polyrelay")
    return caplog


@pytest_asyncio.fixture
async def stack() -> AsyncIterator[list[Callable[[], Awaitable[object]]]]:
    """Clean-ups to run after the test, last first."""
    cleanups: list[Callable[[], Awaitable[object]]] = []
    yield cleanups
    for cleanup in reversed(cleanups):
        await cleanup()


Stack = list[Callable[[], Awaitable[object]]]


def spawn(stack: Stack, server: MCPConnection) -> asyncio.Task[None]:
    """``server.run()`` in a task, cancelled after the test whatever happens."""
    task = asyncio.create_task(server.run())

    async def cancel() -> None:
        task.cancel()
        await asyncio.wait([task], timeout=2)

    stack.append(cancel)
    return task


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_backoff_doubles_up_to_its_cap_with_full_jitter() -> None:
    backoff = Backoff(first=0.1, cap=1.0, rng=random.Random(7))
    ceilings, delays = [], []
    for _ in range(400):
        ceilings.append(backoff.ceiling)
        delays.append(backoff.next())
    assert ceilings[:6] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0]) and set(ceilings[4:]) == {1.0}
    assert all(0 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    at_cap = delays[4:]  # full jitter: spread over the whole of [0, cap]
    assert min(at_cap) < 0.05 and max(at_cap) > 0.95 and 0.4 < sum(at_cap) / len(at_cap) < 0.6
    backoff.reset()
    assert backoff.ceiling == 0.1 and backoff.failures == 0
    assert Backoff(first=0, cap=0).ceiling > 0  # MCP_RECONNECT_INTERVAL=0s is no hot loop


async def test_a_server_down_at_start_up_is_retried_ever_less_often(
    stack: Stack, log: pytest.LogCaptureFixture
) -> None:
    async with Listener("drop") as listener:
        server = connection(listener.url(), reconnect_interval=0.01, reconnect_max_interval=60)
        task = spawn(stack, server)
        await asyncio.sleep(2)
        await ends_within(task, 1.5)
    posts = listener.posts()
    # Without backoff, one attempt per 10 ms (plus its own time) is well over 30 in 2 s; with it, the
    # n-th delay is at most 10 ms * 2**n (about ten attempts; more than 16 has odds below 1e-8).
    assert 3 <= len(posts) <= 16, posts
    gaps = [b - a for a, b in itertools.pairwise(posts)]
    assert all(gap <= 0.01 * 2**n + 0.3 for n, gap in enumerate(gaps)), gaps
    logged = retries(log)
    assert [n for n, _ in logged] == list(range(1, len(logged) + 1)) and len(logged) >= len(posts) - 1
    assert all(delay <= 0.01 * 2 ** (n - 1) + 0.005 for n, delay in logged), logged


async def test_a_server_that_drops_is_retried_soon_then_less_often(stack: Stack, log: pytest.LogCaptureFixture) -> None:
    port = free_port()
    server = connection(f"http://127.0.0.1:{port}/mcp", polling_interval=0.1, polling_timeout=1)
    task = spawn(stack, server)
    async with Listener("drop", port) as listener:  # down at first: a few failures grow the delay
        while len(listener.posts()) < 4:
            await asyncio.sleep(0.01)
    real = await MCPTestServer("stateful", port=port).start()
    try:
        await asyncio.wait_for(server.connected.wait(), 5)
        assert server.available and len(server.tools) == 5
        before = len(retries(log))
        await asyncio.sleep(0.2)  # up for longer than MCP_RECONNECT_INTERVAL: the delay starts over
    finally:
        await real.kill()
    async with Listener("drop", port) as listener:
        await asyncio.sleep(1.5)
    await ends_within(task, 1.5)
    after = retries(log)[before:]
    assert after and after[0][0] == 1, after  # the first retry after the drop is retry 1 again
    assert [n for n, _ in after] == list(range(1, len(after) + 1))
    assert all(delay <= 0.05 * 2 ** (n - 1) + 0.005 for n, delay in after), after
    assert 1 <= len(listener.posts()) <= 10, listener.posts()


async def full_backlog(stack: Stack) -> str:
    """A port whose accept queue is full: a connection to it stays in its TCP handshake."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(0)
    port = sock.getsockname()[1]
    fillers = []
    for _ in range(3):
        filler = socket.socket()
        filler.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            filler.connect(("127.0.0.1", port))
        fillers.append(filler)

    async def close() -> None:
        for s in [*fillers, sock]:
            s.close()

    stack.append(close)
    await asyncio.sleep(0.05)
    return f"http://127.0.0.1:{port}/mcp"


@pytest.mark.parametrize(
    "phase", ["connecting", "tls-handshake", "initialize", "listing-tools", "serving", "serving-delete-unanswered"]
)
async def test_cancellation_ends_run_in_every_phase(phase: str, stack: Stack, log: pytest.LogCaptureFixture) -> None:
    reached: Callable[[], Awaitable[object]]
    if phase == "connecting":
        url = await full_backlog(stack)
        reached = lambda: asyncio.sleep(0.3)  # noqa: E731
    elif phase in ("tls-handshake", "initialize"):
        listener = await Listener("silent").__aenter__()
        stack.append(listener.__aexit__)
        url = listener.url("https" if phase == "tls-handshake" else "http")
        reached = (listener.accepted if phase == "tls-handshake" else listener.received).wait
    else:
        stall = {"listing-tools": {"tools/list"}, "serving-delete-unanswered": {"DELETE"}}.get(phase, set())
        real = await MCPTestServer("stateful", stall=stall).start()
        stack.append(real.kill)
        url = real.url
    server = connection(url)
    task = spawn(stack, server)
    if phase == "listing-tools":
        reached = real.stalled.wait
    elif phase.startswith("serving"):
        reached = server.connected.wait
    await asyncio.wait_for(reached(), 5)
    assert not task.done()
    took = await ends_within(task, 1.5)
    assert not server.available and not server.connected.is_set()
    if phase == "serving-delete-unanswered":
        assert real.stalled.is_set() and took >= 0.2  # it did wait for the DELETE a little
    assert not retries(log)  # a shutdown is no failure to retry


async def test_a_cancellation_is_never_lost_while_a_connection_fails(stack: Stack) -> None:
    # The SDK's task groups drop a cancellation that arrives just as a child fails (connection
    # refused); at random moments of 40 attempts, on main, about one in fifty went on for ever.
    url = f"http://127.0.0.1:{free_port()}/mcp"
    for _ in range(40):
        task = spawn(stack, connection(url, reconnect_interval=0.01))
        await asyncio.sleep(random.uniform(0, 0.04))
        await ends_within(task, 1.5)


async def test_a_gateway_shuts_down_promptly_whatever_its_servers_do(
    gateway_with: GatewayFactory, stack: Stack
) -> None:
    silent = await Listener("silent").__aenter__()
    stack.append(silent.__aexit__)
    unanswered = await MCPTestServer("stateful", stall={"DELETE"}).start()
    stack.append(unanswered.kill)
    servers = {
        "down": f"http://127.0.0.1:{free_port()}/mcp",
        "handshake": await full_backlog(stack),
        "silent": silent.url(),
        "tls": silent.url("https"),
        "held": unanswered.url,
    }
    env = {
        "MCP_ENABLED": "true",
        "MCP_SERVERS": ",".join(f"{name}={url}" for name, url in servers.items()),
        "MCP_RECONNECT_INTERVAL": "10ms",
        "MCP_CLIENT_TIMEOUT": "30s",
        "MCP_REQUEST_TIMEOUT": "30s",
    }
    loop = asyncio.get_running_loop()
    for wait in (0.0, 0.05, 0.3):
        async with gateway_with(**env):
            await asyncio.sleep(wait)
            start = loop.time()
        assert loop.time() - start < 2.5
