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
    hang              (Anthropic) a stream's first event, then silence until the client leaves
    blocked, long     (Gemini) a prompt blocked for safety / an answer stopped at MAX_TOKENS
    midstream-error   (Gemini) a stream that starts, then carries an error event
    leak              the echo replaced by "Your key is <the credential received>", a stream writing
                      each event that quotes it in two TCP writes cut mid-key
    leak-error        a 429 whose message and Retry-After quote the credential; streaming, one event
                      then the protocol's in-stream error quoting it

Gemini and Cohere also embed (``:batchEmbedContents``, ``/v2/embed``) with ``fake_embeddings``'s
vectors, refusing what those endpoints refuse (their batch limits, fields, dimensions).

Real model names (``claude-3-haiku-20240307``, ``gemini-2.5-flash``...) act as echo. Beyond the
SDK types, each fake refuses with the provider's own 400 what the real API refuses and the types do
not say (Anthropic: sampling fields per model, tool-use ids, results without a call; Gemini:
thoughtSignature that is not base64 or not the call's), and accepts what the real API accepts.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from typing import Any

import orjson
import pydantic
from aiohttp import web

from .fake_embeddings import vector_of

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


# Which sampling fields Anthropic's models take, as the API enforces it (written out here, not read
# from the registry, so a wrong registry rule fails the tests): Claude 3 all three; Claude 4 up to
# 4.6 all but temperature and top_p together; every later model (and the scenario names) none.
CLAUDE_ALL_SAMPLING = re.compile(r"claude-(3|2|instant)\b.*")
CLAUDE_4 = re.compile(r"claude-(opus|sonnet|haiku)-4(-[0156])?(-\d{8}|-latest)?")
TOOL_USE_ID = re.compile(r"[a-zA-Z0-9_-]+")


def _blocks(content: Any) -> list[dict[str, Any]]:
    """A message's content as blocks: the API takes a string for one text block."""
    return [{"type": "text", "text": content}] if isinstance(content, str) else list(content)


class Anthropic:
    """``POST /v1/messages``: checked with ``anthropic.types.MessageCreateParams*``, then with the
    rules the API adds (sampling fields per model, tool-use ids and their results)."""

    def __init__(self) -> None:
        from anthropic.types.message_create_params import MessageCreateParamsBase, MessageCreateParamsNonStreaming

        # The SDK's types are API version 2026-10-21's, which removed the sampling fields; the
        # gateway speaks 2023-06-01 (its registry header), where the models that take them do.
        self.fields = set(MessageCreateParamsBase.__annotations__) | {"stream", *self.SAMPLING}
        self.adapter = pydantic.TypeAdapter(MessageCreateParamsNonStreaming)
        self.sampling = pydantic.TypeAdapter(dict[str, float])
        self.disconnects: list[str] = []  # models whose stream lost its client (the hang scenario)

    SAMPLING = ("temperature", "top_p", "top_k")

    def validate(self, body: dict[str, Any]) -> str | None:
        unknown = set(body) - self.fields
        if unknown:
            return f"unknown fields {sorted(unknown)}"
        try:
            force(self.adapter.validate_python({k: v for k, v in body.items() if k not in ("stream", *self.SAMPLING)}))
            self.sampling.validate_python({k: body[k] for k in self.SAMPLING if k in body}, strict=True)
            if "top_k" in body:
                pydantic.TypeAdapter(int).validate_python(body["top_k"], strict=True)
        except pydantic.ValidationError as exc:
            return str(exc)
        roles = [m["role"] for m in body["messages"]]
        if roles[:1] != ["user"]:
            return f"the first message must use the user role: {roles}"
        return None

    @staticmethod
    def turns(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """The conversation as the API sees it: consecutive messages of one role are one turn."""
        out: list[dict[str, Any]] = []
        for message in messages:
            if out and out[-1]["role"] == message["role"]:
                out[-1]["content"] += _blocks(message["content"])
            else:
                out.append({"role": message["role"], "content": _blocks(message["content"])})
        return out

    def refusal(self, body: dict[str, Any]) -> str | None:
        """What the API answers 400 to beyond the types, in its words."""
        model = str(body["model"])
        sampling = [f for f in ("temperature", "top_p", "top_k") if f in body]
        if CLAUDE_ALL_SAMPLING.fullmatch(model) is None:
            if CLAUDE_4.fullmatch(model) is None and sampling:
                return f"`{sampling[0]}` is deprecated for this model."
            if "temperature" in body and "top_p" in body:
                return "`temperature` and `top_p` cannot both be specified for this model. Please use only one."
        if not 0 <= body.get("temperature", 0) <= 1:
            return "temperature: range: 0..1"
        later = CLAUDE_ALL_SAMPLING.fullmatch(model) is None and CLAUDE_4.fullmatch(model) is None
        if later and body["messages"][-1]["role"] == "assistant":  # models after Opus 4.6 dropped prefill
            return "Prefilling assistant messages is not supported for this model."
        called: set[str] = set()
        for index, message in enumerate(body["messages"]):
            for block_index, block in enumerate(_blocks(message["content"])):
                where = f"messages.{index}.content.{block_index}"
                if block["type"] == "tool_use":
                    if TOOL_USE_ID.fullmatch(block["id"]) is None:
                        return f"{where}.tool_use.id: String should match pattern '^[a-zA-Z0-9_-]+$'"
                    if len(block["id"]) > 64:
                        return f"{where}.tool_use.id: String should have at most 64 characters"
                    called.add(block["id"])
                if block["type"] == "tool_result" and block["tool_use_id"] not in called:
                    return (
                        f"{where}: unexpected `tool_use_id` found in `tool_result` blocks: {block['tool_use_id']}. "
                        "Each `tool_result` block must have a corresponding `tool_use` block in the previous message."
                    )
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
                b["text"]
                for m in body["messages"]
                if m["role"] == "user"
                for b in _blocks(m["content"])
                if b["type"] == "text"
            )
            last = _blocks(body["messages"][-1]["content"])
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
        if any("JSON object" in block["text"] for block in _blocks(body.get("system", []))):
            return [{"type": "text", "text": orjson.dumps(ARGS).decode()}], "end_turn"
        last = _blocks(body["messages"][-1]["content"])
        results = [b for b in last if b["type"] == "tool_result"]
        if results:
            said = results[-1].get("content", "")
            text = f"Tool said: {said if isinstance(said, str) else ' '.join(b.get('text', '') for b in said)}"
        else:
            images = sum(b["type"] == "image" for b in last)
            text = "You said: " + " ".join(b["text"] for b in last if b["type"] == "text")
            text += f" [{images} images]" if images else ""
        blocks = [{"type": "text", "text": text}]
        if model == "thinking":
            blocks.insert(0, {"type": "thinking", "thinking": "Let me think.", "signature": "sig"})
        return blocks, "end_turn"

    def count_tokens(self, raw: bytes) -> web.Response:
        """``POST /v1/messages/count_tokens``: checked with ``MessageCountTokensParams``; counts one
        token per 4 bytes of the body, plus 100 (so no estimate of the gateway's matches it by chance)."""
        from anthropic.types import MessageCountTokensParams

        body = orjson.loads(raw)
        fields = set(MessageCountTokensParams.__annotations__)
        if set(body) - fields:
            return self.error(400, f"{sorted(set(body) - fields)[0]}: Extra inputs are not permitted")
        try:
            force(pydantic.TypeAdapter(MessageCountTokensParams).validate_python(body))
        except pydantic.ValidationError as exc:
            return self.error(422, f"request does not match the Anthropic SDK types: {exc}")
        if str(body["model"]).startswith("error-"):
            return self.error(int(body["model"].removeprefix("error-")), f"fake anthropic refused with {body['model']}")
        return web.json_response({"input_tokens": 100 + len(raw) // 4})

    async def handle(self, request: web.Request, path: str, raw: bytes) -> web.StreamResponse | None:
        if path == "/v1/messages/count_tokens" and request.method == "POST":
            return self.count_tokens(raw)
        if path != "/v1/messages" or request.method != "POST":
            return None
        body = orjson.loads(raw)
        problem = self.validate(body)
        if problem:
            return self.error(422, f"request does not match the Anthropic SDK types: {problem}")
        refusal = self.refusal(body)
        if refusal:
            return self.error(400, refusal)
        body = {**body, "messages": self.turns(body["messages"])}
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
        if model == "hang":
            return await self.hang(request, next(events), model)
        if model in ("overloaded-stream", "leak-error"):
            said = f"Overloaded, key {said}" if model == "leak-error" else "Overloaded"
            error = {"type": "error", "error": {"type": "overloaded_error", "message": said}}
            events = iter([next(events), b"event: error\ndata: " + orjson.dumps(error) + b"\n\n"])
        return await sse(request, events, cut=model == "cut", split=received_key(request))

    async def hang(self, request: web.Request, first: bytes, model: str) -> web.StreamResponse:
        """The stream's first event, then silence until the client leaves (which is recorded)."""
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(first)
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            self.disconnects.append(model)
            raise
        return response

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
                        "content_block": {"type": "thinking", "thinking": "", "signature": ""},
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
    """``POST /v1beta/models/{model}:generateContent`` and ``:streamGenerateContent?alt=sse`` (and
    the same under ``/v1``), checked with the ``google-genai`` SDK's types as they read JSON (they
    refuse unknown fields and bytes that are not base64)."""

    SIGNATURE = "c2lnbmF0dXJlLW9mLXRoZS1jYWxs"  # what the fake signs its calls with (base64)

    def __init__(self) -> None:
        from google.genai import types

        self.types = types
        self.fields = {
            "contents",
            "systemInstruction",
            "tools",
            "toolConfig",
            "generationConfig",
            "safetySettings",
            "cachedContent",
        }
        self.requests: list[dict[str, Any]] = []

    @staticmethod
    def camel(body: dict[str, Any]) -> dict[str, Any]:
        """Top-level keys as camelCase: the API takes proto field names either way (Google's own
        curl examples write ``system_instruction``)."""
        return {re.sub(r"_([a-z])", lambda m: m.group(1).upper(), k): v for k, v in body.items()}

    def normalized(self, body: dict[str, Any]) -> dict[str, Any]:
        """A valid request as the SDK writes it (camelCase, base64 bytes), for the scenarios to read."""
        t = self.types
        kinds = {"systemInstruction": t.Content, "toolConfig": t.ToolConfig, "generationConfig": t.GenerationConfig}

        def dump(kind: type[pydantic.BaseModel], value: Any) -> Any:
            return kind.model_validate_json(orjson.dumps(value)).model_dump(
                mode="json", by_alias=True, exclude_none=True
            )

        out = {**body, "contents": [dump(t.Content, c) for c in body["contents"]]}
        out.update({k: dump(kind, body[k]) for k, kind in kinds.items() if k in body})
        if "tools" in body:
            out["tools"] = [dump(t.Tool, tool) for tool in body["tools"]]
        return out

    def validate(self, body: dict[str, Any]) -> str | None:
        t = self.types
        body = self.camel(body)
        unknown = set(body) - self.fields
        if unknown:
            return f"unknown fields {sorted(unknown)}"
        if not body.get("contents"):
            return "* GenerateContentRequest.contents: contents is not specified"
        # Parsed from JSON, as the API reads it: bytes fields (thoughtSignature, inlineData.data)
        # must be base64 there, which validating the decoded dict would not check.
        try:
            contents = [t.Content.model_validate_json(orjson.dumps(c)) for c in body["contents"]]
            if "systemInstruction" in body:
                t.Content.model_validate_json(orjson.dumps(body["systemInstruction"]))
            for tool in body.get("tools", []):
                t.Tool.model_validate_json(orjson.dumps(tool))
            if "toolConfig" in body:
                t.ToolConfig.model_validate_json(orjson.dumps(body["toolConfig"]))
            if "generationConfig" in body:
                t.GenerationConfig.model_validate_json(orjson.dumps(body["generationConfig"]))
        except pydantic.ValidationError as exc:
            return str(exc)
        if any(c.role not in ("user", "model", None) for c in contents):  # no role: a user turn
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

    # Gemini's embedding task types, and the limits its batchEmbedContents enforces.
    TASK_TYPES = frozenset(
        {
            "TASK_TYPE_UNSPECIFIED",
            "RETRIEVAL_QUERY",
            "RETRIEVAL_DOCUMENT",
            "SEMANTIC_SIMILARITY",
            "CLASSIFICATION",
            "CLUSTERING",
            "QUESTION_ANSWERING",
            "FACT_VERIFICATION",
            "CODE_RETRIEVAL_QUERY",
        }
    )
    EMBED_FIELDS = frozenset({"model", "content", "taskType", "title", "outputDimensionality"})
    MAX_BATCH = 100
    DIMENSIONS = (128, 3072)  # gemini-embedding-001's range; 3072 by default

    def embed(self, model: str, body: Any, said: str) -> web.Response:
        """``:batchEmbedContents``: each request checked as the API checks it (its model the batch's,
        its content a google-genai ``Content`` of text), at most 100 of them. The model "counted"
        also reports ``usageMetadata`` (most answers carry no token count); a text "refuse this
        batch" makes its batch a 400."""
        if model.startswith("error-"):
            return self.error(int(model.removeprefix("error-")), f"fake gemini refused with {model}")
        if model == "leak-error":
            refused = self.error(429, f"fake gemini refused the key {said}")
            refused.headers["Retry-After"] = said
            return refused
        requests = body.get("requests") if isinstance(body, dict) else None
        if not isinstance(requests, list) or not requests or set(body) - {"requests"}:
            return self.error(400, "* BatchEmbedContentsRequest.requests: requests is not specified")
        if len(requests) > self.MAX_BATCH:
            return self.error(400, "* BatchEmbedContentsRequest.requests: at most 100 requests can be in one batch")
        embeddings, characters = [], 0
        for i, item in enumerate(requests):
            where = f"* BatchEmbedContentsRequest.requests[{i}]"
            item = self.camel(item) if isinstance(item, dict) else {}
            if set(item) - self.EMBED_FIELDS or "content" not in item:
                return self.error(400, f"{where}: unknown fields or no content: {sorted(item)}")
            if item.get("model") != f"models/{model}":
                return self.error(400, f"{where}.model: the model of each request must be the batch's, models/{model}")
            try:
                content = self.types.Content.model_validate_json(orjson.dumps(item["content"]))
            except pydantic.ValidationError as exc:
                return self.error(400, f"{where}.content: {exc}")
            texts = [p.text for p in content.parts or [] if p.text]
            if not texts or len(texts) != len(content.parts or []):
                return self.error(400, f"{where}.content: the content must hold text parts")
            task = item.get("taskType")
            if task is not None and task not in self.TASK_TYPES:
                return self.error(400, f'{where}.task_type: invalid value "{task}"')
            if "title" in item and task != "RETRIEVAL_DOCUMENT":
                return self.error(400, f"{where}.title: a title is only for task type RETRIEVAL_DOCUMENT")
            dimensions = item.get("outputDimensionality", self.DIMENSIONS[1])
            if type(dimensions) is not int or not self.DIMENSIONS[0] <= dimensions <= self.DIMENSIONS[1]:
                return self.error(400, f"{where}.output_dimensionality: must be between 128 and 3072")
            text = " ".join(texts)
            if text == "refuse this batch":
                return self.error(400, f"{where}.content: fake gemini refused this batch")
            characters += len(text)
            embeddings.append({"values": vector_of(text, dimensions)})
        answer: dict[str, Any] = {"embeddings": embeddings}
        if model == "counted":
            answer["usageMetadata"] = {"promptTokenCount": characters // 4 + 1, "totalTokenCount": characters // 4 + 1}
        self.types.EmbedContentResponse.model_validate(answer)  # the fake answers what the SDK reads
        return web.json_response(answer)

    async def handle(self, request: web.Request, path: str, raw: bytes) -> web.StreamResponse | None:
        embedding = re.fullmatch(r"/v1(?:beta)?/models/([^:]+):batchEmbedContents", path)
        if embedding is not None and request.method == "POST":
            return self.embed(embedding.group(1), orjson.loads(raw), received_credential(request))
        # The API serves both versions; v1 is the stable surface, v1beta the one with every feature.
        match = re.fullmatch(r"/v1(?:beta)?/models/([^:]+):(generateContent|streamGenerateContent)", path)
        if match is None or request.method != "POST":
            return None
        model, action = match.groups()
        body = self.camel(orjson.loads(raw))
        problem = self.validate(body)
        if problem:
            return self.error(400, f"request does not match the google-genai types: {problem}")
        said = received_credential(request)
        body = self.normalized(body)
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
