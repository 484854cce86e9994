"""``X-Gateway-Overhead-Ms`` counts the gateway's own time: parallel upstream waits once, MCP tools not at all."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import pytest_asyncio
from aiohttp import web

from .conftest import GatewayFactory
from .mcp_servers import MCPTestServer

WAIT = 0.4  # seconds each slow upstream (or tool) takes
SLOW = ("openai", "groq", "mistral", "deepseek", "moonshot")  # OpenAI-compatible providers listing models slowly


@pytest_asyncio.fixture(scope="module")
async def slow_lists() -> AsyncIterator[str]:
    """OpenAI's ``GET /models``, answered after ``WAIT`` seconds, for each provider under ``/<id>``."""

    async def models(request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer key-{request.match_info['pid']}":
            return web.json_response({"error": {"message": "bad key", "type": "invalid_request_error"}}, status=401)
        await asyncio.sleep(WAIT)
        return web.json_response(
            {"object": "list", "data": [{"id": "m", "object": "model", "created": 1, "owned_by": "x"}]}
        )

    app = web.Application()
    app.router.add_get("/{pid}/v1/models", models)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    yield f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
    await runner.cleanup()


async def test_models_listed_in_parallel_count_their_wait_once(gateway_with: GatewayFactory, slow_lists: str) -> None:
    env = {f"{pid.upper()}_API_URL": f"{slow_lists}/{pid}/v1" for pid in SLOW}
    async with gateway_with(**env) as url, httpx.AsyncClient(timeout=10) as http:
        response = await http.get(f"{url}/v1/models")
    assert response.status_code == 200
    assert {f"{pid}/m" for pid in SLOW} <= {m["id"] for m in response.json()["data"]}
    overhead = float(response.headers["x-gateway-overhead-ms"])
    # Summing the five parallel waits gave about -1600 ms; the gateway's own share is a few ms.
    assert 0 <= overhead < WAIT * 1000 / 2, overhead


async def test_mcp_tool_time_is_not_overhead(gateway_with: GatewayFactory) -> None:
    server = await MCPTestServer("stateless", prefix="calc_").start()
    try:
        env = {"MCP_ENABLED": "true", "MCP_EXPOSE": "true", "MCP_SERVERS": f"calc={server.url}"}
        async with asyncio.timeout(30), gateway_with(**env) as url, httpx.AsyncClient(timeout=10) as http:
            for _ in range(300):  # the gateway connects to MCP servers in the background
                if await _has_tools(http, url):
                    break
                await asyncio.sleep(0.02)
            prompt = f'call mcp_calc_sleep {{"seconds": {WAIT}}}'
            body = {"model": "openai/agent", "messages": [{"role": "user", "content": prompt}]}
            response = await http.post(f"{url}/v1/chat/completions", json=body)
        assert response.status_code == 200, response.text
        assert response.json()["choices"][0]["message"]["content"].startswith("Done: ")
        overhead = float(response.headers["x-gateway-overhead-ms"])
        assert 0 <= overhead < WAIT * 1000 / 4, overhead  # counted as overhead, the tool alone was 400 ms
    finally:
        await server.stop()


async def _has_tools(http: httpx.AsyncClient, url: str) -> bool:
    response = await http.get(f"{url}/v1/mcp/tools")
    return response.status_code == 200 and any(t["name"] == "mcp_calc_sleep" for t in response.json()["data"])
