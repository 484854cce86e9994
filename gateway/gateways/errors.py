"""The management API's errors, in CoreWeave's shape: ``{"code": 400, "message": "...", "details": []}``.

``code`` repeats the HTTP status (as the Inference API does); ``message`` is a full sentence that
says what to change. Every refusal of the management API, from a bad field to a wrong method, is a
``GatewaysError`` rendered once by ``response``.

    raise GatewaysError(404, "No gateway has the id 0b6c...: it was deleted, or belongs to another organization.")
"""

from __future__ import annotations

import orjson
from starlette.responses import Response

__all__ = ["GatewaysError", "invalid", "response"]


class GatewaysError(Exception):
    """A refused management call: its HTTP status and what to do about it."""

    def __init__(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}

    def body(self) -> bytes:
        return orjson.dumps({"code": self.status, "message": self.message, "details": []})


def invalid(message: str) -> GatewaysError:
    """A 400: the request names or holds something the API does not accept."""
    return GatewaysError(400, message)


def response(error: GatewaysError) -> Response:
    return Response(error.body(), status_code=error.status, media_type="application/json", headers=error.headers)
