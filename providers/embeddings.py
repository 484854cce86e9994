"""Embeddings, as the adapters share them: the request, OpenAI's answer shape, and batching.

The gateway validates an OpenAI ``POST /v1/embeddings`` request and hands the adapter an
``EmbeddingRequest``; an OpenAI-compatible adapter relays it, a translating one sends its texts in
the provider's batches (``in_batches``) and writes the vectors back with ``embedding_list``.

    request = EmbeddingRequest(payload, "gemini-embedding-001", texts=["a", "b"])
    body = await adapter.embed(request)      # OpenAI {"object": "list", "data": [...], ...} bytes

``encoding_format: base64`` is each vector as little-endian float32 bytes, base64-encoded: what
OpenAI answers, and what its SDKs decode (the Python SDK asks for it when the caller names no
format). ``input_type`` is not OpenAI's: clients of Cohere-style models send it (in the openai
SDK, ``extra_body``) to say what the texts are for; relayed providers get it as sent.
"""

from __future__ import annotations

import asyncio
import base64
import sys
from array import array
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

import orjson

from .errors import InvalidRequest, UpstreamInvalidAnswer

__all__ = ["INPUT_TYPES", "EmbeddingRequest", "Vectors", "embedding_list", "in_batches", "vectors_of"]

# What ``input_type`` may say to a translated provider, in Cohere's words.
INPUT_TYPES = ("search_document", "search_query", "classification", "clustering")

Vectors = list[list[float]]


@dataclass(slots=True)
class EmbeddingRequest:
    """An OpenAI embeddings request, validated: ``payload`` is the client's JSON object, ``model``
    the provider's own model name, ``texts`` the input as a list of strings (``None`` when the
    input is token ids, which only OpenAI-style providers take)."""

    payload: dict[str, Any]
    model: str
    texts: list[str] | None

    @property
    def base64(self) -> bool:
        return self.payload.get("encoding_format") == "base64"

    @property
    def dimensions(self) -> int | None:
        value = self.payload.get("dimensions")
        return value if type(value) is int else None

    def texts_for(self, who: str) -> list[str]:
        """The texts, or the client's 400 when it sent token ids to a provider that reads text."""
        if self.texts is None:
            raise InvalidRequest(
                f"{who} embeds text only: send 'input' as a string or a list of strings, not token ids.",
                param="input",
                code="unsupported_input",
            )
        return self.texts

    def input_type(self, who: str) -> str | None:
        """The ``input_type`` the client gave (one of ``INPUT_TYPES``), or ``None``."""
        value = self.payload.get("input_type")
        if value is None or value in INPUT_TYPES:
            return value
        raise InvalidRequest(
            f"'input_type' must be one of {', '.join(INPUT_TYPES)} for {who}; got {value!r}.",
            param="input_type",
            code="invalid_value",
        )


def embedding_list(vectors: Vectors, model: str, prompt_tokens: int, *, base64_encoded: bool) -> bytes:
    """OpenAI's answer: one ``embedding`` per vector, in order; ``usage`` last, where telemetry reads it."""
    encode = _base64 if base64_encoded else None
    data = [
        {"object": "embedding", "index": i, "embedding": v if encode is None else encode(v)}
        for i, v in enumerate(vectors)
    ]
    usage = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens}
    return orjson.dumps({"object": "list", "data": data, "model": model, "usage": usage})


_SWAP = sys.byteorder != "little"


def _base64(vector: list[float]) -> str:
    packed = array("f", vector)
    if _SWAP:
        packed.byteswap()
    return base64.b64encode(packed.tobytes()).decode("ascii")


def vectors_of(values: Any, count: int, who: str) -> Vectors:
    """``values`` checked to be ``count`` lists of numbers (a provider's answer, already parsed)."""
    if not isinstance(values, list) or len(values) != count:
        got = len(values) if isinstance(values, list) else type(values).__name__
        raise UpstreamInvalidAnswer(f"{who} answered {got} embeddings for {count} inputs.")
    for vector in values:
        if not isinstance(vector, list) or not vector or not isinstance(vector[0], int | float):
            raise UpstreamInvalidAnswer(f"{who} answered an embedding that is not a list of numbers.")
    return values


async def in_batches(
    texts: list[str], size: int, call: Callable[[list[str]], Coroutine[Any, Any, tuple[Vectors, int]]]
) -> tuple[Vectors, int]:
    """The vectors of ``texts`` and the tokens counted, in calls of at most ``size`` texts each.

    One call is awaited as it is (no task); several run at once, and the first failure cancels the
    others and is raised as it was.
    """
    if len(texts) <= size:
        return await call(texts)
    calls = [call(texts[i : i + size]) for i in range(0, len(texts), size)]
    try:
        async with asyncio.TaskGroup() as group:
            tasks = [group.create_task(c) for c in calls]
    except BaseExceptionGroup as failed:
        raise _first(failed) from None
    vectors: Vectors = []
    tokens = 0
    for task in tasks:
        part, counted = task.result()
        vectors += part
        tokens += counted
    return vectors, tokens


def _first(group: BaseExceptionGroup[Any]) -> BaseException:
    error: BaseException = group
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error
