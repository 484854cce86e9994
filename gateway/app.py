"""``create_app``: the ASGI application, assembled from one ``Settings`` object.

settings = Settings.load(os.environ)
app = create_app(settings)          # serve with uvicorn; the lifespan opens the HTTP pool
"""

from __future__ import annotations

import ipaddress
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from .auth import ApiKeys
from .plane import Shared, data_plane, process_auth
from .readiness import Readiness
from .settings import Settings

if TYPE_CHECKING:
    from .gateways.runtime import GatewayRuntime
    from .gateways.service import Gateways

__all__ = ["app_from_environment", "create_app"]

log = logging.getLogger("polyrelay")

_HEALTHY = b'{"message":"OK"}'


async def health(request: Request) -> Response:
    return Response(_HEALTHY, media_type="application/json")


def create_app(settings: Settings) -> Starlette:
    """The gateway: routes, error rendering, and one pooled upstream client opened by the lifespan."""
    shared = Shared.from_settings(settings)
    http, telemetry, mcp, limits, oidc = shared.http, shared.telemetry, shared.mcp, shared.limits, shared.oidc
    # /health and /ready come first; readiness waits for the OIDC verifier's keys.
    head = [
        Route("/health", health, methods=["GET"]),
        Route("/ready", Readiness(http, oidc, mcp, settings.aliases, limits).handle, methods=["GET"]),
    ]
    outer: list[Middleware] = []

    # -- Gateway resources (GATEWAYS_ENABLED): the management API on GATEWAYS_PORT, its store, and the
    # reconciler that drives the gateways' data planes in this process (``runtime``: each built by
    # ``data_plane`` like this one; the dispatch in front sends /gateways/{id}/... and their hosts to
    # them). Off: none of it is built, not even the dispatch.
    runtime: GatewayRuntime | None = None
    gateways: Gateways | None = None
    if settings.gateways_enabled:
        from .gateways.dispatch import Dispatch
        from .gateways.runtime import GatewayRuntime
        from .gateways.service import Gateways

        runtime = GatewayRuntime(settings, shared)
        outer.append(Middleware(Dispatch, table=runtime.table))
        gateways = Gateways.from_settings(settings, runtime, keys=ApiKeys(settings.auth_api_keys), oidc=oidc)
    # -- end of gateway resources

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        # What is opened is closed, in reverse, at shutdown or when a later part fails to start
        # (a store that cannot be reached): nothing is left open behind a failed start-up.
        opened: list[Callable[[], Awaitable[None]]] = []
        try:
            await telemetry.start()  # first: a metrics port in use stops start-up before anything is opened
            opened.append(telemetry.close)
            if limits is not None:
                opened.append(limits.store.close)
            await http.start()
            opened.append(http.close)
            if oidc is not None:
                await oidc.start()
                opened.append(oidc.close)
            opened.append(mcp.close)  # closed after the gateways, whose planes call its tools
            if runtime is not None:
                opened.append(runtime.close)
            if gateways is not None:
                await gateways.start()
                opened.append(gateways.close)
            if not settings.auth_enabled and not _is_loopback(settings.server_host):
                log.warning(
                    "Authentication is off and the gateway listens on %s: anyone who reaches it can spend your "
                    "provider keys. Set AUTH_ENABLED=true, or bind to 127.0.0.1 behind an authenticating proxy.",
                    settings.server_host,
                )
            await mcp.start()
        except BaseException:
            await _close(opened)
            raise
        for notice in settings.notices:
            log.info(notice)
        configured = ", ".join(p.id for p in settings.configured_providers) or "none"
        log.info("polyrelay ready; providers configured: %s", configured)
        try:
            yield
        finally:
            await _close(opened)

    app = data_plane(
        settings, shared, auth=process_auth(settings, shared), limits=limits, head=head, outer=outer, lifespan=lifespan
    )
    app.state.gateways = runtime  # this process's gateway data planes (the reconciler drives them)
    app.state.gateway_service = gateways
    return app


async def _close(opened: list[Callable[[], Awaitable[None]]]) -> None:
    while opened:
        await opened.pop()()


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def app_from_environment() -> Starlette:
    """Factory for uvicorn's ``--factory`` (each worker process builds its own app)."""
    return create_app(Settings.load(os.environ))
