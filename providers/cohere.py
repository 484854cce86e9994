"""Cohere's v2 Chat API (``POST {url}/v2/chat``), translated to and from OpenAI chat.

Requests: messages keep their order (Cohere takes system messages and repeated roles in
``messages``); developer messages become system ones; an assistant's text next to its tool calls is
sent as Cohere's ``tool_plan``. ``tool_choice`` "required" and "none" become ``REQUIRED`` and
``NONE``. Cohere cannot name one tool, so a named function is sent as the only tool, ``REQUIRED``.
``response_format`` becomes Cohere's JSON mode, with the schema when one is given (Cohere refuses it
next to tools, so that is a 400 here). Fields Cohere has no counterpart for are dropped
(``logprobs``, ``user``, ``logit_bias``, ``parallel_tool_calls``, ``stream_options``...).

Answers and streams come back as OpenAI completions and chunks, with stable tool-call indexes.
Thinking parts and the ``tool_plan`` (the model's plan before its calls) are ``reasoning_content``.
A ``TIMEOUT`` finish is "length": the answer was cut short. An ``ERROR`` finish, or an error at the
end of a stream, is a 500: what came before it cannot be trusted.

Embeddings go to ``/v2/embed`` (``cohere_embeddings`` translates them).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, TypeGuard

import orjson

from . import cohere_embeddings
from .base import ChatRequest
from .embeddings import EmbeddingRequest, Vectors, embedding_list, in_batches
from .errors import InvalidRequest, UpstreamStatusError, UpstreamUnreachable
from .native import (
    ChunkWriter,
    FunctionTool,
    StreamTranslator,
    TranslatingAdapter,
    completion,
    function_tools,
    new_id,
    text_of,
    tool_calls,
    usage_of,
    user_parts,
)

__all__ = ["CohereAdapter"]

FINISH_REASONS = {
    "COMPLETE": "stop",
    "STOP_SEQUENCE": "stop",
    "MAX_TOKENS": "length",
    "TIMEOUT": "length",
    "TOOL_CALL": "tool_calls",
}
IMAGE_DETAILS = ("auto", "low", "high")
GENERATION_FAILED = "cohere: the model failed while generating its answer (finish_reason ERROR); try again."


class CohereAdapter(TranslatingAdapter):
    """Cohere v2 Chat, natively: system messages in order, tool calls, thinking, cache-aware usage."""

    def url(self, request: ChatRequest) -> str:
        return self.provider.endpoint(self.provider.spec.chat_path)

    def encode(self, request: ChatRequest) -> dict[str, Any]:
        return encode_request(request)

    def decode(self, data: Any, request: ChatRequest) -> dict[str, Any]:
        return decode_response(data, request)

    def translator(self, request: ChatRequest, writer: ChunkWriter) -> StreamTranslator:
        return CohereStream(writer)

    async def embed(self, request: EmbeddingRequest) -> bytes:
        if not self.provider.serves("embeddings"):
            return await super().embed(request)
        texts = request.texts_for("Cohere")
        request.input_type("Cohere")  # checked once, before any call is made
        url = self.provider.endpoint_url("embeddings")

        async def batch(chunk: list[str]) -> tuple[Vectors, int]:
            data = await self._post_json(url, cohere_embeddings.encode_batch(chunk, request), "embeddings")
            return cohere_embeddings.decode_batch(data, len(chunk))

        vectors, tokens = await in_batches(texts, cohere_embeddings.BATCH_SIZE, batch)
        return embedding_list(vectors, request.model, tokens, base64_encoded=request.base64)


# -- request -------------------------------------------------------------------------------------


def encode_request(request: ChatRequest) -> dict[str, Any]:
    payload = request.payload
    n = payload.get("n")
    if isinstance(n, int) and n > 1:
        raise InvalidRequest("Cohere returns one choice per request; 'n' must be 1.", param="n")
    body: dict[str, Any] = {"model": request.model, "messages": _messages(payload["messages"])}
    if request.stream:
        body["stream"] = True
    max_tokens = _max_tokens(payload)
    if max_tokens is not None:
        body["max_tokens"] = max_tokens
    stop = payload.get("stop")
    if stop:
        body["stop_sequences"] = [stop] if isinstance(stop, str) else list(stop)
    if _is_number(payload.get("temperature")):
        body["temperature"] = payload["temperature"]  # Cohere takes any non-negative value, as OpenAI
    if _is_number(payload.get("top_p")):
        body["p"] = min(max(float(payload["top_p"]), 0.01), 0.99)  # Cohere's documented range
    top_k = payload.get("top_k")  # not OpenAI's, but some clients send it
    if isinstance(top_k, int) and not isinstance(top_k, bool):
        body["k"] = min(max(top_k, 0), 500)  # Cohere's documented range
    if isinstance(payload.get("seed"), int) and not isinstance(payload["seed"], bool):
        body["seed"] = payload["seed"]
    for key in ("frequency_penalty", "presence_penalty"):
        value = payload.get(key)
        if _is_number(value):
            # OpenAI's range is -2..2, Cohere's 0..1. Zero is Cohere's default and is left out: some
            # models refuse a request that sets both penalties, and clients often send both as 0.
            value = min(max(float(value), 0.0), 1.0)
            if value:
                body[key] = value
    tools = [_tool(t) for t in function_tools(payload.get("tools"))]
    tools, tool_choice = _tool_choice(payload.get("tool_choice"), tools)
    if tools:
        body["tools"] = tools
        if tool_choice is not None:
            body["tool_choice"] = tool_choice
    response_format = _response_format(payload.get("response_format"))
    if response_format is not None:
        if tools:
            raise InvalidRequest(
                "Cohere: 'response_format' cannot be combined with 'tools' (its JSON mode does not support "
                "them). Use one or the other.",
                param="response_format",
            )
        body["response_format"] = response_format
    return body


def _is_number(value: Any) -> TypeGuard[int | float]:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _max_tokens(payload: dict[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = payload.get(key)
        if value is not None:
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise InvalidRequest(f"'{key}' must be a positive integer.", param=key)
            return value
    return None  # Cohere's default is the model's longest answer


def _messages(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        role = message["role"]
        translated: dict[str, Any] | None
        if role in ("system", "developer"):
            text = text_of(message.get("content"), f"{where}.content")
            translated = {"role": "system", "content": text} if text else None
        elif role == "user":
            translated = _user(message.get("content"), where)
        elif role == "assistant":
            translated = _assistant(message, where)
        elif role == "tool":
            translated = _tool_result(message, where)
        else:
            raise InvalidRequest(f"{where}.role '{role}' is not a chat role.", param=f"{where}.role")
        if translated is not None:
            out.append(translated)
    return out


def _user(content: Any, where: str) -> dict[str, Any] | None:
    if isinstance(content, str):
        return {"role": "user", "content": content} if content else None
    parts = user_parts(content, where, "Cohere", text=lambda t: {"type": "text", "text": t}, image=_image)
    return {"role": "user", "content": parts} if parts else None


def _image(url: str, where: str, detail: str | None = None) -> dict[str, Any]:
    if not url.startswith(("https://", "http://", "data:")):
        raise InvalidRequest(f"{where}: an image must be an https URL or a base64 data: URI.", param=where)
    return {
        "type": "image_url",
        "image_url": {"url": url, "detail": detail} if detail in IMAGE_DETAILS else {"url": url},
    }


def _assistant(message: dict[str, Any], where: str) -> dict[str, Any] | None:
    text = text_of(message.get("content"), f"{where}.content")
    calls = [
        {
            "id": call.id,
            "type": "function",
            "function": {
                "name": call.name,
                # Cohere wants the arguments as a JSON string, like OpenAI: the client's own is kept as is.
                "arguments": call.raw_arguments
                if isinstance(call.raw_arguments, str) and call.raw_arguments
                else orjson.dumps(call.arguments).decode(),
            },
        }
        for call in tool_calls(message, where)
    ]
    if not calls:
        return {"role": "assistant", "content": text} if text else None
    translated: dict[str, Any] = {"role": "assistant", "tool_calls": calls}
    if text:
        translated["tool_plan"] = text  # where Cohere puts the words that come with its calls
    return translated


def _tool_result(message: dict[str, Any], where: str) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or not call_id:
        raise InvalidRequest(f"{where}.tool_call_id is required for a tool message.", param=f"{where}.tool_call_id")
    return {"role": "tool", "tool_call_id": call_id, "content": text_of(message.get("content"), f"{where}.content")}


def _tool(tool: FunctionTool) -> dict[str, Any]:
    out: dict[str, Any] = {"name": tool.name, "parameters": tool.parameters or {"type": "object", "properties": {}}}
    if tool.description:
        out["description"] = tool.description
    return {"type": "function", "function": out}


def _tool_choice(choice: Any, tools: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], str | None]:
    """The tools to send and Cohere's ``tool_choice`` (None: the model decides)."""
    if choice is None or choice == "auto":
        return tools, None
    if choice == "required":
        return tools, "REQUIRED"
    if choice == "none":
        return tools, "NONE"
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict) and choice["function"].get("name"):
        name = choice["function"]["name"]
        named = [t for t in tools if t["function"]["name"] == name]
        if not named:
            raise InvalidRequest(
                f"'tool_choice' names the function '{name}', which is not in 'tools'.", param="tool_choice"
            )
        return named, "REQUIRED"
    raise InvalidRequest("'tool_choice' must be auto, required, none or a named function.", param="tool_choice")


def _response_format(response_format: Any) -> dict[str, Any] | None:
    if response_format is None:
        return None
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if kind == "text":
        return None  # Cohere's default
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema")
        return {"type": "json_object", "json_schema": schema} if schema else {"type": "json_object"}
    raise InvalidRequest("'response_format' must be text, json_object or json_schema.", param="response_format")


# -- response ------------------------------------------------------------------------------------


def _object(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _usage(usage: Any) -> dict[str, Any] | None:
    """OpenAI usage from Cohere's: the tokens the model saw; what was billed when they are absent."""
    if not isinstance(usage, dict):
        return None
    tokens, billed = _object(usage.get("tokens")), _object(usage.get("billed_units"))

    def count(key: str) -> int:
        value = tokens.get(key)
        return int((billed.get(key) if value is None else value) or 0)  # numbers come as floats

    cached = usage.get("cached_tokens")  # part of the input tokens, as OpenAI counts them
    return usage_of(count("input_tokens"), count("output_tokens"), cached=None if cached is None else int(cached))


def _single(value: Any) -> dict[str, Any]:
    """A stream event's one tool call: documented as an object; a list of one is read the same."""
    if isinstance(value, list):
        value = value[0] if value else None
    return _object(value)


def _tool_call(call: Any) -> dict[str, Any]:
    call = _object(call)
    function = _object(call.get("function"))
    arguments = function.get("arguments")
    if not isinstance(arguments, str) or not arguments:
        arguments = orjson.dumps(arguments or {}).decode()
    return {
        "id": str(call.get("id") or new_id("call_")),
        "type": "function",
        "function": {"name": str(function.get("name") or ""), "arguments": arguments},
    }


def _reasoning(thinking: str, plan: str) -> str:
    """Thinking, then the tool plan, a blank line between them (in answers as in streams)."""
    return f"{thinking}\n\n{plan}" if thinking and plan else thinking or plan


def decode_response(data: Any, request: ChatRequest) -> dict[str, Any]:
    if not isinstance(data, dict):
        raise UpstreamUnreachable("cohere: the answer is not a chat response.")
    if data.get("finish_reason") == "ERROR":
        raise UpstreamStatusError(500, GENERATION_FAILED)
    answer = _object(data.get("message"))
    content = answer.get("content")
    parts = [{"type": "text", "text": content}] if isinstance(content, str) else content
    texts: list[str] = []
    thinking: list[str] = []
    for part in parts if isinstance(parts, list) else []:
        kind = _object(part).get("type")
        if kind == "text":
            texts.append(str(part.get("text") or ""))
        elif kind == "thinking":
            thinking.append(str(part.get("thinking") or ""))
    calls = [_tool_call(c) for c in answer.get("tool_calls") or []]
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    reasoning = _reasoning("".join(thinking), str(answer.get("tool_plan") or ""))
    if reasoning:
        message["reasoning_content"] = reasoning
    finish = FINISH_REASONS.get(data.get("finish_reason") or "COMPLETE", "stop")
    if finish == "tool_calls" and not calls:
        finish = "stop"
    return completion(
        str(data.get("id") or new_id("chatcmpl-")), request.model, message, finish, _usage(data.get("usage"))
    )


# -- stream --------------------------------------------------------------------------------------


class CohereStream(StreamTranslator):
    """Cohere stream events to OpenAI chunks; each ``tool-call-start`` gets the next tool index."""

    def __init__(self, writer: ChunkWriter) -> None:
        self.writer = writer
        self.calls: dict[int, int] = {}  # Cohere's tool-call index -> ours
        self.tools = 0
        self.thought = False  # thinking was sent: the tool plan that follows starts after a blank line
        self.planned = False

    def feed(self, event: str, data: bytes) -> Iterable[bytes]:
        if data.strip() == b"[DONE]":
            return []  # not documented for Cohere, but its SDK stops on one
        try:
            message = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise UpstreamUnreachable("cohere: a stream event is not JSON.") from exc
        if not isinstance(message, dict):
            return []
        kind = message.get("type", event)  # the SSE event name is optional; the data names its type
        delta = _object(message.get("delta"))
        said = _object(delta.get("message"))
        w = self.writer
        if kind == "message-start":
            w.id = str(message.get("id") or w.id)
            return [w.role()]
        if kind in ("content-start", "content-delta"):
            content = _object(said.get("content"))
            if content.get("thinking"):
                self.thought = True
                return [w.reasoning(str(content["thinking"]))]
            if content.get("text"):
                return [w.content(str(content["text"]))]
            return []
        if kind == "tool-plan-delta":
            plan = str(said.get("tool_plan") or "")
            if not plan:
                return []
            if self.thought and not self.planned:
                plan = "\n\n" + plan
            self.planned = True
            return [w.reasoning(plan)]
        if kind == "tool-call-start":
            call = _single(said.get("tool_calls"))
            function = _object(call.get("function"))
            arguments = function.get("arguments")  # "" at the start; the deltas carry them
            self.calls[int(message.get("index", self.tools))] = self.tools
            self.tools += 1
            call_id = str(call.get("id") or new_id("call_"))
            name = str(function.get("name") or "")
            return [w.tool_start(self.tools - 1, call_id, name, arguments if isinstance(arguments, str) else "")]
        if kind == "tool-call-delta":
            fragment = _object(_single(said.get("tool_calls")).get("function")).get("arguments")
            tool = self.calls.get(int(message.get("index", self.tools - 1)))
            if tool is None or not isinstance(fragment, str) or not fragment:
                return []
            return [w.tool_arguments(tool, fragment)]
        if kind == "message-end":
            if delta.get("error"):
                raise UpstreamStatusError(500, f"cohere: {delta['error']}")
            reason = delta.get("finish_reason")
            if reason == "ERROR":
                raise UpstreamStatusError(500, GENERATION_FAILED)
            finish = FINISH_REASONS.get(reason or "COMPLETE", "stop")
            if finish == "tool_calls" and self.tools == 0:
                finish = "stop"
            self.complete = True
            return w.ending(finish, _usage(delta.get("usage")))
        return []  # content-end, tool-call-end, citations, debug, and events added after this was written
