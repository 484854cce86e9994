"""The SSE decoder against the spec's line endings, split at every possible chunk boundary."""

from __future__ import annotations

import time

import pytest

from providers.sse import EventTooLarge, SSEDecoder, parse_event

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


@pytest.mark.parametrize("newline", [b"\n", b"\r\n", b"\r"])
def test_every_split_into_three_chunks(newline: bytes) -> None:
    stream = STREAM.replace(b"\n", newline)[:60]  # three events' worth keeps this quick
    expected = decode([stream])
    for i in range(len(stream) + 1):
        for j in range(i, len(stream) + 1):
            assert decode([stream[:i], stream[i:j], stream[j:]]) == expected, (newline, i, j)


def feed_one_event(chunks: int, size: int = 1024) -> float:
    """Seconds to decode one event arriving in ``chunks`` pieces of ``size`` bytes (best of three)."""
    piece = b"x" * size
    best = float("inf")
    for _ in range(3):
        decoder = SSEDecoder(max_event_size=chunks * size + 100)
        started = time.perf_counter()
        assert decoder.feed(b"data: ") == []
        for _ in range(chunks):
            decoder.feed(piece)
        (event,) = decoder.feed(b"\n\n")
        best = min(best, time.perf_counter() - started)
        assert len(event) == chunks * size + 6
    return best


def test_decoding_one_long_event_is_linear_in_its_size() -> None:
    # Re-joining the pending buffer on every chunk made this quadratic: 8x the chunks took ~70x the
    # time (1.1 s). Linear takes 8-12x (about 5 ms); the bound leaves room for a loaded machine.
    small, large = feed_one_event(256), feed_one_event(2048)
    assert large < 25 * small + 0.01, f"256 chunks: {small * 1e3:.1f} ms, 2048 chunks: {large * 1e3:.1f} ms"


def test_an_event_past_the_cap_raises_a_502() -> None:
    decoder = SSEDecoder(max_event_size=1000)
    decoder.feed(b"data: ok\n\ndata: " + b"x" * 900)
    with pytest.raises(EventTooLarge) as caught:
        decoder.feed(b"x" * 200)
    assert caught.value.status == 502 and "larger than 1000 bytes" in caught.value.message


def test_the_cap_holds_for_an_event_that_arrives_in_one_chunk() -> None:
    with pytest.raises(EventTooLarge):
        SSEDecoder(max_event_size=100).feed(b"data: small\n\ndata: " + b"x" * 200 + b"\n\ndata: next\n\n")


def test_an_event_at_the_cap_passes() -> None:
    event = b"data: " + b"x" * 94
    decoder = SSEDecoder(max_event_size=100)
    assert decoder.feed(event[:50]) == [] and decoder.feed(event[50:]) == []
    assert decoder.feed(b"\n\n") == [event]
