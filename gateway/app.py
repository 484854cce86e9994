"""``create_app``: the ASGI application, assembled from one ``Settings`` object.

settings = Settings.load(os.environ)
app = create_app(settings)          # serve with uvicorn; the lifespan opens the HTTP pool
"""

from __future__ import annotations

import logging
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from providers import AdapterOptions, AdapterTimeouts, ClientOptions, HttpClient, Timeouts, build_adapter

from .chat import ChatEndpoint
from .errors import exception_handlers
from .models import ModelsEndpoint
from .proxy import METHODS, ProxyEndpoint
from .settings import Settings

__all__ = ["app_from_environment", "create_app"]

log = logging.getLogger("polyrelay")

_HEALTHY = b'{"message":"OK"}'


async def health(request: Request) -> Response:
    return Response(_HEALTHY, media_type="application/json")


def adapter_timeouts(settings: Settings) -> AdapterTimeouts:
    connect = settings.client_response_header_timeout or None
    return AdapterTimeouts(
        chat=Timeouts(connect=connect, total=settings.client_timeout or None),
        stream=Timeouts(connect=connect, headers=connect, idle=settings.server_write_timeout or None),
        models=Timeouts(connect=connect, total=connect),
    )


def create_app(settings: Settings) -> Starlette:
    """The gateway: routes, error rendering, and one pooled upstream client opened by the lifespan."""
    http = HttpClient(
        ClientOptions(
            max_connections=settings.client_max_conns,
            keepalive_timeout=settings.client_idle_conn_timeout,
        )
    )
    options = AdapterOptions(adapter_timeouts(settings), default_max_tokens=settings.default_max_tokens)
    adapters = {p.id: build_adapter(p, http, options) for p in settings.configured_providers}
    chat = ChatEndpoint(settings, adapters)
    models = ModelsEndpoint(settings, adapters)
    proxy = ProxyEndpoint(settings, adapters, http)
    routes = [
        Route("/health", health, methods=["GET"]),
        Route("/v1/models", models.handle, methods=["GET"]),
        Route("/v1/chat/completions", chat.handle, methods=["POST"]),
        Route("/proxy/{provider}/{path:path}", proxy.handle, methods=METHODS),
    ]

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await http.start()
        if settings.mcp_enabled:
            log.warning("MCP_ENABLED is set, but MCP is not in this release of polyrelay; ignoring it.")
        configured = ", ".join(p.id for p in settings.configured_providers) or "none"
        log.info("polyrelay ready; providers configured: %s", configured)
        try:
            yield
        finally:
            await http.close()

    return Starlette(routes=routes, exception_handlers=exception_handlers, lifespan=lifespan)  # type: ignore[arg-type]


def app_from_environment() -> Starlette:
    """Factory for uvicorn's ``--factory`` (each worker process builds its own app)."""
    return create_app(Settings.load(os.environ))
