"""``UsageMiddleware``: a W&B-authenticated gateway's usage reports (``enableUsageReports``).

Inside the gateway's authentication (so the caller's entity is known) and its telemetry (so the
request's ``Exchange`` holds the answer's usage): once the answer has ended, whole streams
included, its token usage goes to the gateway's reporter, which queues it without waiting.

    app = UsageMiddleware(app, reporter=usage_reporter(spec.wandb, spec.id, http))
"""

from __future__ import annotations

from typing import Protocol

from starlette.types import ASGIApp, Receive, Scope, Send

from ..auth import identity_of
from ..telemetry.exchange import Exchange, current

__all__ = ["Reporter", "UsageMiddleware"]


class Reporter(Protocol):
    def record_exchange(self, exchange: Exchange, entity: str | None = None) -> None: ...


class UsageMiddleware:
    def __init__(self, app: ASGIApp, *, reporter: Reporter) -> None:
        self.app = app
        self.reporter = reporter

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            await self.app(scope, receive, send)
        finally:
            identity = identity_of(scope)
            if identity is not None:  # refused callers used nothing
                self.reporter.record_exchange(current(), identity.subject)
