"""``CorkedTransport``: the writes of one event-loop turn to a client connection, sent as one.

uvicorn writes a response's head and its body with two ``transport.write`` calls, and the event
loop sends each at once: two system calls for every JSON answer, the costliest single step of a
request on a VM (about a tenth of the gateway's time under load, profiled). Held until the end of
the loop's turn (``call_soon``), the writes of one turn go out in one call; nothing waits longer
than the turn it was written in, so a stream's events leave as soon as they did before.

Everything that ends or hands over the connection (``close``, ``write_eof``, ``set_protocol``)
sends what is held first; ``abort`` drops it, as the loop's own transports drop their buffer.

    self.transport = CorkedTransport(transport, loop)    # in the protocol's connection_made
"""

from __future__ import annotations

import asyncio
from typing import Any

__all__ = ["CorkedTransport"]


class CorkedTransport:
    """A transport whose ``write`` calls of one loop turn are joined; the rest is the transport's."""

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] | None = None

    def write(self, data: bytes) -> None:
        if not data:
            return
        held = self._held
        if held is None:
            self._held = [data]
            self._loop.call_soon(self.flush)
        else:
            held.append(data)

    def flush(self) -> None:
        held, self._held = self._held, None
        if held:
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def write_eof(self) -> None:
        self.flush()
        self._transport.write_eof()

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self.flush()
        self._transport.set_protocol(protocol)

    def abort(self) -> None:
        self._held = None
        self._transport.abort()

    def __getattr__(self, name: str) -> Any:
        # is_closing, get_extra_info, can_write_eof, pause_reading...: the transport's own.
        return getattr(self._transport, name)
