"""Bare relays for the HTTP-client comparison: one Starlette route that forwards a chat request to
the mock with a given client, nothing else. ``python -m bench.relays <client> <port> <upstream>``."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route


def app(client: str, upstream: str) -> Starlette:
    state: dict[str, Any] = {}

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        if client == "aiohttp":
            import aiohttp

            state["session"] = aiohttp.ClientSession()
        elif client == "httpx2":
            import httpx2

            state["session"] = httpx2.AsyncClient()
        elif client == "httpx-aiohttp":
            import httpx
            from httpx_aiohttp import AiohttpTransport

            state["session"] = httpx.AsyncClient(transport=AiohttpTransport())
        else:
            raise SystemExit(f"unknown client {client}")
        yield
        close = getattr(state["session"], "close", None) or state["session"].aclose
        await close()

    async def relay(request: Request) -> Response:
        body = await request.body()
        headers = {"content-type": "application/json"}
        session = state["session"]
        if client == "aiohttp":
            async with session.post(upstream, data=body, headers=headers) as answer:
                return Response(await answer.read(), status_code=answer.status, media_type="application/json")
        answer = await session.post(upstream, content=body, headers=headers)
        return Response(answer.content, status_code=answer.status_code, media_type="application/json")

    return Starlette(routes=[Route("/v1/chat/completions", relay, methods=["POST"])], lifespan=lifespan)


if __name__ == "__main__":
    name, port, target = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    uvicorn.run(
        app(name, target),
        host="127.0.0.1",
        port=port,
        loop="uvloop",
        http="httptools",
        access_log=False,
        log_level="warning",
    )
