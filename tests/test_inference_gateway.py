"""Coming from inference-gateway: its environment, held as data against polyrelay's settings.

The inventory (config/inference_gateway.yaml) lists every variable inference-gateway reads; these
tests hold it against gateway/settings.py and the README (neither can drift from it), check that
each refusal and notice happens as the data says, start a real gateway with an inference-gateway
deployment's .env, and put slow upstreams behind the timeouts such a deployment tuned.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest
import pytest_asyncio
import yaml
from aiohttp import web

from gateway import Settings
from gateway.inference_gateway import Variable, load_inventory
from gateway.settings import SETTINGS, SettingsError
from providers.registry import load_registry

from .conftest import GatewayFactory, serve
from .fakes import FakeProviders, fake_key

ROOT = Path(__file__).parent.parent
README = (ROOT / "README.md").read_text()
INVENTORY = load_inventory()
REGISTRY = load_registry()
ENV_FILE = Path(__file__).parent / "data" / "inference_gateway.env"
HELLO = [{"role": "user", "content": "hello"}]

POLYRELAY_NAMES = {name: var for var in SETTINGS for name in (var.name, *var.aliases)}


def read_env(path: Path) -> dict[str, str]:
    """A docker-compose .env: NAME=value lines, # comments."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line.strip() and not line.startswith("#"))
    return {name.strip(): value.strip() for name, value in pairs}


def section(title: str) -> str:
    start = README.index(f"\n## {title}\n")
    end = README.find("\n## ", start + 1)
    return README[start:end]


def table_rows(text: str) -> dict[str, list[str]]:
    """The first-column names of a markdown table (backquoted, the first one) -> the row's cells."""
    rows = {}
    for line in text.splitlines():
        if line.startswith("| `"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            rows[cells[0].split("`")[1]] = cells
    return rows


# -- the inventory against the settings and the README -------------------------------------------


@pytest.mark.parametrize("var", INVENTORY.variables.values(), ids=lambda v: v.name)
def test_what_polyrelay_honours_is_a_setting_and_what_it_refuses_is_not(var: Variable) -> None:
    read_here = POLYRELAY_NAMES.get(var.name)
    if var.polyrelay in ("same", "differs"):
        assert read_here is not None, f"{var.name} is '{var.polyrelay}' but no Var in gateway/settings.py reads it"
        if var.alias_of:
            assert read_here.name == var.alias_of, f"{var.name} should be an alias of {var.alias_of}"
        else:
            assert read_here.name == var.name
        if var.polyrelay == "same" and not var.alias_of:
            # Same default, compared as inference-gateway would read it (30s is 30000ms).
            assert var.takes(read_here.default) and Variable(var.name, read_here.default, "", "same").takes(
                var.default
            ), f"{var.name}: default {read_here.default!r} here, {var.default!r} there"
    else:
        # A variable polyrelay now reads must be declared honoured, with how it differs if it does.
        assert read_here is None, f"polyrelay reads {var.name}; the inventory must say same or differs"


def test_every_honoured_variable_is_in_the_readme_configuration_table() -> None:
    rows = table_rows(section("Configuration"))
    documented = set(rows) | {alias for cells in rows.values() for alias in re.findall(r"also `(\w+)`", cells[0])}
    honoured = {v.name for v in INVENTORY.variables.values() if v.polyrelay in ("same", "differs")}
    assert honoured <= documented, f"README configuration table lacks {sorted(honoured - documented)}"
    assert {var.name for var in SETTINGS} <= set(rows), "every Var has its row"


def test_the_readme_table_of_inference_gateway_variables_is_the_inventory() -> None:
    rows = table_rows(section("Coming from inference-gateway"))
    listed = {name: cells for name, cells in rows.items() if name in INVENTORY.variables or "_" in name}
    assert set(listed) >= set(INVENTORY.variables), f"missing: {sorted(set(INVENTORY.variables) - set(listed))}"
    for name, var in INVENTORY.variables.items():
        default, status = listed[name][1], listed[name][2]
        assert status == var.polyrelay, f"{name}: the README says {status}, the inventory {var.polyrelay}"
        assert default == (f"`{var.default}`" if var.default else ""), name


def test_the_kept_env_file_names_only_variables_of_the_inventory() -> None:
    env = read_env(ENV_FILE)
    prefixes = {pid.upper() for pid in INVENTORY.providers}
    unknown = [name for name in env if name not in INVENTORY.variables and name.rsplit("_API_", 1)[0] not in prefixes]
    assert not unknown


def test_providers_both_gateways_know_have_the_same_urls() -> None:
    for pid, url in INVENTORY.providers.items():
        if pid in REGISTRY and url is not None:
            # Gemini: polyrelay speaks its native API; the OpenAI-compatible path under it is accepted.
            assert url.removesuffix("/openai") == REGISTRY[pid].url, pid


def test_the_inventory_is_shipped_and_every_entry_says_why() -> None:
    document = yaml.safe_load((ROOT / "config" / "inference_gateway.yaml").read_text())
    assert document["version"] == "v0.48.2"
    assert '"config/inference_gateway.yaml" = "gateway/inference_gateway.yaml"' in (ROOT / "pyproject.toml").read_text()
    for var in INVENTORY.variables.values():
        assert var.meaning, var.name
        assert var.polyrelay == "same" or len(var.note) > 20, var.name


# -- refusals and notices, as the data says ----------------------------------------------------


def other_value(var: Variable) -> str:
    return {"bool": "false" if var.default == "true" else "true", "int": "7", "duration": "1h7s"}.get(
        var.kind, "zz-other"
    )


REFUSED = [v for v in INVENTORY.variables.values() if v.polyrelay == "refused"]
DIFFERS = [v for v in INVENTORY.variables.values() if v.polyrelay == "differs"]


@pytest.mark.parametrize("var", REFUSED, ids=lambda v: v.name)
def test_a_refused_variable_stops_start_up_saying_what_polyrelay_does_instead(var: Variable) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.load({var.name: other_value(var)})
    assert f"{var.name}=" in str(refused.value) and var.note in str(refused.value)
    for harmless in ("", *(var.accepts or (var.default,))):
        Settings.load({var.name: harmless})


def test_defaults_compare_as_inference_gateway_reads_them() -> None:
    Settings.load({"MCP_DIAL_TIMEOUT": "3000ms", "GUARDRAILS_ENABLED": "0", "A2A_MAX_RETRIES": " 3 "})
    with pytest.raises(SettingsError, match="MCP_DIAL_TIMEOUT='4s'"):
        Settings.load({"MCP_DIAL_TIMEOUT": "4s"})


def test_every_refusal_is_named_at_once() -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.load({"VIDEOS_ENABLED": "true", "AUDIO_LOCAL_TIMEOUT": "60", "ENABLE_AUTH": "true"})
    named = [line.split("=")[0].strip() for line in str(refused.value).splitlines()[1:]]
    assert sorted(named) == ["AUDIO_LOCAL_TIMEOUT", "ENABLE_AUTH", "VIDEOS_ENABLED"]


@pytest.mark.parametrize("var", DIFFERS, ids=lambda v: v.name)
def test_a_variable_that_differs_is_honoured_with_a_notice(var: Variable) -> None:
    value = var.default or "http://issuer.example"
    if var.name in ("AUTH_OIDC_ISSUER", "AUTH_OIDC_CLIENT_ID"):
        env = {"AUTH_OIDC_ISSUER": "http://issuer.example", "AUTH_OIDC_CLIENT_ID": "polyrelay"}
    else:
        env = {var.name: value}
    settings = Settings.load(env)
    (notice,) = [n for n in settings.notices if n.startswith(f"{var.name} ")]
    assert var.note in notice and "\n" not in notice
    assert not Settings.load({}).notices


def test_a_provider_polyrelay_lacks_is_refused_with_how_to_add_it(tmp_path: Path) -> None:
    assert "vllm" not in REGISTRY
    Settings.load({"VLLM_API_URL": INVENTORY.providers["vllm"] or "", "VLLM_API_KEY": ""})  # the examples' lines
    with pytest.raises(SettingsError) as refused:
        Settings.load({"VLLM_API_KEY": "sk-vllm-secret"})
    message = str(refused.value)
    assert "'vllm'" in message and "PROVIDERS_REGISTRY" in message and "sk-vllm-secret" not in message
    with pytest.raises(SettingsError, match="VLLM_API_KEY"):
        Settings.load({"VLLM_API_URL": "http://my-vllm:8000/v1"})

    # Doing what the message says makes the same environment start, the provider configured.
    registry = yaml.safe_load((ROOT / "config" / "providers.yaml").read_text())
    registry["providers"]["vllm"] = {"url": INVENTORY.providers["vllm"]}
    (tmp_path / "providers.yaml").write_text(yaml.safe_dump(registry))
    settings = Settings.load({"VLLM_API_KEY": "sk-vllm-secret", "PROVIDERS_REGISTRY": str(tmp_path / "providers.yaml")})
    assert settings.providers["vllm"].configured


def test_qwen_is_in_the_registry_at_inference_gateways_url() -> None:
    settings = Settings.load({"QWEN_API_KEY": "sk-qwen"})
    assert settings.providers["qwen"].configured and settings.providers["qwen"].url == INVENTORY.providers["qwen"]


# -- an inference-gateway deployment's .env starts polyrelay ----------------------------------


def deployment_env(fake: FakeProviders) -> dict[str, str]:
    """The kept .env as a deployment would run it: its keys filled in, the providers at the fakes
    (Gemini's at the OpenAI-compatible path inference-gateway uses by default)."""
    env = read_env(ENV_FILE)
    for pid in ("openai", "anthropic", "google", "ollama"):
        prefix = REGISTRY[pid].env_prefix
        env[f"{prefix}_API_URL"] = fake.url_for(REGISTRY[pid]) + ("/openai" if pid == "google" else "")
        env[f"{prefix}_API_KEY"] = fake_key(pid) if REGISTRY[pid].needs_key else ""
    return env


async def test_the_env_of_an_inference_gateway_deployment_starts_polyrelay(
    fake: FakeProviders, caplog: pytest.LogCaptureFixture
) -> None:
    env = deployment_env(fake)
    settings = Settings.load(env)
    assert [p.id for p in settings.configured_providers] == ["openai", "anthropic", "ollama", "google"]
    assert settings.upstream_timeout == 45  # its raised server timeouts bound upstream calls
    with caplog.at_level(logging.INFO, logger="polyrelay"):
        async with serve(settings) as url:
            client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
            models = await client.models.list()
            assert {m.id.split("/")[0] for m in models.data} == {"openai", "anthropic", "ollama", "google"}
            assert all(getattr(m, "served_by", None) == m.id.split("/")[0] for m in models.data)
            for model in ("openai/echo", "anthropic/echo", "google/echo"):
                answer = await client.chat.completions.create(model=model, messages=HELLO)  # type: ignore[arg-type]
                assert answer.choices[0].message.content == "You said: hello", model
            stream = await client.chat.completions.create(model="openai/echo", messages=HELLO, stream=True)  # type: ignore[arg-type]
            text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
            assert text == "You said: hello"
            async with httpx.AsyncClient() as http:
                assert (await http.get(f"{url}/health")).json() == {"message": "OK"}
                assert (await http.get(f"{url}/v1/mcp/tools")).status_code == 403  # MCP_EXPOSE=false there too
    logged = [r.getMessage() for r in caplog.records]
    assert any(line.startswith("SERVER_READ_TIMEOUT is set;") for line in logged)
    assert not any("key-" in line for line in logged)


# -- timeouts: a deployment tuned for slow models there works here ----------------------------

DELAY = 1.0


@pytest_asyncio.fixture(scope="module")
async def slow_upstream() -> AsyncIterator[str]:
    """An OpenAI-compatible upstream that takes DELAY seconds to answer a chat (before the JSON
    answer; a stream gets its headers at once and its first event after DELAY)."""

    async def chat(request: web.Request) -> web.StreamResponse:
        payload = await request.json()
        chunk = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": payload["model"]}
        if payload.get("stream"):
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            await asyncio.sleep(DELAY)
            delta = {**chunk, "choices": [{"index": 0, "delta": {"content": "late"}, "finish_reason": "stop"}]}
            with contextlib.suppress(ConnectionResetError):  # a gateway that gave up has closed it
                await response.write(f"data: {json.dumps(delta, separators=(',', ':'))}\n\ndata: [DONE]\n\n".encode())
            return response
        await asyncio.sleep(DELAY)
        message = {"role": "assistant", "content": "late"}
        return web.json_response(
            {
                **chunk,
                "object": "chat.completion",
                "choices": [{"index": 0, "message": message, "finish_reason": "stop"}],
            }
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", chat)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/v1"
    await runner.cleanup()


async def ask(url: str, *, stream: bool = False) -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as http:
        body = {"model": "openai/slow-model", "messages": HELLO, "stream": stream}
        return await http.post(f"{url}/v1/chat/completions", json=body)


@pytest.mark.parametrize(
    ("tuned", "status"),
    [
        ({}, 504),  # CLIENT_TIMEOUT alone bounds the call, as before
        ({"SERVER_READ_TIMEOUT": "3s"}, 200),
        ({"SERVER_WRITE_TIMEOUT": "3s"}, 200),
        ({"CLIENT_RESPONSE_HEADER_TIMEOUT": "3s"}, 200),
        ({"SERVER_WRITE_TIMEOUT": "0"}, 200),  # 0: no bound, there as here
    ],
)
async def test_the_largest_bound_a_deployment_set_applies_to_a_slow_answer(
    gateway_with: GatewayFactory, slow_upstream: str, tuned: dict[str, str], status: int
) -> None:
    async with gateway_with(OPENAI_API_URL=slow_upstream, CLIENT_TIMEOUT="300ms", **tuned) as url:
        answer = await ask(url)
    assert answer.status_code == status
    if status == 200:
        assert answer.json()["choices"][0]["message"]["content"] == "late"
    else:
        assert answer.json()["error"]["code"] == "upstream_timeout"


async def test_a_slow_stream_is_bounded_by_its_silence(gateway_with: GatewayFactory, slow_upstream: str) -> None:
    async with gateway_with(OPENAI_API_URL=slow_upstream, SERVER_WRITE_TIMEOUT="3s", CLIENT_TIMEOUT="300ms") as url:
        patient = await ask(url, stream=True)
    async with gateway_with(OPENAI_API_URL=slow_upstream, SERVER_WRITE_TIMEOUT="300ms") as url:
        hasty = await ask(url, stream=True)
    assert '"content":"late"' in patient.text and '"error"' not in patient.text
    assert '"upstream_timeout"' in hasty.text and hasty.text.endswith("data: [DONE]\n\n")


# -- DEFAULT_MAX_TOKENS ---------------------------------------------------------------------------


async def test_default_max_tokens_is_read_from_the_environment(
    gateway_with: GatewayFactory, fake: FakeProviders
) -> None:
    assert Settings.load({}).default_max_tokens == 4096
    with pytest.raises(SettingsError, match="DEFAULT_MAX_TOKENS"):
        Settings.load({"DEFAULT_MAX_TOKENS": "0"})
    async with gateway_with(DEFAULT_MAX_TOKENS="77") as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0)
        await client.chat.completions.create(model="anthropic/echo", messages=HELLO)  # type: ignore[arg-type]
    assert fake.last("/messages").json["max_tokens"] == 77
