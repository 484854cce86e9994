"""The provider registry: providers are data (``config/providers.yaml``), not code.

Each entry names the wire protocol its adapter speaks (``adapter``), where its API lives, how it
authenticates and how its model list reads. ``Provider`` is an entry resolved against the settings:
the URL and key actually in use.

>>> registry = load_registry()
>>> spec = registry["anthropic"]
>>> spec.auth, spec.headers["anthropic-version"]
('x-api-key', '2023-06-01')
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml

from .model_facts import ModelFacts, parse_facts
from .sampling import SamplingRule, parse_rules
from .tool_ids import ToolCallIds, parse_rule

__all__ = [
    "AUTH_TYPES",
    "ENDPOINTS",
    "Provider",
    "ProviderSpec",
    "RegistryError",
    "default_registry_path",
    "load_registry",
]

AUTH_TYPES = ("bearer", "x-api-key", "x-goog-api-key", "none")
_ID = re.compile(r"^[a-z][a-z0-9_]*$")

# The gateway's routes beyond chat and models, by the name a registry entry's ``endpoints`` uses.
# An entry lists those its provider serves, each with its path there (appended to ``url``), in
# the protocol of its adapter: an openai entry's answers are relayed, a google or cohere entry's
# are translated. /v1/messages and /v1/responses are served for every provider, through chat
# when its entry does not list them.
ENDPOINTS: Mapping[str, str] = {
    "completions": "/v1/completions",
    "embeddings": "/v1/embeddings",
    "images": "/v1/images/generations",
    "speech": "/v1/audio/speech",
    "transcriptions": "/v1/audio/transcriptions",
    "translations": "/v1/audio/translations",
    "moderations": "/v1/moderations",
    "responses": "/v1/responses",
    "messages": "/v1/messages",
}


class RegistryError(ValueError):
    """The registry file is missing or malformed; the message names the entry and field."""


@dataclass(frozen=True, slots=True)
class ProviderSpec:
    """One registry entry, as written in ``providers.yaml``."""

    id: str
    url: str
    adapter: str = "openai"
    auth: str = "bearer"
    headers: Mapping[str, str] = field(default_factory=dict)
    chat_path: str = "/chat/completions"
    models_path: str = "/models"
    models_format: str = "openai"
    # Request fields this provider rejects, removed before the call (e.g. stream_options), and
    # fields it rejects inside messages (Groq's messages[].name).
    drop_params: tuple[str, ...] = ()
    drop_message_params: tuple[str, ...] = ()
    # The most choices (n) the provider returns; a larger n is refused with a clear 400.
    max_choices: int | None = None
    # Which sampling fields each model takes (first matching rule wins), and the tool-call ids it
    # accepts; both empty for providers with no such limits.
    sampling: tuple[SamplingRule, ...] = ()
    tool_call_ids: ToolCallIds | None = None
    # The provider's name in telemetry (gen_ai.provider.name): the OpenTelemetry GenAI conventions'
    # well-known value where there is one, else the id.
    telemetry_name: str = ""
    # The endpoints (names of ``ENDPOINTS``) it serves beyond chat and models: name -> its path.
    endpoints: Mapping[str, str] = field(default_factory=dict)
    # What its models are (context window, modalities, capabilities): rules, the first matching wins.
    model_info: tuple[ModelFacts, ...] = ()
    # Where it runs (us-east, eu-west, on-prem...), lower case; a gateway with zones routes only to
    # providers in them. Empty: no zone (such a provider serves only gateways without zones).
    zone: str = ""
    docs: str = ""

    @property
    def env_prefix(self) -> str:
        return self.id.upper()

    @property
    def needs_key(self) -> bool:
        return self.auth != "none"


@dataclass(frozen=True, slots=True)
class Provider:
    """A registry entry resolved against the settings: the URL and credential in use."""

    spec: ProviderSpec
    url: str
    api_key: str | None = None
    retries: int | None = None  # <ID>_RETRIES: this provider's retries, else the gateway's UPSTREAM_RETRIES
    max_in_flight: int | None = None  # <ID>_MAX_IN_FLIGHT, else UPSTREAM_MAX_IN_FLIGHT (0: no cap)
    # One of several deployments of this provider with a URL or key of its own (an alias target's):
    # its name, else "" for the provider as the settings configure it.
    deployment: str = ""
    zone: str = ""  # <ID>_ZONE, else the entry's zone
    # Why the data plane holding it does not route to it (a gateway whose zones exclude it); a
    # withheld provider counts as not configured and is refused with this message.
    withheld: str = ""

    @property
    def id(self) -> str:
        return self.spec.id

    @property
    def name(self) -> str:
        """The upstream's own name: the id, or ``id@deployment`` (its adapter's key, its metrics label)."""
        return f"{self.spec.id}@{self.deployment}" if self.deployment else self.spec.id

    @property
    def configured(self) -> bool:
        """Usable: it has a key, or needs none, and is not withheld."""
        return (bool(self.api_key) or not self.spec.needs_key) and not self.withheld

    @property
    def origin(self) -> str:
        """scheme://host[:port] of the URL: the root the raw proxy appends paths to."""
        parts = urlsplit(self.url)
        return f"{parts.scheme}://{parts.netloc}"

    def endpoint(self, path: str) -> str:
        return self.url.rstrip("/") + path

    def serves(self, endpoint: str) -> bool:
        """Whether its registry entry lists ``endpoint`` (a name of ``ENDPOINTS``)."""
        return endpoint in self.spec.endpoints

    def endpoint_url(self, endpoint: str) -> str:
        """The URL of ``endpoint`` at this provider (it must serve it)."""
        return self.endpoint(self.spec.endpoints[endpoint])

    def auth_headers(self) -> dict[str, str]:
        """The credential and fixed headers every call to this provider carries."""
        headers = dict(self.spec.headers)
        key = self.api_key
        if key:
            auth = self.spec.auth
            if auth == "bearer":
                headers["Authorization"] = f"Bearer {key}"
            elif auth != "none":
                headers[auth] = key
        return headers

    @property
    def secrets(self) -> tuple[str, ...]:
        """The credential values the gateway sends this provider (its key, when it sends one);
        every header that carries the key contains it, and the fixed headers are not secret."""
        return (self.api_key,) if self.api_key and self.spec.needs_key else ()

    def __repr__(self) -> str:  # never print the key
        return f"Provider(name={self.name!r}, url={self.url!r}, configured={self.configured})"


def default_registry_path() -> Path:
    """The registry shipped in the wheel, else the source checkout's ``config/providers.yaml``."""
    here = Path(__file__).resolve().parent
    packaged = here / "providers.yaml"
    return packaged if packaged.exists() else here.parent / "config" / "providers.yaml"


def load_registry(path: str | Path | None = None) -> dict[str, ProviderSpec]:
    """Read and validate the registry; entries keep the file's order."""
    path = Path(path) if path is not None else default_registry_path()
    try:
        document = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise RegistryError(f"Cannot read the provider registry {path}: {exc}") from exc
    entries = document.get("providers") if isinstance(document, dict) else None
    if not isinstance(entries, dict) or not entries:
        raise RegistryError(f"{path}: expected a non-empty 'providers' mapping.")
    return {pid: _spec(str(pid), entry, path) for pid, entry in entries.items()}


def _spec(pid: str, entry: Any, path: Path) -> ProviderSpec:
    where = f"{path}: provider '{pid}'"
    if not _ID.match(pid):
        raise RegistryError(f"{where}: ids are lowercase letters, digits and underscores.")
    if not isinstance(entry, dict):
        raise RegistryError(f"{where}: expected a mapping.")
    known = {
        "url",
        "adapter",
        "auth",
        "headers",
        "chat",
        "models",
        "drop_params",
        "drop_message_params",
        "max_choices",
        "sampling",
        "tool_call_ids",
        "telemetry_name",
        "endpoints",
        "model_info",
        "zone",
        "docs",
    }
    unknown = set(entry) - known
    if unknown:
        raise RegistryError(f"{where}: unknown field(s) {sorted(unknown)}; known: {sorted(known)}.")
    url = entry.get("url")
    if not isinstance(url, str) or not urlsplit(url).scheme.startswith("http"):
        raise RegistryError(f"{where}: 'url' must be an http(s) URL.")
    auth = entry.get("auth", "bearer")
    if auth not in AUTH_TYPES:
        raise RegistryError(f"{where}: 'auth' must be one of {', '.join(AUTH_TYPES)}.")
    models = entry.get("models") or {}
    headers = entry.get("headers") or {}
    if not isinstance(models, dict) or not isinstance(headers, dict):
        raise RegistryError(f"{where}: 'models' and 'headers' must be mappings.")
    # Imported here: both modules import this one.
    from . import ADAPTERS
    from .model_lists import FORMATS

    adapter = str(entry.get("adapter", "openai"))
    if adapter not in ADAPTERS:
        raise RegistryError(f"{where}: 'adapter' must be one of {', '.join(ADAPTERS)}.")
    models_format = str(models.get("format", "openai"))
    if models_format not in FORMATS:
        raise RegistryError(f"{where}: 'models.format' must be one of {', '.join(FORMATS)}.")
    endpoints = entry.get("endpoints") or {}
    if not isinstance(endpoints, dict):
        raise RegistryError(f"{where}: 'endpoints' must be a mapping of endpoint name to path.")
    for name, endpoint_path in endpoints.items():
        if name not in ENDPOINTS:
            raise RegistryError(f"{where}: unknown endpoint {name!r} in 'endpoints'; known: {', '.join(ENDPOINTS)}.")
        if not isinstance(endpoint_path, str) or not endpoint_path.startswith("/"):
            raise RegistryError(f"{where}: 'endpoints.{name}' must be a path starting with '/'.")
    try:
        sampling = parse_rules(entry.get("sampling"), where)
        tool_call_ids = parse_rule(entry.get("tool_call_ids"), where)
        model_info = parse_facts(entry.get("model_info"), where)
    except ValueError as exc:
        raise RegistryError(str(exc)) from None
    return ProviderSpec(
        id=pid,
        url=url,
        adapter=adapter,
        auth=auth,
        headers={str(k): str(v) for k, v in headers.items()},
        chat_path=str(entry.get("chat", "/chat/completions")),
        models_path=str(models.get("path", "/models")),
        models_format=models_format,
        drop_params=tuple(entry.get("drop_params") or ()),
        drop_message_params=tuple(entry.get("drop_message_params") or ()),
        max_choices=entry.get("max_choices"),
        sampling=sampling,
        tool_call_ids=tool_call_ids,
        telemetry_name=str(entry.get("telemetry_name") or pid),
        endpoints=dict(endpoints),
        model_info=model_info,
        zone=str(entry.get("zone") or "").strip().lower(),
        docs=str(entry.get("docs", "")),
    )
