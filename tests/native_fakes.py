"""Fakes of the native protocols (Anthropic Messages, Gemini, Cohere v2), shaped after the providers'
published examples. Each validates the request it gets against the provider's official SDK types
(a 422 names what is wrong), then acts out the scenario named by the model:

    echo (any name)   "You said: <last user text>" (+ " [N images]" when the turn has images);
                      after a tool result, "Tool said: <result>"
    tool              a call to every tool offered, each with {"city": "Paris"}; also what any
                      request that forces a tool gets
    error-<status>    the protocol's error answer with that status
    cut               a stream that stops in the middle of its answer
    thinking          reasoning first, then the echo
    refusal, long     (Anthropic) the echo, stopped for refusal / max_tokens
    overloaded-stream (Anthropic) a stream that starts, then reports an overloaded error
    blocked, long     (Gemini) a prompt blocked for safety / an answer stopped at MAX_TOKENS
    midstream-error   (Gemini) a stream that starts, then carries an error event
    leak              the echo replaced by "Your key is <the credential received>", a stream writing
                      each event that quotes it in two TCP writes cut mid-key
    leak-error        a 429 whose message and Retry-After quote the credential; streaming, one event
                      then the protocol's in-stream error quoting it
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections.abc import Iterator
from typing import Any

import orjson
import pydantic
from aiohttp import web

USAGE = {"input_tokens": 5, "cache_read_input_tokens": 4, "cache_creation_input_tokens": 2, "output_tokens": 7}
ARGS = {"city": "Paris"}


def force(value: Any) -> Any:
    """Walk a validated value so lazily validated iterables (pydantic's ValidatorIterator) are checked."""
    if isinstance(value, dict):
        return {k: force(v) for k, v in value.items()}
    if isinstance(value, str | bytes):
        return value
    if hasattr(value, "__iter__") and not isinstance(value, pydantic.BaseModel):
        return [force(v) for v in value]
    return value


def received_credential(request: web.Request) -> str:
    """The credential header's value as the fake received it, for the scenarios that quote it back."""
    for name in ("Authorization", "x-api-key", "x-goog-api-key"):
        if name in request.headers:
            return request.headers[name]
    return ""


def received_key(request: web.Request) -> str:
    return received_credential(request).removeprefix("Bearer ")


async def write_split(response: web.StreamResponse, data: bytes, secret: str | None) -> None:
    """``data``, in two TCP writes cut in the middle of ``secret`` when it holds it: the pause between
    them makes the gateway read the secret in two pieces."""
    at = data.find(secret.encode()) if secret else -1
    if at == -1:
        await response.write(data)
        return
    cut = at + len(secret or "") // 2
    await response.write(data[:cut])
    await asyncio.sleep(0.02)
    await response.write(data[cut:])


async def sse(
    request: web.Request, events: Iterator[bytes], *, cut: bool = False, split: str | None = None
) -> web.StreamResponse:
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    events = list(events)
    for i, event in enumerate(events):
        if cut and i == len(events) // 2:
            await response.write(event[: len(event) // 2])
            await asyncio.sleep(0.01)
            request.transport.close()  # type: ignore[union-attr]
            return response
        await write_split(response, event, split)
    return response


# -- Anthropic -----------------------------------------------------------------------------------


class Anthropic:
    """``POST /messages``: checked with ``anthropic.types.MessageCreateParams*``."""

    def __init__(self) -> None:
        from anthropic.types.message_create_params import MessageCreateParamsBase, MessageCreateParamsNonStreaming

        self.fields = set(MessageCreateParamsBase.__annotations__) | {"stream"}
        self.adapter = pydantic.TypeAdapter(MessageCreateParamsNonStreaming)

    def validate(self, body: dict[str, Any]) -> str | None:
        unknown = set(body) - self.fields
        if unknown:
            return f"unknown fields {sorted(unknown)}"
        try:
            force(self.adapter.validate_python({k: v for k, v in body.items() if k != "stream"}))
        except pydantic.ValidationError as exc:
            return str(exc)
        roles = [m["role"] for m in body["messages"]]
        if any(a == b for a, b in itertools.pairwise(roles)) or roles[:1] != ["user"]:
            return f"roles must alternate starting with user: {roles}"
        return None

    def error(self, status: int, message: str, retry_after: str = "9") -> web.Response:
        kind = {
            400: "invalid_request_error",
            401: "authentication_error",
            429: "rate_limit_error",
            529: "overloaded_error",
        }
        body = {"type": "error", "error": {"type": kind.get(status, "api_error"), "message": message}}
        headers = {"retry-after": retry_after} if status in (429, 529) else None
        return web.json_response(body, status=status, headers=headers)

    def blocks(self, model: str, body: dict[str, Any]) -> tuple[list[dict[str, Any]], str]:
        """The answer's content blocks and stop reason."""
        if model.startswith("agent"):
            from .fakes import agent_turn

            first = next(
                b["text"] for m in body["messages"] if m["role"] == "user" for b in m["content"] if b["type"] == "text"
            )
            last = body["messages"][-1]["content"]
            results = [str(b["content"]) for b in last if b["type"] == "tool_result"]
            turn = sum(m["role"] == "assistant" for m in body["messages"])
            calls, text = agent_turn(model, first, results, turn)
            if calls:
                return [
                    {"type": "tool_use", "id": f"toolu_{turn}_{i}", "name": n, "input": orjson.loads(a)}
                    for i, (n, a) in enumerate(calls)
                ], "tool_use"
            return [{"type": "text", "text": text}], "end_turn"
        choice = body.get("tool_choice") or {}
        tools = body.get("tools") or []
        if choice.get("type") == "tool":
            tools = [t for t in tools if t["name"] == choice["name"]]
        if (model == "tool" or choice.get("type") == "tool") and tools:
            calls = [
                {"type": "tool_use", "id": f"toolu_{i}", "name": t["name"], "input": ARGS} for i, t in enumerate(tools)
            ]
            return calls, "tool_use"
        if any("JSON object" in block["text"] for block in body.get("system", [])):
            return [{"type": "text", "text": orjson.dumps(ARGS).decode()}], "end_turn"
        last = body["messages"][-1]["content"]
        results = [b for b in last if b["type"] == "tool_result"]
        if results:
            text = f"Tool said: {results[-1]['content']}"
        else:
            images = sum(b["type"] == "image" for b in last)
            text = "You said: " + " ".join(b["text"] for b in last if b["type"] == "text")
            text += f" [{images} images]" if images else ""
        blocks = [{"type": "text", "text": text}]
        if model == "thinking":
            blocks.insert(0, {"type": "thinking", "thinking": "Let me think.", "signature": "sig"})
        return blocks, "end_turn"

    async def handle(self, request: web.Request, path: str, raw: bytes) -> web.StreamResponse | None:
        if path != "/messages" or request.method != "POST":
            return None
        body = orjson.loads(raw)
        problem = self.validate(body)
        if problem:
            return self.error(422, f"request does not match the Anthropic SDK types: {problem}")
        model = body["model"]
        said = received_credential(request)
        if model.startswith("error-"):
            return self.error(int(model.removeprefix("error-")), f"fake anthropic refused with {model}")
        if model == "leak-error" and not body.get("stream"):
            return self.error(429, f"fake anthropic refused the key {said}", retry_after=said)
        blocks, stop = self.blocks(model, body)
        if model == "leak":
            blocks = [{"type": "text", "text": f"Your key is {said}"}]
        stop = {"refusal": "refusal", "long": "max_tokens"}.get(model, stop)
        message = {
            "id": "msg_fake",
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": blocks,
            "stop_reason": stop,
            "stop_sequence": None,
            "usage": USAGE,
        }
        if not body.get("stream"):
            return web.json_response(message)
        events = self.events(message)
        if model in ("overloaded-stream", "leak-error"):
            said = f"Overloaded, key {said}" if model == "leak-error" else "Overloaded"
            error = {"type": "error", "error": {"type": "overloaded_error", "message": said}}
            events = iter([next(events), b"event: error\ndata: " + orjson.dumps(error) + b"\n\n"])
        return await sse(request, events, cut=model == "cut", split=received_key(request))

    def events(self, message: dict[str, Any]) -> Iterator[bytes]:
        def event(data: dict[str, Any]) -> bytes:
            return b"event: " + data["type"].encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

        start = {**message, "content": [], "stop_reason": None, "usage": {**USAGE, "output_tokens": 1}}
        yield event({"type": "message_start", "message": start})
        yield event({"type": "ping"})
        for index, block in enumerate(message["content"]):
            if block["type"] == "text":
                yield event(
                    {"type": "content_block_start", "index": index, "content_block": {"type": "text", "text": ""}}
                )
                words = block["text"].split(" ")
                for i, word in enumerate(words):
                    piece = word if i == 0 else " " + word
                    yield event(
                        {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": piece}}
                    )
            elif block["type"] == "thinking":
                yield event(
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "thinking", "thinking": ""},
                    }
                )
                yield event(
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "thinking_delta", "thinking": block["thinking"]},
                    }
                )
                yield event(
                    {
                        "type": "content_block_delta",
                        "index": index,
                        "delta": {"type": "signature_delta", "signature": "sig"},
                    }
                )
            else:
                start_block = {"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}
                yield event({"type": "content_block_start", "index": index, "content_block": start_block})
                arguments = orjson.dumps(block["input"]).decode()
                for piece in (arguments[:5], arguments[5:]):
                    yield event(
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": piece},
                        }
                    )
            yield event({"type": "content_block_stop", "index": index})
        yield event(
            {
                "type": "message_delta",
                "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                "usage": {"output_tokens": USAGE["output_tokens"]},
            }
        )
        yield event({"type": "message_stop"})


# -- Google Gemini -------------------------------------------------------------------------------


class Google:
    """``POST /models/{model}:generateContent`` and ``:streamGenerateContent?alt=sse``, checked with
    the ``google-genai`` SDK's types (which refuse unknown fields)."""

    SIGNATURE = "c2lnbmF0dXJlLW9mLXRoZS1jYWxs"  # what the fake signs its calls with (base64)

    def __init__(self) -> None:
        from google.genai import types

        self.types = types
        self.fields = {"contents", "systemInstruction", "tools", "toolConfig", "generationConfig", "safetySettings"}
        self.requests: list[dict[str, Any]] = []

    def validate(self, body: dict[str, Any]) -> str | None:
        t = self.types
        unknown = set(body) - self.fields
        if unknown:
            return f"unknown fields {sorted(unknown)}"
        try:
            contents = [t.Content.model_validate(c) for c in body["contents"]]
            if "systemInstruction" in body:
                t.Content.model_validate(body["systemInstruction"])
            for tool in body.get("tools", []):
                t.Tool.model_validate(tool)
            if "toolConfig" in body:
                t.ToolConfig.model_validate(body["toolConfig"])
            if "generationConfig" in body:
                t.GenerationConfig.model_validate(body["generationConfig"])
        except pydantic.ValidationError as exc:
            return str(exc)
        if any(c.role not in ("user", "model") for c in contents):
            return "roles must be user or model"
        for content in contents:  # a model step's first call carries our signature or the placeholder
            calls = [p for p in content.parts or [] if p.function_call]
            if calls and calls[0].thought_signature not in (
                b"signature-of-the-call",
                b"skip_thought_signature_validator",
            ):
                return f"first function call lacks its thought signature: {calls[0]}"
        return None

    def error(self, status: int, message: str) -> web.Response:
        names = {
            400: "INVALID_ARGUMENT",
            401: "UNAUTHENTICATED",
            403: "PERMISSION_DENIED",
            404: "NOT_FOUND",
            429: "RESOURCE_EXHAUSTED",
            500: "INTERNAL",
            503: "UNAVAILABLE",
        }
        return web.json_response(
            {"error": {"code": status, "message": message, "status": names.get(status, "UNKNOWN")}}, status=status
        )

    def parts(self, model: str, body: dict[str, Any]) -> list[dict[str, Any]]:
        declarations = [d for tool in body.get("tools", []) for d in tool.get("functionDeclarations", [])]
        config = (body.get("toolConfig") or {}).get("functionCallingConfig") or {}
        if config.get("allowedFunctionNames"):
            declarations = [d for d in declarations if d["name"] in config["allowedFunctionNames"]]
        if (model == "tool" or config.get("mode") == "ANY") and declarations:
            parts = [{"functionCall": {"name": d["name"], "args": ARGS}} for d in declarations]
            parts[0]["thoughtSignature"] = self.SIGNATURE  # Gemini 3 signs a step's first call
            return parts
        if (body.get("generationConfig") or {}).get("responseMimeType") == "application/json":
            return [{"text": orjson.dumps(ARGS).decode()}]
        last = body["contents"][-1]["parts"]
        results = [p["functionResponse"] for p in last if "functionResponse" in p]
        if results:
            text = f"Tool said: {results[-1]['response']['result']}"
        else:
            images = sum("inlineData" in p or "fileData" in p for p in last)
            text = "You said: " + " ".join(p["text"] for p in last if "text" in p)
            text += f" [{images} images]" if images else ""
        parts = [{"text": text}]
        if model == "thinking":
            parts.insert(0, {"text": "Let me think.", "thought": True})
        return parts

    async def handle(self, request: web.Request, path: str, raw: bytes) -> web.StreamResponse | None:
        match = re.fullmatch(r"/models/([^:]+):(generateContent|streamGenerateContent)", path)
        if match is None or request.method != "POST":
            return None
        model, action = match.groups()
        body = orjson.loads(raw)
        problem = self.validate(body)
        if problem:
            return self.error(400, f"request does not match the google-genai types: {problem}")
        said = received_credential(request)
        if model.startswith("error-"):
            return self.error(int(model.removeprefix("error-")), f"fake gemini refused with {model}")
        if model == "leak-error" and action == "generateContent":
            refused = self.error(429, f"fake gemini refused the key {said}")
            refused.headers["Retry-After"] = said
            return refused
        if model == "blocked":
            return web.json_response(
                {"promptFeedback": {"blockReason": "SAFETY"}, "usageMetadata": {"promptTokenCount": 3}}
            )
        parts = [{"text": f"Your key is {said}"}] if model == "leak" else self.parts(model, body)
        usage = {
            "promptTokenCount": 11,
            "candidatesTokenCount": 5,
            "thoughtsTokenCount": 2,
            "totalTokenCount": 18,
            "cachedContentTokenCount": 4,
        }
        finish = "MAX_TOKENS" if model == "long" else "STOP"
        if action == "generateContent":
            return web.json_response(
                {
                    "candidates": [{"content": {"role": "model", "parts": parts}, "finishReason": finish, "index": 0}],
                    "usageMetadata": usage,
                    "modelVersion": model,
                    "responseId": "resp-fake",
                }
            )
        if request.query.get("alt") != "sse":
            return self.error(400, "the fake streams only with alt=sse")
        events = self.events(model, parts, usage, finish)
        if model in ("midstream-error", "leak-error"):
            said = f"The key {said} is overloaded." if model == "leak-error" else "The model is overloaded."
            error = {"error": {"code": 503, "message": said, "status": "UNAVAILABLE"}}
            events = iter([next(events), b"data: " + orjson.dumps(error) + b"\r\n\r\n"])
        return await sse(request, events, cut=model == "cut", split=received_key(request))

    def events(self, model: str, parts: list[dict[str, Any]], usage: dict[str, Any], finish: str) -> Iterator[bytes]:
        def event(event_parts: list[dict[str, Any]], finish: str | None = None, last: bool = False) -> bytes:
            candidate: dict[str, Any] = {"content": {"role": "model", "parts": event_parts}, "index": 0}
            if finish:
                candidate["finishReason"] = finish
            meta = usage if last else {"promptTokenCount": usage["promptTokenCount"]}
            data = {"candidates": [candidate], "usageMetadata": meta, "modelVersion": model, "responseId": "resp-fake"}
            return b"data: " + orjson.dumps(data) + b"\r\n\r\n"  # Gemini ends its events with CRLF

        pieces: list[list[dict[str, Any]]] = []
        for part in parts:
            if "text" in part and not part.get("thought"):
                words = part["text"].split(" ")
                pieces += [[{"text": w if i == 0 else " " + w}] for i, w in enumerate(words)]
            else:
                pieces.append([part])
        for piece in pieces[:-1]:
            yield event(piece)
        yield event(pieces[-1], finish, last=True)
