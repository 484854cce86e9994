"""``Dispatch``: the outermost ASGI piece of the default gateway when gateway resources are on.

A request to ``/gateways/{id}/...`` goes to that gateway's data plane with the prefix moved from
``path`` (and ``raw_path``) to ``root_path``, so the plane's routes, middleware and error envelopes
see ``/v1/...`` exactly as the default gateway does; a request whose ``Host`` (port ignored, any
case) is one of a gateway's ``additionalDns`` goes to that plane unchanged. Everything else is the
default gateway's. An unknown (or removed) id is a 404 in OpenAI's envelope. Being outermost, it
also carries the lifespan through ``startup.report_startup``: a store that cannot be opened at
start-up is one line in the log, not a traceback.

The routing table is two dicts replaced whole by the runtime (never mutated in place), so a lookup
sees either the old plane or the new one. With no gateway holding a host, the ``Host`` header is
not even looked at: the default gateway pays one prefix test per request.

    app = Dispatch(default_app, table=runtime.table)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

from starlette.types import ASGIApp, Receive, Scope, Send

from providers.errors import NotFound

from ..errors import error_response
from ..startup import report_startup

__all__ = ["PREFIX", "Dispatch", "Table", "host_of"]

PREFIX = "/gateways/"
_PREFIX_BYTES = PREFIX.encode()


class Table(Protocol):
    """What the dispatch reads: the planes by gateway id and by extra host name (lower case)."""

    @property
    def by_id(self) -> Mapping[str, ASGIApp]: ...

    @property
    def by_host(self) -> Mapping[str, ASGIApp]: ...


class Dispatch:
    def __init__(self, app: ASGIApp, *, table: Table) -> None:
        self.app = app
        self.table = table

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":  # the outermost piece: a store that cannot start is one line
                await report_startup(self.app, scope, receive, send)
            else:
                await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        table = self.table
        if path.startswith(PREFIX):
            gateway_id, slash, rest = path[len(PREFIX) :].partition("/")
            plane = table.by_id.get(gateway_id)
            if plane is None:
                error = NotFound(
                    f"No gateway '{ascii(gateway_id)[1:-1][:100]}' here: it does not exist or was deleted. "
                    "List the gateways with GET /v1alpha1/inference/gateways.",
                    code="gateway_not_found",
                )
                await error_response(error, slash + rest)(scope, receive, send)
                return
            prefix = PREFIX + gateway_id
            raw: bytes = scope.get("raw_path") or path.encode()
            raw_prefix = _PREFIX_BYTES + gateway_id.encode()  # ids are UUIDs: the same bytes encoded
            scope = {
                **scope,
                "path": slash + rest or "/",
                "raw_path": raw[len(raw_prefix) :] if raw.startswith(raw_prefix) else (slash + rest).encode(),
                "root_path": scope.get("root_path", "") + prefix,
            }
            await plane(scope, receive, send)
            return
        if table.by_host:
            host = host_of(scope["headers"])
            plane = table.by_host.get(host) if host else None
            if plane is not None:
                await plane(scope, receive, send)
                return
        await self.app(scope, receive, send)


def host_of(headers: list[tuple[bytes, bytes]]) -> str:
    """The request's host name, lower case, without its port (``[::1]:8080`` is ``[::1]``)."""
    for key, value in headers:
        if key == b"host":
            host = value.decode("latin-1").strip().lower()
            if host.startswith("["):
                return host[: host.find("]") + 1]
            name, _, _ = host.partition(":")
            return name.rstrip(".")  # a fully qualified name's trailing dot
    return ""
