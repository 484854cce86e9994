"""Token usage in the Responses shape: translated from chat's, and read from a relayed answer.

>>> u = from_chat({"prompt_tokens": 9, "completion_tokens": 3, "prompt_tokens_details": {"cached_tokens": 4}})
>>> u["input_tokens"], u["input_tokens_details"]["cached_tokens"], u["total_tokens"]
(9, 4, 12)
>>> u = read_relayed(b'{"model":"gpt-5","usage":{"input_tokens":5,"output_tokens":2,"total_tokens":7}}')
>>> u.output, u.model
(2, 'gpt-5')
"""

from __future__ import annotations

import re
from typing import Any

import orjson

from ..telemetry.usage import Usage

__all__ = ["from_chat", "read_relayed", "telemetry_usage"]


def _count(details: Any, key: str) -> int:
    value = details.get(key) if isinstance(details, dict) else None
    return value if type(value) is int else 0


def from_chat(usage: Any) -> dict[str, Any] | None:
    """A Responses ``usage`` object from a chat one (``None`` when the provider reported none)."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if type(prompt) is not int or type(completion) is not int:
        return None
    details = usage.get("prompt_tokens_details")
    written = usage.get("cache_creation_input_tokens")
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": _count(details, "cached_tokens"),
            "cache_write_tokens": written if type(written) is int else _count(details, "cache_creation_tokens"),
        },
        "output_tokens": completion,
        "output_tokens_details": {
            "reasoning_tokens": _count(usage.get("completion_tokens_details"), "reasoning_tokens")
        },
        "total_tokens": prompt + completion,
    }


def telemetry_usage(usage: dict[str, Any], model: str | None = None, response_id: str | None = None) -> Usage | None:
    """The telemetry's ``Usage`` of a Responses ``usage`` object."""
    given, made = usage.get("input_tokens"), usage.get("output_tokens")
    if type(given) is not int or type(made) is not int:
        return None
    details = usage.get("input_tokens_details")
    return Usage(
        given,
        made,
        cache_read=_count(details, "cached_tokens") or None,
        cache_write=_count(details, "cache_write_tokens") or None,
        reasoning=_count(usage.get("output_tokens_details"), "reasoning_tokens") or None,
        model=model,
        response_id=response_id,
    )


def read_relayed(data: bytes) -> Usage | None:
    """The last ``usage`` object in a relayed Response (or the last events of its stream), found by
    a byte search so that only that small object is parsed. Inside JSON strings quotes are escaped,
    so the key found is a real one; a usage object holds no braces in strings."""
    at = data.rfind(b'"usage"')
    if at < 0:
        return None
    start = data.find(b"{", at + 7)
    if start < 0 or data[at + 7 : start].strip() != b":":
        return None
    depth, end = 0, start
    for end in range(start, min(len(data), start + 4096)):
        byte = data[end]
        if byte == 0x7B:  # {
            depth += 1
        elif byte == 0x7D:  # }
            depth -= 1
            if depth == 0:
                break
    else:
        return None
    try:
        usage = orjson.loads(data[start : end + 1])
    except orjson.JSONDecodeError:
        return None
    if not isinstance(usage, dict):
        return None
    # The response's model comes before its usage, and no output item has a model of its own.
    model = _MODEL.match(data, max(data.rfind(b'"model"', 0, at), 0))
    return telemetry_usage(usage, model.group(1).decode("utf-8", "replace") if model else None)


_MODEL = re.compile(rb'"model"\s*:\s*"([^"\\]{1,256})"')
