"""``POST /v1/messages`` and ``POST /v1/messages/count_tokens``: parse, route, authorize, then relay
or translate.

The model is named as for chat (``provider/model`` or ``?provider=``), the model policy and the
vision gate apply as for chat. A provider whose registry entry lists ``messages`` gets the request
natively (``native.NativeRelay``) unless MCP tools are to be merged; any other (or that one, then)
gets it translated to chat and called through the chat runner, so MCP tools merge in as for chat,
its answer translated back (``answer``, ``stream``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from providers import Adapter, ChatRequest
from providers.registry import Provider

from ..admission import ModelRoute
from ..body import read_body
from ..chat import SSE_HEADERS, check_vision
from ..errors import anthropic_error_event
from ..fallbacks import Fallbacks
from ..limits.limiter import UNLIMITED, Limits, Unlimited
from ..mcp import bypassed
from ..mcp.agent import ChatRunner, Direct, Events
from ..policy import ModelPolicy
from ..relay import RelayResponse, until_disconnect
from ..settings import Settings
from ..telemetry import current
from ..telemetry.exchange import Exchange
from .answer import to_message
from .native import NativeRelay
from .request import has_images, parse, to_chat
from .stream import MessageStream
from .tokens import estimate

__all__ = ["MessagesEndpoint"]


class MessagesEndpoint:
    def __init__(
        self,
        settings: Settings,
        adapters: Mapping[str, Adapter],
        policy: ModelPolicy,
        runner: ChatRunner,
        native: NativeRelay,
        limits: Limits | Unlimited = UNLIMITED,
    ) -> None:
        self.settings = settings
        self.limits = limits
        self.adapters = adapters
        self.policy = policy
        self.runner = runner
        self.direct = Direct()
        self.native = native
        self.route = ModelRoute(settings, policy)
        self.fallbacks = Fallbacks(settings, policy)

    async def create(self, request: Request) -> Response | RelayResponse:
        body, parsed, provider, model = await self._routed(request, count_only=False)
        named = self.route.named(request) or parsed["model"]
        await self.limits.admit(request.scope, parsed, len(body), provider.id, model)
        if has_images(parsed):
            check_vision(self.settings, provider, model)
        runner = self.direct if bypassed(request) else self.runner
        # An alias: on a failure before the first byte, its other deployments, in order.
        return await self.fallbacks.run(
            request, named, provider, model, lambda p, m: self._send(request, body, parsed, runner, p, m)
        )

    async def _send(
        self, request: Request, body: bytes, parsed: dict[str, Any], runner: ChatRunner, provider: Provider, model: str
    ) -> Response | RelayResponse:
        """One provider's answer: relayed natively, or translated through chat."""
        exchange = current()
        stream = parsed.get("stream") is True
        # With MCP tools to merge, even a native provider is called through chat (its adapter
        # translates back to Messages): the gateway's tool loop works on chat requests.
        if provider.serves("messages") and isinstance(runner, Direct):
            return await self.native.send(request, body, provider, model, "", stream=stream, named=parsed["model"])
        chat = ChatRequest(to_chat(parsed, provider, model), model, stream=stream)
        adapter = self.adapters[provider.name]
        if stream:
            events = await until_disconnect(request, runner.stream(adapter, chat))
            exchange.stream_started()
            translated = _translated(events, MessageStream(model, parsed.get("stop_sequences")), exchange)

            async def close() -> None:
                try:
                    await translated.aclose()
                finally:
                    await events.aclose()

            return RelayResponse(translated, close=close, headers=SSE_HEADERS, on_error=anthropic_error_event)
        answer = await until_disconnect(request, runner.chat(adapter, chat))
        exchange.answered(answer)  # OpenAI's usage, read by telemetry as for chat
        message = to_message(orjson.loads(answer), parsed.get("stop_sequences"))
        return Response(orjson.dumps(message), media_type="application/json")

    async def count_tokens(self, request: Request) -> Response | RelayResponse:
        body, parsed, provider, model = await self._routed(request, count_only=True)
        # Held to the caller's request limits (a count is a request, and costs no tokens).
        named = self.route.named(request) or parsed["model"]
        await self.limits.admit(request.scope, {"model": named}, 0, provider.id, model)
        if provider.serves("messages"):
            return await self.native.send(
                request, body, provider, model, "/count_tokens", stream=False, named=parsed["model"]
            )
        tokens = estimate(to_chat(parsed, provider, model))
        return Response(orjson.dumps({"input_tokens": tokens}), media_type="application/json")

    async def _routed(self, request: Request, *, count_only: bool) -> tuple[bytes, dict[str, Any], Provider, str]:
        """The body, parsed; the provider and its model name, which the caller may use."""
        settings = self.settings
        body = await read_body(request, settings.server_max_request_body_size, settings.server_read_timeout)
        parsed = parse(body, count_only=count_only)
        # The model named outside the body by the routing strategy wins over the body's.
        named = self.route.named(request) or parsed["model"]
        provider, model = self.route.take(request, named, None if count_only else "chat")
        return body, parsed, provider, model


async def _translated(events: Events, translator: MessageStream, exchange: Exchange) -> AsyncGenerator[bytes, None]:
    async for chunk in events:
        out = translator.feed(chunk)
        if out:
            yield out
        if translator.failure is not None:
            raise translator.failure  # the relay ends the stream with Anthropic's error event
    yield translator.end()
    exchange.usage = translator.telemetry()
    exchange.response_model = translator.model
