"""openai-agents' default model (``OpenAIResponsesModel``, the Responses API) runs a tool loop
through the gateway against providers reached by translation: the model calls a function tool, the
agent runs it and sends its output back, the model answers."""

from __future__ import annotations

import openai
import pytest
from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

set_tracing_disabled(True)  # nothing is exported to OpenAI's tracing service

calls: list[str] = []


@function_tool
def get_weather(city: str) -> str:
    """The weather in a city."""
    calls.append(city)
    return f"22C in {city}"


@pytest.mark.parametrize("pid", ["anthropic", "deepseek"])
@pytest.mark.parametrize("streamed", [False, True])
async def test_an_agent_completes_a_tool_loop(gateway: str, pid: str, streamed: bool) -> None:
    client = openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key="not-checked", max_retries=0)
    model = OpenAIResponsesModel(model=f"{pid}/agent", openai_client=client)
    agent = Agent(name="weather", instructions="Use the tools you have.", tools=[get_weather], model=model)
    before = len(calls)
    prompt = 'call get_weather {"city": "Paris"}'
    if streamed:
        run = Runner.run_streamed(agent, prompt)
        async for _ in run.stream_events():
            pass
        final = run.final_output
    else:
        final = (await Runner.run(agent, prompt)).final_output
    assert calls[before:] == ["Paris"]
    assert final == "Done: 22C in Paris"
