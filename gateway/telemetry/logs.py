"""Logs: one line per request (``RequestLog``), every line in one format, each with its request id.

``LOG_FORMAT=json`` writes one JSON object per line (what log pipelines parse); ``text`` writes
readable lines with the same fields as ``key=value``. uvicorn's own messages go through the same
handler; its access log is off, since the request line says more (provider, model, tokens, how a
stream ended, the time in the gateway itself).

    logging.config.dictConfig(logging_config(settings))
"""

from __future__ import annotations

import asyncio
import logging
import logging.config
import time
from typing import TYPE_CHECKING, Any

import orjson

from .exchange import current
from .sink import Sink

if TYPE_CHECKING:
    from ..settings import Settings
    from .exchange import Exchange

__all__ = [
    "JsonFormatter",
    "RequestIdFilter",
    "RequestLog",
    "TextFormatter",
    "TurnHandler",
    "configure_logging",
    "logging_config",
]

REQUEST_LOGGER = "polyrelay.request"


class RequestLog(Sink):
    """The request line: who asked what of whom, how it ended, and how long each part took."""

    def __init__(self) -> None:
        self.log = logging.getLogger(REQUEST_LOGGER)

    def end(self, exchange: Exchange) -> None:
        level = logging.WARNING if exchange.status >= 500 else logging.INFO
        if not self.log.isEnabledFor(level):
            return
        handler = self._direct()
        if handler is None:
            # The record made and handled here: what Logger.log does, less looking up the caller's frame.
            args = (exchange.method, exchange.path, exchange.status)
            extra = {"fields": request_fields(exchange, {})}
            record = self.log.makeRecord(REQUEST_LOGGER, level, __file__, 0, "%s %s %d", args, None, extra=extra)
            self.log.handle(record)
            return
        # What logging would do with the record, for the one configuration it can have here: the
        # same line as the formatter's, without a LogRecord, the handler chain or a dict of fields.
        name = "WARNING" if level == logging.WARNING else "INFO"
        if type(handler.formatter) is TextFormatter:
            handler.hold(text_line(exchange, time.time(), name))
            return
        message = f"{exchange.method} {exchange.path} {exchange.status:d}"
        head = {"time": _time(time.time()), "level": name.lower(), "logger": REQUEST_LOGGER, "message": message}
        handler.hold(orjson.dumps(request_fields(exchange, head), default=str).decode())

    def _direct(self) -> TurnHandler | None:
        """The gateway's own handler, when it is the only one a request line reaches and nothing
        between could change the line (no other handler, filter or formatter: then logging's way)."""
        logger = self.log
        if logger.filters:
            return None
        while logger.parent is not None:  # up to the root
            if logger.handlers or not logger.propagate:
                return None
            logger = logger.parent
        handlers = logger.handlers
        if len(handlers) != 1:
            return None
        handler = handlers[0]
        if type(handler) is not TurnHandler or type(handler.formatter) not in _FORMATTERS:
            return None
        if handler.level > logging.INFO:
            return None
        for found in handler.filters:
            if type(found) is not RequestIdFilter:  # that one is a no-op on request lines
                return None
        return handler


# The request line's fields, in the order they are written. They are spelled out twice: as a dict
# (records, JSON) and as text, since a generic key=value loop cost more than the rest of the line;
# tests/test_request_log.py holds the two equal.


def request_fields(exchange: Exchange, fields: dict[str, Any]) -> dict[str, Any]:
    """``fields`` (a JSON line's head, or empty) with the request line's fields added."""
    fields["request_id"] = exchange.request_id
    fields["method"] = exchange.method
    fields["path"] = exchange.path
    fields["route"] = exchange.route
    fields["status"] = exchange.status
    fields["outcome"] = exchange.outcome
    fields["duration_ms"] = round(exchange.duration * 1000, 3)
    if exchange.first_byte is not None:
        fields["ttfb_ms"] = round((exchange.first_byte - exchange.started) * 1000, 3)
    fields["overhead_ms"] = round(exchange.overhead * 1000, 3)
    if exchange.client is not None:
        fields["client"] = exchange.client
    if exchange.identity is not None:
        fields["identity"] = exchange.identity
    if exchange.provider is not None:
        fields["provider"] = exchange.provider
        fields["model"] = exchange.model
        fields["stream"] = exchange.stream
    usage = exchange.tokens()
    if exchange.response_model is not None:
        fields["response_model"] = exchange.response_model
    if exchange.first_token is not None:
        fields["ttft_ms"] = round((exchange.first_token - exchange.started) * 1000, 3)
    if usage is not None:
        fields["tokens_in"] = usage.input
        fields["tokens_out"] = usage.output
    if exchange.error_type is not None:
        fields["error_type"] = exchange.error_type
    return fields


def text_line(exchange: Exchange, created: float, level: str) -> str:
    """The line ``TextFormatter`` makes of a record holding ``request_fields(exchange)``. Numbers
    and booleans are written as they are; only strings can need quotes (``_text``)."""
    line = (
        f"{_time(created)} {level} {REQUEST_LOGGER}: {exchange.method} {exchange.path} {exchange.status:d}"
        f" request_id={_text(exchange.request_id)} route={_text(exchange.route)} outcome={_text(exchange.outcome)}"
        f" duration_ms={_ms(exchange.duration)}"
    )
    if exchange.first_byte is not None:
        line += f" ttfb_ms={_ms(exchange.first_byte - exchange.started)}"
    line += f" overhead_ms={_ms(exchange.overhead)}"
    if exchange.client is not None:
        line += f" client={_text(exchange.client)}"
    if exchange.identity is not None:
        line += f" identity={_text(exchange.identity)}"
    if exchange.provider is not None:
        line += f" provider={_text(exchange.provider)} model={_text(exchange.model)} stream={exchange.stream}"
    usage = exchange.tokens()
    if exchange.response_model is not None:
        line += f" response_model={_text(exchange.response_model)}"
    if exchange.first_token is not None:
        line += f" ttft_ms={_ms(exchange.first_token - exchange.started)}"
    if usage is not None:
        line += f" tokens_in={usage.input} tokens_out={usage.output}"
    if exchange.error_type is not None:
        line += f" error_type={_text(exchange.error_type)}"
    return line


def _ms(seconds: float) -> str:
    """``str(round(seconds * 1000, 3))``, in half the time: both round the same way to three
    decimals, and a number of at most 15 digits prints as its shortest form (up to 30 years)."""
    text = "%.3f" % (seconds * 1000)
    if text[-1] != "0":  # nine times in ten
        return text
    text = text.rstrip("0")
    return text + "0" if text[-1] == "." else text


class TurnHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler that writes the request lines of one event-loop turn at once: one system
    call for every request finished in that turn instead of one per line. None waits longer than its
    turn; any other line (and a line outside an event loop, or from another thread) is written at
    once, behind what is held, and so is what ``flush`` finds held (logging flushes at exit)."""

    def __init__(self, stream: Any = None) -> None:
        super().__init__(stream)
        self._held: list[str] | None = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record)
        except Exception:
            self.handleError(record)
            return
        if record.name != REQUEST_LOGGER:  # rare lines (start-up, warnings, the last one before exit): now
            self._write(line + self.terminator)
            return
        self._hold(line)

    def hold(self, line: str) -> None:
        """Write a request line (formatted already) as ``emit`` would: in this turn's batch."""
        with self.lock:  # type: ignore[union-attr]
            self._hold(line)

    def _hold(self, line: str) -> None:
        line += self.terminator
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop in this thread: now, behind anything held
            self._write(line)
            return
        held = self._held
        if held is None:
            self._held = [line]
            loop.call_soon(self.flush)
        else:
            held.append(line)

    def _write(self, text: str) -> None:
        held, self._held = self._held, None
        try:
            self.stream.write("".join(held) + text if held else text)
            self.stream.flush()
        except Exception:
            self.handleError(logging.makeLogRecord({"msg": text.rstrip()}))

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]
            if self._held:
                self._write("")
            else:
                super().flush()


class RequestIdFilter(logging.Filter):
    """Gives every record logged while a request is handled that request's id."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            request_id = current().request_id
            if request_id:
                record.request_id = request_id
        return True


_second: list[Any] = [-1, ""]  # the last second formatted, and its text: most lines share it
_MILLISECONDS = [f".{ms:03d}Z" for ms in range(1001)]  # 1000: a float's rounding, as msecs would print it


def _time(created: float) -> str:
    """ISO 8601 in UTC with milliseconds: ``2026-12-01T12:00:00.123Z`` (a record's ``created``)."""
    second = int(created)
    if second != _second[0]:
        _second[:] = [second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))]
    stamp: str = _second[1]
    return stamp + _MILLISECONDS[int((created - second) * 1000)]  # as LogRecord.msecs


class JsonFormatter(logging.Formatter):
    """``{"time", "level", "logger", "message", ...fields}``, one object per line."""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        if fields and not record.exc_info:
            return self.line(record.created, record.levelname, record.name, record.getMessage(), fields)
        line: dict[str, Any] = {
            "time": _time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        if fields:
            line.update(fields)
        elif (request_id := getattr(record, "request_id", None)) is not None:
            line["request_id"] = request_id
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(line, default=str).decode()

    def line(self, created: float, level: str, logger: str, message: str, fields: dict[str, Any]) -> str:
        """A line with fields (a request line), from what a record would hold."""
        head = {"time": _time(created), "level": level.lower(), "logger": logger, "message": message}
        return orjson.dumps(head | fields, default=str).decode()


class TextFormatter(logging.Formatter):
    """``time LEVEL logger: message key=value ...``"""

    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None)
        if fields and not record.exc_info:
            return self.line(record.created, record.levelname, record.name, record.getMessage(), fields)
        text = f"{_time(record.created)} {record.levelname} {record.name}: {record.getMessage()}"
        if fields:
            text += _pairs(fields)
        elif (request_id := getattr(record, "request_id", None)) is not None:
            text += f" request_id={request_id}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text

    def line(self, created: float, level: str, logger: str, message: str, fields: dict[str, Any]) -> str:
        """A line with fields (a request line), from what a record would hold."""
        return f"{_time(created)} {level} {logger}: {message}{_pairs(fields)}"


_FORMATTERS = (JsonFormatter, TextFormatter)


_IN_MESSAGE = frozenset({"method", "path", "status"})


def _pairs(fields: dict[str, Any]) -> str:
    return "".join(f" {key}={_text(value)}" for key, value in fields.items() if key not in _IN_MESSAGE)


def _text(value: object) -> str:
    text = str(value)
    return text if text and " " not in text and '"' not in text else orjson.dumps(text).decode()


def configure_logging(settings: Settings) -> dict[str, Any]:
    """Apply the logging configuration in this process; returns it for uvicorn's workers."""
    config = logging_config(settings)
    logging.config.dictConfig(config)
    # No line shows thread or process names: not looking them up makes each record cheaper.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    return config


def logging_config(settings: Settings) -> dict[str, Any]:
    """A ``logging.config.dictConfig`` document (also given to uvicorn, which applies it in each
    worker process)."""
    level = "DEBUG" if settings.debug else settings.log_level.upper()
    formatter = JsonFormatter if settings.log_format == "json" else TextFormatter
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": f"{__name__}.RequestIdFilter"}},
        "formatters": {"default": {"()": f"{__name__}.{formatter.__name__}"}},
        "handlers": {
            "default": {
                "class": f"{__name__}.TurnHandler",
                "stream": "ext://sys.stderr",
                "formatter": "default",
                "filters": ["request_id"],
            }
        },
        "root": {"handlers": ["default"], "level": level},
        "loggers": {
            # uvicorn's loggers keep no handlers of their own: their lines reach ours, once.
            "uvicorn": {"handlers": [], "propagate": True, "level": level},
            "uvicorn.error": {"handlers": [], "propagate": True, "level": level},
            "uvicorn.access": {"handlers": [], "propagate": False, "level": "WARNING"},
        },
    }
