"""One suite over every translating adapter: the same scenarios, the same OpenAI-shaped results.

Every answer is validated with ``openai.types.chat.ChatCompletion``, every stream chunk with
``ChatCompletionChunk``; the fakes validate every translated request with the provider's own SDK.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import openai
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from providers.registry import load_registry

from .fakes import ERROR_CLASSES

NATIVE = [pid for pid, spec in load_registry().items() if spec.adapter != "openai"]
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    },
    {
        "type": "function",
        "function": {
            "name": "get_time",
            "description": "Time in a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    },
]
PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n fake").decode()


async def chat(url: str, **body: Any) -> ChatCompletion:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(f"{url}/v1/chat/completions", json=body)
    assert response.status_code == 200, response.text
    return ChatCompletion.model_validate(response.json())


async def stream(url: str, **body: Any) -> list[ChatCompletionChunk]:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(f"{url}/v1/chat/completions", json={**body, "stream": True})
    assert response.status_code == 200, response.text
    events = [e.removeprefix("data: ") for e in response.text.split("\n\n") if e]
    assert events[-1] == "[DONE]" and events.count("[DONE]") == 1
    return [ChatCompletionChunk.model_validate_json(e) for e in events[:-1]]


def collect(chunks: list[ChatCompletionChunk]) -> dict[str, Any]:
    """What a client assembles from a stream: text, reasoning, calls by index, finish, usage."""
    text, reasoning, calls, finish, usage = "", "", {}, None, None
    for chunk in chunks:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            delta = choice.delta
            text += delta.content or ""
            reasoning += (
                getattr(delta, "reasoning_content", None) or (delta.model_extra or {}).get("reasoning_content") or ""
            )
            for call in delta.tool_calls or []:
                entry = calls.setdefault(call.index, {"id": None, "name": "", "arguments": ""})
                if call.id:
                    assert entry["id"] is None, "a tool call's id comes once, in its first delta"
                    entry["id"] = call.id
                if call.function:
                    entry["name"] += call.function.name or ""
                    entry["arguments"] += call.function.arguments or ""
            finish = choice.finish_reason or finish
    assert chunks[0].choices[0].delta.role == "assistant"
    return {"text": text, "reasoning": reasoning, "calls": calls, "finish": finish, "usage": usage}


def user(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


@pytest.fixture(params=NATIVE)
def pid(request: pytest.FixtureRequest) -> str:
    return str(request.param)


async def test_plain(gateway: str, pid: str) -> None:
    answer = await chat(gateway, model=f"{pid}/echo", messages=user("hello"))
    assert answer.choices[0].message.content == "You said: hello"
    assert answer.choices[0].finish_reason == "stop"
    assert answer.usage is not None and (answer.usage.prompt_tokens, answer.usage.completion_tokens) == (11, 7)
    assert answer.usage.total_tokens == 18


async def test_system_prompts_and_multi_turn(gateway: str, pid: str) -> None:
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "developer", "content": "Be kind."},
        {"role": "user", "content": "first"},
        {"role": "assistant", "content": "You said: first"},
        {"role": "user", "content": [{"type": "text", "text": "second"}]},
        {"role": "user", "content": "third"},
    ]
    answer = await chat(gateway, model=f"{pid}/echo", messages=messages)
    assert answer.choices[0].message.content == "You said: second third"


async def test_stream_with_usage(gateway: str, pid: str) -> None:
    chunks = await stream(
        gateway, model=f"{pid}/echo", messages=user("stream me please"), stream_options={"include_usage": True}
    )
    got = collect(chunks)
    assert got["text"] == "You said: stream me please" and got["finish"] == "stop"
    assert chunks[-1].choices == [] and got["usage"].total_tokens == 18
    assert len({c.id for c in chunks}) == 1


async def test_stream_without_usage_has_no_usage_chunk(gateway: str, pid: str) -> None:
    chunks = await stream(gateway, model=f"{pid}/echo", messages=user("hi"))
    assert all(c.choices for c in chunks) and collect(chunks)["usage"] is None


@pytest.mark.parametrize("tools", [TOOLS[:1], TOOLS], ids=["single", "parallel"])
async def test_tool_calls(gateway: str, pid: str, tools: list[dict[str, Any]]) -> None:
    answer = await chat(gateway, model=f"{pid}/tool", messages=user("weather?"), tools=tools)
    message = answer.choices[0].message
    assert answer.choices[0].finish_reason == "tool_calls" and message.content is None
    assert [c.function.name for c in message.tool_calls or []] == [t["function"]["name"] for t in tools]
    assert all(json.loads(c.function.arguments) == {"city": "Paris"} for c in message.tool_calls or [])
    assert len({c.id for c in message.tool_calls or []}) == len(tools)


@pytest.mark.parametrize("tools", [TOOLS[:1], TOOLS], ids=["single", "parallel"])
async def test_tool_calls_stream(gateway: str, pid: str, tools: list[dict[str, Any]]) -> None:
    got = collect(await stream(gateway, model=f"{pid}/tool", messages=user("weather?"), tools=tools))
    assert got["finish"] == "tool_calls"
    assert sorted(got["calls"]) == list(range(len(tools)))
    for index, tool in enumerate(tools):
        call = got["calls"][index]
        assert call["name"] == tool["function"]["name"] and call["id"]
        assert json.loads(call["arguments"]) == {"city": "Paris"}


async def test_tool_result_round_trip(gateway: str, pid: str) -> None:
    first = await chat(gateway, model=f"{pid}/tool", messages=user("weather?"), tools=TOOLS[:1])
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    messages = [
        *user("weather?"),
        first.choices[0].message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"},
    ]
    answer = await chat(gateway, model=f"{pid}/echo", messages=messages, tools=TOOLS[:1])
    assert answer.choices[0].message.content == "Tool said: sunny, 21 C"


async def test_parallel_tool_results_round_trip(gateway: str, pid: str) -> None:
    first = await chat(gateway, model=f"{pid}/tool", messages=user("both?"), tools=TOOLS)
    calls = first.choices[0].message.tool_calls or []
    messages = [
        *user("both?"),
        first.choices[0].message.model_dump(exclude_none=True),
        *({"role": "tool", "tool_call_id": c.id, "content": f"result {i}"} for i, c in enumerate(calls)),
    ]
    answer = await chat(gateway, model=f"{pid}/echo", messages=messages, tools=TOOLS)
    assert answer.choices[0].message.content == "Tool said: result 1"


async def test_images_data_uri_and_url(gateway_with: Any, pid: str) -> None:
    content = [
        {"type": "text", "text": "look"},
        {"type": "image_url", "image_url": {"url": PNG}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
    ]
    async with gateway_with(ENABLE_VISION="true") as url:
        answer = await chat(url, model=f"{pid}/echo", messages=[{"role": "user", "content": content}])
    assert answer.choices[0].message.content == "You said: look [2 images]"


SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}


@pytest.mark.parametrize(
    "response_format",
    [{"type": "json_object"}, {"type": "json_schema", "json_schema": {"name": "place", "schema": SCHEMA}}],
    ids=["json_object", "json_schema"],
)
async def test_json_answers(gateway: str, pid: str, response_format: dict[str, Any]) -> None:
    answer = await chat(gateway, model=f"{pid}/echo", messages=user("where?"), response_format=response_format)
    assert json.loads(answer.choices[0].message.content or "") == {"city": "Paris"}
    assert answer.choices[0].finish_reason == "stop"


async def test_reasoning_is_returned(gateway: str, pid: str) -> None:
    answer = await chat(gateway, model=f"{pid}/thinking", messages=user("think"))
    assert (answer.choices[0].message.model_extra or {}).get("reasoning_content") == "Let me think."
    got = collect(await stream(gateway, model=f"{pid}/thinking", messages=user("think")))
    assert got["reasoning"] == "Let me think." and got["text"] == "You said: think"


@pytest.mark.parametrize(
    ("status", "exception"),
    ERROR_CLASSES,
)
async def test_errors_keep_status_and_message(
    client: openai.AsyncOpenAI, pid: str, status: int, exception: type
) -> None:
    with pytest.raises(exception) as caught:
        await client.chat.completions.create(model=f"{pid}/error-{status}", messages=user("x"))  # type: ignore[arg-type]
    assert caught.value.status_code == status and f"refused with error-{status}" in caught.value.message
    with pytest.raises(exception):
        await client.chat.completions.create(model=f"{pid}/error-{status}", messages=user("x"), stream=True)  # type: ignore[arg-type]


async def test_stream_cut_in_the_middle(client: openai.AsyncOpenAI, pid: str) -> None:
    chunks = await client.chat.completions.create(model=f"{pid}/cut", messages=user("a b c d e f g h"), stream=True)  # type: ignore[arg-type]
    with pytest.raises(openai.APIError, match=r"cut off|ended before"):
        async for _ in chunks:
            pass


async def test_the_openai_sdk_end_to_end(client: openai.AsyncOpenAI, pid: str) -> None:
    answer = await client.chat.completions.create(model=f"{pid}/echo", messages=user("sdk"))  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "You said: sdk"
    chunks = await client.chat.completions.create(model=f"{pid}/tool", messages=user("x"), tools=TOOLS, stream=True)  # type: ignore[arg-type]
    names = {}
    async for chunk in chunks:
        for call in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
            if call.function and call.function.name:
                names[call.index] = call.function.name
    assert names == {0: "get_weather", 1: "get_time"}
