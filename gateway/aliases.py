"""Model aliases: inference-gateway's routing file (ROUTING_ENABLED, ROUTING_CONFIG_PATH).

The file names aliases, each served by a list of deployments, read as inference-gateway writes it:

    models:
      fast:
        strategy: round_robin
        deployments:
          - {provider: groq, model: llama-3.3-70b-versatile}
          - {provider: openai, model: gpt-4o-mini}

A request for ``"model": "fast"`` goes to the next deployment in turn; the answer says which in
``X-Selected-Provider`` and ``X-Selected-Model``. Aliases are listed by ``/v1/models``; the model
policy applies to the deployment chosen, as to a model named directly.

    aliases = Aliases.load("/etc/polyrelay/routing.yaml", settings.providers)
    target = aliases["fast"].pick()      # Target(provider="groq", model="llama-3.3-70b-versatile")
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from providers.registry import Provider

from .routing import model_name_problem

__all__ = ["STRATEGIES", "Alias", "AliasError", "Aliases", "Target"]

STRATEGIES = ("round_robin",)


class AliasError(ValueError):
    """The routing file is missing or malformed; the message names the alias and field."""


@dataclass(frozen=True, slots=True)
class Target:
    provider: str
    model: str


class Alias:
    def __init__(self, name: str, strategy: str, targets: tuple[Target, ...]) -> None:
        self.name = name
        self.strategy = strategy
        self.targets = targets
        self._turns = itertools.cycle(targets)

    def pick(self) -> Target:
        """The deployment that serves the next request (in turn: one event loop, no lock needed)."""
        return next(self._turns)


class Aliases(Mapping[str, Alias]):
    def __init__(self, aliases: Mapping[str, Alias] | None = None) -> None:
        self._aliases = dict(aliases or {})

    def __getitem__(self, name: str) -> Alias:
        return self._aliases[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._aliases)

    def __len__(self) -> int:
        return len(self._aliases)

    @classmethod
    def load(cls, path: str | Path, providers: Mapping[str, Provider]) -> Aliases:
        try:
            document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise AliasError(f"ROUTING_CONFIG_PATH: cannot read {path}: {exc}") from exc
        models = document.get("models") if isinstance(document, dict) else None
        if not isinstance(models, dict) or not models:
            raise AliasError(f"ROUTING_CONFIG_PATH={path}: expected a non-empty 'models' mapping of aliases.")
        return cls({str(name): _alias(str(name), entry, providers, path) for name, entry in models.items()})


def _alias(name: str, entry: Any, providers: Mapping[str, Provider], path: str | Path) -> Alias:
    where = f"ROUTING_CONFIG_PATH={path}: alias '{name}'"
    if not name or "/" in name or name != name.strip():
        raise AliasError(f"{where}: an alias is a plain name, without '/' or surrounding spaces.")
    if not isinstance(entry, dict):
        raise AliasError(f"{where}: expected a mapping with 'strategy' and 'deployments'.")
    strategy = entry.get("strategy", "round_robin")
    if strategy not in STRATEGIES:
        raise AliasError(f"{where}: strategy '{strategy}' is not supported; supported: {', '.join(STRATEGIES)}.")
    deployments = entry.get("deployments")
    if not isinstance(deployments, list) or not deployments:
        raise AliasError(f"{where}: 'deployments' must be a non-empty list of {{provider, model}}.")
    targets = []
    for index, deployment in enumerate(deployments):
        if not isinstance(deployment, dict):
            raise AliasError(f"{where}: deployments[{index}] must be a mapping with 'provider' and 'model'.")
        pid, model = str(deployment.get("provider") or "").strip().lower(), deployment.get("model")
        if not isinstance(model, str) or (problem := model_name_problem(model.strip())) is not None:
            raise AliasError(f"{where}: deployments[{index}].model must be a model name ({problem or 'not a string'}).")
        provider = providers.get(pid)
        if provider is None:
            known = ", ".join(sorted(providers))
            raise AliasError(f"{where}: deployments[{index}].provider '{pid}' is unknown; known: {known}.")
        if not provider.configured:
            raise AliasError(
                f"{where}: deployments[{index}] uses provider '{pid}', which is not configured "
                f"(set {provider.spec.env_prefix}_API_KEY)."
            )
        targets.append(Target(pid, model.strip()))
    return Alias(name, str(strategy), tuple(targets))
