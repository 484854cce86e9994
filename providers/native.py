"""What the translating adapters share: the call, the stream loop, and OpenAI's chunk shapes.

A translating adapter says how to encode a request (``encode``), decode an answer (``decode``), and
translate a stream (``translator``: native SSE events in, OpenAI chunk dicts out); this base does
the HTTP, the error mapping and the SSE framing. ``encode`` gets the request already conformed to
the registry's rules (``Adapter.conformed``: sampling fields per model, tool-call ids).

    class MyAdapter(TranslatingAdapter):
        def url(self, request): ...
        def encode(self, request): ...          # native JSON object
        def decode(self, data, request): ...    # OpenAI chat.completion dict
        def translator(self, request, chunks): ...  # a StreamTranslator
"""

from __future__ import annotations

import random
import re
import time
from abc import abstractmethod
from collections.abc import AsyncGenerator, Callable, Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from .base import Adapter, ChatRequest, EventStream
from .errors import InvalidRequest, UpstreamUnreachable
from .json_codec import check_integers, dump_json
from .sse import SSEDecoder, parse_event
from .transport import UpstreamResponse

__all__ = [
    "DATA_URI",
    "ChunkWriter",
    "FunctionTool",
    "StreamTranslator",
    "ToolCall",
    "TranslatingAdapter",
    "completion",
    "function_tools",
    "image_url",
    "json_arguments",
    "new_id",
    "text_of",
    "tool_calls",
    "translate_events",
    "usage_of",
    "user_parts",
]


class ChunkWriter:
    """OpenAI ``chat.completion.chunk`` events of one stream (same id, model and created in each),
    each as the SSE bytes the client gets, ``data: {...}`` and its blank line.

    The chunks of a stream share their envelope, so it is encoded once (again only when a translator
    changes ``id`` or ``model``, as they do from the provider's first event) and each chunk encodes
    only its delta. The bytes are exactly those ``orjson.dumps`` writes for the whole chunk object.

    >>> w = ChunkWriter("chatcmpl-1", "m", 1700000000, include_usage=False)
    >>> event = w.content("Hi")
    >>> event[:91]
    b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":1700000000,"model":"m",'
    >>> event[91:]
    b'"choices":[{"index":0,"delta":{"content":"Hi"},"logprobs":null,"finish_reason":null}]}\\n\\n'
    """

    __slots__ = ("_content", "_envelope", "_head", "_id", "_model", "_reasoning", "created", "include_usage")

    def __init__(self, id: str, model: str, created: int, *, include_usage: bool) -> None:
        self._id = id
        self._model = model
        self.created = created
        self.include_usage = include_usage
        self._envelope = b""  # up to the choices, encoded when the first chunk is written
        self._head = b""  # the envelope and the one choice's opening, up to its delta
        self._content = b""  # the head and the opening of a content delta
        self._reasoning = b""

    @property
    def id(self) -> str:
        return self._id

    @id.setter
    def id(self, value: str) -> None:
        self._id = value
        self._envelope = self._head = b""

    @property
    def model(self) -> str:
        return self._model

    @model.setter
    def model(self, value: str) -> None:
        self._model = value
        self._envelope = self._head = b""

    def _encode_envelope(self) -> None:
        self._envelope = b'data: {"id":%b,"object":"chat.completion.chunk","created":%d,"model":%b,' % (
            orjson.dumps(self._id),
            self.created,
            orjson.dumps(self._model),
        )
        self._head = self._envelope + b'"choices":[{"index":0,"delta":'
        self._content = self._head + b'{"content":'
        self._reasoning = self._head + b'{"reasoning_content":'

    def chunk(self, delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        if not self._head:
            self._encode_envelope()
        if finish_reason is None:
            return self._head + orjson.dumps(delta) + _CHOICE_END
        return b"".join((self._head, orjson.dumps(delta), _FINISH_REASON, orjson.dumps(finish_reason), _FINISHED_END))

    def role(self) -> bytes:
        if not self._head:
            self._encode_envelope()
        return self._head + _ROLE_DELTA

    def content(self, text: str) -> bytes:
        if not self._head:
            self._encode_envelope()
        return self._content + orjson.dumps(text) + _TEXT_END

    def reasoning(self, text: str) -> bytes:
        if not self._head:
            self._encode_envelope()
        return self._reasoning + orjson.dumps(text) + _TEXT_END

    def tool_start(self, index: int, call_id: str, name: str, arguments: str = "") -> bytes:
        call = {"index": index, "id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        return self.chunk({"tool_calls": [call]})

    def tool_arguments(self, index: int, fragment: str) -> bytes:
        return self.chunk({"tool_calls": [{"index": index, "function": {"arguments": fragment}}]})

    def finish(self, reason: str) -> bytes:
        if not self._head:
            self._encode_envelope()
        return b"".join((self._head, _EMPTY_DELTA, _FINISH_REASON, orjson.dumps(reason), _FINISHED_END))

    def usage(self, usage: dict[str, Any]) -> bytes:
        """The final chunk of ``stream_options.include_usage``: no choices, the usage."""
        if not self._envelope:
            self._encode_envelope()
        return b"".join((self._envelope, b'"choices":[],"usage":', orjson.dumps(usage), b"}\n\n"))

    def ending(self, reason: str, usage: dict[str, Any] | None) -> list[bytes]:
        """The finish chunk, then the usage chunk when the client asked for it."""
        chunks = [self.finish(reason)]
        if self.include_usage and usage is not None:
            chunks.append(self.usage(usage))
        return chunks


# The fixed parts of chunk events: what closes the choice after its delta, and the role's delta.
_CHOICE_END = b',"logprobs":null,"finish_reason":null}]}\n\n'
_FINISH_REASON = b',"logprobs":null,"finish_reason":'
_FINISHED_END = b"}]}\n\n"
_EMPTY_DELTA = b"{}"
_TEXT_END = b"}" + _CHOICE_END
_ROLE_DELTA = b'{"role":"assistant","content":""}' + _CHOICE_END


class StreamTranslator:
    """Native stream events in, OpenAI chunk events (a ``ChunkWriter``'s bytes) out. ``complete``
    says the native stream ended properly; a stream that stops before is reported as cut off."""

    complete = False

    @abstractmethod
    def feed(self, event: str, data: bytes) -> Iterable[bytes]:
        """The chunk events one native SSE event (its name and data) turns into."""

    def close(self) -> Iterable[bytes]:
        """The chunks due when the native stream ends (for protocols with no final event)."""
        return ()


def translate_events(translator: StreamTranslator, blocks: Iterable[bytes]) -> bytes:
    """Native SSE events, as the client bytes they become (possibly none)."""
    out: list[bytes] = []
    for block in blocks:
        name, data = parse_event(block)
        if data:
            out += translator.feed(name, data)
    return b"".join(out)


def completion(
    id: str, model: str, message: dict[str, Any], finish_reason: str, usage: dict[str, Any] | None
) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "id": id,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}],
    }
    if usage is not None:
        answer["usage"] = usage
    return answer


def usage_of(
    prompt: int,
    completion_tokens: int,
    cached: int | None = None,
    reasoning: int | None = None,
    cache_write: int | None = None,
) -> dict[str, Any]:
    """OpenAI's usage object. Tokens written to a provider's prompt cache have no field of
    OpenAI's; they go in ``cache_creation_input_tokens`` (Anthropic's name, which clients of
    translating gateways already read), only when there were some."""
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt + completion_tokens,
    }
    if cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": cached}
    if reasoning is not None:
        usage["completion_tokens_details"] = {"reasoning_tokens": reasoning}
    if cache_write:
        usage["cache_creation_input_tokens"] = cache_write
    return usage


def text_of(content: Any, where: str) -> str:
    """The text of a message's content: a string, or the text parts of a list joined."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text":
                raise InvalidRequest(f"{where} may only hold text parts.", param=where)
            texts.append(str(part.get("text", "")))
        return "".join(texts)
    raise InvalidRequest(f"{where} must be a string or a list of parts.", param=where)


def json_arguments(arguments: Any, where: str) -> Any:
    """A tool call's ``arguments`` (a JSON string) as a value; not JSON is the client's 400."""
    if isinstance(arguments, dict):
        return arguments
    if not arguments:
        return {}
    try:
        value = orjson.loads(arguments)
    except (orjson.JSONDecodeError, TypeError):
        raise InvalidRequest(f"{where} is not valid JSON.", param=where) from None
    check_integers(arguments.encode() if isinstance(arguments, str) else arguments)
    return value


DATA_URI = re.compile(r"^data:([\w/+.-]+);base64,(.*)$", re.S)


@dataclass(frozen=True, slots=True)
class ToolCall:
    """An assistant message's tool call, checked: its id, name and arguments as a JSON object."""

    id: str
    name: str
    arguments: dict[str, Any]
    raw_arguments: Any  # as the client sent them (a JSON string, normally)


@dataclass(frozen=True, slots=True)
class FunctionTool:
    name: str
    description: str | None
    parameters: dict[str, Any] | None


def user_parts(
    content: Any,
    where: str,
    who: str,
    *,
    text: Callable[[str], dict[str, Any]],
    image: Callable[[str, str, str | None], dict[str, Any]],
) -> list[dict[str, Any]]:
    """A user message's content in a provider's part shapes: ``text(s)`` for a string or a text part,
    ``image(url, where, detail)`` for an image part; any other part is the client's 400."""
    if isinstance(content, str):
        return [text(content)] if content else []
    if not isinstance(content, list):
        raise InvalidRequest(f"{where}.content must be a string or a list of parts.", param=f"{where}.content")
    parts = []
    for i, part in enumerate(content):
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            parts.append(text(str(part.get("text", ""))))
        elif kind == "image_url":
            spec, part_where = part.get("image_url"), f"{where}.content[{i}]"
            detail = spec.get("detail") if isinstance(spec, dict) else None
            parts.append(image(image_url(spec, part_where), part_where, detail if isinstance(detail, str) else None))
        else:
            raise InvalidRequest(
                f"{where}.content[{i}]: {who} takes text and image_url parts, not {kind!r}.", param=f"{where}.content"
            )
    return parts


def image_url(image: Any, where: str) -> str:
    url = image.get("url") if isinstance(image, dict) else image
    if not isinstance(url, str) or not url:
        raise InvalidRequest(f"{where}.image_url.url is required.", param=where)
    return url


def tool_calls(message: dict[str, Any], where: str) -> list[ToolCall]:
    """The assistant message's tool calls, each with an id, a name and JSON-object arguments."""
    calls = []
    for i, call in enumerate(message.get("tool_calls") or []):
        call_where = f"{where}.tool_calls[{i}]"
        function = call.get("function") if isinstance(call, dict) else None
        if not isinstance(function, dict) or not call.get("id") or not function.get("name"):
            raise InvalidRequest(f"{call_where} needs an id and a function name.", param=call_where)
        arguments_where = f"{call_where}.function.arguments"
        arguments = json_arguments(function.get("arguments"), arguments_where)
        if not isinstance(arguments, dict):
            raise InvalidRequest(f"{arguments_where} must be a JSON object.", param=arguments_where)
        calls.append(ToolCall(str(call["id"]), str(function["name"]), arguments, function.get("arguments")))
    return calls


def function_tools(tools: Any) -> list[FunctionTool]:
    """The request's ``tools``, each a function with a name."""
    out = []
    for index, tool in enumerate(tools or []):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(function, dict) or not function.get("name"):
            raise InvalidRequest(f"tools[{index}] must be a function tool with a name.", param=f"tools[{index}]")
        parameters = function.get("parameters")
        out.append(
            FunctionTool(
                str(function["name"]),
                function.get("description") or None,
                parameters if isinstance(parameters, dict) and parameters else None,
            )
        )
    return out


def new_id(prefix: str) -> str:
    """``prefix`` and 24 random hex digits. An id only has to be unique, not unguessable: the
    process's random generator (seeded from the system in every worker) instead of a system call."""
    return f"{prefix}{random.getrandbits(96):024x}"


class TranslatingAdapter(Adapter):
    """An adapter for a provider whose native API is not OpenAI's."""

    @abstractmethod
    def url(self, request: ChatRequest) -> str: ...

    @abstractmethod
    def encode(self, request: ChatRequest) -> dict[str, Any]: ...

    @abstractmethod
    def decode(self, data: Any, request: ChatRequest) -> dict[str, Any]: ...

    @abstractmethod
    def translator(self, request: ChatRequest, writer: ChunkWriter) -> StreamTranslator: ...

    def writer(self, request: ChatRequest) -> ChunkWriter:
        options = request.payload.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        return ChunkWriter(new_id("chatcmpl-"), request.model, int(time.time()), include_usage=include_usage)

    async def chat(self, request: ChatRequest) -> bytes:
        response = await self._post(request, self.options.timeouts.chat)
        body = await response.read()
        try:
            data = orjson.loads(body)
        except orjson.JSONDecodeError:
            raise self._not_json(response, body, "a chat answer") from None
        return orjson.dumps(self.decode(data, request))

    async def stream(self, request: ChatRequest) -> EventStream:
        response = await self._checked_stream(await self._post(request, self.options.timeouts.stream))
        return EventStream(response, self._translate(response, self.translator(request, self.writer(request))))

    async def _post(self, request: ChatRequest, timeouts: Any) -> UpstreamResponse:
        body = dump_json(self.encode(self.conformed(request)))
        response = await self.http.request(
            "POST", self.url(request), headers=self._json_headers, body=body, timeouts=timeouts, redactor=self.redactor
        )
        return await self._checked(response)

    async def _translate(self, response: UpstreamResponse, translator: StreamTranslator) -> AsyncGenerator[bytes, None]:
        decoder = SSEDecoder(self.options.max_event_size)
        async for chunk in response.iter_chunks():
            out = translate_events(translator, decoder.feed(chunk))
            if out:
                yield out
            if translator.complete:
                return
        tail = translate_events(translator, decoder.flush())
        tail += b"".join(translator.close())
        if tail:
            yield tail
        if not translator.complete:
            raise UpstreamUnreachable("The provider's stream ended before it was complete.")
