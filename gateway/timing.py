"""``X-Gateway-Overhead-Ms``: the time a request spent in the gateway itself, on every answer.

It is the wall time from the request's arrival to the answer's first byte, minus the time during
which the request was waiting on a provider or an MCP tool (``providers.waiting``: parallel waits,
such as every provider's model list at once, count once): parsing, checks, translation, relaying.
For a stream, it counts up to the first byte, which is where a gateway's cost shows.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from providers.waiting import WAITS, WaitClock

__all__ = ["OVERHEAD_HEADER", "OverheadHeader"]

OVERHEAD_HEADER = b"x-gateway-overhead-ms"


class OverheadHeader:
    """Adds ``X-Gateway-Overhead-Ms`` to every HTTP answer (a plain ASGI middleware)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        clock = WaitClock()
        token = WAITS.set(clock)

        async def send_with_overhead(message: Message) -> None:
            if message["type"] == "http.response.start":
                now = time.perf_counter()
                overhead = (now - started - clock.waited(now)) * 1000
                message["headers"] = [*message.get("headers", ()), (OVERHEAD_HEADER, b"%.3f" % overhead)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_overhead)
        finally:
            WAITS.reset(token)
