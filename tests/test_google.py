"""Gemini specifics: request translation, thought signatures, and what only Gemini reports."""

from __future__ import annotations

import base64
import json
from typing import Any

import httpx
import openai
import pytest

from providers import ChatRequest
from providers.errors import InvalidRequest
from providers.google import PLACEHOLDER_SIGNATURE, encode_request

from .conftest import GatewayFactory
from .fakes import PROTOCOLS, FakeProviders

HELLO = [{"role": "user", "content": "hi"}]
TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "parameters": {
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "additionalProperties": False,
        },
    },
}


def encode(**payload: Any) -> dict[str, Any]:
    return encode_request(ChatRequest({"messages": HELLO, **payload}, "gemini-x"))


def test_system_instruction_and_roles() -> None:
    body = encode(
        messages=[
            {"role": "system", "content": "one"},
            {"role": "developer", "content": "two"},
            {"role": "user", "content": "hi"},
            {"role": "assistant", "content": "hello"},
            {"role": "user", "content": "again"},
        ]
    )
    assert body["systemInstruction"] == {"parts": [{"text": "one"}, {"text": "two"}]}
    assert [(c["role"], c["parts"]) for c in body["contents"]] == [
        ("user", [{"text": "hi"}]),
        ("model", [{"text": "hello"}]),
        ("user", [{"text": "again"}]),
    ]


def test_generation_config_and_tools() -> None:
    body = encode(
        temperature=0.3,
        top_p=0.8,
        top_k=20,
        max_completion_tokens=64,
        stop="END",
        seed=7,
        presence_penalty=0.1,
        frequency_penalty=0.2,
        tools=[TOOL],
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        response_format={"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}},
        user="dropped",
        logprobs=True,
    )
    assert body["generationConfig"] == {
        "temperature": 0.3,
        "topP": 0.8,
        "topK": 20,
        "seed": 7,
        "presencePenalty": 0.1,
        "frequencyPenalty": 0.2,
        "maxOutputTokens": 64,
        "stopSequences": ["END"],
        "responseMimeType": "application/json",
        "responseJsonSchema": {"type": "object"},
    }
    declaration = body["tools"][0]["functionDeclarations"][0]
    assert declaration["name"] == "get_weather" and "$schema" not in declaration["parametersJsonSchema"]
    assert declaration["parametersJsonSchema"]["additionalProperties"] is False  # full JSON Schema is allowed there
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}}
    assert set(body) == {"contents", "tools", "toolConfig", "generationConfig"}


@pytest.mark.parametrize(("choice", "mode"), [("auto", "AUTO"), ("required", "ANY"), ("none", "NONE")])
def test_tool_choice_modes(choice: str, mode: str) -> None:
    assert encode(tools=[TOOL], tool_choice=choice)["toolConfig"]["functionCallingConfig"] == {"mode": mode}


def test_tool_results_are_function_responses_named_after_their_call() -> None:
    calls = [
        {"id": "call_a~c2ln", "type": "function", "function": {"name": "f", "arguments": '{"x": 1}'}},
        {"id": "call_b", "type": "function", "function": {"name": "g", "arguments": "{}"}},
    ]
    body = encode(
        messages=[
            *HELLO,
            {"role": "assistant", "content": None, "tool_calls": calls},
            {"role": "tool", "tool_call_id": "call_a~c2ln", "content": '{"temp": 21}'},
            {"role": "tool", "tool_call_id": "call_b", "content": "plain text"},
        ]
    )
    model, results = body["contents"][1], body["contents"][2]
    assert model["parts"] == [
        {"functionCall": {"name": "f", "args": {"x": 1}}, "thoughtSignature": "c2ln"},
        {"functionCall": {"name": "g", "args": {}}},
    ]
    assert results == {
        "role": "user",
        "parts": [
            {"functionResponse": {"name": "f", "response": {"temp": 21}}},
            {"functionResponse": {"name": "g", "response": {"result": "plain text"}}},
        ],
    }


def test_unsigned_calls_get_the_placeholder_signature() -> None:
    calls = [{"id": "client-made", "type": "function", "function": {"name": "f", "arguments": "{}"}}]
    body = encode(
        messages=[
            *HELLO,
            {"role": "assistant", "tool_calls": calls},
            {"role": "tool", "tool_call_id": "client-made", "content": "ok"},
        ]
    )
    assert body["contents"][1]["parts"][0]["thoughtSignature"] == PLACEHOLDER_SIGNATURE


def test_images() -> None:
    content = [
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a.webp?x=1"}},
    ]
    parts = encode(messages=[{"role": "user", "content": content}])["contents"][0]["parts"]
    assert parts == [
        {"inlineData": {"mimeType": "image/png", "data": "AAAA"}},
        {"fileData": {"mimeType": "image/webp", "fileUri": "https://example.com/a.webp?x=1"}},
    ]


@pytest.mark.parametrize(
    ("payload", "param"),
    [
        ({"n": 3}, "n"),
        (
            {"messages": [*HELLO, {"role": "tool", "tool_call_id": "unknown", "content": "x"}]},
            "messages[1].tool_call_id",
        ),
        ({"tool_choice": "maybe", "tools": [TOOL]}, "tool_choice"),
    ],
)
def test_requests_gemini_cannot_take_are_400(payload: dict[str, Any], param: str) -> None:
    with pytest.raises(InvalidRequest) as caught:
        encode(**payload)
    assert caught.value.param == param


def test_the_fake_really_checks_requests_with_the_sdk_types() -> None:
    fake = PROTOCOLS["google"]
    assert fake.validate({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}) is None
    assert fake.validate({"contents": [{"role": "user", "parts": [{"txt": "hi"}]}]})
    contents = [{"role": "user", "parts": [{"text": "hi"}]}]
    assert "max_tokens" in str(fake.validate({"contents": contents, "generationConfig": {"max_tokens": 3}}))
    assert "unknown fields ['model']" in str(fake.validate({"contents": contents, "model": "x"}))
    assert "contents is not specified" in str(fake.validate({"contents": []}))
    assert fake.validate({"contents": [{"parts": [{"text": "hi"}]}], "system_instruction": {"parts": []}}) is None


@pytest.mark.parametrize("stream", [False, True])
async def test_thought_signatures_survive_the_round_trip(client: openai.AsyncOpenAI, stream: bool) -> None:
    tools = [TOOL, {"type": "function", "function": {"name": "get_time"}}]
    first = await client.chat.completions.create(model="google/tool", messages=HELLO, tools=tools, stream=stream)  # type: ignore[call-overload]
    if stream:
        calls: dict[int, dict[str, str]] = {}
        async for chunk in first:
            for call in chunk.choices[0].delta.tool_calls or [] if chunk.choices else []:
                calls.setdefault(
                    call.index, {"id": call.id, "name": call.function.name, "arguments": call.function.arguments}
                )
        tool_calls = [
            {"id": c["id"], "type": "function", "function": {"name": c["name"], "arguments": c["arguments"]}}
            for _, c in sorted(calls.items())
        ]
    else:
        tool_calls = [c.model_dump() for c in first.choices[0].message.tool_calls]
    assert tool_calls[0]["id"].endswith("~" + PROTOCOLS["google"].SIGNATURE)
    assert "~" not in tool_calls[1]["id"]
    history = [
        *HELLO,
        {"role": "assistant", "content": None, "tool_calls": tool_calls},
        *({"role": "tool", "tool_call_id": c["id"], "content": "done"} for c in tool_calls),
    ]
    # The fake refuses a first call without the signature it issued (as Gemini 3 does).
    answer = await client.chat.completions.create(model="google/echo", messages=history, tools=tools)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "Tool said: done"


async def test_usage_details(client: openai.AsyncOpenAI) -> None:
    answer = await client.chat.completions.create(model="google/echo", messages=HELLO)  # type: ignore[arg-type]
    usage = answer.usage
    assert usage is not None and (usage.prompt_tokens, usage.completion_tokens) == (11, 7)
    assert usage.prompt_tokens_details and usage.prompt_tokens_details.cached_tokens == 4
    assert usage.completion_tokens_details and usage.completion_tokens_details.reasoning_tokens == 2


@pytest.mark.parametrize(("model", "finish"), [("blocked", "content_filter"), ("long", "length")])
async def test_finish_reasons(client: openai.AsyncOpenAI, model: str, finish: str) -> None:
    answer = await client.chat.completions.create(model=f"google/{model}", messages=HELLO)  # type: ignore[arg-type]
    assert answer.choices[0].finish_reason == finish


async def test_long_answer_stream_finishes_with_length(client: openai.AsyncOpenAI) -> None:
    chunks = await client.chat.completions.create(model="google/long", messages=HELLO, stream=True)  # type: ignore[arg-type]
    assert [c.choices[0].finish_reason async for c in chunks if c.choices][-1] == "length"


async def test_error_in_the_stream_reaches_the_client(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{gateway}/v1/chat/completions",
            json={"model": "google/midstream-error", "messages": HELLO, "stream": True},
        )
    events = [e for e in response.text.split("\n\n") if e]
    error = json.loads(events[-2].removeprefix("data: "))["error"]
    assert events[-1] == "data: [DONE]" and error["code"] == "UNAVAILABLE" and "overloaded" in error["message"]


async def test_rate_limit_keeps_googles_status_name(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        await client.chat.completions.create(model="google/error-429", messages=HELLO)  # type: ignore[arg-type]
    assert caught.value.code == "RESOURCE_EXHAUSTED"


async def test_key_header_and_openai_style_url(gateway_with: GatewayFactory, fake: FakeProviders) -> None:
    url = fake.url_for(fake.registry["google"]) + "/openai"  # inference-gateway's GOOGLE_API_URL shape
    async with gateway_with(GOOGLE_API_URL=url) as gateway:
        client = openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key="x", max_retries=0)
        answer = await client.chat.completions.create(model="google/echo", messages=HELLO)  # type: ignore[arg-type]
        models = await client.models.list(extra_query={"provider": "google"})
    assert answer.choices[0].message.content == "You said: hi"
    assert [m.id for m in models.data] == ["google/model-a", "google/model-b"]
    sent = fake.last_post("google")
    assert sent.headers["x-goog-api-key"] == "key-google" and "authorization" not in sent.headers


@pytest.mark.parametrize("stream", [False, True])
async def test_calls_gemini_did_not_sign_get_the_placeholder_it_reads(
    client: openai.AsyncOpenAI, fake: FakeProviders, stream: bool
) -> None:
    """Calls made by another model or written by the client (ids with no signature, or with a "~"
    that is no base64 signature) go with the placeholder, base64-encoded: the fake reads
    thoughtSignature as bytes from base64, as the API does, and refuses a first call without it."""
    calls = [
        {"id": "toolu_01A", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'}},
        {"id": "mine~not base64!", "type": "function", "function": {"name": "get_time", "arguments": "{}"}},
    ]
    history = [
        *HELLO,
        {"role": "assistant", "content": None, "tool_calls": calls},
        {"role": "tool", "tool_call_id": "toolu_01A", "content": "sunny"},
        {"role": "tool", "tool_call_id": "mine~not base64!", "content": "noon"},
    ]
    answer = await client.chat.completions.create(model="google/echo", messages=history, stream=stream)  # type: ignore[call-overload]
    if stream:
        text = "".join([c.choices[0].delta.content or "" async for c in answer if c.choices])
    else:
        text = answer.choices[0].message.content
    assert text == "Tool said: noon"
    parts = fake.last_post("google").json["contents"][1]["parts"]
    assert parts[0]["thoughtSignature"] == base64.b64encode(b"skip_thought_signature_validator").decode()
    assert "thoughtSignature" not in parts[1]


def test_the_fake_reads_thought_signatures_as_base64_bytes() -> None:
    fake = PROTOCOLS["google"]

    def step(signature: str) -> dict[str, Any]:
        call = {"functionCall": {"name": "f", "args": {}}, "thoughtSignature": signature}
        return {"contents": [{"role": "user", "parts": [{"text": "hi"}]}, {"role": "model", "parts": [call]}]}

    assert fake.validate(step(PLACEHOLDER_SIGNATURE)) is None
    assert fake.validate(step(fake.SIGNATURE)) is None
    assert "thought signature" in str(fake.validate(step("skip_thought_signature_validator")))
    assert "base64" in str(fake.validate(step("sig~nature")))
