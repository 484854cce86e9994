"""MCP_TOOL_MODE=selector: the model gets two meta-tools, lists the MCP tools through one and runs
them through the other; a real MCP server, the fake LLM that calls what the prompt names, the SDK."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import pytest_asyncio

from gateway import Settings
from gateway.settings import SettingsError

from .conftest import GatewayFactory
from .fakes import FakeProviders
from .mcp_servers import MCPTestServer
from .test_mcp import WEATHER, ask, sdk, tools_of


@pytest_asyncio.fixture(scope="module")
async def calc() -> AsyncIterator[MCPTestServer]:
    server = await MCPTestServer("stateless", prefix="calc_").start()
    yield server
    await server.stop()


def selector_env(server: MCPTestServer, **extra: str) -> dict[str, str]:
    return {
        "MCP_ENABLED": "true",
        "MCP_EXPOSE": "true",
        "MCP_SERVERS": f"calc={server.url}",
        "MCP_TOOL_MODE": "selector",
        "MCP_REQUEST_TIMEOUT": "1s",
        "MCP_MAX_ITERATIONS": "3",
        **extra,
    }


async def done(url: str, prompt: str) -> str:
    answer = await sdk(url).chat.completions.create(model="openai/agent", messages=ask(prompt))  # type: ignore[arg-type]
    text = answer.choices[0].message.content or ""
    assert text.startswith("Done: "), text
    return text.removeprefix("Done: ")


def test_direct_is_the_default_and_the_choice_is_checked() -> None:
    assert Settings.load({}).mcp_tool_mode == "direct"
    assert Settings.load({"MCP_TOOL_MODE": "Selector"}).mcp_tool_mode == "selector"
    with pytest.raises(SettingsError, match="MCP_TOOL_MODE"):
        Settings.load({"MCP_TOOL_MODE": "lazy"})


async def test_the_model_lists_and_runs_tools_through_two_meta_tools(
    gateway_with: GatewayFactory, calc: MCPTestServer, fake: FakeProviders
) -> None:
    async with gateway_with(**selector_env(calc)) as url:
        assert len(await tools_of(url, 5)) == 5  # the route still lists the tools themselves
        await sdk(url).chat.completions.create(model="openai/echo", messages=ask("hi"), tools=[WEATHER])  # type: ignore[arg-type]
        offered = fake.last_post("openai").json["tools"]
        assert [t["function"]["name"] for t in offered] == ["get_weather", "mcp_tools_list", "mcp_tools_call"]

        (add,) = json.loads(await done(url, 'call mcp_tools_list {"query": "add"}'))
        assert add["name"] == "mcp_calc_add" and add["description"] == "Add two integers."
        assert set(add["parameters"]["properties"]) == {"a", "b"}
        assert len(json.loads(await done(url, "call mcp_tools_list {}"))) == 5

        assert await done(url, 'call mcp_tools_call {"name": "mcp_calc_add", "arguments": {"a": 2, "b": 3}}') == "5"
        assert (
            await done(url, 'call mcp_tools_call {"name": "calc_echo", "arguments": "{\\"text\\": \\"hi\\"}"}') == "hi"
        )
        assert await done(url, 'call mcp_calc_echo {"text": "direct"}') == "direct"  # a listed tool by its name
        sent = fake.last_post("openai").json["messages"]
        assert sent[-1] == {"role": "tool", "tool_call_id": sent[-2]["tool_calls"][0]["id"], "content": "direct"}


@pytest.mark.parametrize(
    ("prompt", "says"),
    [
        ('call mcp_tools_call {"name": "mcp_nope"}', "Error: There is no tool named mcp_nope."),
        ("call mcp_tools_call {}", "Error: mcp_tools_call needs the name of a tool"),
        ("call mcp_tools_call [1]", "Error: The arguments for mcp_tools_call must be a JSON object."),
        ('call mcp_tools_list {"query": "zzz"}', "No tool matches 'zzz'"),
        ('call mcp_tools_call {"name": "mcp_calc_fail"}', "Error: Error executing tool calc_fail"),
    ],
    ids=["unknown-tool", "no-name", "not-an-object", "no-match", "tool-error"],
)
async def test_mistakes_are_results_the_model_reads(
    gateway_with: GatewayFactory, calc: MCPTestServer, prompt: str, says: str
) -> None:
    async with gateway_with(**selector_env(calc)) as url:
        await tools_of(url, 5)
        assert (await done(url, prompt)).startswith(says)


async def test_the_filters_hold_for_both_meta_tools(gateway_with: GatewayFactory, calc: MCPTestServer) -> None:
    async with gateway_with(**selector_env(calc, MCP_INCLUDE_TOOLS="calc_echo")) as url:
        await tools_of(url, 1)
        assert [t["name"] for t in json.loads(await done(url, "call mcp_tools_list {}"))] == ["mcp_calc_echo"]
        refused = await done(url, 'call mcp_tools_call {"name": "mcp_calc_add", "arguments": {"a": 1, "b": 1}}')
        assert refused == "Error: There is no tool named mcp_calc_add."


async def test_one_stream_through_the_meta_tools(gateway_with: GatewayFactory, calc: MCPTestServer) -> None:
    prompt = 'call mcp_tools_call {"name": "mcp_calc_add", "arguments": {"a": 20, "b": 22}}'
    async with gateway_with(**selector_env(calc)) as url:
        await tools_of(url, 5)
        body = {"model": "openai/agent", "messages": ask(prompt), "stream": True}
        async with httpx.AsyncClient(timeout=10) as http:
            text = (await http.post(f"{url}/v1/chat/completions", json=body)).text
    chunks: list[dict[str, Any]] = [json.loads(e[6:]) for e in text.split("\n\n") if e.startswith("data: {")]
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    (call,) = [d["mcp_tool_call"] for d in deltas if "mcp_tool_call" in d]
    (result,) = [d["mcp_tool_result"] for d in deltas if "mcp_tool_result" in d]
    assert call["name"] == "mcp_tools_call" and result["content"] == "42" and not result["is_error"]
    assert "".join(d.get("content") or "" for d in deltas) == "Done: 42" and text.endswith("data: [DONE]\n\n")
