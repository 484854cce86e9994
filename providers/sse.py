"""Server-sent events, read the way the WHATWG spec reads them.

``SSEDecoder`` splits a byte stream into events across arbitrary chunk boundaries, accepting CR, LF
and CRLF line endings (even a CRLF split between two chunks). Each event comes out as its raw lines
joined by LF, without the blank line that ended it, so a relay can pass it on untouched.

>>> decoder = SSEDecoder()
>>> decoder.feed(b'data: {"a": 1}\\r\\n\\r\\ndata: [DO')
[b'data: {"a": 1}']
>>> decoder.feed(b"NE]\\n\\n")
[b'data: [DONE]']
>>> parse_event(b"event: ping\\ndata: {}")
('ping', b'{}')
"""

from __future__ import annotations

import re

from .errors import UpstreamInvalidAnswer

__all__ = [
    "DEFAULT_MAX_EVENT_SIZE",
    "DONE",
    "ERROR_EVENT",
    "EventTooLarge",
    "SSEDecoder",
    "encode_event",
    "holds_error_event",
    "parse_event",
]

DONE = b"[DONE]"
# How an OpenAI-style stream reports a failure mid-way: an event whose data is {"error": ...}
# (with or without the optional space after the colon).
ERROR_EVENT = (b'data: {"error"', b'data:{"error"')
_ERROR_EVENT_IN = re.compile(rb'(?:^|\n)data: ?\{"error"')
DEFAULT_MAX_EVENT_SIZE = 8 * 1024 * 1024
_BOM = b"\xef\xbb\xbf"


class EventTooLarge(UpstreamInvalidAnswer):
    """A stream event past the decoder's size cap (502): the stream ends with an error event."""

    code = "upstream_event_too_large"


class SSEDecoder:
    """Incremental event splitter; ``feed`` returns the events completed by a chunk.

    Linear in the bytes fed: an unfinished event is kept as a list of chunks, each searched once
    (plus the one byte before it, for a blank line split between two chunks) and joined once when
    the event completes. An event longer than ``max_event_size`` bytes raises ``EventTooLarge``.
    """

    __slots__ = ("_max", "_pending", "_pending_cr", "_pending_size", "_started")

    def __init__(self, max_event_size: int = DEFAULT_MAX_EVENT_SIZE) -> None:
        self._max = max_event_size
        self._pending: list[bytes] = []  # the chunks of the event not yet ended, none of them empty
        self._pending_size = 0
        self._pending_cr = False  # the previous chunk ended in CR: a leading LF now is its pair
        self._started = False

    def feed(self, chunk: bytes) -> list[bytes]:
        if not self._started:
            self._started = True
            if chunk.startswith(_BOM):
                chunk = chunk[len(_BOM) :]
        if self._pending_cr and chunk.startswith(b"\n"):
            chunk = chunk[1:]
        if b"\r" in chunk:
            self._pending_cr = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        else:
            self._pending_cr = False
        if not chunk:
            return []
        pending = self._pending
        end = chunk.rfind(b"\n\n")
        if end < 0 and not (pending and chunk[0] == 0x0A and pending[-1][-1] == 0x0A):
            self._pending_size += len(chunk)
            if self._pending_size > self._max:
                raise self._too_large()
            pending.append(chunk)
            return []
        if pending:
            pending.append(chunk)
            buffer = b"".join(pending)
            end = buffer.rfind(b"\n\n")  # in the last chunk, or straddling its first byte
            pending.clear()
        else:
            buffer = chunk
        rest = buffer[end + 2 :]
        if rest:
            pending.append(rest)
        self._pending_size = len(rest)
        if end > self._max or self._pending_size > self._max:
            self._check_sizes(buffer[:end])
            if self._pending_size > self._max:
                raise self._too_large()
        # Runs of blank lines only separate events; they never make empty ones.
        return [block.strip(b"\n") for block in buffer[:end].split(b"\n\n") if block.strip(b"\n")]

    def flush(self) -> list[bytes]:
        """The event left unterminated at end of stream.

        The spec discards it; we keep it when it carries data, because a provider that ends with
        ``data: [DONE]\\n`` (one newline short) still meant to finish the stream cleanly.
        """
        rest = b"".join(self._pending).strip(b"\n")
        self._pending.clear()
        self._pending_size = 0
        return [rest] if rest else []

    def _check_sizes(self, events: bytes) -> None:
        if any(len(block) > self._max for block in events.split(b"\n\n")):
            raise self._too_large()

    def _too_large(self) -> EventTooLarge:
        self._pending.clear()
        self._pending_size = 0
        return EventTooLarge(
            f"The provider sent a stream event larger than {self._max} bytes, so the stream was stopped. "
            "Raise STREAM_MAX_EVENT_SIZE if its events are meant to be that large."
        )


def parse_event(block: bytes) -> tuple[str, bytes]:
    """The event's name (``message`` by default) and its data lines joined by LF."""
    # The shapes providers send, read without splitting: one data line, or an event line and one.
    if block.startswith(b"data: ") and b"\n" not in block:
        return "message", block[6:]
    if block.startswith(b"event: "):
        second = block.find(b"\n") + 1
        if second and block.startswith(b"data: ", second) and block.find(b"\n", second) < 0:
            return block[7 : second - 1].decode("utf-8", "replace"), block[second + 6 :]
    name = "message"
    data: list[bytes] = []
    for line in block.split(b"\n"):
        if not line or line.startswith(b":"):
            continue
        field, _, value = line.partition(b":")
        if value.startswith(b" "):
            value = value[1:]
        if field == b"data":
            data.append(value)
        elif field == b"event":
            name = value.decode("utf-8", "replace")
    return name, b"\n".join(data)


def encode_event(data: bytes, event: str | None = None) -> bytes:
    """One event with its terminating blank line, for data that holds no newline (JSON does not)."""
    if event is None:
        return b"data: " + data + b"\n\n"
    return b"event: " + event.encode() + b"\ndata: " + data + b"\n\n"


def holds_error_event(data: bytes) -> bool:
    """Whether SSE bytes as relayed (whole events, one or several) hold an in-stream error event."""
    # The literal first: the pattern's leading alternation makes the regex try every position.
    return b'{"error"' in data and _ERROR_EVENT_IN.search(data) is not None
