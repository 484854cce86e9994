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

__all__ = ["DONE", "SSEDecoder", "encode_event", "parse_event"]

DONE = b"[DONE]"
_BOM = b"\xef\xbb\xbf"


class SSEDecoder:
    """Incremental event splitter; ``feed`` returns the events completed by a chunk."""

    __slots__ = ("_buffer", "_pending_cr", "_started")

    def __init__(self) -> None:
        self._buffer = b""
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
        buffer = self._buffer + chunk if self._buffer else chunk
        end = buffer.rfind(b"\n\n")
        if end < 0:
            self._buffer = buffer
            return []
        self._buffer = buffer[end + 2 :]
        # Runs of blank lines only separate events; they never make empty ones.
        return [block.strip(b"\n") for block in buffer[:end].split(b"\n\n") if block.strip(b"\n")]

    def flush(self) -> list[bytes]:
        """The event left unterminated at end of stream.

        The spec discards it; we keep it when it carries data, because a provider that ends with
        ``data: [DONE]\\n`` (one newline short) still meant to finish the stream cleanly.
        """
        rest, self._buffer = self._buffer.strip(b"\n"), b""
        return [rest] if rest else []


def parse_event(block: bytes) -> tuple[str, bytes]:
    """The event's name (``message`` by default) and its data lines joined by LF."""
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
