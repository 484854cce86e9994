"""Who may call a gateway: its ``weightsAndBiasesAuth`` (a W&B API key as the bearer credential) and
the usage it reports per request.

``coreWeaveAuth`` needs nothing here: it is the process's own ``AuthMiddleware`` (its API keys and
OIDC issuer, the credentials of the management API). ``WandbAuthMiddleware`` is that same middleware
(the same credential headers read, the same refusals, the credential removed from the request once
checked) with the check replaced: the key is verified with the gateway's W&B server and the caller's
``Identity.subject`` is its W&B entity, so rate limits count per entity. ``UsageMiddleware`` hands
each answer's token usage to the gateway's reporter after the answer has ended.

    app = UsageMiddleware(WandbAuthMiddleware(plane, verifier=verifier), reporter=reporter)
"""

from __future__ import annotations

from typing import Protocol

from starlette.types import ASGIApp, Receive, Scope, Send

from ..auth import ApiKeys, AuthMiddleware, Identity, identity_of
from ..telemetry.exchange import current
from ..telemetry.usage import Usage

__all__ = ["Reporter", "UsageMiddleware", "Verifier", "WandbAuthMiddleware"]


class Verifier(Protocol):
    async def verify(self, api_key: str) -> Identity:
        """The key's owner (``subject``: its W&B entity); raises ``AuthenticationFailed`` for a key the
        server refuses, ``ServiceUnavailable`` when the server cannot be asked."""
        ...


class Reporter(Protocol):
    def report(self, entity: str, model: str, usage: Usage) -> None:
        """Queue one request's usage (never waits on the server)."""
        ...


class WandbAuthMiddleware(AuthMiddleware):
    def __init__(self, app: ASGIApp, *, verifier: Verifier) -> None:
        super().__init__(app, keys=ApiKeys(()), oidc=None)
        self.verifier = verifier

    async def identify(self, token: str) -> Identity:
        return await self.verifier.verify(token)


class UsageMiddleware:
    """Inside authentication and telemetry: reports the usage of every answer that had some."""

    def __init__(self, app: ASGIApp, *, reporter: Reporter) -> None:
        self.app = app
        self.reporter = reporter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        finally:
            if scope["type"] == "http":
                identity = identity_of(scope)
                exchange = current()
                usage = exchange.tokens()
                if identity is not None and usage is not None:
                    model = f"{exchange.provider}/{exchange.model}" if exchange.provider else (exchange.model or "")
                    self.reporter.report(identity.subject, model, usage)
