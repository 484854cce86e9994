"""``WandbAuthMiddleware``: the per-gateway ASGI middleware of a W&B-authenticated gateway.

``gateway.auth.CredentialMiddleware`` with W&B's check (the same header rules as
``AuthMiddleware``): a bearer credential on every route but the probes, ``x-api-key`` too on Anthropic's
Messages routes; the key is checked by a ``WandbVerifier``, the caller's ``Identity`` (subject: the
W&B entity) lands in ``scope["state"]["identity"]``, and the credential headers are removed before
the request goes on, so nothing downstream can forward or log the key.

    app = WandbAuthMiddleware(app, verifier=WandbVerifier(spec.wandb, http))
"""

from __future__ import annotations

from starlette.types import ASGIApp

from ...auth import CredentialMiddleware, Identity
from .verifier import WandbVerifier

__all__ = ["WandbAuthMiddleware"]


class WandbAuthMiddleware(CredentialMiddleware):
    def __init__(self, app: ASGIApp, *, verifier: WandbVerifier) -> None:
        self.app = app
        self.verifier = verifier

    async def verify(self, credential: str) -> Identity:
        return await self.verifier.verify(credential)
