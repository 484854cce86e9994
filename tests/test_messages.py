"""``/v1/messages`` with Anthropic's own SDK as the client: relayed natively to Anthropic, and
translated for an OpenAI-compatible provider, Gemini and Cohere (their native fakes), JSON and
streaming, with tools, images, system blocks and stop sequences; errors in Anthropic's envelope.
Every answer and event is read into the SDK's own types (``Message``, ``RawMessageStreamEvent``)."""

from __future__ import annotations

import asyncio
import base64
import hashlib
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import orjson
import pydantic
import pytest
import pytest_asyncio
from anthropic._constants import ANTHROPIC_API_VERSION
from anthropic.types import Message, RawMessageStreamEvent

from gateway.messages.native import with_model
from providers.registry import load_registry

from .conftest import GatewayFactory
from .fakes import PROTOCOLS, FakeProviders, fake_key
from .mcp_servers import MCPTestServer
from .test_mcp import tools_of
from .test_metrics import DURATION, TOKENS, free_port, until
from .test_secrets import PROVIDERS, assert_no_key, masked, stars

NATIVE = "anthropic/claude-3-haiku-20240307"
TRANSLATED = ["openai", "google", "cohere"]  # OpenAI-compatible, then the two other translating adapters
CALLER_KEY = "caller-key-for-the-gateway-0123456789"
HI = [{"role": "user", "content": "hi"}]
WEATHER = {
    "name": "weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()
EVENTS = pydantic.TypeAdapter(RawMessageStreamEvent)


class Ping(pydantic.BaseModel):
    type: str = "ping"


PING = Ping()


@pytest_asyncio.fixture(scope="module")
async def vision(gateway_with: GatewayFactory) -> AsyncIterator[str]:
    async with gateway_with(ENABLE_VISION="true") as url:
        yield url


def sdk(url: str, key: str = CALLER_KEY, **options: Any) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=url, api_key=key, max_retries=0, **options)


@pytest.fixture
def claude(gateway: str) -> anthropic.AsyncAnthropic:
    return sdk(gateway)


async def raw_events(url: str, body: dict[str, Any], **headers: str) -> list[RawMessageStreamEvent]:
    """A stream read event by event, each validated by the SDK's union of stream events."""
    events = []
    async with (
        httpx.AsyncClient(timeout=10) as http,
        http.stream("POST", f"{url}/v1/messages", json={**body, "stream": True}, headers=headers) as response,
    ):
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        name = None
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                name = line.removeprefix("event: ")
            elif line.startswith("data: "):
                data = orjson.loads(line.removeprefix("data: "))
                assert data["type"] == name
                if name == "ping":  # not one of the SDK's event types: it skips pings
                    assert data == {"type": "ping"}
                    events.append(PING)
                else:
                    events.append(data if name == "error" else EVENTS.validate_python(data))
    return events


@pytest.fixture
def secrets(fake: FakeProviders) -> list[bytes]:
    return [v.encode() for k, v in fake.env().items() if k.endswith("_API_KEY")]


def no_caller_key(fake: FakeProviders) -> None:
    for seen in fake.seen:
        assert CALLER_KEY not in orjson.dumps(seen.headers).decode() + seen.body.decode("utf-8", "replace")


# -- native: Anthropic --------------------------------------------------------------------------


async def test_native_message_is_relayed_with_only_the_model_rewritten(
    claude: anthropic.AsyncAnthropic, fake: FakeProviders
) -> None:
    message = await claude.messages.create(
        model=NATIVE,
        max_tokens=50,
        system=[{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
        messages=[{"role": "user", "content": [{"type": "text", "text": "hello there"}]}],
        extra_headers={"anthropic-beta": "prompt-caching-2024-07-31"},
    )
    assert isinstance(message, Message)
    assert message.content[0].type == "text" and message.content[0].text == "You said: hello there"
    assert message.id == "msg_fake" and message.stop_reason == "end_turn"
    assert message.usage.input_tokens == 5 and message.usage.cache_read_input_tokens == 4
    seen = fake.last("/anthropic/v1/messages")
    assert seen.json["model"] == "claude-3-haiku-20240307"
    assert seen.json["system"][0]["cache_control"] == {"type": "ephemeral"}  # what chat would drop
    assert seen.headers["x-api-key"] == fake_key("anthropic")
    assert seen.headers["anthropic-version"] == ANTHROPIC_API_VERSION  # the caller's, passed on
    assert seen.headers["anthropic-beta"] == "prompt-caching-2024-07-31"
    assert not {k for k in seen.headers if k.startswith("x-stainless")}  # only the two headers pass
    no_caller_key(fake)


async def test_native_body_bytes_pass_unchanged_but_the_model(gateway: str, fake: FakeProviders) -> None:
    body = b'{"max_tokens": 9,  "model" : "anthropic/claude-3-haiku-20240307", "messages": [{"role": "user", ' + (
        b'"content": [{"type": "text", "text": "\\"model\\": x", "model": "keep"}]}], "metadata": {"model": "k"}}'
    )
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{gateway}/v1/messages", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 200
    assert fake.last("/anthropic/v1/messages").body == body.replace(
        b'"anthropic/claude-3-haiku-20240307"', b'"claude-3-haiku-20240307"'
    )
    assert response.json()["type"] == "message"
    assert fake.last("/anthropic/v1/messages").headers["anthropic-version"] == "2023-06-01"  # the registry's


def test_only_the_top_level_model_is_spliced() -> None:
    named, model = "anthropic/claude-x", "claude-x"
    once = b'{"messages": [], "model" : "anthropic/claude-x", "max_tokens": 1}'
    assert with_model(once, model, named) == b'{"messages": [], "model" : "claude-x", "max_tokens": 1}'
    nested = b'{"metadata": {"model": "anthropic/claude-x"}, "model": "anthropic/claude-x"}'
    assert with_model(nested, model, named) == b'{"metadata": {"model": "anthropic/claude-x"}, "model": "claude-x"}'
    escaped = b'{"messages": [{"content": "\\"model\\": 1"}], "model": "anthropic\\/claude-x"}'
    assert orjson.loads(with_model(escaped, model, named)) == {"messages": [{"content": '"model": 1'}], "model": model}


async def test_native_stream_is_relayed_event_for_event(gateway: str, claude: anthropic.AsyncAnthropic) -> None:
    async with claude.messages.stream(model=NATIVE, max_tokens=50, messages=HI) as stream:
        final = await stream.get_final_message()
    assert final.content[0].type == "text" and final.content[0].text == "You said: hi"
    assert final.usage.output_tokens == 7
    events = await raw_events(gateway, {"model": "anthropic/thinking", "max_tokens": 50, "messages": HI})
    kinds = [e.type for e in events]  # type: ignore[union-attr]
    assert kinds[:3] == ["message_start", "ping", "content_block_start"] and kinds[-2:] == [
        "message_delta",
        "message_stop",
    ]
    deltas = [e.delta.type for e in events if e.type == "content_block_delta"]  # type: ignore[union-attr]
    assert deltas[:2] == ["thinking_delta", "signature_delta"] and set(deltas[2:]) == {"text_delta"}


async def test_native_tool_round_trip(claude: anthropic.AsyncAnthropic) -> None:
    first = await claude.messages.create(model="anthropic/tool", max_tokens=50, messages=HI, tools=[WEATHER])
    call = first.content[0]
    assert first.stop_reason == "tool_use" and call.type == "tool_use" and call.input == {"city": "Paris"}
    second = await claude.messages.create(
        model=NATIVE,
        max_tokens=50,
        tools=[WEATHER],
        messages=[
            *HI,
            {"role": "assistant", "content": [call.model_dump()]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]},
        ],
    )
    assert second.content[0].type == "text" and second.content[0].text == "Tool said: sunny"


async def test_native_with_provider_parameter_and_bare_name(gateway: str, fake: FakeProviders) -> None:
    client = sdk(gateway, default_query={"provider": "anthropic"})
    message = await client.messages.create(model="claude-3-haiku-20240307", max_tokens=5, messages=HI)
    assert message.content[0].type == "text"
    assert fake.last("/anthropic/v1/messages").json["model"] == "claude-3-haiku-20240307"


async def test_native_count_tokens_is_the_providers(claude: anthropic.AsyncAnthropic, fake: FakeProviders) -> None:
    counted = await claude.messages.count_tokens(model=NATIVE, messages=HI, system="Be brief.")
    seen = fake.last("/anthropic/v1/messages/count_tokens")
    assert seen.json["model"] == "claude-3-haiku-20240307"
    assert counted.input_tokens == 100 + len(seen.body) // 4


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
    ],
)
async def test_native_errors_keep_their_status_and_body(
    claude: anthropic.AsyncAnthropic, status: int, error: type[anthropic.APIStatusError], kind: str
) -> None:
    with pytest.raises(error) as raised:
        await claude.messages.create(model=f"anthropic/error-{status}", max_tokens=5, messages=HI)
    assert raised.value.status_code == status
    assert raised.value.body == {
        "type": "error",
        "error": {"type": kind, "message": f"fake anthropic refused with error-{status}"},
    }
    if status == 429:
        assert raised.value.response.headers["retry-after"] == "9"


async def test_native_stream_error_event_is_relayed(claude: anthropic.AsyncAnthropic) -> None:
    with pytest.raises(anthropic.APIStatusError, match="Overloaded"):
        async with claude.messages.stream(model="anthropic/overloaded-stream", max_tokens=5, messages=HI) as stream:
            await stream.get_final_message()


async def test_native_stream_cut_ends_with_an_error_event(gateway: str) -> None:
    events = await raw_events(gateway, {"model": "anthropic/cut", "max_tokens": 5, "messages": HI})
    assert events[0].type == "message_start"  # type: ignore[union-attr]
    assert events[-1] == {"type": "error", "error": {"type": "api_error", "message": events[-1]["error"]["message"]}}


# -- translated: OpenAI-compatible, Gemini, Cohere ----------------------------------------------


@pytest.mark.parametrize("pid", TRANSLATED)
async def test_translated_message(claude: anthropic.AsyncAnthropic, fake: FakeProviders, pid: str) -> None:
    message = await claude.messages.create(
        model=f"{pid}/echo",
        max_tokens=64,
        system=[{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
        messages=[{"role": "user", "content": [{"type": "text", "text": "hello"}, {"type": "text", "text": "you"}]}],
        stop_sequences=["END"],
        metadata={"user_id": "u-1"},
        extra_body={"temperature": 0.5},  # not in this SDK's types (API version 2026-10-21) any more
    )
    assert isinstance(message, Message)
    assert message.type == "message" and message.role == "assistant" and message.id.startswith("msg_")
    assert message.content[0].type == "text" and message.content[0].text.startswith("You said: hello")
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.input_tokens > 0 and message.usage.output_tokens > 0
    no_caller_key(fake)
    if pid == "openai":
        sent = fake.last_post("openai").json
        assert sent["messages"] == [
            {"role": "system", "content": "Be brief.\n\nBe kind."},
            {"role": "user", "content": "hello\n\nyou"},
        ]
        assert sent["max_completion_tokens"] == 64 and sent["stop"] == ["END"] and sent["user"] == "u-1"
        assert sent["temperature"] == 0.5 and "top_k" not in sent


@pytest.mark.parametrize("pid", TRANSLATED)
async def test_translated_stream(gateway: str, claude: anthropic.AsyncAnthropic, pid: str) -> None:
    async with claude.messages.stream(model=f"{pid}/echo", max_tokens=64, messages=HI) as stream:
        final = await stream.get_final_message()
    assert final.content[0].type == "text" and final.content[0].text == "You said: hi"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0 and final.usage.input_tokens > 0
    events = await raw_events(gateway, {"model": f"{pid}/echo", "max_tokens": 64, "messages": HI})
    kinds = [e.type for e in events]  # type: ignore[union-attr]
    assert kinds[:3] == ["message_start", "ping", "content_block_start"]
    assert kinds[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(kinds[3:-3]) == {"content_block_delta"}


@pytest.mark.parametrize("pid", TRANSLATED)
@pytest.mark.parametrize("streamed", [False, True])
async def test_translated_tool_round_trip(
    claude: anthropic.AsyncAnthropic, fake: FakeProviders, pid: str, streamed: bool
) -> None:
    async def ask(**params: Any) -> Message:
        params = {"model": f"{pid}/tool", "max_tokens": 64, "tools": [WEATHER], **params}
        if not streamed:
            return await claude.messages.create(**params)
        async with claude.messages.stream(**params) as stream:
            return await stream.get_final_message()

    first = await ask(messages=HI, tool_choice={"type": "any"})
    call = next(b for b in first.content if b.type == "tool_use")
    assert first.stop_reason == "tool_use" and call.name == "weather" and call.input == {"city": "Paris"}
    second = await ask(
        model=f"{pid}/echo",
        messages=[
            *HI,
            {"role": "assistant", "content": [call.model_dump()]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": call.id, "content": [{"type": "text", "text": "sunny"}]}
                ],
            },
        ],
    )
    assert second.content[0].type == "text" and second.stop_reason == "end_turn"
    if pid != "openai":  # the native fakes answer a tool result with it
        assert second.content[0].text == "Tool said: sunny"
    else:
        sent = fake.last_post("openai").json
        assert sent["messages"][1]["tool_calls"][0]["function"] == {"name": "weather", "arguments": '{"city":"Paris"}'}
        assert sent["messages"][2] == {"role": "tool", "tool_call_id": call.id, "content": "sunny"}
        assert sent["tools"][0]["function"]["parameters"] == WEATHER["input_schema"]


async def test_tool_result_error_and_tool_choice(claude: anthropic.AsyncAnthropic, fake: FakeProviders) -> None:
    await claude.messages.create(
        model="openai/echo",
        max_tokens=5,
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "weather", "disable_parallel_tool_use": True},
        messages=[
            *HI,
            {"role": "assistant", "content": [{"type": "tool_use", "id": "t1", "name": "weather", "input": {}}]},
            {
                "role": "user",
                "content": [
                    {"type": "tool_result", "tool_use_id": "t1", "content": "no such city", "is_error": True},
                    {"type": "text", "text": "try again"},
                ],
            },
        ],
    )
    sent = fake.last_post("openai").json
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "weather"}}
    assert sent["parallel_tool_calls"] is False
    assert sent["messages"][2:] == [
        {"role": "tool", "tool_call_id": "t1", "content": "Error: no such city"},
        {"role": "user", "content": "try again"},
    ]


@pytest.mark.parametrize("pid", ["google", "cohere"])
async def test_thinking_comes_back_as_a_thinking_block(claude: anthropic.AsyncAnthropic, pid: str) -> None:
    message = await claude.messages.create(model=f"{pid}/thinking", max_tokens=64, messages=HI)
    assert [b.type for b in message.content] == ["thinking", "text"]
    async with claude.messages.stream(model=f"{pid}/thinking", max_tokens=64, messages=HI) as stream:
        final = await stream.get_final_message()
    assert [b.type for b in final.content] == ["thinking", "text"]
    assert final.content[0].thinking and final.content[1].text == "You said: hi"  # type: ignore[union-attr]


async def test_thinking_becomes_reasoning_effort(claude: anthropic.AsyncAnthropic, fake: FakeProviders) -> None:
    await claude.messages.create(
        model="openai/echo", max_tokens=64, messages=HI, thinking={"type": "enabled", "budget_tokens": 2000}
    )
    assert fake.last_post("openai").json["reasoning_effort"] == "low"
    await claude.messages.create(model="openai/echo", max_tokens=64, messages=HI, thinking={"type": "disabled"})
    assert "reasoning_effort" not in fake.last_post("openai").json


@pytest.mark.parametrize("pid", ["openai", "google"])
async def test_images_are_translated(vision: str, fake: FakeProviders, pid: str) -> None:
    content = [
        {"type": "text", "text": "look"},
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}},
    ]
    if pid == "google":
        content.pop()  # Gemini takes no URL of an arbitrary host
    message = await sdk(vision).messages.create(
        model=f"{pid}/echo", max_tokens=64, messages=[{"role": "user", "content": content}]
    )
    assert message.content[0].type == "text"
    if pid == "google":
        assert message.content[0].text == "You said: look [1 images]"
    else:
        parts = fake.last_post("openai").json["messages"][0]["content"]
        assert parts == [
            {"type": "text", "text": "look"},
            {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
        ]


async def test_images_are_refused_when_vision_is_off(claude: anthropic.AsyncAnthropic) -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    for model in ("openai/echo", NATIVE):
        with pytest.raises(anthropic.BadRequestError, match="vision is disabled") as raised:
            await claude.messages.create(model=model, max_tokens=5, messages=[{"role": "user", "content": [image]}])
        assert raised.value.body["error"]["type"] == "invalid_request_error"  # type: ignore[index]


async def test_translated_count_tokens_is_an_estimate(claude: anthropic.AsyncAnthropic) -> None:
    short = await claude.messages.count_tokens(model="openai/echo", messages=HI)
    long = await claude.messages.count_tokens(
        model="google/echo", messages=[{"role": "user", "content": "word " * 400}], tools=[WEATHER]
    )
    assert short.input_tokens == 1 + 4  # "hi": one token, and the message's framing
    assert long.input_tokens > 500


async def test_translated_midstream_failure_is_an_error_event(gateway: str, claude: anthropic.AsyncAnthropic) -> None:
    events = await raw_events(gateway, {"model": "openai/midstream-error", "max_tokens": 5, "messages": HI})
    assert events[0].type == "message_start"  # type: ignore[union-attr]
    assert events[-1]["type"] == "error" and events[-1]["error"]["type"] == "api_error"  # type: ignore[index]
    with pytest.raises(anthropic.APIStatusError, match="mid-stream failure"):
        async with claude.messages.stream(model="openai/midstream-error", max_tokens=5, messages=HI) as stream:
            await stream.get_final_message()


@pytest.mark.parametrize("pid", ["openai", "anthropic"])
async def test_client_disconnect_closes_the_upstream(gateway: str, fake: FakeProviders, pid: str) -> None:
    disconnects = PROTOCOLS["anthropic"].disconnects if pid == "anthropic" else fake.disconnects
    before = disconnects.count("hang")
    body = {"model": f"{pid}/hang", "max_tokens": 5, "messages": HI, "stream": True}
    async with httpx.AsyncClient(timeout=10) as http, http.stream("POST", f"{gateway}/v1/messages", json=body) as r:
        async for line in r.aiter_lines():
            if "message_start" in line:
                break
    for _ in range(200):
        if disconnects.count("hang") > before:
            break
        await asyncio.sleep(0.01)
    assert disconnects.count("hang") == before + 1


# -- errors ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"[1]", "must be a JSON object"),
        (b"{not json", "JSON"),
        (b'{"model": "openai/echo", "messages": [{"role": "user", "content": "x"}]}', "max_tokens"),
        (b'{"model": "openai/echo", "max_tokens": 5, "messages": []}', "messages"),
        (b'{"model": "openai/echo", "max_tokens": 5, "messages": [{"role": "system", "content": "x"}]}', "role"),
        (b'{"model": "nowhere/echo", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}', "provider"),
        (b'{"model": "echo", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}', "names no provider"),
        (
            b'{"model": "openai/echo", "max_tokens": 5, "bogus": 1, "messages": [{"role": "user", "content": "x"}]}',
            "bogus",
        ),
        (
            b'{"model": "openai/echo", "max_tokens": 5, "messages": [{"role": "user", "content": '
            b'[{"type": "document", "source": {}}]}]}',
            "'document' blocks are not translated",
        ),
        (
            b'{"model": "openai/echo", "max_tokens": 5, "tools": [{"type": "web_search_20250305", "name": "w"}], '
            b'"messages": [{"role": "user", "content": "x"}]}',
            "server tool",
        ),
    ],
)
async def test_bad_requests_are_anthropic_400s(gateway: str, body: bytes, message: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{gateway}/v1/messages", content=body, headers={"x-api-key": CALLER_KEY})
    assert response.status_code == 400
    error = response.json()
    assert error["type"] == "error" and error["error"]["type"] == "invalid_request_error"
    assert message in error["error"]["message"]
    assert set(error) == {"type", "error"} and set(error["error"]) == {"type", "message"}


@pytest.mark.parametrize(
    ("status", "error", "kind"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (404, anthropic.NotFoundError, "not_found_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (503, anthropic.InternalServerError, "overloaded_error"),
    ],
)
@pytest.mark.parametrize("pid", TRANSLATED)
async def test_translated_upstream_errors(
    claude: anthropic.AsyncAnthropic, pid: str, status: int, error: type[anthropic.APIStatusError], kind: str
) -> None:
    with pytest.raises(error) as raised:
        await claude.messages.create(model=f"{pid}/error-{status}", max_tokens=5, messages=HI)
    assert raised.value.status_code == status
    assert raised.value.body["type"] == "error" and raised.value.body["error"]["type"] == kind  # type: ignore[index]


async def test_route_errors_are_in_anthropics_shape(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{gateway}/v1/messages")
        assert response.status_code == 405
        assert response.json()["error"]["type"] == "invalid_request_error" and response.json()["type"] == "error"
        assert "error" in (await http.post(f"{gateway}/v1/chat/completions", content=b"[]")).json()  # still OpenAI's
        assert (await http.post(f"{gateway}/v1/chat/completions", content=b"[]")).json().get("type") is None


async def test_too_large_is_request_too_large(gateway_with: GatewayFactory) -> None:
    async with gateway_with(SERVER_MAX_REQUEST_BODY_SIZE="1000") as url:
        with pytest.raises(anthropic.APIStatusError) as raised:
            await sdk(url).messages.create(
                model="openai/echo", max_tokens=5, messages=[{"role": "user", "content": "x" * 2000}]
            )
    assert raised.value.status_code == 413
    assert raised.value.body["error"]["type"] == "request_too_large"  # type: ignore[index]


async def test_gateway_key_as_x_api_key(gateway_with: GatewayFactory, fake: FakeProviders) -> None:
    digest = hashlib.sha256(CALLER_KEY.encode()).hexdigest()
    async with gateway_with(AUTH_ENABLED="true", AUTH_API_KEYS=f"claude-code:{digest}") as url:
        message = await sdk(url).messages.create(model=NATIVE, max_tokens=5, messages=HI)
        assert message.content[0].type == "text"
        no_caller_key(fake)
        bearer = sdk(url, key="", default_headers={"Authorization": f"Bearer {CALLER_KEY}"})
        assert (await bearer.messages.count_tokens(model="openai/echo", messages=HI)).input_tokens > 0
        with pytest.raises(anthropic.AuthenticationError) as raised:
            await sdk(url, key="wrong-key").messages.create(model=NATIVE, max_tokens=5, messages=HI)
        assert raised.value.body == {
            "type": "error",
            "error": {"type": "authentication_error", "message": "The API key is not valid."},
        }
        async with httpx.AsyncClient() as http:
            missing = await http.post(f"{url}/v1/messages", json={})
            assert missing.status_code == 401 and "x-api-key" in missing.json()["error"]["message"]
            # Elsewhere the key is still the bearer one only.
            assert (await http.get(f"{url}/v1/models", headers={"x-api-key": CALLER_KEY})).status_code == 401


async def test_model_policy_applies(gateway_with: GatewayFactory) -> None:
    async with gateway_with(DISALLOWED_MODELS="openai/echo,anthropic/claude-3-haiku-20240307") as url:
        for model in ("openai/echo", NATIVE):
            with pytest.raises(anthropic.PermissionDeniedError) as raised:
                await sdk(url).messages.create(model=model, max_tokens=5, messages=HI)
            assert raised.value.body["error"]["type"] == "permission_error"  # type: ignore[index]


# -- secrets -----------------------------------------------------------------------------------


@pytest.mark.parametrize("pid", PROVIDERS)
async def test_a_key_quoted_in_a_message_or_its_stream_is_masked(gateway: str, secrets: list[bytes], pid: str) -> None:
    body = {"model": f"{pid}/leak", "max_tokens": 5, "messages": HI}
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"{gateway}/v1/messages", json=body)
        streamed = await http.post(f"{gateway}/v1/messages", json={**body, "stream": True})
    assert Message.model_validate(answer.json()).content[0].text == f"Your key is {masked(pid)}"  # type: ignore[union-attr]
    texts = [
        orjson.loads(line.removeprefix(b"data: "))["delta"]["text"]
        for line in streamed.content.split(b"\n")
        if b'"text_delta"' in line
    ]
    assert "".join(texts) == f"Your key is {masked(pid)}"
    assert_no_key(answer, secrets)
    assert_no_key(streamed, secrets)


@pytest.mark.parametrize("pid", PROVIDERS)
async def test_a_key_quoted_in_an_error_or_an_error_event_is_masked(
    gateway: str, secrets: list[bytes], pid: str
) -> None:
    body = {"model": f"{pid}/leak-error", "max_tokens": 5, "messages": HI}
    async with httpx.AsyncClient() as http:
        refused = await http.post(f"{gateway}/v1/messages", json=body)
        streamed = await http.post(f"{gateway}/v1/messages", json={**body, "stream": True})
    assert refused.status_code == 429 and refused.json()["type"] == "error"
    assert stars(pid) in refused.json()["error"]["message"] and refused.headers["retry-after"] == masked(pid)
    assert b"event: error\n" in streamed.content and stars(pid).encode() in streamed.content
    assert_no_key(refused, secrets)
    assert_no_key(streamed, secrets)


# -- telemetry ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "provider", "expected"),
    [
        # Anthropic's usage, relayed: 5 new input tokens, 4 read from the cache, 2 written: 11 input.
        ("anthropic/cached-model", "anthropic", {"input": 11, "output": 7, "cache_read": 4, "cache_write": 2}),
        ("openai/cached-model", "openai", {"input": 11, "output": 7}),  # the OpenAI fake's usage
        ("google/cached-model", "gcp.gemini", {"input": 11, "output": 7, "cache_read": 4}),
    ],
)
@pytest.mark.parametrize("streamed", [False, True])
async def test_usage_is_reported_to_telemetry(
    gateway_with: GatewayFactory, model: str, provider: str, expected: dict[str, int], streamed: bool
) -> None:
    port = free_port()
    series = {"gen_ai_provider_name": provider, "gen_ai_request_model": "cached-model", "gen_ai_operation_name": "chat"}
    async with gateway_with(TELEMETRY_ENABLED="true", TELEMETRY_METRICS_PORT=str(port)) as url:
        client = sdk(url)
        if streamed:
            async with client.messages.stream(model=model, max_tokens=5, messages=HI) as stream:
                await stream.get_final_message()
        else:
            await client.messages.create(model=model, max_tokens=5, messages=HI)
        after = await until(port, DURATION, 1, **series)
    for kind in ("input", "output", "cache_read", "cache_write"):
        assert after.value(TOKENS, gen_ai_token_type=kind, **series) == expected.get(kind, 0), kind
    assert after.value(DURATION, gen_ai_response_model="cached-model", **series) == 1  # the answer's model


async def test_gateway_502_and_504_are_anthropic_errors(gateway_with: GatewayFactory) -> None:
    async with gateway_with(CLIENT_TIMEOUT="300ms", ANTHROPIC_API_URL="http://127.0.0.1:9/v1") as url:
        client = sdk(url)
        with pytest.raises(anthropic.InternalServerError) as raised:
            await client.messages.create(model="openai/slow", max_tokens=5, messages=HI)
        assert raised.value.status_code == 504
        assert raised.value.body["error"]["type"] == "timeout_error"  # type: ignore[index]
        for call in (
            client.messages.create(model=NATIVE, max_tokens=5, messages=HI),
            client.messages.count_tokens(model=NATIVE, messages=HI),
        ):
            with pytest.raises(anthropic.InternalServerError) as raised:
                await call
            assert raised.value.status_code == 502
            assert raised.value.body["error"]["type"] == "api_error"  # type: ignore[index]
            assert "connect" in raised.value.body["error"]["message"]  # type: ignore[index]


async def test_the_model_in_the_path(gateway_with: GatewayFactory, fake: FakeProviders) -> None:
    """Claude Code with ANTHROPIC_BASE_URL=http://gateway/<provider%2Fmodel>: its own model name is overridden."""
    async with gateway_with(ROUTING_STRATEGY="path") as url:
        client = sdk(f"{url}/openai%2Fecho")
        message = await client.messages.create(model="claude-opus-4-7", max_tokens=5, messages=HI)
        assert message.content[0].type == "text" and message.content[0].text == "You said: hi"
        assert fake.last_post("openai").json["model"] == "echo"
        assert (await client.messages.count_tokens(model="claude-opus-4-7", messages=HI)).input_tokens == 5
        with pytest.raises(anthropic.BadRequestError) as raised:
            await sdk(f"{url}/nowhere%2Fecho").messages.create(model="x", max_tokens=5, messages=HI)
        assert raised.value.body["type"] == "error"  # type: ignore[index]


# -- MCP ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("streamed", [False, True])
async def test_mcp_tools_run_for_messages(gateway_with: GatewayFactory, streamed: bool) -> None:
    server = await MCPTestServer("stateless").start()
    try:
        async with gateway_with(MCP_ENABLED="true", MCP_EXPOSE="true", MCP_SERVERS=f"calc={server.url}") as url:
            await tools_of(url, 5)
            client = sdk(url)
            for model in ("openai/agent", "anthropic/agent"):  # translated, and native called through chat
                params: dict[str, Any] = {
                    "model": model,
                    "max_tokens": 64,
                    "messages": [{"role": "user", "content": 'call mcp_add {"a": 2, "b": 3}'}],
                }
                if streamed:
                    async with client.messages.stream(**params) as stream:
                        message = await stream.get_final_message()
                else:
                    message = await client.messages.create(**params)
                assert [b.type for b in message.content] == ["text"], model
                assert message.content[0].text == "Done: 5" and message.stop_reason == "end_turn"  # type: ignore[union-attr]
    finally:
        await server.stop()


# -- every registry entry ------------------------------------------------------------------------


@pytest.mark.parametrize("pid", list(load_registry()))
async def test_every_provider_answers_messages(pid: str, claude: anthropic.AsyncAnthropic, fake: FakeProviders) -> None:
    ping = [{"role": "user", "content": "ping"}]
    message = await claude.messages.create(model=f"{pid}/model-a", max_tokens=16, messages=ping)
    assert message.content[0].type == "text" and message.content[0].text == "You said: ping"
    sent = fake.last_post(pid)
    assert sent.json.get("model") == "model-a" or "/model-a:" in sent.path
    async with claude.messages.stream(model=f"{pid}/model-a", max_tokens=16, messages=ping) as stream:
        final = await stream.get_final_message()
    assert final.content[0].type == "text" and final.content[0].text == "You said: ping"
    for param in fake.registry[pid].drop_params:
        assert param not in fake.last_post(pid).json


async def test_tool_choice_without_tools_is_not_sent(claude: anthropic.AsyncAnthropic, fake: FakeProviders) -> None:
    await claude.messages.create(model="openai/echo", max_tokens=5, messages=HI, tool_choice={"type": "none"})
    assert not {"tool_choice", "tools", "parallel_tool_calls"} & set(fake.last_post("openai").json)


async def test_a_refusal_is_the_text_with_stop_reason_refusal(claude: anthropic.AsyncAnthropic) -> None:
    message = await claude.messages.create(model="openai/refusal", max_tokens=5, messages=HI)
    async with claude.messages.stream(model="openai/refusal", max_tokens=5, messages=HI) as stream:
        final = await stream.get_final_message()
    for answer in (message, final):
        assert answer.content[0].type == "text" and answer.content[0].text == "I cannot help with that."
        assert answer.stop_reason == "refusal"


@pytest.mark.parametrize("streamed", [False, True])
async def test_the_stop_sequence_that_matched(claude: anthropic.AsyncAnthropic, streamed: bool) -> None:
    """Where the provider names it (vLLM's stop_reason), the stop sequence is reported; else end_turn."""
    for model, reason, sequence in (
        ("openai/stop-sequence", "stop_sequence", " there"),
        ("openai/echo", "end_turn", None),
    ):
        params: dict[str, Any] = {
            "model": model,
            "max_tokens": 5,
            "messages": [{"role": "user", "content": "hello there friend"}],
            "stop_sequences": ["zzz", " there"],
        }
        if streamed:
            async with claude.messages.stream(**params) as stream:
                message = await stream.get_final_message()
        else:
            message = await claude.messages.create(**params)
        assert (message.stop_reason, message.stop_sequence) == (reason, sequence)
        if sequence:
            assert message.content[0].type == "text" and message.content[0].text == "You said: hello"
