"""A data plane: the routes and middleware that serve one ``Settings``, over the process's shared parts.

``create_app`` builds the ``Shared`` parts once per process (the pooled upstream client, telemetry,
guardrails, MCP, the rate limits' store, the OIDC verifier) and the default gateway's data plane
from the process-wide settings. A gateway resource (``gateway.gateways``) gets a data plane built
by this same function from settings derived from its spec (its routing strategy, its zones' providers)
and its own authentication, so every gateway serves exactly the routes the default one does.

    shared = Shared.from_settings(settings)
    app = data_plane(settings, shared, auth=process_auth(settings, shared), limits=shared.limits)
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import BaseRoute, Route

from providers import AdapterOptions, AdapterTimeouts, ClientOptions, HttpClient, Provider, Timeouts, build_adapter
from providers.capacity import CappedClient
from providers.retry import RetryingClient, RetryPolicy

from .auth import ApiKeys, AuthMiddleware
from .chat import ChatEndpoint
from .embeddings import EmbeddingsEndpoint
from .errors import exception_handlers
from .guardrails import Guardrails
from .guardrails.middleware import GuardrailsMiddleware
from .hot_routes import HotRoutes
from .limits.limiter import UNLIMITED, Limits
from .limits.middleware import LimitsMiddleware
from .mcp import MCP
from .messages import MessagesEndpoint, NativeRelay
from .models import ModelsEndpoint
from .policy import ModelPolicy
from .proxy import METHODS, ProxyEndpoint
from .relayed import relayed_routes
from .responses import ResponsesEndpoint
from .settings import Settings
from .telemetry import Telemetry
from .telemetry.middleware import TelemetryMiddleware
from .telemetry.push import MetricsPush

if TYPE_CHECKING:
    from .oidc import OIDCVerifier

__all__ = ["ANTHROPIC_HEADERS", "Shared", "adapter_timeouts", "data_plane", "process_auth"]

_CONVERTED = re.compile(r"{(\w+):\w+}")
# What Anthropic's SDK sends from a browser (its key, its API version and betas), for CORS.
ANTHROPIC_HEADERS = ("x-api-key", "anthropic-version", "anthropic-beta")


def adapter_timeouts(settings: Settings) -> AdapterTimeouts:
    connect = settings.client_response_header_timeout or None
    return AdapterTimeouts(
        chat=Timeouts(connect=connect, total=settings.upstream_timeout or None),
        stream=Timeouts(connect=connect, headers=connect, idle=settings.server_write_timeout or None),
        models=Timeouts(connect=connect, total=connect),
    )


@dataclass(frozen=True, slots=True)
class Shared:
    """The process-wide parts every data plane uses; opened and closed by the app's lifespan."""

    http: HttpClient
    options: AdapterOptions
    telemetry: Telemetry
    guardrails: Guardrails | None
    mcp: MCP
    limits: Limits | None  # None when no limit is configured: no middleware, no cost
    oidc: OIDCVerifier | None
    # Per configured provider, the client its adapters call through (its cap on calls in flight
    # and its retries): one per process, whichever data plane calls.
    clients: Mapping[str, HttpClient]

    @classmethod
    def from_settings(cls, settings: Settings) -> Shared:
        http = HttpClient(
            ClientOptions(
                max_connections=settings.client_max_conns,
                max_idle=settings.client_max_idle_conns,
                max_idle_per_host=settings.client_max_idle_conns_per_host,
                keepalive_timeout=settings.client_idle_conn_timeout,
                tls_1_3_only=settings.client_tls_min_version == "TLS13",
            )
        )
        options = AdapterOptions(
            adapter_timeouts(settings),
            default_max_tokens=settings.default_max_tokens,
            max_event_size=settings.stream_max_event_size,
        )
        telemetry = Telemetry.from_settings(settings)
        guardrails = Guardrails.from_settings(settings, http)
        oidc = None
        if settings.auth_enabled and settings.auth_oidc_issuer:
            from .oidc import OIDCVerifier  # joserfc and cryptography load only when tokens are checked

            oidc = OIDCVerifier(
                settings.auth_oidc_issuer,
                settings.auth_oidc_client_id,
                http,
                refresh_interval=settings.auth_oidc_jwks_refresh_interval,
                retry_interval=settings.auth_oidc_retry_interval,
            )
        return cls(
            http=http,
            options=options,
            telemetry=telemetry,
            guardrails=guardrails,
            mcp=MCP.from_settings(settings, telemetry, guardrails),
            limits=Limits.from_settings(settings),
            oidc=oidc,
            # Each configured provider, and each alias deployment with its own URL or key (by
            # Provider.name, e.g. azure@eu), with its own retries, cap and redaction.
            clients={p.name: _retrying(http, p, settings) for p in settings.upstreams},
        )


def data_plane(
    settings: Settings,
    shared: Shared,
    *,
    auth: Sequence[Middleware],
    limits: Limits | None = None,
    head: Sequence[BaseRoute] = (),
    outer: Sequence[Middleware] = (),
    lifespan: Callable[[Starlette], Any] | None = None,
    mounted: bool = False,
) -> Starlette:
    """The routes of ``settings`` (its providers, routing strategy, policy) behind ``auth`` and
    ``limits``; ``head`` routes come first (the default gateway's probes), ``outer`` middleware
    wraps everything (the default gateway's dispatch to the gateway resources). ``auth`` is the
    authentication middleware (none when off) and any that must see the caller it records;
    ``mounted``: a gateway resource's plane, reached under ``/gateways/{id}`` (for its logs)."""
    http, options, telemetry, mcp = shared.http, shared.options, shared.telemetry, shared.mcp
    adapters = {p.name: build_adapter(p, shared.clients[p.name], options) for p in settings.upstreams}
    policy = ModelPolicy(settings.allowed_models, settings.disallowed_models, providers=settings.providers)
    # With tracing on, the chat route's adapters and the proxy's client make client spans.
    chat = ChatEndpoint(settings, telemetry.wrap_adapters(adapters), policy, mcp.runner, limits or UNLIMITED)
    models = ModelsEndpoint(settings, adapters, policy)
    push = MetricsPush(
        telemetry.metrics if settings.telemetry_metrics_push_enabled else None, settings.server_read_timeout
    )
    proxy = ProxyEndpoint(settings, adapters, telemetry.wrap_client(http), limits or UNLIMITED)
    routes: list[BaseRoute] = [
        *head,
        Route("/v1/models", models.handle, methods=["GET"]),
        Route("/v1/chat/completions", chat.handle, methods=["POST"]),
        Route("/v1/mcp/tools", mcp.list_tools, methods=["GET"]),
        Route("/v1/metrics", push.handle, methods=["POST"]),
        Route("/proxy/{provider}/{path:path}", proxy.handle, methods=METHODS),
    ]

    # -- POST /v1/embeddings (relayed to OpenAI-compatible providers, translated for Gemini and Cohere)
    embeddings = EmbeddingsEndpoint(settings, telemetry.wrap_adapters(adapters), policy, limits or UNLIMITED)
    routes.append(Route("/v1/embeddings", embeddings.handle, methods=["POST"]))

    # -- One model's entry, and OpenAI's endpoints relayed to the providers that serve them
    # (completions, moderations, images, audio); their calls are client spans with tracing on.
    routes.append(Route("/v1/models/{model:path}", models.retrieve, methods=["GET"]))
    routes += relayed_routes(settings, adapters, telemetry.wrap_client(http), policy, limits or UNLIMITED)
    # --
    # Anthropic's Messages API, relayed natively or translated to chat for every provider.
    messages = MessagesEndpoint(
        settings,
        telemetry.wrap_adapters(adapters),
        policy,
        mcp.runner,
        NativeRelay(telemetry.wrap_client(http), adapters, options.timeouts),
        limits or UNLIMITED,
    )
    routes += [
        Route("/v1/messages", messages.create, methods=["POST"]),
        Route("/v1/messages/count_tokens", messages.count_tokens, methods=["POST"]),
    ]
    if settings.routing_strategy == "path":  # ANTHROPIC_BASE_URL=http://gateway/<model> in Claude Code
        routes += [
            Route("/{model:path}/v1/messages", messages.create, methods=["POST"]),
            Route("/{model:path}/v1/messages/count_tokens", messages.count_tokens, methods=["POST"]),
        ]

    # -- POST /v1/responses: relayed to providers that serve it, translated through chat for the rest.
    responses = ResponsesEndpoint(
        settings,
        adapters,
        telemetry.wrap_adapters(adapters),
        policy,
        mcp.runner,
        telemetry.wrap_client(http),
        limits or UNLIMITED,
    )
    routes.append(Route("/v1/responses", responses.handle, methods=["POST"]))
    if settings.routing_strategy == "path":
        routes.append(Route("/{model:path}/v1/responses", responses.handle, methods=["POST"]))
    # -- end of /v1/responses
    if settings.routing_strategy == "path":
        # The model, URL-encoded, as the first segment: base_url=http://gateway/<model>/v1 in an SDK.
        routes.append(Route("/{model:path}/v1/chat/completions", chat.handle, methods=["POST"]))

    templates: dict[Callable[..., object], str] = {}  # an endpoint is counted under its first route
    for route in routes:
        if isinstance(route, Route):
            templates.setdefault(route.endpoint, _CONVERTED.sub(r"{\1}", route.path))  # {model:path} -> {model}
    middleware = [*outer, Middleware(TelemetryMiddleware, telemetry=telemetry, routes=templates, mounted=mounted)]
    if settings.cors_allowed_origins:
        middleware.append(
            Middleware(
                CORSMiddleware,
                allow_origins=list(settings.cors_allowed_origins),
                allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
                allow_headers=["Authorization", "Content-Type", settings.routing_header_name, *ANTHROPIC_HEADERS],
                max_age=600,
            )
        )
    middleware += auth
    if limits is not None:  # inside authentication: the routes' admissions count per caller
        middleware.append(Middleware(LimitsMiddleware))
    if shared.guardrails is not None:  # inside authentication: policies see who is calling
        middleware.append(
            Middleware(
                GuardrailsMiddleware,
                guardrails=shared.guardrails,
                limit=settings.server_max_request_body_size,
                read_timeout=settings.server_read_timeout,
            )
        )
    # -- The routes that carry the traffic, served from the innermost middleware past the router (issue 16).
    middleware.append(
        Middleware(HotRoutes, routes=routes, hot=(chat.handle, proxy.handle), handlers=exception_handlers)
    )
    # --
    return Starlette(
        routes=routes,
        middleware=middleware,
        exception_handlers=exception_handlers,  # type: ignore[arg-type]
        lifespan=lifespan,
    )


def _retrying(http: HttpClient, provider: Provider, settings: Settings) -> HttpClient:
    """The client a provider's adapter calls through: with its cap on calls in flight, if any, and
    retries, unless they are off for it (the cap inside: a retry's wait holds no slot)."""
    cap = settings.upstream_max_in_flight if provider.max_in_flight is None else provider.max_in_flight
    if cap:
        named = f"{provider.spec.env_prefix}_MAX_IN_FLIGHT" if provider.max_in_flight else "UPSTREAM_MAX_IN_FLIGHT"
        http = CappedClient(http, cap, provider.name, named)
    retries = settings.upstream_retries if provider.retries is None else provider.retries
    if retries == 0 and not settings.aliases.retried:  # an alias's own retries need the wrapper
        return http
    policy = RetryPolicy(
        retries=retries,
        max_retry_after=settings.upstream_retry_after_max,
        budget=settings.upstream_timeout or 30.0,  # the whole chain within the caller's bound
    )
    return RetryingClient(http, policy, provider.name)


def process_auth(settings: Settings, shared: Shared) -> list[Middleware]:
    """The process's own authentication (AUTH_*: its API keys and OIDC issuer); none when it is off."""
    if not settings.auth_enabled:
        return []
    return [Middleware(AuthMiddleware, keys=ApiKeys(settings.auth_api_keys), oidc=shared.oidc)]
