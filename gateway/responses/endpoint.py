"""``POST /v1/responses``: relayed to providers that serve it, translated through chat for the rest."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from providers import Adapter, ChatRequest, HttpClient
from providers.errors import InvalidRequest
from providers.json_codec import load_json
from providers.registry import Provider

from ..admission import ModelRoute
from ..body import read_body
from ..chat import check_vision
from ..fallbacks import Fallbacks
from ..limits.limiter import UNLIMITED, Limits, Unlimited
from ..mcp import bypassed
from ..mcp.agent import ChatRunner, Direct
from ..policy import ModelPolicy
from ..relay import RelayResponse, until_disconnect
from ..settings import Settings
from ..telemetry import current
from .answer import Shell, from_chat
from .relay import SSE_HEADERS, ResponsesRelay
from .request import has_image, to_chat
from .stream import ResponseStream
from .usage import telemetry_usage

__all__ = ["ResponsesEndpoint"]


class ResponsesEndpoint:
    """The Responses route. ``adapters`` give the relay each provider's credential, redactor,
    timeouts and status map; ``traced`` (the same, traced when tracing is on) serve translation."""

    def __init__(
        self,
        settings: Settings,
        adapters: Mapping[str, Adapter],
        traced: Mapping[str, Adapter],
        policy: ModelPolicy,
        runner: ChatRunner,
        http: HttpClient,
        limits: Limits | Unlimited = UNLIMITED,
    ) -> None:
        self.settings = settings
        self.limits = limits
        self.traced = traced  # for translation: the chat adapters, as the chat route calls them
        self.policy = policy
        self.runner = runner
        self.direct = Direct()
        self.relay = ResponsesRelay(http, adapters)
        self.fallbacks = Fallbacks(settings, policy)
        self.route = ModelRoute(settings, policy)  # the path and header strategies name the model, as for chat

    async def handle(self, request: Request) -> Response | RelayResponse:
        settings = self.settings
        body = await read_body(request, settings.server_max_request_body_size, settings.server_read_timeout)
        payload = _parsed(body, self.route.named(request))
        provider, model = self.route.take(request, payload["model"], "chat")
        await self.limits.admit(request.scope, payload, len(body), provider.id, model)
        if has_image(payload):
            check_vision(settings, provider, model, param="input")
        runner = self.direct if bypassed(request) else self.runner
        # An alias: on a failure before the first byte, its other deployments, in order.
        return await self.fallbacks.run(
            request, payload["model"], provider, model, lambda p, m: self._answer(request, payload, runner, p, m)
        )

    async def _answer(
        self, request: Request, payload: dict[str, Any], runner: ChatRunner, provider: Provider, model: str
    ) -> Response | RelayResponse:
        """One provider's answer: relayed to its own /responses, or translated through chat."""
        exchange = current()
        if provider.serves("responses"):
            return await self.relay.relay(request, provider.name, payload, model, exchange)
        chat, echo = to_chat(payload)
        adapter = self.traced[provider.name]
        shell = Shell(echo, model)
        if chat.get("stream"):
            chunks = await until_disconnect(request, runner.stream(adapter, ChatRequest(chat, model, stream=True)))
            events = ResponseStream(shell, chunks, exchange)
            exchange.stream_started()
            return RelayResponse(events, close=events.aclose, headers=SSE_HEADERS, on_error=events.failed)
        answer = orjson.loads(await until_disconnect(request, runner.chat(adapter, ChatRequest(chat, model))))
        response = from_chat(answer if isinstance(answer, dict) else {}, shell)
        if response["usage"] is not None:
            exchange.usage = telemetry_usage(response["usage"], shell.model, shell.id)
        exchange.response_model, exchange.response_id = shell.model, shell.id
        return Response(orjson.dumps(response), media_type="application/json")


def _parsed(body: bytes, routed_model: str | None) -> dict[str, Any]:
    """The request object with a model (the routed one wins) and a boolean ``stream``; the rest is
    read by the relay's provider or by the translation."""
    payload = load_json(body)
    if not isinstance(payload, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    if routed_model:
        payload["model"] = routed_model
    model = payload.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("'model' is required: a non-empty string such as openai/gpt-4o.", param="model")
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be true or false.", param="stream")
    return payload
