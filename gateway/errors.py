"""Rendering the error tree (``providers.errors``) into the envelope of the API the route speaks.

Every error a client sees goes through ``error_response`` or an error event: OpenAI's
``{"error": {...}}`` on every route but Anthropic's Messages API (``/v1/messages...``), which gets
Anthropic's ``{"type": "error", "error": {"type", "message"}}`` with the same status. One tree,
two renderings, chosen by the request's path in one place.
"""

from __future__ import annotations

import logging
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from providers.errors import APIError, InvalidRequest, MethodNotAllowed, NotFound

from .relay import ClientGone
from .telemetry import current

__all__ = [
    "anthropic_envelope",
    "anthropic_error_event",
    "describe",
    "error_event",
    "error_response",
    "exception_handlers",
    "speaks_anthropic",
]

log = logging.getLogger("polyrelay")


ANTHROPIC_ROUTE = "/v1/messages"  # and the paths under it (count_tokens)

# Anthropic's error type for a status; other statuses take invalid_request_error (4xx) or api_error.
_ANTHROPIC_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def speaks_anthropic(path: str) -> bool:
    """Whether the route at ``path`` speaks Anthropic's Messages API (and its error shape):
    ``/v1/messages`` and the paths under it, also after a model (``ROUTING_STRATEGY=path``); the
    raw proxy's paths are the provider's own, not these."""
    if path.startswith("/proxy/"):
        return False
    at = path.find(ANTHROPIC_ROUTE)
    end = at + len(ANTHROPIC_ROUTE)
    return at >= 0 and (end == len(path) or path[end] == "/")


def anthropic_envelope(error: APIError) -> dict[str, Any]:
    """The error as Anthropic's API writes it; the type follows the status, as Anthropic's SDKs read it."""
    kind = _ANTHROPIC_TYPES.get(error.status) or ("invalid_request_error" if error.status < 500 else "api_error")
    return {"type": "error", "error": {"type": kind, "message": error.message}}


def anthropic_error_event(error: APIError) -> bytes:
    """The ``event: error`` that ends an Anthropic stream which failed after it began."""
    return b"event: error\ndata: " + orjson.dumps(anthropic_envelope(error)) + b"\n\n"


def error_response(error: APIError, path: str = "") -> Response:
    """The error as JSON in the envelope of the route at ``path``."""
    body = anthropic_envelope(error) if speaks_anthropic(path) else error.envelope()
    return Response(
        orjson.dumps(body),
        status_code=error.status,
        headers=error.headers,
        media_type="application/json",
    )


def describe(exc: BaseException) -> str:
    """One line for a log: our message, or the exception's type and text (groups flattened)."""
    if isinstance(exc, APIError):
        return exc.message
    if isinstance(exc, BaseExceptionGroup):
        return "; ".join(describe(e) for e in exc.exceptions)
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def error_event(error: APIError) -> bytes:
    """The SSE event that ends a stream which failed after it began (``[DONE]`` follows it)."""
    return b"data: " + orjson.dumps(error.envelope()) + b"\n\n"


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, APIError)
    current().failed(exc)
    if exc.status >= 500:
        log.warning("%s %s -> %d: %s", request.method, request.url.path, exc.status, exc.message)
    return error_response(exc, request.scope["path"])


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error: APIError
    if exc.status_code == 404:
        error = NotFound(
            f"No route {request.method} {request.url.path}. The gateway serves /v1/models, "
            "/v1/chat/completions, /v1/completions, /v1/embeddings, /v1/moderations, /v1/audio/..., "
            "/v1/responses, /v1/messages, /proxy/<provider>/<path>, /health and /ready (README: Endpoints)."
        )
    elif exc.status_code == 405:
        error = MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}.", headers=exc.headers)
    else:
        error = InvalidRequest(str(exc.detail), status=exc.status_code)
    return error_response(error, request.scope["path"])


async def _client_gone(request: Request, exc: Exception) -> Response:
    current().failed(exc, "client_gone", "client_gone")
    log.debug("client left %s %s before its answer; upstream call cancelled", request.method, request.url.path)
    return Response(status_code=499)  # nobody reads it; the access log shows why the request ended


async def _unexpected(request: Request, exc: Exception) -> Response:
    current().failed(exc)
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(APIError("The gateway hit an internal error; it has been logged."), request.scope["path"])


exception_handlers = {
    APIError: _api_error,
    HTTPException: _http_exception,
    ClientGone: _client_gone,
    Exception: _unexpected,
}
