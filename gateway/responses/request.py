"""A Responses request as an OpenAI chat request, for providers that do not serve ``/responses``.

``to_chat`` reads the request once and returns the chat payload plus the fields a Response object
echoes back. What chat cannot express is refused with a 400 naming the field: state kept by OpenAI
(``previous_response_id``, ``conversation``, ``background``, stored ``prompt`` templates, item
references), hosted tools (web search, file search...), files. Fields that only tune OpenAI's own
service (``include``, ``truncation``, ``service_tier``, ``prompt_cache_key``...) are accepted and
have no effect.

>>> chat, echo = to_chat({"model": "groq/llama", "instructions": "Be brief.", "input": "Hi"})
>>> chat["messages"]
[{'role': 'system', 'content': 'Be brief.'}, {'role': 'user', 'content': 'Hi'}]
"""

from __future__ import annotations

from typing import Any

from providers.errors import InvalidRequest

__all__ = ["has_image", "refuse_state", "to_chat"]

_NO_STATE = (
    "This gateway keeps no state between requests, so it cannot serve '{field}' for a provider it reaches "
    "by translation; send the whole conversation in 'input' instead."
)


def refuse_state(payload: dict[str, Any]) -> None:
    """A 400 for the fields that need responses stored by the server."""
    for field in ("previous_response_id", "conversation", "prompt"):
        if payload.get(field) is not None:
            raise InvalidRequest(_NO_STATE.format(field=field), param=field, code="state_not_supported")
    if payload.get("background") is True:
        raise InvalidRequest(
            "Background responses need the server to keep them until they are fetched, and this gateway keeps no "
            "state for providers it reaches by translation; leave 'background' unset and wait for the answer "
            "(or stream it).",
            param="background",
            code="state_not_supported",
        )


def to_chat(payload: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The chat payload for a Responses request, and the request fields its Response echoes."""
    refuse_state(payload)
    tools, names = _tools(payload.get("tools"))
    chat: dict[str, Any] = {"model": payload["model"], "messages": _messages(payload)}
    choice, tools = _tool_choice(payload.get("tool_choice"), tools, names)
    if tools:
        chat["tools"] = tools
        if isinstance(payload.get("parallel_tool_calls"), bool):
            chat["parallel_tool_calls"] = payload["parallel_tool_calls"]
    if choice is not None:
        chat["tool_choice"] = choice
    response_format = _response_format(payload.get("text"))
    if response_format is not None:
        chat["response_format"] = response_format
    effort = _effort(payload.get("reasoning"))
    if effort is not None:
        chat["reasoning_effort"] = effort
    limit = payload.get("max_output_tokens")
    if limit is not None:
        if type(limit) is not int or limit < 1:
            raise InvalidRequest("'max_output_tokens' must be a positive integer.", param="max_output_tokens")
        chat["max_tokens"] = limit
    for field in ("temperature", "top_p"):
        value = payload.get(field)
        if value is not None:
            if type(value) not in (int, float):
                raise InvalidRequest(f"'{field}' must be a number.", param=field)
            chat[field] = value
    user = payload.get("safety_identifier") or payload.get("user")
    if isinstance(user, str) and user:
        chat["user"] = user
    if payload.get("stream") is True:
        chat["stream"] = True
        chat["stream_options"] = {"include_usage": True}  # for the usage of response.completed
    return chat, _echo(payload)


def _echo(payload: dict[str, Any]) -> dict[str, Any]:
    """What a Response object says of the request that made it."""
    text = payload.get("text")
    reasoning = payload.get("reasoning")
    return {
        "instructions": payload.get("instructions"),
        "max_output_tokens": payload.get("max_output_tokens"),
        "metadata": payload.get("metadata") or {},
        "parallel_tool_calls": payload.get("parallel_tool_calls") is not False,
        "previous_response_id": None,
        "reasoning": {"effort": reasoning.get("effort"), "summary": None} if isinstance(reasoning, dict) else None,
        "store": False,  # nothing is stored, whatever the request asked (see the README)
        "temperature": payload.get("temperature"),
        "text": text if isinstance(text, dict) and text.get("format") else {"format": {"type": "text"}},
        "tool_choice": payload.get("tool_choice") or "auto",
        "tools": payload.get("tools") or [],
        "top_p": payload.get("top_p"),
        "truncation": "disabled",
        "user": payload.get("user"),
    }


# -- input ---------------------------------------------------------------------------------------


def _messages(payload: dict[str, Any]) -> list[dict[str, Any]]:
    messages: list[dict[str, Any]] = []
    instructions = payload.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise InvalidRequest("'instructions' must be a string.", param="instructions")
        if instructions:
            messages.append({"role": "system", "content": instructions})
    given = payload.get("input")
    if isinstance(given, str):
        messages.append({"role": "user", "content": given})
    elif isinstance(given, list):
        for index, item in enumerate(given):
            _item(item, f"input[{index}]", messages)
    else:
        raise InvalidRequest("'input' is required: a string or a list of input items.", param="input")
    if not messages:
        raise InvalidRequest("'input' holds no message for the model.", param="input")
    return messages


def _item(item: Any, where: str, messages: list[dict[str, Any]]) -> None:
    if type(item) is not dict:
        raise InvalidRequest(f"{where} must be an object (an input item).", param=where)
    kind = item.get("type")
    if kind is None or kind == "message":
        messages.append(_message(item, where))
    elif kind == "function_call":
        call = {
            "id": _string(item, "call_id", where),
            "type": "function",
            "function": {"name": _string(item, "name", where), "arguments": _string(item, "arguments", where)},
        }
        last = messages[-1] if messages else None
        # Calls of one model turn are one assistant message in chat, after its text if it had some.
        if last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind == "function_call_output":
        output = item.get("output")
        text = output if isinstance(output, str) else _text(output, f"{where}.output", ("input_text", "output_text"))
        messages.append({"role": "tool", "tool_call_id": _string(item, "call_id", where), "content": text})
    elif kind == "reasoning":
        pass  # a model's reasoning is its own: another model (or turn) is not given it back
    elif kind == "item_reference":
        raise InvalidRequest(
            _NO_STATE.format(field=f"{where} (an item_reference)"), param=where, code="state_not_supported"
        )
    else:
        raise InvalidRequest(
            f"{where} is an item of type {kind!r}, which only a provider serving the Responses API natively takes; "
            "through translation the gateway takes message, function_call, function_call_output and reasoning items.",
            param=f"{where}.type",
            code="unsupported_item",
        )


_ROLES = ("user", "assistant", "system", "developer")


def _message(item: dict[str, Any], where: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in _ROLES:
        raise InvalidRequest(f"{where}.role must be one of {', '.join(_ROLES)}; got {role!r}.", param=f"{where}.role")
    content = item.get("content")
    if role == "user":
        return {"role": "user", "content": _user_content(content, f"{where}.content")}
    kinds = ("output_text", "refusal", "input_text") if role == "assistant" else ("input_text",)
    text = content if isinstance(content, str) else _text(content, f"{where}.content", kinds)
    # developer becomes system: every chat protocol the gateway speaks has that role.
    return {"role": "assistant" if role == "assistant" else "system", "content": text}


def _user_content(content: Any, where: str) -> str | list[dict[str, Any]]:
    if isinstance(content, str):
        return content
    if not isinstance(content, list):
        raise InvalidRequest(f"{where} must be a string or a list of content parts.", param=where)
    parts: list[dict[str, Any]] = []
    for index, part in enumerate(content):
        at = f"{where}[{index}]"
        kind = part.get("type") if type(part) is dict else None
        if kind in ("input_text", "output_text"):
            parts.append({"type": "text", "text": _string(part, "text", at)})
        elif kind == "input_image":
            parts.append({"type": "image_url", "image_url": _image(part, at)})
        elif kind == "input_file":
            raise InvalidRequest(
                f"{at}: file inputs are served only by providers that take the Responses API natively.",
                param=at,
                code="unsupported_content",
            )
        else:
            raise InvalidRequest(f"{at} must be an input_text or input_image part; got {kind!r}.", param=at)
    return parts


def _image(part: dict[str, Any], where: str) -> dict[str, Any]:
    url = part.get("image_url")
    if not isinstance(url, str) or not url:
        if part.get("file_id"):
            raise InvalidRequest(
                f"{where}: a file_id names a file stored at OpenAI, which providers reached by translation cannot "
                "read; send the image as an https URL or a data: URI in image_url.",
                param=f"{where}.file_id",
                code="unsupported_content",
            )
        raise InvalidRequest(f"{where}.image_url is required: an https URL or a data: URI.", param=f"{where}.image_url")
    image = {"url": url}
    detail = part.get("detail")
    if isinstance(detail, str) and detail != "auto":
        image["detail"] = detail
    return image


def _text(content: Any, where: str, kinds: tuple[str, ...]) -> str:
    """The text of a list of parts (of ``kinds``), joined."""
    if not isinstance(content, list):
        raise InvalidRequest(f"{where} must be a string or a list of content parts.", param=where)
    texts = []
    for index, part in enumerate(content):
        at = f"{where}[{index}]"
        kind = part.get("type") if type(part) is dict else None
        if kind not in kinds:
            raise InvalidRequest(f"{at} must be one of the part types {', '.join(kinds)}; got {kind!r}.", param=at)
        texts.append(_string(part, "refusal" if kind == "refusal" else "text", at))
    return "".join(texts)


def _string(item: dict[str, Any], field: str, where: str) -> str:
    value = item.get(field)
    if not isinstance(value, str):
        raise InvalidRequest(f"{where}.{field} must be a string.", param=f"{where}.{field}")
    return value


# -- tools, formats, reasoning -------------------------------------------------------------------


def _tools(tools: Any) -> tuple[list[dict[str, Any]], set[str]]:
    """Chat's function tools from the flat Responses ones, and their names."""
    if tools is None:
        return [], set()
    if not isinstance(tools, list):
        raise InvalidRequest("'tools' must be a list of tools.", param="tools")
    out, names = [], set()
    for index, tool in enumerate(tools):
        where = f"tools[{index}]"
        kind = tool.get("type") if type(tool) is dict else None
        if not isinstance(kind, str):
            raise InvalidRequest(f"{where} must be an object with a string 'type' (function).", param=where)
        if kind != "function":
            raise InvalidRequest(
                f"{where} is a {kind!r} tool, a tool hosted by OpenAI; providers reached by translation take "
                "function tools only (send the request to a provider that serves /v1/responses natively).",
                param=f"{where}.type",
                code="unsupported_tool",
            )
        function: dict[str, Any] = {"name": _string(tool, "name", where)}
        if tool.get("description") is not None:
            function["description"] = _string(tool, "description", where)
        if tool.get("parameters") is not None:
            function["parameters"] = tool["parameters"]
        if isinstance(tool.get("strict"), bool):
            function["strict"] = tool["strict"]
        out.append({"type": "function", "function": function})
        names.add(function["name"])
    return out, names


def _tool_choice(
    choice: Any, tools: list[dict[str, Any]], names: set[str]
) -> tuple[str | dict[str, Any] | None, list[dict[str, Any]]]:
    """Chat's ``tool_choice``, and the tools left to offer (``allowed_tools`` narrows them)."""
    if choice is None or choice in ("auto", "none", "required"):
        return choice, tools
    kind = choice.get("type") if type(choice) is dict else None
    if kind == "function":
        name = _string(choice, "name", "tool_choice")
        if name not in names:
            raise InvalidRequest(
                f"tool_choice names the function {name!r}, which is not in 'tools'.", param="tool_choice"
            )
        return {"type": "function", "function": {"name": name}}, tools
    if kind == "allowed_tools":
        mode = choice.get("mode", "auto")
        allowed = choice.get("tools")
        if mode not in ("auto", "required") or not isinstance(allowed, list):
            raise InvalidRequest(
                "tool_choice allowed_tools needs a mode (auto, required) and tools.", param="tool_choice"
            )
        kept = {t.get("name") for t in allowed if type(t) is dict and t.get("type") == "function"}
        return mode, [t for t in tools if t["function"]["name"] in kept]
    raise InvalidRequest(
        "tool_choice must be auto, none, required, a function ({type: function, name}) or allowed_tools; hosted "
        "tools are served only by providers that take the Responses API natively.",
        param="tool_choice",
        code="unsupported_tool",
    )


def _response_format(text: Any) -> dict[str, Any] | None:
    if text is None:
        return None
    if type(text) is not dict:
        raise InvalidRequest("'text' must be an object such as {format: {type: json_schema, ...}}.", param="text")
    fmt = text.get("format")
    kind = fmt.get("type") if type(fmt) is dict else None
    if fmt is None or kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema":
        assert type(fmt) is dict
        schema = fmt.get("schema")
        if type(schema) is not dict:
            raise InvalidRequest("text.format.schema must be a JSON schema object.", param="text.format.schema")
        spec: dict[str, Any] = {"name": _string(fmt, "name", "text.format"), "schema": schema}
        if isinstance(fmt.get("description"), str):
            spec["description"] = fmt["description"]
        if isinstance(fmt.get("strict"), bool):
            spec["strict"] = fmt["strict"]
        return {"type": "json_schema", "json_schema": spec}
    raise InvalidRequest("text.format.type must be text, json_object or json_schema.", param="text.format.type")


def _effort(reasoning: Any) -> str | None:
    if reasoning is None:
        return None
    if type(reasoning) is not dict:
        raise InvalidRequest("'reasoning' must be an object such as {effort: low}.", param="reasoning")
    effort = reasoning.get("effort")
    if effort is not None and not isinstance(effort, str):
        raise InvalidRequest("reasoning.effort must be a string such as low, medium or high.", param="reasoning.effort")
    return effort


# -- the vision gate -----------------------------------------------------------------------------


def has_image(payload: dict[str, Any]) -> bool:
    """Whether the request's input holds an image part (messages, or a tool's output)."""
    given = payload.get("input")
    if not isinstance(given, list):
        return False
    for item in given:
        if type(item) is not dict:
            continue
        content = item.get("content") if item.get("type") != "function_call_output" else item.get("output")
        if isinstance(content, list):
            for part in content:
                if type(part) is dict and part.get("type") == "input_image":
                    return True
    return False
