"""Tool-call ids as each provider accepts them: a registry entry's ``tool_call_ids`` rule.

A conversation carries the ids whoever answered earlier turns made (the gateway's Gemini ids are
``call_<hex>~<signature>``, with base64's ``+/=``); Anthropic takes ``[a-zA-Z0-9_-]`` only, OpenAI at
most 40 characters, Mistral exactly 9 of ``[a-zA-Z0-9]``. Before a request leaves, every id in its
messages (the assistant's ``tool_calls[].id`` and the tool results' ``tool_call_id``) is made to fit
the provider's rule: an id that fits is sent as it is, any other is replaced by one derived from a
hash of it, so a call and its result still match and nothing is remembered between requests. The
client keeps its own ids; only what goes upstream changes.

>>> rule = parse_rule({"alphabet": "a-zA-Z0-9", "length": 9}, "mistral")
>>> rule.fits("abcDEF123"), rule.conform("abcDEF123")
(True, 'abcDEF123')
>>> len(rule.conform("call_0123~c2ln+/=")), rule.conform("x") == rule.conform("x")
(9, True)
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["ToolCallIds", "parse_rule"]

_DERIVED_LENGTH = 32  # long enough that two ids of one conversation never meet, short enough for any cap


@dataclass(frozen=True, slots=True)
class ToolCallIds:
    """Ids made of ``alphabet`` (a regex character class body), at most ``max_length`` long, or
    exactly ``length`` long."""

    alphabet: str | None = None
    max_length: int | None = None
    length: int | None = None
    _valid: re.Pattern[str] = field(init=False, repr=False, compare=False)
    _symbols: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        alphabet = f"[{self.alphabet}]" if self.alphabet else "."
        size = f"{{{self.length}}}" if self.length else f"{{1,{self.max_length}}}" if self.max_length else "+"
        object.__setattr__(self, "_valid", re.compile(f"{alphabet}{size}", re.S))
        symbols = "".join(chr(c) for c in range(0x21, 0x7F) if re.fullmatch(alphabet, chr(c)))
        # Derived ids are letters and digits where the alphabet has enough of them: they read as ids.
        letters = "".join(s for s in symbols if s.isalnum())
        object.__setattr__(self, "_symbols", letters if len(letters) >= 16 else symbols)

    def fits(self, call_id: str) -> bool:
        return self._valid.fullmatch(call_id) is not None

    def conform(self, call_id: str) -> str:
        """``call_id`` if it fits, else an id that does, derived from its SHA-256."""
        if self.fits(call_id):
            return call_id
        symbols = self._symbols
        size = self.length or min(self.max_length or _DERIVED_LENGTH, _DERIVED_LENGTH)
        number = int.from_bytes(hashlib.sha256(call_id.encode()).digest(), "big")
        out = []
        for _ in range(size):
            number, digit = divmod(number, len(symbols))
            out.append(symbols[digit])
        return "".join(out)

    def conform_messages(self, messages: Iterable[Any]) -> list[Any] | None:
        """OpenAI chat messages with every tool-call id made to fit, or None when all already do
        (then nothing was copied)."""
        out: list[Any] | None = None
        for index, message in enumerate(messages):
            fixed = self._message(message) if isinstance(message, dict) else None
            if fixed is not None:
                if out is None:
                    out = list(messages)
                out[index] = fixed
        return out

    def _message(self, message: dict[str, Any]) -> dict[str, Any] | None:
        fixed = None
        call_id = message.get("tool_call_id")
        if isinstance(call_id, str) and not self.fits(call_id):
            fixed = {**message, "tool_call_id": self.conform(call_id)}
        calls = message.get("tool_calls")
        if isinstance(calls, list) and any(
            isinstance(c, dict) and isinstance(c.get("id"), str) and not self.fits(c["id"]) for c in calls
        ):
            conformed = [
                {**c, "id": self.conform(c["id"])} if isinstance(c, dict) and isinstance(c.get("id"), str) else c
                for c in calls
            ]
            fixed = {**(fixed or message), "tool_calls": conformed}
        return fixed


def parse_rule(raw: Any, where: str) -> ToolCallIds | None:
    """A registry entry's ``tool_call_ids`` mapping, checked; ``ValueError`` names what is wrong."""
    if raw is None:
        return None
    if not isinstance(raw, dict) or not raw or set(raw) - {"alphabet", "max_length", "length"}:
        raise ValueError(f"{where}: 'tool_call_ids' must be a mapping of alphabet, max_length and/or length.")
    alphabet, max_length, length = raw.get("alphabet"), raw.get("max_length"), raw.get("length")
    if alphabet is not None:
        try:
            usable = isinstance(alphabet, str) and any(re.fullmatch(f"[{alphabet}]", chr(c)) for c in range(0x21, 0x7F))
        except re.error:
            usable = False
        if not usable:
            raise ValueError(f"{where}: tool_call_ids.alphabet must be a character class body such as 'a-zA-Z0-9_-'.")
    for key, value in (("max_length", max_length), ("length", length)):
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise ValueError(f"{where}: tool_call_ids.{key} must be a positive integer.")
    if max_length is not None and length is not None:
        raise ValueError(f"{where}: tool_call_ids takes 'length' or 'max_length', not both.")
    return ToolCallIds(alphabet, max_length, length)
