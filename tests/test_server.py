"""The HTTP server's own limits, over raw sockets: request heads capped in size, count and time,
connections capped, upstream failures mid-body dropped quietly; and which client address a real
gateway process believes (FORWARDED_ALLOW_IPS)."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import time
from collections.abc import AsyncIterator

import httpx
import orjson
import pytest
import pytest_asyncio

from .conftest import GatewayFactory
from .fakes import FakeProviders
from .processes import GatewayProcess, gateway_process, read_all

LIMITS = {
    "SERVER_MAX_HEADER_BYTES": "8192",
    "SERVER_MAX_HEADERS": "20",
    "SERVER_READ_HEADER_TIMEOUT": "500ms",
    "SERVER_MAX_CONNECTIONS": "20",
}


@pytest_asyncio.fixture(scope="module")
async def limited(gateway_with: GatewayFactory) -> AsyncIterator[tuple[str, int]]:
    async with gateway_with(**LIMITS) as url:
        yield "127.0.0.1", int(url.rsplit(":", 1)[1])


async def exchange(address: tuple[str, int], data: bytes, *, timeout: float = 5.0) -> bytes:
    """Send ``data`` (ignoring a server that stops reading) and return all it answers until it closes."""
    reader, writer = await asyncio.open_connection(*address)
    try:
        try:
            writer.write(data)
            await writer.drain()
        except ConnectionError:
            pass
        async with asyncio.timeout(timeout):
            return await read_all(reader)
    finally:
        writer.close()


def status_and_error(answer: bytes) -> tuple[int, dict[str, object]]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, orjson.loads(body)["error"]


async def test_a_head_over_the_byte_limit_is_431_before_it_is_read(limited: tuple[str, int]) -> None:
    huge = b"GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (4 * 1024 * 1024) + b"\r\n\r\n"
    started = time.monotonic()
    status, error = status_and_error(await exchange(limited, huge))
    assert status == 431 and error["code"] == "request_header_too_large"
    assert "SERVER_MAX_HEADER_BYTES=8192" in str(error["message"])
    assert time.monotonic() - started < 2


async def test_too_many_headers_is_431(limited: tuple[str, int]) -> None:
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(21))
    request = b"GET /health HTTP/1.1\r\nHost: x\r\n" + headers + b"\r\n"
    status, error = status_and_error(await exchange(limited, request))
    assert status == 431 and "too many headers" in str(error["message"])


async def test_a_head_within_the_limits_is_served(limited: tuple[str, int]) -> None:
    headers = b"".join(b"X-H%d: v\r\n" % i for i in range(18))
    answer = await exchange(limited, b"GET /health HTTP/1.1\r\nHost: x\r\n" + headers + b"Connection: close\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 200") and answer.endswith(b'{"message":"OK"}')


async def test_a_connection_that_sends_nothing_is_closed(limited: tuple[str, int]) -> None:
    started = time.monotonic()
    assert await exchange(limited, b"") == b""
    assert 0.4 < time.monotonic() - started < 2


async def test_half_a_request_line_gets_408(limited: tuple[str, int]) -> None:
    status, error = status_and_error(await exchange(limited, b"GET /heal"))
    assert status == 408 and "SERVER_READ_HEADER_TIMEOUT" in str(error["message"])


async def trickle(address: tuple[str, int], prefix: bytes = b"") -> tuple[bytes, float]:
    """Headers sent one byte every 50 ms, for ever: the answer, and how long the server took."""
    reader, writer = await asyncio.open_connection(*address)
    started = time.monotonic()
    writer.write(prefix + b"GET /health HTTP/1.1\r\n")

    async def drip() -> None:
        try:
            while True:
                writer.write(b"X")
                await writer.drain()
                await asyncio.sleep(0.05)
        except ConnectionError:
            pass

    dripping = asyncio.create_task(drip())
    try:
        async with asyncio.timeout(5):
            answer = await read_all(reader)
        return answer, time.monotonic() - started
    finally:
        dripping.cancel()
        writer.close()


async def test_trickled_headers_are_cut_at_the_deadline(limited: tuple[str, int]) -> None:
    answer, took = await trickle(limited)
    assert b" 408 " in answer.split(b"\r\n", 1)[0] and took < 2


async def test_a_kept_alive_connection_trickling_its_next_request_is_cut(limited: tuple[str, int]) -> None:
    first = b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
    answer, took = await trickle(limited, prefix=first)
    assert answer.startswith(b"HTTP/1.1 200") and answer.count(b"HTTP/1.1 ") == 2 and b" 408 " in answer
    assert took < 2


async def test_connections_over_the_cap_get_503_and_health_recovers(gateway_with: GatewayFactory) -> None:
    # A gateway of its own, with a head deadline long enough that no idle socket is closed while the
    # 20 are being opened on a loaded machine.
    async with gateway_with(SERVER_MAX_CONNECTIONS="20", SERVER_READ_HEADER_TIMEOUT="2s") as url:
        address = ("127.0.0.1", int(url.rsplit(":", 1)[1]))
        idle = [await asyncio.open_connection(*address) for _ in range(20)]
        try:
            await asyncio.sleep(0.05)
            request = b"GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            status, error = status_and_error(await exchange(address, request))
            assert status == 503 and error["code"] == "too_many_connections"
            # The idle ones never send a head: closed at the deadline, and the gateway answers again.
            for reader, _ in idle:
                async with asyncio.timeout(5):
                    assert await read_all(reader) == b""
            async with httpx.AsyncClient() as http:
                assert (await http.get(f"{url}/health")).status_code == 200
        finally:
            for _, writer in idle:
                writer.close()


async def test_an_upstream_cut_mid_body_on_the_proxy_is_one_warning(
    limited: tuple[str, int], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with httpx.AsyncClient() as http:
        with pytest.raises(httpx.RemoteProtocolError):
            await http.get(f"http://{limited[0]}:{limited[1]}/proxy/openai/openai/v1/cut")
        await asyncio.sleep(0.2)  # anything logged late (connection teardown) is caught too
        # The connection is dropped, not the gateway: the next request is served.
        assert (await http.get(f"http://{limited[0]}:{limited[1]}/health")).status_code == 200
    noisy = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert len(noisy) == 1, [r.getMessage() for r in noisy]
    assert noisy[0].exc_info is None and "cut off" in noisy[0].getMessage()


# -- a real gateway process (its shutdown is tested in test_shutdown) ----------------------------


async def test_idle_sockets_cannot_exhaust_the_process(fake: FakeProviders) -> None:
    """300 sockets that never send a byte against a cap of 100: the process never holds more than
    the cap, answers 503 past it, and is back to its baseline after the head deadline."""
    # The head deadline leaves time to accept all 300 on a loaded machine before the first 100 close.
    async with gateway_process(fake, SERVER_MAX_CONNECTIONS="100", SERVER_READ_HEADER_TIMEOUT="3s") as gateway:
        url = gateway.url
        fds = f"/proc/{gateway.process.pid}/fd"
        baseline = len(os.listdir(fds))
        host, port = url.removeprefix("http://").split(":")
        sockets = [await asyncio.open_connection(host, int(port)) for _ in range(300)]
        try:
            await asyncio.sleep(0.3)
            assert len(os.listdir(fds)) <= baseline + 100 + 5
            async with asyncio.timeout(8):
                answers = await asyncio.gather(*(read_all(reader) for reader, _ in sockets))
            refused = sum(a.startswith(b"HTTP/1.1 503") for a in answers)
            assert 200 <= refused <= 202  # the readiness probe's connection may still be open
            assert len(os.listdir(fds)) <= baseline + 2
            async with httpx.AsyncClient() as http:
                assert (await http.get(f"{url}/health")).status_code == 200
        finally:
            for _, writer in sockets:
                writer.close()


# -- forwarded headers: which client address the gateway believes ---------------------------------


async def logged_client(gateway: GatewayProcess, request_id: str) -> str:
    """The client address in the request line of the request with ``request_id`` (the text format)."""
    match = await gateway.line_matching(rf"request_id={re.escape(request_id)} .*client=(\S+)")
    return match.group(1)


@pytest.mark.parametrize(
    ("trusted", "believed"),
    [("127.0.0.1", True), ("10.0.0.0/8,127.0.0.0/8", True), ("*", True), ("", False), ("10.0.0.0/8,::1", False)],
)
async def test_x_forwarded_for_is_believed_only_from_trusted_proxies(
    fake: FakeProviders, trusted: str, believed: bool
) -> None:
    async with gateway_process(fake, SERVER_ACCESS_LOG="true", FORWARDED_ALLOW_IPS=trusted) as gateway:
        async with httpx.AsyncClient() as http:
            answer = await http.get(
                f"{gateway.url}/health", headers={"X-Forwarded-For": "203.0.113.7", "X-Request-Id": "forwarded-probe"}
            )
        assert answer.status_code == 200
        client = await logged_client(gateway, "forwarded-probe")
    assert client == ("203.0.113.7" if believed else "127.0.0.1")
