"""What a model is: its context window, output limit, modalities and capabilities, as registry data.

A registry entry's ``model_info`` is a list of rules, tried in order; the first whose glob matches
the model (its name at the provider) gives its facts. A model no rule matches has none known. The
operator extends them with a registry file of their own (PROVIDERS_REGISTRY).

>>> rules = parse_facts([{"models": ["gpt-4o*"], "context_window": 128000, "capabilities": ["tools"]}], "openai")
>>> facts_for(rules, "gpt-4o-mini").document()["context_window"], facts_for(rules, "o3")
(128000, None)
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from fnmatch import translate
from typing import Any

__all__ = ["CAPABILITIES", "FIELDS", "MODALITIES", "ModelFacts", "facts_for", "parse_facts"]

# What a model's entry in /v1/models may carry, when a client asks for it (?include=).
FIELDS = ("context_window", "max_output_tokens", "modalities", "capabilities")
CAPABILITIES = ("tools", "vision", "reasoning")
MODALITIES = ("text", "image", "audio", "video", "file")


@dataclass(frozen=True, slots=True)
class ModelFacts:
    """One rule's facts; ``None`` (or empty) where the rule says nothing."""

    pattern: re.Pattern[str]
    context_window: int | None = None
    max_output_tokens: int | None = None
    input_modalities: tuple[str, ...] = ()
    output_modalities: tuple[str, ...] = ()
    capabilities: tuple[str, ...] = ()

    def document(self) -> dict[str, Any]:
        """The facts as /v1/models writes them (every field present, ``null`` when unknown)."""
        modalities = (
            {"input": list(self.input_modalities), "output": list(self.output_modalities)}
            if self.input_modalities or self.output_modalities
            else None
        )
        return {
            "context_window": self.context_window,
            "max_output_tokens": self.max_output_tokens,
            "modalities": modalities,
            "capabilities": {c: c in self.capabilities for c in CAPABILITIES},
        }


def facts_for(rules: Sequence[ModelFacts], model: str) -> ModelFacts | None:
    return next((rule for rule in rules if rule.pattern.match(model)), None)


def parse_facts(raw: Any, where: str) -> tuple[ModelFacts, ...]:
    """A registry entry's ``model_info`` list, checked; ``ValueError`` names what is wrong."""
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValueError(f"{where}: 'model_info' must be a list of rules {{models, {', '.join(FIELDS)}}}.")
    rules = []
    for index, rule in enumerate(raw):
        at = f"{where}: model_info[{index}]"
        if not isinstance(rule, dict) or set(rule) - {"models", *FIELDS}:
            raise ValueError(f"{at} must be a mapping of models and any of {', '.join(FIELDS)}.")
        models = rule.get("models")
        if not _strings(models) or not models:
            raise ValueError(f"{at}.models must be a non-empty list of glob patterns.")
        limits = [rule.get("context_window"), rule.get("max_output_tokens")]
        if any(v is not None and (type(v) is not int or v <= 0) for v in limits):
            raise ValueError(f"{at}: context_window and max_output_tokens are positive integers (tokens).")
        modalities = rule.get("modalities") or {}
        if not isinstance(modalities, dict) or set(modalities) - {"input", "output"}:
            raise ValueError(f"{at}.modalities must be a mapping of input and output lists.")
        for side in modalities.values():
            if not _strings(side) or set(side) - set(MODALITIES):
                raise ValueError(f"{at}.modalities lists are made of {', '.join(MODALITIES)}.")
        capabilities = rule.get("capabilities") or []
        if not _strings(capabilities) or set(capabilities) - set(CAPABILITIES):
            raise ValueError(f"{at}.capabilities must be a list of {', '.join(CAPABILITIES)}.")
        rules.append(
            ModelFacts(
                re.compile("|".join(f"(?:{translate(m)})" for m in models)),
                context_window=limits[0],
                max_output_tokens=limits[1],
                input_modalities=tuple(modalities.get("input", ())),
                output_modalities=tuple(modalities.get("output", ())),
                capabilities=tuple(capabilities),
            )
        )
    return tuple(rules)


def _strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(v, str) for v in value)
