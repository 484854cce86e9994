"""An estimate of a request's input tokens, for providers with no count_tokens endpoint.

Counted over the translated (OpenAI-shaped) request, what the provider would be sent: the
characters of every text, tool call, tool result and tool definition, divided by four (the
usual ratio of English text and code to the tokens of today's tokenizers), rounded up; plus
``IMAGE_TOKENS`` per image (Anthropic's cost of an image at its largest size, about
width x height / 750), and ``MESSAGE_TOKENS`` per message for its role and framing. An estimate:
a provider's own tokenizer may count 20-30 % apart, more for languages other than English.

>>> estimate({"messages": [{"role": "user", "content": "Hello, world"}]})
7
"""

from __future__ import annotations

import math
from typing import Any

import orjson

__all__ = ["IMAGE_TOKENS", "MESSAGE_TOKENS", "estimate"]

CHARS_PER_TOKEN = 4
IMAGE_TOKENS = 1600
MESSAGE_TOKENS = 4


def estimate(payload: dict[str, Any]) -> int:
    chars = 0
    images = 0
    for message in payload["messages"]:
        content = message.get("content")
        if isinstance(content, str):
            chars += len(content)
        elif isinstance(content, list):
            for part in content:
                if part.get("type") == "image_url":
                    images += 1
                else:
                    chars += len(part.get("text", ""))
        for call in message.get("tool_calls") or ():
            function = call["function"]
            chars += len(function["name"]) + len(function["arguments"])
    if payload.get("tools"):
        chars += len(orjson.dumps(payload["tools"]))
    messages = len(payload["messages"])
    return math.ceil(chars / CHARS_PER_TOKEN) + images * IMAGE_TOKENS + messages * MESSAGE_TOKENS
