"""Chat with MCP tools: offer them, run the ones the model calls, and call the model again.

``Direct`` calls the adapter once (MCP off, or ``X-MCP-Bypass: true``); ``Agent`` loops:

1. the request goes out with the MCP tools added to the client's own;
2. when the model calls only MCP tools, the gateway runs them (in parallel, each bounded), appends
   the assistant message and one ``tool`` message per call, and asks again, up to the limit;
3. when the model calls a tool of the client's, the answer goes back with those calls only: the
   MCP calls of that turn are neither run nor shown (running them would cause effects whose results
   the model never sees; showing them would ask the client to answer calls it cannot run). The model
   sees the client's results next turn and calls again for what it still needs.

Streams stay one stream: text deltas pass as they come; each MCP call and result is told in a
chunk whose delta holds ``mcp_tool_call`` / ``mcp_tool_result`` (fields OpenAI's SDKs keep as
extras); one finish, one usage (summed over the calls) and one ``[DONE]`` end it.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any, Protocol

import orjson

from providers import Adapter, ChatRequest, EventStream
from providers.sse import parse_event
from providers.waiting import waiting

from .tools import ToolResult

__all__ = ["Agent", "ChatRunner", "Direct"]

log = logging.getLogger("polyrelay")


class Events(Protocol):
    def __aiter__(self) -> AsyncIterator[bytes]: ...

    async def aclose(self) -> None: ...


class Offer(Protocol):
    """The tools the agent offers the model and runs: the toolbox itself (direct mode) or the
    selector's two meta-tools over it."""

    def openai_tools(self) -> list[dict[str, Any]]: ...

    def owns(self, name: str) -> bool: ...

    async def call(self, name: str, arguments: str | None) -> ToolResult: ...


class ChatRunner(Protocol):
    async def chat(self, adapter: Adapter, request: ChatRequest) -> bytes: ...

    async def stream(self, adapter: Adapter, request: ChatRequest) -> Events: ...


class Direct:
    """One call, no tools added."""

    async def chat(self, adapter: Adapter, request: ChatRequest) -> bytes:
        return await adapter.chat(request)

    async def stream(self, adapter: Adapter, request: ChatRequest) -> Events:
        return await adapter.stream(request)


def _add_usage(total: dict[str, Any] | None, usage: Any) -> dict[str, Any] | None:
    if not isinstance(usage, dict):
        return total
    if total is None:
        copy: dict[str, Any] = orjson.loads(orjson.dumps(usage))  # a deep copy
        return copy
    for key, value in usage.items():
        if isinstance(value, int) and isinstance(total.get(key), int):
            total[key] += value
        elif isinstance(value, dict):
            total[key] = _add_usage(total.get(key) if isinstance(total.get(key), dict) else None, value) or {}
    return total


def _tool_messages(calls: list[dict[str, Any]], results: list[ToolResult]) -> list[dict[str, Any]]:
    return [
        {"role": "tool", "tool_call_id": call["id"], "content": f"Error: {r.text}" if r.is_error else r.text}
        for call, r in zip(calls, results, strict=True)
    ]


class Agent:
    def __init__(self, toolbox: Offer, max_iterations: int, call_timeout: float) -> None:
        self.toolbox = toolbox
        self.max_iterations = max(1, max_iterations)
        self.call_timeout = call_timeout

    def _with_tools(self, payload: dict[str, Any]) -> dict[str, Any] | None:
        tools = self.toolbox.openai_tools()
        if not tools or payload.get("tool_choice") == "none":
            return None
        own = payload.get("tools") or []
        return {**payload, "tools": [*own, *tools]}

    def _split(self, calls: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        ours = [c for c in calls if self.toolbox.owns(str((c.get("function") or {}).get("name")))]
        return ours, [c for c in calls if c not in ours]

    async def _run(self, calls: list[dict[str, Any]]) -> list[ToolResult]:
        async def one(call: dict[str, Any]) -> ToolResult:
            function = call.get("function") or {}
            name = str(function.get("name"))
            try:
                async with asyncio.timeout(self.call_timeout):
                    return await self.toolbox.call(name, function.get("arguments"))
            except TimeoutError:
                return ToolResult(f"{name} did not answer within {self.call_timeout:g}s.", is_error=True)

        with waiting():  # the tools' time is not the gateway's overhead
            return list(await asyncio.gather(*(one(c) for c in calls)))

    # -- JSON ------------------------------------------------------------------------------------

    async def chat(self, adapter: Adapter, request: ChatRequest) -> bytes:
        payload = self._with_tools(request.payload)
        if payload is None:
            return await adapter.chat(request)
        messages = list(payload["messages"])
        usage = None
        for iteration in range(self.max_iterations):
            answer = orjson.loads(await adapter.chat(ChatRequest({**payload, "messages": messages}, request.model)))
            usage = _add_usage(usage, answer.get("usage"))
            if usage is not None:
                answer["usage"] = usage
            choice = (answer.get("choices") or [{}])[0]
            message = choice.get("message") or {}
            ours, theirs = self._split(message.get("tool_calls") or [])
            if not ours:
                return orjson.dumps(answer)
            if theirs:  # the client's calls go back to it, alone
                message["tool_calls"] = theirs
                return orjson.dumps(answer)
            if iteration == self.max_iterations - 1:
                break  # no model call would follow: running the tools would only have effects
            log.info("MCP: running %s", ", ".join(str(c["function"]["name"]) for c in ours))
            results = await self._run(ours)
            messages += [
                {"role": "assistant", "content": message.get("content"), "tool_calls": ours},
                *_tool_messages(ours, results),
            ]
        log.warning("MCP: the model still called tools after %d calls; answering what it said", self.max_iterations)
        message.pop("tool_calls", None)
        choice["finish_reason"] = "length"
        return orjson.dumps(answer)

    # -- SSE -------------------------------------------------------------------------------------

    async def stream(self, adapter: Adapter, request: ChatRequest) -> Events:
        payload = self._with_tools(request.payload)
        if payload is None:
            return await adapter.stream(request)
        first = await adapter.stream(ChatRequest(payload, request.model, stream=True))
        return AgentStream(self, adapter, request.model, payload, first)


class AgentStream:
    """The client's one stream over several model calls."""

    def __init__(self, agent: Agent, adapter: Adapter, model: str, payload: dict[str, Any], first: EventStream) -> None:
        self.agent = agent
        self.adapter = adapter
        self.model = model
        self.payload = payload
        self.current: Events = first
        options = payload.get("stream_options")
        self.include_usage = isinstance(options, dict) and options.get("include_usage") is True
        self._events = self._run()

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._events

    async def aclose(self) -> None:
        try:
            await self._events.aclose()
        finally:
            await self.current.aclose()

    async def _run(self) -> AsyncGenerator[bytes, None]:
        agent, messages, usage = self.agent, list(self.payload["messages"]), None
        turn = Turn()
        for iteration in range(agent.max_iterations):
            turn = Turn(turn.id)
            async for data in self.current:
                out = turn.feed(data, first=iteration == 0)
                if out:
                    yield out
            await self.current.aclose()
            if turn.errored:
                return  # the provider's error event was the stream's last word
            usage = _add_usage(usage, turn.usage)
            ours, theirs = agent._split(turn.calls())
            if not ours or theirs:
                yield turn.ending(theirs, turn.finish or "stop", usage if self.include_usage else None)
                return
            if iteration == agent.max_iterations - 1:
                break  # no model call would follow: running the tools would only have effects
            yield b"".join(turn.event({"mcp_tool_call": _summary(c)}) for c in ours)
            results = await agent._run(ours)
            yield b"".join(
                turn.event({"mcp_tool_result": {**_summary(c), "content": r.text, "is_error": r.is_error}})
                for c, r in zip(ours, results, strict=True)
            )
            messages += [
                {"role": "assistant", "content": turn.text or None, "tool_calls": ours},
                *_tool_messages(ours, results),
            ]
            self.current = await self.adapter.stream(
                ChatRequest({**self.payload, "messages": messages}, self.model, stream=True)
            )
        log.warning("MCP: the model still called tools after %d calls; ending the stream", agent.max_iterations)
        yield turn.ending([], "length", usage if self.include_usage else None)


def _summary(call: dict[str, Any]) -> dict[str, Any]:
    function = call.get("function") or {}
    return {"id": call.get("id"), "name": function.get("name"), "arguments": function.get("arguments")}


class Turn:
    """One model call's stream: text passes on at once; tool calls, the finish and the usage are held
    until the call ends, when the agent knows whose tools were called."""

    def __init__(self, stream_id: str | None = None) -> None:
        self.id = stream_id  # the first call's chunk id, kept for every chunk of the client's stream
        self.model: str | None = None
        self.created: int | None = None
        self.text = ""
        self.finish: str | None = None
        self.usage: Any = None
        self.errored = False
        self._calls: dict[int, dict[str, Any]] = {}

    def feed(self, data: bytes, *, first: bool) -> bytes:
        out = []
        for block in data.split(b"\n\n"):
            _, payload = parse_event(block)  # "data:" with or without its space; comments skipped
            if not payload:
                continue
            chunk = orjson.loads(payload)
            if "error" in chunk:
                self.errored = True
                out.append(block + b"\n\n")
                continue
            self.id = self.id or chunk.get("id")
            self.model, self.created = chunk.get("model"), chunk.get("created")
            if chunk.get("usage"):
                self.usage = chunk["usage"]
            choices = chunk.get("choices") or []
            if not choices:
                continue
            choice = choices[0]
            delta = dict(choice.get("delta") or {})
            for call in delta.pop("tool_calls", None) or []:
                self._hold(call)
            self.finish = choice.get("finish_reason") or self.finish
            if not first:
                delta.pop("role", None)
            if delta.get("content"):
                self.text += delta["content"]
            if any(v not in (None, "") for v in delta.values()):
                out.append(self.event(delta))
        return b"".join(out)

    def _hold(self, call: dict[str, Any]) -> None:
        entry = self._calls.setdefault(
            int(call.get("index", 0)), {"id": None, "type": "function", "function": {"name": "", "arguments": ""}}
        )
        entry["id"] = call.get("id") or entry["id"]
        function = call.get("function") or {}
        entry["function"]["name"] += function.get("name") or ""
        entry["function"]["arguments"] += function.get("arguments") or ""

    def calls(self) -> list[dict[str, Any]]:
        return [self._calls[i] for i in sorted(self._calls)]

    def event(self, delta: dict[str, Any], finish: str | None = None, *, usage: Any = None) -> bytes:
        chunk: dict[str, Any] = {
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
        }
        chunk["choices"] = [] if usage is not None else [{"index": 0, "delta": delta, "finish_reason": finish}]
        if usage is not None:
            chunk["usage"] = usage
        return b"data: " + orjson.dumps(chunk) + b"\n\n"

    def ending(self, calls: list[dict[str, Any]], finish: str, usage: Any) -> bytes:
        """The client's tool calls (indexed from 0), the finish, and the usage when asked for."""
        out = [self.event({"tool_calls": [{**c, "index": i}]}) for i, c in enumerate(calls)]
        out.append(self.event({}, "tool_calls" if calls else finish))
        if usage is not None:
            out.append(self.event({}, usage=usage))
        return b"".join(out)
