"""Model aliases from inference-gateway's routing file: real gateways over the fakes, the openai SDK."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import openai
import pytest

from gateway import Settings
from gateway.settings import SettingsError

from .conftest import GatewayFactory
from .fakes import FakeProviders
from .test_metrics import first_event

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


WEIGHTED = """
models:
  heavy:
    deployments:
      - {provider: groq, model: big, weight: 3}
      - {provider: openai, model: small}
  ordered:
    strategy: priority
    deployments:
      - {provider: mistral, model: first}
      - {provider: openai, model: second}
"""


async def test_weights_and_priority(gateway_with: GatewayFactory, tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(WEIGHTED)
    async with gateway_with(ROUTING_ENABLED="true", ROUTING_CONFIG_PATH=str(path)) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)

        async def served(model: str) -> str:
            raw = await client.chat.completions.with_raw_response.create(
                model=model, messages=[{"role": "user", "content": "hi"}]
            )
            return raw.headers["x-selected-provider"]

        heavy = [await served("heavy") for _ in range(8)]
        assert heavy.count("groq") == 6 and heavy.count("openai") == 2
        assert heavy[:4] == ["groq", "groq", "openai", "groq"]  # spread, not bunched
        assert {await served("ordered") for _ in range(4)} == {"mistral"}  # the first, while it is healthy


def test_lowest_latency_prefers_the_fastest_and_measures_the_unknown_first(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text(
        "models: {quick: {strategy: lowest_latency, deployments: "
        "[{provider: openai, model: a}, {provider: groq, model: b}, {provider: mistral, model: c}]}}"
    )
    keys = {"OPENAI_API_KEY": "k", "GROQ_API_KEY": "k", "MISTRAL_API_KEY": "k"}
    alias = Settings.load({"ROUTING_ENABLED": "true", "ROUTING_CONFIG_PATH": str(path), **keys}).aliases["quick"]
    a, b, c = alias.targets
    alias.succeeded(a, 0.5)
    alias.succeeded(b, 0.1)
    assert alias.pick() == c  # never measured: tried first
    alias.succeeded(c, 0.9)
    assert alias.pick() == b
    for _ in range(5):  # b slows down; its average follows
        alias.succeeded(b, 2.0)
    assert alias.pick() == a
    assert alias.fallbacks(a) == [b, c]


def test_a_weight_must_be_a_whole_number(tmp_path: Path) -> None:
    path = tmp_path / "routing.yaml"
    path.write_text("models: {a: {deployments: [{provider: openai, model: m, weight: 0.5}]}}")
    with pytest.raises(SettingsError, match="weight"):
        Settings.load({"ROUTING_ENABLED": "true", "ROUTING_CONFIG_PATH": str(path), "OPENAI_API_KEY": "k"})


async def test_least_in_flight_sends_the_next_request_where_fewest_are_under_way(
    gateway_with: GatewayFactory, tmp_path: Path
) -> None:
    """A stream that is still open counts as under way: with one open on the first deployment, the
    next requests go to the other, until it ends."""
    path = tmp_path / "routing.yaml"
    path.write_text(
        "models: {busy: {strategy: least_in_flight, deployments: "
        "[{provider: openai, model: hang}, {provider: groq, model: hang}]}}"
    )
    async with gateway_with(ROUTING_ENABLED="true", ROUTING_CONFIG_PATH=str(path)) as url, httpx.AsyncClient() as http:
        body = {"model": "busy", "messages": [{"role": "user", "content": "hi"}], "stream": True}
        async with http.stream("POST", f"{url}/v1/chat/completions", json=body) as held:
            first = held.headers["x-selected-provider"]
            open_lines = await first_event(held)  # kept: the stream stays open, its upstream hanging
            others = set()
            for _ in range(3):
                answer = await http.post(
                    f"{url}/v1/chat/completions",
                    json={"model": "busy", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1},
                )
                others.add(answer.headers["x-selected-provider"])
            assert first not in others and len(others) == 1
            assert open_lines is not None
        # The held stream is closed: both are idle again, and the first in the file's order serves.
        await asyncio.sleep(0.1)
        answer = await http.post(
            f"{url}/v1/chat/completions", json={"model": "busy", "messages": [{"role": "user", "content": "x"}]}
        )
        assert answer.headers["x-selected-provider"] == "openai"
