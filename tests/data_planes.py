"""What the gateways tests share: ``serve_gateways``, a real gateway with gateway resources on
(its management API on a port of its own, a SQLite store in a temporary directory unless
``GATEWAYS_DATABASE_URL`` is given) on loopback, built by ``create_app`` against the fake providers,
two of them in zones (mistral in eu-west, openai in us-east); and ``wait_for_status``, a poll of
the management API as a client does."""

from __future__ import annotations

import asyncio
import socket
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from gateway import Settings, create_app
from gateway.gateways.api import BASE
from gateway.gateways.runtime import GatewayRuntime
from gateway.gateways.service import Gateways
from gateway.server import GatewayServer, uvicorn_config

from .fakes import FakeProviders
from .processes import free_port

ZONES = {"MISTRAL_ZONE": "eu-west", "OPENAI_ZONE": "US-East"}  # any case: zones are lower-cased


@dataclass
class Served:
    url: str  # the data plane: the default gateway at /v1, the gateways at /gateways/{id}/v1
    management: str  # the management API's base URL
    runtime: GatewayRuntime
    service: Gateways  # its store, reconciler and management app


@asynccontextmanager
async def serve_gateways(fake: FakeProviders, **env: str) -> AsyncIterator[Served]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port, management = sock.getsockname()[1], free_port()
    with tempfile.TemporaryDirectory() as directory:
        settings = Settings.load(
            {
                **fake.env(),
                **ZONES,
                "GATEWAYS_ENABLED": "true",
                "SERVER_PORT": str(port),
                "GATEWAYS_PORT": str(management),
                "GATEWAYS_DATABASE_URL": f"sqlite:///{directory}/gateways.db",
                **env,
            }
        )
        app = create_app(settings)
        server = GatewayServer(uvicorn_config(settings, app, log_level="warning", loop="none"))
        task = asyncio.create_task(server.serve(sockets=[sock]))
        while not server.started:
            if task.done():
                task.result()
            await asyncio.sleep(0.005)
        try:
            urls = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{management}"
            yield Served(*urls, app.state.gateways, app.state.gateway_service)
        finally:
            server.should_exit = True
            await task


async def wait_for_status(
    http: httpx.AsyncClient, url: str, gateway_id: str, status: str, timeout: float = 5.0, **headers: Any
) -> dict[str, Any]:
    """The gateway as the management API at ``url`` shows it, once its status is ``status``."""
    deadline = time.monotonic() + timeout
    while True:
        answer = await http.get(f"{url}{BASE}/{gateway_id}", headers=headers)
        document = answer.json()
        if answer.status_code == 200 and document["gateway"]["status"]["status"] == status:
            gateway: dict[str, Any] = document["gateway"]
            return gateway
        assert time.monotonic() < deadline, f"{gateway_id} never reached {status}: {answer.status_code} {document}"
        await asyncio.sleep(0.02)
