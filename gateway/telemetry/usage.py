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

import orjson

__all__ = ["Usage", "read_embedding_usage", "read_usage"]


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
    at = data.rfind(b'"usage"')
    if at < 0:
        return None
    # Most answers are small: the event (or the whole answer) holding the last usage is parsed
    # at once, faster than searching it piece by piece.
    start = data.rfind(b"data:", 0, at)
    end = len(data) if start < 0 else _event_end(data, at)
    start = 0 if start < 0 else start + 5
    if end - start <= _PARSED_WHOLE:
        try:
            document = orjson.loads(data if start == 0 and end == len(data) else data[start:end])
        except orjson.JSONDecodeError:
            document = None
        if type(document) is dict and type(usage := document.get("usage")) is dict:
            model, answer_id = document.get("model"), document.get("id")
            return _from(usage, model if type(model) is str else None, answer_id if type(answer_id) is str else None)
    at = len(data)
    while (at := data.rfind(b'"usage"', 0, at)) >= 0:
        raw = _object_after(data, at + 7)
        if raw is not None:
            return _usage(data, raw, at)
    return None


_PARSED_WHOLE = 4096  # bytes


def read_embedding_usage(body: bytes) -> Usage | None:
    """The input tokens and model of an OpenAI embeddings answer (no completion tokens there), or
    ``None`` when it reports none: a count of 0 is a provider that did not count (Gemini), since
    every input holds something. Both sit after the vectors, so they are searched from the end.

    >>> u = read_embedding_usage(b'{"data":[],"model":"m","usage":{"prompt_tokens":4,"total_tokens":4}}')
    >>> u.input, u.output, u.model
    (4, 0, 'm')
    """
    at = body.rfind(b'"usage"')
    raw = None if at < 0 else _object_after(body, at + 7)
    if raw is None:
        return None
    try:
        usage = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    prompt = usage.get("prompt_tokens") if type(usage) is dict else None
    if type(prompt) is not int or prompt <= 0:
        return None
    model_at = body.rfind(b'"model"')
    found = None if model_at < 0 else _STRING.match(body, model_at + 7)
    return Usage(prompt, 0, model=None if found is None else found.group(1).decode("utf-8", "replace"))


def _event_end(data: bytes, at: int) -> int:
    end = data.find(b"\n", at)
    return len(data) if end < 0 else end


# What follows a "usage" key: a colon, then an object nested at most two deep (OpenAI's has
# ``prompt_tokens_details`` and ``completion_tokens_details``); a usage object holds no strings
# with braces in them. A deeper one is matched by counting braces.
_OBJECT = re.compile(rb"\s*:\s*(\{[^{}]*(?:\{[^{}]*(?:\{[^{}]*\}[^{}]*)*\}[^{}]*)*\})")
_OPENING = re.compile(rb"\s*:\s*\{")


def _object_after(data: bytes, at: int) -> bytes | None:
    """The JSON object that is the value of the key ending at ``at``."""
    found = _OBJECT.match(data, at)
    if found is not None:
        return found.group(1)
    opening = _OPENING.match(data, at)
    if opening is None:
        return None
    start = opening.end() - 1
    end = data.find(b"}", start)
    while end >= 0 and data.count(b"{", start, end) > data.count(b"}", start, end) + 1:
        end = data.find(b"}", end + 1)
    return None if end < 0 else data[start : end + 1]


# A key's plain string value (no escapes), at most 256 bytes, after the key.
_STRING = re.compile(rb'\s*:\s*"([^"\\]{0,256})"')


def _string_after(data: bytes, key: bytes, start: int) -> str | None:
    """The value of the first ``key`` at or after ``start``, or ``None`` when it is not a plain string."""
    at = data.find(key, start)
    found = None if at < 0 else _STRING.match(data, at + len(key))
    return None if found is None else found.group(1).decode("utf-8", "replace")


def _usage(data: bytes, raw: bytes, at: int) -> Usage | None:
    try:
        usage = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    # The event (or answer) the usage is in also names the model and the answer's id.
    start = max(data.rfind(b"data:", 0, at), 0)
    return _from(usage, _string_after(data, b'"model"', start), _string_after(data, b'"id"', start))


def _from(usage: dict[str, object], model: str | None, answer_id: str | None) -> Usage | None:
    prompt, completion = usage.get("prompt_tokens"), usage.get("completion_tokens")
    if type(prompt) is not int or type(completion) is not int:
        return None
    if len(usage) == 3 and "total_tokens" in usage:  # the plain counts, as most answers have them
        return Usage(prompt, completion, None, None, None, model, answer_id)
    prompt_details = usage.get("prompt_tokens_details")
    completion_details = usage.get("completion_tokens_details")
    cache_write = usage.get("cache_creation_input_tokens")
    if cache_write is None and isinstance(prompt_details, dict):
        cache_write = prompt_details.get("cache_creation_tokens")
    return Usage(
        prompt,
        completion,
        _count(prompt_details, "cached_tokens"),
        cache_write if type(cache_write) is int else None,
        _count(completion_details, "reasoning_tokens"),
        model,
        answer_id,
    )


def _count(details: object, key: str) -> int | None:
    if not isinstance(details, dict):
        return None
    value = details.get(key)
    return value if type(value) is int else None
