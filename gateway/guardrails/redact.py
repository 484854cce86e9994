"""What a ``redact`` decision removes: credentials and card numbers, found by pattern.

A JSON body is redacted inside its strings (parsed, each string rewritten, encoded again), so what
is left is still the same JSON document; any other text is redacted as it is. Card numbers must
pass the Luhn check, so order ids and phone numbers stay.

>>> redact_text("key: sk-abcdefghijklmnopqrstuvwx and card 4111 1111 1111 1111, ref 1234 5678 9012 3456")
'key: [REDACTED] and card [REDACTED], ref 1234 5678 9012 3456'
"""

from __future__ import annotations

import re
from typing import Any

import orjson

__all__ = ["REDACTED", "redact_body", "redact_text"]

REDACTED = "[REDACTED]"

# Each pattern's group 1 is what goes; the words around it stay.
_SECRETS = (
    # A credential assigned to a name that says so: api_key=..., "token": "...", secret: ...
    re.compile(
        r"""(?i)\b(?:api[_-]?key|apikey|access[_-]?token|auth[_-]?token|token|secret)\b["']?\s*[:=]\s*["']?([^\s"',;}]{8,})"""
    ),
    re.compile(r"(?i)\bbearer\s+([A-Za-z0-9._~+/-]{20,}=*)"),
    # Keys in the shapes providers issue: sk-..., sk-ant-..., AIza..., gsk_...
    re.compile(r"\b((?:sk|gsk|xai)[-_][A-Za-z0-9_-]{20,}|AIza[0-9A-Za-z_-]{35})"),
)
_CARD = re.compile(r"(?<![\d-])((?:\d[ -]?){12,18}\d)(?![\d-])")


def _luhn(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = ord(char) - 48
        if position % 2:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _card(found: re.Match[str]) -> str:
    digits = re.sub(r"[ -]", "", found.group(1))
    return REDACTED if 13 <= len(digits) <= 19 and _luhn(digits) else found.group(0)


def _secret(found: re.Match[str]) -> str:
    whole, start = found.group(0), found.start(1) - found.start(0)
    return whole[:start] + REDACTED + whole[start + len(found.group(1)) :]


def redact_text(text: str) -> str:
    for pattern in _SECRETS:
        text = pattern.sub(_secret, text)
    return _CARD.sub(_card, text)


def _walk(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, list):
        return [_walk(item) for item in value]
    if isinstance(value, dict):
        return {key: _walk(item) for key, item in value.items()}
    return value


def redact_body(body: bytes) -> bytes:
    """``body`` with what the patterns find replaced by ``[REDACTED]``."""
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return redact_text(body.decode("utf-8", "replace")).encode()
    return orjson.dumps(_walk(document))
