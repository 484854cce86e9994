"""The gateway's one upstream HTTP client: a pooled aiohttp session behind a small interface.

Adapters and the proxy call ``HttpClient.request`` and get an ``UpstreamResponse``; aiohttp's types
and exceptions never leave this module (they become ``UpstreamUnreachable`` / ``UpstreamTimeout``).

    client = HttpClient(ClientOptions())
    await client.start()
    response = await client.request("GET", "https://api.openai.com/v1/models", headers=..., redactor=...)
    body = await response.read()          # or: async for chunk in response.iter_chunks()
    await client.close()

Everything an answer carries (body, chunks, headers) is read here, so this is where a provider's
``Redactor`` masks the credentials it quotes: no caller of this module sees them.

``OUTBOUND`` holds headers the current request adds to every call it makes upstream (its request
id, its trace context); the gateway sets it once per request.
"""

from __future__ import annotations

import asyncio
import functools
import ssl
from collections.abc import AsyncIterable, AsyncIterator, Callable, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from math import inf
from types import TracebackType

import aiohttp
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from .deadline import Deadlines
from .errors import UpstreamTimeout, UpstreamUnreachable
from .pool import IdleCappedConnector
from .redact import Redactor
from .waiting import WAITS, WaitClock

__all__ = ["OUTBOUND", "ClientOptions", "HttpClient", "Timeouts", "UpstreamResponse"]

Headers = Mapping[str, str] | Sequence[tuple[str, str]]

OUTBOUND: ContextVar[Mapping[str, str] | None] = ContextVar("polyrelay_outbound_headers", default=None)


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Per-call limits in seconds; ``None`` means none.

    ``headers`` bounds the wait for the answer's headers, ``idle`` each wait for the next chunk of a
    body read with ``iter_chunks`` (how a stream gets an idle bound without a total one), ``total``
    the whole call including ``read``.
    """

    connect: float | None = 10.0
    headers: float | None = None
    idle: float | None = None
    total: float | None = None

    def _aiohttp(self) -> aiohttp.ClientTimeout:
        return _client_timeout(self.connect)


@functools.lru_cache(maxsize=64)
def _client_timeout(connect: float | None) -> aiohttp.ClientTimeout:
    """aiohttp's (immutable) timeout object, made once per value, not once per call. Only for
    connecting: the other bounds are ``Deadlines``, cheaper than aiohttp's timer per call."""
    return aiohttp.ClientTimeout(total=None, sock_connect=connect)


@dataclass(frozen=True, slots=True)
class ClientOptions:
    """Pool settings; 0 means no cap. ``max_connections`` caps the connections in use,
    ``max_idle`` and ``max_idle_per_host`` those kept idle (``providers.pool``)."""

    max_connections: int = 0
    max_connections_per_host: int = 0
    max_idle: int = 0
    max_idle_per_host: int = 0
    keepalive_timeout: float = 30.0
    user_agent: str = "polyrelay"
    tls_1_3_only: bool = False  # CLIENT_TLS_MIN_VERSION=TLS13: refuse providers that offer less


class UpstreamResponse:
    """An upstream answer whose headers have arrived; the body is read or iterated, then closed.

    With a ``redactor``, its secrets are masked in everything read from here: ``headers``,
    ``raw_headers``, ``read()`` and ``iter_chunks()``.
    """

    __slots__ = ("_deadline", "_deadlines", "_done", "_headers", "_idle", "_redactor", "_response", "status")

    def __init__(
        self,
        response: aiohttp.ClientResponse,
        deadlines: Deadlines,
        idle: float | None = None,
        redactor: Redactor | None = None,
        deadline: float | None = None,
    ) -> None:
        self._response = response
        self._deadlines = deadlines
        self._deadline = deadline  # the call's total bound, if it has one
        self._idle = idle
        self._redactor = redactor
        self._headers: CIMultiDictProxy[str] | None = None if redactor else response.headers
        self.status: int = response.status
        self._done: Callable[[], None] | None = None

    def on_done(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, when the answer is done with: read, closed or finished."""
        self._done = callback

    def _finished(self) -> None:
        done, self._done = self._done, None
        if done is not None:
            done()

    @property
    def headers(self) -> CIMultiDictProxy[str]:
        """Case-insensitive and multi-valued."""
        if self._headers is None:  # built on first use: most answers are never asked for a header
            decoded = CIMultiDict(
                (k.decode("utf-8", "surrogateescape"), v.decode("utf-8", "surrogateescape"))
                for k, v in self.raw_headers
            )
            self._headers = CIMultiDictProxy(decoded)
        return self._headers

    @property
    def content_type(self) -> str:
        """The answer's ``Content-Type`` (empty when none), for deciding what it is: read from the
        client's own headers, not masked (a caller that shows it uses ``headers``)."""
        return self._response.headers.get("Content-Type", "")

    @property
    def raw_headers(self) -> tuple[tuple[bytes, bytes], ...]:
        raw, redactor = self._response.raw_headers, self._redactor
        # One look at all of them, joined (which can only add false alarms): most answers quote no
        # secret in their headers, and then are not copied.
        if redactor is None or not redactor.found(b"\n".join([part for pair in raw for part in pair])):
            return raw
        return tuple((redactor.whole(k), redactor.whole(v)) for k, v in raw)

    async def read(self) -> bytes:
        started = _wait_started()
        with _TRANSLATED_ERRORS:
            try:
                # A body already whole (most small answers, by the time their headers are read)
                # needs no bound to be read.
                if self._deadline is None or self._response.content.is_eof():
                    body = await self._response.read()
                else:
                    body = await self._deadlines.within(self._response.read(), self._deadline)
            finally:
                self._response.release()
                _count_upstream(started)
                if self._done is not None:
                    self._finished()
        return body if self._redactor is None else self._redactor.whole(body)

    async def iter_chunks(self) -> AsyncIterator[bytes]:
        """Bytes as they arrive; an interrupted body raises ``UpstreamUnreachable``, a silence longer
        than the call's ``idle`` timeout ``UpstreamTimeout``."""
        content, idle, deadline, deadlines = self._response.content, self._idle, self._deadline, self._deadlines
        redacted = None if self._redactor is None else self._redactor.stream()
        with _TRANSLATED_ERRORS:
            while True:
                # What has arrived is taken without a wait, and the end seen without one: a small
                # answer is often whole once its headers are read, and then needs no bound at all.
                chunk = content.read_nowait()
                if not chunk:
                    if content.at_eof():
                        break
                    if idle is None and deadline is None:
                        chunk = await content.readany()
                    else:
                        # Each wait bounded by the idle timeout from its start (time spent relaying
                        # the last chunk does not count), and by the call's total bound.
                        until = inf if idle is None else deadlines.after(idle)
                        chunk = await deadlines.within(
                            content.readany(), until if deadline is None else min(until, deadline)
                        )
                    if not chunk:
                        break
                if redacted is not None:
                    chunk = redacted.feed(chunk)
                    if not chunk:  # all of it might begin a secret: wait for the next one
                        continue
                yield chunk
        if redacted is not None and (tail := redacted.flush()):
            yield tail

    def close(self) -> None:
        """Drop the connection unless the body was read to its end (then it returns to the pool)."""
        self._response.close()
        if self._done is not None:
            self._finished()

    async def aclose(self) -> None:
        self.close()

    async def finish(self, timeout: float = 1.0) -> None:
        """Read what is left of a body whose content already ended (a stream after ``[DONE]``),
        so the connection goes back to the pool instead of being dropped."""
        content = self._response.content
        try:
            if not content.at_eof():  # most often the end came with the last event
                await self._deadlines.within(_drained(content), self._deadlines.after(timeout))
        except (TimeoutError, aiohttp.ClientError):
            pass
        finally:
            self._response.close()  # a no-op for the connection once the body reached its end
            if self._done is not None:
                self._finished()


async def _drained(content: aiohttp.StreamReader) -> None:
    while await content.readany():
        pass


class HttpClient:
    """One pooled ``aiohttp.ClientSession`` for every upstream call of the process."""

    def __init__(self, options: ClientOptions | None = None) -> None:
        self._options = options or ClientOptions()
        self._session: aiohttp.ClientSession | None = None
        self._deadlines: Deadlines | None = None

    async def start(self) -> None:
        options = self._options
        self._deadlines = Deadlines(asyncio.get_running_loop())
        tls: ssl.SSLContext | bool = True  # aiohttp's default context: verified, TLS 1.2 at least
        if options.tls_1_3_only:
            tls = ssl.create_default_context()
            tls.minimum_version = ssl.TLSVersion.TLSv1_3
        connector = IdleCappedConnector(
            max_idle=options.max_idle,
            max_idle_per_host=options.max_idle_per_host,
            limit=options.max_connections,
            limit_per_host=options.max_connections_per_host,
            keepalive_timeout=options.keepalive_timeout,
            ssl=tls,
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            headers={"User-Agent": options.user_agent},
            # Cookies from one caller's upstream answer must never reach another caller.
            cookie_jar=aiohttp.DummyCookieJar(),
            auto_decompress=True,
        )

    @property
    def is_open(self) -> bool:
        """Between ``start`` and ``close``: calls can be made."""
        return self._session is not None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def request(
        self,
        method: str,
        url: str,
        *,
        headers: Headers | None = None,
        body: bytes | AsyncIterable[bytes] | None = None,
        timeouts: Timeouts = Timeouts(),
        raw: bool = False,
        redactor: Redactor | None = None,
    ) -> UpstreamResponse:
        """Send a request and wait for the answer's headers.

        ``raw`` sends the URL and headers exactly: no re-encoding and no headers added by the
        client, for the passthrough proxy. ``redactor`` masks the secrets of the provider called
        in all of the answer.
        """
        session, deadlines = self._session, self._deadlines
        if session is None or deadlines is None:
            raise RuntimeError("HttpClient.start() was not awaited")
        extra = OUTBOUND.get()
        if extra:
            headers = _with_headers(headers, extra)
        total = None if timeouts.total is None else deadlines.after(timeouts.total)
        started = _wait_started()
        with _TRANSLATED_ERRORS:
            try:
                sent = session.request(
                    method,
                    URL(url, encoded=True) if raw else url,
                    headers=headers,  # type: ignore[arg-type]
                    data=body,
                    timeout=timeouts._aiohttp(),
                    allow_redirects=False,
                    skip_auto_headers=_RAW_SKIPPED if raw else None,
                )
                if timeouts.headers is None and total is None:
                    response = await sent
                else:
                    until = inf if timeouts.headers is None else deadlines.after(timeouts.headers)
                    response = await deadlines.within(sent, until if total is None else min(until, total))
            finally:
                _count_upstream(started)
        return UpstreamResponse(response, deadlines, timeouts.idle, redactor, total)


def _with_headers(headers: Headers | None, extra: Mapping[str, str]) -> Headers:
    """``headers`` plus the request's outbound ones (which the caller's never carry: see the proxy)."""
    if headers is None:
        return extra
    if isinstance(headers, Mapping):
        return {**headers, **extra}
    return [*headers, *extra.items()]


def _wait_started() -> WaitClock | None:
    """Count an upstream wait (answer headers, a body read whole) on the request's clock."""
    clock = WAITS.get()
    if clock is not None:
        clock.begin()
    return clock


def _count_upstream(clock: WaitClock | None) -> None:
    if clock is not None:
        clock.end()


_RAW_SKIPPED = ("Accept-Encoding", "Accept", "User-Agent", "Content-Type")


class _TranslatedErrors:
    """aiohttp's exceptions, mapped to ours at the boundary (most specific first). One instance
    without state, used as ``with _TRANSLATED_ERRORS:``: a generator-based context manager would
    build two objects and a generator on each of the two or three uses per call."""

    __slots__ = ()

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if exc is None:
            return
        if isinstance(exc, (TimeoutError, aiohttp.ServerTimeoutError)):
            raise UpstreamTimeout("The provider did not answer in time.") from exc
        if isinstance(exc, aiohttp.ClientPayloadError):
            raise UpstreamUnreachable("The provider's answer was cut off before it ended.") from exc
        if isinstance(exc, aiohttp.InvalidURL):
            raise UpstreamUnreachable(f"The provider URL is not valid: {exc}.") from exc
        if isinstance(exc, aiohttp.ClientConnectorError):
            raise UpstreamUnreachable(f"Could not connect to the provider at {exc.host}:{exc.port}.") from exc
        if isinstance(exc, (aiohttp.ClientError, OSError)):
            raise UpstreamUnreachable(f"The connection to the provider failed ({type(exc).__name__}).") from exc


_TRANSLATED_ERRORS = _TranslatedErrors()
