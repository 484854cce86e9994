"""Model aliases from inference-gateway's routing file: real gateways over the fakes, the openai SDK."""

from __future__ import annotations

from pathlib import Path

import httpx
import openai
import pytest

from gateway import Settings
from gateway.settings import SettingsError

from .conftest import GatewayFactory
from .fakes import FakeProviders

ROUTING = """
models:
  fast:
    strategy: round_robin
    deployments:
      - provider: groq
        model: llama-3.3-70b-versatile
      - provider: OpenAI
        model: gpt-4o-mini
  solo:
    deployments:
      - {provider: mistral, model: mistral-small-latest}
"""


@pytest.fixture
def routing(tmp_path: Path) -> Path:
    path = tmp_path / "routing.yaml"
    path.write_text(ROUTING)
    return path


async def test_an_alias_goes_to_its_deployments_in_turn(
    gateway_with: GatewayFactory, fake: FakeProviders, routing: Path
) -> None:
    async with gateway_with(ROUTING_ENABLED="true", ROUTING_CONFIG_PATH=str(routing)) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        served = []
        for _ in range(4):
            raw = await client.chat.completions.with_raw_response.create(
                model="fast", messages=[{"role": "user", "content": "hi"}]
            )
            selected = (raw.headers["x-selected-provider"], raw.headers["x-selected-model"])
            sent = fake.last_post(selected[0])
            assert sent.json["model"] == selected[1]
            assert raw.parse().choices[0].message.content == "You said: hi"
            served.append(selected)
        assert served == [("groq", "llama-3.3-70b-versatile"), ("openai", "gpt-4o-mini")] * 2

        stream = await client.chat.completions.with_raw_response.create(
            model="solo", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        assert stream.headers["x-selected-provider"] == "mistral"
        text = "".join([c.choices[0].delta.content or "" async for c in stream.parse() if c.choices])
        assert text == "You said: hi"

        # A model named with its provider is not an alias, and answers carry no X-Selected-* then.
        direct = await client.chat.completions.with_raw_response.create(
            model="openai/fast", messages=[{"role": "user", "content": "hi"}]
        )
        assert "x-selected-provider" not in direct.headers and fake.last_post("openai").json["model"] == "fast"

        async with httpx.AsyncClient() as http:
            listed = (await http.get(f"{url}/v1/models")).json()["data"]
        aliases = [m for m in listed if m["owned_by"] == "polyrelay"]
        assert [m["id"] for m in aliases] == ["fast", "solo"]


async def test_without_routing_an_alias_is_an_unknown_name(gateway: str, routing: Path) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{gateway}/v1/chat/completions", json={"model": "fast", "messages": [{"role": "user", "content": "x"}]}
        )
    assert response.status_code == 400 and response.json()["error"]["code"] == "unknown_provider"


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("models: {}", "non-empty 'models'"),
        ("models: {a: {strategy: least_latency, deployments: [{provider: openai, model: m}]}}", "not supported"),
        ("models: {a: {deployments: [{provider: nowhere, model: m}]}}", "'nowhere' is unknown"),
        ("models: {a: {deployments: [{provider: deepseek, model: m}]}}", "DEEPSEEK_API_KEY"),
        ("models: {a: {deployments: []}}", "non-empty list"),
        ("models: {a: {deployments: [{provider: openai, model: 'bad name'}]}}", "model name"),
        ("models: {'x/y': {deployments: [{provider: openai, model: m}]}}", "plain name"),
        ("models: [", "cannot read"),
        ("models: {a: {deployments: [{provider: openai, model: m}, {provider: openai, model: m}]}}", "twice"),
        ("models: {a: {deployments: [{provider: openai, model: m}], ejection: {failures: 0}}}", "failures >= 1"),
        ("models: {a: {deployments: [{provider: openai, model: m}], ejection: {after: 3}}}", "takes failures"),
    ],
)
def test_a_bad_routing_file_stops_start_up_naming_the_problem(tmp_path: Path, text: str, named: str) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(text)
    env = {"ROUTING_ENABLED": "true", "ROUTING_CONFIG_PATH": str(path), "OPENAI_API_KEY": "k"}
    with pytest.raises(SettingsError, match=named):
        Settings.load(env)


def test_routing_enabled_needs_its_file(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="ROUTING_CONFIG_PATH"):
        Settings.load({"ROUTING_ENABLED": "true"})
    with pytest.raises(SettingsError, match="cannot read"):
        Settings.load({"ROUTING_ENABLED": "true", "ROUTING_CONFIG_PATH": str(tmp_path / "missing.yaml")})
