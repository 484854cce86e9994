"""OpenAI's endpoints beyond chat, relayed to the providers whose registry entries list them.

    routes = relayed_routes(settings, adapters, http, policy)   # Starlette routes, for create_app

The pieces: ``target`` (the model named as for chat -> the provider's ``Relay`` and its own model
name, policy and ``require_endpoint`` checked), ``json_endpoints`` (completions with its stream,
moderations, images, speech), ``uploads`` (transcriptions and translations, streamed through),
``multipart`` (reading an upload only as far as its ``model`` field). The calls themselves are
``providers.relayed.Relay``'s.

Images are served only with ENABLE_IMAGES=true; otherwise their route does not exist (404).
"""

from __future__ import annotations

from collections.abc import Mapping

from starlette.routing import Route

from providers import Adapter, HttpClient
from providers.registry import ENDPOINTS
from providers.relayed import Relay

from ..limits.limiter import UNLIMITED, Limits, Unlimited
from ..policy import ModelPolicy
from ..settings import Settings
from .json_endpoints import Answer, JsonEndpoint
from .target import Targets
from .uploads import UploadEndpoint

__all__ = ["ANSWERS", "relayed_routes"]

# The JSON endpoints, by registry name, and how each answers.
ANSWERS: Mapping[str, Answer] = {
    "completions": Answer("a completion", streams=True),
    "moderations": Answer("a moderation"),
    "images": Answer("an image generation"),
    "speech": Answer("speech", binary=True),
}
UPLOADS = ("transcriptions", "translations")


def relayed_routes(
    settings: Settings,
    adapters: Mapping[str, Adapter],
    http: HttpClient,
    policy: ModelPolicy,
    limits: Limits | Unlimited = UNLIMITED,
) -> list[Route]:
    relays = {pid: Relay(adapter, http) for pid, adapter in adapters.items()}
    targets = Targets(settings, relays, policy, limits)
    routes = []
    for endpoint, answer in ANSWERS.items():
        if endpoint == "images" and not settings.enable_images:
            continue
        handler = JsonEndpoint(settings, targets, endpoint, answer)
        routes.append(Route(ENDPOINTS[endpoint], handler.handle, methods=["POST"]))
    for endpoint in UPLOADS:
        routes.append(Route(ENDPOINTS[endpoint], UploadEndpoint(settings, targets, endpoint).handle, methods=["POST"]))
    return routes
