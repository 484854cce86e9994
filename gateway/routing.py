"""Which provider serves a request: ``provider/model`` in the model name, or ``?provider=``.

A model name is trimmed and checked before anything else looks at it: empty segments, whitespace,
control, format (zero-width, bidi) and other invisible characters, and ``.``/``..`` segments are
refused with 400 ``invalid_model`` instead of being matched against the policy or forwarded. The
provider prefix is matched case-insensitively; the model part keeps its case.

>>> from gateway.settings import Settings
>>> providers = Settings.load({"OPENAI_API_KEY": "k"}).providers
>>> resolve(" OpenAI/gpt-4o ", None, providers)[1]
'gpt-4o'
>>> model_name_problem("openai//gpt-4o")
'it has an empty segment'
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import TYPE_CHECKING

from providers.errors import InvalidRequest
from providers.registry import ENDPOINTS, Provider
from providers.retry import retry_count

from .telemetry.exchange import current

if TYPE_CHECKING:
    from .aliases import Aliases

__all__ = ["model_name", "model_name_problem", "provider_by_id", "require_endpoint", "resolve"]

_HOW = "Name the model as provider/model (for example openai/gpt-4o) or pass ?provider=<id>."

# Printable characters that still show nothing (default-ignorable or blank): str.isprintable()
# already refuses controls, format characters (Cf), separators, surrogates, private use, unassigned.
_INVISIBLE = re.compile(
    "[\u034f\u115f\u1160\u17b4\u17b5\u180b-\u180f\u2800\u3164\ufe00-\ufe0f\uffa0\U000e0100-\U000e01ef]"
)
# Would change the meaning of a URL for providers that put the model in the path (Gemini, Azure).
_URL_SIGNIFICANT = re.compile(r"[?#%\\]")


def model_name_problem(name: str) -> str | None:
    """Why a (trimmed) model name is malformed, or ``None``; names like ``@cf/meta/llama-3.1-8b``,
    ``llama3.2:latest`` or ``accounts/fireworks/models/x`` are fine."""
    if not name:
        return "it is empty"
    if " " in name or not name.isprintable():
        return "it contains whitespace, a control character or an invisible (format) character"
    if _INVISIBLE.search(name):
        return "it contains an invisible character"
    if _URL_SIGNIFICANT.search(name):
        return "it contains one of the characters ? # % \\"
    segments = name.split("/")
    if "" in segments:
        return "it has an empty segment"
    if "." in segments or ".." in segments:
        return "it has a '.' or '..' segment"
    return None


# Names found well-formed, so a name asked again (most are) is checked once; bounded.
_WELL_FORMED: set[str] = set()
_REMEMBERED = 4096


def model_name(raw: str, *, param: str = "model") -> str:
    """The name trimmed of surrounding whitespace, or a 400 saying what is wrong with it."""
    name = raw.strip()
    if name in _WELL_FORMED:
        return name
    problem = model_name_problem(name)
    if problem is None:
        if len(_WELL_FORMED) >= _REMEMBERED:
            _WELL_FORMED.clear()
        _WELL_FORMED.add(name)
        return name
    shown = ascii(raw)[1:-1][:200]  # invisible characters shown escaped, and never too much of it
    raise InvalidRequest(
        f"The {param} '{shown}' is not a valid name: {problem}. {_HOW}", param=param, code="invalid_model"
    )


def provider_by_id(pid: str, providers: Mapping[str, Provider], *, param: str = "provider") -> Provider:
    """A known and configured provider, or a 400 that says how to fix the request or the gateway."""
    provider = providers.get(pid)
    if provider is None:
        raise InvalidRequest(
            f"Unknown provider '{ascii(pid)[1:-1][:200]}'. Known providers: {', '.join(sorted(providers))}.",
            param=param,
            code="unknown_provider",
        )
    if provider.withheld:
        raise InvalidRequest(provider.withheld, param=param, code="provider_outside_zones")
    if not provider.configured:
        raise InvalidRequest(
            f"Provider '{pid}' is not configured: set {provider.spec.env_prefix}_API_KEY on the gateway.",
            param=param,
            code="provider_not_configured",
        )
    return provider


def resolve(
    model: str, provider_param: str | None, providers: Mapping[str, Provider], aliases: Aliases | None = None
) -> tuple[Provider, str]:
    """The provider and the provider's own model name (trimmed, provider prefix removed); an alias
    of the routing file names its next deployment (its own ``Provider`` when it has its own URL or
    key), reported on the answer's X-Selected-* headers."""
    name = model_name(model)
    if aliases and not provider_param and name in aliases:
        alias = aliases[name]
        target = alias.pick()
        current().selected = (target.upstream, target.model)
        withheld = providers[target.provider].withheld  # a gateway's zones leave it (and its deployments) out
        if withheld:
            raise InvalidRequest(withheld, param="model", code="provider_outside_zones")
        if alias.retries is not None:  # the alias's calls are retried as it says, not as their provider's
            retry_count.set(alias.retries)
        return aliases.upstream(target, providers), target.model
    prefix, slash, rest = name.partition("/")
    if provider_param:
        provider = provider_by_id(model_name(provider_param, param="provider").lower(), providers)
        return provider, rest if slash and prefix.lower() == provider.id else name
    if not slash:
        raise InvalidRequest(f"The model '{name}' names no provider. {_HOW}", param="model", code="unknown_provider")
    pid = prefix.lower()
    if pid not in providers:
        raise InvalidRequest(
            f"The model '{name}' names an unknown provider '{prefix}'. {_HOW} "
            f"Known providers: {', '.join(sorted(providers))}.",
            param="model",
            code="unknown_provider",
        )
    return provider_by_id(pid, providers, param="model"), rest


def require_endpoint(provider: Provider, endpoint: str, providers: Mapping[str, Provider]) -> None:
    """A 400 unless ``provider`` serves ``endpoint`` (a name of ``providers.registry.ENDPOINTS``),
    naming the configured providers that do."""
    if provider.serves(endpoint):
        return
    others = sorted(p.id for p in providers.values() if p.configured and p.serves(endpoint))
    route = ENDPOINTS[endpoint]
    where = (
        f"Providers configured here that serve it: {', '.join(others)}."
        if others
        else ("No provider configured on this gateway serves it.")
    )
    raise InvalidRequest(
        f"Provider '{provider.id}' does not serve {route}. {where}",
        param="model",
        code="endpoint_not_supported",
    )
