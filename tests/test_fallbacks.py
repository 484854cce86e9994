"""Fallbacks across an alias's deployments and their ejection: two flaky upstreams on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest
import pytest_asyncio

from .conftest import GatewayFactory
from .test_metrics import free_port, scrape
from .test_retries import HI, Flaky, sdk

ROUTING = """
models:
  pool:
    deployments:
      - {provider: openai, model: first-model}
      - {provider: groq, model: second-model}
    ejection: {failures: 2, window: 10, cooldown: 0.5}
"""


@pytest_asyncio.fixture
async def pair() -> AsyncIterator[tuple[Flaky, Flaky]]:
    first, second = Flaky(), Flaky()
    await first.start()
    await second.start()
    yield first, second
    await first.runner.cleanup()
    await second.runner.cleanup()


def env(pair: tuple[Flaky, Flaky], tmp_path: Path, retries: str = "0") -> dict[str, str]:
    path = tmp_path / "routing.yaml"
    path.write_text(ROUTING)
    return {
        "ROUTING_ENABLED": "true",
        "ROUTING_CONFIG_PATH": str(path),
        "OPENAI_API_URL": pair[0].url,
        "GROQ_API_URL": pair[1].url,
        "UPSTREAM_RETRIES": retries,
    }


async def test_a_failing_deployment_is_covered_by_the_next(
    gateway_with: GatewayFactory, pair: tuple[Flaky, Flaky], tmp_path: Path
) -> None:
    first, second = pair
    first.script = [("status", (503, None)), ("status", (503, None)), ("status", (503, None))]
    async with gateway_with(**env(pair, tmp_path, retries="1")) as url:
        raw = await sdk(url).chat.completions.with_raw_response.create(model="pool", messages=HI)
        # Retried once on the first deployment, then served by the second: one clean answer.
        assert raw.parse().choices[0].message.content == "at last"
        assert (raw.headers["x-selected-provider"], raw.headers["x-selected-model"]) == ("groq", "second-model")
        assert len(first.bodies) == 2 and len(second.bodies) == 1
        # A stream too, before its first byte.
        first.script = [("status", (502, None))] * 2
        second.script = [("stream", None)]
        stream = await sdk(url).chat.completions.create(model="pool", messages=HI, stream=True)
        assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == "first second"


async def test_a_callers_mistake_is_not_sent_elsewhere(
    gateway_with: GatewayFactory, pair: tuple[Flaky, Flaky], tmp_path: Path
) -> None:
    first, second = pair
    first.script = [("status", (400, None))]
    async with gateway_with(**env(pair, tmp_path)) as url:
        with pytest.raises(openai.BadRequestError):
            await sdk(url).chat.completions.create(model="pool", messages=HI)
    assert len(first.bodies) == 1 and not second.bodies


async def test_a_deployment_that_keeps_failing_is_ejected_then_readmitted(
    gateway_with: GatewayFactory, pair: tuple[Flaky, Flaky], tmp_path: Path
) -> None:
    first = pair[0]
    first.script = [("status", (503, None))] * 2
    port = free_port()
    settings = {**env(pair, tmp_path), "TELEMETRY_ENABLED": "true", "TELEMETRY_METRICS_PORT": str(port)}
    async with gateway_with(**settings) as url, httpx.AsyncClient() as http:
        client = sdk(url)
        for _ in range(4):  # turns: first (fails, covered), second, first (fails: ejected), second
            answer = await client.chat.completions.create(model="pool", messages=HI)
            assert answer.choices[0].message.content == "at last"
        assert len(first.bodies) == 2
        ready = (await http.get(f"{url}/ready")).json()
        assert ready["status"] == "ready"
        assert ready["checks"]["aliases"]["pool"] == {"openai/first-model": "ejected", "groq/second-model": "ok"}
        up = "polyrelay_alias_deployment_up"
        scraped = await scrape(port)
        assert scraped.value(up, alias="pool", deployment="openai/first-model") == 0
        assert scraped.value(up, alias="pool", deployment="groq/second-model") == 1
        for _ in range(3):  # while it is out, every request goes to the second
            await client.chat.completions.create(model="pool", messages=HI)
        assert len(first.bodies) == 2
        await asyncio.sleep(0.6)  # the cool-down ends: one request probes it, and it answers now
        served = set()
        for _ in range(3):
            raw = await client.chat.completions.with_raw_response.create(model="pool", messages=HI)
            served.add(raw.headers["x-selected-provider"])
        assert served == {"openai", "groq"} and len(first.bodies) >= 3
        ready = (await http.get(f"{url}/ready")).json()
        assert ready["checks"]["aliases"]["pool"]["openai/first-model"] == "ok"
        assert (await scrape(port)).value(up, alias="pool", deployment="openai/first-model") == 1
