"""``GET /v1/models``: every configured provider's models, listed concurrently, ids as ``provider/model``;
``GET /v1/models/{model}``: one of them."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from providers import Adapter, ModelInfo
from providers.errors import NotFound, UpstreamError, UpstreamTimeout

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
            models = await self._listed(pid)
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
            document = {"object": "list", "data": data}
        return Response(orjson.dumps(document), media_type="application/json")

    async def retrieve(self, request: Request) -> Response:
        """``GET /v1/models/{model}``: the entry of one id as the list gives it (``provider/model``,
        or the bare name with ``?provider=``); a 404 for any id the list would not hold for this
        caller, the ones the model policy hides included."""
        name = model_name(request.path_params["model"])
        prefix, slash, rest = name.partition("/")
        pid_param = request.query_params.get("provider")
        if pid_param:
            pid = model_name(pid_param, param="provider").lower()
            model = rest if slash and prefix.lower() == pid else name
        else:
            pid, model = prefix.lower(), rest
        provider = self.settings.providers.get(pid)
        if (
            (not slash and not pid_param)
            or provider is None
            or not provider.configured
            or not self.policy.allows(pid, model, identity_of(request.scope))
        ):
            raise _not_found(name)
        found = next((m for m in await self._listed(pid) if m.id == model), None)
        if found is None:
            raise _not_found(name)
        return Response(orjson.dumps(_entries(pid, [found])[0]), media_type="application/json")

    async def _listed(self, pid: str) -> list[ModelInfo]:
        """One provider's models, its failure the answer's error."""
        try:
            return await self._list(pid)
        except UpstreamTimeout:
            raise
        except UpstreamError as exc:
            # The provider's own status (say, 401 for a bad key) is the gateway's fault, not the caller's.
            raise UpstreamError(f"Listing models of '{pid}' failed: {exc.message}", code=exc.code) from exc

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


def _not_found(name: str) -> NotFound:
    return NotFound(
        f"The model '{ascii(name)[1:-1][:200]}' does not exist on this gateway. GET /v1/models lists the models "
        "you may use, ids as provider/model.",
        param="model",
        code="model_not_found",
        type="invalid_request_error",
    )
