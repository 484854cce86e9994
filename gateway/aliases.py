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
policy applies to the deployment chosen, as to a model named directly. When a deployment fails
before the client got a byte (after its own retries), the alias's next ones are tried in order;
one that fails ``ejection.failures`` times within ``ejection.window`` seconds is left out for
``ejection.cooldown`` seconds, then given one request (half-open): a success takes it back, a
failure leaves it out for another cool-down. ``ejection`` is polyrelay's key in the file.

polyrelay's other keys: a deployment's ``weight``; an alias's ``retries`` (its calls' retries,
over the provider's); and a deployment's own ``api_url`` and key (``api_key_env``, the variable
holding it, or ``api_key``) under a ``name``: several keys, regions or replicas of one provider,
each its own upstream (``Provider`` named ``provider@name``) with its own adapter and health.

          - {provider: vllm, model: llama, name: a, api_url: "http://10.0.0.1:8000/v1"}
          - {provider: azure, model: gpt-4o, name: eu, api_url: "https://eu.example/v1", api_key_env: AZURE_EU_KEY}

    aliases = Aliases.load("/etc/polyrelay/routing.yaml", settings.providers)
    alias = aliases["fast"]
    target = alias.pick()                # Target(provider="groq", model="llama-3.3-70b-versatile")
    alias.failed(target); alias.fallbacks(target)   # the others, healthy ones first
    provider = aliases.upstream(target, settings.providers)   # its deployment's own, or the provider
"""

from __future__ import annotations

import itertools
import logging
import re
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from providers.registry import Provider

from .routing import model_name_problem

__all__ = ["STRATEGIES", "Alias", "AliasError", "Aliases", "Ejection", "Target"]

log = logging.getLogger("polyrelay")

# round_robin: in turn (by weight); priority: the first healthy in the file's order (the others
# are its fallbacks); lowest_latency: the healthy one answering fastest lately (EWMA of the time to
# its answer or first event; one not measured yet goes first); least_in_flight: the healthy one with
# the fewest requests under way (streams count until they end).
STRATEGIES = ("round_robin", "priority", "lowest_latency", "least_in_flight")
_EWMA = 0.3  # the weight of the newest latency
_DEPLOYMENT = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,62}$")
_OWN = ("api_url", "url", "api_key", "api_key_env")  # a deployment's own upstream
_FIELDS = frozenset({"provider", "model", "weight", "name", *_OWN})


class AliasError(ValueError):
    """The routing file is missing or malformed; the message names the alias and field."""


@dataclass(frozen=True, slots=True)
class Target:
    provider: str  # the registry id (what the model policy and the limits name)
    model: str
    deployment: str = ""  # the name of its own URL or key, if it has one

    @property
    def upstream(self) -> str:
        """Which upstream serves it: the provider's id, or ``id@deployment`` (as ``Provider.name``)."""
        return f"{self.provider}@{self.deployment}" if self.deployment else self.provider


@dataclass(frozen=True, slots=True)
class Ejection:
    failures: int = 3  # failures within ``window`` seconds take a deployment out...
    window: float = 30.0
    cooldown: float = 30.0  # ...for this long


class _Health:
    __slots__ = ("failures", "in_flight", "latency", "out_until", "probing")

    def __init__(self) -> None:
        self.failures: list[float] = []  # monotonic times of recent failures
        self.out_until = 0.0  # ejected until then
        self.probing = False  # its half-open request is in flight
        self.latency: float | None = None  # EWMA of its answers' latency, seconds
        self.in_flight = 0


def _smooth_turns(targets: tuple[Target, ...], weights: tuple[int, ...]) -> list[Target]:
    """One cycle of smooth weighted round robin: weights 3 and 1 give A A B A, not A A A B."""
    current = [0] * len(targets)
    total = sum(weights)
    turns = []
    for _ in range(total):
        current = [c + w for c, w in zip(current, weights, strict=True)]
        best = max(range(len(targets)), key=lambda i: current[i])
        current[best] -= total
        turns.append(targets[best])
    return turns


class Alias:
    def __init__(
        self,
        name: str,
        strategy: str,
        targets: tuple[Target, ...],
        ejection: Ejection = Ejection(),
        weights: tuple[int, ...] | None = None,
        retries: int | None = None,
    ) -> None:
        self.name = name
        self.retries = retries  # its calls' retries, over the provider's; None: the provider's
        self.strategy = strategy
        self.targets = targets
        self.ejection = ejection
        self.weights = weights or (1,) * len(targets)
        self._turns = itertools.cycle(_smooth_turns(targets, self.weights))
        self._health = {target: _Health() for target in targets}

    def pick(self) -> Target:
        """The deployment that serves the next request, by the strategy, among those not ejected
        (one event loop: no lock needed). When all are out, the one back soonest."""
        now = time.monotonic()
        if self.strategy == "priority":
            found = next((t for t in self.targets if self._usable(t, now)), None)
        elif self.strategy in ("lowest_latency", "least_in_flight"):
            usable = [t for t in self.targets if self._usable(t, now, probe=False)]
            key = self._latency if self.strategy == "lowest_latency" else self._in_flight
            found = min(usable, key=key) if usable else None
            if found is not None:
                self._usable(found, now)  # a cooled-down one chosen is its probe
        else:
            found = next(
                (t for t in (next(self._turns) for _ in range(sum(self.weights))) if self._usable(t, now)), None
            )
        return found or min(self.targets, key=lambda t: self._health[t].out_until)

    def _in_flight(self, target: Target) -> int:
        return self._health[target].in_flight

    def begin(self, target: Target) -> None:
        """A request to ``target`` is under way (until ``end``)."""
        self._health[target].in_flight += 1

    def end(self, target: Target) -> None:
        self._health[target].in_flight -= 1

    def _latency(self, target: Target) -> float:
        measured = self._health[target].latency
        return -1.0 if measured is None else measured  # not measured yet: tried first

    def fallbacks(self, first: Target) -> list[Target]:
        """The deployments to try after ``first`` failed: the file's order from it (priority: from
        the top); ejected ones are left out."""
        at = self.targets.index(first)
        now = time.monotonic()
        order = self.targets if self.strategy == "priority" else self.targets[at + 1 :] + self.targets[:at]
        return [t for t in order if t != first and self._usable(t, now)]

    def _usable(self, target: Target, now: float, probe: bool = True) -> bool:
        health = self._health[target]
        if health.out_until <= 0:
            return True
        if now < health.out_until or health.probing:
            return False
        if probe:
            health.probing = True  # the cool-down is over: this request is its probe
        return True

    def succeeded(self, target: Target, latency: float | None = None) -> None:
        health = self._health[target]
        health.failures.clear()
        health.out_until, health.probing = 0.0, False
        if latency is not None:
            health.latency = latency if health.latency is None else (1 - _EWMA) * health.latency + _EWMA * latency

    def failed(self, target: Target) -> None:
        health, rule, now = self._health[target], self.ejection, time.monotonic()
        if health.probing:  # the half-open probe failed: out for another cool-down
            health.probing, health.out_until = False, now + rule.cooldown
            return
        health.failures = [t for t in health.failures if now - t < rule.window] + [now]
        if len(health.failures) >= rule.failures:
            health.failures.clear()
            health.out_until = now + rule.cooldown
            log.warning(
                "alias %s: %s/%s failed %d times within %gs; left out for %gs",
                self.name,
                target.upstream,
                target.model,
                rule.failures,
                rule.window,
                rule.cooldown,
            )

    def states(self) -> dict[str, str]:
        """Each deployment's state, for /ready: ok, ejected, or probing."""
        now = time.monotonic()
        states = {}
        for target, health in self._health.items():
            out = health.out_until > now
            states[f"{target.upstream}/{target.model}"] = "ejected" if out else "probing" if health.probing else "ok"
        return states


class Aliases(Mapping[str, Alias]):
    """The routing file's aliases, and the deployments with their own URL or key (by ``name``)."""

    def __init__(
        self, aliases: Mapping[str, Alias] | None = None, upstreams: Mapping[str, Provider] | None = None
    ) -> None:
        self._aliases = dict(aliases or {})
        self.upstreams = dict(upstreams or {})  # Provider.name -> the deployment's own Provider

    def upstream(self, target: Target, providers: Mapping[str, Provider]) -> Provider:
        """The provider that serves ``target``: its deployment's own, or the settings' one."""
        return self.upstreams[target.upstream] if target.deployment else providers[target.provider]

    @property
    def retried(self) -> bool:
        """Whether an alias sets its own retries (a provider without retries may then need them)."""
        return any(alias.retries for alias in self._aliases.values())

    def __getitem__(self, name: str) -> Alias:
        return self._aliases[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._aliases)

    def __len__(self) -> int:
        return len(self._aliases)

    @classmethod
    def load(
        cls, path: str | Path, providers: Mapping[str, Provider], environ: Mapping[str, str] | None = None
    ) -> Aliases:
        """Read the file; ``environ`` holds the variables its ``api_key_env`` name."""
        try:
            document = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise AliasError(f"ROUTING_CONFIG_PATH: cannot read {path}: {exc}") from exc
        models = document.get("models") if isinstance(document, dict) else None
        return cls.parse(models, providers, environ, f"ROUTING_CONFIG_PATH={path}")

    @classmethod
    def parse(
        cls, models: Any, providers: Mapping[str, Provider], environ: Mapping[str, str] | None, source: str
    ) -> Aliases:
        """The aliases of a ``models`` mapping (the routing file's, or the config file's
        ``routing.models``); ``source`` names where it came from in errors."""
        if not isinstance(models, dict) or not models:
            raise AliasError(f"{source}: expected a non-empty 'models' mapping of aliases.")
        upstreams: dict[str, Provider] = {}
        aliases = {
            str(name): _alias(str(name), entry, providers, source, environ or {}, upstreams)
            for name, entry in models.items()
        }
        return cls(aliases, upstreams)


def _alias(
    name: str,
    entry: Any,
    providers: Mapping[str, Provider],
    source: str,
    environ: Mapping[str, str],
    upstreams: dict[str, Provider],
) -> Alias:
    where = f"{source}: alias '{name}'"
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
    targets, weights = [], []
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
        unknown = sorted(set(deployment) - _FIELDS)
        if unknown:
            raise AliasError(f"{where}: deployments[{index}] has unknown field(s) {unknown}; known: {sorted(_FIELDS)}.")
        own = _deployment(deployment, provider, f"{where}: deployments[{index}]", environ, upstreams)
        if own is None and not provider.configured:
            raise AliasError(
                f"{where}: deployments[{index}] uses provider '{pid}', which is not configured "
                f"(set {provider.spec.env_prefix}_API_KEY, or give the deployment its own api_key_env)."
            )
        weight = deployment.get("weight", 1)
        if type(weight) is not int or weight < 1:
            raise AliasError(f"{where}: deployments[{index}].weight must be a whole number of at least 1.")
        targets.append(Target(pid, model.strip(), own.deployment if own else ""))
        weights.append(weight)
    if len(set(targets)) != len(targets):
        raise AliasError(f"{where}: a deployment is listed twice.")
    retries = entry.get("retries")
    if retries is not None and (type(retries) is not int or retries < 0):
        raise AliasError(f"{where}: 'retries' must be a whole number, 0 (no retries) or more.")
    return Alias(name, str(strategy), tuple(targets), _ejection(entry.get("ejection"), where), tuple(weights), retries)


def _deployment(
    entry: dict[str, Any], provider: Provider, where: str, environ: Mapping[str, str], upstreams: dict[str, Provider]
) -> Provider | None:
    """The deployment's own upstream (its URL and key over the provider's), or ``None`` when it
    has none. One named in several places is defined once; later mentions may name it alone."""
    raw_name = entry.get("name")
    given = [k for k in _OWN if entry.get(k) is not None]
    if raw_name is None:
        if given:
            raise AliasError(f"{where}: a deployment with its own {given[0]} needs a 'name' (for example eu-west).")
        return None
    deployment = str(raw_name)
    if not _DEPLOYMENT.match(deployment):
        raise AliasError(
            f"{where}.name '{ascii(deployment)[1:-1][:64]}' must be lowercase letters, digits, '.', '_' or '-' "
            "(up to 63, starting with a letter or digit)."
        )
    named = f"{provider.id}@{deployment}"
    if not given:
        if named not in upstreams:
            raise AliasError(
                f"{where}: the deployment '{named}' has no api_url or key of its own anywhere in the file."
            )
        return upstreams[named]
    if "api_url" in given and "url" in given:
        raise AliasError(f"{where}: give 'api_url' or 'url', not both.")
    if "api_key" in given and "api_key_env" in given:
        raise AliasError(f"{where}: give 'api_key_env' (the variable holding the key) or 'api_key', not both.")
    url = str(entry.get("api_url") or entry.get("url") or provider.url)
    if not url.startswith(("http://", "https://")) or "{" in url:
        raise AliasError(f"{where}.api_url must be an http(s) URL without placeholders.")
    key = provider.api_key
    if "api_key_env" in given:
        variable = str(entry["api_key_env"])
        key = environ.get(variable) or None
        if key is None:
            raise AliasError(f"{where}.api_key_env names {variable}, which is not set (or empty).")
    elif "api_key" in given:
        key = str(entry["api_key"]) or None
    if key is None and provider.spec.needs_key:
        raise AliasError(
            f"{where}: provider '{provider.id}' needs a key: give the deployment api_key_env, "
            f"or set {provider.spec.env_prefix}_API_KEY."
        )
    own = Provider(
        provider.spec,
        url=url,
        api_key=key,
        retries=provider.retries,
        max_in_flight=provider.max_in_flight,
        zone=provider.zone,
        deployment=deployment,
    )
    known = upstreams.setdefault(named, own)
    if known.url != own.url or known.api_key != own.api_key:
        raise AliasError(f"{where}: the deployment '{named}' is defined twice, with another URL or key.")
    return known


def _ejection(entry: Any, where: str) -> Ejection:
    if entry is None:
        return Ejection()
    if not isinstance(entry, dict) or set(entry) - {"failures", "window", "cooldown"}:
        raise AliasError(f"{where}: 'ejection' takes failures, window and cooldown (seconds).")
    try:
        rule = Ejection(**{k: type(getattr(Ejection(), k))(v) for k, v in entry.items()})
    except (TypeError, ValueError):
        raise AliasError(f"{where}: 'ejection' values must be numbers.") from None
    if rule.failures < 1 or rule.window <= 0 or rule.cooldown <= 0:
        raise AliasError(f"{where}: 'ejection' needs failures >= 1 and a positive window and cooldown.")
    return rule
