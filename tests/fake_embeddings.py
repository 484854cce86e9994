"""The embeddings of the fakes: OpenAI's ``POST /embeddings`` for the OpenAI-compatible entries that
list it, and the vectors every fake (OpenAI-style, Gemini, Cohere) answers.

``vector_of(text, n)`` is the same for every fake, so a test can tell which input a vector belongs
to; its values are multiples of 1/1024, exact in float32, so base64 answers decode to them exactly.
Scenarios, by model name: ``error-<status>`` (an OpenAI error with that status), ``leak`` (the
credential received, in the answer's ``model``), ``leak-error`` (a 429 quoting it), ``slow`` (5 s).
OpenAI's rules the fake keeps: ``input`` a non-empty string, strings, token ids or lists of them (at
most 2048 items, no empty string), ``encoding_format`` float or base64, ``dimensions`` a positive
integer that text-embedding-ada-002 refuses.
"""

from __future__ import annotations

import asyncio
import base64
import zlib
from array import array
from typing import Any

from aiohttp import web

DIMENSIONS = 1536  # text-embedding-3-small's
MAX_INPUTS = 2048


def vector_of(text: str, dimensions: int) -> list[float]:
    """A deterministic vector for ``text``: its CRC spread over ``dimensions`` values in [-0.5, 0.5)."""
    seed = zlib.crc32(text.encode()) | 1
    return [((seed * (i + 1)) % 1024) / 1024 - 0.5 for i in range(dimensions)]


def openai_error(
    status: int, message: str, param: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": None}}
    return web.json_response(body, status=status, headers=headers)


def _inputs(value: Any) -> list[str] | str:
    """The inputs as texts (token ids written out), or what is wrong with them."""
    if isinstance(value, str):
        return [value] if value else "'$.input' is invalid: it must not be an empty string."
    if not isinstance(value, list) or not value or len(value) > MAX_INPUTS:
        return "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."
    if all(isinstance(v, str) and v for v in value):
        return list(value)
    if all(type(v) is int and v >= 0 for v in value):
        return [" ".join(map(str, value))]
    if all(isinstance(v, list) and v and all(type(t) is int and t >= 0 for t in v) for v in value):
        return [" ".join(map(str, v)) for v in value]
    return "'$.input' is invalid. Please check the API reference: https://platform.openai.com/docs/api-reference."


async def openai_embeddings(payload: Any, said: str) -> web.Response:
    """OpenAI's answer to ``payload``; ``said`` is the credential the fake received."""
    if not isinstance(payload, dict) or not isinstance(payload.get("model"), str):
        return openai_error(400, "you must provide a model parameter", "model")
    model = payload["model"]
    if model.startswith("error-"):
        status = int(model.removeprefix("error-"))
        return openai_error(status, f"fake upstream refused with {status}", headers={"Retry-After": "7"})
    if model == "leak-error":
        return openai_error(429, f"fake upstream refused the key {said}", headers={"Retry-After": said})
    if model == "slow":
        await asyncio.sleep(5)
    texts = _inputs(payload.get("input"))
    if isinstance(texts, str):
        return openai_error(400, texts, "input")
    encoding = payload.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        return openai_error(400, f"Invalid value for 'encoding_format': {encoding!r}.", "encoding_format")
    dimensions = payload.get("dimensions", DIMENSIONS)
    if "dimensions" in payload and model == "text-embedding-ada-002":
        return openai_error(400, "This model does not support specifying dimensions.", "dimensions")
    if type(dimensions) is not int or dimensions < 1:
        return openai_error(400, f"Invalid 'dimensions': {dimensions!r}.", "dimensions")
    data = []
    for index, text in enumerate(texts):
        vector: Any = vector_of(text, dimensions)
        if encoding == "base64":
            vector = base64.b64encode(array("f", vector).tobytes()).decode()
        data.append({"object": "embedding", "index": index, "embedding": vector})
    tokens = sum(len(t.split()) for t in texts)
    answered_model = f"model-for-{said}" if model == "leak" else model
    return web.json_response(
        {
            "object": "list",
            "data": data,
            "model": answered_model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )
