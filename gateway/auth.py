"""Who is calling: a pure ASGI middleware that requires a bearer credential on every route but the
open ones, and records the caller's ``Identity`` in ``scope["state"]["identity"]``.

A credential is a static API key (compared by sha256, in constant time) or an OIDC token (see
``oidc.OIDCVerifier``). On Anthropic's Messages routes it may also come as ``x-api-key`` (where
Anthropic's SDKs send theirs). The caller's ``Authorization`` (and there ``x-api-key``) header is
removed from the request once checked, so nothing downstream can forward or log it.

    app = AuthMiddleware(app, keys=ApiKeys(settings.auth_api_keys), oidc=verifier)
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from starlette.types import ASGIApp, Receive, Scope, Send

from providers.errors import APIError, AuthenticationFailed

from .errors import error_response, speaks_anthropic
from .settings import ApiKey
from .telemetry.exchange import current

if TYPE_CHECKING:
    from .oidc import OIDCVerifier

__all__ = ["ApiKeys", "AuthMiddleware", "CredentialMiddleware", "Identity", "identity_of", "presented_credential"]

log = logging.getLogger("polyrelay")

OPEN_PATHS = frozenset({"/health", "/ready"})  # probes send no credential; metrics have a port of their own
MAX_TOKEN_BYTES = 8192  # a larger credential is refused before it is parsed
_CHALLENGE = {"WWW-Authenticate": "Bearer"}


@dataclass(frozen=True, slots=True)
class Identity:
    """A verified caller: its subject (token ``sub`` or key name), how it proved it, the models
    its credential is limited to (empty: no limit beyond the gateway's policy), a token's
    verified claims (which guardrail policies read), and an API key's role on the gateways
    management API (a token's roles are in its claims)."""

    subject: str
    method: str
    models: tuple[str, ...] = ()
    claims: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    role: str = ""


def identity_of(scope: Scope) -> Identity | None:
    state = scope.get("state")
    return state.get("identity") if isinstance(state, dict) else None


class ApiKeys:
    """Static keys, held as sha256 digests; a presented key is hashed and compared with every one."""

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        self._keys = [(bytes.fromhex(k.sha256), Identity(k.name, "api_key", k.models, role=k.role)) for k in keys]

    def __bool__(self) -> bool:
        return bool(self._keys)

    def match(self, token: str) -> Identity | None:
        digest = hashlib.sha256(token.encode("utf-8", "surrogateescape")).digest()
        found = None
        for expected, identity in self._keys:  # no early exit: the time taken says nothing
            if hmac.compare_digest(digest, expected):
                found = identity
        return found


class CredentialMiddleware:
    """Requires a credential on every route but the open ones, has ``verify`` check it, records the
    caller's ``Identity`` and removes the credential headers; a refusal is rendered in the
    envelope of the route's API. Subclasses say how a presented credential is verified."""

    app: ASGIApp

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        try:
            identity = await self.verify(presented_credential(scope))
        except APIError as error:
            if error.status == 401:
                error.headers = {**_CHALLENGE, **error.headers}
            current().failed(error)
            log.debug("refused %s %s: %s", scope["method"], scope["path"], error.message)
            await error_response(error, scope["path"])(scope, receive, send)
            return
        scope.setdefault("state", {})["identity"] = identity
        dropped = _ANTHROPIC_CREDENTIALS if speaks_anthropic(scope["path"]) else _CREDENTIALS
        scope["headers"] = [(k, v) for k, v in scope["headers"] if k not in dropped]
        await self.app(scope, receive, send)

    async def verify(self, credential: str) -> Identity:
        raise NotImplementedError


class AuthMiddleware(CredentialMiddleware):
    """The process's credentials: its static API keys, then its OIDC issuer's tokens."""

    def __init__(self, app: ASGIApp, *, keys: ApiKeys, oidc: OIDCVerifier | None) -> None:
        self.app = app
        self.keys = keys
        self.oidc = oidc

    async def verify(self, credential: str) -> Identity:
        identity = self.keys.match(credential) if self.keys else None
        if identity is not None:
            return identity
        if self.oidc is None:
            raise AuthenticationFailed("The API key is not valid.", code="invalid_api_key")
        claims = await self.oidc.verify(credential)
        subject = claims.get("sub") or claims.get("azp") or claims.get("client_id") or "unknown"
        return Identity(str(subject), "oidc", claims=claims)


def presented_credential(scope: Scope) -> str:
    """The bearer token, or on Anthropic's Messages routes without one, the ``x-api-key``; a 401
    when there is none."""
    headers = scope["headers"]
    if speaks_anthropic(scope["path"]) and not any(k == b"authorization" for k, _ in headers):
        return _api_key(headers)
    return _bearer_token(headers)


_CREDENTIALS = frozenset({b"authorization"})
_ANTHROPIC_CREDENTIALS = frozenset({b"authorization", b"x-api-key"})


def _api_key(headers: Iterable[tuple[bytes, bytes]]) -> str:
    """The gateway key an Anthropic SDK sends as ``x-api-key`` (when there is no Authorization)."""
    values = [value for key, value in headers if key == b"x-api-key"]
    if not values:
        raise AuthenticationFailed(
            "Authentication is required: send 'x-api-key: <key>' or 'Authorization: Bearer <token>'.",
            code="missing_credentials",
        )
    if len(values) > 1:
        raise AuthenticationFailed("Send one x-api-key header, not several.", code="invalid_request")
    if len(values[0]) > MAX_TOKEN_BYTES:
        raise AuthenticationFailed("The x-api-key is not valid: it is larger than 8 KiB.", code="invalid_token")
    token = values[0].decode("latin-1").strip()
    if not token:
        raise AuthenticationFailed("The x-api-key header is empty.", code="invalid_token")
    return token


def _bearer_token(headers: Iterable[tuple[bytes, bytes]]) -> str:
    values = [value for key, value in headers if key == b"authorization"]
    if not values:
        raise AuthenticationFailed(
            "Authentication is required: send 'Authorization: Bearer <token>'.", code="missing_credentials"
        )
    if len(values) > 1:
        raise AuthenticationFailed("Send one Authorization header, not several.", code="invalid_request")
    value = values[0]
    if len(value) > MAX_TOKEN_BYTES + 7:  # refused before any parsing
        raise AuthenticationFailed("The bearer token is not valid: it is larger than 8 KiB.", code="invalid_token")
    scheme, _, token = value.decode("latin-1").partition(" ")
    if scheme.lower() != "bearer":
        raise AuthenticationFailed("The Authorization header must use the Bearer scheme.", code="invalid_request")
    token = token.strip()
    if not token:
        raise AuthenticationFailed("The bearer token is empty.", code="invalid_token")
    return token
