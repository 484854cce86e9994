"""How polyrelay serves HTTP: uvicorn with httptools, plus the limits a gateway facing the
internet needs and uvicorn's httptools protocol lacks, and a bounded graceful shutdown.

- The request head (request line and headers) is capped in size (``SERVER_MAX_HEADER_BYTES``) and
  in header count (``SERVER_MAX_HEADERS``): 431. The cap is counted on the raw bytes before they
  reach the parser, so a huge header costs nothing to refuse.
- A connection must deliver a complete head within ``SERVER_READ_HEADER_TIMEOUT`` of its first byte
  (or of connecting): then 408 and closed. Idle keep-alive connections close after
  ``SERVER_IDLE_TIMEOUT``, as before.
- At most ``SERVER_MAX_CONNECTIONS`` connections per process: one more is answered 503 and closed
  at once, so idle sockets cannot use up the process's file descriptors.
- Shutdown is a timeline (``GatewayServer``, ``drain``): the first SIGTERM withdraws readiness
  (``/ready`` answers 503) while new connections and requests are still served for
  ``SERVER_DRAIN_DELAY``, each answer closing its connection; then the server stops accepting and
  lets requests finish for ``SERVER_DRAIN_TIMEOUT``, and cuts what is left. SIGINT skips the delay;
  another signal cuts at once, whenever it comes.
- The writes of one event-loop turn to a connection go out as one (``CorkedTransport``): a
  response's head and body in one system call instead of two.
- ``X-Forwarded-For`` and ``X-Forwarded-Proto`` are believed only from ``FORWARDED_ALLOW_IPS``
  (uvicorn's proxy-headers middleware, off when the list is empty).

    config = uvicorn_config(settings, app)
    GatewayServer(config).run()
"""

from __future__ import annotations

import asyncio
import functools
import gc
import logging
import math
import os
import resource
import signal
import socket
import time
from dataclasses import dataclass
from typing import Any

import orjson
import uvicorn
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol
from uvicorn.server import ServerState

from providers.errors import APIError, InvalidRequest, ServiceUnavailable

from .cork import CorkedTransport
from .drain import Drain
from .relay import ABORT_EXTENSION, BODY_EXTENSION, DRAIN_EXTENSION, HANGUP_EXTENSION, Hangup
from .settings import Settings

__all__ = [
    "GatewayConfig",
    "GatewayProtocol",
    "GatewayServer",
    "PortError",
    "ServerLimits",
    "SideServer",
    "uvicorn_config",
]

log = logging.getLogger("polyrelay")

_MAX_AUTO_CONNECTIONS = 10_000
_LINGER_SECONDS = 1.0
# Signals this close together are one request that reached the process twice (a terminal or a
# service manager signals the whole process group, and the worker supervisor passes its own on).
REPEAT_WINDOW = 0.5


@dataclass(frozen=True, slots=True)
class ServerLimits:
    max_header_bytes: int = 65536
    max_headers: int = 100
    read_header_timeout: float = 10.0
    max_connections: int = 0  # 0: none
    drain_timeout: float = 20.0
    drain_delay: float = 0.0

    @classmethod
    def from_settings(cls, settings: Settings) -> ServerLimits:
        return cls(
            max_header_bytes=settings.server_max_header_bytes,
            max_headers=settings.server_max_headers,
            read_header_timeout=settings.server_read_header_timeout,
            max_connections=settings.server_max_connections or automatic_max_connections(),
            drain_timeout=settings.server_drain_timeout,
            drain_delay=settings.server_drain_delay,
        )


def automatic_max_connections() -> int:
    """Half the open-file limit (each client connection may hold an upstream one), at most 10,000."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return _MAX_AUTO_CONNECTIONS
    return max(16, min(_MAX_AUTO_CONNECTIONS, (soft - 64) // 2))


def _too_large(limits: ServerLimits, what: str) -> APIError:
    return InvalidRequest(
        f"The request {what} (SERVER_MAX_HEADER_BYTES={limits.max_header_bytes}, "
        f"SERVER_MAX_HEADERS={limits.max_headers}).",
        status=431,
        code="request_header_too_large",
    )


class _Throttled:
    """A warning at most every ``every`` seconds, with how many were held back: refusals come in
    floods exactly when a log must stay readable."""

    def __init__(self, every: float = 10.0) -> None:
        self.every = every
        self.last = 0.0
        self.held = 0

    def warn(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self.last < self.every:
            self.held += 1
            return
        suffix = f" ({self.held} more since the last such warning)" if self.held else ""
        self.last, self.held = now, 0
        log.warning(message + suffix, *args)


class _ServerExtras:
    """What the protocols of one server process share: its drain and its throttled warnings."""

    def __init__(self, limits: ServerLimits) -> None:
        self.drain = Drain(limits.drain_timeout)
        self.refusals = _Throttled()


def _extras(state: ServerState, limits: ServerLimits) -> _ServerExtras:
    extras: _ServerExtras | None = getattr(state, "polyrelay", None)
    if extras is None:
        extras = _ServerExtras(limits)
        state.polyrelay = extras  # type: ignore[attr-defined]
    return extras


class GatewayProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with head limits, a head deadline and a connection cap."""

    def __init__(self, *args: Any, limits: ServerLimits, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self.extras = _extras(self.server_state, limits)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes = 0  # bytes of the current head received so far
        self._head_done = False
        self._header_count = 0
        self._too_many: APIError | None = None
        self._refused = False
        self.hangup = Hangup()  # the requests' disconnect watches (gateway.relay), told on connection loss

    # -- connection ---------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        # A response's head and body (and a stream's events of one loop turn) in one write each.
        self.transport = CorkedTransport(transport, self.loop)  # type: ignore[assignment]
        cap = self.limits.max_connections
        if cap and len(self.connections) > cap:
            self.extras.refusals.warn("refused a connection: %d open, SERVER_MAX_CONNECTIONS=%d", cap, cap)
            # Closed at once, not after a linger: under a flood of connections, freeing the
            # descriptor matters more than the answer reaching a client that already sent more.
            self._refuse(
                ServiceUnavailable(
                    "The gateway has too many open connections right now; retry shortly.",
                    code="too_many_connections",
                ),
                linger=False,
            )
            return
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm_head_timer()
        cycle = self.cycle
        unanswered = cycle is not None and not cycle.response_complete  # what uvicorn calls disconnected
        super().connection_lost(exc)
        if unanswered:
            self.hangup.lost()

    def shutdown(self) -> None:
        # The server calls this on every open connection when it stops accepting: the drain starts.
        self.extras.drain.begin()
        super().shutdown()

    # -- the request head ---------------------------------------------------------------------

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # the client is still sending what was refused: read and drop it (see _refuse)
        if self._head_done:
            super().data_received(data)
            return
        if self._head_timer is None:
            self._arm_head_timer()  # the first byte of a request on a kept-alive connection
        allowance = self.limits.max_header_bytes - self._head_bytes
        if len(data) <= allowance:
            self._head_bytes += len(data)
            self._feed(data)
            return
        # Feed only what the limit allows; if the head did not end within it, it is too large.
        self._head_bytes += allowance
        self._feed(data[:allowance])
        if not self._head_done:
            if not self.transport.is_closing():
                self.extras.refusals.warn("refused a request head over %d bytes", self.limits.max_header_bytes)
                self._refuse(_too_large(self.limits, "head is too large"))
            return
        self._feed(data[allowance:])

    def _feed(self, data: bytes) -> None:
        super().data_received(data)

    def send_400_response(self, msg: str) -> None:
        # httptools reports an exception raised by a callback as a parse error: ours is a 431.
        if self._too_many is not None:
            self.extras.refusals.warn("refused a request: %s", self._too_many.message)
            self._refuse(self._too_many)
        else:
            super().send_400_response(msg)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._header_count = 0

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_count += 1
        if self._header_count > self.limits.max_headers:
            self._too_many = _too_large(self.limits, "has too many headers")
            raise self._too_many
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_done = True
        self._disarm_head_timer()
        super().on_headers_complete()
        cycle = self.cycle
        if cycle is not None and cycle.scope is self.scope:
            if self.extras.drain.leaving:
                # Answered with "Connection: close", so a client holding a kept-alive connection
                # reconnects through the load balancer, which by now sends it elsewhere.
                cycle.keep_alive = False
            extensions: dict[str, Any] = {
                DRAIN_EXTENSION: self.extras.drain,
                ABORT_EXTENSION: functools.partial(_abort, cycle),
                HANGUP_EXTENSION: self.hangup,
                BODY_EXTENSION: functools.partial(_body_arrived, cycle),
            }
            self.scope["extensions"] = extensions  # type: ignore[typeddict-item]

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._head_done = False  # what follows on this connection is the next request's head
        self._head_bytes = 0

    # -- refusals -----------------------------------------------------------------------------

    def _arm_head_timer(self) -> None:
        timeout = self.limits.read_header_timeout
        if timeout and self._head_timer is None:
            self._head_timer = self.loop.call_later(timeout, self._head_timeout)

    def _disarm_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self._head_done:
            return
        if self._head_bytes == 0:  # nothing sent at all: nobody to answer
            self.transport.close()
            return
        self._refuse(
            InvalidRequest(
                f"The request headers did not arrive within {self.limits.read_header_timeout:g}s "
                "(SERVER_READ_HEADER_TIMEOUT).",
                status=408,
                code="request_timeout",
            )
        )

    def _refuse(self, error: APIError, *, linger: bool = True) -> None:
        """Answer ``error`` in the envelope before any request reached the app, and close."""
        self._disarm_head_timer()
        body = orjson.dumps(error.envelope())
        head = [STATUS_LINE[error.status]]
        for name, value in self.server_state.default_headers:
            head.append(name + b": " + value + b"\r\n")
        head.append(b"content-type: application/json\r\ncontent-length: %d\r\nconnection: close\r\n\r\n" % len(body))
        self.transport.write(b"".join(head) + body)
        self._refused = True
        # Closing with unread request bytes would reset the connection and could destroy the answer
        # before the client reads it: end our side, drop what still comes, close after a moment.
        if linger and self.transport.can_write_eof():
            self.transport.write_eof()
            self.loop.call_later(_LINGER_SECONDS, self.transport.close)
        else:
            self.transport.close()


def _body_arrived(cycle: Any) -> bool:
    """Whether the request's body is all in the cycle (a small body arrives with its head, before
    the app runs): then the app's reads of it return at once."""
    return not cycle.more_body


def _abort(cycle: Any) -> None:
    """Drop a response that cannot be completed (its upstream failed mid-body): the client sees a
    truncated body, and the server logs nothing more since the response counts as over."""
    cycle.response_complete = True
    cycle.keep_alive = False
    cycle.transport.close()


class GatewayConfig(uvicorn.Config):
    """uvicorn's configuration, with the limits the gateway's protocol and server share."""

    def __init__(self, app: Any, *, limits: ServerLimits, **options: Any) -> None:
        super().__init__(app, http=functools.partial(GatewayProtocol, limits=limits), **options)  # type: ignore[arg-type]
        self.limits = limits


class GatewayServer(uvicorn.Server):
    """uvicorn's server, on the gateway's shutdown timeline.

    The first SIGTERM makes the process leave (``Drain.leave``: ``/ready`` answers 503) and starts
    ``SERVER_DRAIN_DELAY``, during which everything is served as before; at its end uvicorn's own
    shutdown runs: stop accepting, drain (``GatewayProtocol.shutdown``), exit. A first SIGINT skips
    the delay. Any later signal (past ``REPEAT_WINDOW``) cuts the drain at once, where uvicorn would
    ignore a second SIGTERM.
    """

    def __init__(self, config: GatewayConfig) -> None:
        super().__init__(config)
        self.limits = config.limits
        # Made here, not by the first connection: the delay may begin before any connection exists.
        self.extras = _extras(self.server_state, config.limits)
        self._signalled_at: float | None = None
        self._delay_ends: float | None = None  # monotonic time; set while the delay runs
        self._delay_signal: int = signal.SIGTERM
        self._delay_logged = False
        self.freeze_gc = False  # set by run(): the server owns its process

    def run(self, sockets: list[socket.socket] | None = None) -> None:
        self.freeze_gc = True
        super().run(sockets)

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.freeze_gc and self.started:
            # What start-up built (modules, the app, its pools and instruments) lives as long as the
            # process: frozen, the collector stops scanning it on every full collection. Measured on
            # JSON passthrough with one worker: about 10 % more requests per second.
            gc.collect()
            gc.freeze()

    def handle_exit(self, sig: int, frame: Any) -> None:
        # A signal handler: it only sets state (and cuts); the ticks of the main loop act on it.
        now = time.monotonic()
        if self._signalled_at is None:
            self._signalled_at = now
            self.extras.drain.leave()
            if sig == signal.SIGTERM and self.limits.drain_delay > 0:
                self._delay_ends, self._delay_signal = now + self.limits.drain_delay, sig
                return
        elif now - self._signalled_at < REPEAT_WINDOW:
            return
        else:
            self._delay_ends = None
            self.force_exit = True
            self.extras.drain.cut()
        super().handle_exit(sig, frame)

    async def on_tick(self, counter: int) -> bool:
        if self._delay_ends is not None:
            if not self._delay_logged:
                self._delay_logged = True
                log.info(
                    "SIGTERM: /ready answers 503; new requests are still served for %gs (SERVER_DRAIN_DELAY), "
                    "then the drain starts",
                    self.limits.drain_delay,
                )
            if time.monotonic() >= self._delay_ends:
                self._delay_ends = None
                super().handle_exit(self._delay_signal, None)  # uvicorn's shutdown, and its re-raise at exit
        return await super().on_tick(counter)


def uvicorn_config(settings: Settings, app: Any, **options: Any) -> GatewayConfig:
    """uvicorn's configuration for ``app`` (an ASGI app, or an import string with ``factory=True``)."""
    proxies = list(settings.forwarded_allow_ips)
    return GatewayConfig(
        app,
        limits=ServerLimits.from_settings(settings),
        lifespan="on",
        timeout_keep_alive=int(settings.server_idle_timeout),
        # Counted from the end of the drain delay (the delay runs before uvicorn's shutdown begins):
        # after the drain deadline, the cut requests get a moment to write their last bytes.
        timeout_graceful_shutdown=math.ceil(settings.server_drain_timeout) + 2,
        # uvicorn believes 127.0.0.1 by default; the gateway believes no one unless told.
        proxy_headers=bool(proxies),
        forwarded_allow_ips=proxies,
        server_header=False,
        **options,
    )


# -- A second app on a port of its own (the gateways management API, GATEWAYS_PORT) -----------------


class PortError(OSError):
    """A side server could not listen: start-up stops, naming the setting to change."""


class _QuietServer(uvicorn.Server):
    """uvicorn's server without the lines it logs as the process's own (started, finished)."""

    async def _serve(self, sockets: list[socket.socket] | None = None) -> None:
        if not self.config.loaded:
            self.config.load()
        self.lifespan = self.config.lifespan_class(self.config)
        await self.startup(sockets=sockets)
        if not self.should_exit:
            await self.main_loop()
        if self.started:
            await self.shutdown(sockets=sockets)


class SideServer:
    """An ASGI app served on its own port by the event loop of the data plane, with the same head
    limits, TLS and idle timeout; started and stopped by the data plane's lifespan (as the metrics
    endpoint is). With several workers each binds the port with SO_REUSEPORT, and the kernel
    spreads the connections. Signals stay with the data plane's server: uvicorn's ``_serve`` runs
    without taking them.

        side = SideServer(settings, management_app, port=8081, setting="GATEWAYS_PORT")
        await side.start()
        await side.stop()
    """

    def __init__(self, settings: Settings, app: Any, *, port: int, setting: str) -> None:
        self.host = settings.server_host
        self.port = port
        self.setting = setting
        self.reuse_port = settings.server_workers != 1  # the workers share it; one process owns it alone
        self.config = GatewayConfig(
            app,
            limits=ServerLimits.from_settings(settings),
            lifespan="off",
            timeout_keep_alive=int(settings.server_idle_timeout),
            timeout_graceful_shutdown=math.ceil(settings.server_drain_timeout) + 2,
            ssl_certfile=settings.server_tls_cert_path or None,
            ssl_keyfile=settings.server_tls_key_path or None,
            server_header=False,
            access_log=False,
            log_config=None,
        )
        self.server = _QuietServer(self.config)
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if self.reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            reason = os.strerror(exc.errno or 0)
            raise PortError(
                f"Cannot listen on {self.host}:{self.port} ({self.setting}={self.port}): {reason}. "
                f"Set {self.setting} to a free port, or stop what holds this one."
            ) from exc
        self.port = sock.getsockname()[1]
        self._task = asyncio.create_task(self.server._serve(sockets=[sock]), name=f"serve-{self.setting}")
        while not self.server.started:
            if self._task.done():
                self._task.result()
                raise PortError(f"The server on {self.setting} stopped at start.")
            await asyncio.sleep(0.005)

    async def stop(self) -> None:
        if self._task is not None:
            self.server.should_exit = True
            await self._task
            self._task = None
