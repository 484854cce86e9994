"""OpenAI embeddings to Cohere's ``POST /v2/embed`` and back.

The texts go in ``texts`` (at most 96 a call, so a longer input is sent in several calls at once),
``embedding_types`` is ``["float"]`` (the gateway writes base64 itself when asked), ``dimensions``
is ``output_dimension`` (embed-v4 and later have it; Cohere refuses it for older models, and that
400 is passed on). Cohere requires ``input_type``; OpenAI has no such field, so the client's
``input_type`` is used when it sends one (``search_query`` for a query), else ``search_document``,
what texts embedded for storage and search are.

Usage: ``meta.tokens.input_tokens`` when Cohere reports it, else ``meta.billed_units.input_tokens``.
"""

from __future__ import annotations

from typing import Any

from .embeddings import EmbeddingRequest, Vectors, vectors_of

__all__ = ["BATCH_SIZE", "DEFAULT_INPUT_TYPE", "decode_batch", "encode_batch"]

BATCH_SIZE = 96  # "Maximum number of texts per call is 96"
DEFAULT_INPUT_TYPE = "search_document"


def encode_batch(texts: list[str], request: EmbeddingRequest) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": request.model,
        "texts": texts,
        "input_type": request.input_type("Cohere") or DEFAULT_INPUT_TYPE,
        "embedding_types": ["float"],
    }
    if request.dimensions is not None:
        body["output_dimension"] = request.dimensions
    return body


def decode_batch(data: Any, count: int) -> tuple[Vectors, int]:
    """The vectors of one call's answer, and the input tokens it counted."""
    embeddings = data.get("embeddings") if isinstance(data, dict) else None
    vectors = vectors_of(embeddings.get("float") if isinstance(embeddings, dict) else None, count, "cohere")
    meta = data.get("meta")
    meta = meta if isinstance(meta, dict) else {}
    for key in ("tokens", "billed_units"):
        counts = meta.get(key)
        tokens = counts.get("input_tokens") if isinstance(counts, dict) else None
        if isinstance(tokens, int | float) and not isinstance(tokens, bool):
            return vectors, int(tokens)  # Cohere writes its counts as numbers that may be floats
    return vectors, 0
