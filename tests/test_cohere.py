"""Cohere v2 specifics: request translation and what only Cohere reports."""

from __future__ import annotations

from typing import Any

import openai
import pytest

from providers import ChatRequest
from providers.cohere import encode_request
from providers.errors import InvalidRequest

from .fakes import PROTOCOLS, FakeProviders

HELLO = [{"role": "user", "content": "hi"}]
TOOLS = [{"type": "function", "function": {"name": n, "parameters": {"type": "object"}}} for n in ("f", "g")]


def encode(**payload: Any) -> dict[str, Any]:
    return encode_request(ChatRequest({"messages": HELLO, **payload}, "command-x"))


def test_messages_keep_their_order_and_tool_plans() -> None:
    calls = [{"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}]
    body = encode(
        messages=[
            {"role": "developer", "content": "rules"},
            *HELLO,
            {"role": "assistant", "content": "I will call f.", "tool_calls": calls},
            {"role": "tool", "tool_call_id": "c1", "content": [{"type": "text", "text": "ok"}]},
        ]
    )
    assert body["messages"] == [
        {"role": "system", "content": "rules"},
        {"role": "user", "content": "hi"},
        {"role": "assistant", "tool_calls": calls, "tool_plan": "I will call f."},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"},
    ]


def test_sampling_fields() -> None:
    body = encode(
        max_tokens=30,
        stop="END",
        temperature=0.4,
        top_p=1,
        top_k=900,
        seed=5,
        frequency_penalty=-1,
        presence_penalty=0.5,
        user="dropped",
        logprobs=True,
        stream_options={"include_usage": True},
    )
    assert body == {
        "model": "command-x",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 30,
        "stop_sequences": ["END"],
        "temperature": 0.4,
        "p": 0.99,
        "k": 500,
        "seed": 5,
        "presence_penalty": 0.5,
    }


@pytest.mark.parametrize(
    ("choice", "sent", "names"),
    [
        ("auto", None, ["f", "g"]),
        ("required", "REQUIRED", ["f", "g"]),
        ("none", "NONE", ["f", "g"]),
        ({"type": "function", "function": {"name": "g"}}, "REQUIRED", ["g"]),
    ],
)
def test_tool_choice(choice: Any, sent: str | None, names: list[str]) -> None:
    body = encode(tools=TOOLS, tool_choice=choice)
    assert body.get("tool_choice") == sent and [t["function"]["name"] for t in body["tools"]] == names


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"n": 2}, "n"),
        ({"tools": TOOLS, "tool_choice": {"type": "function", "function": {"name": "h"}}}, "tool_choice"),
        ({"tools": TOOLS, "response_format": {"type": "json_object"}}, "response_format"),
        ({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}, "messages[0].content"),
    ],
)
def test_requests_cohere_cannot_take_are_400(payload: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        encode(**payload)
    assert caught.value.param == param


def test_the_fake_really_checks_requests_with_the_sdk_types() -> None:
    fake = PROTOCOLS["cohere"]
    assert fake.validate({"model": "m", "messages": HELLO}) is None
    assert fake.validate({"model": "m", "messages": HELLO, "top_p": 0.5})
    assert fake.validate({"model": "m", "messages": [{"role": "wizard", "content": "hi"}]})


async def test_usage_counts_tokens_not_billed_units(client: openai.AsyncOpenAI, fake: FakeProviders) -> None:
    answer = await client.chat.completions.create(model="cohere/echo", messages=HELLO)  # type: ignore[arg-type]
    usage = answer.usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (11, 7)
    assert usage.prompt_tokens_details and usage.prompt_tokens_details.cached_tokens == 4
    sent = fake.last_post("cohere")
    assert sent.path.endswith("/v2/chat") and sent.headers["authorization"] == "Bearer key-cohere"


async def test_tool_plan_is_reasoning(client: openai.AsyncOpenAI) -> None:
    answer = await client.chat.completions.create(model="cohere/tool", messages=HELLO, tools=TOOLS)  # type: ignore[arg-type]
    assert (answer.choices[0].message.model_extra or {})["reasoning_content"] == "I will call the tools."
