"""A fake of Cohere's v2 Chat API (``POST /v2/chat``), shaped after Cohere's published examples.

It acts out the scenarios of ``native_fakes`` (echo, tool, error-<status>, cut, thinking, leak,
leak-error); a request
is forced to call a tool when it sends one tool with ``tool_choice`` REQUIRED, which is how the
adapter names one, and a request with a JSON ``response_format`` is answered {"city": "Paris"}.
Requests are checked against the parameters of ``cohere.ClientV2.chat`` (``chat_stream`` when
streaming), with their own SDK types; a 422 names what is wrong.

``POST /v2/embed`` is checked against ``cohere.ClientV2.embed`` and Cohere's limits (96 texts,
``output_dimension`` only for embed-v4 and later, in 256/512/1024/1536) and answers
``fake_embeddings`` vectors by type, with ``meta.billed_units.input_tokens``; the model names
error-<status> and leak-error act as for chat.
"""

from __future__ import annotations

import inspect
import itertools
import typing
from collections.abc import Callable, Iterator
from typing import Any

import orjson
import pydantic
from aiohttp import web

from .fake_embeddings import vector_of
from .native_fakes import ARGS, force, received_credential, received_key, sse

USAGE = {
    "billed_units": {"input_tokens": 3, "output_tokens": 5},  # not what the client is told: tokens are
    "tokens": {"input_tokens": 11, "output_tokens": 7},
    "cached_tokens": 4,
}
# Ranges the SDK docstrings give, which its types do not enforce.
RANGES = {"p": (0.01, 0.99), "k": (0, 500), "frequency_penalty": (0.0, 1.0), "presence_penalty": (0.0, 1.0)}


def _closed(hint: Any) -> Any:
    """Fern types enums as ``Union[Literal[...], Any]`` to accept values added later; the fake
    accepts only the listed ones."""
    args = typing.get_args(hint)
    if typing.get_origin(hint) is typing.Union and Any in args:
        return typing.Union[tuple(a for a in args if a is not Any)]  # noqa: UP007 (built at run time)
    return hint


def _undeclared(value: Any, where: str) -> list[str]:
    """Fields the SDK's models do not declare: they take them silently (``extra="allow"``)."""
    if isinstance(value, pydantic.BaseModel):
        found = [f"{where}.{key}" for key in value.model_extra or {}]
        for name in type(value).model_fields:
            found += _undeclared(getattr(value, name), f"{where}.{name}")
        return found
    if isinstance(value, list | tuple):
        return [f for i, item in enumerate(value) for f in _undeclared(item, f"{where}[{i}]")]
    return []


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    return "".join(part["text"] for part in content if part["type"] == "text")


def _words(text: str) -> list[str]:
    words = text.split(" ")
    return [word if i == 0 else " " + word for i, word in enumerate(words)]


class Cohere:
    """``POST /v2/chat``: checked with the parameter types of ``cohere.ClientV2.chat`` / ``chat_stream``."""

    def __init__(self) -> None:
        import cohere

        self.parameters = {
            False: self._parameters(cohere.ClientV2.chat),
            True: self._parameters(cohere.ClientV2.chat_stream),
        }
        self.embed_parameters = self._parameters(cohere.ClientV2.embed)
        self.embed_answer = cohere.EmbedByTypeResponse

    @staticmethod
    def _parameters(method: Callable[..., Any]) -> tuple[dict[str, pydantic.TypeAdapter[Any]], set[str]]:
        """Each body field's SDK type, and the fields the SDK requires."""
        hints = typing.get_type_hints(method, include_extras=True)
        parameters = inspect.signature(method).parameters
        names = [name for name in parameters if name not in ("self", "request_options")]
        required = {name for name in names if parameters[name].default is inspect.Parameter.empty}
        return {name: pydantic.TypeAdapter(_closed(hints[name])) for name in names}, required

    def validate(self, body: Any) -> str | None:
        if not isinstance(body, dict):
            return "the body must be a JSON object"
        stream = body.get("stream", False)
        if not isinstance(stream, bool):
            return "'stream' must be a boolean"
        problem = self._fields(body, *self.parameters[stream])
        return problem or self._check_conversation(body)

    def _fields(
        self, body: dict[str, Any], adapters: dict[str, pydantic.TypeAdapter[Any]], required: set[str]
    ) -> str | None:
        """What is wrong with the body's fields by the SDK's parameter types, or None."""
        unknown = set(body) - set(adapters) - {"stream"}
        if unknown:
            return f"unknown fields {sorted(unknown)}"
        missing = required - set(body)
        if missing:
            return f"missing fields {sorted(missing)}"
        for key, value in body.items():
            if key == "stream":
                continue
            try:
                checked = force(adapters[key].validate_python(value, strict=True))
            except pydantic.ValidationError as exc:
                return f"{key}: {exc}"
            undeclared = _undeclared(checked, key)
            if undeclared:
                return f"fields the SDK types do not have: {undeclared}"
            if key in RANGES and not RANGES[key][0] <= value <= RANGES[key][1]:
                return f"{key} {value} is outside the range {RANGES[key]}"
        return None

    EMBED_LIMIT = 96
    EMBED_DIMENSIONS = (256, 512, 1024, 1536)

    def embed(self, body: Any, said: str) -> web.Response:
        if not isinstance(body, dict):
            return self.error(422, "the body must be a JSON object")
        problem = self._fields(body, *self.embed_parameters)
        if problem:
            return self.error(422, f"request does not match the Cohere SDK types: {problem}")
        model = body["model"]
        if model.startswith("error-"):
            return self.error(int(model.removeprefix("error-")), f"fake cohere refused with {model}")
        if model == "leak-error":
            refused = self.error(429, f"fake cohere refused the key {said}")
            refused.headers["Retry-After"] = said
            return refused
        texts = body.get("texts")
        if not texts:
            return self.error(400, "invalid request: one of texts, images or inputs must be specified")
        if len(texts) > self.EMBED_LIMIT:
            return self.error(400, f"invalid request: texts must contain at most {self.EMBED_LIMIT} items")
        if not all(texts):
            return self.error(400, "invalid request: texts must not contain empty strings")
        dimensions = body.get("output_dimension")
        large = model.startswith("embed-v4")
        if dimensions is not None and (not large or dimensions not in self.EMBED_DIMENSIONS):
            return self.error(400, f"invalid request: output_dimension {dimensions} is not supported by {model}")
        dimensions = dimensions or (1536 if large else 1024)
        types = body.get("embedding_types") or ["float"]
        if types != ["float"]:
            return self.error(400, f"the fake answers only float embeddings, not {types}")
        billed = {"input_tokens": sum(len(t.split()) for t in texts)}
        answer = {
            "response_type": "embeddings_by_type",
            "id": "emb-fake",
            "embeddings": {"float": [vector_of(text, dimensions) for text in texts]},
            "texts": texts,
            "meta": {"api_version": {"version": "2"}, "billed_units": billed},
        }
        self.embed_answer.model_validate(answer)  # the fake answers what the SDK reads
        return web.json_response(answer)

    def _check_conversation(self, body: dict[str, Any]) -> str | None:
        """What Cohere checks beyond the types: tool results answer earlier calls, arguments are
        JSON objects, and JSON mode is not combined with tools."""
        called: set[str] = set()
        for index, message in enumerate(body["messages"]):
            for call in message.get("tool_calls") or []:
                try:
                    arguments = orjson.loads(call["function"]["arguments"])
                except orjson.JSONDecodeError:
                    arguments = None
                if not isinstance(arguments, dict):
                    return f"messages[{index}]: tool call arguments must be a JSON object string"
                called.add(call["id"])
            if message["role"] == "tool" and message["tool_call_id"] not in called:
                return f"messages[{index}]: tool_call_id {message['tool_call_id']!r} answers no earlier call"
        if body.get("response_format") and body.get("tools"):
            return "response_format is not supported in combination with tools"
        return None

    def error(self, status: int, message: str) -> web.Response:
        return web.json_response({"message": message}, status=status)

    def answer(self, model: str, body: dict[str, Any]) -> tuple[dict[str, Any], str]:
        """The answer's message and finish reason."""
        tools = body.get("tools") or []
        choice = body.get("tool_choice")
        forced = choice == "REQUIRED" and len(tools) == 1
        if (model == "tool" or forced) and tools and choice != "NONE":
            arguments = orjson.dumps(ARGS).decode()
            calls = [
                {
                    "id": f"{t['function']['name']}_fake{i}",
                    "type": "function",
                    "function": {"name": t["function"]["name"], "arguments": arguments},
                }
                for i, t in enumerate(tools)
            ]
            return {"role": "assistant", "tool_plan": "I will call the tools.", "tool_calls": calls}, "TOOL_CALL"
        if (body.get("response_format") or {}).get("type") == "json_object":
            text = orjson.dumps(ARGS).decode()
        else:
            text = self.echo(body["messages"])
        content = [{"type": "text", "text": text}]
        if model == "thinking":
            content.insert(0, {"type": "thinking", "thinking": "Let me think."})
        return {"role": "assistant", "content": content}, "COMPLETE"

    @staticmethod
    def echo(messages: list[dict[str, Any]]) -> str:
        """The last tool result, or the user messages since the last other one (with their images)."""
        if messages[-1]["role"] == "tool":
            return f"Tool said: {_text(messages[-1]['content'])}"
        turn = list(itertools.takewhile(lambda m: m["role"] == "user", reversed(messages)))[::-1]
        texts, images = [], 0
        for message in turn:
            content = message["content"]
            if isinstance(content, str):
                texts.append(content)
                continue
            texts += [part["text"] for part in content if part["type"] == "text"]
            images += sum(part["type"] == "image_url" for part in content)
        return "You said: " + " ".join(texts) + (f" [{images} images]" if images else "")

    async def handle(self, request: web.Request, path: str, raw: bytes) -> web.StreamResponse | None:
        if path == "/v2/embed" and request.method == "POST":
            return self.embed(orjson.loads(raw), received_credential(request))
        if path != "/v2/chat" or request.method != "POST":
            return None
        body = orjson.loads(raw)
        problem = self.validate(body)
        if problem:
            return self.error(422, f"request does not match the Cohere SDK types: {problem}")
        model = body["model"]
        said = received_credential(request)
        if model.startswith("error-"):
            return self.error(int(model.removeprefix("error-")), f"fake cohere refused with {model}")
        if model == "leak-error" and not body.get("stream"):
            refused = self.error(429, f"fake cohere refused the key {said}")
            refused.headers["Retry-After"] = said
            return refused
        message, finish = self.answer(model, body)
        if model == "leak":
            message = {"role": "assistant", "content": [{"type": "text", "text": f"Your key is {said}"}]}
        answer = {"id": "c04e7e5a-fake", "message": message, "finish_reason": finish, "usage": USAGE}
        if not body.get("stream"):
            return web.json_response(answer)
        events = self.events(answer)
        if model == "leak-error":  # Cohere reports a failure in its message-end event
            error = {"type": "message-end", "delta": {"error": f"the key {said} was refused"}}
            events = iter([next(events), b"event: message-end\ndata: " + orjson.dumps(error) + b"\n\n"])
        return await sse(request, events, cut=model == "cut", split=received_key(request))

    def events(self, answer: dict[str, Any]) -> Iterator[bytes]:
        def event(data: dict[str, Any]) -> bytes:
            return b"event: " + data["type"].encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"

        message = answer["message"]
        start = {"role": "assistant", "content": [], "tool_plan": "", "tool_calls": [], "citations": []}
        yield event({"id": answer["id"], "type": "message-start", "delta": {"message": start}})
        for index, part in enumerate(message.get("content", [])):
            kind = part["type"]  # "text" or "thinking", which is also the name of its text field
            yield event(
                {"type": "content-start", "index": index, "delta": {"message": {"content": {"type": kind, kind: ""}}}}
            )
            for piece in _words(part[kind]):
                yield event({"type": "content-delta", "index": index, "delta": {"message": {"content": {kind: piece}}}})
            yield event({"type": "content-end", "index": index})
        for piece in _words(message["tool_plan"]) if message.get("tool_plan") else []:
            yield event({"type": "tool-plan-delta", "delta": {"message": {"tool_plan": piece}}})
        for index, call in enumerate(message.get("tool_calls", [])):
            opened = {**call, "function": {**call["function"], "arguments": ""}}
            yield event({"type": "tool-call-start", "index": index, "delta": {"message": {"tool_calls": opened}}})
            arguments = call["function"]["arguments"]
            for piece in (arguments[:5], arguments[5:]):
                fragment = {"tool_calls": {"function": {"arguments": piece}}}
                yield event({"type": "tool-call-delta", "index": index, "delta": {"message": fragment}})
            yield event({"type": "tool-call-end", "index": index})
        end = {"finish_reason": answer["finish_reason"], "usage": answer["usage"]}
        yield event({"type": "message-end", "delta": end})
