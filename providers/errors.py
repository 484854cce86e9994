"""The one error tree of polyrelay, rendered once into OpenAI's error envelope.

    APIError                      status, type, code, message, param
    ├── InvalidRequest            400 invalid_request_error
    │   └── PayloadTooLarge       413 invalid_request_error
    ├── AuthenticationFailed      401 authentication_error
    ├── PermissionDenied          403 permission_error
    ├── NotFound                  404 not_found_error
    ├── MethodNotAllowed          405 invalid_request_error
    ├── ServiceUnavailable        503 api_error
    └── UpstreamError             an upstream call went wrong
        ├── UpstreamStatusError   the provider answered 4xx/5xx: its status and message are kept
        ├── UpstreamUnreachable   502: connection refused, reset, DNS, TLS, a broken stream
        ├── UpstreamInvalidAnswer 502: an answer that is not what the protocol says (HTML, an oversized event)
        └── UpstreamTimeout       504: connect, read or total timeout

Adapters raise these; the gateway turns any of them into
``{"error": {"message", "type", "code", "param"}}`` with ``status`` (see ``APIError.envelope``).
Messages are full sentences that say what to do, and never carry credentials.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = [
    "APIError",
    "AuthenticationFailed",
    "InvalidRequest",
    "MethodNotAllowed",
    "NotFound",
    "PayloadTooLarge",
    "PermissionDenied",
    "ServiceUnavailable",
    "UpstreamError",
    "UpstreamInvalidAnswer",
    "UpstreamStatusError",
    "UpstreamTimeout",
    "UpstreamUnreachable",
    "error_type_for_status",
]


class APIError(Exception):
    """An error the client sees as ``{"error": {...}}`` with ``status``.

    >>> err = InvalidRequest("'messages' must be a non-empty list.", param="messages")
    >>> err.status, err.envelope()["error"]["param"]
    (400, 'messages')
    """

    status = 500
    type = "api_error"
    code: str | None = None

    def __init__(
        self,
        message: str,
        *,
        param: str | None = None,
        code: str | None = None,
        status: int | None = None,
        type: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code
        if status is not None:
            self.status = status
        if type is not None:
            self.type = type
        self.headers: dict[str, str] = dict(headers or {})

    def envelope(self) -> dict[str, Any]:
        return {
            "error": {
                "message": self.message,
                "type": self.type,
                "code": self.code,
                "param": self.param,
            }
        }


class InvalidRequest(APIError):
    status = 400
    type = "invalid_request_error"


class PayloadTooLarge(InvalidRequest):
    status = 413
    code = "request_too_large"


class AuthenticationFailed(APIError):
    status = 401
    type = "authentication_error"


class PermissionDenied(APIError):
    status = 403
    type = "permission_error"


class NotFound(APIError):
    status = 404
    type = "not_found_error"


class MethodNotAllowed(APIError):
    status = 405
    type = "invalid_request_error"
    code = "method_not_allowed"


class ServiceUnavailable(APIError):
    status = 503
    type = "api_error"
    code = "service_unavailable"


class UpstreamError(APIError):
    """Something went wrong between the gateway and a provider."""

    status = 502
    type = "api_error"


class UpstreamStatusError(UpstreamError):
    """The provider answered with an error status; the client gets the same status."""

    def __init__(self, status: int, message: str, **kwargs: Any) -> None:
        if kwargs.get("type") is None:
            kwargs["type"] = error_type_for_status(status)
        super().__init__(message, status=status, **kwargs)


class UpstreamUnreachable(UpstreamError):
    status = 502
    code = "upstream_unreachable"


class UpstreamInvalidAnswer(UpstreamError):
    status = 502
    code = "upstream_invalid_response"


class UpstreamTimeout(UpstreamError):
    status = 504
    code = "upstream_timeout"


_TYPES_BY_STATUS = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    409: "invalid_request_error",
    413: "invalid_request_error",
    422: "invalid_request_error",
    429: "rate_limit_error",
}


def error_type_for_status(status: int) -> str:
    """OpenAI's error ``type`` for an HTTP status, for errors whose upstream gave none."""
    return _TYPES_BY_STATUS.get(status, "invalid_request_error" if status < 500 else "api_error")
