"""When the gateways store (or port) is not there: at start-up (a ``polyrelay serve`` process stops with one
line naming GATEWAYS_DATABASE_URL, its password masked, and what to do), and while running (a
PostgreSQL outage: the gateways keep serving, the management API answers 503 in CoreWeave's
shape, the log says so without flooding, and everything resumes once the database is back)."""

from __future__ import annotations

import asyncio
import logging
import socket
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from gateway.gateways import lifecycle
from gateway.gateways.api import BASE
from gateway.gateways.spec import GatewaySpec
from gateway.gateways.store import Record, open_store
from gateway.gateways.store.record import now, seconds

from .data_planes import serve_gateways, wait_for_status
from .fakes import FakeProviders
from .postgres_server import PostgresServer, postgres_server
from .processes import failed_start, free_port

SPEC = {"name": "team-a", "zones": [], "coreWeaveAuth": {}, "bodyBasedRouting": {}}


def assert_one_line_refusal(code: int, output: str, *fragments: str) -> None:
    assert code != 0, output
    (line,) = [line for line in output.splitlines() if "polyrelay cannot start" in line]
    for fragment in fragments:
        assert fragment in line, line
    assert "Traceback" not in output and "Unclosed" not in output, output  # and the shared parts were closed


async def test_a_postgres_that_does_not_answer_stops_start_up_with_one_line(fake: FakeProviders) -> None:
    port = free_port()  # nothing listens there
    url = f"postgresql://polyrelay:s3cret-pw@127.0.0.1:{port}/gateways"
    code, output = await failed_start(fake, GATEWAYS_ENABLED="true", GATEWAYS_DATABASE_URL=url)
    assert_one_line_refusal(
        code,
        output,
        f"GATEWAYS_DATABASE_URL=postgresql://polyrelay:***@127.0.0.1:{port}/gateways",
        "Connection refused",
        "set GATEWAYS_DATABASE_URL to one that answers",
    )
    assert "s3cret-pw" not in output


async def test_a_sqlite_file_that_cannot_be_made_stops_start_up_with_one_line(
    fake: FakeProviders, tmp_path: Path
) -> None:
    (tmp_path / "not-a-directory").write_text("")
    url = f"sqlite:///{tmp_path}/not-a-directory/gateways.db"
    code, output = await failed_start(fake, GATEWAYS_ENABLED="true", GATEWAYS_DATABASE_URL=url)
    assert_one_line_refusal(code, output, f"GATEWAYS_DATABASE_URL={url}", "a directory polyrelay can create and write")


async def test_a_management_port_in_use_stops_start_up_with_one_line(fake: FakeProviders, tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        code, output = await failed_start(
            fake,
            GATEWAYS_ENABLED="true",
            GATEWAYS_PORT=str(port),
            GATEWAYS_DATABASE_URL=f"sqlite:///{tmp_path}/gateways.db",
        )
    assert_one_line_refusal(code, output, f"GATEWAYS_PORT={port}", "Set GATEWAYS_PORT to a free port")


@pytest_asyncio.fixture
async def postgres() -> AsyncIterator[PostgresServer]:
    async with postgres_server() as server:
        yield server


async def test_a_postgres_outage_keeps_the_gateways_serving_and_the_api_answers_503(
    fake: FakeProviders, postgres: PostgresServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="polyrelay")
    url = await postgres.database()
    async with serve_gateways(fake, GATEWAYS_DATABASE_URL=url) as served, httpx.AsyncClient(timeout=10) as http:
        api = f"{served.management}{BASE}"
        gateway_id = (await http.post(api, json=SPEC)).json()["gateway"]["spec"]["id"]
        await wait_for_status(http, served.management, gateway_id, "STATUS_READY")
        endpoint = f"{served.url}/gateways/{gateway_id}/v1"

        caplog.clear()
        await postgres.stop()
        outage = time.monotonic()
        for _ in range(3):
            answer = await http.get(api)
            assert answer.status_code == 503, answer.text
            assert answer.json() == {
                "code": 503,
                "message": "The gateways store is unavailable right now; retry shortly.",
                "details": [],
            }
        assert (await http.post(api, json=SPEC)).status_code == 503
        # The gateway it has keeps serving while the store is away, the feed failing under it.
        while time.monotonic() - outage < 2.5:
            listed = await http.get(f"{endpoint}/models")
            assert listed.status_code == 200, listed.text
            await asyncio.sleep(0.1)
        warnings = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
        assert any("the gateways store is unreachable" in m for m in warnings), warnings
        assert len(warnings) <= 5, warnings  # said, not repeated every second

        await postgres.resume()
        # Back: the API answers, and a gateway written by another replica meanwhile is heard of.
        other = open_store(url)
        await other.open()
        try:
            spec = GatewaySpec(id=str(uuid.uuid4()), name="team-b", organization_id="default")
            async with asyncio.timeout(15):
                while (await http.get(api)).status_code != 200:
                    await asyncio.sleep(0.1)
            await other.create(Record(spec, lifecycle.creating(seconds(now()))))
            await wait_for_status(http, served.management, spec.id, "STATUS_READY", timeout=15)
        finally:
            await other.close()
        assert (await http.get(f"{served.url}/gateways/{spec.id}/v1/models")).status_code == 200
        assert any("the gateways store is reachable again" in r.getMessage() for r in caplog.records)
