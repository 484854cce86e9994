"""Fixtures: the fake providers and real gateways (uvicorn on loopback), all on one event loop."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

import openai
import pytest
import pytest_asyncio

from gateway import Settings, create_app
from gateway.server import GatewayServer, uvicorn_config
from providers.registry import load_registry

from .fakes import FakeProviders


@pytest_asyncio.fixture(scope="session")
async def fake() -> AsyncIterator[FakeProviders]:
    providers = FakeProviders(load_registry())
    await providers.start()
    yield providers
    await providers.stop()


@asynccontextmanager
async def serve(settings: Settings) -> AsyncIterator[str]:
    """A real gateway on a free loopback port, for as long as the block runs; yields its base URL."""
    server = GatewayServer(uvicorn_config(settings, create_app(settings), log_level="warning", loop="none"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        if task.done():
            task.result()
        await asyncio.sleep(0.005)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


GatewayFactory = Callable[..., AbstractAsyncContextManager[str]]


@pytest.fixture(scope="session")
def gateway_with(fake: FakeProviders) -> GatewayFactory:
    """``async with gateway_with(ENABLE_VISION="true") as url:`` a gateway with extra settings."""

    def factory(**env: str) -> AbstractAsyncContextManager[str]:
        return serve(Settings.load({**fake.env(), **env}))

    return factory


@pytest_asyncio.fixture(scope="session")
async def gateway(gateway_with: GatewayFactory) -> AsyncIterator[str]:
    """The default gateway: every provider configured against the fakes."""
    async with gateway_with() as url:
        yield url


@pytest.fixture
def client(gateway: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key="not-checked", max_retries=0)
