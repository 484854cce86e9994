"""MCP through ``/v1/responses``: for providers reached by translation, the gateway's MCP tools are
offered with the client's and run by the gateway, as for chat; the client sees the final answer."""

from __future__ import annotations

import openai
import pytest

from .fakes import FakeProviders
from .test_mcp import gateway_mcp, servers  # noqa: F401 (fixtures)
from .test_responses import WEATHER


@pytest.mark.parametrize("pid", ["deepseek", "anthropic"])
async def test_mcp_tools_run_for_a_translated_response(gateway_mcp: str, pid: str) -> None:  # noqa: F811
    client = openai.AsyncOpenAI(base_url=f"{gateway_mcp}/v1", api_key="x", max_retries=0)
    prompt = 'call mcp_add {"a": 2, "b": 3}'
    answer = await client.responses.create(model=f"{pid}/agent", input=prompt)
    assert answer.output_text == "Done: 5" and [item.type for item in answer.output] == ["message"]
    async with client.responses.stream(model=f"{pid}/agent", input=prompt) as stream:
        final = await stream.get_final_response()
    assert final.output_text == "Done: 5" and final.usage is not None


async def test_the_clients_tools_come_first(gateway_mcp: str, fake: FakeProviders) -> None:  # noqa: F811
    client = openai.AsyncOpenAI(base_url=f"{gateway_mcp}/v1", api_key="x", max_retries=0)
    await client.responses.create(model="deepseek/echo", input="hi", tools=[WEATHER])  # type: ignore[list-item]
    names = [t["function"]["name"] for t in fake.last_post("deepseek").json["tools"]]
    assert names[0] == "get_weather" and "mcp_add" in names
