"""The ceiling the gateway is measured against: a raw-ASGI relay with no framework.

One ASGI callable served by the same server (uvicorn, httptools, uvloop) and one pooled aiohttp
session, as the gateway has: it reads the body, posts it to ``<upstream><path>`` (the request's path
with its first segment, the provider's name in ``model``'s place, mapped by ``--route``), and
answers with the upstream's bytes, whole for JSON, chunk by chunk for a stream. No validation,
routing, telemetry or limits: whatever the gateway costs above this is its own.

    python -m bench.raw_relay <port> <upstream base URL>
    POST /openai/v1/chat/completions  ->  <upstream>/openai/v1/chat/completions
"""

from __future__ import annotations

import sys
from typing import Any

import aiohttp
import uvicorn

JSON_HEADERS = [(b"content-type", b"application/json")]
SSE_HEADERS = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache")]


class RawRelay:
    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.rstrip("/")
        self.session: aiohttp.ClientSession | None = None

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await self.lifespan(receive, send)
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        if scope["path"] == "/health":
            await send({"type": "http.response.start", "status": 200, "headers": JSON_HEADERS})
            await send({"type": "http.response.body", "body": b"{}"})
            return
        assert self.session is not None
        url = self.upstream + scope["path"]
        async with self.session.post(url, data=body, headers={"content-type": "application/json"}) as answer:
            stream = answer.content_type == "text/event-stream"
            headers = SSE_HEADERS if stream else JSON_HEADERS
            await send({"type": "http.response.start", "status": answer.status, "headers": headers})
            if not stream:
                await send({"type": "http.response.body", "body": await answer.read()})
                return
            while chunk := await answer.content.readany():
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})

    async def lifespan(self, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                self.session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                if self.session is not None:
                    await self.session.close()
                await send({"type": "lifespan.shutdown.complete"})
                return


if __name__ == "__main__":
    uvicorn.run(
        RawRelay(sys.argv[2]),
        host="127.0.0.1",
        port=int(sys.argv[1]),
        loop="uvloop",
        http="httptools",
        lifespan="on",
        access_log=False,
        log_level="warning",
    )
