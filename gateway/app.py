"""``create_app``: the ASGI application, assembled from one ``Settings`` object.

settings = Settings.load(os.environ)
app = create_app(settings)          # serve with uvicorn; the lifespan opens the HTTP pool
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

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
from .readiness import Readiness
from .relayed import relayed_routes
from .responses import ResponsesEndpoint
from .settings import Settings
from .telemetry import Telemetry
from .telemetry.middleware import TelemetryMiddleware
from .telemetry.push import MetricsPush

__all__ = ["app_from_environment", "create_app"]

log = logging.getLogger("polyrelay")

_HEALTHY = b'{"message":"OK"}'
_CONVERTED = re.compile(r"{(\w+):\w+}")
# What Anthropic's SDK sends from a browser (its key, its API version and betas), for CORS.
ANTHROPIC_HEADERS = ("x-api-key", "anthropic-version", "anthropic-beta")


async def health(request: Request) -> Response:
    return Response(_HEALTHY, media_type="application/json")


def adapter_timeouts(settings: Settings) -> AdapterTimeouts:
    connect = settings.client_response_header_timeout or None
    return AdapterTimeouts(
        chat=Timeouts(connect=connect, total=settings.upstream_timeout or None),
        stream=Timeouts(connect=connect, headers=connect, idle=settings.server_write_timeout or None),
        models=Timeouts(connect=connect, total=connect),
    )


def create_app(settings: Settings) -> Starlette:
    """The gateway: routes, error rendering, and one pooled upstream client opened by the lifespan."""
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
    # One adapter per upstream: each configured provider, and each alias deployment with its own
    # URL or key (by Provider.name, e.g. azure@eu), with its own retries, cap and redaction.
    adapters = {p.name: build_adapter(p, _retrying(http, p, settings), options) for p in settings.upstreams}
    policy = ModelPolicy(settings.allowed_models, settings.disallowed_models, providers=settings.providers)
    telemetry = Telemetry.from_settings(settings)
    guardrails = Guardrails.from_settings(settings, http)
    mcp = MCP.from_settings(settings, telemetry, guardrails)
    # With tracing on, the chat route's adapters and the proxy's client make client spans.
    limits = Limits.from_settings(settings)  # None when no limit is configured: no middleware, no cost
    chat = ChatEndpoint(settings, telemetry.wrap_adapters(adapters), policy, mcp.runner, limits or UNLIMITED)
    models = ModelsEndpoint(settings, adapters, policy)
    push = MetricsPush(
        telemetry.metrics if settings.telemetry_metrics_push_enabled else None, settings.server_read_timeout
    )
    proxy = ProxyEndpoint(settings, adapters, telemetry.wrap_client(http), limits or UNLIMITED)
    routes = [
        Route("/health", health, methods=["GET"]),
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

    oidc = None
    templates: dict[Callable[..., object], str] = {}  # an endpoint is counted under its first route
    for route in routes:
        templates.setdefault(route.endpoint, _CONVERTED.sub(r"{\1}", route.path))  # {model:path} -> {model}
    middleware = [Middleware(TelemetryMiddleware, telemetry=telemetry, routes=templates)]
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
    if settings.auth_enabled:
        if settings.auth_oidc_issuer:
            from .oidc import OIDCVerifier  # joserfc and cryptography load only when tokens are checked

            oidc = OIDCVerifier(
                settings.auth_oidc_issuer,
                settings.auth_oidc_client_id,
                http,
                refresh_interval=settings.auth_oidc_jwks_refresh_interval,
                retry_interval=settings.auth_oidc_retry_interval,
            )
        middleware.append(Middleware(AuthMiddleware, keys=ApiKeys(settings.auth_api_keys), oidc=oidc))
    if limits is not None:  # inside authentication: the routes' admissions count per caller
        middleware.append(Middleware(LimitsMiddleware))
    if guardrails is not None:  # inside authentication: policies see who is calling
        middleware.append(
            Middleware(
                GuardrailsMiddleware,
                guardrails=guardrails,
                limit=settings.server_max_request_body_size,
                read_timeout=settings.server_read_timeout,
            )
        )
    # Next to /health, once the verifier exists: readiness waits for its keys.
    routes.insert(1, Route("/ready", Readiness(http, oidc, mcp, settings.aliases, limits).handle, methods=["GET"]))
    # -- The routes that carry the traffic, served from the innermost middleware past the router (issue 16).
    middleware.append(
        Middleware(HotRoutes, routes=routes, hot=(chat.handle, proxy.handle), handlers=exception_handlers)
    )
    # --

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await telemetry.start()  # first: a metrics port in use stops start-up before anything is opened
        await http.start()
        if oidc is not None:
            await oidc.start()
        if not settings.auth_enabled and not _is_loopback(settings.server_host):
            log.warning(
                "Authentication is off and the gateway listens on %s: anyone who reaches it can spend your "
                "provider keys. Set AUTH_ENABLED=true, or bind to 127.0.0.1 behind an authenticating proxy.",
                settings.server_host,
            )
        await mcp.start()
        for notice in settings.notices:
            log.info(notice)
        configured = ", ".join(p.id for p in settings.configured_providers) or "none"
        log.info("polyrelay ready; providers configured: %s", configured)
        try:
            yield
        finally:
            await mcp.close()
            if oidc is not None:
                await oidc.close()
            await http.close()
            if limits is not None:
                await limits.store.close()
            await telemetry.close()

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


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def app_from_environment() -> Starlette:
    """Factory for uvicorn's ``--factory`` (each worker process builds its own app)."""
    return create_app(Settings.load(os.environ))
