"""Alias deployments with their own URL and key (two keys or replicas of one provider), and an
alias's own retries: real fakes on loopback, a real gateway, the openai SDK."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import anthropic
import httpx
import openai
import pytest
import pytest_asyncio

from gateway import Settings
from gateway.settings import SettingsError
from providers.registry import load_registry

from .conftest import GatewayFactory
from .fakes import FakeProviders, fake_key
from .test_metrics import free_port, scrape
from .test_retries import HI, Flaky, sdk

KEY_A = "key-openai-region-a-0123456789"
KEY_B = "key-openai-region-b-9876543210"


@pytest_asyncio.fixture
async def replicas() -> AsyncIterator[tuple[FakeProviders, FakeProviders]]:
    """Two OpenAI-compatible upstreams, each accepting only its own key."""
    registry = load_registry()
    a, b = FakeProviders(registry, keys={"openai": KEY_A}), FakeProviders(registry, keys={"openai": KEY_B})
    await a.start()
    await b.start()
    yield a, b
    await a.stop()
    await b.stop()


def routing(tmp_path: Path, text: str) -> dict[str, str]:
    path = tmp_path / "routing.yaml"
    path.write_text(text)
    return {"ROUTING_ENABLED": "true", "ROUTING_CONFIG_PATH": str(path)}


def two_regions(a: FakeProviders, b: FakeProviders) -> str:
    url_a, url_b = (f.url_for(f.registry["openai"]) for f in (a, b))
    return f"""
models:
  pool:
    deployments:
      - {{provider: openai, model: echo, name: a, api_url: "{url_a}", api_key_env: POOL_A_KEY}}
      - {{provider: openai, model: echo, name: b, url: "{url_b}", api_key: {KEY_B}}}
  leaky:
    deployments:
      - {{provider: openai, model: leak, name: a}}
      - {{provider: openai, model: leak, name: b}}
  leaky-vectors:
    deployments:
      - {{provider: openai, model: leak-error, name: b}}
  covered:
    deployments:
      - {{provider: openai, model: error-503, name: a}}
      - {{provider: openai, model: echo, name: b}}
"""


def chat_posts(fake: FakeProviders) -> list[str]:
    return [s.headers["authorization"] for s in fake.seen if s.path.endswith("/chat/completions")]


async def test_round_robin_reaches_each_deployment_with_its_own_key(
    gateway_with: GatewayFactory,
    replicas: tuple[FakeProviders, FakeProviders],
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    a, b = replicas
    port = free_port()
    env = {
        **routing(tmp_path, two_regions(a, b)),
        "POOL_A_KEY": KEY_A,
        "TELEMETRY_ENABLED": "true",
        "TELEMETRY_METRICS_PORT": str(port),
    }
    async with gateway_with(**env) as url, httpx.AsyncClient() as http:
        served = []
        for _ in range(4):
            raw = await sdk(url).chat.completions.with_raw_response.create(model="pool", messages=HI)
            assert raw.parse().choices[0].message.content == "You said: hi"
            served.append((raw.headers["x-selected-provider"], raw.headers["x-selected-model"]))
        assert served == [("openai@a", "echo"), ("openai@b", "echo")] * 2
        assert chat_posts(a) == [f"Bearer {KEY_A}"] * 2 and chat_posts(b) == [f"Bearer {KEY_B}"] * 2

        # Each deployment's key, quoted back by its upstream, is masked; neither reaches the client.
        for key in (KEY_A, KEY_B):
            raw = await sdk(url).chat.completions.with_raw_response.create(model="leaky", messages=HI)
            assert raw.parse().choices[0].message.content == f"Your key is Bearer {'*' * len(key)}"
            assert KEY_A not in raw.http_response.text and KEY_B not in str(raw.headers)
        stream = await sdk(url).chat.completions.create(model="leaky", messages=HI, stream=True)
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == f"Your key is Bearer {'*' * len(KEY_A)}"
        claude = anthropic.AsyncAnthropic(base_url=url, api_key="x", max_retries=0)
        message = await claude.messages.create(model="leaky", max_tokens=20, messages=HI)  # type: ignore[arg-type]
        assert message.content[0].type == "text" and message.content[0].text == text  # the same length of mask
        with pytest.raises(openai.RateLimitError) as refused:
            await sdk(url).embeddings.create(model="leaky-vectors", input="x")
        assert "*" * len(KEY_B) in refused.value.message and KEY_B not in str(refused.value.response.headers)

        # Its own health, metrics label, and no entry of its own in the model list.
        ready = (await http.get(f"{url}/ready")).json()
        assert ready["checks"]["aliases"]["pool"] == {"openai@a/echo": "ok", "openai@b/echo": "ok"}
        scraped = await scrape(port)
        assert scraped.value("polyrelay_alias_deployment_up", alias="pool", deployment="openai@b/echo") == 1
        assert "openai@a" in scraped.text and KEY_A not in scraped.text and KEY_B not in scraped.text
        ids = [m.id for m in (await sdk(url).models.list()).data]
        assert "pool" in ids and not any("@" in i for i in ids)
    for key in (KEY_A, KEY_B):
        assert key not in caplog.text


async def test_a_503_on_one_deployment_is_served_by_the_other(
    gateway_with: GatewayFactory, replicas: tuple[FakeProviders, FakeProviders], tmp_path: Path
) -> None:
    a, b = replicas
    async with gateway_with(**routing(tmp_path, two_regions(a, b)), POOL_A_KEY=KEY_A) as url:
        raw = await sdk(url).chat.completions.with_raw_response.create(model="covered", messages=HI)
        assert raw.parse().choices[0].message.content == "You said: hi"
        assert raw.headers["x-selected-provider"] == "openai@b"
    assert chat_posts(a) == [f"Bearer {KEY_A}"] and chat_posts(b) == [f"Bearer {KEY_B}"]


def load(tmp_path: Path, deployment: str, **env: str) -> Settings:
    text = f"models:\n  pool:\n    deployments:\n      - {deployment}\n"
    return Settings.load({"OPENAI_API_KEY": fake_key("openai"), **routing(tmp_path, text), **env})


@pytest.mark.parametrize(
    ("deployment", "said"),
    [
        ("{provider: openai, model: m, name: eu, api_key_env: NOT_SET_HERE}", "api_key_env names NOT_SET_HERE"),
        ("{provider: openai, model: m, api_url: 'http://h/v1'}", "needs a 'name'"),
        ("{provider: openai, model: m, name: eu, api_key: k1, api_key_env: K}", "not both"),
        ("{provider: openai, model: m, name: 'EU west', api_url: 'http://h/v1'}", "must be lowercase"),
        ("{provider: openai, model: m, name: eu}", "no api_url or key of its own"),
        ("{provider: openai, model: m, name: eu, api_url: 'ftp://h'}", "http(s) URL"),
        ("{provider: openai, model: m, region: eu}", "unknown field(s) ['region']"),
        ("{provider: anthropic, model: m, name: eu, api_url: 'http://h/v1'}", "needs a key"),
    ],
)
def test_a_bad_deployment_stops_start_up_saying_why(tmp_path: Path, deployment: str, said: str) -> None:
    with pytest.raises(SettingsError, match="alias 'pool'") as caught:
        load(tmp_path, deployment)
    assert said in str(caught.value)


def test_a_deployment_with_its_own_key_needs_no_provider_key(tmp_path: Path) -> None:
    text = "models:\n  pool:\n    deployments:\n      - {provider: mistral, model: m, name: x, api_key_env: MY_KEY}\n"
    settings = Settings.load({**routing(tmp_path, text), "MY_KEY": "secret-of-x-123"})
    (upstream,) = settings.aliases.upstreams.values()
    assert upstream.name == "mistral@x" and upstream.secrets == ("secret-of-x-123",)
    assert "secret-of-x-123" not in repr(upstream) and not settings.providers["mistral"].configured


ALIAS_RETRIES = """
models:
  patient: {{retries: 2, deployments: [{{provider: openai, model: m}}]}}
  hasty: {{retries: 0, deployments: [{{provider: openai, model: n}}]}}
"""


@pytest_asyncio.fixture
async def flaky() -> AsyncIterator[Flaky]:
    server = Flaky()
    await server.start()
    yield server
    await server.runner.cleanup()


async def test_an_alias_sets_its_own_retries(gateway_with: GatewayFactory, flaky: Flaky, tmp_path: Path) -> None:
    busy = ("status", (503, None))
    env = {**routing(tmp_path, ALIAS_RETRIES.format()), "OPENAI_API_URL": flaky.url}
    async with gateway_with(**env, UPSTREAM_RETRIES="0") as url:
        flaky.script = [busy, busy]  # no retries for the provider, two for the alias
        answer = await sdk(url).chat.completions.create(model="patient", messages=HI)
        assert answer.choices[0].message.content == "at last" and len(flaky.bodies) == 3
        flaky.script = [busy]
        with pytest.raises(openai.InternalServerError):  # the provider named directly: not retried
            await sdk(url).chat.completions.create(model="openai/m", messages=HI)
        assert len(flaky.bodies) == 4
    async with gateway_with(**env, UPSTREAM_RETRIES="2") as url:
        flaky.script = [busy]  # the provider's two retries, none for this alias
        with pytest.raises(openai.InternalServerError):
            await sdk(url).chat.completions.create(model="hasty", messages=HI)
        assert len(flaky.bodies) == 5


def test_an_alias_retries_must_be_a_count(tmp_path: Path) -> None:
    text = "models:\n  pool: {retries: -1, deployments: [{provider: openai, model: m}]}\n"
    with pytest.raises(SettingsError, match="'retries' must be a whole number"):
        Settings.load({"OPENAI_API_KEY": fake_key("openai"), **routing(tmp_path, text)})


CONFIG = """
routing:
  enabled: true
  models:
    eu:
      strategy: priority
      retries: 1
      deployments:
        - {provider: openai, model: gpt-4o, name: team-a, api_key_env: OPENAI_TEAM_A_KEY}
        - {provider: openai, model: gpt-4o, name: team-b, api_key_env: OPENAI_TEAM_B_KEY}
        - {provider: ollama, model: llama3.3, name: gpu-1, api_url: "http://10.0.0.1:11434/v1"}
"""


def test_the_config_file_holds_aliases_with_their_deployments(tmp_path: Path) -> None:
    path = tmp_path / "gateway.yaml"
    path.write_text(CONFIG)
    keys = {"OPENAI_TEAM_A_KEY": "sk-team-a-0123456789", "OPENAI_TEAM_B_KEY": "sk-team-b-0123456789"}
    settings = Settings.load(keys, config_file=path)
    alias = settings.aliases["eu"]
    assert alias.strategy == "priority" and alias.retries == 1
    assert [t.upstream for t in alias.targets] == ["openai@team-a", "openai@team-b", "ollama@gpu-1"]
    upstreams = settings.aliases.upstreams
    assert upstreams["openai@team-b"].url == settings.providers["openai"].url  # its key only
    assert upstreams["openai@team-a"].secrets == ("sk-team-a-0123456789",)
    assert upstreams["ollama@gpu-1"].url == "http://10.0.0.1:11434/v1" and not upstreams["ollama@gpu-1"].secrets
    assert [p.name for p in settings.upstreams] == ["ollama", "openai@team-a", "openai@team-b", "ollama@gpu-1"]
    both = {**keys, "ROUTING_CONFIG_PATH": str(path)}
    with pytest.raises(SettingsError, match="not both"):
        Settings.load(both, config_file=path)
