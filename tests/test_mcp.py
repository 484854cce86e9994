"""MCP end to end: real MCP servers (streamable HTTP stateful and stateless, SSE-only), fake LLMs
that call the tools named in the prompt, the gateway in between, the openai SDK as the client."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
import pytest_asyncio

from .conftest import GatewayFactory
from .fakes import FakeProviders
from .mcp_servers import TOKEN, MCPTestServer

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


@pytest_asyncio.fixture(scope="module")
async def servers() -> AsyncIterator[dict[str, MCPTestServer]]:
    started = {
        "main": await MCPTestServer("stateful", token=True).start(),
        "calc": await MCPTestServer("stateless", prefix="calc_").start(),
        "legacy": await MCPTestServer("sse", prefix="old_").start(),
    }
    yield started
    for server in started.values():
        await server.stop()


def mcp_env(servers: dict[str, MCPTestServer], **extra: str) -> dict[str, str]:
    return {
        "MCP_ENABLED": "true",
        "MCP_EXPOSE": "true",
        "MCP_SERVERS": ",".join(f"{name}={server.url}" for name, server in servers.items()),
        "MCP_SERVER_HEADERS": json.dumps({"main": {"Authorization": f"Bearer {TOKEN}"}}),
        "MCP_REQUEST_TIMEOUT": "2s",  # a loaded machine can take a second over a call; the slow tool sleeps 3 s
        "MCP_RECONNECT_INTERVAL": "200ms",
        "MCP_RECONNECT_MAX_INTERVAL": "1s",
        "MCP_POLLING_INTERVAL": "200ms",
        "MCP_POLLING_TIMEOUT": "1s",
        "MCP_MAX_RESULT_BYTES": "1000",
        "MCP_MAX_ITERATIONS": "3",
        **extra,
    }


async def tools_of(url: str, count: int | None = None) -> list[dict[str, Any]]:
    """The gateway's MCP tools, once ``count`` of them are there (servers connect in the background)."""
    async with httpx.AsyncClient() as http:
        for _ in range(300):
            data = (await http.get(f"{url}/v1/mcp/tools")).json()["data"]
            if count is None or len(data) == count:
                return data
            await asyncio.sleep(0.02)
    raise AssertionError(f"expected {count} tools, have {len(data)}")


@pytest_asyncio.fixture(scope="module")
async def gateway_mcp(gateway_with: GatewayFactory, servers: dict[str, MCPTestServer]) -> AsyncIterator[str]:
    async with gateway_with(**mcp_env(servers)) as url:
        await tools_of(url, 15)
        yield url


def sdk(url: str, **kwargs: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, **kwargs)


def ask(prompt: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": prompt}]


async def test_tools_of_every_server_and_transport_are_listed(gateway_mcp: str) -> None:
    tools = {t["name"]: t for t in await tools_of(gateway_mcp, 15)}
    assert {"mcp_add", "mcp_calc_add", "mcp_old_add", "mcp_big", "mcp_old_sleep"} <= set(tools)
    assert tools["mcp_add"]["server"] == "main" and tools["mcp_old_echo"]["server"] == "legacy"
    assert tools["mcp_add"]["description"] == "Add two integers."
    assert set(tools["mcp_calc_add"]["input_schema"]["properties"]) == {"a", "b"}


async def test_tools_are_merged_with_the_clients(gateway_mcp: str, fake: FakeProviders) -> None:
    await sdk(gateway_mcp).chat.completions.create(model="openai/echo", messages=ask("hi"), tools=[WEATHER])  # type: ignore[arg-type]
    names = [t["function"]["name"] for t in fake.last_post("openai").json["tools"]]
    assert names[0] == "get_weather" and "mcp_add" in names and len(names) == 16


async def test_a_call_runs_and_the_model_answers_with_its_result(gateway_mcp: str, fake: FakeProviders) -> None:
    answer = await sdk(gateway_mcp).chat.completions.create(
        model="openai/agent",
        messages=ask('call mcp_add {"a": 2, "b": 3}'),  # type: ignore[arg-type]
    )
    assert answer.choices[0].message.content == "Done: 5" and answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and (answer.usage.prompt_tokens, answer.usage.total_tokens) == (22, 36)
    second = fake.last_post("openai").json["messages"]
    assert second[1]["tool_calls"][0]["function"]["name"] == "mcp_add"
    assert second[2] == {"role": "tool", "tool_call_id": second[1]["tool_calls"][0]["id"], "content": "5"}


async def test_parallel_calls_across_transports(gateway_mcp: str) -> None:
    prompt = 'call mcp_add {"a": 2, "b": 3}; call mcp_calc_echo {"text": "hi"}; call mcp_old_add {"a": 3, "b": 4}'
    answer = await sdk(gateway_mcp).chat.completions.create(model="openai/agent", messages=ask(prompt))  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "Done: 5 | hi | 7"


@pytest.mark.parametrize(
    ("prompt", "expected"),
    [
        ("call mcp_fail {}", "Done: Error: Error executing tool fail: this tool always fails"),
        ('call mcp_sleep {"seconds": 3}', "Done: Error: "),
        ("call mcp_add {not json", "Done: Error: The arguments for mcp_add are not valid JSON."),
    ],
    ids=["is-error", "timeout", "bad-arguments"],
)
async def test_failures_are_results_the_model_reads(gateway_mcp: str, prompt: str, expected: str) -> None:
    answer = await sdk(gateway_mcp).chat.completions.create(model="openai/agent", messages=ask(prompt))  # type: ignore[arg-type]
    assert (answer.choices[0].message.content or "").startswith(expected)


async def test_large_results_are_capped(gateway_mcp: str, fake: FakeProviders) -> None:
    await sdk(gateway_mcp).chat.completions.create(model="openai/agent", messages=ask('call mcp_big {"n": 5000}'))  # type: ignore[arg-type]
    result = fake.last_post("openai").json["messages"][-1]["content"]
    assert result.startswith("x" * 1000) and "cut to 1000 of 5000 bytes" in result


async def test_one_stream_across_iterations(gateway_mcp: str) -> None:
    stream = await sdk(gateway_mcp).chat.completions.create(
        model="openai/agent",
        messages=ask('call mcp_add {"a": 2, "b": 3}; call mcp_old_echo {"text": "yo"}'),
        stream=True,
        stream_options={"include_usage": True},  # type: ignore[arg-type]
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    extras = [c.choices[0].delta.model_extra or {} for c in chunks if c.choices]
    calls = [e["mcp_tool_call"]["name"] for e in extras if "mcp_tool_call" in e]
    results = [e["mcp_tool_result"]["content"] for e in extras if "mcp_tool_result" in e]
    assert text == "Done: 5 | yo" and calls == ["mcp_add", "mcp_old_echo"] and results == ["5", "yo"]
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["stop"]
    assert not any(c.choices[0].delta.tool_calls for c in chunks if c.choices)
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 36
    assert len({c.id for c in chunks}) == 1


async def test_the_stream_has_one_done(gateway_mcp: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{gateway_mcp}/v1/chat/completions",
            json={"model": "openai/agent", "messages": ask('call mcp_add {"a": 1, "b": 1}'), "stream": True},
        )
    assert response.text.count("data: [DONE]") == 1 and response.text.endswith("data: [DONE]\n\n")


@pytest.mark.parametrize("stream", [False, True])
async def test_client_tool_calls_go_back_alone(gateway_mcp: str, fake: FakeProviders, stream: bool) -> None:
    prompt = 'call get_weather {"city": "Paris"}; call mcp_add {"a": 1, "b": 2}'
    before = len(fake.seen)
    client = sdk(gateway_mcp)
    if stream:
        chunks = [
            c
            async for c in await client.chat.completions.create(
                model="openai/agent", messages=ask(prompt), tools=[WEATHER], stream=True
            )
        ]  # type: ignore[arg-type]
        calls = [t for c in chunks if c.choices for t in c.choices[0].delta.tool_calls or []]
        assert [(t.index, t.function.name) for t in calls if t.function] == [(0, "get_weather")]
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
    else:
        answer = await client.chat.completions.create(model="openai/agent", messages=ask(prompt), tools=[WEATHER])  # type: ignore[arg-type]
        assert [c.function.name for c in answer.choices[0].message.tool_calls or []] == ["get_weather"]
        assert answer.choices[0].finish_reason == "tool_calls"
    assert len([s for s in fake.seen[before:] if s.method == "POST"]) == 1  # no second model call


@pytest.mark.parametrize("stream", [False, True])
async def test_the_iteration_limit(gateway_mcp: str, fake: FakeProviders, stream: bool) -> None:
    before = len(fake.seen)
    client = sdk(gateway_mcp)
    prompt = ask('call mcp_add {"a": 1, "b": 1}')
    if stream:
        chunks = [
            c
            async for c in await client.chat.completions.create(model="openai/agent-loop", messages=prompt, stream=True)
        ]  # type: ignore[arg-type]
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"
    else:
        answer = await client.chat.completions.create(model="openai/agent-loop", messages=prompt)  # type: ignore[arg-type]
        assert answer.choices[0].finish_reason == "length" and not answer.choices[0].message.tool_calls
    assert len([s for s in fake.seen[before:] if s.method == "POST"]) == 3  # MCP_MAX_ITERATIONS


@pytest.mark.parametrize("stream", [False, True])
async def test_anthropic_native_through_mcp(gateway_mcp: str, stream: bool) -> None:
    client = sdk(gateway_mcp)
    prompt = ask('call mcp_add {"a": 20, "b": 22}; call mcp_calc_add {"a": 1, "b": 1}')
    if stream:
        chunks = [
            c async for c in await client.chat.completions.create(model="anthropic/agent", messages=prompt, stream=True)
        ]  # type: ignore[arg-type]
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Done: 42 | 2"
    else:
        answer = await client.chat.completions.create(model="anthropic/agent", messages=prompt)  # type: ignore[arg-type]
        assert answer.choices[0].message.content == "Done: 42 | 2"


@pytest.mark.parametrize("value", ["true", "1", "yes"])  # any non-empty value, as inference-gateway
async def test_bypass_header(gateway_mcp: str, fake: FakeProviders, value: str) -> None:
    client = sdk(gateway_mcp, default_headers={"X-MCP-Bypass": value})
    await client.chat.completions.create(model="openai/echo", messages=ask("hi"), tools=[WEATHER])  # type: ignore[arg-type]
    assert [t["function"]["name"] for t in fake.last_post("openai").json["tools"]] == ["get_weather"]
    await client.chat.completions.create(model="openai/echo", messages=ask("hi"))  # type: ignore[arg-type]
    assert "tools" not in fake.last_post("openai").json
    await sdk(gateway_mcp).chat.completions.create(model="openai/echo", messages=ask("hi"))  # type: ignore[arg-type]
    assert "tools" in fake.last_post("openai").json  # without the header, MCP's tools are offered


async def availability(url: str, server: str, up: bool) -> None:
    for _ in range(300):
        tools = await tools_of(url)
        if all(t["available"] is up for t in tools if t["server"] == server):
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{server} never became {'available' if up else 'unavailable'}")


async def test_server_killed_mid_run_and_restarted(gateway_mcp: str, servers: dict[str, MCPTestServer]) -> None:
    client = sdk(gateway_mcp)
    prompt = ask('call mcp_add {"a": 2, "b": 3}')
    await servers["main"].kill()
    try:
        answer = await client.chat.completions.create(model="openai/agent", messages=prompt)  # type: ignore[arg-type]
        assert (answer.choices[0].message.content or "").startswith("Done: Error: ")  # a result, not a failure
        await availability(gateway_mcp, "main", up=False)
        assert len(await tools_of(gateway_mcp)) == 15  # its tools stay on offer meanwhile
        answer = await client.chat.completions.create(model="openai/agent", messages=prompt)  # type: ignore[arg-type]
        assert "'main' that provides add is unavailable" in (answer.choices[0].message.content or "")
    finally:
        await servers["main"].start()
    await availability(gateway_mcp, "main", up=True)
    answer = await client.chat.completions.create(model="openai/agent", messages=prompt)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "Done: 5"


async def test_the_callers_token_never_reaches_mcp_servers(
    gateway_with: GatewayFactory, servers: dict[str, MCPTestServer]
) -> None:
    caller = "pr-caller-key-that-must-stay-home"
    import hashlib

    env = mcp_env(servers, AUTH_ENABLED="true", AUTH_API_KEYS=f"caller:{hashlib.sha256(caller.encode()).hexdigest()}")
    async with gateway_with(**env) as url:
        async with httpx.AsyncClient() as http:
            for _ in range(300):
                tools = (await http.get(f"{url}/v1/mcp/tools", headers={"Authorization": f"Bearer {caller}"})).json()
                if len(tools["data"]) == 15:
                    break
                await asyncio.sleep(0.02)
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=caller, max_retries=0)
        answer = await client.chat.completions.create(
            model="openai/agent", messages=ask('call mcp_add {"a": 1, "b": 1}; call mcp_calc_add {"a": 1, "b": 1}')
        )  # type: ignore[arg-type]
        assert answer.choices[0].message.content == "Done: 2 | 2"
    seen = [a for server in servers.values() for a in server.authorizations]
    assert seen and not any(caller.encode() in a for a in seen)
    assert set(servers["main"].authorizations) == {f"Bearer {TOKEN}".encode()}


async def test_include_and_exclude(gateway_with: GatewayFactory, servers: dict[str, MCPTestServer]) -> None:
    async with gateway_with(**mcp_env(servers, MCP_INCLUDE_TOOLS="mcp_add,calc_echo")) as url:
        assert sorted(t["name"] for t in await tools_of(url, 2)) == ["mcp_add", "mcp_calc_echo"]
    # In any case, with or without the mcp_ prefix, as inference-gateway matches them.
    async with gateway_with(**mcp_env(servers, MCP_INCLUDE_TOOLS="ADD, MCP_Calc_Echo")) as url:
        assert sorted(t["name"] for t in await tools_of(url, 2)) == ["mcp_add", "mcp_calc_echo"]
    async with gateway_with(**mcp_env(servers, MCP_EXCLUDE_TOOLS="big,mcp_old_big,sleep")) as url:
        names = {t["name"] for t in await tools_of(url, 12)}
        assert "mcp_big" not in names and "mcp_old_big" not in names and "mcp_calc_big" in names


async def test_name_collisions_are_disambiguated(
    gateway_with: GatewayFactory, servers: dict[str, MCPTestServer]
) -> None:
    twins = {"alpha": servers["calc"], "beta": servers["calc"]}
    async with gateway_with(**mcp_env(twins)) as url:
        names = sorted(t["name"] for t in await tools_of(url, 10))
        assert names[:2] == ["mcp_alpha_calc_add", "mcp_alpha_calc_big"] and "mcp_beta_calc_sleep" in names
        answer = await sdk(url).chat.completions.create(
            model="openai/agent", messages=ask('call mcp_beta_calc_add {"a": 4, "b": 4}')
        )  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "Done: 8"


async def test_a_server_down_at_start_up_does_not_stop_the_gateway(
    gateway_with: GatewayFactory, servers: dict[str, MCPTestServer]
) -> None:
    env = mcp_env({"gone": MCPTestServer("stateful"), "calc": servers["calc"]})  # never started
    async with gateway_with(**env) as url:
        assert len(await tools_of(url, 5)) == 5
        answer = await sdk(url).chat.completions.create(
            model="openai/agent", messages=ask('call mcp_calc_add {"a": 1, "b": 2}')
        )  # type: ignore[arg-type]
        assert answer.choices[0].message.content == "Done: 3"


async def test_the_tool_list_route_is_403_unless_exposed(
    gateway_with: GatewayFactory, servers: dict[str, MCPTestServer]
) -> None:
    async with gateway_with(**mcp_env(servers, MCP_EXPOSE="false")) as url, httpx.AsyncClient() as http:
        response = await http.get(f"{url}/v1/mcp/tools")
    assert response.status_code == 403 and response.json()["error"]["code"] == "mcp_not_exposed"


async def test_the_tool_list_is_empty_when_exposed_with_mcp_off(gateway_with: GatewayFactory) -> None:
    async with gateway_with(MCP_EXPOSE="true") as url, httpx.AsyncClient() as http:
        response = await http.get(f"{url}/v1/mcp/tools")
    assert response.status_code == 200 and response.json() == {"object": "list", "data": []}


async def test_streams_without_the_space_after_data(gateway_mcp: str) -> None:
    stream = await sdk(gateway_mcp).chat.completions.create(
        model="openai/agent-tight",
        messages=ask('call mcp_add {"a": 2, "b": 2}'),
        stream=True,  # type: ignore[arg-type]
    )
    assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == "Done: 4"


async def test_selector_mode_offers_two_meta_tools_that_find_and_run_the_others(
    gateway_with: GatewayFactory, servers: dict[str, MCPTestServer], fake: FakeProviders
) -> None:
    async with gateway_with(**mcp_env(servers, MCP_TOOL_MODE="selector")) as url:
        await tools_of(url, 15)
        client = sdk(url)
        found = await client.chat.completions.create(
            model="openai/agent", messages=ask('call mcp_tools_get {"query": "add"}'), tools=[WEATHER]
        )  # type: ignore[arg-type]
        offered = [t["function"]["name"] for t in fake.last_post("openai").json["tools"]]
        assert offered == ["get_weather", "mcp_tools_get", "mcp_tools_execute"]
        catalog = json.loads((found.choices[0].message.content or "").removeprefix("Done: "))
        names = {t["name"] for t in catalog["tools"]}
        assert {"mcp_add", "mcp_calc_add", "mcp_old_add"} <= names and "mcp_echo" not in names
        assert all("input_schema" not in t for t in catalog["tools"])

        detailed = await client.chat.completions.create(
            model="openai/agent", messages=ask('call mcp_tools_get {"names": ["ADD"]}')
        )  # type: ignore[arg-type]
        entries = json.loads((detailed.choices[0].message.content or "").removeprefix("Done: "))["tools"]
        assert [t["name"] for t in entries] == ["mcp_add"]
        assert set(entries[0]["input_schema"]["properties"]) == {"a", "b"}

        ran = await client.chat.completions.create(
            model="openai/agent",
            messages=ask('call mcp_tools_execute {"name": "mcp_calc_add", "arguments": {"a": 20, "b": 22}}'),
        )  # type: ignore[arg-type]
        assert ran.choices[0].message.content == "Done: 42"
        missing = await client.chat.completions.create(
            model="openai/agent", messages=ask('call mcp_tools_execute {"name": "mcp_nothing"}')
        )  # type: ignore[arg-type]
        assert "There is no tool named 'mcp_nothing'" in (missing.choices[0].message.content or "")


async def test_selector_mode_keeps_the_filters(gateway_with: GatewayFactory, servers: dict[str, MCPTestServer]) -> None:
    async with gateway_with(**mcp_env(servers, MCP_TOOL_MODE="selector", MCP_EXCLUDE_TOOLS="add")) as url:
        await tools_of(url, 14)
        refused = await sdk(url).chat.completions.create(
            model="openai/agent",
            messages=ask('call mcp_tools_execute {"name": "mcp_add", "arguments": {"a": 1, "b": 1}}'),
        )  # type: ignore[arg-type]
        assert "There is no tool named 'mcp_add'" in (refused.choices[0].message.content or "")
