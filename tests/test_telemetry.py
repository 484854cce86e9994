"""Request ids and the request log: every answer carries an id that reaches the provider and every
log line of the request; one line per request says who asked what of whom and how it ended."""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager

import httpx
import openai
import orjson
import pytest
import pytest_asyncio

from gateway.telemetry.logs import REQUEST_LOGGER, JsonFormatter, RequestIdFilter, TextFormatter
from gateway.telemetry.usage import read_usage

from .conftest import GatewayFactory
from .fakes import FakeProviders, fake_key
from .processes import gateway_process

HEX_ID = re.compile(r"[0-9a-f]{32}")
KEY = "pr-telemetry-test-key-0123456789"
CHAT = {"model": "openai/echo", "messages": [{"role": "user", "content": "hi"}]}


@pytest_asyncio.fixture(scope="module")
async def gateway(gateway_with: GatewayFactory) -> AsyncIterator[str]:
    async with gateway_with(ROUTING_STRATEGY="path") as url:
        yield url


@contextmanager
def request_lines(caplog: pytest.LogCaptureFixture) -> Iterator[list[dict[str, object]]]:
    """The fields of each request line logged in the block."""
    lines: list[dict[str, object]] = []
    with caplog.at_level(logging.INFO, logger=REQUEST_LOGGER):
        yield lines
        lines.extend(r.fields for r in caplog.records if r.name == REQUEST_LOGGER)  # type: ignore[attr-defined]


# -- request ids -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "kept"),
    [
        ("req-7f3a.b:c@d/e+f=", True),
        ("4bf92f3577b34da6a3ce929d0e0e4736", True),
        ("x" * 128, True),
        ("x" * 129, False),
        ("has space", False),
        ("quote\"or'", False),
        ("", False),
    ],
)
async def test_a_valid_request_id_is_kept_and_sent_upstream_else_a_new_one(
    gateway: str, fake: FakeProviders, sent: str, kept: bool
) -> None:
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"{gateway}/v1/chat/completions", json=CHAT, headers={"X-Request-Id": sent})
    assert answer.status_code == 200
    request_id = answer.headers["x-request-id"]
    assert request_id == sent if kept else HEX_ID.fullmatch(request_id)
    assert fake.last_post("openai").headers["x-request-id"] == request_id


async def test_two_request_ids_are_replaced_by_a_new_one(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{gateway}/v1/chat/completions", json=CHAT, headers=[("X-Request-Id", "a"), ("X-Request-Id", "b")]
        )
    assert HEX_ID.fullmatch(answer.headers["x-request-id"])


async def test_every_answer_carries_a_request_id_errors_included(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        answers = [
            await http.get(f"{gateway}/nowhere"),
            await http.post(f"{gateway}/v1/chat/completions", content=b"{"),
            await http.post(f"{gateway}/v1/chat/completions", json={**CHAT, "model": "openai/error-503"}),
            await http.get(f"{gateway}/health"),
        ]
    assert [a.status_code for a in answers] == [404, 400, 503, 200]
    ids = [a.headers["x-request-id"] for a in answers]
    assert all(HEX_ID.fullmatch(i) for i in ids) and len(set(ids)) == 4
    assert all("error" in a.json() for a in answers[:3])


async def test_the_proxy_sends_the_gateways_request_id_once(gateway: str, fake: FakeProviders) -> None:
    async with httpx.AsyncClient() as http:
        answer = await http.get(f"{gateway}/proxy/openai/openai/v1/models", headers={"X-Request-Id": "bad id"})
    assert answer.status_code == 200
    seen = fake.last("/models")
    assert seen.headers["x-request-id"] == answer.headers["x-request-id"] != "bad id"


async def test_a_refused_caller_gets_a_request_id(
    gateway_with: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    import hashlib

    digest = hashlib.sha256(KEY.encode()).hexdigest()
    async with gateway_with(AUTH_ENABLED="true", AUTH_API_KEYS=f"ci:{digest}") as url:
        with request_lines(caplog) as lines:
            async with httpx.AsyncClient() as http:
                refused = await http.get(f"{url}/v1/models", headers={"Authorization": "Bearer wrong"})
                allowed = await http.post(
                    f"{url}/v1/chat/completions", json=CHAT, headers={"Authorization": f"Bearer {KEY}"}
                )
    assert refused.status_code == 401 and HEX_ID.fullmatch(refused.headers["x-request-id"])
    assert allowed.status_code == 200
    by_id = {line["request_id"]: line for line in lines}
    assert by_id[refused.headers["x-request-id"]]["error_type"] == "authentication"
    assert "identity" not in by_id[refused.headers["x-request-id"]]
    assert by_id[allowed.headers["x-request-id"]]["identity"] == "ci"
    text = "\n".join(TextFormatter().format(r) + JsonFormatter().format(r) for r in caplog.records)
    assert KEY not in text and "wrong" not in text


# -- the request line --------------------------------------------------------------------------


async def test_a_chat_answer_is_one_line_with_provider_model_and_tokens(
    gateway: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key="unused", max_retries=0)
    with request_lines(caplog) as lines:
        raw = await client.chat.completions.with_raw_response.create(
            model="openai/echo", messages=[{"role": "user", "content": "count my tokens"}]
        )
    answer = raw.parse()
    (line,) = lines
    assert line["request_id"] == raw.headers["x-request-id"]
    assert line["route"] == "/v1/chat/completions" and line["method"] == "POST" and line["status"] == 200
    assert line["provider"] == "openai" and line["model"] == "echo" and line["stream"] is False
    assert answer.usage is not None
    assert (line["tokens_in"], line["tokens_out"]) == (answer.usage.prompt_tokens, answer.usage.completion_tokens)
    assert line["response_model"] == answer.model
    assert line["outcome"] == "ok"
    assert 0 < float(line["overhead_ms"]) <= float(line["duration_ms"])  # type: ignore[arg-type]


async def test_a_stream_line_says_it_completed_with_its_time_to_first_token(
    gateway: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key="unused", max_retries=0)
    with request_lines(caplog) as lines:
        stream = await client.chat.completions.create(
            model="anthropic/claude-sonnet-4-5",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        usage = [chunk.usage async for chunk in stream if chunk.usage]
    (line,) = lines
    assert line["stream"] is True and line["outcome"] == "complete" and line["provider"] == "anthropic"
    assert usage and (line["tokens_in"], line["tokens_out"]) == (usage[-1].prompt_tokens, usage[-1].completion_tokens)
    # Anthropic's prompt-cache writes have no OpenAI field: they come under Anthropic's name.
    assert (usage[-1].model_extra or {}).get("cache_creation_input_tokens") == 2
    assert 0 < float(line["ttft_ms"]) <= float(line["duration_ms"])  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("model", "outcome", "error_type"),
    [
        ("echo", "complete", None),
        ("midstream-error", "upstream_error", "stream_error"),
        ("broken-stream", "upstream_error", "upstream_unreachable"),
    ],
)
async def test_how_a_stream_ended_is_in_its_line(
    gateway: str, caplog: pytest.LogCaptureFixture, model: str, outcome: str, error_type: str | None
) -> None:
    # A provider's own error event (relayed as it came) and a connection cut mid-stream both end
    # the stream short of its end.
    with request_lines(caplog) as lines:
        async with (
            httpx.AsyncClient() as http,
            http.stream(
                "POST", f"{gateway}/v1/chat/completions", json={**CHAT, "model": f"openai/{model}", "stream": True}
            ) as answer,
        ):
            await answer.aread()
    (line,) = lines
    assert line["outcome"] == outcome and line.get("error_type") == error_type


async def test_a_client_that_leaves_a_stream_is_logged_as_gone(gateway: str, caplog: pytest.LogCaptureFixture) -> None:
    with request_lines(caplog) as lines:
        async with (
            httpx.AsyncClient() as http,
            http.stream(
                "POST", f"{gateway}/v1/chat/completions", json={**CHAT, "model": "openai/hang", "stream": True}
            ) as answer,
        ):
            async for _ in answer.aiter_bytes():
                break
        for _ in range(200):
            if any(r.name == REQUEST_LOGGER for r in caplog.records):
                break
            await asyncio.sleep(0.01)
    (line,) = lines
    assert line["outcome"] == "client_gone" and line["stream"] is True


async def test_routes_are_templates_and_unknown_paths_one_name(gateway: str, caplog: pytest.LogCaptureFixture) -> None:
    with request_lines(caplog) as lines:
        async with httpx.AsyncClient() as http:
            await http.post(f"{gateway}/openai%2Fecho/v1/chat/completions", json={"messages": CHAT["messages"]})
            await http.get(f"{gateway}/proxy/openai/openai/v1/models")
            await http.get(f"{gateway}/some/user/input")
    assert [line["route"] for line in lines] == ["/v1/chat/completions", "/proxy/{provider}/{path}", "unmatched"]
    assert lines[1]["provider"] == "openai"


async def test_no_key_reaches_a_line_even_when_the_provider_quotes_it(
    gateway: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG):
        async with httpx.AsyncClient() as http:
            for model in ("leak", "leak-error", "error-401"):
                await http.post(f"{gateway}/v1/chat/completions", json={**CHAT, "model": f"openai/{model}"})
                await http.post(
                    f"{gateway}/v1/chat/completions", json={**CHAT, "model": f"openai/{model}", "stream": True}
                )
    text = "\n".join(TextFormatter().format(r) + JsonFormatter().format(r) for r in caplog.records)
    assert fake_key("openai") not in text


# -- formats, end to end -----------------------------------------------------------------------


@pytest.mark.timeout(30)
async def test_json_logs_one_object_per_line_with_the_request_id_in_each(fake: FakeProviders) -> None:
    env = {"LOG_FORMAT": "json", "SERVER_ACCESS_LOG": "true"}
    async with gateway_process(fake, **env) as gateway:
        async with httpx.AsyncClient() as http:
            answer = await http.post(f"{gateway.url}/v1/chat/completions", json={**CHAT, "model": "openai/error-500"})
        await gateway.line_matching(answer.headers["x-request-id"], count=2)
        gateway.process.terminate()
        await asyncio.wait_for(gateway.process.wait(), 10)
        await gateway._reader
        output = gateway.output
    request_id = answer.headers["x-request-id"]
    lines = [orjson.loads(line) for line in output.splitlines() if line.strip()]  # every line is JSON
    assert all({"time", "level", "logger", "message"} <= set(line) for line in lines)
    mine = [line for line in lines if line.get("request_id") == request_id]
    assert {line["logger"] for line in mine} == {"polyrelay", REQUEST_LOGGER}  # the 5xx warning and the request line
    (request,) = (line for line in mine if line["logger"] == REQUEST_LOGGER)
    assert request["status"] == 500 and request["error_type"] == "500" and request["level"] == "warning"
    assert any(line["logger"].startswith("uvicorn") for line in lines)  # uvicorn's own lines, same format
    assert fake_key("openai") not in output


def test_the_text_format_reads_as_a_line_of_fields() -> None:
    record = logging.LogRecord(REQUEST_LOGGER, logging.INFO, __file__, 1, "%s %s %d", ("GET", "/health", 200), None)
    record.fields = {"request_id": "r1", "method": "GET", "path": "/health", "status": 200, "model": "a b"}
    text = TextFormatter().format(record)
    assert text.endswith('INFO polyrelay.request: GET /health 200 request_id=r1 model="a b"')


def test_lines_outside_a_request_carry_no_request_id() -> None:
    record = logging.LogRecord("polyrelay", logging.INFO, __file__, 1, "started", (), None)
    assert RequestIdFilter().filter(record) and not hasattr(record, "request_id")
    assert "request_id" not in orjson.loads(JsonFormatter().format(record))


# -- reading usage from bytes ------------------------------------------------------------------


def test_usage_is_read_from_the_last_event_of_a_stream() -> None:
    events = (
        b'data: {"id":"c1","model":"m-2024","choices":[{"delta":{"content":"\\"usage\\": {}"}}]}\n\n',
        b'data: {"id":"c1","model":"m-2024","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":7,'
        b'"completion_tokens_details":{"reasoning_tokens":2}}}\n\n',
    )
    usage = read_usage(events)
    assert usage is not None
    assert (usage.input, usage.output, usage.reasoning, usage.model, usage.response_id) == (5, 7, 2, "m-2024", "c1")


@pytest.mark.parametrize(
    "body",
    [
        b'{"choices":[{"message":{"content":"usage"}}]}',
        b'{"usage":null}',
        b'{"usage":{"prompt_tokens":"5","completion_tokens":1}}',
        b'{"usage":{"prompt_tokens":5,',
        b"",
    ],
)
def test_no_usage_when_there_is_none_or_it_is_malformed(body: bytes) -> None:
    assert read_usage((body,)) is None


def _big(text: str) -> str:
    return text * 3000  # past the size read in one parse: found by the byte search instead


@pytest.mark.parametrize("size", ["small", "large"])
@pytest.mark.parametrize(
    "shape",
    [
        "json",  # one answer, usage before other keys (OpenAI puts service_tier after it)
        "pretty",  # indented, with newlines inside the object
        "stream",  # events with "usage": null, then the usage event
    ],
)
def test_usage_reads_the_same_in_one_parse_or_by_search(shape: str, size: str) -> None:
    content = _big("word ") if size == "large" else "hi"
    usage = {"prompt_tokens": 11, "completion_tokens": 4, "prompt_tokens_details": {"cached_tokens": 3}}
    answer = {"id": "c9", "model": "m-1", "choices": [{"message": {"content": content}}], "usage": usage}
    if shape == "json":
        tail: tuple[bytes, ...] = (orjson.dumps({**answer, "service_tier": "default"}),)
    elif shape == "pretty":
        tail = (orjson.dumps(answer, option=orjson.OPT_INDENT_2) + b"\n",)
    else:
        chunk = {"id": "c9", "model": "m-1", "choices": [{"delta": {"content": content}}], "usage": None}
        final = {"id": "c9", "model": "m-1", "choices": [], "usage": usage}
        tail = (b"data: " + orjson.dumps(chunk) + b"\n\n", b"data: " + orjson.dumps(final) + b"\n\n")
    found = read_usage(tail)
    assert found is not None
    assert (found.input, found.output, found.cache_read, found.model, found.response_id) == (11, 4, 3, "m-1", "c9")
