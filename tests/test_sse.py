"""The SSE decoder against the spec's line endings, split at every possible chunk boundary."""

from __future__ import annotations

import pytest

from providers.sse import SSEDecoder, parse_event

STREAM = (
    b'data: {"a": 1}\n\n'
    b": keep-alive comment\n\n"
    b'event: message_delta\ndata: {"b": 2}\n\n\n'
    b"data: line one\ndata: line two\n\n"
    b"data: [DONE]\n\n"
)
EVENTS = [
    b'data: {"a": 1}',
    b": keep-alive comment",
    b'event: message_delta\ndata: {"b": 2}',
    b"data: line one\ndata: line two",
    b"data: [DONE]",
]


def decode(chunks: list[bytes]) -> list[bytes]:
    decoder = SSEDecoder()
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    return events + decoder.flush()


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_every_split_point_and_line_ending(newline: bytes) -> None:
    stream = STREAM.replace(b"\n", newline)
    for cut in range(len(stream) + 1):
        assert decode([stream[:cut], stream[cut:]]) == EVENTS, (newline, cut)


def test_byte_by_byte_crlf() -> None:
    stream = STREAM.replace(b"\n", b"\r\n")
    assert decode([stream[i : i + 1] for i in range(len(stream))]) == EVENTS


def test_byte_order_mark_is_dropped() -> None:
    assert decode([b"\xef\xbb\xbfdata: x\n\n"]) == [b"data: x"]


def test_unterminated_last_event_is_kept() -> None:
    assert decode([b"data: a\n\ndata: [DONE]\n"]) == [b"data: a", b"data: [DONE]"]


def test_parse_event_fields() -> None:
    assert parse_event(b"event: ping\ndata: {}") == ("ping", b"{}")
    assert parse_event(b"data:no-space\ndata:  two spaces\n: comment\nid: 7") == ("message", b"no-space\n two spaces")
    assert parse_event(b": only a comment") == ("message", b"")
