"""Prometheus metrics end to end: real gateways with TELEMETRY_ENABLED over loopback, the fake
providers (and a real MCP server) behind them, the metrics port scraped over HTTP and parsed with
prometheus-client's own parser. Counts are compared before and after each request, since tests
share a gateway."""

from __future__ import annotations

import asyncio
import hashlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import openai
import pytest
import pytest_asyncio
from prometheus_client.parser import text_string_to_metric_families

from .conftest import GatewayFactory
from .fakes import USAGE, FakeProviders, fake_key
from .mcp_servers import MCPTestServer

ROOT = Path(__file__).parent.parent
HELLO = [{"role": "user", "content": "hello there"}]
CHAT = "/v1/chat/completions"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Scrape:
    """One scrape of a metrics port: every sample, and the text as served."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples = [s for family in text_string_to_metric_families(text) for s in family.samples]

    def value(self, name: str, **labels: str) -> float:
        """The sum of ``name``'s samples whose labels include ``labels``."""
        return sum(
            s.value for s in self.samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
        )

    def label_values(self, name: str, label: str) -> set[str]:
        return {s.labels[label] for s in self.samples if s.name == name and label in s.labels}


async def scrape(port: int) -> Scrape:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return Scrape(response.text)


async def until(port: int, name: str, expected: float, timeout: float = 5.0, **labels: str) -> Scrape:
    """Scrape until ``name`` (with ``labels``) reads ``expected`` (the end of a request is reported
    just after its last byte reaches the client)."""
    deadline = time.monotonic() + timeout
    while True:
        scraped = await scrape(port)
        if scraped.value(name, **labels) == expected or time.monotonic() > deadline:
            assert scraped.value(name, **labels) == expected, (name, labels)
            return scraped
        await asyncio.sleep(0.02)


async def first_event(answer: httpx.Response) -> AsyncIterator[str]:
    """Read up to a stream's first event, and keep reading it: the line iterator is returned, since
    the iterator, collected, would close the response (a client gone)."""
    lines = answer.aiter_lines()
    async for line in lines:
        if line.startswith("data:"):
            return lines
    raise AssertionError("the stream ended before its first event")


def sdk(url: str, key: str = "not-checked") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


@pytest_asyncio.fixture(scope="module")
async def metered(gateway_with: GatewayFactory) -> AsyncIterator[tuple[str, int]]:
    port = free_port()
    async with gateway_with(TELEMETRY_ENABLED="true", TELEMETRY_METRICS_PORT=str(port)) as url:
        yield url, port


TOKENS = "gen_ai_client_token_usage_sum"
TOKEN_COUNT = "gen_ai_client_token_usage_count"
DURATION = "gen_ai_server_request_duration_seconds_count"


async def test_a_json_answer_counts_its_tokens_request_and_duration(metered: tuple[str, int]) -> None:
    url, port = metered
    series = {"gen_ai_provider_name": "openai", "gen_ai_request_model": "json-model"}
    before = await scrape(port)
    answer = await sdk(url).chat.completions.create(model="openai/json-model", messages=HELLO)  # type: ignore[arg-type]
    assert answer.usage is not None and answer.usage.prompt_tokens == USAGE["prompt_tokens"]
    after = await until(port, DURATION, before.value(DURATION, **series) + 1, **series)

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert delta(TOKENS, gen_ai_token_type="input", **series) == USAGE["prompt_tokens"]
    assert delta(TOKENS, gen_ai_token_type="output", **series) == USAGE["completion_tokens"]
    assert after.label_values(TOKEN_COUNT, "gen_ai_token_type") >= {"input", "output"}
    assert delta(DURATION, gen_ai_operation_name="chat", gen_ai_response_model="json-model", error_type="", **series)
    assert delta("polyrelay_http_requests_total", route=CHAT, method="POST", status="200") == 1
    assert delta("polyrelay_http_request_duration_seconds_count", route=CHAT, method="POST") == 1
    assert delta("polyrelay_overhead_seconds_count", route=CHAT) == 1
    assert delta("gen_ai_server_time_to_first_token_seconds_count", **series) == 0  # not a stream
    assert after.value("polyrelay_http_requests_in_flight") == 0
    assert after.value("process_resident_memory_bytes") > 0  # the process collector


async def test_a_stream_counts_tokens_ttft_and_its_outcome(metered: tuple[str, int]) -> None:
    url, port = metered
    series = {"gen_ai_provider_name": "openai", "gen_ai_request_model": "stream-model"}
    before = await scrape(port)
    stream = await sdk(url).chat.completions.create(
        model="openai/stream-model",
        messages=HELLO,  # type: ignore[arg-type]
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = [chunk async for chunk in stream]
    assert chunks[-1].usage is not None
    outcome = {"route": CHAT, "outcome": "complete"}
    after = await until(
        port, "polyrelay_streams_total", before.value("polyrelay_streams_total", **outcome) + 1, **outcome
    )

    def delta(name: str, **labels: str) -> float:
        return after.value(name, **labels) - before.value(name, **labels)

    assert delta(TOKENS, gen_ai_token_type="input", **series) == USAGE["prompt_tokens"]
    assert delta(TOKENS, gen_ai_token_type="output", **series) == USAGE["completion_tokens"]
    assert delta(DURATION, error_type="", **series) == 1
    assert delta("gen_ai_server_time_to_first_token_seconds_count", **series) == 1
    ttft = delta("gen_ai_server_time_to_first_token_seconds_sum", **series)
    duration = delta("gen_ai_server_request_duration_seconds_sum", **series)
    assert 0 < ttft <= duration
    assert delta("gen_ai_server_time_per_output_token_seconds_count", **series) == 1  # 7 output tokens
    assert after.value("polyrelay_streams_in_flight") == 0


@pytest.mark.parametrize(
    ("model", "provider", "expected"),
    [
        # The fake's Anthropic usage: 5 new input tokens, 4 read from the cache, 2 written to it; the
        # translator counts all 11 as input (OpenAI's way) and reports the 4 read and the 2 written.
        ("anthropic/cached-model", "anthropic", {"input": 11, "output": 7, "cache_read": 4, "cache_write": 2}),
        # Gemini: 11 prompt tokens (4 cached), 5 candidates and 2 thoughts: 7 output, 2 of them reasoning.
        ("google/cached-model", "gcp.gemini", {"input": 11, "output": 7, "cache_read": 4, "reasoning": 2}),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_translated_answers_report_cached_and_reasoning_tokens(
    metered: tuple[str, int], model: str, provider: str, expected: dict[str, int], stream: bool
) -> None:
    url, port = metered
    series = {"gen_ai_provider_name": provider, "gen_ai_request_model": "cached-model"}
    before = await scrape(port)
    if stream:
        chunks = await sdk(url).chat.completions.create(
            model=model,
            messages=HELLO,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
        assert [chunk async for chunk in chunks][-1].usage is not None
    else:
        await sdk(url).chat.completions.create(model=model, messages=HELLO)  # type: ignore[arg-type]
    after = await until(port, DURATION, before.value(DURATION, **series) + 1, **series)
    for kind in ("input", "output", "cache_read", "cache_write", "reasoning"):
        got = after.value(TOKENS, gen_ai_token_type=kind, **series) - before.value(
            TOKENS, gen_ai_token_type=kind, **series
        )
        assert got == expected.get(kind, 0), kind


async def test_a_provider_error_is_counted_by_its_status(metered: tuple[str, int]) -> None:
    url, port = metered
    before = await scrape(port)
    with pytest.raises(openai.InternalServerError):
        await sdk(url).chat.completions.create(model="openai/error-500", messages=HELLO)  # type: ignore[arg-type]
    errors = {"provider": "openai", "kind": "500"}
    after = await until(
        port, "polyrelay_upstream_errors_total", before.value("polyrelay_upstream_errors_total", **errors) + 1, **errors
    )
    # A model no provider ever answered for is not a label value.
    failed = {"gen_ai_request_model": "other", "error_type": "500", "gen_ai_response_model": ""}
    assert after.value(DURATION, **failed) - before.value(DURATION, **failed) == 1
    assert "error-500" not in after.text
    status = {"route": CHAT, "status": "500"}
    assert (
        after.value("polyrelay_http_requests_total", **status) - before.value("polyrelay_http_requests_total", **status)
        == 1
    )


async def test_in_flight_gauges_follow_a_slow_stream_and_its_client_leaving(metered: tuple[str, int]) -> None:
    url, port = metered
    gone = {"route": CHAT, "outcome": "client_gone"}
    before = await scrape(port)
    async with (
        httpx.AsyncClient(timeout=10) as http,
        http.stream("POST", f"{url}{CHAT}", json={"model": "openai/hang", "messages": HELLO, "stream": True}) as answer,
    ):
        lines = await first_event(answer)  # noqa: F841 (held open; the fake says nothing more until we leave)
        during = await scrape(port)
        assert during.value("polyrelay_streams_in_flight") == 1
        assert during.value("polyrelay_http_requests_in_flight") == 1
    after = await until(port, "polyrelay_streams_total", before.value("polyrelay_streams_total", **gone) + 1, **gone)
    assert after.value("polyrelay_streams_in_flight") == 0
    assert after.value("polyrelay_http_requests_in_flight") == 0


async def test_the_api_port_has_no_metrics(metered: tuple[str, int]) -> None:
    url, port = metered
    before = await scrape(port)
    async with httpx.AsyncClient() as http:
        assert (await http.get(f"{url}/metrics")).status_code == 404
    unmatched = {"route": "unmatched", "method": "GET", "status": "404"}
    after = await until(
        port,
        "polyrelay_http_requests_total",
        before.value("polyrelay_http_requests_total", **unmatched) + 1,
        **unmatched,
    )
    assert "/metrics" not in after.label_values("polyrelay_http_requests_total", "route")


@pytest.mark.timeout(120)
async def test_model_labels_stay_bounded_under_random_names(metered: tuple[str, int]) -> None:
    url, port = metered
    async with httpx.AsyncClient(timeout=30) as http:

        async def ask(model: str) -> None:
            answer = await http.post(f"{url}{CHAT}", json={"model": model, "messages": HELLO})
            assert answer.status_code == 200

        # Every name succeeds (the fake answers any model): the first 200 become label values, the rest "other".
        names = [f"openai/random-{secrets.token_hex(6)}" for _ in range(300)]
        for start in range(0, len(names), 25):
            await asyncio.gather(*(ask(name) for name in names[start : start + 25]))
    scraped = await until(port, "polyrelay_http_requests_in_flight", 0)
    for label in ("gen_ai_request_model", "gen_ai_response_model"):
        values = scraped.label_values(DURATION, label)
        # At most the cap (200 provider-name pairs, some taken by earlier tests), and it was reached.
        assert "other" in values and 150 < len(values - {"other", ""}) <= 200, label
    assert scraped.value(DURATION, gen_ai_request_model="other", error_type="") >= 100
    series = [s for s in scraped.samples if s.name == DURATION]
    assert len(series) <= 2 * 200 + 20  # a few per admitted name, not one per name sent


async def test_an_unreachable_provider_and_unknown_models(gateway_with: GatewayFactory) -> None:
    port = free_port()
    env = {
        "TELEMETRY_ENABLED": "true",
        "TELEMETRY_METRICS_PORT": str(port),
        "OPENAI_API_URL": f"http://127.0.0.1:{free_port()}/v1",
    }
    async with gateway_with(**env) as url, httpx.AsyncClient() as http:
        for _ in range(20):  # random names that no provider ever answered: never label values
            answer = await http.post(
                f"{url}{CHAT}", json={"model": f"openai/{secrets.token_hex(8)}", "messages": HELLO}
            )
            assert answer.status_code == 502
        errors = {"provider": "openai", "kind": "upstream_unreachable"}
        scraped = await until(port, "polyrelay_upstream_errors_total", 20, **errors)
        assert scraped.label_values(DURATION, "gen_ai_request_model") == {"other"}
        assert scraped.value(DURATION, error_type="upstream_unreachable", gen_ai_provider_name="openai") == 20


async def test_auth_failures_by_reason_and_no_secret_in_the_metrics(
    gateway_with: GatewayFactory, fake: FakeProviders
) -> None:
    port = free_port()
    key = "pr-metrics-" + secrets.token_urlsafe(24)
    env = {
        "TELEMETRY_ENABLED": "true",
        "TELEMETRY_METRICS_PORT": str(port),
        "AUTH_ENABLED": "true",
        "AUTH_API_KEYS": f"metrics-test:{hashlib.sha256(key.encode()).hexdigest()}",
    }
    async with gateway_with(**env) as url, httpx.AsyncClient() as http:
        body = {"model": "openai/echo", "messages": HELLO}
        for headers in (
            {},
            {"Authorization": "Bearer wrong-key"},
            {"Authorization": "Bearer wrong-again"},
            {"Authorization": f"Basic {key}"},
        ):
            assert (await http.post(f"{url}{CHAT}", json=body, headers=headers)).status_code == 401
        assert (
            await http.post(f"{url}{CHAT}", json=body, headers={"Authorization": f"Bearer {key}"})
        ).status_code == 200
        await sdk(url, key).chat.completions.create(model="openai/leak", messages=HELLO)  # type: ignore[arg-type]
        scraped = await until(port, DURATION, 2, gen_ai_provider_name="openai")
    assert scraped.value("polyrelay_auth_failures_total", reason="missing_credentials") == 1
    assert scraped.value("polyrelay_auth_failures_total", reason="invalid_api_key") == 2
    assert scraped.value("polyrelay_auth_failures_total", reason="invalid_request") == 1
    assert scraped.value("polyrelay_http_requests_total", status="401") == 4
    for secret in [key, *(fake_key(spec.id) for spec in fake.registry.values())]:
        assert secret not in scraped.text
    assert "wrong-key" not in scraped.text and "metrics-test" not in scraped.text


async def test_mcp_tool_calls_by_server_and_outcome(gateway_with: GatewayFactory) -> None:
    server = await MCPTestServer("stateless").start()
    port = free_port()
    env = {
        "TELEMETRY_ENABLED": "true",
        "TELEMETRY_METRICS_PORT": str(port),
        "MCP_ENABLED": "true",
        "MCP_SERVERS": f"tools={server.url}",
        "MCP_EXPOSE": "true",
        "MCP_POLLING_INTERVAL": "200ms",
    }
    try:
        async with gateway_with(**env) as url, httpx.AsyncClient() as http:
            for _ in range(300):  # the server connects in the background
                if len((await http.get(f"{url}/v1/mcp/tools")).json()["data"]) == 5:
                    break
                await asyncio.sleep(0.02)
            prompt = 'call mcp_add {"a": 1, "b": 2}; call mcp_add {"a": 3, "b": 4}; call mcp_fail {}'
            answer = await sdk(url).chat.completions.create(
                model="openai/agent",
                messages=[{"role": "user", "content": prompt}],  # type: ignore[arg-type]
            )
            assert (answer.choices[0].message.content or "").startswith("Done: ")
            scraped = await until(port, "polyrelay_mcp_tool_calls_total", 2, server="tools", outcome="ok")
    finally:
        await server.stop()
    assert scraped.value("polyrelay_mcp_tool_calls_total", server="tools", outcome="error") == 1
    assert scraped.value("polyrelay_mcp_tool_call_duration_seconds_count", server="tools") == 3


async def test_without_telemetry_there_is_no_metrics_port(gateway_with: GatewayFactory) -> None:
    port = free_port()
    async with gateway_with(TELEMETRY_METRICS_PORT=str(port)) as url, httpx.AsyncClient() as http:
        assert (await http.get(f"{url}/health")).status_code == 200
        with pytest.raises(httpx.ConnectError):
            await http.get(f"http://127.0.0.1:{port}/metrics")
        assert (await http.get(f"{url}/metrics")).status_code == 404


def test_prometheus_client_loads_only_when_metrics_are_on() -> None:
    check = (
        "import sys; from gateway import Settings, create_app; "
        "create_app(Settings.load({'TELEMETRY_ENABLED': sys.argv[1]})); print('prometheus_client' in sys.modules)"
    )
    for enabled, loaded in (("false", "False"), ("true", "True")):
        result = subprocess.run(
            [sys.executable, "-c", check, enabled], capture_output=True, text=True, cwd=ROOT, timeout=30
        )
        assert result.stdout.strip() == loaded, result.stderr


def test_metrics_port_equal_to_the_api_port_is_refused() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "gateway", "check-config"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=30,
        env={**os.environ, "TELEMETRY_ENABLED": "true", "TELEMETRY_METRICS_PORT": "8080", "SERVER_PORT": "8080"},
    )
    assert result.returncode == 1 and "TELEMETRY_METRICS_PORT must differ from SERVER_PORT" in result.stderr


# -- the real command: a port in use, and several workers -------------------------------------------


def serve(tmp_path: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "gateway", "serve"],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(tmp_path), "TELEMETRY_ENABLED": "true", "LOG_FORMAT": "text", **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_metrics_port_in_use_stops_start_up_naming_the_setting(tmp_path: Path, workers: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        process = serve(
            tmp_path, SERVER_PORT=str(free_port()), SERVER_WORKERS=workers, TELEMETRY_METRICS_PORT=str(port)
        )
        output, _ = process.communicate(timeout=30)
    assert process.returncode != 0, output
    assert f"TELEMETRY_METRICS_PORT={port}" in output and "Address already in use" in output, output
    assert not list(tmp_path.iterdir())  # no directory of metrics files left behind


def workers_of(pid: int) -> list[int]:
    """The worker processes of a supervisor (multiprocessing's resource tracker left out)."""
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        for child in (task / "children").read_text().split():
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                found.append(int(child))
    return found


@pytest.mark.timeout(90)
async def test_several_workers_are_summed_by_the_supervisor(tmp_path: Path, fake: FakeProviders) -> None:
    api, port = free_port(), free_port()
    process = serve(tmp_path, **fake.env(), SERVER_PORT=str(api), SERVER_WORKERS="2", TELEMETRY_METRICS_PORT=str(port))
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            deadline = time.monotonic() + 30
            while True:
                try:
                    if (await http.get(f"http://127.0.0.1:{api}/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert process.poll() is None and time.monotonic() < deadline
                await asyncio.sleep(0.05)
            body = {"model": "openai/workers-model", "messages": HELLO}
            for _ in range(5):  # a new connection each, taken by whichever worker accepts first
                clients = [httpx.AsyncClient() for _ in range(8)]
                answers = await asyncio.gather(*(c.post(f"http://127.0.0.1:{api}{CHAT}", json=body) for c in clients))
                assert all(a.status_code == 200 for a in answers)
                await asyncio.gather(*(c.aclose() for c in clients))
            scraped = await until(port, DURATION, 40, gen_ai_request_model="workers-model")
            assert scraped.value(TOKENS, gen_ai_token_type="input", gen_ai_request_model="workers-model") == 40 * 11
            assert scraped.value("polyrelay_http_requests_in_flight") == 0
            assert "process_resident_memory_bytes" not in scraped.text  # the supervisor's own would mislead

            # A stream held open, then its worker killed: the dead worker's in-flight gauges stop
            # counting once the supervisor has replaced it; its counters stay in the sum.
            async with http.stream(
                "POST",
                f"http://127.0.0.1:{api}{CHAT}",
                json={"model": "openai/hang", "messages": HELLO, "stream": True},
            ) as answer:
                lines = await first_event(answer)  # noqa: F841 (held open)
                await until(port, "polyrelay_streams_in_flight", 1)
                workers = workers_of(process.pid)
                assert len(workers) == 2
                for worker in workers:
                    os.kill(worker, signal.SIGKILL)
            await until(port, "polyrelay_streams_in_flight", 0, timeout=15)
            scraped = await until(port, "polyrelay_http_requests_in_flight", 0)
            assert scraped.value(DURATION, gen_ai_request_model="workers-model") == 40
    finally:
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
    assert not list(tmp_path.iterdir()), output  # the supervisor removed the workers' files


def test_the_loop_instruments_export_what_prometheus_clients_would() -> None:
    """One process keeps its values in the loop's own instruments, several workers in
    prometheus-client's: a scrape must read the same either way."""
    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest

    from gateway.telemetry.instruments import LoopCounter, LoopGauge, LoopHistogram

    disable_created_metrics()  # as Metrics does

    ours, theirs = CollectorRegistry(), CollectorRegistry()
    buckets = (0.01, 0.1, 1.0, 10.0)
    mine = LoopHistogram("d_seconds", "Durations.", ("route",), buckets=buckets, registry=ours)
    reference = Histogram("d_seconds", "Durations.", ("route",), buckets=buckets, registry=theirs)
    count, reference_count = (
        LoopCounter("c", "Counts.", ("kind",), registry=ours),
        Counter("c", "Counts.", ("kind",), registry=theirs),
    )
    gauge, reference_gauge = LoopGauge("g", "Level.", registry=ours), Gauge("g", "Level.", registry=theirs)
    for value in (0.0, 0.01, 0.05, 0.1, 0.5, 1.0, 3.0, 10.0, 99.0):  # bounds themselves included
        for route in ("/a", "/b"):
            mine.labels(route).observe(value)
            reference.labels(route).observe(value)
    for kind in ("x", "y", "x"):
        count.labels(kind).inc()
        reference_count.labels(kind).inc()
    gauge.inc(), gauge.inc(), gauge.dec()
    reference_gauge.inc(), reference_gauge.inc(), reference_gauge.dec()
    assert generate_latest(ours).decode() == generate_latest(theirs).decode()
    with pytest.raises(ValueError, match="takes labels"):
        mine.labels("/a", "extra")


def test_a_model_name_is_its_own_label_from_its_first_success_on() -> None:
    """Before a provider answered for a name, its requests count under "other"; from the first
    answer on, under the name, failed ones included (and the names the answers gave likewise)."""
    from prometheus_client import generate_latest

    from gateway.telemetry.exchange import Exchange
    from gateway.telemetry.metrics import Metrics

    metrics = Metrics(provider_names={"openai": "openai"}, model_cap=2)

    def request(status: int, model: str, answered: str | None = None) -> None:
        exchange = Exchange(None, "r", "POST", CHAT, None)
        exchange.route, exchange.status, exchange.operation, exchange.provider, exchange.model = (
            CHAT,
            status,
            "chat",
            "openai",
            model,
        )
        exchange.response_model = answered
        exchange.error_type = None if status < 400 else str(status)
        exchange.ended = exchange.started + 0.5
        metrics.begin(exchange)
        metrics.end(exchange)

    for status, model, answered in [
        (404, "m", None),
        (200, "m", "m-1"),
        (404, "m", None),
        (200, "m", "m-1"),
        (502, "m", "m-1"),
        (200, "n", "n-1"),  # the cap (2): the request model's names are full...
        (200, "late", "late-1"),  # ...so this one stays "other", every time
        (200, "late", "late-1"),
    ]:
        request(status, model, answered)
    scraped = Scrape(generate_latest(metrics.registry).decode())
    counts = {
        (s.labels["gen_ai_request_model"], s.labels["gen_ai_response_model"], s.labels["error_type"]): s.value
        for s in scraped.samples
        if s.name == "gen_ai_server_request_duration_seconds_count"
    }
    assert counts == {
        ("other", "", "404"): 1,
        ("m", "m-1", ""): 2,
        ("m", "", "404"): 1,
        ("m", "m-1", "502"): 1,
        ("n", "n-1", ""): 1,
        ("other", "other", ""): 2,
    }
