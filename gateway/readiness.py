"""``GET /ready``: whether this process should be sent traffic, for a load balancer's readiness probe.

Ready (200) once the lifespan has opened the upstream pool and, when OIDC is on, the issuer's keys
have been fetched at least once (until then every token would get 503). Not ready (503) from the
first SIGTERM on: the server's ``Drain`` (reached through the scope extension the gateway's HTTP
protocol sets) says the process is leaving, and the probe failing is what takes it out of the load
balancer during ``SERVER_DRAIN_DELAY``. MCP servers are reported, never required: a gateway whose
tool server is down still serves chats. ``/health`` stays the liveness check: 200 while the process
serves, draining or not.

    readiness = Readiness(http, oidc, mcp)
    Route("/ready", readiness.handle, methods=["GET"])

The body names each check: ``{"status": "ready", "checks": {"http_pool": "ok", "oidc": "off",
"draining": false, "mcp": {"search": "connected"}}}``, and with model aliases each deployment's
state (``"aliases": {"fast": {"groq/llama-3.3-70b-versatile": "ejected"}}``: ok, ejected or
probing), and with rate limits their store's (``"limits": {"store": "redis", "state": "ok"}``, or
``down, failing open`` / ``down, failing closed``: Redis is pinged by each probe). The status is
``starting`` or ``draining`` when not ready, or ``limits_down`` while limits failing closed have
no store (they refuse every request); failing open, the process stays ready. It holds no URL and no
secret: MCP servers appear by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from providers import HttpClient

from .drain import Drain
from .relay import DRAIN_EXTENSION

if TYPE_CHECKING:
    from .aliases import Aliases
    from .limits.limiter import Limits
    from .mcp import MCP
    from .oidc import OIDCVerifier

__all__ = ["Readiness"]

_HEADERS = {"Cache-Control": "no-store"}


class Readiness:
    def __init__(
        self,
        http: HttpClient,
        oidc: OIDCVerifier | None,
        mcp: MCP,
        aliases: Aliases | None = None,
        limits: Limits | None = None,
    ) -> None:
        self.http = http
        self.oidc = oidc
        self.mcp = mcp
        self.aliases = aliases
        self.limits = limits
        self.limits_state = "off" if limits is None else "ok"

    def report(self, drain: Drain | None) -> tuple[bool, dict[str, Any]]:
        """Whether the process is ready, and the body that says why."""
        draining = drain is not None and drain.leaving
        pool = "ok" if self.http.is_open else "closed"
        oidc = "off" if self.oidc is None else "ok" if self.oidc.ready else "waiting"
        checks = {
            "http_pool": pool,
            "oidc": oidc,
            "draining": draining,
            "mcp": {c.name: "connected" if c.available else "down" for c in self.mcp.connections},
        }
        if self.aliases:  # reported, never required: an alias with a deployment out still serves
            checks["aliases"] = {name: alias.states() for name, alias in self.aliases.items()}
        if self.limits is not None:
            checks["limits"] = {"store": self.limits.store.name, "state": self.limits_state}
        starting = pool != "ok" or oidc == "waiting"
        # Limits failing closed refuse every request while their store is down: not worth sending
        # traffic to. Failing open, the process serves (unlimited), so it stays ready.
        refusing = self.limits_state == "down, failing closed"
        status = "draining" if draining else "starting" if starting else "limits_down" if refusing else "ready"
        return status == "ready", {"status": status, "checks": checks}

    async def handle(self, request: Request) -> Response:
        extensions = request.scope.get("extensions") or {}
        if self.limits is not None:
            self.limits_state = await self.limits.probe()
        ready, body = self.report(extensions.get(DRAIN_EXTENSION))
        return Response(
            orjson.dumps(body), status_code=200 if ready else 503, media_type="application/json", headers=_HEADERS
        )
