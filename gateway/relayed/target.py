"""Which provider serves a relayed request, and under which of its own model names.

The model is named as for chat (``provider/model``, or a bare name with ``?provider=``, or the
routing header with ROUTING_STRATEGY=header); the model policy applies, and a provider whose
registry entry does not list the endpoint gets ``require_endpoint``'s 400.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.requests import Request

from providers.errors import InvalidRequest
from providers.registry import Provider
from providers.relayed import Relay

from ..admission import ModelRoute
from ..fallbacks import Fallbacks
from ..limits.limiter import UNLIMITED, Limits, Unlimited
from ..policy import ModelPolicy
from ..routing import require_endpoint
from ..settings import Settings

__all__ = ["OPERATIONS", "Targets"]

# gen_ai.operation.name of the OpenTelemetry GenAI conventions, for the endpoints that have one.
OPERATIONS: Mapping[str, str] = {"completions": "text_completion"}

# An example model per endpoint, for the message of a request that names none.
_EXAMPLES: Mapping[str, str] = {
    "completions": "openai/gpt-3.5-turbo-instruct",
    "moderations": "openai/omni-moderation-latest",
    "images": "openai/gpt-image-1",
    "speech": "openai/gpt-4o-mini-tts",
    "transcriptions": "openai/whisper-1",
    "translations": "openai/whisper-1",
}


class Targets:
    """Resolves a relayed request's model to a provider's ``Relay`` and the provider's own name."""

    def __init__(
        self,
        settings: Settings,
        relays: Mapping[str, Relay],
        policy: ModelPolicy,
        limits: Limits | Unlimited = UNLIMITED,
    ) -> None:
        self.providers = settings.providers
        self.relays = relays
        self.limits = limits
        self.route = ModelRoute(settings, policy)
        self.fallbacks = Fallbacks(settings, policy)

    async def resolve(
        self, request: Request, model: object, endpoint: str, payload: dict[str, Any] | None = None, size: int = 0
    ) -> tuple[Relay, str]:
        """The provider's relay and its own model name, once the policy, the endpoint and the rate
        limits (``payload``'s ``max_tokens`` and ``size`` bytes reserved; an upload reserves none
        for its audio) have let the request through."""
        _, provider, name = await self.take(request, model, endpoint, payload, size)
        return self.relays[provider.name], name

    async def take(
        self, request: Request, model: object, endpoint: str, payload: dict[str, Any] | None = None, size: int = 0
    ) -> tuple[str, Provider, str]:
        """As ``resolve``: the model asked (an alias, for ``Fallbacks``), the provider and its own name."""
        model = self.route.named(request) or model  # the routing header wins over the body's, as on chat
        if not isinstance(model, str) or not model.strip():
            raise InvalidRequest(
                f"'model' is required: a non-empty string such as {_EXAMPLES[endpoint]}.", param="model"
            )
        provider, name = self.route.take(request, model, OPERATIONS.get(endpoint))
        require_endpoint(provider, endpoint, self.providers)
        # Held to the limits of the name asked (an alias) and of the provider/model it resolved to.
        asked = (
            payload if payload is not None and payload.get("model") == model else {**(payload or {}), "model": model}
        )
        await self.limits.admit(request.scope, asked, size, provider.id, name)
        return model, provider, name
