"""``X-Gateway-Overhead-Ms``: the time a request spent in the gateway itself, on every answer.

It is the time from the request's arrival to the answer's first byte, minus the time spent waiting
on providers (see ``providers.transport.UPSTREAM_SECONDS``): parsing, checks, translation, relaying.
For a stream, it counts up to the first byte, which is where a gateway's cost shows.
"""

from __future__ import annotations

import time

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from providers.transport import UPSTREAM_SECONDS

__all__ = ["OVERHEAD_HEADER", "OverheadHeader"]

OVERHEAD_HEADER = b"x-gateway-overhead-ms"


class OverheadHeader:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        upstream = [0.0]
        token = UPSTREAM_SECONDS.set(upstream)

        async def send_with_overhead(message: Message) -> None:
            if message["type"] == "http.response.start":
                overhead = (time.perf_counter() - started - upstream[0]) * 1000
                message["headers"] = [*message.get("headers", ()), (OVERHEAD_HEADER, b"%.3f" % overhead)]
            await send(message)

        try:
            await self.app(scope, receive, send_with_overhead)
        finally:
            UPSTREAM_SECONDS.reset(token)
