"""The upstream pool keeps at most CLIENT_MAX_IDLE_CONNS_PER_HOST (and CLIENT_MAX_IDLE_CONNS) idle
connections after a burst, so a burst of streams leaves no crowd of connections (and their objects)
behind: counted by the upstream server itself, over loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import openai
from aiohttp import web

from gateway import Settings
from providers.transport import ClientOptions, HttpClient

from .conftest import serve
from .fakes import FakeProviders

ANSWER = b'{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[]}'


class Upstream:
    """A loopback HTTP server that answers once ``burst`` requests are in flight together (so each
    holds a connection of its own), and counts the connections open to it."""

    def __init__(self, burst: int) -> None:
        self.burst = burst
        self.arrived = 0
        self.all_in = asyncio.Event()
        self.runner: web.AppRunner | None = None
        self.url = ""
        self.peers: set[object] = set()  # the client ends of every connection that carried a request

    async def handle(self, request: web.Request) -> web.Response:
        await request.read()
        assert request.transport is not None
        self.peers.add(request.transport.get_extra_info("peername"))
        self.arrived += 1
        if self.arrived >= self.burst:
            self.all_in.set()
        await asyncio.wait_for(self.all_in.wait(), 10)
        return web.Response(body=ANSWER, content_type="application/json")

    def open_connections(self) -> int:
        assert self.runner is not None and self.runner.server is not None
        return len(self.runner.server.connections)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Upstream]:
        app = web.Application()
        app.router.add_route("*", "/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.url = f"http://127.0.0.1:{port}"
        try:
            yield self
        finally:
            await self.runner.cleanup()


async def settled(count: Callable[[], int], want: int) -> int:
    """``count()`` once it reaches ``want`` (the pool's sweep runs after a grace of a second; closes
    travel over loopback), or its last value."""
    for _ in range(200):
        if count() <= want:
            break
        await asyncio.sleep(0.02)
    return count()


async def burst(n: int, call: Callable[[], Awaitable[object]]) -> None:
    await asyncio.gather(*(call() for _ in range(n)))


async def test_a_burst_leaves_at_most_the_per_host_cap_idle() -> None:
    async with Upstream(burst=24).running() as upstream:
        client = HttpClient(ClientOptions(max_idle_per_host=4))
        await client.start()
        try:

            async def call() -> None:
                response = await client.request("POST", f"{upstream.url}/v1/chat/completions", body=b"{}")
                assert await response.read() == ANSWER

            await burst(24, call)
            assert await settled(upstream.open_connections, 4) == 4
            # The connections kept are reused: a second burst of four opens none.
            upstream.arrived, upstream.burst = 0, 4
            upstream.all_in.clear()
            await burst(4, call)
            assert await settled(upstream.open_connections, 4) == 4
        finally:
            await client.close()


async def test_a_load_above_the_cap_reuses_its_connections_within_the_grace() -> None:
    # Closed at once, each release past the cap would cost a new connection for a later call.
    async with Upstream(burst=8).running() as upstream:
        client = HttpClient(ClientOptions(max_idle_per_host=2))
        await client.start()
        try:

            async def call() -> None:
                await (await client.request("POST", f"{upstream.url}/x", body=b"{}")).read()

            for _ in range(3):
                upstream.arrived = 0
                upstream.all_in.clear()
                await burst(8, call)
            assert len(upstream.peers) == 8
            assert await settled(upstream.open_connections, 2) == 2
        finally:
            await client.close()


async def test_without_a_cap_every_connection_of_a_burst_stays_pooled() -> None:
    # The behaviour the cap replaces (and the proof that the burst did open a connection per request).
    async with Upstream(burst=12).running() as upstream:
        client = HttpClient(ClientOptions())
        await client.start()
        try:

            async def call() -> None:
                await (await client.request("POST", f"{upstream.url}/x", body=b"{}")).read()

            await burst(12, call)
            await asyncio.sleep(0.1)
            assert upstream.open_connections() == 12
        finally:
            await client.close()


async def test_the_total_cap_closes_the_longest_idle_of_all_hosts() -> None:
    async with Upstream(burst=6).running() as first, Upstream(burst=6).running() as second:
        client = HttpClient(ClientOptions(max_idle=8, max_idle_per_host=6))
        await client.start()
        try:
            for upstream in (first, second):

                async def call(url: str = upstream.url) -> None:
                    await (await client.request("POST", f"{url}/x", body=b"{}")).read()

                await burst(6, call)
            # Six kept for the first host, then the second's six push out four of the first's.
            assert await settled(first.open_connections, 2) == 2
            assert await settled(second.open_connections, 6) == 6
        finally:
            await client.close()


async def test_the_gateway_keeps_client_max_idle_conns_per_host(fake: FakeProviders) -> None:
    async with Upstream(burst=16).running() as upstream:
        env = {**fake.env(), "OPENAI_API_URL": f"{upstream.url}/v1", "CLIENT_MAX_IDLE_CONNS_PER_HOST": "3"}
        async with serve(Settings.load(env)) as url:
            client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="caller", max_retries=0)
            messages: list[Any] = [{"role": "user", "content": "hi"}]
            async with client:
                await burst(16, lambda: client.chat.completions.create(model="openai/m", messages=messages))
            assert upstream.arrived == 16
            assert await settled(upstream.open_connections, 3) == 3
