"""What the rate limiter costs per request: ``python -m bench.limiter_cost`` (a few seconds).

Times one request's limiter work, in microseconds of wall time: ``admit`` (the caller's counters
found, the tokens estimated, every counter checked and taken) plus the settlement the middleware
does at the end (the estimate replaced by the reported usage, the slot freed), with a typical rule
set: requests and tokens per minute and concurrency per caller, and a global request rate. Against
the in-memory store, and against a real ``redis-server`` on loopback (started here in a temporary
directory, when installed): one Lua script each way, so two round trips. The "no limit" line is
what a route pays when nothing is configured (a call to the no-op limiter).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import tempfile
import time
from typing import Any

from gateway.auth import Identity
from gateway.limits import parse_limits
from gateway.limits.limiter import TICKET, UNLIMITED, Limits
from gateway.limits.store import MemoryStore, Store

RULES = parse_limits(
    '{"default": {"requests_per_minute": 100000000, "tokens_per_minute": 1000000000, "concurrent_requests": 1000},'
    ' "global": {"requests_per_minute": 1000000000}}'
)


def _used() -> int:
    return 180


PAYLOAD = {"model": "openai/gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 100}


async def per_request(limits: Limits, rounds: int) -> float:
    identity = Identity("alice", "api_key")
    started = time.perf_counter()
    for _ in range(rounds):
        scope: dict[str, Any] = {"state": {"identity": identity}, "client": ("127.0.0.1", 1)}
        await limits.admit(scope, PAYLOAD, 2048, "openai", "gpt-4o")
        await scope["state"][TICKET].settle(_used)
    return (time.perf_counter() - started) / rounds * 1e6


async def unlimited(rounds: int) -> float:
    scope: dict[str, Any] = {"state": {}}
    started = time.perf_counter()
    for _ in range(rounds):
        await UNLIMITED.admit(scope, PAYLOAD, 2048, "openai", "gpt-4o")
    return (time.perf_counter() - started) / rounds * 1e6


def limits(store: Store) -> Limits:
    return Limits(RULES, store, fail_open=True)


async def main() -> None:
    print(f"no limit configured: {await unlimited(200_000):.2f} µs per request")
    await per_request(limits(MemoryStore()), 2_000)  # warm up
    print(f"in memory:           {await per_request(limits(MemoryStore()), 100_000):.1f} µs per request")
    executable = shutil.which("redis-server")
    if executable is None:
        print("redis: not measured (redis-server is not installed)")
        return
    from gateway.limits.redis_store import RedisStore

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    with tempfile.TemporaryDirectory() as directory:
        server = subprocess.Popen(
            [executable, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", directory],
            stdout=subprocess.DEVNULL,
        )
        try:
            await asyncio.sleep(0.3)
            store = RedisStore(f"redis://127.0.0.1:{port}/0")
            await per_request(limits(store), 500)
            started = time.perf_counter()
            for _ in range(5_000):
                await store.ping()
            print(f"redis PING (context): {(time.perf_counter() - started) / 5_000 * 1e6:.1f} µs per round trip")
            print(f"redis (loopback):    {await per_request(limits(store), 10_000):.1f} µs per request")
            await store.close()
        finally:
            server.terminate()
            server.wait()


if __name__ == "__main__":
    asyncio.run(main())
