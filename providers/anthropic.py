"""Anthropic's Messages API (``POST {url}/messages``), translated to and from OpenAI chat.

Requests: system and developer messages become the top-level ``system`` blocks, in order; tool
results become ``tool_result`` blocks of a user turn; turns of one role are merged (Anthropic wants
them alternating); fields Anthropic has no counterpart for are dropped, and so are the sampling
fields the model does not take (the registry's ``sampling`` rules, applied before ``encode``).
``response_format`` with a JSON schema is served by a forced tool whose input is the answer,
returned as the message content.
Answers and streams come back as OpenAI completions and chunks, with stable tool-call indexes.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, ClassVar

import orjson

from .base import AdapterOptions, ChatRequest
from .errors import InvalidRequest, UpstreamStatusError, error_type_for_status
from .native import (
    DATA_URI,
    ChunkWriter,
    FunctionTool,
    StreamTranslator,
    TranslatingAdapter,
    completion,
    function_tools,
    text_of,
    tool_calls,
    usage_of,
    user_parts,
)
from .registry import Provider
from .transport import HttpClient

__all__ = ["AnthropicAdapter"]

FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}
IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
SCHEMA_TOOL_NOTE = "Respond by calling this tool: its input is your answer."
JSON_OBJECT_NOTE = "Respond with one valid JSON object and nothing else."
_TEXT_BLOCK = ("text", -1)  # a delta for a block that never started reads as text
_ERROR_TYPES = {"overloaded_error": "api_error", "api_error": "api_error", "rate_limit_error": "rate_limit_error"}


class AnthropicAdapter(TranslatingAdapter):
    """Anthropic Messages, natively: system blocks, tool use, thinking, cache-aware usage."""

    status_map: ClassVar[Mapping[int, int]] = {
        529: 503
    }  # "overloaded": a retryable unavailability, as OpenAI's SDK knows it

    def __init__(self, provider: Provider, http: HttpClient, options: AdapterOptions) -> None:
        super().__init__(provider, http, options)
        self._url = provider.endpoint(provider.spec.chat_path)

    def url(self, request: ChatRequest) -> str:
        return self._url

    def encode(self, request: ChatRequest) -> dict[str, Any]:
        return encode_request(request, self.options.default_max_tokens)

    def decode(self, data: Any, request: ChatRequest) -> dict[str, Any]:
        return decode_response(data, request)

    def translator(self, request: ChatRequest, writer: ChunkWriter) -> StreamTranslator:
        return AnthropicStream(writer, schema_tool=_schema_tool_name(request.payload))


# -- request -------------------------------------------------------------------------------------


def encode_request(request: ChatRequest, default_max_tokens: int) -> dict[str, Any]:
    payload = request.payload
    n = payload.get("n")
    if isinstance(n, int) and n > 1:
        raise InvalidRequest("Anthropic returns one choice per request; 'n' must be 1.", param="n")
    system, messages = _messages(payload["messages"])
    body: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        "max_tokens": _max_tokens(payload, default_max_tokens),
    }
    if request.stream:
        body["stream"] = True
    stop = payload.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    temperature = payload.get("temperature")
    if isinstance(temperature, int | float):
        body["temperature"] = min(max(float(temperature), 0.0), 1.0)  # OpenAI's range is 0..2
    if isinstance(payload.get("top_p"), int | float):
        body["top_p"] = payload["top_p"]
    top_k = payload.get("top_k")  # not OpenAI's, but some clients send it
    if isinstance(top_k, int) and not isinstance(top_k, bool) and top_k > 0:
        body["top_k"] = top_k
    if isinstance(payload.get("user"), str):
        body["metadata"] = {"user_id": payload["user"]}
    requested_tools = payload.get("tools")
    tools = [_tool(t) for t in function_tools(requested_tools)] if requested_tools else []
    tool_choice = _tool_choice(payload.get("tool_choice"), payload.get("parallel_tool_calls"))
    response_format = payload.get("response_format")
    if isinstance(response_format, dict):
        kind = response_format.get("type")
        if kind == "json_schema":
            if tools:
                raise InvalidRequest(
                    "Anthropic: 'response_format' json_schema cannot be combined with 'tools' (the schema is "
                    "served by a forced tool). Use one or the other.",
                    param="response_format",
                )
            schema = response_format.get("json_schema") or {}
            tools = [
                {
                    "name": _schema_tool_name(payload),
                    "description": str(schema.get("description") or SCHEMA_TOOL_NOTE),
                    "input_schema": schema.get("schema") or {"type": "object"},
                }
            ]
            tool_choice = {"type": "tool", "name": tools[0]["name"]}
        elif kind == "json_object":
            system.append({"type": "text", "text": JSON_OBJECT_NOTE})
    if tools:
        body["tools"] = tools
    if tool_choice is not None and (tools or tool_choice["type"] == "none"):
        body["tool_choice"] = tool_choice
    if system:
        body["system"] = system
    return body


def _max_tokens(payload: dict[str, Any], default: int) -> int:
    for key in ("max_completion_tokens", "max_tokens"):
        value = payload.get(key)
        if value is not None:
            if not isinstance(value, int) or value < 1:
                raise InvalidRequest(f"'{key}' must be a positive integer.", param=key)
            return value
    return default


def _messages(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """System blocks, and the turns: alternating roles, tool results inside user turns."""
    system: list[dict[str, Any]] = []
    turns: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        role = message["role"]
        if role in ("system", "developer"):
            text = text_of(message.get("content"), f"{where}.content")
            if text:
                system.append({"type": "text", "text": text})
            continue
        if role == "user":
            blocks = _user_blocks(message.get("content"), where)
        elif role == "assistant":
            blocks = _assistant_blocks(message, where)
        elif role == "tool":
            blocks = [_tool_result(message, where)]
            role = "user"
        else:
            raise InvalidRequest(f"{where}.role '{role}' is not a chat role.", param=f"{where}.role")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"].extend(blocks)
        else:
            turns.append({"role": role, "content": blocks})
    return system, turns


def _user_blocks(content: Any, where: str) -> list[dict[str, Any]]:
    if isinstance(content, str):  # the common turn, as user_parts reads it, without the part walk
        return [_text_block(content)] if content else []
    return user_parts(content, where, "Anthropic", text=_text_block, image=_image)


def _text_block(text: str) -> dict[str, Any]:
    return {"type": "text", "text": text}


def _image(url: str, where: str, detail: str | None = None) -> dict[str, Any]:
    match = DATA_URI.match(url)
    if match:
        media_type, data = match.groups()
        if media_type not in IMAGE_TYPES:
            raise InvalidRequest(
                f"{where}: Anthropic takes {', '.join(IMAGE_TYPES)} images, not {media_type}.", param=where
            )
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise InvalidRequest(f"{where}: an image must be an https URL or a base64 data: URI.", param=where)


def _assistant_blocks(message: dict[str, Any], where: str) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    text = text_of(message.get("content"), f"{where}.content")
    if text:
        blocks.append({"type": "text", "text": text})
    blocks += [
        {"type": "tool_use", "id": call.id, "name": call.name, "input": call.arguments}
        for call in tool_calls(message, where)
    ]
    return blocks


def _tool_result(message: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequest(f"{where}.tool_call_id is required for a tool message.", param=f"{where}.tool_call_id")
    return {
        "type": "tool_result",
        "tool_use_id": call_id,
        "content": text_of(message.get("content"), f"{where}.content"),
    }


def _tool(tool: FunctionTool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": tool.name, "input_schema": tool.parameters or {"type": "object", "properties": {}}}
    if tool.description:
        out["description"] = tool.description
    return out


def _tool_choice(choice: Any, parallel: Any) -> dict[str, Any] | None:
    translated: dict[str, Any] | None
    if choice is None:
        translated = {"type": "auto"} if parallel is False else None
    elif choice == "auto":
        translated = {"type": "auto"}
    elif choice == "required":
        translated = {"type": "any"}
    elif choice == "none":
        translated = {"type": "none"}
    elif isinstance(choice, dict) and isinstance(choice.get("function"), dict) and choice["function"].get("name"):
        translated = {"type": "tool", "name": choice["function"]["name"]}
    else:
        raise InvalidRequest("'tool_choice' must be auto, required, none or a named function.", param="tool_choice")
    if translated is not None and parallel is False and translated["type"] != "none":
        translated["disable_parallel_tool_use"] = True
    return translated


def _schema_tool_name(payload: dict[str, Any]) -> str | None:
    response_format = payload.get("response_format")
    if not isinstance(response_format, dict) or response_format.get("type") != "json_schema":
        return None
    name = (response_format.get("json_schema") or {}).get("name") or "json_answer"
    return re.sub(r"[^a-zA-Z0-9_-]", "_", str(name))[:64]


# -- response ------------------------------------------------------------------------------------


def _usage(usage: dict[str, Any]) -> dict[str, Any]:
    cached = int(usage.get("cache_read_input_tokens") or 0)
    written = int(usage.get("cache_creation_input_tokens") or 0)
    prompt = int(usage.get("input_tokens") or 0) + cached + written
    return usage_of(prompt, int(usage.get("output_tokens") or 0), cached=cached, cache_write=written)


def decode_response(data: dict[str, Any], request: ChatRequest) -> dict[str, Any]:
    schema_tool = _schema_tool_name(request.payload)
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    for block in data.get("content") or []:
        kind = block.get("type")
        if kind == "text":
            texts.append(block.get("text", ""))
        elif kind == "thinking":
            reasoning.append(block.get("thinking", ""))
        elif kind == "tool_use" and block.get("name") == schema_tool:
            texts.append(orjson.dumps(block.get("input") or {}).decode())
        elif kind == "tool_use":
            arguments = orjson.dumps(block.get("input") or {}).decode()
            calls.append(
                {"id": block["id"], "type": "function", "function": {"name": block["name"], "arguments": arguments}}
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    finish = FINISH_REASONS.get(data.get("stop_reason") or "end_turn", "stop")
    if finish == "tool_calls" and not calls:
        finish = "stop"  # the forced schema tool is the answer, not a call
    return completion(
        str(data.get("id") or ""),
        str(data.get("model") or request.model),
        message,
        finish,
        _usage(data.get("usage") or {}),
    )


# -- stream --------------------------------------------------------------------------------------


class AnthropicStream(StreamTranslator):
    """Anthropic stream events to OpenAI chunks; each ``tool_use`` block gets the next tool index."""

    def __init__(self, writer: ChunkWriter, schema_tool: str | None = None) -> None:
        self.writer = writer
        self.schema_tool = schema_tool
        self.blocks: dict[int, tuple[str, int]] = {}  # content block index -> (kind, tool index)
        self.tools = 0
        self.usage: dict[str, Any] = {}
        self.finish = "stop"
        self.stopped = False  # a message_delta gave the stop reason (and the final usage)

    def close(self) -> Iterable[bytes]:
        """A stream closed after the stop reason but before ``message_stop`` had said everything."""
        if not self.stopped or self.complete:
            return ()
        self.complete = True
        return self.writer.ending(self.finish, _usage(self.usage))

    def feed(self, event: str, data: bytes) -> Iterable[bytes]:
        message = orjson.loads(data)
        kind = message.get("type", event)
        w = self.writer
        # The deltas first: all but a handful of a stream's events are text deltas.
        if kind == "content_block_delta":
            delta = message.get("delta") or {}
            block_kind, tool = self.blocks.get(int(message.get("index", 0)), _TEXT_BLOCK)
            delta_type = delta.get("type")
            if delta_type == "text_delta":
                return [w.content(delta.get("text", ""))]
            if delta_type == "thinking_delta":
                return [w.reasoning(delta.get("thinking", ""))]
            if delta_type == "input_json_delta" and delta.get("partial_json"):
                if block_kind == "schema":
                    return [w.content(delta["partial_json"])]
                return [w.tool_arguments(tool, delta["partial_json"])]
            return []  # signature_delta, citations: nothing OpenAI-shaped to say
        if kind == "message_start":
            start = message.get("message") or {}
            w.id = str(start.get("id") or w.id)
            w.model = str(start.get("model") or w.model)
            self.usage.update(start.get("usage") or {})
            return [w.role()]
        if kind == "content_block_start":
            block = message.get("content_block") or {}
            index = int(message.get("index", 0))
            if block.get("type") == "tool_use" and block.get("name") != self.schema_tool:
                self.blocks[index] = ("tool", self.tools)
                self.tools += 1
                return [w.tool_start(self.tools - 1, str(block.get("id")), str(block.get("name")))]
            self.blocks[index] = ("schema" if block.get("type") == "tool_use" else str(block.get("type")), -1)
            text = block.get("text") if block.get("type") == "text" else None
            return [w.content(text)] if text else []
        if kind == "message_delta":
            reason = (message.get("delta") or {}).get("stop_reason")
            if reason:
                self.stopped = True
                self.finish = FINISH_REASONS.get(reason, "stop")
                if self.finish == "tool_calls" and self.tools == 0:
                    self.finish = "stop"
            self.usage.update({k: v for k, v in (message.get("usage") or {}).items() if v is not None})
            return []
        if kind == "message_stop":
            self.complete = True
            return w.ending(self.finish, _usage(self.usage))
        if kind == "error":
            error = message.get("error") or {}
            error_type = str(error.get("type") or "api_error")
            status = 503 if error_type == "overloaded_error" else 500
            raise UpstreamStatusError(
                status,
                f"anthropic: {error.get('message') or 'the stream failed'}",
                type=_ERROR_TYPES.get(error_type, error_type_for_status(status)),
                code=error_type,
            )
        return []  # ping, content_block_stop, and events added after this was written
