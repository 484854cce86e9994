"""OpenAI embeddings to Gemini's ``models/{model}:batchEmbedContents`` and back.

Each text is one of the batch's ``requests`` (``{model: "models/...", content: {parts: [{text}]}}``),
``dimensions`` its ``outputDimensionality``, ``input_type`` its ``taskType``; Gemini takes at most
100 requests in a batch, so a longer input is sent in several batches at once. The answer's
``embeddings[].values`` come back in order.

Usage: the Gemini API counts no tokens for embeddings in most answers. When the answer carries
``usageMetadata.promptTokenCount`` that is the usage; otherwise the usage says 0 tokens (the count
is unknown, not estimated), and telemetry records none.
"""

from __future__ import annotations

from typing import Any

from .embeddings import EmbeddingRequest, Vectors, vectors_of

__all__ = ["BATCH_SIZE", "TASK_TYPES", "decode_batch", "encode_batch"]

BATCH_SIZE = 100  # "BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch"
# input_type (Cohere's words, see providers.embeddings) as Gemini's task types.
TASK_TYPES = {
    "search_document": "RETRIEVAL_DOCUMENT",
    "search_query": "RETRIEVAL_QUERY",
    "classification": "CLASSIFICATION",
    "clustering": "CLUSTERING",
}


def encode_batch(texts: list[str], request: EmbeddingRequest) -> dict[str, Any]:
    model = "models/" + request.model.removeprefix("models/")
    extra: dict[str, Any] = {}
    if request.dimensions is not None:
        extra["outputDimensionality"] = request.dimensions
    input_type = request.input_type("Gemini")
    if input_type is not None:
        extra["taskType"] = TASK_TYPES[input_type]
    return {"requests": [{"model": model, "content": {"parts": [{"text": text}]}, **extra} for text in texts]}


def decode_batch(data: Any, count: int) -> tuple[Vectors, int]:
    """The vectors of one batch's answer, and its token count (0 when Gemini gives none)."""
    embeddings = data.get("embeddings") if isinstance(data, dict) else None
    values = (
        [e.get("values") if isinstance(e, dict) else None for e in embeddings]
        if isinstance(embeddings, list)
        else embeddings
    )
    vectors = vectors_of(values, count, "google")
    metadata = data.get("usageMetadata")
    tokens = metadata.get("promptTokenCount") if isinstance(metadata, dict) else None
    return vectors, tokens if type(tokens) is int else 0
