"""``LimitsMiddleware``: puts a limited caller's standing on its answer and settles the request.

Built by ``create_app`` only when a limit is configured. A route's ``Limits.admit`` leaves a
``Ticket`` in the scope; on the answer's start this adds the ticket's ``x-ratelimit-*`` headers
(unless the answer is a provider's refusal that carries its own),
and before the answer's last byte is sent (so the caller's next request already sees it) it
settles: the tokens the answer reported replace the estimate, and the concurrency slot is freed.
A request that ends otherwise (the client left, an error) is settled when the app returns.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..telemetry.exchange import current
from .limiter import TICKET, Ticket

__all__ = ["LimitsMiddleware"]


class LimitsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        failed = False

        async def tagged(message: Message) -> None:
            nonlocal failed
            ticket: Ticket | None = state.get(TICKET)
            if ticket is not None:
                if message["type"] == "http.response.start":
                    failed = message["status"] >= 400
                    headers = message.get("headers", ())
                    # A provider's refusal relayed with its own rate-limit headers: those explain it.
                    if not (failed and any(k.startswith(b"x-ratelimit-") for k, _ in headers)):
                        message["headers"] = [*headers, *ticket.headers]
                elif not message.get("more_body", False):
                    await ticket.settle(_errored if failed else _used)
            await send(message)

        try:
            await self.app(scope, receive, tagged)
        finally:
            ticket = state.get(TICKET)
            if ticket is not None and ticket.plan is not None:  # not settled by the answer's end
                await ticket.settle(_errored if failed else _used)


def _used() -> int | None:
    """The tokens to charge for an answer: those it reported, else ``None``: the estimate stands
    (a stream without usage, a client that left)."""
    usage = current().tokens()
    return None if usage is None else usage.input + usage.output


def _errored() -> int | None:
    """An error answer: what it reported, else nothing (the provider did no work, or said it did not)."""
    return _used() or 0
