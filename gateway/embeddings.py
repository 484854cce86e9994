"""``POST /v1/embeddings``: validate, route to a provider that serves embeddings, answer its vectors.

The model is named as for chat (``provider/model``, ``?provider=``, the routing header); the
policy and the body limits apply as they do there. A provider whose registry entry does not list
``embeddings`` is a 400 naming those that do. OpenAI-compatible providers get the request relayed
and their answer back as they wrote it; Gemini and Cohere are translated (``providers.embeddings``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from providers import Adapter, EmbeddingRequest
from providers.errors import InvalidRequest
from providers.json_codec import load_json
from providers.registry import Provider

from .admission import ModelRoute
from .body import read_body
from .fallbacks import Fallbacks
from .limits.limiter import UNLIMITED, Limits, Unlimited
from .policy import ModelPolicy
from .relay import until_disconnect
from .routing import require_endpoint
from .settings import Settings
from .telemetry import current
from .telemetry.usage import read_embedding_usage

__all__ = ["MAX_INPUTS", "EmbeddingsEndpoint", "validate_embeddings"]

MAX_INPUTS = 2048  # OpenAI's limit on the inputs of one request
ENCODING_FORMATS = ("float", "base64")
_INPUT_SHAPES = "a string, a list of strings, a list of token ids, or a list of lists of token ids"


class EmbeddingsEndpoint:
    """The embeddings route, with the settings and one adapter per configured provider."""

    def __init__(
        self,
        settings: Settings,
        adapters: Mapping[str, Adapter],
        policy: ModelPolicy,
        limits: Limits | Unlimited = UNLIMITED,
    ) -> None:
        self.settings = settings
        self.limits = limits
        self.adapters = adapters
        self.policy = policy
        self.route = ModelRoute(settings, policy)
        self.fallbacks = Fallbacks(settings, policy)

    async def handle(self, request: Request) -> Response:
        settings = self.settings
        body = await read_body(request, settings.server_max_request_body_size, settings.server_read_timeout)
        payload, texts = validate_embeddings(body, self.route.named(request))
        provider, model = self.route.take(request, payload["model"], "embeddings")
        exchange = current()
        require_endpoint(provider, "embeddings", settings.providers)
        await self.limits.admit(request.scope, payload, len(body), provider.id, model)

        async def embedded(upstream: Provider, name: str) -> Response:
            call = self.adapters[upstream.name].embed(EmbeddingRequest(payload, name, texts))
            answer = await until_disconnect(request, call)
            # Not a chat usage (no completion tokens): read here, so the sinks find it set.
            usage = exchange.usage = read_embedding_usage(answer)
            if usage is not None:
                exchange.response_model = usage.model
            return Response(answer, media_type="application/json")

        # An alias: on a failure before the first byte, its other deployments that embed, in order.
        return await self.fallbacks.run(request, payload["model"], provider, model, embedded, "embeddings")


def validate_embeddings(body: bytes, routed_model: str | None = None) -> tuple[dict[str, Any], list[str] | None]:
    """The parsed request and its input as texts (``None`` for token ids), or a 400 naming the
    first thing wrong with it."""
    payload = load_json(body)
    if not isinstance(payload, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    if routed_model:
        payload["model"] = routed_model
    model = payload.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest(
            "'model' is required: a non-empty string such as openai/text-embedding-3-small.", param="model"
        )
    texts = _texts(payload.get("input"))
    encoding = payload.get("encoding_format")
    if encoding is not None and encoding not in ENCODING_FORMATS:
        raise InvalidRequest(
            f"'encoding_format' must be float or base64; got {encoding!r}.",
            param="encoding_format",
            code="invalid_value",
        )
    dimensions = payload.get("dimensions")
    if dimensions is not None and (type(dimensions) is not int or dimensions < 1):
        raise InvalidRequest(
            f"'dimensions' must be a positive integer; got {dimensions!r}.", param="dimensions", code="invalid_value"
        )
    for name in ("user", "input_type"):  # input_type is not OpenAI's; its values are the provider's business
        value = payload.get(name)
        if value is not None and type(value) is not str:
            raise InvalidRequest(f"'{name}' must be a string; got {value!r}.", param=name)
    return payload, texts


def _texts(value: Any) -> list[str] | None:
    """The input as a list of texts, ``None`` when it is token ids; a 400 when it is neither."""
    if type(value) is str:
        if not value:
            raise InvalidRequest("'input' must not be an empty string.", param="input")
        return [value]
    if type(value) is not list:
        raise InvalidRequest(f"'input' is required: {_INPUT_SHAPES}.", param="input")
    if not value:
        raise InvalidRequest("'input' must not be an empty list.", param="input")
    if len(value) > MAX_INPUTS:
        raise InvalidRequest(
            f"'input' holds {len(value)} items; at most {MAX_INPUTS} are embedded in one request.", param="input"
        )
    first = type(value[0])
    if first is str:
        for i, text in enumerate(value):
            if type(text) is not str or not text:
                raise _bad(i, "must be a non-empty string, like the other items")
        return value
    if first is int:
        _check_tokens(value, "input")
        return None
    if first is list:
        for i, tokens in enumerate(value):
            if type(tokens) is not list or not tokens:
                raise _bad(i, "must be a non-empty list of token ids, like the other items")
            _check_tokens(tokens, f"input[{i}]")
        return None
    raise _bad(0, f"must be a string, a token id or a list of token ids ('input' is {_INPUT_SHAPES})")


def _check_tokens(tokens: list[Any], where: str) -> None:
    for i, token in enumerate(tokens):
        if type(token) is not int or token < 0:
            raise InvalidRequest(f"{where}[{i}] must be a token id: a non-negative integer.", param=f"{where}[{i}]")


def _bad(index: int, problem: str) -> InvalidRequest:
    return InvalidRequest(f"input[{index}] {problem}.", param=f"input[{index}]")
