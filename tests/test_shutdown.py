"""Shutdown of a real gateway process (signals to ``python -m gateway serve``), as a rolling update
sees it: on SIGTERM ``/ready`` answers 503 at once while new connections and requests are still
served for SERVER_DRAIN_DELAY; then new connections are refused and requests in flight get
SERVER_DRAIN_TIMEOUT before streams are cut with an error event. SIGINT skips the delay, a second
signal cuts at once, and several workers follow the same timeline (a dead one is replaced)."""

from __future__ import annotations

import asyncio
import os
import signal
import time
from typing import Any

import httpx
import orjson
import pytest

from gateway.server import REPEAT_WINDOW

from .fakes import FakeProviders
from .processes import GatewayProcess, gateway_process, read_all

pytestmark = pytest.mark.timeout(30)

CHAT = {"model": "openai/echo", "messages": [{"role": "user", "content": "hi"}]}


async def connect(url: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    host, port = url.removeprefix("http://").split(":")
    return await asyncio.open_connection(host, int(port))


async def open_stream(url: str, model: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A chat stream opened over a raw socket, its first event read."""
    reader, writer = await connect(url)
    body = orjson.dumps({"model": f"openai/{model}", "stream": True, "messages": [{"role": "user", "content": "hi"}]})
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: %d\r\n\r\n" % len(body) + body
    )
    await writer.drain()
    async with asyncio.timeout(5):
        await reader.readuntil(b"data: ")
    return reader, writer


async def ready(url: str) -> tuple[int, dict[str, Any]]:
    """``GET /ready`` on a connection of its own, as a probe makes it."""
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{url}/ready")
    return answer.status_code, answer.json()


async def until_unready(url: str, started: float) -> float:
    """Seconds from ``started`` until ``/ready`` answered 503 (polled on new connections)."""
    async with asyncio.timeout(5):
        while (await ready(url))[0] != 503:
            await asyncio.sleep(0.02)
    return time.monotonic() - started


async def test_sigterm_withdraws_readiness_serves_through_the_delay_then_drains(fake: FakeProviders) -> None:
    delay = 2.0
    async with gateway_process(fake, SERVER_DRAIN_DELAY=f"{delay}s", SERVER_DRAIN_TIMEOUT="10s") as gateway:
        url = gateway.url
        status, body = await ready(url)
        assert status == 200 and body["status"] == "ready" and body["checks"]["draining"] is False
        # A stream of 300 events 10 ms apart (about 3 s): begun before the signal, it outlasts the delay.
        reader, writer = await connect(url)
        writer.write(b"GET /proxy/openai/openai/v1/stream/300 HTTP/1.1\r\nHost: x\r\n\r\n")
        async with asyncio.timeout(5):
            await reader.readuntil(b"data: 0\n\n")

        started = time.monotonic()
        gateway.process.send_signal(signal.SIGTERM)
        assert await until_unready(url, started) < 1.0
        status, body = await ready(url)
        assert status == 503 and body["status"] == "draining" and body["checks"]["draining"] is True

        # New connections and requests are served through the delay, each answer closing its
        # connection; then new connections are refused.
        async with httpx.AsyncClient() as http:
            chat = await http.post(f"{url}/v1/chat/completions", json=CHAT)
        assert chat.status_code == 200 and chat.headers["connection"] == "close"
        served_until = 0.0
        async with asyncio.timeout(delay + 5):
            while True:
                try:
                    async with httpx.AsyncClient() as http:
                        health = await http.get(f"{url}/health")
                except httpx.ConnectError:
                    refused_after = time.monotonic() - started
                    break
                except httpx.TransportError:
                    # Connected just as the listener closed, and closed unanswered by the shutdown.
                    assert time.monotonic() - started >= delay, "a request during the delay failed"
                    continue
                assert health.status_code == 200 and health.headers["connection"] == "close"
                served_until = time.monotonic() - started
                await asyncio.sleep(0.05)
        assert served_until > delay / 2 and delay <= refused_after < delay + 2

        # The stream in flight finished whole within the drain, and then the process ended.
        async with asyncio.timeout(10):
            rest = await read_all(reader)
            await gateway.process.wait()
        writer.close()
    assert b"shutting_down" not in rest and rest.count(b"data: ") == 299 and b"data: 299\n\n" in rest
    assert rest.endswith(b"0\r\n\r\n")  # the last chunk: the body ended, it was not cut


async def test_sigint_skips_the_delay(fake: FakeProviders) -> None:
    async with gateway_process(fake, SERVER_DRAIN_DELAY="20s") as gateway:
        started = time.monotonic()
        gateway.process.send_signal(signal.SIGINT)
        async with asyncio.timeout(5):
            await gateway.process.wait()
        assert time.monotonic() - started < 3
    assert gateway.process.returncode == 0
    assert "SERVER_DRAIN_DELAY" not in gateway.output  # the delay was never announced


async def second_sigterm_during_the_delay(gateway: GatewayProcess) -> None:
    """SIGTERM, then another once the first was handled: the open stream is cut at once with an
    error event and ``[DONE]``, and the process exits."""
    reader, writer = await open_stream(gateway.url, "hang")
    started = time.monotonic()
    gateway.process.send_signal(signal.SIGTERM)
    await until_unready(gateway.url, started)
    await asyncio.sleep(REPEAT_WINDOW + 0.2)  # the first was handled: this one is not its echo
    again = time.monotonic()
    gateway.process.send_signal(signal.SIGTERM)
    async with asyncio.timeout(5):
        rest = await read_all(reader)
        await gateway.process.wait()
    writer.close()
    assert time.monotonic() - again < 3
    assert b"shutting_down" in rest and rest.rstrip(b"\r\n0").endswith(b"data: [DONE]")


async def test_a_second_sigterm_during_the_delay_stops_at_once(fake: FakeProviders) -> None:
    async with gateway_process(fake, SERVER_DRAIN_DELAY="20s", SERVER_DRAIN_TIMEOUT="20s") as gateway:
        await second_sigterm_during_the_delay(gateway)


# -- the drain itself (no delay) -----------------------------------------------------------------


async def test_sigterm_drains_then_cuts_streams_with_an_error_event(fake: FakeProviders) -> None:
    async with gateway_process(fake, SERVER_DRAIN_TIMEOUT="1s") as gateway:
        url = gateway.url
        reader, writer = await open_stream(url, "hang")
        async with httpx.AsyncClient(timeout=10) as http:
            slow = asyncio.create_task(http.post(f"{url}/v1/chat/completions", json=CHAT))
            await asyncio.sleep(0.1)
            started = time.monotonic()
            gateway.process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(5):
                rest = await read_all(reader)
            cut_after = time.monotonic() - started
            assert (await slow).status_code == 200  # finished within the drain time
        writer.close()
        assert b"shutting_down" in rest and rest.rstrip(b"\r\n0").endswith(b"data: [DONE]")
        assert 0.8 < cut_after < 3
        async with asyncio.timeout(5):
            await gateway.process.wait()
        assert time.monotonic() - started < 4


async def test_new_connections_are_refused_while_draining(fake: FakeProviders) -> None:
    async with gateway_process(fake, SERVER_DRAIN_TIMEOUT="3s") as gateway:
        _, writer = await open_stream(gateway.url, "hang")
        gateway.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(0.5)
        async with httpx.AsyncClient() as http:
            with pytest.raises(httpx.ConnectError):
                await http.get(f"{gateway.url}/health")
        writer.close()


async def test_a_second_sigterm_ends_the_drain_at_once(fake: FakeProviders) -> None:
    async with gateway_process(fake, SERVER_DRAIN_TIMEOUT="20s") as gateway:
        reader, writer = await open_stream(gateway.url, "hang")
        gateway.process.send_signal(signal.SIGTERM)
        await asyncio.sleep(REPEAT_WINDOW + 0.5)  # no readiness to watch here: the listener is closed
        started = time.monotonic()
        gateway.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(5):
            rest = await read_all(reader)
            await gateway.process.wait()
        writer.close()
        assert b"data: [DONE]" in rest and time.monotonic() - started < 3


# -- several workers: the supervisor passes every signal on ------------------------------------------


async def workers_started(gateway: GatewayProcess, count: int) -> None:
    await gateway.line_matching("Application startup complete", count=count, timeout=20)


async def test_workers_withdraw_readiness_serve_through_the_delay_then_stop(fake: FakeProviders) -> None:
    delay = 2.0
    async with gateway_process(fake, SERVER_WORKERS="2", SERVER_DRAIN_DELAY=f"{delay}s") as gateway:
        url = gateway.url
        await workers_started(gateway, 2)
        started = time.monotonic()
        gateway.process.send_signal(signal.SIGTERM)
        await until_unready(url, started)
        await asyncio.sleep(0.2)  # the supervisor passed the signal on to both workers at once
        answers = [await ready(url) for _ in range(6)]  # new connections: spread over the workers
        assert all(status == 503 for status, _ in answers), answers
        async with httpx.AsyncClient() as http:
            assert (await http.post(f"{url}/v1/chat/completions", json=CHAT)).status_code == 200
        assert time.monotonic() - started < delay
        async with asyncio.timeout(delay + 5):
            await gateway.process.wait()
        assert time.monotonic() - started >= delay
        # The supervisor let go of the listening socket too: nothing accepts connections any more.
        async with httpx.AsyncClient() as http:
            with pytest.raises(httpx.ConnectError):
                await http.get(f"{url}/health")
    assert gateway.process.returncode == 0, gateway.output


async def test_a_second_sigterm_reaches_the_workers(fake: FakeProviders) -> None:
    async with gateway_process(fake, SERVER_WORKERS="2", SERVER_DRAIN_DELAY="20s") as gateway:
        await workers_started(gateway, 2)
        await second_sigterm_during_the_delay(gateway)


async def test_a_worker_that_dies_is_replaced(fake: FakeProviders) -> None:
    async with gateway_process(fake, SERVER_WORKERS="2") as gateway:
        await workers_started(gateway, 2)
        pid = int((await gateway.line_matching(r"Started server process \[(\d+)\]")).group(1))
        os.kill(pid, signal.SIGKILL)
        await gateway.line_matching(rf"worker \[{pid}\] ended \(exit code -9\); starting another")
        await workers_started(gateway, 3)
        async with httpx.AsyncClient() as http:
            for _ in range(4):  # new connections, served by either worker
                assert (await http.get(f"{gateway.url}/health")).status_code == 200
        gateway.process.send_signal(signal.SIGTERM)
        async with asyncio.timeout(10):
            await gateway.process.wait()
    assert gateway.process.returncode == 0, gateway.output
