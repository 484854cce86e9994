"""Retries before the first byte: a real flaky upstream on loopback, a real gateway, the openai SDK."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import openai
import orjson
import pytest
import pytest_asyncio
from aiohttp import web

from gateway import Settings

from .conftest import GatewayFactory

ANSWER = {
    "id": "chatcmpl-r",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "at last"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3},
}


def chunk(content: str) -> bytes:
    data = {"id": "c", "object": "chat.completion.chunk", "created": 1, "model": "m"}
    data["choices"] = [{"index": 0, "delta": {"content": content}, "finish_reason": None}]
    return b"data: " + orjson.dumps(data) + b"\n\n"


class Flaky:
    """An OpenAI-compatible upstream that plays a script, one step per request: a status, a reset,
    an answer, or a stream that breaks after its first event."""

    def __init__(self) -> None:
        self.script: list[tuple[str, Any]] = []
        self.bodies: list[bytes] = []
        self.times: list[float] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.StreamResponse:
        self.bodies.append(await request.read())
        self.times.append(time.monotonic())
        step, arg = self.script.pop(0) if self.script else ("ok", None)
        if step == "status":
            status, headers = arg
            return web.json_response(
                {"error": {"message": f"busy ({status})", "type": "server_error"}}, status=status, headers=headers
            )
        if step == "reset":
            request.transport.close()  # type: ignore[union-attr]
            raise asyncio.CancelledError
        if step == "stream" or step == "broken-stream":
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            await response.write(chunk("first "))
            if step == "broken-stream":
                request.transport.close()  # type: ignore[union-attr]
                return response
            await response.write(chunk("second"))
            await response.write(b"data: [DONE]\n\n")
            return response
        return web.json_response(ANSWER)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_post("/v1/chat/completions", self.handle)
        self.runner = web.AppRunner(app, access_log=None)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/v1"  # type: ignore[union-attr]


@pytest_asyncio.fixture
async def flaky() -> AsyncIterator[Flaky]:
    server = Flaky()
    await server.start()
    yield server
    await server.runner.cleanup()


def sdk(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)  # the gateway retries, not the SDK


HI = [{"role": "user", "content": "hi"}]


def test_retries_are_on_by_default() -> None:
    settings = Settings.load({"OPENAI_API_KEY": "k", "OPENAI_RETRIES": "5"})
    assert settings.upstream_retries == 2 and settings.providers["openai"].retries == 5


@pytest.mark.parametrize("failure", [("status", (503, None)), ("status", (529, None)), ("reset", None)])
async def test_a_passing_failure_never_reaches_the_caller(
    gateway_with: GatewayFactory, flaky: Flaky, failure: tuple[str, Any]
) -> None:
    flaky.script = [failure, failure]
    async with gateway_with(OPENAI_API_URL=flaky.url, UPSTREAM_RETRIES="2") as url:
        answer = await sdk(url).chat.completions.create(model="openai/m", messages=HI)
    assert answer.choices[0].message.content == "at last"
    assert len(flaky.bodies) == 3 and len(set(flaky.bodies)) == 1  # the same body each time


async def test_after_the_last_retry_the_providers_error_is_relayed(gateway_with: GatewayFactory, flaky: Flaky) -> None:
    flaky.script = [("status", (503, None))] * 3
    async with gateway_with(OPENAI_API_URL=flaky.url, UPSTREAM_RETRIES="2") as url:
        with pytest.raises(openai.InternalServerError, match="busy"):
            await sdk(url).chat.completions.create(model="openai/m", messages=HI)
    assert len(flaky.bodies) == 3


async def test_retry_after_is_honoured_and_a_long_one_relayed(gateway_with: GatewayFactory, flaky: Flaky) -> None:
    flaky.script = [("status", (429, {"Retry-After": "0.4"}))]
    async with gateway_with(OPENAI_API_URL=flaky.url, UPSTREAM_RETRIES="2") as url:
        answer = await sdk(url).chat.completions.create(model="openai/m", messages=HI)
        assert answer.choices[0].message.content == "at last"
        assert flaky.times[1] - flaky.times[0] >= 0.4
        # Longer than UPSTREAM_RETRY_AFTER_MAX: the caller gets the 429 and the provider's wait at once.
        flaky.script = [("status", (429, {"Retry-After": "120"}))]
        started = time.monotonic()
        with pytest.raises(openai.RateLimitError) as limited:
            await sdk(url).chat.completions.create(model="openai/m", messages=HI)
        assert limited.value.response.headers["retry-after"] == "120" and time.monotonic() - started < 5
    assert len(flaky.bodies) == 3


async def test_a_callers_mistake_is_not_retried(gateway_with: GatewayFactory, flaky: Flaky) -> None:
    flaky.script = [("status", (400, None))]
    async with gateway_with(OPENAI_API_URL=flaky.url, UPSTREAM_RETRIES="2") as url:
        with pytest.raises(openai.BadRequestError):
            await sdk(url).chat.completions.create(model="openai/m", messages=HI)
    assert len(flaky.bodies) == 1


async def test_a_stream_is_retried_before_its_first_byte_never_after(
    gateway_with: GatewayFactory, flaky: Flaky
) -> None:
    flaky.script = [("status", (502, None)), ("stream", None)]
    async with gateway_with(OPENAI_API_URL=flaky.url, UPSTREAM_RETRIES="2") as url:
        stream = await sdk(url).chat.completions.create(model="openai/m", messages=HI, stream=True)
        assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == "first second"
        assert len(flaky.bodies) == 2
        flaky.script = [("broken-stream", None)]
        stream = await sdk(url).chat.completions.create(model="openai/m", messages=HI, stream=True)
        with pytest.raises(openai.APIError):
            async for _ in stream:
                pass
    assert len(flaky.bodies) == 3  # the broken stream had reached the client: not sent again


@pytest.mark.parametrize("env", [{"UPSTREAM_RETRIES": "0"}, {"UPSTREAM_RETRIES": "2", "OPENAI_RETRIES": "0"}])
async def test_retries_can_be_turned_off(gateway_with: GatewayFactory, flaky: Flaky, env: dict[str, str]) -> None:
    flaky.script = [("status", (503, None))]
    async with gateway_with(OPENAI_API_URL=flaky.url, **env) as url:
        with pytest.raises(openai.InternalServerError):
            await sdk(url).chat.completions.create(model="openai/m", messages=HI)
    assert len(flaky.bodies) == 1
