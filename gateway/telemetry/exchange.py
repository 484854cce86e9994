"""``Exchange``: what one request did, filled in as it goes and read once when it ends.

The telemetry middleware opens an exchange for every HTTP request and makes it the current one;
the route's code adds what only it knows (provider, model, the answer), the relay says how a
stream ended, and at the end the sinks (the request log, metrics, traces) read the same facts.

    exchange = current()             # in a handler: the request's exchange
    exchange.provider, exchange.model = "openai", "gpt-4o"
    exchange.answered(body)          # tokens and response model, read from the OpenAI answer
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextvars import ContextVar
from typing import TYPE_CHECKING, Any

from providers.errors import (
    APIError,
    AuthenticationFailed,
    InvalidRequest,
    NotFound,
    PayloadTooLarge,
    PermissionDenied,
    ServiceUnavailable,
    UpstreamInvalidAnswer,
    UpstreamStatusError,
    UpstreamTimeout,
    UpstreamUnreachable,
)

from .usage import Usage, read_usage

if TYPE_CHECKING:
    from . import Telemetry

__all__ = ["CURRENT", "Exchange", "current", "error_kind"]


class Exchange:
    """One request's facts. Times are ``time.perf_counter()`` values; ``None`` means not known (a
    route that calls no provider has no provider, a JSON answer has no time to first token...)."""

    __slots__ = (
        "client",
        "ended",
        "error",
        "error_type",
        "extra",
        "first_byte",
        "first_token",
        "headers",
        "hub",
        "identity",
        "method",
        "model",
        "operation",
        "outcome",
        "overhead",
        "path",
        "provider",
        "request_id",
        "response_id",
        "response_model",
        "route",
        "selected",
        "started",
        "started_ns",
        "status",
        "stream",
        "tail",
        "usage",
    )

    def __init__(
        self,
        hub: Telemetry | None,
        request_id: str,
        method: str,
        path: str,
        client: str | None,
        headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        self.hub = hub
        self.request_id = request_id
        self.method = method
        self.path = path
        self.client = client
        self.headers = headers  # the request's raw headers (the ASGI scope's list itself, not a copy)
        self.started = time.perf_counter()
        self.started_ns = time.time_ns()
        self.route = "unmatched"  # the route template, set once the router has matched
        self.identity: str | None = None
        self.operation: str | None = None  # the GenAI operation: chat, ...
        self.provider: str | None = None  # the registry id
        self.model: str | None = None  # the model asked for, in the provider's own name
        self.response_model: str | None = None
        self.response_id: str | None = None
        self.selected: tuple[str, str] | None = None  # (provider, model) an alias was routed to
        self.stream = False
        self.status = 0
        # How the request ended: ok, error, or for a stream complete, client_gone, upstream_error,
        # drained, internal_error.
        self.outcome = "ok"
        self.error: BaseException | None = None
        self.error_type: str | None = None
        self.first_byte: float | None = None  # the answer's first byte to the client
        self.first_token: float | None = None  # a stream's first event from the provider
        self.ended = 0.0
        self.overhead = 0.0  # seconds spent in the gateway itself, up to the first byte
        self.usage: Usage | None = None
        # The last bytes of the answer (the JSON body, or a stream's last chunks): where the usage
        # and the response model are, read once at the end, only by what needs them.
        self.tail: tuple[bytes, ...] = ()
        self.extra: dict[str, Any] | None = None  # a sink's own per-request state (a span...)

    # -- what the routes and the relay report --------------------------------------------------

    def answered(self, body: bytes) -> None:
        """A complete OpenAI answer (JSON) was produced."""
        self.tail = (body,)

    def stream_started(self) -> None:
        self.stream = True
        if self.hub is not None:
            self.hub.stream_started(self)

    def stream_tail(self, chunks: tuple[bytes, ...]) -> None:
        """The stream's last chunks (where its usage event and the final model are)."""
        self.tail = chunks

    def failed(self, error: BaseException, outcome: str = "error", kind: str | None = None) -> None:
        self.error = error
        self.error_type = kind or error_kind(error)
        self.outcome = outcome

    # -- what the sinks read --------------------------------------------------------------------

    def tokens(self) -> Usage | None:
        """The usage the answer reported (read from its tail once), or ``None``."""
        if self.usage is None and self.tail:
            found = read_usage(self.tail)
            if found is not None:
                self.usage = found
                self.response_model = self.response_model or found.model
                self.response_id = self.response_id or found.response_id
        return self.usage

    @property
    def duration(self) -> float:
        return (self.ended or time.perf_counter()) - self.started

    @property
    def ttfb(self) -> float | None:
        return None if self.first_byte is None else self.first_byte - self.started

    @property
    def ttft(self) -> float | None:
        return None if self.first_token is None else self.first_token - self.started


# Outside a request (a background task, a test calling a handler's helpers), what is reported goes
# to a detached exchange that no sink reads.
CURRENT: ContextVar[Exchange | None] = ContextVar("polyrelay_exchange", default=None)
_DETACHED = Exchange(None, "", "", "", None)


def current() -> Exchange:
    """The exchange of the request being handled."""
    return CURRENT.get() or _DETACHED


# The low-cardinality kind of an error, for metrics and logs: our error class, or for an upstream
# status the status itself (what the GenAI conventions' error.type asks for).
_KINDS: tuple[tuple[type[BaseException], str], ...] = (
    (PayloadTooLarge, "payload_too_large"),
    (InvalidRequest, "invalid_request"),
    (AuthenticationFailed, "authentication"),
    (PermissionDenied, "permission"),
    (NotFound, "not_found"),
    (ServiceUnavailable, "unavailable"),
    (UpstreamTimeout, "upstream_timeout"),
    (UpstreamUnreachable, "upstream_unreachable"),
    (UpstreamInvalidAnswer, "upstream_invalid_answer"),
)


def error_kind(error: BaseException) -> str:
    if isinstance(error, UpstreamStatusError):
        return str(error.status)
    for kind, name in _KINDS:
        if isinstance(error, kind):
            return name
    if isinstance(error, APIError) and error.status < 500:
        return str(error.status)
    return "internal"
