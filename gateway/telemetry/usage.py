"""Token usage, response model and id, read from an OpenAI answer's bytes without parsing all of it.

A chat answer can be large (a long completion, a stream's many events); what telemetry needs is
one small object near its end (``usage``) and two strings (``model``, ``id``). They are found by a
byte search and only that object is parsed, so the cost does not grow with the answer.

>>> u = read_usage((b'{"id":"c1","model":"gpt-4o","choices":[],"usage":{"prompt_tokens":9,'
...                 b'"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":4}}}',))
>>> u.input, u.output, u.cache_read, u.model, u.response_id
(9, 3, 4, 'gpt-4o', 'c1')
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import orjson

__all__ = ["Usage", "read_usage"]

# "usage": {...} with at most one level of nested objects (the *_details), as OpenAI writes it.
# Possessive runs: the usual object is matched in a few steps, not one alternation per byte.
_USAGE = re.compile(rb'"usage"\s*:\s*(\{(?:[^{}]++|\{[^{}]*+\})*+\})')
_MODEL = re.compile(rb'"model"\s*:\s*"([^"\\]{1,256})"')
_ID = re.compile(rb'"id"\s*:\s*"([^"\\]{1,256})"')


@dataclass(frozen=True, slots=True)
class Usage:
    input: int
    output: int
    cache_read: int | None = None
    cache_write: int | None = None
    reasoning: int | None = None
    model: str | None = None
    response_id: str | None = None


def read_usage(tail: tuple[bytes, ...]) -> Usage | None:
    """The last usage object in ``tail`` (a JSON answer, or a stream's last chunks), or ``None``."""
    data = tail[0] if len(tail) == 1 else b"".join(tail)
    at = len(data)
    while (at := data.rfind(b'"usage"', 0, at)) >= 0:
        match = _USAGE.match(data, at)
        if match is not None:
            return _usage(data, match.group(1), at)
    return None


def _usage(data: bytes, raw: bytes, at: int) -> Usage | None:
    try:
        usage = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if type(prompt) is not int or type(completion) is not int:
        return None
    prompt_details = usage.get("prompt_tokens_details")
    completion_details = usage.get("completion_tokens_details")
    cache_write = usage.get("cache_creation_input_tokens")
    if cache_write is None and isinstance(prompt_details, dict):
        cache_write = prompt_details.get("cache_creation_tokens")
    # The event (or answer) the usage is in also names the model and the answer's id.
    start = max(data.rfind(b"data:", 0, at), 0)
    model = _MODEL.search(data, start)
    answer_id = _ID.search(data, start)
    return Usage(
        prompt,
        completion,
        cache_read=_count(prompt_details, "cached_tokens"),
        cache_write=cache_write if type(cache_write) is int else None,
        reasoning=_count(completion_details, "reasoning_tokens"),
        model=model.group(1).decode() if model else None,
        response_id=answer_id.group(1).decode() if answer_id else None,
    )


def _count(details: object, key: str) -> int | None:
    if not isinstance(details, dict):
        return None
    value = details.get(key)
    return value if type(value) is int else None
