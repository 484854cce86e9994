"""The limits a deployment configures, and the counters one request is held to.

A ``Limit`` is up to four numbers: requests and tokens per minute, concurrent requests, tokens per
day (a quota, reset at midnight UTC). ``Rules`` holds where they apply: ``default`` (every caller,
each with counters of its own), ``identities`` (one caller, by key name, token subject or the
configured claim's value; its fields replace the default's, ``null`` lifts one), ``models`` (a
model or alias, or ``<provider>/*`` for every request to a provider, ``/proxy`` included, shared
by every caller) and ``global`` (the whole gateway).

    rules = parse_limits('{"default": {"requests_per_minute": 60}, "models": {"fast": {"tokens_per_minute": 1000}}}')
    counters = rules.counters("alice", ("fast", "groq/llama-3.3-70b-versatile"))

This module knows no backend and no request: ``Counter`` names what a backend counts.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import yaml

__all__ = ["FIELDS", "Counter", "Limit", "Rules", "parse_limits"]

MINUTE, DAY = 60.0, 86400.0

# The YAML field of each number, and how the backend counts it: (kind, measure, period).
FIELDS = {
    "requests_per_minute": ("rate", "requests", MINUTE),
    "tokens_per_minute": ("rate", "tokens", MINUTE),
    "concurrent_requests": ("concurrency", "requests", 0.0),
    "tokens_per_day": ("quota", "tokens", DAY),
}


@dataclass(frozen=True, slots=True)
class Counter:
    """One number a request is held to: a token bucket (``rate``), a daily sum (``quota``) or a count
    of requests in flight (``concurrency``), under ``key``, shared by every request with that key."""

    key: str
    kind: str
    measure: str  # requests or tokens: what one admission costs
    limit: int
    period: float  # seconds; 0 for concurrency
    name: str  # the YAML field, for messages


@dataclass(frozen=True, slots=True)
class Limit:
    values: Mapping[str, int | None] = field(default_factory=dict)

    def over(self, base: Limit) -> Limit:
        """This limit's fields on top of ``base``'s (a ``None`` field lifts the base's)."""
        return Limit({**base.values, **self.values})

    def counters(self, scope: str) -> tuple[Counter, ...]:
        found = []
        for name, value in self.values.items():
            if value is not None:
                kind, measure, period = FIELDS[name]
                found.append(Counter(f"{scope}:{name}", kind, measure, value, period, name))
        return tuple(found)


@dataclass(frozen=True)
class Rules:
    default: Limit = field(default_factory=Limit)
    identities: Mapping[str, Limit] = field(default_factory=dict)
    models: Mapping[str, Limit] = field(default_factory=dict)
    global_: Limit = field(default_factory=Limit)

    def __bool__(self) -> bool:
        limits = (self.default, self.global_, *self.identities.values(), *self.models.values())
        return any(v is not None for limit in limits for v in limit.values.values())

    def counters(self, identity: str, models: tuple[str, ...]) -> tuple[Counter, ...]:
        """Every counter a request of ``identity`` to any of ``models`` (the name asked, the
        provider/model it resolved to, and ``<provider>/*``) is held to."""
        own = self.identities.get(identity)
        limit = own.over(self.default) if own is not None else self.default
        found = [*limit.counters(f"id:{identity}"), *self.global_.counters("global")]
        for model in dict.fromkeys(models):  # an alias and its target may both have rules
            rule = self.models.get(model)
            if rule is not None:
                found += rule.counters(f"model:{model}")
        return tuple(found)


def parse_limits(text: str) -> Rules:
    """The ``LIMITS`` setting: the config file's ``limits:`` block as JSON (or YAML) text."""
    if not text.strip():
        return Rules()
    try:
        document = json.loads(text)
    except json.JSONDecodeError:
        try:
            document = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ValueError(f"expected a JSON or YAML mapping ({exc})") from None
    if not isinstance(document, dict):
        raise ValueError("expected a mapping with default, identities, models and/or global")
    unknown = set(document) - {"default", "identities", "models", "global"}
    if unknown:
        raise ValueError(f"unknown key {sorted(unknown)[0]!r}; use default, identities, models or global")
    return Rules(
        default=_limit(document.get("default"), "default"),
        identities=_named(document.get("identities"), "identities"),
        models=_named(document.get("models"), "models"),
        global_=_limit(document.get("global"), "global"),
    )


def _named(section: Any, where: str) -> dict[str, Limit]:
    if section is None:
        return {}
    if not isinstance(section, dict):
        raise ValueError(f"{where} must map names to limits")
    return {str(name): _limit(value, f"{where}.{name}") for name, value in section.items()}


def _limit(section: Any, where: str) -> Limit:
    if section is None:
        return Limit()
    if not isinstance(section, dict):
        raise ValueError(f"{where} must be a mapping of {', '.join(FIELDS)}")
    values: dict[str, int | None] = {}
    for name, value in section.items():
        if name not in FIELDS:
            raise ValueError(f"{where}.{name} is unknown; use {', '.join(FIELDS)}")
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ValueError(f"{where}.{name} must be a whole number of 1 or more, or null to lift it")
        values[name] = value
    return Limit(values)
