"""``TelemetryMiddleware``: opens each request's ``Exchange``, tags the answer, tells the sinks.

On every HTTP answer it adds ``X-Request-Id`` (the caller's, when it sent a valid one, else a new
one; also sent to every upstream call of the request) and ``X-Gateway-Overhead-Ms``: the wall time
from the request's arrival to the answer's first byte, minus the time during which the request was
waiting on a provider or an MCP tool (``providers.waiting``: parallel waits count once). For a
stream, it counts up to the first byte, which is where a gateway's cost shows.
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Callable, Mapping

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from providers.transport import OUTBOUND
from providers.waiting import WAITS, WaitClock

from ..auth import identity_of
from . import Telemetry
from .exchange import CURRENT, Exchange

__all__ = ["OVERHEAD_HEADER", "REQUEST_ID_HEADER", "TelemetryMiddleware", "request_id_from"]

OVERHEAD_HEADER = b"x-gateway-overhead-ms"
REQUEST_ID_HEADER = b"x-request-id"
SELECTED_PROVIDER = b"x-selected-provider"
SELECTED_MODEL = b"x-selected-model"
_REQUEST_ID = "X-Request-Id"
# What a request id may be: what tracing systems and proxies make (UUIDs, hex, base64, dotted or
# colon-separated ids), short enough for a log line; anything else is replaced by a new id.
_VALID_ID = re.compile(rb"[A-Za-z0-9._:@/+=-]{1,128}")


def request_id_from(headers: list[tuple[bytes, bytes]]) -> str:
    """The caller's ``X-Request-Id`` if it sent one valid id, else a new random one."""
    found = None
    for key, value in headers:
        if key == REQUEST_ID_HEADER:
            if found is not None:
                return _new_id()  # two ids: neither is believed
            found = value
    if found is not None and _VALID_ID.fullmatch(found):
        return found.decode("ascii")
    return _new_id()


def _new_id() -> str:
    """32 random hex digits. An id only has to be unique, not unguessable: the process's random
    generator (seeded from the system in every worker process) instead of a system call per request;
    its 16 bytes made hex, faster than formatting a 128-bit number."""
    return random.getrandbits(128).to_bytes(16).hex()


class TelemetryMiddleware:
    """The outermost middleware: it sees every request, refused ones included (a plain ASGI class)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        telemetry: Telemetry,
        routes: Mapping[Callable[..., object], str],
        mounted: bool = False,
    ) -> None:
        self.app = app
        self.telemetry = telemetry
        self.routes = routes  # endpoint -> its route template, the bounded name a request is counted under
        # A gateway resource's data plane: its requests arrive with /gateways/{id} moved to root_path;
        # logs and traces show the path the client called.
        self.mounted = mounted

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        telemetry = self.telemetry
        headers = scope["headers"]
        request_id = request_id_from(headers)
        client = scope.get("client")
        path = scope.get("root_path", "") + scope["path"] if self.mounted else scope["path"]
        exchange = Exchange(telemetry, request_id, scope["method"], path, client[0] if client else None, headers)
        started = exchange.started
        clock = WaitClock()
        tokens = (WAITS.set(clock), CURRENT.set(exchange), OUTBOUND.set({_REQUEST_ID: request_id}))
        tags = (REQUEST_ID_HEADER, request_id.encode())

        async def tagged(message: Message) -> None:
            if message["type"] == "http.response.start":
                now = time.perf_counter()
                exchange.first_byte = now
                exchange.status = message["status"]
                exchange.overhead = now - started - clock.waited(now)
                message["headers"] = [
                    *message.get("headers", ()),
                    (OVERHEAD_HEADER, b"%.3f" % (exchange.overhead * 1000)),
                    tags,
                ]
                if exchange.selected is not None:  # an alias of the routing file: which deployment served
                    message["headers"] += [
                        (SELECTED_PROVIDER, exchange.selected[0].encode()),
                        (SELECTED_MODEL, exchange.selected[1].encode("utf-8", "replace")),
                    ]
            await send(message)

        telemetry.begin(exchange)
        try:
            await self.app(scope, receive, tagged)
        except BaseException as exc:
            if exchange.error is None:
                exchange.failed(exc)
            if not exchange.status:
                exchange.status = 500
            raise
        finally:
            exchange.ended = time.perf_counter()
            exchange.route = self.routes.get(scope.get("endpoint"), "unmatched")  # type: ignore[arg-type]
            identity = identity_of(scope)
            if identity is not None:
                exchange.identity = identity.subject
            telemetry.end(exchange)
            OUTBOUND.reset(tokens[2])
            CURRENT.reset(tokens[1])
            WAITS.reset(tokens[0])
