"""A chat stream as a Responses stream: chat chunks in, the Responses API's typed events out.

Each event is ``event: <type>`` plus its JSON with a ``sequence_number`` counted from 0:

    response.created, response.in_progress                   with the first chunk from the provider
    response.output_item.added, response.content_part.added  when a message (or reasoning) begins
    response.output_text.delta (.refusal.delta, .reasoning_text.delta)  as the text comes
    response.output_text.done, response.content_part.done, response.output_item.done
                                                             when another item begins, or at the end
    response.output_item.added + function_call_arguments.delta  per tool call; their .done at the end
    response.completed (response.incomplete for a length finish)  with the output and the usage

The provider's tool calls may interleave their argument fragments, so function-call items stay open
until the stream ends. A failure after the first event (the provider's in-stream error, a cut
connection) ends the stream with ``response.failed`` carrying the error (``failed``).
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson

from providers.errors import APIError, UpstreamError
from providers.sse import parse_event

from ..mcp.agent import Events
from ..telemetry.exchange import Exchange
from .answer import Shell, function_call, message, new_id, output_text, status_of
from .usage import from_chat as usage_from_chat
from .usage import telemetry_usage

__all__ = ["ResponseStream"]


class ResponseStream:
    """The client's Responses events over one chat stream (``chunks``: OpenAI SSE bytes, no [DONE])."""

    def __init__(self, shell: Shell, chunks: Events, exchange: Exchange) -> None:
        self.shell = shell
        self.chunks = chunks
        self.exchange = exchange
        self.sequence = 0
        self.started = False
        self.items: list[dict[str, Any]] = []
        self.open: dict[str, Any] | None = None  # the message or reasoning item receiving text
        self.open_kind = ""  # what it receives: message (output_text), refusal or reasoning
        self.pieces: list[str] = []
        self.calls: dict[int, dict[str, Any]] = {}  # chat tool-call index -> its function_call item
        self.finish: str | None = None
        self.usage: Any = None
        self._events = self._run()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._events

    async def aclose(self) -> None:
        try:
            await self._events.aclose()
        finally:
            await self.chunks.aclose()

    def failed(self, error: APIError) -> bytes:
        """The last event of a stream the provider could not complete."""
        out: list[bytes] = []
        if not self.started:
            self._start(out)
        code = "rate_limit_exceeded" if error.status == 429 or error.type == "rate_limit_error" else "server_error"
        failure = {"code": code, "message": error.message}
        self._emit(out, "response.failed", response=self.shell.response("failed", self.items, error=failure))
        return b"".join(out)

    async def _run(self) -> AsyncGenerator[bytes, None]:
        async for data in self.chunks:
            out: list[bytes] = []
            if not self.started:
                self._start(out)
            try:
                for block in data.split(b"\n\n"):
                    _, payload = parse_event(block)
                    if payload and payload != b"[DONE]":
                        self._chunk(orjson.loads(payload), out)
            except APIError:
                if out:  # what came before the error is the client's too, and numbered already
                    yield b"".join(out)
                raise
            if out:
                yield b"".join(out)
        out = []
        if not self.started:
            self._start(out)
        self._end(out)
        yield b"".join(out)

    # -- events ----------------------------------------------------------------------------------

    def _emit(self, out: list[bytes], kind: str, **fields: Any) -> None:
        data = orjson.dumps({"type": kind, "sequence_number": self.sequence, **fields})
        self.sequence += 1
        out.append(b"event: " + kind.encode() + b"\ndata: " + data + b"\n\n")

    def _start(self, out: list[bytes]) -> None:
        self.started = True
        self._emit(out, "response.created", response=self.shell.response("in_progress", []))
        self._emit(out, "response.in_progress", response=self.shell.response("in_progress", []))

    def _chunk(self, chunk: Any, out: list[bytes]) -> None:
        if not isinstance(chunk, dict):
            return
        if "error" in chunk:  # the provider's in-stream error: the relay ends the stream with ``failed``
            error = chunk["error"] if isinstance(chunk["error"], dict) else {"message": str(chunk["error"])}
            raise UpstreamError(
                str(error.get("message") or "The provider's stream failed."),
                type=error.get("type") if isinstance(error.get("type"), str) else None,
                code=error.get("code") if isinstance(error.get("code"), str) else None,
            )
        if isinstance(chunk.get("model"), str) and chunk["model"]:
            self.shell.model = chunk["model"]
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        choices = chunk.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            return
        choice = choices[0]
        delta = choice.get("delta")
        if isinstance(delta, dict):
            thought = delta.get("reasoning_content") or delta.get("reasoning")
            if isinstance(thought, str) and thought:
                self._text("reasoning", thought, out)
            content = delta.get("content")
            if isinstance(content, str) and content:
                self._text("message", content, out)
            refusal = delta.get("refusal")
            if isinstance(refusal, str) and refusal:
                self._text("refusal", refusal, out)
            for call in delta.get("tool_calls") or ():
                if isinstance(call, dict):
                    self._call(call, out)
        if choice.get("finish_reason"):
            self.finish = choice["finish_reason"]

    def _text(self, kind: str, piece: str, out: list[bytes]) -> None:
        """``piece`` of the open item of ``kind`` (message, refusal or reasoning), opened first if
        the open item is of another kind."""
        item = self.open
        if item is None or self.open_kind != kind:
            self._close_open(out, "completed")
            if kind == "reasoning":
                item = {"id": new_id("rs"), "type": "reasoning", "summary": [], "content": []}
            else:
                item = message([], "in_progress")
            self.open, self.open_kind = item, kind
            self.items.append(item)
            self._emit(out, "response.output_item.added", output_index=len(self.items) - 1, item=item)
            where = {"item_id": item["id"], "output_index": len(self.items) - 1, "content_index": 0}
            self._emit(out, "response.content_part.added", **where, part=_part(kind, ""))
        self.pieces.append(piece)
        where = {"item_id": item["id"], "output_index": len(self.items) - 1, "content_index": 0}
        delta, _ = _EVENTS[kind]
        if kind == "message":
            self._emit(out, delta, **where, delta=piece, logprobs=[])
        else:
            self._emit(out, delta, **where, delta=piece)

    def _close_open(self, out: list[bytes], status: str) -> None:
        item, kind = self.open, self.open_kind
        if item is None:
            return
        self.open = None
        text = "".join(self.pieces)
        self.pieces = []
        where = {"item_id": item["id"], "output_index": self.items.index(item), "content_index": 0}
        _, done = _EVENTS[kind]
        if kind == "message":
            self._emit(out, done, **where, text=text, logprobs=[])
        elif kind == "refusal":
            self._emit(out, done, **where, refusal=text)
        else:
            self._emit(out, done, **where, text=text)
        part = _part(kind, text)
        self._emit(out, "response.content_part.done", **where, part=part)
        item["content"] = [part]
        if item["type"] == "message":
            item["status"] = status
        self._emit(out, "response.output_item.done", output_index=where["output_index"], item=item)

    def _call(self, call: dict[str, Any], out: list[bytes]) -> None:
        index = call.get("index", 0)
        function = call.get("function")
        if not isinstance(function, dict):
            function = {}
        item = self.calls.get(index)
        if item is None:
            self._close_open(out, "completed")
            item = function_call(
                str(call.get("id") or new_id("call")), str(function.get("name") or ""), "", "in_progress"
            )
            self.calls[index] = item
            self.items.append(item)
            self._emit(out, "response.output_item.added", output_index=len(self.items) - 1, item=item)
        fragment = function.get("arguments")
        if isinstance(fragment, str) and fragment:
            item["arguments"] += fragment
            output_index = self.items.index(item)
            self._emit(
                out,
                "response.function_call_arguments.delta",
                item_id=item["id"],
                output_index=output_index,
                delta=fragment,
            )

    def _end(self, out: list[bytes]) -> None:
        status, incomplete = status_of(self.finish)
        self._close_open(out, "incomplete" if incomplete else "completed")
        for item in self.calls.values():
            output_index = self.items.index(item)
            self._emit(
                out,
                "response.function_call_arguments.done",
                item_id=item["id"],
                output_index=output_index,
                arguments=item["arguments"],
            )
            item["status"] = "completed"
            self._emit(out, "response.output_item.done", output_index=output_index, item=item)
        usage = usage_from_chat(self.usage)
        if usage is not None:
            self.exchange.usage = telemetry_usage(usage, self.shell.model, self.shell.id)
        self.exchange.response_model, self.exchange.response_id = self.shell.model, self.shell.id
        response = self.shell.response(status, self.items, usage, incomplete=incomplete)
        self._emit(out, "response.completed" if status == "completed" else "response.incomplete", response=response)


# The delta and done events of each kind of text.
_EVENTS = {
    "message": ("response.output_text.delta", "response.output_text.done"),
    "refusal": ("response.refusal.delta", "response.refusal.done"),
    "reasoning": ("response.reasoning_text.delta", "response.reasoning_text.done"),
}


def _part(kind: str, text: str) -> dict[str, Any]:
    if kind == "message":
        return output_text(text)
    if kind == "refusal":
        return {"type": "refusal", "refusal": text}
    return {"type": "reasoning_text", "text": text}
