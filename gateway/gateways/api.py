"""The management API: CoreWeave's GatewayService over REST/JSON, under
``/v1alpha1/inference/gateways``, served on its own port (``GATEWAYS_PORT``).

    POST   /gateways               create (200: the gateway, STATUS_CREATING; 409: the id exists)
    GET    /gateways               list the caller's organization's (``?updatedAfter=<ISO 8601>``)
    GET    /gateways/parameters    the zones a gateway may name
    GET    /gateways/{id}          one (404 when absent or another organization's)
    PATCH  /gateways/{id}          replace the spec (the whole of it): STATUS_UPDATING
    DELETE /gateways/{id}          STATUS_DELETING, answered with the gateway; removed once drained

Each handler reads top-down: the caller (set by ``access.Access``), the body, the store, the
answer. Bodies are JSON objects of at most ``MAX_BODY`` bytes; every refusal is CoreWeave's
``{"code", "message", "details"}`` (``errors``).

    app = management_app(store, runtime, enabled=True, keys=ApiKeys(...), oidc=verifier)  # Access's options
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from . import lifecycle
from .access import Access, caller_of
from .errors import GatewaysError, invalid, response
from .schema import is_uuid, parse_spec, render_gateway
from .spec import Runtime
from .store import DuplicateId, Record, Store, StoreError
from .store.record import now, seconds

__all__ = ["BASE", "MAX_BODY", "ManagementAPI", "management_app"]

log = logging.getLogger("polyrelay")

BASE = "/v1alpha1/inference/gateways"
MAX_BODY = 64 * 1024  # a spec is a few hundred bytes; this bounds what a caller can make us parse


class ManagementAPI:
    """The handlers. ``changed`` hears of each write (this process's reconciler starts at once,
    without waiting for the store's feed, which tells the other processes)."""

    def __init__(self, store: Store, runtime: Runtime, changed: Callable[[str], None] | None = None) -> None:
        self.store = store
        self.runtime = runtime
        self.changed = changed or (lambda gateway_id: None)

    async def create(self, request: Request) -> Response:
        caller = caller_of(request.scope)
        document = await _json_body(request)
        spec = parse_spec(document, organization_id=caller.organization_id, known_zones=self._zones())
        try:
            record = await self.store.create(Record(spec, lifecycle.creating(seconds(now()))))
        except DuplicateId:
            raise GatewaysError(409, f"A gateway with the id {spec.id} exists already: choose another id.") from None
        self.changed(spec.id)
        log.info("gateways: %s created %s (%s)", caller.subject, spec.id, spec.name)
        return _answer({"gateway": render_gateway(record.spec, record.status)})

    async def list(self, request: Request) -> Response:
        caller = caller_of(request.scope)
        after = _updated_after(request.query_params.get("updatedAfter"))
        records = await self.store.list(caller.organization_id, after)
        return _answer({"gateways": [render_gateway(r.spec, r.status) for r in records]})

    async def get(self, request: Request) -> Response:
        gateway_id = _path_id(request)
        record = await self.store.get(gateway_id, caller_of(request.scope).organization_id)
        if record is None:
            raise _not_found(gateway_id)
        return _answer({"gateway": render_gateway(record.spec, record.status)})

    async def patch(self, request: Request) -> Response:
        caller = caller_of(request.scope)
        gateway_id = _path_id(request)
        document = await _json_body(request)
        zones = self._zones()

        def change(current: Record) -> Record | None:
            if current.status.status == "STATUS_DELETING":
                raise GatewaysError(409, f"The gateway {gateway_id} is being deleted; it cannot be changed.")
            spec = parse_spec(
                document,
                organization_id=current.spec.organization_id,
                known_zones=zones,
                gateway_id=gateway_id,
                stored=current.spec,
            )
            if spec == current.spec and current.status.status != "STATUS_FAILED":
                return None  # nothing to apply: no new generation (a failed one is tried again)
            return Record(spec, lifecycle.updating(current.status, seconds(now())), current.revision)

        record = await self.store.update(gateway_id, change, caller.organization_id)
        if record is None:
            raise _not_found(gateway_id)
        self.changed(gateway_id)
        log.info("gateways: %s changed %s", caller.subject, gateway_id)
        return _answer({"gateway": render_gateway(record.spec, record.status)})

    async def delete(self, request: Request) -> Response:
        caller = caller_of(request.scope)
        gateway_id = _path_id(request)

        def change(current: Record) -> Record | None:
            if current.status.status == "STATUS_DELETING":
                return None  # deleted twice: the same answer
            return replace(current, status=lifecycle.deleting(current.status, seconds(now())))

        record = await self.store.update(gateway_id, change, caller.organization_id)
        if record is None:
            raise _not_found(gateway_id)
        self.changed(gateway_id)
        log.info("gateways: %s deleted %s", caller.subject, gateway_id)
        return _answer({"gateway": render_gateway(record.spec, record.status)})

    async def parameters(self, request: Request) -> Response:
        return _answer({"zones": sorted(self._zones())})

    def _zones(self) -> set[str]:
        return {zone.lower() for zone in self.runtime.zones()}


def management_app(
    store: Store, runtime: Runtime, *, changed: Callable[[str], None] | None = None, **access: Any
) -> Starlette:
    """The management API as an ASGI app, behind ``access.Access`` built with ``access``."""
    api = ManagementAPI(store, runtime, changed)
    routes = [
        Route(BASE, api.create, methods=["POST"]),
        Route(BASE, api.list, methods=["GET"]),
        Route(f"{BASE}/parameters", api.parameters, methods=["GET"]),
        Route(BASE + "/{id}", api.get, methods=["GET"]),
        Route(BASE + "/{id}", api.patch, methods=["PATCH"]),
        Route(BASE + "/{id}", api.delete, methods=["DELETE"]),
    ]
    return Starlette(
        routes=routes,
        middleware=[Middleware(Access, **access)],
        exception_handlers={
            GatewaysError: _refused,
            HTTPException: _http_refused,
            StoreError: _store_failed,
            Exception: _failed,
        },
    )


# -- the pieces ---------------------------------------------------------------------------------


async def _json_body(request: Request) -> Any:
    media_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if media_type != "application/json":
        raise GatewaysError(415, "Send the body as JSON, with Content-Type: application/json.")
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > MAX_BODY:
        raise GatewaysError(413, f"The request body is larger than {MAX_BODY} bytes.")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise GatewaysError(413, f"The request body is larger than {MAX_BODY} bytes.")
        chunks.append(chunk)
    try:
        return orjson.loads(b"".join(chunks))
    except orjson.JSONDecodeError as exc:
        raise invalid(f"The request body is not valid JSON: {exc}.") from None


def _path_id(request: Request) -> str:
    gateway_id: str = request.path_params["id"]
    if not is_uuid(gateway_id):
        raise invalid(f"The gateway id {gateway_id[:80]!r} is not a UUID.")
    return gateway_id.lower()


def _updated_after(text: str | None) -> datetime | None:
    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text.strip().replace("z", "Z"))
    except ValueError:
        raise invalid(
            f"updatedAfter {text[:80]!r} is not an ISO 8601 date-time such as 2026-12-01T17:00:00Z."
        ) from None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _not_found(gateway_id: str) -> GatewaysError:
    return GatewaysError(404, f"No gateway has the id {gateway_id} in your organization.")


def _answer(document: dict[str, Any]) -> Response:
    return Response(orjson.dumps(document), media_type="application/json")


async def _refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewaysError)
    return response(exc)


async def _http_refused(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        message = f"There is no {request.url.path} here; the management API is under {BASE}."
    elif exc.status_code == 405:
        allowed = (exc.headers or {}).get("Allow", "")
        message = f"{request.method} is not allowed on {request.url.path}; use {allowed}."
    else:
        message = str(exc.detail)
    return response(GatewaysError(exc.status_code, message, dict(exc.headers or {})))


async def _store_failed(request: Request, exc: Exception) -> Response:
    log.debug("gateways: the store failed: %s", exc)  # the store's health warns, once per outage
    return response(GatewaysError(503, "The gateways store is unavailable right now; retry shortly."))


async def _failed(request: Request, exc: Exception) -> Response:
    log.exception("gateways: %s %s failed", request.method, request.url.path, exc_info=exc)
    return response(GatewaysError(500, "The management API failed unexpectedly; the error is logged."))
