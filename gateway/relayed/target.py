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
from providers.relayed import Relay

from ..auth import identity_of
from ..limits.limiter import UNLIMITED, Limits, Unlimited
from ..policy import ModelPolicy
from ..routing import require_endpoint, resolve
from ..settings import Settings
from ..telemetry import current

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
        self.aliases = settings.aliases
        self.relays = relays
        self.policy = policy
        self.limits = limits
        self.model_header = settings.routing_header_name if settings.routing_strategy == "header" else None

    async def resolve(
        self, request: Request, model: object, endpoint: str, payload: dict[str, Any] | None = None, size: int = 0
    ) -> tuple[Relay, str]:
        """The provider's relay and its own model name, once the policy, the endpoint and the rate
        limits (``payload``'s ``max_tokens`` and ``size`` bytes reserved; an upload reserves none
        for its audio) have let the request through."""
        if self.model_header is not None and (routed := request.headers.get(self.model_header)):
            model = routed  # the routing header wins over the body's model, as on chat
        if not isinstance(model, str) or not model.strip():
            raise InvalidRequest(
                f"'model' is required: a non-empty string such as {_EXAMPLES[endpoint]}.", param="model"
            )
        provider, name = resolve(model, request.query_params.get("provider"), self.providers, self.aliases)
        exchange = current()
        exchange.operation, exchange.provider, exchange.model = OPERATIONS.get(endpoint), provider.id, name
        self.policy.check(provider.id, name, identity_of(request.scope))
        require_endpoint(provider, endpoint, self.providers)
        # Held to the limits of the name asked (an alias) and of the provider/model it resolved to.
        asked = (
            payload if payload is not None and payload.get("model") == model else {**(payload or {}), "model": model}
        )
        await self.limits.admit(request.scope, asked, size, provider.id, name)
        return self.relays[provider.id], name
