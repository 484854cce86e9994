"""Which models a caller may use: ALLOWED_MODELS / DISALLOWED_MODELS, and per-key model lists.

An entry matches a model named in full (``openai/gpt-4o``) or bare (``gpt-4o``, any provider),
case-insensitively. A non-empty allow list is the whole truth (it wins over the deny list);
otherwise everything not denied is allowed. A key's own list narrows that further.

>>> policy = ModelPolicy(allowed=("openai/gpt-4o", "llama-3"), disallowed=())
>>> policy.allows("openai", "GPT-4o"), policy.allows("groq", "llama-3"), policy.allows("openai", "o3")
(True, True, False)
"""

from __future__ import annotations

from collections.abc import Iterable

from providers.errors import PermissionDenied

from .auth import Identity

__all__ = ["ModelPolicy"]


def _names(entries: Iterable[str]) -> frozenset[str]:
    return frozenset(entry.strip().lower() for entry in entries if entry.strip())


def _listed(names: frozenset[str], provider: str, model: str) -> bool:
    model = model.lower()
    return model in names or f"{provider}/{model}" in names


class ModelPolicy:
    def __init__(self, allowed: Iterable[str], disallowed: Iterable[str]) -> None:
        self.allowed = _names(allowed)
        self.disallowed = _names(disallowed)

    def allows(self, provider: str, model: str, identity: Identity | None = None) -> bool:
        if self.allowed:
            if not _listed(self.allowed, provider, model):
                return False
        elif _listed(self.disallowed, provider, model):
            return False
        return identity is None or not identity.models or _listed(_names(identity.models), provider, model)

    def check(self, provider: str, model: str, identity: Identity | None) -> None:
        """Raise 403 when the model is not allowed to this caller."""
        if self.allows(provider, model, identity):
            return
        if identity is not None and identity.models and self.allows(provider, model):
            message = f"The key '{identity.subject}' may not use the model '{provider}/{model}'."
        else:
            message = f"The model '{provider}/{model}' is not allowed on this gateway."
        raise PermissionDenied(
            f"{message} GET /v1/models lists the models you may use.", param="model", code="model_not_allowed"
        )
