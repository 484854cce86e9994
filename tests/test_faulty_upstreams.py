"""Providers that misbehave after a 200: HTML or empty answers, oversized stream events, streams that
finish without ``[DONE]`` or stop short. A small fake of OpenAI's and Anthropic's protocols on
loopback answers the way faulty providers (or proxies in front of them) do; the model names the fault.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest
import pytest_asyncio
from aiohttp import web

from gateway import Settings
from gateway.settings import SettingsError

from .conftest import GatewayFactory

EVENT_MIB = 20  # the oversized event's size


def chunk(index: int, delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
    choice = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish}
    return {"id": "chatcmpl-f", "object": "chat.completion.chunk", "created": 1, "model": "m", "choices": [choice]}


USAGE = {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}


def openai_events(model: str, payload: dict[str, Any]) -> list[bytes]:
    """The stream a fault-named model sends; ``cut-*`` and ``finish-*`` close without [DONE]."""
    n = payload.get("n") or 1
    events = [chunk(i, {"role": "assistant", "content": ""}) for i in range(n)]
    events += [chunk(i, {"content": f"Hello {i}"}) for i in range(n)]
    finishing = n if model != "cut-one-choice-unfinished" else n - 1
    if model != "cut-before-finish":
        events += [chunk(i, {}, "stop") for i in range(finishing)]
    usage_asked = (payload.get("stream_options") or {}).get("include_usage")
    if usage_asked and model != "cut-before-usage":
        events.append({**chunk(0, {}), "choices": [], "usage": USAGE})
    prefix = b"data:" if model.endswith("-tight") else b"data: "
    return [prefix + orjson.dumps(e) + b"\n\n" for e in events]


def anthropic_events(model: str) -> list[bytes]:
    def event(data: dict[str, Any]) -> bytes:
        return b"event: " + data["type"].encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

    message = {"id": "msg_f", "type": "message", "role": "assistant", "model": "m", "content": [], "stop_reason": None}
    events = [
        event({"type": "message_start", "message": {**message, "usage": {"input_tokens": 3, "output_tokens": 1}}}),
        event({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        event({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hello"}}),
        event({"type": "content_block_stop", "index": 0}),
    ]
    if model != "cut-before-stop-reason":
        delta = {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}}
        events.append(event({**delta, "usage": {"output_tokens": 2}}))
    if model == "complete":
        events.append(event({"type": "message_stop"}))
    return events


class FaultyProvider:
    """``POST /v1/chat/completions`` (OpenAI) and ``POST /v1/messages`` (Anthropic), faults by model."""

    def __init__(self) -> None:
        self.runner: web.AppRunner | None = None
        self.base = ""
        self.huge_stream_left = asyncio.Event()

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.openai)
        app.router.add_post("/v1/messages", self.anthropic)
        self.runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.base = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    async def openai(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != "Bearer key-openai":
            return web.json_response({"error": {"message": "bad key", "type": "invalid_request_error"}}, status=401)
        payload = await request.json()
        model = payload["model"]
        if model == "html":
            html = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>\n"
            return web.Response(text=html, content_type="text/html")
        if model == "empty":
            return web.Response(body=b"", content_type="application/json")
        if model == "truncated":
            return web.Response(
                body=b'{"id": "chatcmpl-f", "choices": [{"index": 0, "mess', content_type="application/json"
            )
        if model == "ok":
            choice = {"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}
            body = {"id": "c", "object": "chat.completion", "created": 1, "model": "ok", "choices": [choice]}
            return web.Response(body=b"\n  " + orjson.dumps(body) + b"\n", content_type="application/json")
        if model == "json-to-a-stream":  # the stream flag ignored: one completion
            choice = {"index": 0, "message": {"role": "assistant", "content": "fine"}, "finish_reason": "stop"}
            return web.json_response({"id": "c", "object": "chat.completion", "choices": [choice]})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if model == "huge-event":
            return await self._huge_event(response)
        for event in openai_events(model, payload):
            await response.write(event)
        if model == "complete":
            await response.write(b"data: [DONE]\n\n")
        return response

    async def _huge_event(self, response: web.StreamResponse) -> web.StreamResponse:
        await response.write(b"data: " + orjson.dumps(chunk(0, {"role": "assistant", "content": ""})) + b"\n\n")
        piece = b"x" * 65536
        try:
            await response.write(b'data: {"choices": [{"index": 0, "delta": {"content": "')
            for _ in range(EVENT_MIB * 16):
                await response.write(piece)
            await response.write(b'"}}]}\n\ndata: [DONE]\n\n')
        except (ConnectionResetError, asyncio.CancelledError):
            self.huge_stream_left.set()
            raise
        return response

    async def anthropic(self, request: web.Request) -> web.StreamResponse:
        # The Anthropic SDK of this era sends "Authorization: Bearer"; the gateway sends x-api-key.
        key = request.headers.get("x-api-key") or request.headers.get("Authorization", "").removeprefix("Bearer ")
        if key != "key-anthropic":
            error = {"type": "authentication_error", "message": "invalid x-api-key"}
            return web.json_response({"type": "error", "error": error}, status=401)
        payload = await request.json()
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for event in anthropic_events(payload["model"]):
            await response.write(event)
        return response


@pytest_asyncio.fixture(scope="module")
async def faulty() -> AsyncIterator[FaultyProvider]:
    provider = FaultyProvider()
    await provider.start()
    yield provider
    await provider.stop()


@pytest_asyncio.fixture(scope="module")
async def gateway_url(gateway_with: GatewayFactory, faulty: FaultyProvider) -> AsyncIterator[str]:
    async with gateway_with(OPENAI_API_URL=f"{faulty.base}/v1", ANTHROPIC_API_URL=f"{faulty.base}/v1") as url:
        yield url


@pytest.fixture
def sdk(gateway_url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{gateway_url}/v1", api_key="not-checked", max_retries=0)


# -- a 200 that is not JSON -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "said"),
    [
        ("html", "of text/html; charset=utf-8 starting '<html><head><title>502 Bad Gateway"),
        ("empty", "an empty body (application/json"),
        ("truncated", 'starting \'{"id": "chatcmpl-f"'),
    ],
)
async def test_a_200_that_is_not_json_is_a_502(sdk: openai.AsyncOpenAI, model: str, said: str) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        await sdk.chat.completions.create(model=f"openai/{model}", messages=[{"role": "user", "content": "hi"}])
    assert caught.value.status_code == 502
    error = caught.value.body
    assert isinstance(error, dict)
    assert error["code"] == "upstream_invalid_response" and error["type"] == "api_error"
    assert error["message"].startswith("openai answered HTTP 200 with ") and said in error["message"]
    assert "OPENAI_API_URL" in error["message"] and "key-openai" not in error["message"]


@pytest.mark.parametrize("model", ["html", "json-to-a-stream"])
async def test_a_stream_answered_with_a_page_or_a_document_is_a_502(sdk: openai.AsyncOpenAI, model: str) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        await sdk.chat.completions.create(
            model=f"openai/{model}", messages=[{"role": "user", "content": "hi"}], stream=True
        )
    assert caught.value.status_code == 502
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "upstream_invalid_response"
    assert "instead of an event stream" in error["message"]


async def test_json_with_whitespace_around_still_passes(sdk: openai.AsyncOpenAI) -> None:
    answer = await sdk.chat.completions.create(model="openai/ok", messages=[{"role": "user", "content": "hi"}])
    assert answer.choices[0].message.content == "fine"


# -- oversized events ----------------------------------------------------------------------------


async def test_an_event_past_the_cap_ends_the_stream_with_one_error_and_done(
    gateway_url: str, faulty: FaultyProvider
) -> None:
    body = {"model": "openai/huge-event", "messages": [{"role": "user", "content": "hi"}], "stream": True}
    started = time.perf_counter()
    async with (
        httpx.AsyncClient(timeout=30) as http,
        http.stream("POST", f"{gateway_url}/v1/chat/completions", json=body) as response,
    ):
        text = (await response.aread()).decode()
    elapsed = time.perf_counter() - started
    events = [e for e in text.split("\n\n") if e]
    assert response.status_code == 200
    assert events[-1] == "data: [DONE]" and text.count("[DONE]") == 1
    error = orjson.loads(events[-2].removeprefix("data: "))["error"]
    assert error["code"] == "upstream_event_too_large" and "8388608 bytes" in error["message"]
    assert "STREAM_MAX_EVENT_SIZE" in error["message"]
    assert len(text) < 4096  # the oversized event was not relayed
    assert elapsed < 10, f"took {elapsed:.1f}s"
    await asyncio.wait_for(faulty.huge_stream_left.wait(), 5)  # the upstream was dropped, not read to the end


async def test_the_event_cap_is_a_setting(gateway_with: GatewayFactory, faulty: FaultyProvider) -> None:
    env = {"OPENAI_API_URL": f"{faulty.base}/v1", "STREAM_MAX_EVENT_SIZE": "100"}
    async with gateway_with(**env) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        stream = await client.chat.completions.create(
            model="openai/complete", messages=[{"role": "user", "content": "hi"}], stream=True
        )
        with pytest.raises(openai.APIError, match="larger than 100 bytes"):
            async for _ in stream:
                pass


def test_an_event_cap_of_zero_is_refused_at_start() -> None:
    with pytest.raises(SettingsError, match="STREAM_MAX_EVENT_SIZE"):
        Settings.load({"STREAM_MAX_EVENT_SIZE": "0"})


# -- streams that finish without [DONE] ------------------------------------------------------------


async def read_stream(gateway_url: str, body: dict[str, Any]) -> list[str]:
    async with httpx.AsyncClient(timeout=10) as http:
        response = await http.post(f"{gateway_url}/v1/chat/completions", json=body)
    assert response.status_code == 200
    return [e for e in response.text.split("\n\n") if e]


@pytest.mark.parametrize(
    ("model", "extra", "complete"),
    [
        ("complete", {}, True),
        ("finish-no-done", {}, True),
        ("finish-no-done-tight", {}, True),
        ("finish-no-done", {"stream_options": {"include_usage": True}}, True),
        ("finish-no-done", {"n": 3}, True),
        ("finish-no-done", {"n": 3, "stream_options": {"include_usage": True}}, True),
        ("cut-before-finish", {}, False),
        ("cut-before-usage", {"stream_options": {"include_usage": True}}, False),
        ("cut-one-choice-unfinished", {"n": 3}, False),
        ("cut-one-choice-unfinished", {"n": 2, "stream_options": {"include_usage": True}}, False),
    ],
)
async def test_a_finished_stream_without_done_is_complete(
    gateway_url: str, model: str, extra: dict[str, Any], complete: bool
) -> None:
    body = {"model": f"openai/{model}", "messages": [{"role": "user", "content": "hi"}], "stream": True, **extra}
    events = await read_stream(gateway_url, body)
    assert events[-1] == "data: [DONE]" and sum(e == "data: [DONE]" for e in events) == 1
    errors = [e for e in events if '"error"' in e]
    if complete:
        assert errors == []
        assert any('"finish_reason":"stop"' in e for e in events)
    else:
        assert len(errors) == 1 and errors[0] == events[-2]
        assert "ended before it was complete" in errors[0]


async def test_the_openai_sdk_reads_a_finished_stream_without_done(sdk: openai.AsyncOpenAI) -> None:
    stream = await sdk.chat.completions.create(
        model="openai/finish-no-done",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [c async for c in stream]
    assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == 5
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello 0"


@pytest.mark.parametrize(
    ("model", "complete"),
    [("complete", True), ("stop-reason-no-message-stop", True), ("cut-before-stop-reason", False)],
)
async def test_anthropic_stream_with_a_stop_reason_but_no_message_stop_is_complete(
    gateway_url: str, model: str, complete: bool
) -> None:
    body = {
        "model": f"anthropic/{model}",
        "messages": [{"role": "user", "content": "hi"}],
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    events = await read_stream(gateway_url, body)
    assert events[-1] == "data: [DONE]" and sum(e == "data: [DONE]" for e in events) == 1
    errors = [e for e in events if '"error"' in e]
    if complete:
        assert errors == []
        chunks = [orjson.loads(e.removeprefix("data: ")) for e in events[:-1]]
        assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
        assert chunks[-1]["usage"]["completion_tokens"] == 2
    else:
        assert len(errors) == 1 and errors[0] == events[-2]


async def test_anthropic_sdk_unaffected_by_the_fake(faulty: FaultyProvider) -> None:
    """The fake's Anthropic stream is one the Anthropic SDK itself reads (it is true to the protocol)."""
    client = anthropic.AsyncAnthropic(base_url=faulty.base, api_key="key-anthropic", max_retries=0)
    async with client.messages.stream(
        model="complete", max_tokens=10, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        message = await stream.get_final_message()
    assert message.stop_reason == "end_turn" and message.content[0].type == "text"
