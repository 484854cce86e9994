"""``GuardrailsMiddleware``: the pre_call and post_call checks, around every route but the probes.

pre_call reads the request's body (within SERVER_MAX_REQUEST_BODY_SIZE and SERVER_READ_TIMEOUT),
asks for a decision, then replays the body (redacted, when decided) to the route. A body that is
not text (a multipart upload, audio, bytes) is streamed through unread: its check sees an empty
body. post_call holds the JSON answer (status below 400) of a POST until it is decided on; streams
pass as they come, as in inference-gateway: their events are the client's once sent.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from providers.errors import APIError, PermissionDenied

from ..auth import OPEN_PATHS, identity_of
from ..body import read_body
from ..errors import error_response
from ..relay import ClientGone
from ..telemetry import current
from . import IDENTITY, Guardrails
from .redact import redact_body

__all__ = ["GuardrailsMiddleware"]

_TEXT_TYPES = (b"application/json", b"text/", b"application/x-www-form-urlencoded", b"application/x-ndjson")


def _blocked(message: str, answer: bool = False) -> PermissionDenied:
    default = (
        "The answer was withheld by the gateway's guardrails."
        if answer
        else ("The request was refused by the gateway's guardrails.")
    )
    return PermissionDenied(message or default, code="guardrail_blocked")


class GuardrailsMiddleware:
    def __init__(self, app: ASGIApp, *, guardrails: Guardrails, limit: int, read_timeout: float) -> None:
        self.app = app
        self.guardrails = guardrails
        self.limit = limit
        self.read_timeout = read_timeout

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        content_type = next((v for k, v in scope["headers"] if k == b"content-type"), b"")
        textual = not content_type or content_type.lower().startswith(_TEXT_TYPES)
        body = b""
        if textual:
            try:
                body = await read_body(Request(scope, receive), self.limit, self.read_timeout)
            except ClientGone:
                return
            except APIError as error:
                await self._refuse(scope, receive, send, error)
                return
        identity = _identity(scope)
        payload = _json(body)
        model = payload.get("model") if isinstance(payload, dict) else None
        document: dict[str, Any] = {
            "method": scope["method"],
            "path": scope["path"],
            "phase": "pre_call",
            "request": {"body": body.decode("utf-8", "replace"), "model": model if isinstance(model, str) else ""},
        }
        if identity is not None:
            document["identity"] = identity
        decision = await self.guardrails.decide(document)
        if decision.action == "block":
            await self._refuse(scope, receive, send, _blocked(decision.message))
            return
        if decision.action == "redact" and body:
            body = redact_body(body)
            scope = {**scope, "headers": _with_length(scope["headers"], len(body))}
        streamed = isinstance(payload, dict) and payload.get("stream") is True
        token = IDENTITY.set(identity)
        try:
            replay = _replay(body, receive) if textual else receive
            held = not streamed and scope["method"] == "POST"  # an answer to a call, not a listing
            answer = _Held(self.guardrails, document, scope, replay, send).send if held else send
            await self.app(scope, replay, answer)
        finally:
            IDENTITY.reset(token)

    async def _refuse(self, scope: Scope, receive: Receive, send: Send, error: APIError) -> None:
        current().failed(error)
        await error_response(error)(scope, receive, send)


class _Held:
    """The answer's ``send``: a JSON answer below 400 is held whole and decided on (post_call)."""

    def __init__(self, guardrails: Guardrails, request: dict[str, Any], scope: Scope, receive: Receive, send: Send):
        self.guardrails = guardrails
        self.request = request
        self.scope = scope
        self.receive = receive
        self.downstream = send
        self.start: Message | None = None
        self.parts: list[bytes] = []

    async def send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            kind = next((v for k, v in message.get("headers", ()) if k.lower() == b"content-type"), b"")
            if message["status"] < 400 and kind.lower().startswith(b"application/json"):
                self.start = message
                return
        elif self.start is not None and message["type"] == "http.response.body":
            self.parts.append(message.get("body", b""))
            if not message.get("more_body", False):
                await self._decide()
            return
        await self.downstream(message)

    async def _decide(self) -> None:
        assert self.start is not None
        body = b"".join(self.parts)
        document = {**self.request, "phase": "post_call", "request": {**self.request["request"], "body": ""}}
        document["request"]["body"] = body.decode("utf-8", "replace")
        decision = await self.guardrails.decide(document)
        if decision.action == "block":
            error = _blocked(decision.message, answer=True)
            current().failed(error)
            await error_response(error)(self.scope, self.receive, self.downstream)
            return
        start = self.start
        if decision.action == "redact":
            body = redact_body(body)
            start = {**start, "headers": _with_length(start.get("headers", []), len(body))}
        await self.downstream(start)
        await self.downstream({"type": "http.response.body", "body": body, "more_body": False})


def _replay(body: bytes, receive: Receive) -> Receive:
    """A ``receive`` that gives the body read once, then the real one (for the disconnect)."""
    pending = True

    async def replayed() -> Message:
        nonlocal pending
        if pending:
            pending = False
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replayed


def _with_length(headers: Any, length: int) -> list[tuple[bytes, bytes]]:
    kept = [(k, v) for k, v in headers if k.lower() != b"content-length"]
    return [*kept, (b"content-length", str(length).encode())]


def _json(body: bytes) -> Any:
    if not body or body[:1] not in (b"{", b"["):
        return None
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _identity(scope: Scope) -> dict[str, Any] | None:
    """The verified caller, as policies read it: the token's claims, or a key's name."""
    identity = identity_of(scope)
    if identity is None:
        return None
    return {"sub": identity.subject, "method": identity.method, **identity.claims}
