"""Issue 15's "Done when", end to end: a header-routed, W&B-authenticated, EU-only gateway created with
HTTP calls to the management API, polled to STATUS_READY, called at its endpoint with the openai
SDK, deleted, and refused afterwards; in one process, then on two gateway processes sharing a real
PostgreSQL (created through one, served by the other)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
import pytest_asyncio

from gateway.gateways.api import BASE

from .data_planes import ZONES, serve_gateways, wait_for_status
from .fake_wandb import FakeWandb
from .fakes import FakeProviders, fake_key
from .postgres_server import postgres_server
from .processes import free_port, gateway_process

HELLO = [{"role": "user", "content": "hello there friend"}]
CALLER_KEY = "a" * 40  # a W&B API key of the caller's
GATEWAY_KEY = "c" * 40  # the gateway's own, for its usage reports


@pytest_asyncio.fixture
async def wandb() -> AsyncIterator[FakeWandb]:
    server = FakeWandb()
    await server.start()
    server.add_user(CALLER_KEY, "ml-team")
    server.add_user(GATEWAY_KEY, "platform")
    yield server
    await server.stop()


def create_request(wandb: FakeWandb) -> dict[str, Any]:
    return {
        "name": "eu-team",
        "zones": ["EU-West"],
        "weightsAndBiasesAuth": {
            "apiKey": GATEWAY_KEY,
            "serverUrl": wandb.url,
            "enableUsageReports": True,
            "enableRateLimiting": True,
        },
        "headerBasedRouting": {"headerName": "X-Model"},
    }


def sdk(endpoint: str, model: str = "mistral/mistral-small") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=endpoint, api_key=CALLER_KEY, max_retries=0, default_headers={"X-Model": model})


async def until_refused(client: openai.AsyncOpenAI, timeout: float = 5.0) -> tuple[openai.NotFoundError, int]:
    """Call until the gateway answers 404 (deleted), as a client would see it happen; also how many
    calls were answered before (the deletion is applied a moment after it is recorded)."""
    deadline = time.monotonic() + timeout
    answered = 0
    while True:
        try:
            await client.chat.completions.create(model="x", messages=HELLO)  # type: ignore[arg-type]
            answered += 1
        except openai.NotFoundError as refused:
            return refused, answered
        assert time.monotonic() < deadline, "the deleted gateway still serves"
        await asyncio.sleep(0.05)


async def until_served(client: openai.AsyncOpenAI, timeout: float = 5.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        try:
            answer = await client.chat.completions.create(model="x", messages=HELLO)  # type: ignore[arg-type]
            return answer.choices[0].message.content or ""
        except openai.NotFoundError:
            assert time.monotonic() < deadline, "the gateway never served on this replica"
            await asyncio.sleep(0.05)


async def test_create_poll_call_delete_and_refused(fake: FakeProviders, wandb: FakeWandb) -> None:
    async with serve_gateways(fake) as served, httpx.AsyncClient(timeout=10) as http:
        zones = await http.get(f"{served.management}{BASE}/parameters")
        assert zones.json() == {"zones": ["eu-west", "us-east"]}
        created = await http.post(f"{served.management}{BASE}", json=create_request(wandb))
        assert created.status_code == 200, created.text
        gateway_id = created.json()["gateway"]["spec"]["id"]
        gateway = await wait_for_status(http, served.management, gateway_id, "STATUS_READY")
        (endpoint,) = gateway["status"]["endpoints"]
        assert endpoint == f"{served.url}/gateways/{gateway_id}/v1"

        client = sdk(endpoint)
        answer = await client.chat.completions.create(model="x", messages=HELLO)  # type: ignore[arg-type]
        assert answer.choices[0].message.content == "You said: hello there friend"
        seen = fake.last_post("mistral")
        assert seen.json["model"] == "mistral-small"
        assert seen.headers["authorization"] == f"Bearer {fake_key('mistral')}"  # never the caller's W&B key
        stream = await client.chat.completions.create(model="x", messages=HELLO, stream=True)  # type: ignore[arg-type]
        assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]).endswith("friend")
        with pytest.raises(openai.BadRequestError, match="outside this gateway's zones"):
            await sdk(endpoint, "openai/gpt-4o").chat.completions.create(model="x", messages=HELLO)  # type: ignore[arg-type]
        with pytest.raises(openai.AuthenticationError):
            await openai.AsyncOpenAI(base_url=endpoint, api_key="b" * 40, max_retries=0).models.list()

        deleted = await http.delete(f"{served.management}{BASE}/{gateway_id}")
        assert deleted.status_code == 200
        refused, late = await until_refused(client)
        assert refused.code == "gateway_not_found"
        for _ in range(100):  # the row goes once the data plane has drained
            if (await http.get(f"{served.management}{BASE}/{gateway_id}")).status_code == 404:
                break
            await asyncio.sleep(0.02)
        else:
            raise AssertionError("the deleted gateway is still listed")
    # Its usage went to the W&B server as the gateway closed, under the caller's entity: each answer's
    # (the stream reported none: Mistral's stream carries no usage here).
    records = [(r["entity"], r["gateway_id"], r["total_tokens"]) for r in wandb.records]
    assert records == [("ml-team", gateway_id, 18)] * (1 + late)


async def test_two_replicas_sharing_postgresql(fake: FakeProviders, wandb: FakeWandb) -> None:
    async with postgres_server() as postgres:
        database = await postgres.database()
        ports = [free_port(), free_port()]

        def env(port: int) -> dict[str, str]:
            return {
                **ZONES,
                "GATEWAYS_ENABLED": "true",
                "GATEWAYS_PORT": str(port),
                "GATEWAYS_DATABASE_URL": database,
                "UPSTREAM_RETRIES": "0",
            }

        async with (
            gateway_process(fake, **env(ports[0])) as first,
            gateway_process(fake, **env(ports[1])) as second,
            httpx.AsyncClient(timeout=10) as http,
        ):
            managed = [f"http://127.0.0.1:{port}" for port in ports]
            for url in managed:  # the management API listens once the process has started
                for _ in range(200):
                    try:
                        await http.get(f"{url}{BASE}")
                        break
                    except httpx.TransportError:
                        await asyncio.sleep(0.05)
            created = await http.post(f"{managed[0]}{BASE}", json=create_request(wandb))
            assert created.status_code == 200, created.text
            gateway_id = created.json()["gateway"]["spec"]["id"]
            await wait_for_status(http, managed[1], gateway_id, "STATUS_READY")
            # Created through the first process, served by the second (and the first).
            on_second = sdk(f"{second.url}/gateways/{gateway_id}/v1")
            assert await until_served(on_second) == "You said: hello there friend"
            on_first = sdk(f"{first.url}/gateways/{gateway_id}/v1")
            assert await until_served(on_first) == "You said: hello there friend"
            # Deleted through the second: both refuse it.
            assert (await http.delete(f"{managed[1]}{BASE}/{gateway_id}")).status_code == 200
            await until_refused(on_first)
            await until_refused(on_second)
