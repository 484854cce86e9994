"""The selector: two meta-tools offered in place of every MCP tool (``MCP_TOOL_MODE=selector``).

With many servers, the schemas of all their tools would fill the model's context on every call.
The selector offers two tools instead, and the model finds and runs what it needs through them:

    mcp_tools_list  {"query": "..."}                      the tools (name, description, parameters)
                                                          whose name or description holds the query
    mcp_tools_call  {"name": "mcp_add", "arguments": {}}  runs that tool with those arguments

A tool stays callable under its own name too: a model that lists tools and then calls one
directly gets its result rather than a refusal. Both meta-tools answer through the toolbox, so
MCP_INCLUDE_TOOLS / MCP_EXCLUDE_TOOLS, the result cap and the tool metrics apply as in direct mode.
"""

from __future__ import annotations

from typing import Any

import orjson

from .tools import Toolbox, ToolResult

__all__ = ["CALL", "LIST", "Selector"]

LIST = "mcp_tools_list"
CALL = "mcp_tools_call"

_META = [
    {
        "type": "function",
        "function": {
            "name": LIST,
            "description": (
                "List the tools this gateway can run for you: each tool's name, description and JSON Schema "
                f"parameters. Give a query to list only the tools whose name or description contains it. Then "
                f"run one with {CALL}."
            ),
            "parameters": {
                "type": "object",
                "properties": {
                    "query": {"type": "string", "description": "Words the tool's name or description contains."}
                },
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": CALL,
            "description": f"Run a tool listed by {LIST}, with arguments that follow its parameters schema.",
            "parameters": {
                "type": "object",
                "properties": {
                    "name": {"type": "string", "description": f"The tool's name, as {LIST} gives it."},
                    "arguments": {"type": "object", "description": "The tool's arguments."},
                },
                "required": ["name"],
            },
        },
    },
]


class Selector:
    """What the agent offers the model in selector mode; the same surface as ``Toolbox``.

    >>> selector = Selector(Toolbox([]))  # no server, so no tool to find: nothing is offered
    >>> selector.owns("mcp_tools_call"), selector.openai_tools()
    (True, [])
    """

    def __init__(self, toolbox: Toolbox) -> None:
        self.toolbox = toolbox

    def openai_tools(self) -> list[dict[str, Any]]:
        return _META if self.toolbox.tools() else []  # no tool to find: nothing is offered

    def owns(self, name: str) -> bool:
        return name in (LIST, CALL) or self.toolbox.owns(name)

    async def call(self, name: str, arguments: str | None) -> ToolResult:
        if name not in (LIST, CALL):
            return await self.toolbox.call(name, arguments)
        try:
            parsed = orjson.loads(arguments) if arguments else {}
        except orjson.JSONDecodeError:
            return ToolResult(f"The arguments for {name} are not valid JSON.", is_error=True)
        if not isinstance(parsed, dict):
            return ToolResult(f"The arguments for {name} must be a JSON object.", is_error=True)
        return self._list(parsed.get("query")) if name == LIST else await self._call(parsed)

    def _list(self, query: Any) -> ToolResult:
        words = str(query or "").lower().split()
        found = [
            {"name": t.exposed, "description": t.description, "parameters": t.input_schema}
            for t in self.toolbox.tools()
            if all(w in f"{t.exposed} {t.description}".lower() for w in words)
        ]
        if not found:
            return ToolResult(f"No tool matches {query!r}; call {LIST} without a query to see them all.")
        return self.toolbox.capped(ToolResult(orjson.dumps(found).decode()))

    async def _call(self, parsed: dict[str, Any]) -> ToolResult:
        tool = str(parsed.get("name") or "")
        if not tool:
            return ToolResult(f"{CALL} needs the name of a tool, as {LIST} gives it.", is_error=True)
        if not self.toolbox.owns(tool) and self.toolbox.owns(f"mcp_{tool}"):
            tool = f"mcp_{tool}"  # the name the server gives it
        arguments = parsed.get("arguments")
        if isinstance(arguments, str):  # some models send the object as JSON text
            return await self.toolbox.call(tool, arguments)
        return await self.toolbox.call(tool, orjson.dumps(arguments or {}).decode())
