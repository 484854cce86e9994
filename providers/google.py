"""Google Gemini's native API (``models/{model}:generateContent`` and ``:streamGenerateContent``).

Requests: system and developer messages become ``systemInstruction``; turns become ``contents``
with roles ``user`` and ``model``; tool results become ``functionResponse`` parts, named after the
call they answer; tool schemas go in ``parametersJsonSchema`` (full JSON Schema, not Gemini's
OpenAPI subset). Answers come back with generated tool-call ids and stable indexes.

Thought signatures: Gemini 3 signs the function calls of a turn and wants each signature back on
the same part in the next request. The gateway carries a signature inside the tool call's id
(``call_<hex>~<signature>``), which every client echoes back verbatim, and restores it from there.
Calls that carry none (made by another model, or written by the client) get Google's documented
placeholder (``skip_thought_signature_validator``, base64-encoded like every bytes field) so the
conversation is still accepted.

Embeddings go to ``:batchEmbedContents`` (``google_embeddings`` translates them).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable
from typing import Any

import orjson

from . import google_embeddings
from .base import ChatRequest, upstream_error
from .embeddings import EmbeddingRequest, Vectors, embedding_list, in_batches
from .errors import InvalidRequest
from .native import (
    DATA_URI,
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
from .registry import Provider

__all__ = ["GoogleAdapter"]

FINISH_REASONS = {
    "STOP": "stop",
    "MAX_TOKENS": "length",
    "SAFETY": "content_filter",
    "RECITATION": "content_filter",
    "BLOCKLIST": "content_filter",
    "PROHIBITED_CONTENT": "content_filter",
    "SPII": "content_filter",
    "IMAGE_SAFETY": "content_filter",
    "IMAGE_PROHIBITED_CONTENT": "content_filter",
    "IMAGE_RECITATION": "content_filter",
    "MODEL_ARMOR": "content_filter",
}
SIGNATURE_SEPARATOR = "~"
# Google's documented value for a call it did not sign. ``thoughtSignature`` is bytes, which JSON
# carries as base64 (as google-genai writes it): the literal string would be read as other bytes.
PLACEHOLDER_SIGNATURE = base64.b64encode(b"skip_thought_signature_validator").decode()
_MIME_BY_EXTENSION = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "heic": "image/heic",
    "heif": "image/heif",
}
_DROPPED_SCHEMA_KEYS = ("$schema",)
_BASE64 = re.compile(r"[A-Za-z0-9+/_-]+={0,2}")  # standard or URL-safe, as the API accepts both


class GoogleAdapter(TranslatingAdapter):
    """Gemini, natively: system instruction, function calling with thought signatures, JSON schema."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._models_url = self.base() + self.provider.spec.models_path

    def base(self) -> str:
        # inference-gateway's GOOGLE_API_URL points at the OpenAI-compatible surface; accept it.
        return self.provider.url.rstrip("/").removesuffix("/openai")

    def url(self, request: ChatRequest) -> str:
        model = request.model.removeprefix("models/")
        action = "streamGenerateContent?alt=sse" if request.stream else "generateContent"
        return f"{self.base()}/models/{model}:{action}"

    def encode(self, request: ChatRequest) -> dict[str, Any]:
        return encode_request(request)

    def decode(self, data: Any, request: ChatRequest) -> dict[str, Any]:
        return decode_response(data, request)

    def translator(self, request: ChatRequest, writer: ChunkWriter) -> StreamTranslator:
        return GoogleStream(writer, self.provider)

    async def embed(self, request: EmbeddingRequest) -> bytes:
        path = self.provider.spec.endpoints.get("embeddings")
        if path is None:
            return await super().embed(request)
        texts = request.texts_for("Gemini")
        request.input_type("Gemini")  # checked once, before any batch is sent
        url = self.base() + path.replace("{model}", request.model.removeprefix("models/"))

        async def batch(chunk: list[str]) -> tuple[Vectors, int]:
            data = await self._post_json(url, google_embeddings.encode_batch(chunk, request), "embeddings")
            return google_embeddings.decode_batch(data, len(chunk))

        vectors, tokens = await in_batches(texts, google_embeddings.BATCH_SIZE, batch)
        return embedding_list(vectors, request.model, tokens, base64_encoded=request.base64)


# -- request -------------------------------------------------------------------------------------


def encode_request(request: ChatRequest) -> dict[str, Any]:
    payload = request.payload
    n = payload.get("n")
    if isinstance(n, int) and n > 1:
        raise InvalidRequest("This gateway asks Gemini for one candidate per request; 'n' must be 1.", param="n")
    system, contents = _contents(payload["messages"])
    body: dict[str, Any] = {"contents": contents}
    if system:
        body["systemInstruction"] = {"parts": system}
    tools = [_declaration(t) for t in function_tools(payload.get("tools"))]
    if tools:
        body["tools"] = [{"functionDeclarations": tools}]
    tool_config = _tool_config(payload.get("tool_choice"))
    if tool_config is not None:
        body["toolConfig"] = {"functionCallingConfig": tool_config}
    config = _generation_config(payload)
    if config:
        body["generationConfig"] = config
    return body


def _generation_config(payload: dict[str, Any]) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for source, target in (
        ("temperature", "temperature"),
        ("top_p", "topP"),
        ("top_k", "topK"),
        ("seed", "seed"),
        ("presence_penalty", "presencePenalty"),
        ("frequency_penalty", "frequencyPenalty"),
    ):
        if isinstance(payload.get(source), int | float) and not isinstance(payload.get(source), bool):
            config[target] = payload[source]
    for key in ("max_completion_tokens", "max_tokens"):
        if isinstance(payload.get(key), int):
            config["maxOutputTokens"] = payload[key]
            break
    stop = payload.get("stop")
    if stop:
        config["stopSequences"] = [stop] if isinstance(stop, str) else list(stop)
    response_format = payload.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") in ("json_object", "json_schema"):
        config["responseMimeType"] = "application/json"
        schema = (response_format.get("json_schema") or {}).get("schema")
        if response_format["type"] == "json_schema" and isinstance(schema, dict):
            config["responseJsonSchema"] = _clean_schema(schema)
    return config


def _contents(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id -> function name, for the functionResponse parts
    for index, message in enumerate(messages):
        where = f"messages[{index}]"
        role = message["role"]
        if role in ("system", "developer"):
            text = text_of(message.get("content"), f"{where}.content")
            if text:
                system.append({"text": text})
            continue
        if role == "user":
            parts, role = _user_parts(message.get("content"), where), "user"
        elif role == "assistant":
            parts, role = _model_parts(message, where, names), "model"
        elif role == "tool":
            parts, role = [_function_response(message, where, names)], "user"
        else:
            raise InvalidRequest(f"{where}.role '{role}' is not a chat role.", param=f"{where}.role")
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": parts})
    return system, contents


def _user_parts(content: Any, where: str) -> list[dict[str, Any]]:
    return user_parts(content, where, "Gemini", text=lambda t: {"text": t}, image=_image)


def _image(url: str, where: str, detail: str | None = None) -> dict[str, Any]:
    match = DATA_URI.match(url)
    if match:
        return {"inlineData": {"mimeType": match.group(1), "data": match.group(2)}}
    if url.startswith(("https://", "http://", "gs://")):
        extension = url.split("?", 1)[0].rsplit(".", 1)[-1].lower()
        return {"fileData": {"mimeType": _MIME_BY_EXTENSION.get(extension, "image/jpeg"), "fileUri": url}}
    raise InvalidRequest(f"{where}: an image must be a URL or a base64 data: URI.", param=where)


def _model_parts(message: dict[str, Any], where: str, names: dict[str, str]) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = []
    text = text_of(message.get("content"), f"{where}.content")
    if text:
        parts.append({"text": text})
    for i, call in enumerate(tool_calls(message, where)):
        names[call.id] = call.name
        part: dict[str, Any] = {"functionCall": {"name": call.name, "args": call.arguments}}
        signature = _signature_of(call.id)
        if signature or i == 0:  # a step's first call must be signed; the others as Gemini sent them
            part["thoughtSignature"] = signature or PLACEHOLDER_SIGNATURE
        parts.append(part)
    return parts


def _function_response(message: dict[str, Any], where: str, names: dict[str, str]) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    if not isinstance(call_id, str) or call_id not in names:
        raise InvalidRequest(
            f"{where}.tool_call_id must name a tool call of an earlier assistant message (Gemini matches results "
            "to calls by function name).",
            param=f"{where}.tool_call_id",
        )
    text = text_of(message.get("content"), f"{where}.content")
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        value = None
    response = value if isinstance(value, dict) else {"result": text}
    return {"functionResponse": {"name": names[call_id], "response": response}}


def _declaration(tool: FunctionTool) -> dict[str, Any]:
    declaration: dict[str, Any] = {"name": tool.name}
    if tool.description:
        declaration["description"] = tool.description
    if tool.parameters:
        declaration["parametersJsonSchema"] = _clean_schema(tool.parameters)
    return declaration


def _clean_schema(schema: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in schema.items() if k not in _DROPPED_SCHEMA_KEYS}


def _tool_config(choice: Any) -> dict[str, Any] | None:
    if choice is None:
        return None
    if choice in ("auto", "required", "none"):
        return {"mode": {"auto": "AUTO", "required": "ANY", "none": "NONE"}[choice]}
    if isinstance(choice, dict) and isinstance(choice.get("function"), dict) and choice["function"].get("name"):
        return {"mode": "ANY", "allowedFunctionNames": [choice["function"]["name"]]}
    raise InvalidRequest("'tool_choice' must be auto, required, none or a named function.", param="tool_choice")


# -- response ------------------------------------------------------------------------------------


def _call_id(signature: str | None) -> str:
    call_id = new_id("call_")
    return f"{call_id}{SIGNATURE_SEPARATOR}{signature}" if signature else call_id


def _signature_of(call_id: str) -> str | None:
    """The signature a Gemini call id carries; None for other ids, even with a "~" in them (what
    follows it must read as base64, as the API will read it)."""
    _, separator, signature = call_id.partition(SIGNATURE_SEPARATOR)
    readable = _BASE64.fullmatch(signature) and len(signature.rstrip("=")) % 4 != 1
    return signature if separator and readable else None


def _usage(metadata: dict[str, Any]) -> dict[str, Any]:
    prompt = int(metadata.get("promptTokenCount") or 0) + int(metadata.get("toolUsePromptTokenCount") or 0)
    thoughts = int(metadata.get("thoughtsTokenCount") or 0)
    completion_tokens = int(metadata.get("candidatesTokenCount") or 0) + thoughts
    cached = int(metadata.get("cachedContentTokenCount") or 0)
    return usage_of(prompt, completion_tokens, cached=cached, reasoning=thoughts)


def _finish(reason: str | None, called: bool) -> str:
    if called:
        return "tool_calls"  # Gemini ends a calling turn with STOP; OpenAI clients look for tool_calls
    return FINISH_REASONS.get(reason or "STOP", "stop")


def decode_response(data: dict[str, Any], request: ChatRequest) -> dict[str, Any]:
    candidates = data.get("candidates") or []
    texts: list[str] = []
    reasoning: list[str] = []
    calls: list[dict[str, Any]] = []
    candidate = candidates[0] if candidates else {}
    for part in (candidate.get("content") or {}).get("parts") or []:
        if "functionCall" in part:
            call = part["functionCall"]
            arguments = orjson.dumps(call.get("args") or {}).decode()
            calls.append(
                {
                    "id": _call_id(part.get("thoughtSignature")),
                    "type": "function",
                    "function": {"name": call.get("name", ""), "arguments": arguments},
                }
            )
        elif part.get("thought"):
            reasoning.append(part.get("text", ""))
        elif "text" in part:
            texts.append(part["text"])
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) if texts or not calls else None}
    if calls:
        message["tool_calls"] = calls
    if reasoning:
        message["reasoning_content"] = "".join(reasoning)
    if not candidates:  # the prompt itself was blocked
        finish = "content_filter"
        message["content"] = None
    else:
        finish = _finish(candidate.get("finishReason"), bool(calls))
    return completion(
        str(data.get("responseId") or new_id("chatcmpl-")),
        str(data.get("modelVersion") or request.model),
        message,
        finish,
        _usage(data.get("usageMetadata") or {}),
    )


# -- stream --------------------------------------------------------------------------------------


class GoogleStream(StreamTranslator):
    """Each Gemini stream event is a whole response holding the next parts; the stream just ends,
    so the finish and usage chunks are written when it does (``close``)."""

    def __init__(self, writer: ChunkWriter, provider: Provider) -> None:
        self.writer = writer
        self.provider = provider
        self.started = False
        self.tools = 0
        self.reason: str | None = None
        self.blocked = False
        self.usage: dict[str, Any] = {}

    def feed(self, event: str, data: bytes) -> Iterable[bytes]:
        message = orjson.loads(data)
        if "error" in message:
            error = message["error"] if isinstance(message["error"], dict) else {}
            raise upstream_error(self.provider, int(error.get("code") or 500), data)
        w = self.writer
        out = []
        if not self.started:
            self.started = True
            w.id = str(message.get("responseId") or w.id)
            w.model = str(message.get("modelVersion") or w.model)
            out.append(w.role())
        self.usage = message.get("usageMetadata") or self.usage
        candidates = message.get("candidates") or []
        if not candidates and (message.get("promptFeedback") or {}).get("blockReason"):
            self.blocked = True
        for candidate in candidates[:1]:
            for part in (candidate.get("content") or {}).get("parts") or []:
                if "functionCall" in part:
                    call = part["functionCall"]
                    arguments = orjson.dumps(call.get("args") or {}).decode()
                    out.append(
                        w.tool_start(
                            self.tools, _call_id(part.get("thoughtSignature")), call.get("name", ""), arguments
                        )
                    )
                    self.tools += 1
                elif part.get("thought") and part.get("text"):
                    out.append(w.reasoning(part["text"]))
                elif part.get("text"):
                    out.append(w.content(part["text"]))
            self.reason = candidate.get("finishReason") or self.reason
        return out

    def close(self) -> Iterable[bytes]:
        if self.reason is None and not self.blocked:
            return []  # never finished: reported as cut off
        self.complete = True
        finish = "content_filter" if self.blocked else _finish(self.reason, self.tools > 0)
        return self.writer.ending(finish, _usage(self.usage))
