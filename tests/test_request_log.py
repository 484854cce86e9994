"""The request line written straight to the gateway's handler is the line logging would write:
same bytes in both formats, and logging's own way whenever something else could see or change it."""

from __future__ import annotations

import io
import logging
import re
from collections.abc import Callable, Iterator

import orjson
import pytest

from gateway.telemetry.exchange import Exchange
from gateway.telemetry.logs import (
    REQUEST_LOGGER,
    JsonFormatter,
    RequestIdFilter,
    RequestLog,
    TextFormatter,
    TurnHandler,
)
from gateway.telemetry.usage import Usage

FORMATTERS = [JsonFormatter, TextFormatter]


@pytest.fixture
def root() -> Iterator[logging.Logger]:
    """The root logger with no handler of the test runner's, restored afterwards."""
    logger = logging.getLogger()
    saved, level = logger.handlers[:], logger.level
    logger.handlers.clear()
    logger.setLevel(logging.INFO)
    yield logger
    logger.handlers[:] = saved
    logger.setLevel(level)
    logging.getLogger(REQUEST_LOGGER).filters.clear()


def handler_on(
    root: logging.Logger, formatter: logging.Formatter, alone: bool = True
) -> tuple[logging.Handler, io.StringIO]:
    """The gateway's handler on the root logger, by itself (as configured) unless ``alone`` is false."""
    stream = io.StringIO()
    handler = TurnHandler(stream)
    handler.setFormatter(formatter)
    handler.addFilter(RequestIdFilter())
    if alone:  # without the test runner's own capturing handlers
        root.handlers[:] = [handler]
    else:
        root.addHandler(handler)
    return handler, stream


def exchange(status: int = 200) -> Exchange:
    done = Exchange(None, "req-1", "POST", "/v1/chat/completions", "127.0.0.1")
    done.status, done.route, done.provider, done.model, done.stream = (
        status,
        "/v1/chat/completions",
        "openai",
        "m",
        True,
    )
    done.usage = Usage(input=3, output=5, model="m-2024", response_id="r1")
    done.response_model = "m-2024"
    done.first_byte = done.first_token = done.started + 0.002
    done.ended = done.started + 0.01
    done.error_type = "stream_error" if status >= 500 else None
    return done


def health() -> Exchange:
    """No provider, no answer read, no time to first byte (the client left first), no client address."""
    done = Exchange(None, "0123456789abcdef0123456789abcdef", "GET", "/health", None)
    done.status, done.route, done.outcome, done.ended = 499, "/health", "client_gone", done.started + 0.0000004
    return done


def quoted() -> Exchange:
    """Every string the caller or a provider chose holds what text lines must quote."""
    done = Exchange(None, "id-1", "POST", '/proxy/a b/"c"', "10.0.0.1")
    done.status, done.route, done.provider, done.model = 200, "/proxy/{provider}/{path}", "openai", 'a "b" c'
    done.identity, done.error_type, done.overhead = "team one", "", -0.0000001
    done.tail = (b'{"id":"x","model":"m two","usage":{"prompt_tokens":1,"completion_tokens":2}}',)
    done.first_byte, done.ended = done.started + 1.0005, done.started + 12345.6789
    return done


def unnamed() -> Exchange:
    """A provider but no model, no usage, a first token, and an unread tail without usage."""
    done = Exchange(None, "r", "POST", "/v1/chat/completions", "::1")
    done.status, done.provider, done.stream, done.tail = 200, "anthropic", True, (b"data: {}\n\n",)
    done.first_byte = done.first_token = done.started + 0.25
    done.ended = done.started + 2
    return done


def without_time(line: str, formatter: type[logging.Formatter]) -> str:
    if formatter is JsonFormatter:
        fields = orjson.loads(line)
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", fields.pop("time"))
        return orjson.dumps(fields).decode()
    stamp, rest = line.split(" ", 1)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", stamp)
    return rest


@pytest.mark.parametrize("formatter", FORMATTERS)
@pytest.mark.parametrize(
    "made", [exchange, lambda: exchange(502), health, quoted, unnamed], ids=["ok", "502", "health", "quoted", "unnamed"]
)
def test_the_direct_line_is_the_line_logging_writes(
    root: logging.Logger, formatter: type[logging.Formatter], made: Callable[[], Exchange]
) -> None:
    handler, stream = handler_on(root, formatter())
    log = RequestLog()
    assert log._direct() is handler
    log.end(made())
    # A filter on the request logger could change or drop the line: logging's own way then.
    logging.getLogger(REQUEST_LOGGER).addFilter(logging.Filter())
    assert log._direct() is None
    log.end(made())
    direct, logged = stream.getvalue().splitlines()
    assert without_time(direct, formatter) == without_time(logged, formatter)
    assert ("WARNING" if made().status >= 500 else "INFO") in direct.upper()


def test_any_other_handler_gets_records(root: logging.Logger, caplog: pytest.LogCaptureFixture) -> None:
    _, stream = handler_on(root, JsonFormatter(), alone=False)
    with caplog.at_level(logging.INFO, logger=REQUEST_LOGGER):
        assert RequestLog()._direct() is None
        RequestLog().end(exchange())
    assert [r.getMessage() for r in caplog.records] == ["POST /v1/chat/completions 200"]
    assert orjson.loads(stream.getvalue())["tokens_out"] == 5
