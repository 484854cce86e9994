"""Rendering the error tree (``providers.errors``) into OpenAI's envelope, for JSON and for SSE.

Every error a client sees goes through ``error_response`` or ``error_event``: one shape, one place.
"""

from __future__ import annotations

import logging

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from providers.errors import APIError, InvalidRequest, MethodNotAllowed, NotFound

from .relay import ClientGone
from .telemetry import current

__all__ = ["describe", "error_event", "error_response", "exception_handlers"]

log = logging.getLogger("polyrelay")


def error_response(error: APIError) -> Response:
    return Response(
        orjson.dumps(error.envelope()),
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
    return error_response(exc)


async def _http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    error: APIError
    if exc.status_code == 404:
        error = NotFound(
            f"No route {request.method} {request.url.path}. The gateway serves /v1/models, "
            "/v1/chat/completions, /proxy/<provider>/<path> and /health."
        )
    elif exc.status_code == 405:
        error = MethodNotAllowed(f"{request.method} is not allowed on {request.url.path}.", headers=exc.headers)
    else:
        error = InvalidRequest(str(exc.detail), status=exc.status_code)
    return error_response(error)


async def _client_gone(request: Request, exc: Exception) -> Response:
    current().failed(exc, "client_gone", "client_gone")
    log.debug("client left %s %s before its answer; upstream call cancelled", request.method, request.url.path)
    return Response(status_code=499)  # nobody reads it; the access log shows why the request ended


async def _unexpected(request: Request, exc: Exception) -> Response:
    current().failed(exc)
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(APIError("The gateway hit an internal error; it has been logged."))


exception_handlers = {
    APIError: _api_error,
    HTTPException: _http_exception,
    ClientGone: _client_gone,
    Exception: _unexpected,
}
