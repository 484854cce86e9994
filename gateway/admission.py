"""``ModelRoute``: how every model route takes a request in, one way for all of them.

The model is named in the body, or outside it by the routing strategy (the path's first segment,
or the routing header), which wins; ``take`` resolves it (``provider/model``, ``?provider=``, or
an alias of the routing file), tells the request's telemetry, and applies the model policy. Each
route then applies its own checks (its endpoint, vision, the rate limits) in its own order.

    route = ModelRoute(settings, policy)
    payload = validate(body, route.named(request))
    provider, model = route.take(request, payload["model"], "chat")
"""

from __future__ import annotations

from starlette.requests import Request

from providers.registry import Provider

from .auth import identity_of
from .policy import ModelPolicy
from .routing import resolve
from .settings import Settings
from .telemetry import current

__all__ = ["ModelRoute"]


class ModelRoute:
    def __init__(self, settings: Settings, policy: ModelPolicy) -> None:
        self.providers = settings.providers
        self.aliases = settings.aliases
        self.policy = policy
        self.model_header = settings.routing_header_name if settings.routing_strategy == "header" else None

    def named(self, request: Request) -> str | None:
        """The model named outside the body by the routing strategy (it wins over the body's);
        checked by ``take`` like the body's, so a malformed one is a 400, never a fallback."""
        routed = request.path_params.get("model")
        if routed is None and self.model_header is not None:
            routed = request.headers.get(self.model_header)
        return routed or None

    def take(self, request: Request, name: str, operation: str | None) -> tuple[Provider, str]:
        """The provider and its own model name for ``name``, once the model policy allows it."""
        # Parsed only when there is a query: most requests have none.
        asked = request.query_params.get("provider") if request.scope.get("query_string") else None
        provider, model = resolve(name, asked, self.providers, self.aliases)
        exchange = current()
        # Telemetry names the upstream (a deployment with its own URL or key: id@name); the policy the provider.
        exchange.operation, exchange.provider, exchange.model = operation, provider.name, model
        self.policy.check(provider.id, model, identity_of(request.scope))
        return provider, model
