"""``GET /v1/models``: every configured provider's models, listed concurrently, ids as ``provider/model``."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from providers import Adapter, ModelInfo
from providers.errors import UpstreamError, UpstreamTimeout

from .auth import identity_of
from .errors import describe
from .policy import ModelPolicy
from .routing import model_name, provider_by_id
from .settings import Settings

__all__ = ["ModelsEndpoint"]

log = logging.getLogger("polyrelay")


class ModelsEndpoint:
    """Lists models; one provider failing or timing out never fails the list of all of them."""

    def __init__(self, settings: Settings, adapters: Mapping[str, Adapter], policy: ModelPolicy) -> None:
        self.settings = settings
        self.adapters = adapters
        self.policy = policy
        self.bound = settings.client_response_header_timeout

    async def handle(self, request: Request) -> Response:
        identity = identity_of(request.scope)
        pid = request.query_params.get("provider")
        if pid:
            pid = model_name(pid, param="provider").lower()
            provider_by_id(pid, self.settings.providers)
            try:
                models = await self._list(pid)
            except UpstreamTimeout:
                raise
            except UpstreamError as exc:
                # The provider's own status (say, 401 for a bad key) is the gateway's fault, not the caller's.
                raise UpstreamError(f"Listing models of '{pid}' failed: {exc.message}", code=exc.code) from exc
            allowed = [m for m in models if self.policy.allows(pid, m.id, identity)]
            document: dict[str, Any] = {"object": "list", "provider": pid, "data": _entries(pid, allowed)}
        else:
            pids = sorted(self.adapters)
            results = await asyncio.gather(*(self._list(p) for p in pids), return_exceptions=True)
            data = []
            for p, result in zip(pids, results, strict=True):
                if isinstance(result, BaseException):
                    log.warning("listing models of %s failed, left out: %s", p, describe(result))
                    continue
                data.extend(_entries(p, [m for m in result if self.policy.allows(p, m.id, identity)]))
            for name, alias in self.settings.aliases.items():  # listed when the caller may use a deployment
                if any(self.policy.allows(t.provider, t.model, identity) for t in alias.targets):
                    data.append(
                        {"id": name, "object": "model", "created": 0, "owned_by": "polyrelay", "served_by": "polyrelay"}
                    )
            document = {"object": "list", "data": data}
        return Response(orjson.dumps(document), media_type="application/json")

    async def _list(self, pid: str) -> list[ModelInfo]:
        try:
            async with asyncio.timeout(self.bound):
                return await self.adapters[pid].list_models()
        except TimeoutError:
            raise UpstreamTimeout(
                f"'{pid}' did not list its models within {self.bound:g}s (CLIENT_RESPONSE_HEADER_TIMEOUT)."
            ) from None


def _entries(pid: str, models: list[ModelInfo]) -> list[dict[str, Any]]:
    return [
        {"id": f"{pid}/{m.id}", "object": "model", "created": m.created, "owned_by": m.owned_by, "served_by": pid}
        for m in sorted(models, key=lambda m: m.id)
    ]
