"""``Selector``: MCP_TOOL_MODE=selector, two meta-tools instead of every tool's schema.

With hundreds of MCP tools, their schemas alone would fill a model's context on every request.
In selector mode (inference-gateway's default) the model is offered two tools of the gateway's
own, under inference-gateway's names, and finds and runs the others through them:

    mcp_tools_get      {"query"?: str, "names"?: [str]} -> the catalog: every tool's name, one-line
                       description and server; with ``names``, those tools' input schemas too
    mcp_tools_execute  {"name": str, "arguments"?: object} -> the named tool's result

It offers what ``Toolbox`` offers the agent (``openai_tools``, ``owns``, ``call``), so the agent
loop runs the meta-tools as it runs tools; include/exclude filters, guardrails, limits and metrics
apply to the tools it runs as in direct mode.
"""

from __future__ import annotations

from typing import Any

import orjson

from .tools import MCPTool, Toolbox, ToolResult, filter_key

__all__ = ["EXECUTE", "GET", "Selector"]

GET = "mcp_tools_get"
EXECUTE = "mcp_tools_execute"
_TOOLS = [
    {
        "type": "function",
        "function": {
            "name": GET,
            "description": (
                "List the MCP tools this gateway can run: without arguments, each tool's name and "
                "one-line description; with names, those tools' full input schemas. Look a tool up "
                "here before running it with mcp_tools_execute."
            ),
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "Only tools whose name or description contains it."},
                    "names": {
                        "type": "array",
                        "items": {"type": "string"},
                        "description": "Tools whose input schemas to return.",
                    },
                },
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": EXECUTE,
            "description": "Run an MCP tool by its name from mcp_tools_get, with arguments matching its schema.",
            "parameters": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "description": "The tool's name, as mcp_tools_get lists it."},
                    "arguments": {"type": "object", "description": "The tool's arguments."},
                },
                "required": ["name"],
            },
        },
    },
]


class Selector:
    def __init__(self, toolbox: Toolbox) -> None:
        self.toolbox = toolbox

    def openai_tools(self) -> list[dict[str, Any]]:
        """The two meta-tools, or none when there is no tool to select (as in direct mode)."""
        return _TOOLS if self.toolbox.openai_tools() else []

    def owns(self, name: str) -> bool:
        return name in (GET, EXECUTE)

    async def call(self, name: str, arguments: str | None) -> ToolResult:
        try:
            parsed = orjson.loads(arguments) if arguments else {}
        except orjson.JSONDecodeError:
            return ToolResult(f"The arguments for {name} are not valid JSON.", is_error=True)
        if not isinstance(parsed, dict):
            return ToolResult(f"The arguments for {name} must be a JSON object.", is_error=True)
        if name == GET:
            return self._catalog(parsed)
        tool = self._find(parsed.get("name"))
        if tool is None:
            return ToolResult(f"There is no tool named {parsed.get('name')!r}; call {GET} for the list.", is_error=True)
        given = parsed.get("arguments")
        if given is not None and not isinstance(given, dict):
            return ToolResult(f"The arguments of {EXECUTE} must be an object.", is_error=True)
        return await self.toolbox.call(tool.exposed, orjson.dumps(given or {}).decode())

    def _catalog(self, arguments: dict[str, Any]) -> ToolResult:
        tools = self.toolbox.tools()  # include/exclude already applied
        names = arguments.get("names")
        if isinstance(names, list) and names:
            wanted = {filter_key(str(n)) for n in names}
            chosen = [t for t in tools if filter_key(t.exposed) in wanted or filter_key(t.name) in wanted]
            entries = [_entry(t, schema=True) for t in chosen]
        else:
            query = str(arguments.get("query") or "").strip().lower()
            chosen = [t for t in tools if not query or query in t.exposed.lower() or query in t.description.lower()]
            entries = [_entry(t, schema=False) for t in chosen]
        return ToolResult(orjson.dumps({"tools": entries}).decode())

    def _find(self, name: Any) -> MCPTool | None:
        if not isinstance(name, str):
            return None
        key = filter_key(name)
        tools = self.toolbox.tools()  # include/exclude already applied
        return next((t for t in tools if filter_key(t.exposed) == key), None) or next(
            (t for t in tools if filter_key(t.name) == key), None
        )


def _entry(tool: MCPTool, schema: bool) -> dict[str, Any]:
    entry: dict[str, Any] = {"name": tool.exposed, "description": _first_line(tool.description), "server": tool.server}
    if schema:
        entry["description"] = tool.description
        entry["input_schema"] = tool.input_schema
    return entry


def _first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0][:200]
