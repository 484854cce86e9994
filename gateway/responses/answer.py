"""A chat completion as a Response object, and the pieces of one that the stream shares.

A chat message becomes output items in the order a Responses model gives them: its reasoning (a
``reasoning`` item), its text or refusal (a ``message`` item with ``output_text`` / ``refusal``
content), then one ``function_call`` item per tool call, with the chat call's id as ``call_id``.
A ``length`` finish makes the response ``incomplete`` (``max_output_tokens``), ``content_filter``
too; every other finish is ``completed``.

>>> shell = Shell(echo={"tools": []}, model="llama")
>>> answer = {"model": "llama", "choices": [{"message": {"content": "Hi"}, "finish_reason": "stop"}]}
>>> body = from_chat(answer, shell)
>>> body["status"], body["output"][0]["content"][0]["text"]
('completed', 'Hi')
"""

from __future__ import annotations

import time
import uuid
from typing import Any

from .usage import from_chat as usage_from_chat

__all__ = ["Shell", "from_chat", "function_call", "message", "new_id", "output_text", "reasoning", "status_of"]


def new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex}"


class Shell:
    """What every state of one response carries: its id, creation time, model and the request's echo."""

    __slots__ = ("created_at", "echo", "id", "model")

    def __init__(self, echo: dict[str, Any], model: str) -> None:
        self.id = new_id("resp")
        self.created_at = int(time.time())
        self.echo = echo
        self.model = model

    def response(
        self,
        status: str,
        output: list[dict[str, Any]],
        usage: dict[str, Any] | None = None,
        *,
        incomplete: str | None = None,
        error: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "response",
            "created_at": self.created_at,
            "status": status,
            "background": False,
            "error": error,
            "incomplete_details": {"reason": incomplete} if incomplete else None,
            "model": self.model,
            "output": output,
            **self.echo,
            "usage": usage,
        }


def status_of(finish: str | None) -> tuple[str, str | None]:
    """The response's status and incomplete reason for a chat finish reason."""
    if finish == "length":
        return "incomplete", "max_output_tokens"
    if finish == "content_filter":
        return "incomplete", "content_filter"
    return "completed", None


def reasoning(text: str, item_id: str | None = None) -> dict[str, Any]:
    return {
        "id": item_id or new_id("rs"),
        "type": "reasoning",
        "summary": [],
        "content": [{"type": "reasoning_text", "text": text}],
    }


def output_text(text: str) -> dict[str, Any]:
    return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


def message(content: list[dict[str, Any]], status: str, item_id: str | None = None) -> dict[str, Any]:
    return {
        "id": item_id or new_id("msg"),
        "type": "message",
        "status": status,
        "role": "assistant",
        "content": content,
    }


def function_call(call_id: str, name: str, arguments: str, status: str, item_id: str | None = None) -> dict[str, Any]:
    return {
        "id": item_id or new_id("fc"),
        "type": "function_call",
        "status": status,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
    }


def from_chat(answer: dict[str, Any], shell: Shell) -> dict[str, Any]:
    """The Response object of a chat completion."""
    if isinstance(answer.get("model"), str):
        shell.model = answer["model"]
    choices = answer.get("choices")
    choice = choices[0] if isinstance(choices, list) and choices and isinstance(choices[0], dict) else {}
    said = choice.get("message")
    said = said if isinstance(said, dict) else {}
    status, incomplete = status_of(choice.get("finish_reason"))
    item_status = "incomplete" if incomplete else "completed"
    output: list[dict[str, Any]] = []
    thought = said.get("reasoning_content") or said.get("reasoning")
    if isinstance(thought, str) and thought:
        output.append(reasoning(thought))
    content: list[dict[str, Any]] = []
    if isinstance(said.get("content"), str) and said["content"]:
        content.append(output_text(said["content"]))
    if isinstance(said.get("refusal"), str) and said["refusal"]:
        content.append({"type": "refusal", "refusal": said["refusal"]})
    if content:
        output.append(message(content, item_status))
    for call in said.get("tool_calls") or ():
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            arguments = function.get("arguments")
            output.append(
                function_call(
                    str(call.get("id") or new_id("call")),
                    str(function.get("name") or ""),
                    arguments if isinstance(arguments, str) else "{}",
                    "completed",
                )
            )
    return shell.response(status, output, usage_from_chat(answer.get("usage")), incomplete=incomplete)
