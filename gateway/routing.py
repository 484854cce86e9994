"""Which provider serves a request: ``provider/model`` in the model name, or ``?provider=``.

>>> from gateway.settings import Settings
>>> providers = Settings.load({"OPENAI_API_KEY": "k"}).providers
>>> resolve("openai/gpt-4o", None, providers)[1]
'gpt-4o'
"""

from __future__ import annotations

from collections.abc import Mapping

from providers.errors import InvalidRequest
from providers.registry import Provider

__all__ = ["provider_by_id", "resolve"]

_HOW = "Name the model as provider/model (for example openai/gpt-4o) or pass ?provider=<id>."


def provider_by_id(pid: str, providers: Mapping[str, Provider], *, param: str = "provider") -> Provider:
    """A known and configured provider, or a 400 that says how to fix the request or the gateway."""
    provider = providers.get(pid)
    if provider is None:
        raise InvalidRequest(
            f"Unknown provider '{pid}'. Known providers: {', '.join(sorted(providers))}.",
            param=param,
            code="unknown_provider",
        )
    if not provider.configured:
        raise InvalidRequest(
            f"Provider '{pid}' is not configured: set {provider.spec.env_prefix}_API_KEY on the gateway.",
            param=param,
            code="provider_not_configured",
        )
    return provider


def resolve(model: str, provider_param: str | None, providers: Mapping[str, Provider]) -> tuple[Provider, str]:
    """The provider and the provider's own model name (prefix removed)."""
    if provider_param:
        provider = provider_by_id(provider_param, providers)
        return provider, model.removeprefix(f"{provider.id}/")
    prefix, slash, name = model.partition("/")
    if not slash or not name:
        raise InvalidRequest(f"The model '{model}' names no provider. {_HOW}", param="model", code="unknown_provider")
    if prefix not in providers:
        raise InvalidRequest(
            f"The model '{model}' names an unknown provider '{prefix}'. {_HOW} "
            f"Known providers: {', '.join(sorted(providers))}.",
            param="model",
            code="unknown_provider",
        )
    return provider_by_id(prefix, providers, param="model"), name
