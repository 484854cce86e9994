"""``POST /v1/chat/completions``: validate, route to the provider's adapter, answer in JSON or SSE."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from providers import Adapter, ChatRequest
from providers.errors import InvalidRequest

from .auth import identity_of
from .body import read_body
from .errors import error_event
from .mcp_agent import ChatRunner, Direct
from .policy import ModelPolicy
from .relay import RelayResponse, until_disconnect
from .routing import resolve
from .settings import Settings

__all__ = ["ChatEndpoint", "validate_chat"]

SSE_HEADERS = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
)
DONE_EVENT = b"data: [DONE]\n\n"


class ChatEndpoint:
    """The chat route, with the settings and one adapter per configured provider."""

    def __init__(
        self, settings: Settings, adapters: Mapping[str, Adapter], policy: ModelPolicy, runner: ChatRunner
    ) -> None:
        self.settings = settings
        self.adapters = adapters
        self.policy = policy
        self.runner = runner
        self.direct = Direct()
        self.model_header = settings.routing_header_name if settings.routing_strategy == "header" else None

    async def handle(self, request: Request) -> Response | RelayResponse:
        settings = self.settings
        body = await read_body(request, settings.server_max_request_body_size, settings.server_read_timeout)
        payload = validate_chat(body, self._routed_model(request))
        provider, model = resolve(payload["model"], request.query_params.get("provider"), settings.providers)
        self.policy.check(provider.id, model, identity_of(request.scope))
        if not settings.enable_vision and _has_image(payload["messages"]):
            raise InvalidRequest(
                "This request contains image content, and vision is disabled on this gateway. "
                "Set ENABLE_VISION=true to allow images.",
                param="messages",
                code="vision_disabled",
            )
        adapter = self.adapters[provider.id]
        chat = ChatRequest(payload, model, stream=payload.get("stream") is True)
        runner = self.direct if request.headers.get("x-mcp-bypass", "").lower() == "true" else self.runner
        if chat.stream:
            events = await until_disconnect(request, runner.stream(adapter, chat))
            return RelayResponse(
                events, close=events.aclose, headers=SSE_HEADERS, on_error=error_event, tail=DONE_EVENT
            )
        answer = await until_disconnect(request, runner.chat(adapter, chat))
        return Response(answer, media_type="application/json")

    def _routed_model(self, request: Request) -> str | None:
        """The model named outside the body by the routing strategy (it wins over the body's);
        checked by ``resolve`` like the body's, so a malformed one is a 400, never a fallback."""
        routed = request.path_params.get("model")
        if routed is None and self.model_header is not None:
            routed = request.headers.get(self.model_header)
        return routed or None


def validate_chat(body: bytes, routed_model: str | None = None) -> dict[str, Any]:
    """The parsed request, or a 400 naming the first thing wrong with it."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise InvalidRequest(f"The request body is not valid JSON: {exc}.", code="invalid_json") from None
    if not isinstance(payload, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    if routed_model:
        payload["model"] = routed_model
    model = payload.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("'model' is required: a non-empty string such as openai/gpt-4o.", param="model")
    messages = payload.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' is required: a non-empty list of messages.", param="messages")
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise InvalidRequest(
                f"messages[{index}] must be an object with a string 'role'.", param=f"messages[{index}]"
            )
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be true or false.", param="stream")
    return payload


def _has_image(messages: list[dict[str, Any]]) -> bool:
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") == "image_url":
                    return True
    return False
