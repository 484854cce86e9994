"""/v1/chat/completions through the official openai SDK, against the fake providers."""

from __future__ import annotations

import asyncio
import json

import httpx
import openai
import pytest

from .conftest import GatewayFactory
from .fakes import FakeProviders

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather of a city",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
HELLO = [{"role": "user", "content": "hello there"}]


async def test_completion_is_relayed_with_prefix_stripped(client: openai.AsyncOpenAI, fake: FakeProviders) -> None:
    answer = await client.chat.completions.create(model="openai/echo", messages=HELLO, temperature=0.2)
    assert answer.choices[0].message.content == "You said: hello there"
    assert answer.usage is not None and answer.usage.total_tokens == 18
    sent = fake.last("/chat/completions")
    assert sent.json["model"] == "echo"
    assert sent.json["temperature"] == 0.2
    assert sent.headers["authorization"] == "Bearer key-openai"


async def test_provider_query_parameter_names_the_provider(client: openai.AsyncOpenAI, fake: FakeProviders) -> None:
    answer = await client.chat.completions.create(model="echo", messages=HELLO, extra_query={"provider": "groq"})
    assert answer.choices[0].message.content == "You said: hello there"
    assert fake.last("/chat/completions").path.startswith("/groq/")


async def test_stream_relays_every_chunk_and_usage(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(
        model="openai/echo", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said: hello there"
    assert chunks[-2].choices[0].finish_reason == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 18


async def test_stream_is_sse_with_exactly_one_done(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        body = {"model": "openai/echo", "messages": HELLO, "stream": True}
        response = await http.post(f"{gateway}/v1/chat/completions", json=body)
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["cache-control"] == "no-cache"
    assert response.headers["x-accel-buffering"] == "no"
    assert response.text.count("data: [DONE]") == 1
    assert response.text.endswith("data: [DONE]\n\n")


async def test_tool_calls_non_stream(client: openai.AsyncOpenAI) -> None:
    answer = await client.chat.completions.create(model="openai/tool", messages=HELLO, tools=TOOLS)  # type: ignore[arg-type]
    call = answer.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert answer.choices[0].finish_reason == "tool_calls"
    assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Paris"}


async def test_tool_calls_stream(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(model="openai/tool", messages=HELLO, tools=TOOLS, stream=True)  # type: ignore[arg-type]
    name, arguments, finish = "", "", None
    async for chunk in stream:
        for call in chunk.choices[0].delta.tool_calls or []:
            assert call.index == 0
            name += call.function.name or "" if call.function else ""
            arguments += call.function.arguments or "" if call.function else ""
        finish = chunk.choices[0].finish_reason or finish
    assert name == "get_weather" and json.loads(arguments) == {"city": "Paris"} and finish == "tool_calls"


@pytest.mark.parametrize("pid", ["cohere", "mistral", "ollama_cloud"])
async def test_stream_options_removed_for_providers_that_reject_it(
    client: openai.AsyncOpenAI, fake: FakeProviders, pid: str
) -> None:
    stream = await client.chat.completions.create(
        model=f"{pid}/echo", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    assert [c async for c in stream]
    assert "stream_options" not in fake.last("/chat/completions").json


async def test_stream_options_kept_for_others(client: openai.AsyncOpenAI, fake: FakeProviders) -> None:
    stream = await client.chat.completions.create(
        model="deepseek/echo", messages=HELLO, stream=True, stream_options={"include_usage": True}
    )
    assert [c async for c in stream]
    assert fake.last("/chat/completions").json["stream_options"] == {"include_usage": True}


IMAGE = [
    {
        "role": "user",
        "content": [
            {"type": "text", "text": "what is this"},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        ],
    }
]


async def test_images_refused_when_vision_is_off(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="openai/echo", messages=IMAGE)  # type: ignore[arg-type]
    assert "ENABLE_VISION=true" in caught.value.message
    assert caught.value.code == "vision_disabled"


async def test_images_pass_when_vision_is_on(gateway_with, fake: FakeProviders) -> None:  # type: ignore[no-untyped-def]
    async with gateway_with(ENABLE_VISION="true") as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        answer = await client.chat.completions.create(model="openai/echo", messages=IMAGE)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "You said: what is this "
    assert fake.last("/chat/completions").json["messages"][0]["content"][1]["type"] == "image_url"


async def test_upstream_connections_are_reused_across_requests_and_streams(
    client: openai.AsyncOpenAI, fake: FakeProviders
) -> None:
    peers = []
    for stream in (False, True, True, False):
        answer = await client.chat.completions.create(model="moonshot/late-eof", messages=HELLO, stream=stream)  # type: ignore[call-overload]
        if stream:
            assert [chunk async for chunk in answer]
            await asyncio.sleep(0.1)  # the gateway reads the body's late end after the client has [DONE]
        peers.append(fake.last("/chat/completions").peer)
    assert len(set(peers)) == 1, peers


async def test_groq_quirks_are_handled_as_data(client: openai.AsyncOpenAI, fake: FakeProviders) -> None:
    named = [{"role": "user", "content": "hi", "name": "alice"}]
    await client.chat.completions.create(
        model="groq/echo", messages=named, logprobs=True, top_logprobs=2, logit_bias={"1": 1}
    )  # type: ignore[arg-type]
    sent = fake.last_post("groq").json
    assert sent["messages"] == [{"role": "user", "content": "hi"}]
    assert not {"logprobs", "top_logprobs", "logit_bias"} & set(sent)
    with pytest.raises(openai.BadRequestError, match="at most 1 choice"):
        await client.chat.completions.create(model="groq/echo", messages=HELLO, n=2)  # type: ignore[arg-type]
    await client.chat.completions.create(model="openai/echo", messages=named, n=2)  # type: ignore[arg-type]
    assert fake.last_post("openai").json["messages"][0]["name"] == "alice" and fake.last_post("openai").json["n"] == 2


IMAGE_PART = {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}}


async def test_the_registrys_facts_refuse_images_to_a_model_without_vision(gateway_with: GatewayFactory) -> None:
    """The vision gate reads the same model facts as /v1/models?include=: a model they say takes
    text only gets a 400 before any provider is called; a model with vision, or one nothing is
    known of, passes."""
    messages = [{"role": "user", "content": [{"type": "text", "text": "what is this?"}, IMAGE_PART]}]
    async with gateway_with(ENABLE_VISION="true") as url, httpx.AsyncClient() as http:
        refused = await http.post(
            f"{url}/v1/chat/completions", json={"model": "openai/gpt-3.5-turbo", "messages": messages}
        )
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "model_not_multimodal"
        for model in ("openai/gpt-4o", "openai/unknown-model"):
            passed = await http.post(f"{url}/v1/chat/completions", json={"model": model, "messages": messages})
            assert passed.status_code == 200, passed.text
        image_block = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
        front_doors = {
            "/v1/messages": {
                "model": "openai/gpt-3.5-turbo",
                "max_tokens": 10,
                "messages": [{"role": "user", "content": [image_block]}],
            },
            "/v1/responses": {
                "model": "openai/gpt-3.5-turbo",
                "input": [
                    {"role": "user", "content": [{"type": "input_image", "image_url": IMAGE_PART["image_url"]["url"]}]}
                ],
            },
        }
        for path, body in front_doors.items():
            answer = await http.post(f"{url}{path}", json=body)
            assert answer.status_code == 400, answer.text
            assert "takes no images" in answer.json()["error"]["message"]  # each front door in its own envelope
