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

import orjson

__all__ = ["Usage", "read_usage"]


class Usage:
    """Tokens as the answer reported them (``None``: not reported), with its model and id."""

    __slots__ = ("cache_read", "cache_write", "input", "model", "output", "reasoning", "response_id")

    def __init__(
        self,
        input: int,
        output: int,
        cache_read: int | None = None,
        cache_write: int | None = None,
        reasoning: int | None = None,
        model: str | None = None,
        response_id: str | None = None,
    ) -> None:
        self.input, self.output = input, output
        self.cache_read, self.cache_write, self.reasoning = cache_read, cache_write, reasoning
        self.model, self.response_id = model, response_id


def read_usage(tail: tuple[bytes, ...]) -> Usage | None:
    """The last usage object in ``tail`` (a JSON answer, or a stream's last chunks), or ``None``."""
    data = tail[0] if len(tail) == 1 else b"".join(tail)
    at = len(data)
    while (at := data.rfind(b'"usage"', 0, at)) >= 0:
        raw = _object_after(data, at + 7)
        if raw is not None:
            return _usage(data, raw, at)
    return None


def _object_after(data: bytes, at: int) -> bytes | None:
    """The JSON object that is the value of the key ending at ``at``: its braces matched by search
    (a usage object holds no strings with braces in them)."""
    colon = data.find(b":", at, at + 8)
    if colon < 0 or data[at:colon].strip():
        return None
    start = data.find(b"{", colon, colon + 8)
    if start < 0 or data[colon + 1 : start].strip():
        return None
    end = data.find(b"}", start)
    while end >= 0 and data.count(b"{", start, end) > data.count(b"}", start, end) + 1:
        end = data.find(b"}", end + 1)
    return None if end < 0 else data[start : end + 1]


def _string_after(data: bytes, key: bytes, start: int) -> str | None:
    """The string value of the first ``key`` at or after ``start`` (plain ones only: no escapes)."""
    at = data.find(key, start)
    if at < 0:
        return None
    quote = data.find(b'"', at + len(key))
    if quote < 0 or data[at + len(key) : quote].strip() != b":":
        return None
    end = data.find(b'"', quote + 1, quote + 258)
    if end < 0 or data.find(b"\\", quote, end) >= 0:
        return None
    return data[quote + 1 : end].decode("utf-8", "replace")


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
    return Usage(
        prompt,
        completion,
        cache_read=_count(prompt_details, "cached_tokens"),
        cache_write=cache_write if type(cache_write) is int else None,
        reasoning=_count(completion_details, "reasoning_tokens"),
        model=_string_after(data, b'"model"', start),
        response_id=_string_after(data, b'"id"', start),
    )


def _count(details: object, key: str) -> int | None:
    if not isinstance(details, dict):
        return None
    value = details.get(key)
    return value if type(value) is int else None
