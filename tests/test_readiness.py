"""``GET /ready`` on real gateways: ready once serving, waiting for the OIDC issuer's keys, MCP
servers reported but never required, open without a credential, its body as openapi.yaml says.
(Its 503 from SIGTERM on is tested on real processes in test_shutdown.)"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest_asyncio
import yaml

from .conftest import GatewayFactory
from .issuer import AUDIENCE, Issuer
from .mcp_servers import TOKEN, MCPTestServer
from .processes import free_port

SCHEMA = yaml.safe_load((Path(__file__).parent.parent / "openapi.yaml").read_text())["components"]["schemas"][
    "Readiness"
]


async def get_ready(url: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{url}/ready")
    jsonschema.validate(answer.json(), SCHEMA)
    assert answer.headers["cache-control"] == "no-store"
    return answer


async def until_ready(url: str, check: Any = lambda body: True) -> dict[str, Any]:
    """The body of the first 200 from ``/ready`` for which ``check(body)`` holds."""
    async with asyncio.timeout(10):
        while True:
            answer = await get_ready(url)
            if answer.status_code == 200 and check(answer.json()):
                return dict(answer.json())
            await asyncio.sleep(0.05)


@pytest_asyncio.fixture(scope="module")
async def issuer() -> AsyncIterator[Issuer]:
    running = Issuer()
    await running.start()
    yield running
    await running.stop()


async def test_a_serving_gateway_is_ready(gateway: str) -> None:
    answer = await get_ready(gateway)
    assert answer.status_code == 200
    assert answer.json() == {
        "status": "ready",
        "checks": {"http_pool": "ok", "oidc": "off", "draining": False, "mcp": {}},
    }


async def test_ready_waits_for_the_oidc_keys_and_needs_no_credential(
    gateway_with: GatewayFactory, issuer: Issuer
) -> None:
    issuer.down = True
    try:
        env = {
            "AUTH_ENABLED": "true",
            "AUTH_OIDC_ISSUER": issuer.url,
            "AUTH_OIDC_CLIENT_ID": AUDIENCE,
            "AUTH_OIDC_RETRY_INTERVAL": "100ms",
        }
        async with gateway_with(**env) as url:
            answer = await get_ready(url)
            assert answer.status_code == 503
            assert answer.json()["status"] == "starting" and answer.json()["checks"]["oidc"] == "waiting"
            async with httpx.AsyncClient() as http:
                assert (await http.get(f"{url}/health")).status_code == 200
                assert (await http.get(f"{url}/v1/models")).status_code == 401  # authentication is on
            issuer.down = False
            body = await until_ready(url)
            assert body["status"] == "ready" and body["checks"]["oidc"] == "ok"
    finally:
        issuer.down = False


async def test_with_api_keys_only_ready_needs_no_credential(gateway_with: GatewayFactory) -> None:
    async with gateway_with(AUTH_ENABLED="true", AUTH_API_KEYS=f"ci:{'ab' * 32}") as url:
        answer = await get_ready(url)
        assert answer.status_code == 200 and answer.json()["checks"]["oidc"] == "off"
        async with httpx.AsyncClient() as http:
            assert (await http.get(f"{url}/v1/models")).status_code == 401


async def test_mcp_servers_are_reported_by_name_and_never_required(gateway_with: GatewayFactory) -> None:
    server = await MCPTestServer("stateless", token=True).start()
    gone = f"http://127.0.0.1:{free_port()}/mcp"  # nothing listens there
    try:
        env = {
            "MCP_ENABLED": "true",
            "MCP_SERVERS": f"up={server.url},gone={gone}",
            "MCP_SERVER_HEADERS": json.dumps({"up": {"Authorization": f"Bearer {TOKEN}"}}),
            "MCP_RECONNECT_INTERVAL": "200ms",
        }
        async with gateway_with(**env) as url:
            body = await until_ready(url, lambda body: body["checks"]["mcp"]["up"] == "connected")
            raw = (await get_ready(url)).text
    finally:
        await server.stop()
    assert body["status"] == "ready" and body["checks"]["mcp"] == {"up": "connected", "gone": "down"}
    assert TOKEN not in raw and "127.0.0.1" not in raw and "://" not in raw
