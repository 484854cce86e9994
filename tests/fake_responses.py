"""A fake of OpenAI's ``POST /v1/responses``, for the registry entries that list ``responses``.

It checks the request the way the API does (the openai SDK's ``ResponseCreateParams`` types, unknown
parameters refused, function tools flat, a ``function_call_output`` answering a call made before it),
then acts out the scenario named by the model:

    echo (any name)   "You said: <last user text>" (+ " [N images]"); after a tool's output, "Tool said: <output>"
    tool              a call to the first function tool offered, arguments {"city": "Paris"}
    error-<status>    OpenAI's error envelope with that status (429 adds Retry-After)
    broken-stream     (streams) a few events, then the connection is cut
    hang              (streams) two events, then silence until the client leaves (then in ``disconnects``)
    failed-stream     (streams) created, in_progress, then ``response.failed`` (a server error)
    slow              waits 5 s before answering (a client that leaves first is in ``disconnects``)
    leak              "Your key is <the Authorization received>"

Answers are Response objects and streams the typed, numbered events of the real API (no [DONE]).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from typing import Any

import orjson
import pydantic
from aiohttp import web

from .native_fakes import force, received_credential, received_key, write_split

ARGUMENTS = '{"city": "Paris"}'
USAGE = {
    "input_tokens": 13,
    "input_tokens_details": {"cached_tokens": 3, "cache_write_tokens": 0},
    "output_tokens": 6,
    "output_tokens_details": {"reasoning_tokens": 0},
    "total_tokens": 19,
}


class OpenAIResponses:
    def __init__(self) -> None:
        from openai.types.responses.response_create_params import ResponseCreateParamsNonStreaming

        self.fields = set(ResponseCreateParamsNonStreaming.__annotations__) | {"stream"}
        self.adapter = pydantic.TypeAdapter(ResponseCreateParamsNonStreaming)
        self.disconnects: list[str] = []  # models whose stream lost its client

    def problem(self, body: Any) -> tuple[str, str | None] | None:
        """What the API would answer 400 to (message, param), or None."""
        if not isinstance(body, dict):
            return "The request body must be a JSON object.", None
        for field in body:
            if field not in self.fields:
                return f"Unknown parameter: '{field}'.", field
        try:
            force(self.adapter.validate_python({k: v for k, v in body.items() if k != "stream"}))
        except pydantic.ValidationError as exc:
            return f"Invalid request: {exc}", None
        for index, tool in enumerate(body.get("tools") or []):
            if tool.get("type") == "function" and not isinstance(tool.get("name"), str):
                return f"Missing required parameter: 'tools[{index}].name'.", f"tools[{index}].name"
        called: set[str] = set()
        items = body["input"] if isinstance(body.get("input"), list) else []
        for index, item in enumerate(items):
            if item.get("type") == "function_call":
                called.add(item["call_id"])
            if item.get("type") == "function_call_output" and item["call_id"] not in called:
                return f"No tool call found for function call output with call_id {item['call_id']}.", f"input[{index}]"
        return None

    async def handle(self, request: web.Request, raw: bytes) -> web.StreamResponse:
        try:
            body = orjson.loads(raw)
        except orjson.JSONDecodeError:
            return _error(400, "We could not parse the JSON body of your request.")
        problem = self.problem(body)
        if problem is not None:
            return _error(400, problem[0], param=problem[1])
        model = str(body["model"])
        if model.startswith("error-"):
            status = int(model.removeprefix("error-"))
            headers = {"Retry-After": "7"} if status == 429 else None
            # Like some real providers, the 401 quotes the key it got: the gateway must not pass it on.
            said = f" (key {request.headers.get('Authorization', '')})" if status == 401 else ""
            return _error(status, f"fake responses refused with {status}{said}", headers=headers)
        output = _output(model, body, received_credential(request))
        response = _response(body, model, "completed", output, USAGE)
        try:
            if model == "slow":
                await asyncio.sleep(5)
            if not body.get("stream"):
                return web.json_response(response)
            return await _stream(request, model, body, response)
        except (asyncio.CancelledError, ConnectionResetError):
            self.disconnects.append(model)
            raise


def _error(
    status: int, message: str, *, param: str | None = None, headers: dict[str, str] | None = None
) -> web.Response:
    kind = "invalid_request_error" if status < 500 else "server_error"
    body = {"error": {"message": message, "type": kind, "param": param, "code": f"fake_{status}"}}
    return web.json_response(body, status=status, headers=headers)


def _last_user_text(body: dict[str, Any]) -> tuple[str, int]:
    given = body.get("input")
    if isinstance(given, str):
        return given, 0
    for item in reversed(given or []):
        if item.get("role") == "user":
            content = item.get("content")
            if isinstance(content, str):
                return content, 0
            texts = [p["text"] for p in content if p.get("type") == "input_text"]
            return " ".join(texts), sum(p.get("type") == "input_image" for p in content)
    return "", 0


def _output(model: str, body: dict[str, Any], said: str) -> list[dict[str, Any]]:
    tools = [t for t in body.get("tools") or [] if t.get("type") == "function"]
    given = body.get("input")
    last = given[-1] if isinstance(given, list) and given else {}
    if model == "tool" and tools and last.get("type") != "function_call_output":
        call = {
            "id": "fc_fake1",
            "type": "function_call",
            "status": "completed",
            "call_id": "call_fake1",
            "name": tools[0]["name"],
            "arguments": ARGUMENTS,
        }
        return [call]
    if last.get("type") == "function_call_output":
        text = f"Tool said: {last['output']}"
    elif model == "leak":
        text = f"Your key is {said}"
    else:
        prompt, images = _last_user_text(body)
        text = f"You said: {prompt}" + (f" [{images} images]" if images else "")
    content = [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
    return [{"id": "msg_fake1", "type": "message", "status": "completed", "role": "assistant", "content": content}]


def _response(
    body: dict[str, Any], model: str, status: str, output: list[dict[str, Any]], usage: dict[str, Any] | None
) -> dict[str, Any]:
    return {
        "id": "resp_fake1",
        "object": "response",
        "created_at": int(time.time()),
        "status": status,
        "background": False,
        "error": None,
        "incomplete_details": None,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "model": model,
        "output": output,
        "parallel_tool_calls": body.get("parallel_tool_calls", True),
        "previous_response_id": body.get("previous_response_id"),
        "reasoning": {"effort": None, "summary": None},
        "store": body.get("store", True),
        "temperature": body.get("temperature", 1.0),
        "text": body.get("text") or {"format": {"type": "text"}},
        "tool_choice": body.get("tool_choice", "auto"),
        "tools": body.get("tools") or [],
        "top_p": body.get("top_p", 1.0),
        "truncation": "disabled",
        "usage": usage,
        "user": None,
        "metadata": body.get("metadata") or {},
    }


def _events(body: dict[str, Any], model: str, response: dict[str, Any]) -> Iterator[dict[str, Any]]:
    started = _response(body, model, "in_progress", [], None)
    yield {"type": "response.created", "response": started}
    yield {"type": "response.in_progress", "response": started}
    for index, item in enumerate(response["output"]):
        where = {"item_id": item["id"], "output_index": index}
        if item["type"] == "function_call":
            added = {**item, "arguments": "", "status": "in_progress"}
            yield {"type": "response.output_item.added", "output_index": index, "item": added}
            for piece in (ARGUMENTS[:6], ARGUMENTS[6:]):
                yield {"type": "response.function_call_arguments.delta", **where, "delta": piece, "obfuscation": "x"}
            yield {"type": "response.function_call_arguments.done", **where, "arguments": item["arguments"]}
        else:
            part = item["content"][0]
            added = {**item, "content": [], "status": "in_progress"}
            yield {"type": "response.output_item.added", "output_index": index, "item": added}
            yield {"type": "response.content_part.added", **where, "content_index": 0, "part": {**part, "text": ""}}
            words = part["text"].split(" ")
            for i, word in enumerate(words):
                delta = word if i == 0 else " " + word
                yield {
                    "type": "response.output_text.delta",
                    **where,
                    "content_index": 0,
                    "delta": delta,
                    "logprobs": [],
                    # The API pads deltas with a random string unless stream_options turn it off.
                    "obfuscation": "pad"[: 1 + i % 3],
                }
            yield {
                "type": "response.output_text.done",
                **where,
                "content_index": 0,
                "text": part["text"],
                "logprobs": [],
            }
            yield {"type": "response.content_part.done", **where, "content_index": 0, "part": part}
        yield {"type": "response.output_item.done", "output_index": index, "item": item}
    yield {"type": "response.completed", "response": response}


async def _stream(
    request: web.Request, model: str, body: dict[str, Any], response: dict[str, Any]
) -> web.StreamResponse:
    answer = web.StreamResponse(headers={"Content-Type": "text/event-stream; charset=utf-8"})
    await answer.prepare(request)
    key = received_key(request) if model == "leak" else None
    for number, event in enumerate(_events(body, model, response)):
        data = orjson.dumps({**event, "sequence_number": number})
        await write_split(answer, b"event: " + event["type"].encode() + b"\ndata: " + data + b"\n\n", key)
        if model == "failed-stream" and number == 1:
            failure = {"code": "server_error", "message": "The model failed."}
            failed = {**_response(body, model, "failed", [], None), "error": failure}
            data = orjson.dumps({"type": "response.failed", "sequence_number": 2, "response": failed})
            await answer.write(b"event: response.failed\ndata: " + data + b"\n\n")
            return answer
        if model == "hang" and number == 1:
            await asyncio.sleep(3600)
        if model == "broken-stream" and number == 3:
            await asyncio.sleep(0.01)
            request.transport.close()  # type: ignore[union-attr]
            return answer
    return answer
