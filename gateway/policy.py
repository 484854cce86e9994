"""Which models a caller may use: ALLOWED_MODELS / DISALLOWED_MODELS, and per-key model lists.

An entry whose first segment is a provider id (``openai/gpt-4o``) matches that model at that
provider only; any other entry (``gpt-4o``, ``meta-llama/Llama-3`` whose first segment is no
provider) is a bare model name and matches that model at every provider. Entries and requests are
compared trimmed and case-insensitively. A non-empty allow list is the whole truth (it wins over
the deny list); otherwise everything not denied is allowed. A key's own list narrows that further.

>>> policy = ModelPolicy(("openai/gpt-4o", "llama-3"), (), providers=("openai", "groq", "ollama"))
>>> policy.allows("openai", "GPT-4o"), policy.allows("groq", "llama-3"), policy.allows("openai", "o3")
(True, True, False)
>>> policy.allows("ollama", "openai/gpt-4o")   # the prefix names a provider: openai's, not ollama's
False
"""

from __future__ import annotations

from collections.abc import Iterable

from providers.errors import PermissionDenied

from .auth import Identity

__all__ = ["ModelPolicy"]


class _Entries:
    """One list of entries, split into bare model names and (provider, model) pairs, lower-cased."""

    __slots__ = ("anywhere", "at")

    def __init__(self, entries: Iterable[str], providers: frozenset[str]) -> None:
        anywhere: set[str] = set()
        at: set[tuple[str, str]] = set()
        for entry in entries:
            name = entry.strip().lower()
            if not name:
                continue
            prefix, slash, rest = name.partition("/")
            if slash and prefix in providers:
                at.add((prefix, rest))
            else:
                anywhere.add(name)
        self.anywhere = frozenset(anywhere)
        self.at = frozenset(at)

    def __bool__(self) -> bool:
        return bool(self.anywhere or self.at)

    def match(self, provider: str, model: str) -> bool:
        """``model`` lower-cased already, ``provider`` a registry id."""
        return model in self.anywhere or (provider, model) in self.at


class ModelPolicy:
    """The gateway's allow and deny lists, and each key's model list, over the registry's ids.

    Keys' lists are parsed once, on first use, and kept (there are as many as configured keys).
    """

    def __init__(self, allowed: Iterable[str], disallowed: Iterable[str], *, providers: Iterable[str]) -> None:
        self.providers = frozenset(p.lower() for p in providers)
        self.allowed = _Entries(allowed, self.providers)
        self.disallowed = _Entries(disallowed, self.providers)
        self._keys: dict[tuple[str, ...], _Entries] = {}

    def allows(self, provider: str, model: str, identity: Identity | None = None) -> bool:
        """Whether ``model`` (the provider's own name, prefix removed) may be used at ``provider``."""
        model = model.strip().lower()
        if self.allowed:
            if not self.allowed.match(provider, model):
                return False
        elif self.disallowed.match(provider, model):
            return False
        return identity is None or not identity.models or self._key_entries(identity.models).match(provider, model)

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

    def _key_entries(self, models: tuple[str, ...]) -> _Entries:
        entries = self._keys.get(models)
        if entries is None:
            entries = self._keys[models] = _Entries(models, self.providers)
        return entries
