"""Anthropic specifics: how requests are translated, and the statuses and events only it has."""

from __future__ import annotations

from typing import Any

import httpx
import openai
import pytest

from providers import ChatRequest
from providers.anthropic import JSON_OBJECT_NOTE, encode_request
from providers.errors import InvalidRequest

from .fakes import PROTOCOLS, FakeProviders

HELLO = [{"role": "user", "content": "hi"}]


def encode(**payload: Any) -> dict[str, Any]:
    return encode_request(ChatRequest({"messages": HELLO, **payload}, "claude-x"), 4096)


def test_system_and_developer_messages_become_system_blocks_in_order() -> None:
    body = encode(
        messages=[
            {"role": "system", "content": "one"},
            {"role": "user", "content": "hi"},
            {"role": "developer", "content": [{"type": "text", "text": "two"}]},
        ]
    )
    assert body["system"] == [{"type": "text", "text": "one"}, {"type": "text", "text": "two"}]
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}]


def test_tool_results_share_a_user_turn_with_the_following_user_message() -> None:
    calls = [
        {"id": "a", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
        {"id": "b", "type": "function", "function": {"name": "g", "arguments": ""}},
    ]
    body = encode(
        messages=[
            *HELLO,
            {"role": "assistant", "content": "let me see", "tool_calls": calls},
            {"role": "tool", "tool_call_id": "a", "content": "1"},
            {"role": "tool", "tool_call_id": "b", "content": [{"type": "text", "text": "2"}]},
            {"role": "user", "content": "and?"},
        ]
    )
    assert [m["role"] for m in body["messages"]] == ["user", "assistant", "user"]
    assert body["messages"][1]["content"] == [
        {"type": "text", "text": "let me see"},
        {"type": "tool_use", "id": "a", "name": "f", "input": {"x": 1}},
        {"type": "tool_use", "id": "b", "name": "g", "input": {}},
    ]
    assert body["messages"][2]["content"] == [
        {"type": "tool_result", "tool_use_id": "a", "content": "1"},
        {"type": "tool_result", "tool_use_id": "b", "content": "2"},
        {"type": "text", "text": "and?"},
    ]


def test_sampling_fields() -> None:
    body = encode(
        max_completion_tokens=50,
        max_tokens=99,
        stop="END",
        temperature=1.7,
        top_p=0.9,
        top_k=7,
        user="u-1",
        seed=3,
        frequency_penalty=0.5,
        presence_penalty=0.1,
        logprobs=True,
        logit_bias={"1": 2},
    )
    assert body["max_tokens"] == 50 and body["stop_sequences"] == ["END"] and body["temperature"] == 1.0
    assert body["top_p"] == 0.9 and body["top_k"] == 7 and body["metadata"] == {"user_id": "u-1"}
    assert not {"seed", "frequency_penalty", "presence_penalty", "logprobs", "logit_bias"} & set(body)
    assert encode()["max_tokens"] == 4096 and encode(stop=["a", "b"])["stop_sequences"] == ["a", "b"]


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        ("auto", None, {"type": "auto"}),
        ("required", None, {"type": "any"}),
        ("none", None, {"type": "none"}),
        ({"type": "function", "function": {"name": "f"}}, None, {"type": "tool", "name": "f"}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    ],
)
def test_tool_choice(choice: Any, parallel: Any, expected: dict[str, Any]) -> None:
    tools = [{"type": "function", "function": {"name": "f"}}]
    body = encode(tools=tools, tool_choice=choice, parallel_tool_calls=parallel)
    assert body["tool_choice"] == expected
    assert body["tools"] == [{"name": "f", "input_schema": {"type": "object", "properties": {}}}]


def test_images() -> None:
    content = [
        {"type": "image_url", "image_url": {"url": "data:image/webp;base64,AAAA"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
    ]
    blocks = encode(messages=[{"role": "user", "content": content}])["messages"][0]["content"]
    assert blocks == [
        {"type": "image", "source": {"type": "base64", "media_type": "image/webp", "data": "AAAA"}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
    ]


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"n": 2}, "n"),
        (
            {
                "messages": [
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [{"id": "a", "function": {"name": "f", "arguments": "{not json"}}],
                    }
                ]
            },
            "messages[0].tool_calls[0].function.arguments",
        ),
        (
            {
                "messages": [
                    {
                        "role": "user",
                        "content": [{"type": "image_url", "image_url": {"url": "data:image/bmp;base64,AA"}}],
                    }
                ]
            },
            "messages[0].content[0]",
        ),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages[0].tool_call_id"),
        ({"tool_choice": "sometimes", "tools": [{"type": "function", "function": {"name": "f"}}]}, "tool_choice"),
        (
            {
                "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {}}},
                "tools": [{"type": "function", "function": {"name": "f"}}],
            },
            "response_format",
        ),
    ],
)
def test_requests_anthropic_cannot_take_are_400(payload: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        encode(**payload)
    assert caught.value.param == param


def test_response_formats() -> None:
    body = encode(response_format={"type": "json_object"})
    assert body["system"][-1]["text"] == JSON_OBJECT_NOTE
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}}
    body = encode(response_format={"type": "json_schema", "json_schema": {"name": "my answer", "schema": schema}})
    assert body["tools"][0]["name"] == "my_answer" and body["tools"][0]["input_schema"] == schema
    assert body["tool_choice"] == {"type": "tool", "name": "my_answer"}


def test_the_fake_really_checks_requests_with_the_sdk_types() -> None:
    fake = PROTOCOLS["anthropic"]
    assert fake.validate({"model": "m", "max_tokens": 1, "messages": HELLO}) is None
    assert fake.validate(
        {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "bogus"}]}]}
    )
    assert fake.validate({"model": "m", "max_tokens": 1, "messages": HELLO, "seed": 1})
    assert fake.validate({"model": "m", "messages": HELLO})


async def test_cached_tokens_are_reported(client: openai.AsyncOpenAI) -> None:
    answer = await client.chat.completions.create(model="anthropic/echo", messages=HELLO)  # type: ignore[arg-type]
    assert answer.usage is not None and answer.usage.prompt_tokens_details is not None
    assert answer.usage.prompt_tokens == 11 and answer.usage.prompt_tokens_details.cached_tokens == 4


@pytest.mark.parametrize(("model", "finish"), [("refusal", "content_filter"), ("long", "length")])
async def test_stop_reasons(client: openai.AsyncOpenAI, model: str, finish: str) -> None:
    answer = await client.chat.completions.create(model=f"anthropic/{model}", messages=HELLO)  # type: ignore[arg-type]
    assert answer.choices[0].finish_reason == finish
    chunks = await client.chat.completions.create(model=f"anthropic/{model}", messages=HELLO, stream=True)  # type: ignore[arg-type]
    assert [c.choices[0].finish_reason async for c in chunks if c.choices][-1] == finish


async def test_overloaded_is_503_with_retry_after(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{gateway}/v1/chat/completions", json={"model": "anthropic/error-529", "messages": HELLO}
        )
    assert response.status_code == 503 and response.headers["retry-after"] == "9"
    assert response.json()["error"]["code"] == "overloaded_error" and response.json()["error"]["type"] == "api_error"


async def test_error_event_in_a_stream_becomes_an_error_in_the_envelope(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{gateway}/v1/chat/completions",
            json={"model": "anthropic/overloaded-stream", "messages": HELLO, "stream": True},
        )
    events = [e for e in response.text.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    assert '"code":"overloaded_error"' in events[-2] and "Overloaded" in events[-2]


async def test_credentials_and_version_header(client: openai.AsyncOpenAI, fake: FakeProviders) -> None:
    await client.chat.completions.create(model="anthropic/echo", messages=HELLO)  # type: ignore[arg-type]
    sent = fake.last("/messages")
    assert sent.headers["x-api-key"] == "key-anthropic" and sent.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in sent.headers and sent.json["model"] == "echo"
