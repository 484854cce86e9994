"""Property: however the upstream's bytes are split into reads, the client gets the same stream."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway import Settings
from providers.anthropic import AnthropicStream
from providers.cohere import CohereStream
from providers.google import GoogleStream
from providers.native import ChunkWriter, StreamTranslator, translate_events
from providers.sse import SSEDecoder

from .native_fake_cohere import Cohere
from .native_fakes import ARGS, USAGE, Anthropic, Google

PROVIDERS = Settings.load({}).providers


def writer() -> ChunkWriter:
    return ChunkWriter("chatcmpl-fixed", "model", 1700000000, include_usage=True)


def anthropic_stream() -> tuple[bytes, Callable[[], StreamTranslator]]:
    blocks = [
        {"type": "thinking", "thinking": "Hmm, let me see.", "signature": "s"},
        {"type": "text", "text": "Here are two calls, ünïcödé included"},
        {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": ARGS},
        {"type": "tool_use", "id": "toolu_2", "name": "get_time", "input": {"zone": "CET"}},
    ]
    message = {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": "claude",
        "content": blocks,
        "stop_reason": "tool_use",
        "stop_sequence": None,
        "usage": USAGE,
    }
    return b"".join(Anthropic().events(message)), lambda: AnthropicStream(writer())


def google_stream() -> tuple[bytes, Callable[[], StreamTranslator]]:
    parts = [
        {"text": "thinking...", "thought": True},
        {"text": "Two calls follow, ünïcödé included"},
        {"functionCall": {"name": "get_weather", "args": ARGS}, "thoughtSignature": "c2ln"},
        {"functionCall": {"name": "get_time", "args": {"zone": "CET"}}},
    ]
    usage = {"promptTokenCount": 11, "candidatesTokenCount": 5, "thoughtsTokenCount": 2}
    data = b"".join(Google().events("gemini", parts, usage, "STOP"))
    return data, lambda: GoogleStream(writer(), PROVIDERS["google"])


def cohere_stream() -> tuple[bytes, Callable[[], StreamTranslator]]:
    calls = [
        {"id": f"call_{i}", "type": "function", "function": {"name": name, "arguments": '{"city": "Paris"}'}}
        for i, name in enumerate(("get_weather", "get_time"))
    ]
    answer = {
        "id": "c-1",
        "finish_reason": "TOOL_CALL",
        "usage": {"tokens": {"input_tokens": 11, "output_tokens": 7}},
        "message": {
            "role": "assistant",
            "content": [{"type": "thinking", "thinking": "Plan: ünïcödé"}],
            "tool_plan": "I will call both tools.",
            "tool_calls": calls,
        },
    }
    return b"".join(Cohere().events(answer)), lambda: CohereStream(writer())


STREAMS = {"anthropic": anthropic_stream, "google": google_stream, "cohere": cohere_stream}


def translate(data: bytes, cuts: list[int], make: Callable[[], StreamTranslator]) -> tuple[list[Any], bool]:
    translator, decoder = make(), SSEDecoder()
    out = b""
    edges = [0, *sorted(set(cuts)), len(data)]
    for start, end in itertools.pairwise(edges):
        out += translate_events(translator, decoder.feed(data[start:end]))
    out += translate_events(translator, decoder.flush())
    out += b"".join(translator.close())
    # ids generated per call (Gemini's) differ between runs; compare everything else
    return [_without_generated_ids(e) for e in out.split(b"\n\n") if e], translator.complete


def _without_generated_ids(event: bytes) -> Any:
    chunk = orjson.loads(event.removeprefix(b"data: "))
    for choice in chunk["choices"]:
        for call in choice["delta"].get("tool_calls") or []:
            if "id" in call:
                call["id"] = call["id"].split("~")[-1] if "~" in call["id"] else "generated"
    return chunk


def check(name: str, cuts: list[int]) -> None:
    data, make = STREAMS[name]()
    whole, complete = translate(data, [], make)
    assert complete and whole
    split, complete = translate(data, [c % (len(data) + 1) for c in cuts], make)
    assert complete and split == whole


@pytest.mark.parametrize("name", sorted(STREAMS))
@settings(max_examples=150, deadline=None)
@given(cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=40))
def test_any_split(name: str, cuts: list[int]) -> None:
    check(name, cuts)


def test_every_single_byte_boundary() -> None:
    for name in STREAMS:
        data, make = STREAMS[name]()
        whole, _ = translate(data, [], make)
        for cut in range(len(data) + 1):
            assert translate(data, [cut], make)[0] == whole, (name, cut)
