"""OpenAI chat chunks in, the Messages API's stream events out.

    first chunk                 message_start (usage zero: OpenAI's comes at the end), ping
    reasoning_content deltas    a thinking block: content_block_start, thinking_delta...
    content (refusal) deltas    a text block: content_block_start, text_delta... (a refusal's
                                stop_reason: refusal)
    a tool call (id, name)      a tool_use block; its argument fragments as input_json_delta
    the end of the stream       content_block_stop of the open block, message_delta (stop_reason,
                                usage in full), message_stop
    an in-stream error event    Anthropic's ``event: error``, and the stream ends there

One block is open at a time, as Anthropic streams them; a block ends when another kind begins.
The gateway's own MCP tool calls and results (``mcp_tool_call`` deltas) are not shown: the client
sees the model's text around them, as it would from a model that ran the tools itself.

    translator = MessageStream(model, request.get("stop_sequences"))
    async for chunk in openai_events: out = translator.feed(chunk)
    out = translator.end()
"""

from __future__ import annotations

from typing import Any

import orjson

from providers.errors import UpstreamStatusError
from providers.sse import parse_event

from ..telemetry.usage import Usage
from .answer import STOP_REASONS, anthropic_usage, matched_stop, message_id, telemetry_usage

__all__ = ["MessageStream", "event"]


def event(data: dict[str, Any]) -> bytes:
    kind: str = data["type"]
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


_PING = event({"type": "ping"})
_STOP = event({"type": "message_stop"})


class MessageStream:
    """One stream's translation state: the open block, the tool calls seen, the stop reason."""

    __slots__ = (
        "block",
        "failure",
        "finish",
        "index",
        "matched",
        "model",
        "refused",
        "started",
        "stop_sequences",
        "tools",
        "usage",
    )

    def __init__(self, model: str, stop_sequences: Any = None) -> None:
        self.model = model
        self.stop_sequences = stop_sequences
        self.matched: str | None = None  # the stop sequence the provider said ended the answer
        self.started = False
        self.index = -1  # of the open block (or of the last one)
        self.block: str | None = None  # its kind: text, thinking, tool_use; None when none is open
        self.tools: dict[int, int] = {}  # OpenAI tool call index -> its block's index
        self.finish: str | None = None
        self.refused = False
        self.usage: dict[str, Any] | None = None
        self.failure: UpstreamStatusError | None = None  # the provider's in-stream error, once it came

    def feed(self, chunk: bytes) -> bytes:
        """The events for one piece of the OpenAI stream (whole events, one or several). After an
        error event, ``failure`` holds it: the events before it are still returned, to be sent first."""
        out: list[bytes] = []
        for block in chunk.split(b"\n\n"):
            if not block:
                continue
            _, data = parse_event(block)
            if not data or data == b"[DONE]":
                continue
            try:
                self._chunk(orjson.loads(data), out)
            except UpstreamStatusError as error:
                self.failure = error
                break
        return b"".join(out)

    def end(self) -> bytes:
        """The events that close a stream whose upstream finished."""
        out: list[bytes] = []
        self._start(out, "")
        self._close(out)
        reason = STOP_REASONS.get(self.finish or "stop", "end_turn")
        if self.tools and reason == "end_turn":
            reason = "tool_use"
        elif self.refused and reason == "end_turn":
            reason = "refusal"
        matched = self.matched if reason == "end_turn" else None
        delta = {"stop_reason": "stop_sequence" if matched else reason, "stop_sequence": matched}
        out.append(event({"type": "message_delta", "delta": delta, "usage": anthropic_usage(self.usage)}))
        out.append(_STOP)
        return b"".join(out)

    def telemetry(self) -> Usage | None:
        """The stream's usage, once the provider reported it."""
        if self.usage is None:
            return None
        return telemetry_usage(anthropic_usage(self.usage), self.model)

    def _start(self, out: list[bytes], completion_id: str) -> None:
        if self.started:
            return
        self.started = True
        message: dict[str, Any] = {
            "id": message_id(completion_id),
            "type": "message",
            "role": "assistant",
            "model": self.model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": 0, "output_tokens": 0},
        }
        out.append(event({"type": "message_start", "message": message}))
        out.append(_PING)

    def _chunk(self, chunk: Any, out: list[bytes]) -> None:
        if not isinstance(chunk, dict):
            return
        error = chunk.get("error")
        if error is not None:
            raise _stream_error(error)
        if isinstance(chunk.get("model"), str) and not self.started:
            self.model = chunk["model"] or self.model
        self._start(out, str(chunk.get("id") or ""))
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        for choice in chunk.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue  # a Messages answer has one choice
            delta = choice.get("delta")
            if isinstance(delta, dict):
                self._delta(delta, out)
            if choice.get("finish_reason"):
                self.finish = str(choice["finish_reason"])
                self.matched = matched_stop(choice, self.stop_sequences)

    def _delta(self, delta: dict[str, Any], out: list[bytes]) -> None:
        reasoning = delta.get("reasoning_content") or delta.get("reasoning")
        if isinstance(reasoning, str) and reasoning:
            self._open(out, "thinking", {"type": "thinking", "thinking": "", "signature": ""})
            out.append(self._delta_event({"type": "thinking_delta", "thinking": reasoning}))
        text = delta.get("content")
        refusal = delta.get("refusal")
        if isinstance(refusal, str) and refusal:  # OpenAI's refusal, told as the text it is
            text, self.refused = refusal, True
        if isinstance(text, str) and text:
            self._open(out, "text", {"type": "text", "text": ""})
            out.append(self._delta_event({"type": "text_delta", "text": text}))
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict):
                self._tool_call(call, out)

    def _tool_call(self, call: dict[str, Any], out: list[bytes]) -> None:
        position = call.get("index", 0)
        function: dict[str, Any] = call["function"] if isinstance(call.get("function"), dict) else {}
        if position not in self.tools:
            block = {"type": "tool_use", "id": str(call.get("id") or ""), "name": str(function.get("name") or "")}
            self._open(out, "tool_use", {**block, "input": {}}, force=True)
            self.tools[position] = self.index
        arguments = function.get("arguments")
        # Fragments of a call whose block is closed (calls streamed interleaved) cannot be told in
        # Anthropic's sequence of blocks; providers stream one call after another.
        if isinstance(arguments, str) and arguments and self.tools[position] == self.index and self.block:
            out.append(self._delta_event({"type": "input_json_delta", "partial_json": arguments}))

    def _open(self, out: list[bytes], kind: str, content_block: dict[str, Any], force: bool = False) -> None:
        if self.block == kind and not force:
            return
        self._close(out)
        self.index += 1
        self.block = kind
        out.append(event({"type": "content_block_start", "index": self.index, "content_block": content_block}))

    def _close(self, out: list[bytes]) -> None:
        if self.block is not None:
            out.append(event({"type": "content_block_stop", "index": self.index}))
            self.block = None

    def _delta_event(self, delta: dict[str, Any]) -> bytes:
        return event({"type": "content_block_delta", "index": self.index, "delta": delta})


def _stream_error(error: Any) -> UpstreamStatusError:
    """A provider's in-stream error, raised so the relay ends the stream with Anthropic's error event."""
    message = error.get("message") if isinstance(error, dict) else error
    return UpstreamStatusError(502, f"The provider's stream failed: {message or 'no reason given'}")
