"""Property: whatever an OpenAI-shaped stream holds and however its events are grouped into reads,
its Messages translation, read by the Anthropic SDK's own accumulator, is the answer the chunks
told: the thinking, the text, each tool call's input, the stop reason and the usage."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pydantic
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import RawMessageStreamEvent
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.messages.stream import MessageStream
from providers.sse import parse_event

EVENTS = pydantic.TypeAdapter(RawMessageStreamEvent)
TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


def chunk(delta: dict[str, Any] | None = None, finish: str | None = None, usage: dict[str, Any] | None = None) -> bytes:
    data: dict[str, Any] = {"id": "c1", "object": "chat.completion.chunk", "model": "m", "choices": []}
    if delta is not None or finish is not None:
        data["choices"] = [{"index": 0, "delta": delta or {}, "finish_reason": finish}]
    if usage is not None:
        data["usage"] = usage
    return b"data: " + orjson.dumps(data) + b"\n\n"


def pieces(text: str, cuts: list[int]) -> list[str]:
    points = sorted({c % (len(text) + 1) for c in cuts} | {0, len(text)})
    return [text[a:b] for a, b in itertools.pairwise(points) if text[a:b]]


@settings(max_examples=150, deadline=None)
@given(
    reasoning=TEXT,
    text=TEXT,
    calls=st.lists(st.dictionaries(st.sampled_from(["city", "n", "ok"]), TEXT, max_size=3), max_size=3),
    cuts=st.lists(st.integers(0, 40), max_size=6),
    groups=st.lists(st.integers(1, 4), min_size=1, max_size=20),
    finish=st.sampled_from(["stop", "length", "tool_calls"]),
)
def test_the_sdk_reads_back_what_the_chunks_said(
    reasoning: str, text: str, calls: list[dict[str, str]], cuts: list[int], groups: list[int], finish: str
) -> None:
    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"reasoning_content": p}) for p in pieces(reasoning, cuts)]
    events += [chunk({"content": p}) for p in pieces(text, cuts)]
    for index, arguments in enumerate(calls):
        raw = orjson.dumps(arguments).decode()
        start = {
            "index": index,
            "id": f"call_{index}",
            "type": "function",
            "function": {"name": f"f{index}", "arguments": ""},
        }
        events.append(chunk({"tool_calls": [start]}))
        events += [chunk({"tool_calls": [{"index": index, "function": {"arguments": p}}]}) for p in pieces(raw, cuts)]
    events.append(chunk(finish=finish))
    events.append(
        chunk(usage={"prompt_tokens": 9, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 3}})
    )

    translator = MessageStream("m")
    out = b""
    at = 0
    for size in [*groups, len(events)]:  # events grouped into reads as an adapter yields them
        out += translator.feed(b"".join(events[at : at + size]))
        at += size
    out += translator.end()

    snapshot = None
    buffers: dict[int, bytes] = {}
    for block in out.split(b"\n\n"):
        if not block:
            continue
        name, data = parse_event(block)
        if name == "ping":
            continue
        event = EVENTS.validate_json(data)
        assert event.type == name
        snapshot = accumulate_event(event=event, current_snapshot=snapshot, json_bufs=buffers)
    assert snapshot is not None
    kinds = [b.type for b in snapshot.content]
    expected = (["thinking"] if reasoning else []) + (["text"] if text else []) + ["tool_use"] * len(calls)
    assert kinds == expected
    if reasoning:
        assert snapshot.content[0].thinking == reasoning  # type: ignore[union-attr]
    if text:
        assert snapshot.content[kinds.index("text")].text == text  # type: ignore[union-attr]
    uses = [b for b in snapshot.content if b.type == "tool_use"]
    assert [(u.id, u.name, u.input) for u in uses] == [(f"call_{i}", f"f{i}", a) for i, a in enumerate(calls)]
    reason = {"stop": "end_turn", "length": "max_tokens", "tool_calls": "tool_use"}[finish]
    assert snapshot.stop_reason == ("tool_use" if calls and reason == "end_turn" else reason)
    assert (snapshot.usage.input_tokens, snapshot.usage.output_tokens) == (6, 4)
    assert snapshot.usage.cache_read_input_tokens == 3
