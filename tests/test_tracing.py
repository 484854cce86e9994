"""Traces end to end: the real gateway exports OTLP/HTTP to a real receiver on loopback, the fake
providers and MCP servers record the trace context they are sent, the openai SDK is the client.

Spans are read after the gateway stopped: closing it flushes what its batch processor still holds.
"""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from gateway import Settings
from gateway.telemetry import Telemetry
from providers import AdapterOptions, AdapterTimeouts, HttpClient, Timeouts, build_adapter
from providers.registry import load_registry

from .conftest import GatewayFactory
from .fakes import FakeProviders, fake_key
from .mcp_servers import MCPTestServer
from .otlp_receiver import OTLPReceiver

ROOT = Path(__file__).resolve().parent.parent
CALLER_TOKEN = "caller-secret-token-0123456789abcdef"
CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER_SPAN = "00f067aa0ba902b7"
HELLO = [{"role": "user", "content": "hello there"}]


@pytest.fixture
def receiver() -> Iterator[OTLPReceiver]:
    with OTLPReceiver() as started:
        yield started


def traced(receiver: OTLPReceiver, **env: str) -> dict[str, str]:
    return {"TELEMETRY_TRACING_ENABLED": "true", "TELEMETRY_TRACING_OTLP_ENDPOINT": receiver.url, **env}


def sdk(url: str, **kwargs: object) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=CALLER_TOKEN, max_retries=0, **kwargs)  # type: ignore[arg-type]


def traceparent_parts(header: str) -> tuple[str, str, str, str]:
    version, trace_id, span_id, flags = header.split("-")
    return version, trace_id, span_id, flags


async def test_a_chat_makes_a_server_span_and_a_client_span_with_genai_attributes(
    gateway_with: GatewayFactory, fake: FakeProviders, receiver: OTLPReceiver
) -> None:
    async with gateway_with(**traced(receiver)) as url:
        raw = await sdk(url).chat.completions.with_raw_response.create(
            model="openai/echo",
            messages=HELLO,  # type: ignore[arg-type]
            temperature=0.25,
            top_p=0.5,
            max_tokens=50,
            seed=7,
            stop=["END"],
            presence_penalty=0.1,
            frequency_penalty=0.2,
        )
        answer = raw.parse()
        seen = fake.last_post("openai")
    server = receiver.span("POST /v1/chat/completions")
    client = receiver.span("chat echo")

    assert server.kind == "server" and server.status == "unset" and server.parent_id == ""
    assert server.attributes == {
        "http.request.method": "POST",
        "url.path": "/v1/chat/completions",
        "url.scheme": "http",
        "polyrelay.request_id": raw.headers["x-request-id"],
        "client.address": "127.0.0.1",
        "user_agent.original": raw.http_request.headers["user-agent"],
        "http.route": "/v1/chat/completions",
        "http.response.status_code": 200,
        "polyrelay.outcome": "ok",
    }
    assert server.resource["service.name"] == "polyrelay" and server.scope == "polyrelay"

    assert client.kind == "client" and client.status == "unset"
    assert (client.trace_id, client.parent_id) == (server.trace_id, server.span_id)
    assert server.start <= client.start <= client.end <= server.end
    port = int(fake.base.rsplit(":", 1)[1])
    assert client.attributes == {
        "gen_ai.operation.name": "chat",
        "gen_ai.provider.name": "openai",
        "server.address": "127.0.0.1",
        "server.port": port,
        "gen_ai.request.model": "echo",
        "gen_ai.request.temperature": 0.25,
        "gen_ai.request.top_p": 0.5,
        "gen_ai.request.presence_penalty": 0.1,
        "gen_ai.request.frequency_penalty": 0.2,
        "gen_ai.request.max_tokens": 50,
        "gen_ai.request.seed": 7,
        "gen_ai.request.stop_sequences": ["END"],
        "gen_ai.response.finish_reasons": ["stop"],
        "gen_ai.response.id": answer.id,
        "gen_ai.response.model": answer.model,
        "gen_ai.usage.input_tokens": answer.usage.prompt_tokens,  # type: ignore[union-attr]
        "gen_ai.usage.output_tokens": answer.usage.completion_tokens,  # type: ignore[union-attr]
    }
    # The provider was told the client span is its parent, and got the request id along with it.
    _, trace_id, parent_id, flags = traceparent_parts(seen.headers["traceparent"])
    assert (trace_id, parent_id) == (client.trace_id, client.span_id)
    assert int(flags, 16) & 1  # sampled (the SDK also sets bit 2: a random trace id, W3C level 2)
    assert seen.headers["x-request-id"] == raw.headers["x-request-id"]


async def test_an_incoming_traceparent_is_continued_up_to_the_provider(
    gateway_with: GatewayFactory, fake: FakeProviders, receiver: OTLPReceiver
) -> None:
    headers = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01", "tracestate": "acme=t61rcWkgMzE"}
    async with gateway_with(**traced(receiver)) as url:
        await sdk(url).chat.completions.create(model="openai/echo", messages=HELLO, extra_headers=headers)  # type: ignore[arg-type]
        seen = fake.last_post("openai")
    server = receiver.span("POST /v1/chat/completions")
    client = receiver.span("chat echo")
    assert (server.trace_id, server.parent_id) == (CALLER_TRACE, CALLER_SPAN)
    assert client.trace_id == CALLER_TRACE and client.parent_id == server.span_id
    assert seen.headers["traceparent"] == f"00-{CALLER_TRACE}-{client.span_id}-01"
    assert seen.headers["tracestate"] == "acme=t61rcWkgMzE"


async def test_a_malformed_or_unsampled_traceparent(
    gateway_with: GatewayFactory, fake: FakeProviders, receiver: OTLPReceiver
) -> None:
    async with gateway_with(**traced(receiver)) as url:
        client = sdk(url)
        await client.chat.completions.create(
            model="openai/echo",
            messages=HELLO,  # type: ignore[arg-type]
            extra_headers={"traceparent": f"00-{'0' * 32}-{CALLER_SPAN}-01"},  # an all-zero trace id is invalid
        )
        malformed = fake.last_post("openai").headers["traceparent"]
        # The caller sampled its trace out: nothing is recorded, but the context still goes on.
        await client.chat.completions.create(
            model="openai/echo",
            messages=HELLO,  # type: ignore[arg-type]
            extra_headers={"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-00"},
        )
        unsampled = fake.last_post("openai").headers["traceparent"]
    server = receiver.span("POST /v1/chat/completions")  # only the first request's
    assert server.parent_id == "" and server.trace_id != "0" * 32
    assert traceparent_parts(malformed)[1] == server.trace_id
    _, trace_id, span_id, flags = traceparent_parts(unsampled)
    assert (trace_id, flags) == (CALLER_TRACE, "00") and span_id != CALLER_SPAN


async def test_a_stream_span_ends_with_the_stream_and_has_its_usage(
    gateway_with: GatewayFactory, receiver: OTLPReceiver
) -> None:
    async with gateway_with(**traced(receiver)) as url:
        client = sdk(url)
        stream = await client.chat.completions.create(
            model="openai/echo",
            messages=HELLO,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
        chunks = [chunk async for chunk in stream]
        # A stream that stays open: its span lasts until the client leaves, well after its first chunk.
        hanging = await client.chat.completions.create(model="openai/hang", messages=HELLO, stream=True)  # type: ignore[arg-type]
        async for _ in hanging:
            first_chunk_at = time.time_ns()
            break
        await asyncio.sleep(0.3)
        await hanging.close()
    span = receiver.span("chat echo")
    usage = chunks[-1].usage
    assert usage is not None
    assert span.attributes["gen_ai.request.stream"] is True
    assert span.attributes["gen_ai.usage.input_tokens"] == usage.prompt_tokens
    assert span.attributes["gen_ai.usage.output_tokens"] == usage.completion_tokens
    assert span.attributes["gen_ai.response.finish_reasons"] == ["stop"]
    assert span.attributes["gen_ai.response.id"] == chunks[0].id
    assert 0 < span.attributes["gen_ai.response.time_to_first_chunk"] < (span.end - span.start) / 1e9
    served = {s.span_id: s for s in receiver.named("POST /v1/chat/completions")}
    assert served[span.parent_id].attributes["polyrelay.outcome"] == "complete"

    hang = receiver.span("chat hang")
    assert hang.end - first_chunk_at >= 0.3e9  # ended when the stream was closed, not when it opened
    assert hang.end <= served[hang.parent_id].end
    # The client leaving is no failure of the provider's; the request says how it ended.
    assert hang.status == "unset" and hang.attributes["error.type"] == "cancelled"
    assert served[hang.parent_id].attributes["polyrelay.outcome"] == "client_gone"


@pytest.mark.parametrize("pid", ["anthropic", "google", "cohere"])
async def test_translated_providers_report_their_genai_name_and_cached_tokens(
    gateway_with: GatewayFactory, receiver: OTLPReceiver, pid: str
) -> None:
    async with gateway_with(**traced(receiver)) as url:
        answer = await sdk(url).chat.completions.create(model=f"{pid}/echo", messages=HELLO, max_tokens=30)  # type: ignore[arg-type]
    client = receiver.span("chat echo")
    assert client.attributes["gen_ai.provider.name"] == load_registry()[pid].telemetry_name
    assert client.attributes["gen_ai.request.max_tokens"] == 30
    assert client.attributes["gen_ai.usage.input_tokens"] == answer.usage.prompt_tokens  # type: ignore[union-attr]
    assert client.attributes["gen_ai.usage.cache_read.input_tokens"] == 4
    assert client.attributes["gen_ai.response.finish_reasons"] == [answer.choices[0].finish_reason]


async def test_upstream_failures_mark_the_spans(gateway_with: GatewayFactory, receiver: OTLPReceiver) -> None:
    async with gateway_with(**traced(receiver)) as url:
        client = sdk(url)
        with pytest.raises(openai.InternalServerError):
            await client.chat.completions.create(model="openai/error-503", messages=HELLO)  # type: ignore[arg-type]
        with pytest.raises(openai.RateLimitError):
            await client.chat.completions.create(model="openai/error-429", messages=HELLO)  # type: ignore[arg-type]
        stream = await client.chat.completions.create(model="openai/midstream-error", messages=HELLO, stream=True)  # type: ignore[arg-type]
        with pytest.raises(openai.APIError):
            async for _ in stream:
                pass
    unavailable = receiver.span("chat error-503")
    assert (unavailable.status, unavailable.attributes["error.type"]) == ("error", "503")
    limited = receiver.span("chat error-429")
    assert (limited.status, limited.attributes["error.type"]) == ("error", "429")
    broken = receiver.span("chat midstream-error")
    assert (broken.status, broken.attributes["error.type"]) == ("error", "stream_error")
    servers = {s.span_id: s for s in receiver.named("POST /v1/chat/completions")}
    # The gateway's own span is an error for a 5xx it answered, not for the caller's 429.
    failed = servers[unavailable.parent_id]
    assert failed.status == "error" and failed.attributes["http.response.status_code"] == 503
    assert failed.attributes["error.type"] == "503"
    refused = servers[limited.parent_id]
    assert refused.status == "unset" and "error.type" not in refused.attributes
    assert refused.attributes["http.response.status_code"] == 429


async def test_an_unmatched_route_and_a_refused_request_still_make_server_spans(
    gateway_with: GatewayFactory, receiver: OTLPReceiver
) -> None:
    async with gateway_with(**traced(receiver)) as url, httpx.AsyncClient() as http:
        assert (await http.get(f"{url}/nowhere")).status_code == 404
        assert (await http.request("PURGE", f"{url}/v1/models")).status_code == 405
    lost = receiver.span("GET")
    assert lost.attributes["http.response.status_code"] == 404 and "http.route" not in lost.attributes
    odd = receiver.span("HTTP /v1/models")
    assert odd.attributes["http.request.method"] == "_OTHER"
    assert odd.attributes["http.request.method_original"] == "PURGE"


async def test_mcp_tool_calls_are_spans_whose_context_reaches_the_mcp_server(
    gateway_with: GatewayFactory, receiver: OTLPReceiver
) -> None:
    server = await MCPTestServer("stateless", prefix="calc_").start()
    env = traced(receiver, MCP_ENABLED="true", MCP_EXPOSE="true", MCP_SERVERS=f"calc={server.url}")
    try:
        async with gateway_with(**env) as url:
            async with httpx.AsyncClient() as http:
                for _ in range(300):  # the gateway connects to MCP servers in the background
                    if (await http.get(f"{url}/v1/mcp/tools")).json()["data"]:
                        break
                    await asyncio.sleep(0.02)
            prompt = 'call mcp_calc_add {"a": 2, "b": 3}; call mcp_calc_fail {}'
            answer = await sdk(url).chat.completions.create(
                model="openai/agent",
                messages=[{"role": "user", "content": prompt}],
            )
    finally:
        await server.stop()
    assert "5" in (answer.choices[0].message.content or "")
    request = receiver.span("POST /v1/chat/completions")
    add = receiver.span("execute_tool calc_add")
    fail = receiver.span("execute_tool calc_fail")
    calls = receiver.named("chat agent")
    assert len(calls) == 2  # one model call before the tools, one after
    for span in (add, fail, *calls):
        assert (span.trace_id, span.parent_id) == (request.trace_id, request.span_id)
    assert calls[0].end <= add.start and add.end <= calls[1].start
    assert add.attributes == {
        "gen_ai.operation.name": "execute_tool",
        "gen_ai.tool.name": "calc_add",
        "mcp.method.name": "tools/call",
        "polyrelay.mcp.server": "calc",
    }
    assert add.status == "unset"
    assert (fail.status, fail.attributes["error.type"]) == ("error", "tool_error")
    # The MCP server got each call's own span as the parent, in the request's _meta.
    parents = {traceparent_parts(meta["traceparent"])[1:3] for meta in server.metas}
    assert parents == {(request.trace_id, add.span_id), (request.trace_id, fail.span_id)}


async def test_a_proxied_call_is_a_client_span_and_carries_the_gateways_context(
    gateway_with: GatewayFactory, fake: FakeProviders, receiver: OTLPReceiver
) -> None:
    headers = {"traceparent": f"00-{CALLER_TRACE}-{CALLER_SPAN}-01", "authorization": f"Bearer {CALLER_TOKEN}"}
    async with gateway_with(**traced(receiver)) as url, httpx.AsyncClient() as http:
        response = await http.post(
            f"{url}/proxy/openai/openai/v1/chat/completions",
            json={"model": "echo", "messages": HELLO},
            headers=headers,
        )
        seen = fake.last_post("openai")
    assert response.status_code == 200
    server = receiver.span("POST /proxy/{provider}/{path}")
    client = receiver.span("POST")
    assert server.parent_id == CALLER_SPAN and client.parent_id == server.span_id
    assert client.attributes["http.response.status_code"] == 200
    assert client.attributes["polyrelay.provider"] == "openai"
    assert client.end <= server.end
    # The caller's traceparent was dropped; the provider's parent is the gateway's client span.
    assert seen.headers["traceparent"] == f"00-{CALLER_TRACE}-{client.span_id}-01"


async def test_no_secret_reaches_a_span(gateway_with: GatewayFactory, receiver: OTLPReceiver) -> None:
    keys = [fake_key(pid).encode() for pid in ("openai", "anthropic", "google")]
    async with gateway_with(**traced(receiver)) as url, httpx.AsyncClient() as http:
        client = sdk(url)
        for model in ("openai/leak", "anthropic/leak", "google/leak"):  # answers quoting the key received
            await client.chat.completions.create(model=model, messages=HELLO)  # type: ignore[arg-type]
        with pytest.raises(openai.APIError):
            await client.chat.completions.create(model="openai/error-401", messages=HELLO)  # type: ignore[arg-type]
        stream = await client.chat.completions.create(model="openai/leak-error", messages=HELLO, stream=True)  # type: ignore[arg-type]
        with pytest.raises(openai.APIError):
            async for _ in stream:
                pass
        await http.get(f"{url}/proxy/openai/openai/v1/models", headers={"Authorization": f"Bearer {CALLER_TOKEN}"})
    assert len(receiver.spans) >= 12
    for export in receiver.exports:  # the bytes as the collector got them: attributes, resource, names
        for secret in (*keys, CALLER_TOKEN.encode()):
            assert secret not in export.body
    assert not any(b"hello there" in export.body for export in receiver.exports)  # no content captured


async def test_the_standard_endpoint_variable_turns_tracing_on_and_wins(
    gateway_with: GatewayFactory, receiver: OTLPReceiver
) -> None:
    with OTLPReceiver() as other:
        env = {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url + "/", "TELEMETRY_TRACING_OTLP_ENDPOINT": other.url}
        async with gateway_with(**env) as url, httpx.AsyncClient() as http:
            await http.get(f"{url}/health")
        assert other.exports == []
    assert receiver.span("GET /health").attributes["http.response.status_code"] == 200
    assert {export.path for export in receiver.exports} == {"/v1/traces"}


async def test_tracing_off_sends_nothing(
    gateway_with: GatewayFactory, fake: FakeProviders, receiver: OTLPReceiver
) -> None:
    async with gateway_with(TELEMETRY_TRACING_OTLP_ENDPOINT=receiver.url) as url:
        await sdk(url).chat.completions.create(model="openai/echo", messages=HELLO)  # type: ignore[arg-type]
        seen = fake.last_post("openai")
    assert receiver.exports == []
    assert "traceparent" not in seen.headers


def _imports_sdk(**env: str) -> bool:
    """Whether building the app (in a fresh interpreter) loads the OpenTelemetry SDK or exporter."""
    script = (
        "import sys\n"
        "from gateway import Settings, create_app\n"
        "create_app(Settings.load({'OPENAI_API_KEY': 'k', **" + json.dumps(env) + "}))\n"
        "print(any(m.startswith(('opentelemetry.sdk', 'opentelemetry.exporter')) for m in sys.modules))\n"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    result = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip() == "True"


def test_the_sdk_is_imported_only_when_tracing_is_on() -> None:
    assert not _imports_sdk()
    assert not _imports_sdk(MCP_ENABLED="true", MCP_SERVERS="http://127.0.0.1:9/mcp")  # the MCP SDK uses only the API
    assert _imports_sdk(TELEMETRY_TRACING_ENABLED="true")


@pytest.mark.timeout(60)
async def test_the_standard_otel_variables_apply_to_a_served_gateway(
    fake: FakeProviders, receiver: OTLPReceiver
) -> None:
    """OTEL_SERVICE_NAME, OTEL_RESOURCE_ATTRIBUTES and OTEL_EXPORTER_OTLP_HEADERS, read by the SDK
    from the process environment, in a gateway started as `python -m gateway serve`."""
    async with httpx.AsyncClient() as probe:
        port = _free_port()
        environ = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
        environ.update(
            fake.env(),
            PYTHONPATH=str(ROOT),
            SERVER_PORT=str(port),
            SERVER_WORKERS="1",
            OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url,
            OTEL_SERVICE_NAME="relay-ci",
            OTEL_RESOURCE_ATTRIBUTES="deployment.environment.name=ci,service.namespace=llm",
            OTEL_EXPORTER_OTLP_HEADERS="x-tenant=team-a",
            OTEL_BSP_SCHEDULE_DELAY="50",
        )
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway", "serve", cwd=ROOT, env=environ, stderr=asyncio.subprocess.DEVNULL
        )
        try:
            for _ in range(300):
                try:
                    if (await probe.get(f"http://127.0.0.1:{port}/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            for _ in range(100):  # spans leave on the batch schedule (50 ms here), not only at shutdown
                if receiver.spans:
                    break
                await asyncio.sleep(0.05)
        finally:
            process.terminate()
            await asyncio.wait_for(process.wait(), 20)
    span = receiver.span("GET /health")
    assert span.resource["service.name"] == "relay-ci"
    assert span.resource["deployment.environment.name"] == "ci" and span.resource["service.namespace"] == "llm"
    assert {export.headers.get("x-tenant") for export in receiver.exports} == {"team-a"}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_with_tracing_off_the_routes_hold_the_adapters_and_client_themselves(fake: FakeProviders) -> None:
    settings = Settings.load(fake.env())
    http = HttpClient()
    timeouts = Timeouts()
    options = AdapterOptions(AdapterTimeouts(timeouts, timeouts, timeouts))
    adapters = {p.id: build_adapter(p, http, options) for p in settings.configured_providers}
    off = Telemetry.from_settings(settings)
    assert all(off.wrap_adapters(adapters)[pid] is adapter for pid, adapter in adapters.items())
    assert off.wrap_client(http) is http
    on = Telemetry.from_settings(Settings.load({**fake.env(), "OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:9"}))
    assert all(on.wrap_adapters(adapters)[pid] is not adapter for pid, adapter in adapters.items())
    assert on.wrap_client(http) is not http
    await on.close()
