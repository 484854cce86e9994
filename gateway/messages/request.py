"""A Messages request: checked as Anthropic's API checks it, and translated to an OpenAI chat request.

``parse`` reads the body and refuses (400, in Anthropic's words where it has them) what no
provider could take; ``to_chat`` turns it into the OpenAI-shaped payload every adapter speaks:

    system (string or text blocks)      a system message (blocks joined by blank lines)
    text / image blocks                 a user message's string, or text and image_url parts
    tool_use blocks                     the assistant message's tool_calls (input as JSON arguments)
    tool_result blocks                  tool messages, before the rest of their user turn; an
                                        error's text prefixed "Error: ", its images in that turn
    thinking / redacted_thinking        dropped: an OpenAI request has no place for past reasoning
    tools (input_schema), tool_choice   function tools; auto, required, a named function, none
    stop_sequences, temperature, top_p  stop, temperature, top_p; top_k where the adapter takes it
    max_tokens, metadata.user_id        max_tokens (max_completion_tokens at OpenAI), user
    thinking, output_config.effort      reasoning_effort, for OpenAI-protocol providers
    output_config.format json_schema    response_format json_schema

Fields with no counterpart (cache_control, service_tier, container...) are dropped; blocks and tools
with none (documents, server tools, files) are refused with a 400 that names them.
"""

from __future__ import annotations

from typing import Any

import orjson

from providers.errors import InvalidRequest
from providers.json_codec import load_json
from providers.registry import Provider

__all__ = ["has_images", "parse", "to_chat"]

# The request fields of Anthropic's API; those the translation has no use for are dropped, any
# other is refused, as Anthropic refuses it.
TRANSLATED = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "stream",
        "stop_sequences",
        "temperature",
        "top_p",
        "top_k",
        "metadata",
        "tools",
        "tool_choice",
        "thinking",
        "output_config",
    }
)
DROPPED = frozenset(
    {"cache_control", "container", "context_management", "diagnostics", "inference_geo", "mcp_servers"}
    | {"service_tier", "speed"}
)
# Where OpenAI's own API refuses max_tokens for its reasoning models; other OpenAI-protocol
# providers (Mistral, DeepSeek, Ollama...) know max_tokens only.
COMPLETION_TOKENS = frozenset({"openai"})
# Anthropic's thinking budget, as the effort an OpenAI reasoning model is asked for.
EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}


def parse(body: bytes, *, count_only: bool = False) -> dict[str, Any]:
    """The request object, or a 400 naming the first thing wrong with its shape (block contents are
    the translation's, or the native provider's, to check). ``count_only``: a count_tokens request,
    which has no ``max_tokens``."""
    request = load_json(body)
    if not isinstance(request, dict):
        raise InvalidRequest("The request body must be a JSON object.", code="invalid_json")
    model = request.get("model")
    if not isinstance(model, str) or not model.strip():
        raise InvalidRequest("model: a non-empty string is required, such as openai/gpt-4o.", param="model")
    if not count_only:
        max_tokens = request.get("max_tokens")
        if type(max_tokens) is not int or max_tokens < 1:
            raise InvalidRequest("max_tokens: a positive integer is required.", param="max_tokens")
        stream = request.get("stream")
        if stream is not None and type(stream) is not bool:
            raise InvalidRequest("stream: must be true or false.", param="stream")
    messages = request.get("messages")
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("messages: a non-empty list of messages is required.", param="messages")
    for index, message in enumerate(messages):
        where = f"messages.{index}"
        if type(message) is not dict or message.get("role") not in ("user", "assistant"):
            raise InvalidRequest(f"{where}: must be an object whose role is user or assistant.", param=where)
        content = message.get("content")
        if type(content) is list:
            for i, block in enumerate(content):
                if type(block) is not dict or type(block.get("type")) is not str:
                    raise InvalidRequest(f"{where}.content.{i}: must be a block with a string type.", param=where)
        elif type(content) is not str:
            raise InvalidRequest(f"{where}.content: must be a string or a list of blocks.", param=where)
    system = request.get("system")
    if system is not None and type(system) is not str:
        _text_blocks(system, "system")
    return request


def has_images(request: dict[str, Any]) -> bool:
    """Whether any message holds an image, tool results included (for the vision gate)."""
    for message in request["messages"]:
        content = message["content"]
        if type(content) is list:
            for block in content:
                kind = block["type"]
                if kind == "image":
                    return True
                inner = block.get("content") if kind == "tool_result" else None
                if type(inner) is list and any(type(b) is dict and b.get("type") == "image" for b in inner):
                    return True
    return False


def to_chat(request: dict[str, Any], provider: Provider, model: str) -> dict[str, Any]:
    """The OpenAI chat payload for ``provider`` (``model``: the provider's own model name)."""
    unknown = sorted(set(request) - TRANSLATED - DROPPED)
    if unknown:
        raise InvalidRequest(f"{unknown[0]}: Extra inputs are not permitted.", param=unknown[0])
    messages: list[dict[str, Any]] = []
    system = request.get("system")
    if system:
        text = system if type(system) is str else "\n\n".join(b["text"] for b in _text_blocks(system, "system"))
        messages.append({"role": "system", "content": text})
    for index, message in enumerate(request["messages"]):
        if message["role"] == "user":
            messages += _user_turn(message["content"], f"messages.{index}", provider.id)
        else:
            assistant = _assistant_turn(message["content"], f"messages.{index}", provider.id)
            if assistant is not None:
                messages.append(assistant)
    openai_protocol = provider.spec.adapter == "openai"
    field = "max_completion_tokens" if provider.id in COMPLETION_TOKENS else "max_tokens"
    payload: dict[str, Any] = {"model": model, "messages": messages}
    if "max_tokens" in request:
        payload[field] = request["max_tokens"]
    if request.get("stream") is True:
        payload["stream"] = True
        payload["stream_options"] = {"include_usage": True}
    stop = request.get("stop_sequences")
    if stop:
        if type(stop) is not list or not all(type(s) is str for s in stop):
            raise InvalidRequest("stop_sequences: must be a list of strings.", param="stop_sequences")
        payload["stop"] = stop
    for key in ("temperature", "top_p") if openai_protocol else ("temperature", "top_p", "top_k"):
        value = request.get(key)
        if value is not None:
            if type(value) not in (int, float):
                raise InvalidRequest(f"{key}: must be a number.", param=key)
            payload[key] = value
    metadata = request.get("metadata")
    if type(metadata) is dict and type(metadata.get("user_id")) is str:
        payload["user"] = metadata["user_id"]
    tools = [_tool(t, i, provider.id) for i, t in enumerate(_list(request.get("tools"), "tools"))]
    if tools:
        payload["tools"] = tools
    _tool_choice(request.get("tool_choice"), payload)
    effort = _effort(request.get("thinking"), request.get("output_config"))
    if effort is not None and openai_protocol:
        payload["reasoning_effort"] = effort
    response_format = _response_format(request.get("output_config"))
    if response_format is not None:
        payload["response_format"] = response_format
    return payload


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if type(value) is not list:
        raise InvalidRequest(f"{where}: must be a list.", param=where)
    return value


def _text_blocks(blocks: Any, where: str) -> list[dict[str, Any]]:
    if type(blocks) is not list:
        raise InvalidRequest(f"{where}: must be a string or a list of text blocks.", param=where)
    for i, block in enumerate(blocks):
        if type(block) is not dict or block.get("type") != "text" or type(block.get("text")) is not str:
            raise InvalidRequest(f"{where}.{i}: must be a text block with a string text.", param=where)
    return blocks


def _not_translated(kind: str, where: str, provider: str) -> InvalidRequest:
    return InvalidRequest(
        f"{where}: '{kind}' blocks are not translated for provider '{provider}' (only anthropic models take "
        "them); send text, image, tool_use and tool_result blocks.",
        param=where,
    )


def _image(block: dict[str, Any], where: str, provider: str) -> dict[str, Any]:
    source = block.get("source")
    kind = source.get("type") if type(source) is dict else None
    if kind == "base64" and type(source.get("media_type")) is str and type(source.get("data")) is str:  # type: ignore[union-attr]
        url = f"data:{source['media_type']};base64,{source['data']}"  # type: ignore[index]
    elif kind == "url" and type(source.get("url")) is str:  # type: ignore[union-attr]
        url = source["url"]  # type: ignore[index]
    else:
        raise InvalidRequest(
            f"{where}.source: an image is translated for provider '{provider}' from a base64 or url source "
            f"(with its media_type and data, or its url); got {kind!r}.",
            param=where,
        )
    return {"type": "image_url", "image_url": {"url": url}}


def _text(block: dict[str, Any], where: str) -> str:
    text = block.get("text")
    if type(text) is not str:
        raise InvalidRequest(f"{where}.text: must be a string.", param=where)
    return text


def _user_turn(content: Any, where: str, provider: str) -> list[dict[str, Any]]:
    """The OpenAI messages of one user turn: its tool results first (they answer the previous
    assistant turn's calls, where OpenAI wants them), then its text and images."""
    if type(content) is str:
        return [{"role": "user", "content": content}]
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for i, block in enumerate(content):
        at, kind = f"{where}.content.{i}", block["type"]
        if kind == "text":
            parts.append({"type": "text", "text": _text(block, at)})
        elif kind == "image":
            parts.append(_image(block, at, provider))
        elif kind == "tool_result":
            text, images = _tool_result(block, at, provider)
            results.append({"role": "tool", "tool_call_id": block["tool_use_id"], "content": text})
            parts += images
        else:
            raise _not_translated(kind, at, provider)
    if not parts:
        return results
    if all(p["type"] == "text" for p in parts):
        return [*results, {"role": "user", "content": "\n\n".join(p["text"] for p in parts)}]
    return [*results, {"role": "user", "content": parts}]


def _tool_result(block: dict[str, Any], where: str, provider: str) -> tuple[str, list[dict[str, Any]]]:
    """A result's text (an error's prefixed, as the gateway's own tool loop writes them) and images
    (an OpenAI tool message holds text only: they join the user turn)."""
    if type(block.get("tool_use_id")) is not str:
        raise InvalidRequest(f"{where}.tool_use_id: a string is required.", param=where)
    content = block.get("content")
    texts: list[str] = []
    images: list[dict[str, Any]] = []
    if type(content) is str:
        texts.append(content)
    elif content is not None:
        for i, inner in enumerate(_list(content, f"{where}.content")):
            at = f"{where}.content.{i}"
            kind = inner.get("type") if type(inner) is dict else None
            if kind == "text":
                texts.append(_text(inner, at))
            elif kind == "image":
                images.append(_image(inner, at, provider))
            else:
                raise _not_translated(str(kind), at, provider)
    text = "\n\n".join(texts)
    if block.get("is_error") is True:
        text = f"Error: {text}"
    return text, images


def _assistant_turn(content: Any, where: str, provider: str) -> dict[str, Any] | None:
    if type(content) is str:
        return {"role": "assistant", "content": content}
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    for i, block in enumerate(content):
        at, kind = f"{where}.content.{i}", block["type"]
        if kind == "text":
            texts.append(_text(block, at))
        elif kind == "tool_use":
            call_id, name, arguments = block.get("id"), block.get("name"), block.get("input", {})
            if type(call_id) is not str or type(name) is not str or type(arguments) is not dict:
                raise InvalidRequest(f"{at}: tool_use needs a string id and name, and an object input.", param=at)
            function = {"name": name, "arguments": orjson.dumps(arguments).decode()}
            calls.append({"id": call_id, "type": "function", "function": function})
        elif kind in ("thinking", "redacted_thinking"):
            continue  # past reasoning: signed for Anthropic's models, nothing another provider reads
        else:
            raise _not_translated(kind, at, provider)
    if not texts and not calls:
        return None
    message: dict[str, Any] = {"role": "assistant", "content": "\n\n".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tool(tool: Any, index: int, provider: str) -> dict[str, Any]:
    where = f"tools.{index}"
    if type(tool) is not dict:
        raise InvalidRequest(f"{where}: must be an object.", param=where)
    kind = tool.get("type")
    if kind not in (None, "custom"):
        raise InvalidRequest(
            f"{where}: the server tool '{kind}' runs at Anthropic and is not translated for provider "
            f"'{provider}'; offer it as a custom tool with an input_schema.",
            param=where,
        )
    name, schema = tool.get("name"), tool.get("input_schema")
    if type(name) is not str or not name or type(schema) is not dict:
        raise InvalidRequest(f"{where}: a tool needs a name and an input_schema object.", param=where)
    function: dict[str, Any] = {"name": name, "parameters": schema}
    if type(tool.get("description")) is str:
        function["description"] = tool["description"]
    if type(tool.get("strict")) is bool:
        function["strict"] = tool["strict"]
    return {"type": "function", "function": function}


def _tool_choice(choice: Any, payload: dict[str, Any]) -> None:
    if choice is None:
        return
    kind = choice.get("type") if type(choice) is dict else None
    if kind == "auto":
        translated: Any = "auto"
    elif kind == "any":
        translated = "required"
    elif kind == "none":
        translated = "none"
    elif kind == "tool" and type(choice.get("name")) is str:  # type: ignore[union-attr]
        translated = {"type": "function", "function": {"name": choice["name"]}}  # type: ignore[index]
    else:
        raise InvalidRequest("tool_choice: must be auto, any, none, or tool with a name.", param="tool_choice")
    if not payload.get("tools"):
        return  # OpenAI refuses a tool_choice without tools; with none offered, none is called anyway
    payload["tool_choice"] = translated
    if choice.get("disable_parallel_tool_use") is True:  # type: ignore[union-attr]
        payload["parallel_tool_calls"] = False


def _effort(thinking: Any, output_config: Any) -> str | None:
    """The reasoning effort: the one asked for, else one from the thinking budget (under 4k
    tokens low, under 16k medium, more high); none when thinking is off or not asked for."""
    asked = output_config.get("effort") if type(output_config) is dict else None
    kind = thinking.get("type") if type(thinking) is dict else None
    if kind == "disabled":
        return None
    if type(asked) is str and asked in EFFORTS:
        return EFFORTS[asked]
    if kind == "enabled":
        budget = thinking.get("budget_tokens")  # type: ignore[union-attr]
        if type(budget) is not int:
            raise InvalidRequest("thinking.budget_tokens: an integer is required.", param="thinking")
        return "low" if budget < 4096 else "medium" if budget < 16384 else "high"
    if kind == "adaptive":
        return "medium"
    return None


def _response_format(output_config: Any) -> dict[str, Any] | None:
    fmt = output_config.get("format") if type(output_config) is dict else None
    if fmt is None:
        return None
    if type(fmt) is not dict or fmt.get("type") != "json_schema" or type(fmt.get("schema")) is not dict:
        raise InvalidRequest("output_config.format: must be a json_schema with a schema object.", param="output_config")
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": fmt["schema"], "strict": True}}
