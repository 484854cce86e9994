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
from providers.errors import InvalidRequest, NotFound, UpstreamError, UpstreamTimeout
from providers.model_facts import FIELDS, facts_for

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
        include = _included(request)
        pid = request.query_params.get("provider")
        if pid:
            pid = model_name(pid, param="provider").lower()
            provider_by_id(pid, self.settings.providers)
            models = await self._listed(pid)
            allowed = [m for m in models if self.policy.allows(pid, m.id, identity)]
            data = self._entries(pid, allowed, include)
            document: dict[str, Any] = {"object": "list", "provider": pid, "data": data}
        else:
            pids = sorted(p for p in self.adapters if p in self.settings.providers)  # not alias deployments
            results = await asyncio.gather(*(self._list(p) for p in pids), return_exceptions=True)
            data = []
            for p, result in zip(pids, results, strict=True):
                if isinstance(result, BaseException):
                    log.warning("listing models of %s failed, left out: %s", p, describe(result))
                    continue
                data.extend(self._entries(p, [m for m in result if self.policy.allows(p, m.id, identity)], include))
            for name, alias in self.settings.aliases.items():  # listed when the caller may use a deployment
                if any(self.policy.allows(t.provider, t.model, identity) for t in alias.targets):
                    data.append(
                        {"id": name, "object": "model", "created": 0, "owned_by": "polyrelay", "served_by": "polyrelay"}
                    )
            document = {"object": "list", "data": data}
        return Response(orjson.dumps(document), media_type="application/json")

    async def retrieve(self, request: Request) -> Response:
        """``GET /v1/models/{model}``: the entry of one id as the list gives it (``provider/model``,
        or the bare name with ``?provider=``); a 404 for any id the list would not hold for this
        caller, the ones the model policy hides included."""
        include = _included(request)
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
        return Response(orjson.dumps(self._entries(pid, [found], include)[0]), media_type="application/json")

    def _entries(self, pid: str, models: list[ModelInfo], include: tuple[str, ...]) -> list[dict[str, Any]]:
        entries = _entries(pid, models)
        if include:
            rules = self.settings.providers[pid].spec.model_info
            for entry, model in zip(entries, sorted(models, key=lambda m: m.id), strict=True):
                facts = facts_for(rules, model.id)
                known = _UNKNOWN if facts is None else facts.document()
                entry.update((name, known.get(name)) for name in include)
        return entries

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


# inference-gateway's include= also takes pricing: the gateway keeps no prices, so it is always null
# (asked for and unknown, as inference-gateway writes an unresolved key), never a 400.
INCLUDES = (*FIELDS, "pricing")
# The facts of a model no registry rule describes.
_UNKNOWN: dict[str, Any] = {name: None for name in INCLUDES}


def _included(request: Request) -> tuple[str, ...]:
    """The model facts asked for with ?include= (names, comma-separated or repeated; ``all``), in
    FIELDS order; a 400 naming the ones there are for any other."""
    asked = {n.strip() for v in request.query_params.getlist("include") for n in v.split(",") if n.strip()}
    if not asked:
        return ()
    if "all" in asked:
        return INCLUDES
    unknown = asked - set(INCLUDES)
    if unknown:
        raise InvalidRequest(
            f"Unknown include {', '.join(sorted(unknown))}; the models' facts are {', '.join(INCLUDES)} (or all).",
            param="include",
        )
    return tuple(name for name in INCLUDES if name in asked)


def _not_found(name: str) -> NotFound:
    return NotFound(
        f"The model '{ascii(name)[1:-1][:200]}' does not exist on this gateway. GET /v1/models lists the models "
        "you may use, ids as provider/model.",
        param="model",
        code="model_not_found",
        type="invalid_request_error",
    )
