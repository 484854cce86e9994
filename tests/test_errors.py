"""Every bad input and every upstream failure ends in OpenAI's error envelope, with the right status."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import openai
import pytest

from .conftest import GatewayFactory
from .fakes import ERROR_CLASSES, FakeProviders

HELLO = [{"role": "user", "content": "hi"}]


def assert_envelope(response: httpx.Response, status: int, kind: str, *, contains: str = "") -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "code", "param"}
    assert error["type"] == kind
    assert contains in error["message"]
    return error


async def post_chat(url: str, content: bytes, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient() as http:
        return await http.post(
            f"{url}/v1/chat/completions", content=content, headers={"content-type": "application/json", **headers}
        )


@pytest.mark.parametrize(
    ("body", "param", "contains"),
    [
        (b'{"model": "openai/echo", "messages": [', None, "not valid JSON"),
        (b'["openai/echo"]', None, "must be a JSON object"),
        (b'{"messages": [{"role": "user", "content": "hi"}]}', "model", "'model' is required"),
        (b'{"model": "", "messages": [{"role": "user", "content": "hi"}]}', "model", "'model' is required"),
        (b'{"model": "openai/echo"}', "messages", "'messages' is required"),
        (b'{"model": "openai/echo", "messages": []}', "messages", "'messages' is required"),
        (b'{"model": "openai/echo", "messages": ["hi"]}', "messages[0]", "string 'role'"),
        (b'{"model": "openai/echo", "messages": [{"role": "user"}], "stream": "yes"}', "stream", "true or false"),
    ],
)
async def test_bad_bodies_get_400(gateway: str, body: bytes, param: str | None, contains: str) -> None:
    error = assert_envelope(await post_chat(gateway, body), 400, "invalid_request_error", contains=contains)
    assert error["param"] == param


async def test_unknown_provider_prefix_says_how_to_name_a_model(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="nosuch/gpt-4o", messages=HELLO)  # type: ignore[arg-type]
    assert "provider/model" in caught.value.message and "unknown provider 'nosuch'" in caught.value.message


async def test_model_without_provider_says_how_to_name_a_model(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="gpt-4o", messages=HELLO)  # type: ignore[arg-type]
    assert "provider/model" in caught.value.message and "?provider=" in caught.value.message


async def test_unknown_provider_query_parameter(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model="x", messages=HELLO, extra_query={"provider": "nosuch"})  # type: ignore[arg-type]
    assert "Unknown provider 'nosuch'" in caught.value.message


async def test_unconfigured_provider_names_the_variable(gateway_with: GatewayFactory) -> None:
    async with gateway_with(GROQ_API_KEY="") as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model="groq/echo", messages=HELLO)  # type: ignore[arg-type]
    assert "GROQ_API_KEY" in caught.value.message
    assert caught.value.code == "provider_not_configured"


async def test_body_over_the_limit_declared_is_refused_before_it_is_sent(gateway_with: GatewayFactory) -> None:
    async with gateway_with(SERVER_MAX_REQUEST_BODY_SIZE="1000") as url:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        # Headers only: a gateway that waited for the gigabyte would never answer.
        writer.write(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: 1000000000\r\n\r\n"
        )
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.close()
    assert head.startswith(b"HTTP/1.1 413")


async def test_body_too_slow_to_arrive_gets_408(gateway_with: GatewayFactory) -> None:
    async with gateway_with(SERVER_READ_TIMEOUT="300ms") as url:
        host, port = url.removeprefix("http://").split(":")
        reader, writer = await asyncio.open_connection(host, int(port))
        writer.write(b'POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"model"')
        await writer.drain()
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)
        writer.close()
    assert head.startswith(b"HTTP/1.1 408")


async def test_chunked_body_over_the_limit_gets_413(gateway_with: GatewayFactory) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(20):
            yield b" " * 100

    async with gateway_with(SERVER_MAX_REQUEST_BODY_SIZE="1000") as url, httpx.AsyncClient() as http:
        response = await http.post(f"{url}/v1/chat/completions", content=chunks())
    assert_envelope(response, 413, "invalid_request_error", contains="SERVER_MAX_REQUEST_BODY_SIZE")


@pytest.mark.parametrize(
    ("status", "exception"),
    ERROR_CLASSES,
)
async def test_upstream_errors_keep_status_and_message(
    client: openai.AsyncOpenAI, status: int, exception: type
) -> None:
    with pytest.raises(exception) as caught:
        await client.chat.completions.create(model=f"openai/error-{status}", messages=HELLO)  # type: ignore[arg-type]
    assert caught.value.status_code == status
    assert f"fake upstream refused with {status}" in caught.value.message
    assert caught.value.code == f"fake_{status}"


async def test_upstream_429_keeps_retry_after(gateway: str) -> None:
    response = await post_chat(
        gateway, b'{"model": "openai/error-429", "messages": [{"role": "user", "content": "x"}]}'
    )
    assert_envelope(response, 429, "invalid_request_error")
    assert response.headers["retry-after"] == "7"
    # The provider's own limits come with its 429, for the caller to pace itself by.
    assert response.headers["x-ratelimit-remaining-requests"] == "0"
    assert response.headers["x-ratelimit-limit-requests"] == "500"


async def test_upstream_errors_before_a_stream_keep_their_status(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.RateLimitError):
        await client.chat.completions.create(model="openai/error-429", messages=HELLO, stream=True)  # type: ignore[arg-type]


async def test_upstream_unreachable_is_502(gateway_with: GatewayFactory) -> None:
    async with gateway_with(OPENAI_API_URL="http://127.0.0.1:9/v1") as url:
        response = await post_chat(url, b'{"model": "openai/echo", "messages": [{"role": "user", "content": "x"}]}')
    assert_envelope(response, 502, "api_error", contains="Could not connect")


async def test_upstream_timeout_is_504(gateway_with: GatewayFactory) -> None:
    async with gateway_with(CLIENT_TIMEOUT="300ms") as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.APIStatusError) as caught:
            await client.chat.completions.create(model="openai/slow", messages=HELLO)  # type: ignore[arg-type]
    assert caught.value.status_code == 504


async def stream_text(url: str, model: str) -> str:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(
            f"{url}/v1/chat/completions", json={"model": model, "messages": HELLO, "stream": True}
        )
    assert response.status_code == 200
    return response.text


@pytest.mark.parametrize(
    ("model", "message"),
    [
        ("openai/broken-stream", "cut off"),
        ("openai/midstream-error", "fake mid-stream failure"),
        ("openai/midstream-error-tight", "fake mid-stream failure"),
    ],
)
async def test_broken_streams_end_with_one_error_event_and_done(gateway: str, model: str, message: str) -> None:
    text = await stream_text(gateway, model)
    events = [e for e in text.split("\n\n") if e]
    assert events[-1] == "data: [DONE]"
    assert text.count("[DONE]") == 1
    assert message in events[-2] and events[-2].removeprefix("data:").lstrip().startswith('{"error"')
    assert sum('"error"' in e for e in events) == 1


async def test_a_complete_stream_without_done_ends_normally(gateway: str) -> None:
    """The provider sent its finish chunk and closed: the answer is whole (cut streams: test_faulty_upstreams)."""
    events = [e for e in (await stream_text(gateway, "openai/no-done")).split("\n\n") if e]
    assert events[-1] == "data: [DONE]" and not any('"error"' in e for e in events)
    assert '"finish_reason":"stop"' in events[-2]


async def test_broken_stream_raises_in_the_sdk(client: openai.AsyncOpenAI) -> None:
    stream = await client.chat.completions.create(model="openai/broken-stream", messages=HELLO, stream=True)  # type: ignore[arg-type]
    with pytest.raises(openai.APIError, match="cut off"):
        async for _ in stream:
            pass


async def test_silent_stream_ends_after_the_idle_timeout(gateway_with: GatewayFactory) -> None:
    async with gateway_with(SERVER_WRITE_TIMEOUT="300ms") as url:
        text = await stream_text(url, "openai/hang")
    assert '"upstream_timeout"' in text and text.endswith("data: [DONE]\n\n")


async def test_unknown_route_is_404_in_the_envelope(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{gateway}/v2/whatever")
    assert_envelope(response, 404, "not_found_error", contains="/v2/whatever")


async def test_wrong_method_is_405_in_the_envelope(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{gateway}/v1/chat/completions")
    assert_envelope(response, 405, "invalid_request_error")
    assert response.headers["allow"] == "POST"


async def test_client_disconnect_mid_stream_closes_the_upstream(
    client: openai.AsyncOpenAI, fake: FakeProviders
) -> None:
    stream = await client.chat.completions.create(model="openai/hang", messages=HELLO, stream=True)  # type: ignore[arg-type]
    first = await stream.__anext__()
    assert first.choices[0].delta.role == "assistant"
    before = fake.disconnects.count("hang")
    await stream.close()
    for _ in range(100):
        if fake.disconnects.count("hang") > before:
            break
        await asyncio.sleep(0.02)
    assert fake.disconnects.count("hang") == before + 1


async def test_client_disconnect_while_waiting_cancels_the_upstream_call(gateway: str, fake: FakeProviders) -> None:
    before = fake.disconnects.count("slow")
    async with httpx.AsyncClient() as http:
        call = asyncio.create_task(
            http.post(f"{gateway}/v1/chat/completions", json={"model": "openai/slow", "messages": HELLO})
        )
        await asyncio.sleep(0.3)
        call.cancel()
    for _ in range(100):
        if fake.disconnects.count("slow") > before:
            break
        await asyncio.sleep(0.02)
    assert fake.disconnects.count("slow") == before + 1


async def test_secrets_never_appear_in_errors(gateway: str) -> None:
    response = await post_chat(
        gateway, b'{"model": "openai/error-401", "messages": [{"role": "user", "content": "x"}]}'
    )
    assert response.status_code == 401
    assert "fake upstream refused with 401 (key Bearer **********)" in response.json()["error"]["message"]
    assert "key-openai" not in response.text
