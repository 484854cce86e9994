"""``WandbAuthMiddleware``: the per-gateway ASGI middleware of a W&B-authenticated gateway.

The same shape as ``gateway.auth.AuthMiddleware`` (and the same header rules, by the same
functions): a bearer credential on every route but the probes, ``x-api-key`` too on Anthropic's
Messages routes; the key is checked by a ``WandbVerifier``, the caller's ``Identity`` (subject: the
W&B entity) lands in ``scope["state"]["identity"]``, and the credential headers are removed before
the request goes on, so nothing downstream can forward or log the key.

    app = WandbAuthMiddleware(app, verifier=WandbVerifier(spec.wandb, http))
"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Receive, Scope, Send

from providers.errors import APIError

from ...auth import _ANTHROPIC_CREDENTIALS, _CHALLENGE, _CREDENTIALS, OPEN_PATHS, _api_key, _bearer_token
from ...errors import error_response, speaks_anthropic
from ...telemetry.exchange import current
from .verifier import WandbVerifier

__all__ = ["WandbAuthMiddleware"]

log = logging.getLogger("polyrelay")


class WandbAuthMiddleware:
    def __init__(self, app: ASGIApp, *, verifier: WandbVerifier) -> None:
        self.app = app
        self.verifier = verifier

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in OPEN_PATHS or scope["method"] == "OPTIONS":
            await self.app(scope, receive, send)
            return
        anthropic = speaks_anthropic(scope["path"])
        headers = scope["headers"]
        try:
            if anthropic and not any(k == b"authorization" for k, _ in headers):
                key = _api_key(headers)
            else:
                key = _bearer_token(headers)
            identity = await self.verifier.verify(key)
        except APIError as error:
            if error.status == 401:
                error.headers = {**_CHALLENGE, **error.headers}
            current().failed(error)
            log.debug("refused %s %s: %s", scope["method"], scope["path"], error.message)
            await error_response(error, scope["path"])(scope, receive, send)
            return
        scope.setdefault("state", {})["identity"] = identity
        dropped = _ANTHROPIC_CREDENTIALS if anthropic else _CREDENTIALS
        scope["headers"] = [(k, v) for k, v in headers if k not in dropped]
        await self.app(scope, receive, send)
