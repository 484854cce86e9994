"""``POST /v1/chat/completions``: validate, route to the provider's adapter, answer in JSON or SSE."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from providers import Adapter, ChatRequest
from providers.errors import InvalidRequest
from providers.json_codec import load_json
from providers.model_facts import facts_for
from providers.registry import Provider

from .admission import ModelRoute
from .body import read_body
from .errors import error_event
from .fallbacks import Fallbacks
from .limits.limiter import UNLIMITED, Limits, Unlimited
from .mcp import bypassed
from .mcp.agent import ChatRunner, Direct
from .policy import ModelPolicy
from .relay import RelayResponse, until_disconnect
from .settings import Settings
from .telemetry import current

__all__ = ["ChatEndpoint", "check_vision", "validate_chat"]

log = logging.getLogger("polyrelay")

SSE_HEADERS = (
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
)
DONE_EVENT = b"data: [DONE]\n\n"


class ChatEndpoint:
    """The chat route, with the settings and one adapter per configured provider."""

    def __init__(
        self,
        settings: Settings,
        adapters: Mapping[str, Adapter],
        policy: ModelPolicy,
        runner: ChatRunner,
        limits: Limits | Unlimited = UNLIMITED,
    ) -> None:
        self.settings = settings
        self.limits = limits
        self.adapters = adapters
        self.policy = policy
        self.runner = runner
        self.direct = Direct()
        self.route = ModelRoute(settings, policy)
        self.fallbacks = Fallbacks(settings, policy)

    async def handle(self, request: Request) -> Response | RelayResponse:
        settings = self.settings
        body = await read_body(request, settings.server_max_request_body_size, settings.server_read_timeout)
        payload = validate_chat(body, self.route.named(request))
        provider, model = self.route.take(request, payload["model"], "chat")
        if _has_image(payload["messages"]):
            check_vision(settings, provider, model)
        # Held to the limits of the name asked (an alias) and of the provider/model it resolved to.
        await self.limits.admit(request.scope, payload, len(body), provider.id, model)
        runner = self.runner
        if not isinstance(runner, Direct) and bypassed(request):  # with MCP on, X-MCP-Bypass skips it
            runner = self.direct
        # An alias: on a failure before the first byte, its other deployments, in order.
        return await self.fallbacks.run(
            request, payload["model"], provider, model, lambda p, m: self._answer(request, runner, payload, p, m)
        )

    async def _answer(
        self, request: Request, runner: ChatRunner, payload: dict[str, Any], provider: Provider, model: str
    ) -> Response | RelayResponse:
        """One provider's answer, JSON or the start of a stream (its first event not yet sent)."""
        exchange = current()
        adapter = self.adapters[provider.name]
        chat = ChatRequest(payload, model, stream=payload.get("stream") is True)
        if chat.stream:
            events = await until_disconnect(request, runner.stream(adapter, chat))
            exchange.stream_started()
            return RelayResponse(
                events, close=events.aclose, headers=SSE_HEADERS, on_error=error_event, tail=DONE_EVENT
            )
        answer = await until_disconnect(request, runner.chat(adapter, chat))
        exchange.answered(answer)
        return Response(answer, media_type="application/json")


def validate_chat(body: bytes, routed_model: str | None = None) -> dict[str, Any]:
    """The parsed request, or a 400 naming the first thing wrong with it."""
    payload = load_json(body)
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
        _check_message(message, index)
    stream = payload.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be true or false.", param="stream")
    return payload


# What openapi.yaml declares for a message (tests/test_contract.py holds the two together).
ROLES = ("system", "developer", "user", "assistant", "tool")
_ROLES = frozenset(ROLES)


def _check_message(message: Any, index: int) -> None:
    """One message's shape, as the spec's ``Message`` says; the parts' contents are the adapters' job.
    A valid message costs a few dict lookups; the field's path is written only for an error."""
    if type(message) is not dict:
        raise InvalidRequest(f"messages[{index}] must be an object with a string 'role'.", param=f"messages[{index}]")
    role = message.get("role")
    if type(role) is not str or role not in _ROLES:
        raise _bad(index, "role", f"must be one of {', '.join(ROLES)}; got {role!r}", code="invalid_value")
    content = message.get("content")
    if content is not None and type(content) is not str:
        if type(content) is not list:
            raise _bad(index, "content", "must be a string, null or a list of parts")
        for i, part in enumerate(content):
            if type(part) is not dict or type(part.get("type")) is not str:
                raise _bad(index, f"content[{i}]", "must be an object with a string 'type'")
    if len(message) == 2 and content is not None and role != "tool":
        return  # role and content only: nothing else to look at
    name = message.get("name")
    if name is not None and type(name) is not str:
        raise _bad(index, "name", "must be a string")
    calls = message.get("tool_calls")
    if calls is not None:
        if type(calls) is not list:
            raise _bad(index, "tool_calls", "must be a list of tool calls")
        for i, call in enumerate(calls):
            _check_tool_call(call, index, f"tool_calls[{i}]")
    call_id = message.get("tool_call_id")
    if (role == "tool" or call_id is not None) and type(call_id) is not str:
        raise _bad(index, "tool_call_id", "must be the string id of the tool call this message answers")


def _check_tool_call(call: Any, index: int, where: str) -> None:
    if type(call) is not dict:
        raise _bad(index, where, "must be an object with an id, a type and a function")
    if type(call.get("id")) is not str:
        raise _bad(index, f"{where}.id", "must be a string")
    if call.get("type") != "function":
        raise _bad(index, f"{where}.type", "must be 'function'")
    function = call.get("function")
    if type(function) is not dict:
        raise _bad(index, f"{where}.function", "must be an object with a name and arguments")
    if type(function.get("name")) is not str:
        raise _bad(index, f"{where}.function.name", "must be a string")
    if type(function.get("arguments")) is not str:
        raise _bad(index, f"{where}.function.arguments", """must be a string of JSON, such as '{"city": "Paris"}'""")


def _bad(index: int, field: str, problem: str, code: str | None = None) -> InvalidRequest:
    where = f"messages[{index}].{field}"
    return InvalidRequest(f"{where} {problem}.", param=where, code=code)


def check_vision(settings: Settings, provider: Provider, model: str, param: str = "messages") -> None:
    """A 400 for a request with images when vision is off, or when the registry's facts about the
    model (``model_info``, as ``/v1/models?include=`` shows them) say it takes no images."""
    if not settings.enable_vision:
        raise InvalidRequest(
            "This request contains image content, and vision is disabled on this gateway. "
            "Set ENABLE_VISION=true to allow images.",
            param=param,
            code="vision_disabled",
        )
    facts = facts_for(provider.spec.model_info, model)
    if facts is None:
        return  # nothing known: the provider decides
    takes = (
        "image" in facts.input_modalities
        if facts.input_modalities
        else ("vision" in facts.capabilities if facts.capabilities else True)
    )
    if not takes:
        raise InvalidRequest(
            f"The model {provider.id}/{model} takes no images (its facts in the provider registry); "
            "send text only, or choose a model with vision (GET /v1/models?include=capabilities).",
            param=param,
            code="model_not_multimodal",
        )


def _has_image(messages: list[dict[str, Any]]) -> bool:
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            for part in content:
                if isinstance(part, dict) and part.get("type") == "image_url":
                    return True
    return False
