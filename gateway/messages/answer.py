"""An OpenAI chat completion, as the Messages API's ``Message``.

reasoning_content           a thinking block (first; its signature empty: nobody signed it)
content                     a text block
tool_calls                  tool_use blocks, the arguments parsed into ``input``
finish_reason               stop_reason: stop end_turn, length max_tokens, tool_calls tool_use,
                            content_filter refusal
usage                       input_tokens without the cached ones (Anthropic counts those apart:
                            cache_read_input_tokens, cache_creation_input_tokens), output_tokens

message = to_message(orjson.loads(answer))
"""

from __future__ import annotations

from typing import Any

import orjson

from providers.errors import UpstreamInvalidAnswer

from ..telemetry.usage import Usage

__all__ = [
    "STOP_REASONS",
    "anthropic_usage",
    "matched_stop",
    "message_id",
    "telemetry_usage",
    "to_message",
    "tool_input",
]

STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def message_id(completion_id: Any) -> str:
    """The Message id for a completion's (kept, to be found in the provider's logs)."""
    return f"msg_{completion_id}" if isinstance(completion_id, str) and completion_id else "msg_gateway"


def tool_input(arguments: Any) -> dict[str, Any]:
    """A tool call's arguments as the ``input`` object; arguments that are not a JSON object (a
    model's slip) are kept whole under ``arguments``, so nothing the model said is lost."""
    if not arguments:
        return {}
    try:
        value = orjson.loads(arguments)
    except (orjson.JSONDecodeError, TypeError):
        value = None
    return value if isinstance(value, dict) else {"arguments": arguments}


def anthropic_usage(usage: Any) -> dict[str, int]:
    """OpenAI's usage as Anthropic's (zeros when the provider reported none)."""
    if not isinstance(usage, dict):
        return {"input_tokens": 0, "output_tokens": 0}
    details = usage.get("prompt_tokens_details")
    cached = details.get("cached_tokens") if isinstance(details, dict) else None
    cached = cached if type(cached) is int else 0
    written = usage.get("cache_creation_input_tokens")
    written = written if type(written) is int else 0
    prompt, output = usage.get("prompt_tokens"), usage.get("completion_tokens")
    out = {
        "input_tokens": max((prompt if type(prompt) is int else 0) - cached - written, 0),
        "output_tokens": output if type(output) is int else 0,
    }
    if cached:
        out["cache_read_input_tokens"] = cached
    if written:
        out["cache_creation_input_tokens"] = written
    return out


def telemetry_usage(usage: dict[str, Any], model: str | None = None, response_id: str | None = None) -> Usage:
    """Anthropic's usage (native or translated) in the gateway's terms: input counts every prompt
    token, cached ones included, as OpenAI's prompt_tokens does."""
    read = usage.get("cache_read_input_tokens")
    written = usage.get("cache_creation_input_tokens")
    read = read if type(read) is int else None
    written = written if type(written) is int else None
    given = usage.get("input_tokens")
    output = usage.get("output_tokens")
    return Usage(
        (given if type(given) is int else 0) + (read or 0) + (written or 0),
        output if type(output) is int else 0,
        read,
        written,
        model=model,
        response_id=response_id,
    )


def matched_stop(choice: dict[str, Any], stop_sequences: Any) -> str | None:
    """The stop sequence that ended the answer, where the provider says which: vLLM's
    ``stop_reason`` and SGLang's ``matched_stop`` name it (OpenAI's API does not)."""
    for key in ("stop_reason", "matched_stop"):
        matched = choice.get(key)
        if isinstance(matched, str) and isinstance(stop_sequences, list) and matched in stop_sequences:
            return matched
    return None


def to_message(completion: Any, stop_sequences: Any = None) -> dict[str, Any]:
    choices = completion.get("choices") if isinstance(completion, dict) else None
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise UpstreamInvalidAnswer("The provider's answer holds no choice to translate into a message.")
    choice = choices[0]
    message: dict[str, Any] = choice["message"] if isinstance(choice.get("message"), dict) else {}
    content: list[dict[str, Any]] = []
    reasoning = message.get("reasoning_content") or message.get("reasoning")
    if isinstance(reasoning, str) and reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = message.get("content")
    refusal = message.get("refusal")
    if isinstance(text, str) and text:
        content.append({"type": "text", "text": text})
    elif isinstance(refusal, str) and refusal:  # OpenAI's refusal, said where Anthropic says one
        content.append({"type": "text", "text": refusal})
    calls: list[Any] = message["tool_calls"] if isinstance(message.get("tool_calls"), list) else []
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            content.append(
                {
                    "type": "tool_use",
                    "id": str(call.get("id") or ""),
                    "name": str(function.get("name") or ""),
                    "input": tool_input(function.get("arguments")),
                }
            )
    reason = STOP_REASONS.get(str(choice.get("finish_reason")), "end_turn")
    if calls and reason == "end_turn":  # some providers finish a turn of calls with "stop"
        reason = "tool_use"
    elif isinstance(refusal, str) and refusal and not text:
        reason = "refusal"
    matched = matched_stop(choice, stop_sequences) if reason == "end_turn" else None
    return {
        "id": message_id(completion.get("id")),
        "type": "message",
        "role": "assistant",
        "model": str(completion.get("model") or ""),
        "content": content,
        "stop_reason": "stop_sequence" if matched else reason,
        "stop_sequence": matched,
        "usage": anthropic_usage(completion.get("usage")),
    }
