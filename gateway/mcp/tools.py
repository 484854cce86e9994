"""The MCP toolbox: the tools of every connected server, under names the model can call.

A tool ``search`` is offered as ``mcp_search`` (inference-gateway's convention), in OpenAI's name
charset. When two servers offer the same tool, or the name would pass 64 characters, every such
tool is named ``mcp_<server>_<tool>`` instead, cut to 64 with a short hash if need be; the names
depend only on the servers' names and tools, so they are the same on every worker and restart.

>>> exposed_names([("docs", "search"), ("web", "search"), ("docs", "add")])
['mcp_docs_search', 'mcp_web_search', 'mcp_add']
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import orjson

from ..telemetry import Telemetry

__all__ = ["MCPTool", "ToolResult", "ToolServer", "Toolbox", "exposed_names"]

MAX_NAME = 64
_UNSAFE = re.compile(r"[^a-zA-Z0-9_-]+")


@dataclass(frozen=True, slots=True)
class MCPTool:
    server: str
    name: str  # as the server knows it
    exposed: str  # as the model sees it
    description: str
    input_schema: dict[str, Any]


@dataclass(frozen=True, slots=True)
class ToolResult:
    text: str
    is_error: bool = False


class ToolServer(Protocol):
    """What the toolbox needs of a server connection (see ``client.MCPConnection``)."""

    name: str

    @property
    def tools(self) -> Sequence[Any]: ...  # mcp.types.Tool-like: name, description, input_schema

    @property
    def generation(self) -> int: ...  # changes whenever the tool list does

    @property
    def available(self) -> bool: ...

    async def call(self, tool: str, arguments: dict[str, Any]) -> ToolResult: ...


def _safe(text: str) -> str:
    return _UNSAFE.sub("_", text).strip("_") or "tool"


def _fit(name: str, key: str) -> str:
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(key.encode()).hexdigest()[:6]
    return f"{name[: MAX_NAME - 7]}_{digest}"


def exposed_names(tools: Sequence[tuple[str, str]]) -> list[str]:
    """The model-facing name of each ``(server, tool)``, in order."""
    plain = [f"mcp_{_safe(tool)}" for _, tool in tools]
    counts: dict[str, int] = {}
    for name in plain:
        counts[name] = counts.get(name, 0) + 1
    names = []
    for (server, tool), name in zip(tools, plain, strict=True):
        if counts[name] > 1 or len(name) > MAX_NAME:
            name = _fit(f"mcp_{_safe(server)}_{_safe(tool)}", f"{server}/{tool}")
        names.append(name)
    return names


class Toolbox:
    """The tools on offer, recomputed when a server's tool list changes; calls routed by name."""

    def __init__(
        self,
        servers: Sequence[ToolServer],
        *,
        include: Iterable[str] = (),
        exclude: Iterable[str] = (),
        max_result_bytes: int = 65536,
        telemetry: Telemetry | None = None,
    ) -> None:
        self.servers = list(servers)
        self.telemetry = telemetry or Telemetry()
        self.include = frozenset(map(_filter_key, include))
        self.exclude = frozenset(map(_filter_key, exclude))
        self.max_result_bytes = max_result_bytes
        self._seen: tuple[int, ...] = ()
        self._tools: list[MCPTool] = []
        self._by_name: dict[str, tuple[ToolServer, MCPTool]] = {}
        self._servers: dict[str, ToolServer] = {server.name: server for server in self.servers}
        self._openai: list[dict[str, Any]] = []

    def tools(self) -> list[MCPTool]:
        self._refresh()
        return self._tools

    def openai_tools(self) -> list[dict[str, Any]]:
        """The tools as OpenAI function tools, for the request's ``tools``."""
        self._refresh()
        return self._openai

    def available(self, tool: MCPTool) -> bool:
        return self._servers[tool.server].available

    def owns(self, exposed: str) -> bool:
        self._refresh()
        return exposed in self._by_name

    async def call(self, exposed: str, arguments: str | None) -> ToolResult:
        """Run a tool; every failure is a result the model reads, never an exception."""
        found = self._by_name.get(exposed)
        if found is None:
            return ToolResult(f"There is no tool named {exposed}.", is_error=True)
        server, tool = found
        try:
            parsed = orjson.loads(arguments) if arguments else {}
        except orjson.JSONDecodeError:
            return ToolResult(f"The arguments for {exposed} are not valid JSON.", is_error=True)
        if not isinstance(parsed, dict):
            return ToolResult(f"The arguments for {exposed} must be a JSON object.", is_error=True)
        with self.telemetry.tool_call(server.name, tool.name) as call:
            result = await server.call(tool.name, parsed)
            if result.is_error:
                call.error = "tool_error"
        return self.capped(result)

    def capped(self, result: ToolResult) -> ToolResult:
        """The result, cut to MCP_MAX_RESULT_BYTES with a note saying so."""
        data = result.text.encode()
        if len(data) <= self.max_result_bytes:
            return result
        kept = data[: self.max_result_bytes].decode("utf-8", "ignore")
        note = f"\n[result cut to {self.max_result_bytes} of {len(data)} bytes by the gateway]"
        return ToolResult(kept + note, result.is_error)

    def _refresh(self) -> None:
        seen = tuple(server.generation for server in self.servers)
        if seen == self._seen:
            return
        self._seen = seen
        listed = [(server, tool) for server in self.servers for tool in server.tools]
        names = exposed_names([(server.name, tool.name) for server, tool in listed])
        tools, by_name = [], {}
        for (server, tool), exposed in zip(listed, names, strict=True):
            if not self._wanted(tool.name, exposed):
                continue
            schema = tool.input_schema if isinstance(tool.input_schema, dict) else {"type": "object"}
            entry = MCPTool(server.name, tool.name, exposed, tool.description or "", schema)
            tools.append(entry)
            by_name[exposed] = (server, entry)
        self._tools, self._by_name = tools, by_name
        self._openai = [
            {
                "type": "function",
                "function": {"name": t.exposed, "description": t.description, "parameters": t.input_schema},
            }
            for t in tools
        ]

    def _wanted(self, name: str, exposed: str) -> bool:
        keys = (_filter_key(name), _filter_key(exposed))
        if self.include:
            return keys[0] in self.include or keys[1] in self.include
        return keys[0] not in self.exclude and keys[1] not in self.exclude


def _filter_key(name: str) -> str:
    """What MCP_INCLUDE_TOOLS / MCP_EXCLUDE_TOOLS compare, as inference-gateway does: the name in
    lower case, with or without its ``mcp_`` prefix."""
    key = name.strip().lower()
    return key.removeprefix("mcp_")
