"""Two gateway processes (``polyrelay serve``) sharing one real PostgreSQL: what is created through
one's management API is seen through the other's within a second, and so is its deletion."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from gateway.auth import ApiKeys
from gateway.gateways.api import BASE
from gateway.gateways.runtime import GatewayRuntime
from gateway.gateways.service import Gateways
from gateway.plane import Shared
from gateway.settings import Settings

from .fakes import FakeProviders
from .postgres_server import PostgresServer, postgres_server
from .processes import free_port, gateway_process


@pytest_asyncio.fixture(scope="module")
async def postgres() -> AsyncIterator[PostgresServer]:
    async with postgres_server() as server:
        yield server


async def test_a_gateway_made_through_one_replica_is_seen_through_the_other(
    fake: FakeProviders, postgres: PostgresServer
) -> None:
    url = (await postgres.database()).replace("postgres@", "postgres:s3cret-pw@")  # the server trusts loopback
    ports = [free_port(), free_port()]
    env = {"GATEWAYS_ENABLED": "true", "GATEWAYS_DATABASE_URL": url}
    async with (
        gateway_process(fake, GATEWAYS_PORT=str(ports[0]), **env) as one,
        gateway_process(fake, GATEWAYS_PORT=str(ports[1]), **env) as two,
        httpx.AsyncClient(timeout=10) as http,
    ):
        first, second = (f"http://127.0.0.1:{port}{BASE}" for port in ports)
        for replica in (one, two):
            await replica.line_matching(r"gateways: the management API serves on port")
            assert "postgres:***@127.0.0.1" in replica.output and "s3cret-pw" not in replica.output
        body = {"name": "shared", "coreWeaveAuth": {}, "bodyBasedRouting": {}}
        created = await http.post(first, json=body)
        assert created.status_code == 200, created.text
        gateway_id = created.json()["gateway"]["spec"]["id"]
        answer = await http.get(f"{second}/{gateway_id}")
        assert answer.status_code == 200 and answer.json()["gateway"]["spec"]["name"] == "shared"

        # Each replica's reconciler picks it up (the status moves past CREATING) within a second.
        started = time.monotonic()
        while (await http.get(f"{second}/{gateway_id}")).json()["gateway"]["status"]["status"] == "STATUS_CREATING":
            assert time.monotonic() - started < 1.0
            await asyncio.sleep(0.02)

        assert (await http.delete(f"{second}/{gateway_id}")).status_code == 200
        started = time.monotonic()
        while (await http.get(f"{first}/{gateway_id}")).status_code != 404:
            assert time.monotonic() - started < 2.0, "the deleted gateway was never removed"
            await asyncio.sleep(0.02)


@pytest.mark.parametrize("public_url", ["", "https://llm.example.com"])
def test_replicas_on_postgresql_are_told_to_share_one_public_url(
    public_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Without GATEWAYS_PUBLIC_URL each replica would report endpoints from its own address."""
    settings = Settings.load(
        {
            "GATEWAYS_ENABLED": "true",
            "GATEWAYS_DATABASE_URL": "postgresql://polyrelay@127.0.0.1:1/gateways",
            "GATEWAYS_PUBLIC_URL": public_url,
            "SERVER_HOST": "127.0.0.1",
        }
    )
    shared = Shared.from_settings(settings)
    with caplog.at_level(logging.WARNING, logger="polyrelay"):
        Gateways.from_settings(settings, GatewayRuntime(settings, shared), keys=ApiKeys(()), oidc=None, serve=False)
    warned = [r.getMessage() for r in caplog.records if "GATEWAYS_PUBLIC_URL is not set" in r.getMessage()]
    assert len(warned) == (0 if public_url else 1)
