"""POST /v1/metrics: clients push token usage in OTLP; the real OpenTelemetry SDK exporter as client."""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator

import httpx
import pytest
import pytest_asyncio

from .conftest import GatewayFactory
from .test_metrics import free_port, scrape

PUSHED = "polyrelay_pushed_token_usage_total"


def point(tokens: int, token_type: str, provider: str = "anthropic", **extra: str) -> dict[str, object]:
    attributes = {"gen_ai.token.type": token_type, "gen_ai.provider.name": provider, **extra}
    return {
        "asInt": str(tokens),
        "attributes": [{"key": k, "value": {"stringValue": v}} for k, v in attributes.items()],
    }


def export(*points: dict[str, object], name: str = "gen_ai.client.token.usage", temporality: int = 1) -> dict:
    return {
        "resourceMetrics": [
            {
                "resource": {"attributes": [{"key": "service.name", "value": {"stringValue": "infer-cli"}}]},
                "scopeMetrics": [
                    {"metrics": [{"name": name, "sum": {"aggregationTemporality": temporality, "dataPoints": points}}]}
                ],
            }
        ]
    }


@pytest_asyncio.fixture(scope="module")
async def pushed(gateway_with: GatewayFactory) -> AsyncIterator[tuple[str, int]]:
    port = free_port()
    env = {"TELEMETRY_ENABLED": "true", "TELEMETRY_METRICS_PORT": str(port), "TELEMETRY_METRICS_PUSH_ENABLED": "true"}
    async with gateway_with(**env) as url:
        yield url, port


async def test_pushed_usage_lands_in_the_gateways_metrics(pushed: tuple[str, int]) -> None:
    url, port = pushed
    before = await scrape(port)
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{url}/v1/metrics",
            json=export(point(1234, "input"), point(56, "output"), point(7, "input", source="batch-job")),
        )
    assert answer.status_code == 200 and answer.json() == {}
    after = await scrape(port)

    def gained(**labels: str) -> float:
        return after.value(PUSHED, **labels) - before.value(PUSHED, **labels)

    assert gained(gen_ai_provider_name="anthropic", gen_ai_token_type="input", source="infer-cli") == 1234
    assert gained(gen_ai_token_type="output", source="infer-cli") == 56
    assert gained(source="batch-job") == 7


async def test_what_is_not_accepted_is_counted_as_rejected(pushed: tuple[str, int]) -> None:
    url, port = pushed
    async with httpx.AsyncClient() as http:
        cumulative = await http.post(f"{url}/v1/metrics", json=export(point(5, "input"), temporality=2))
        other = await http.post(f"{url}/v1/metrics", json=export(point(5, "input"), name="bogus"))
        odd = await http.post(
            f"{url}/v1/metrics", json=export(point(5, "sideways"), point(9, "output", provider="made-up"))
        )
    assert cumulative.json()["partialSuccess"]["rejectedDataPoints"] == "1"
    assert "delta" in cumulative.json()["partialSuccess"]["errorMessage"]
    assert other.json()["partialSuccess"] == {"rejectedDataPoints": "1", "errorMessage": "unsupported metric 'bogus'"}
    assert odd.json()["partialSuccess"]["rejectedDataPoints"] == "1"
    scraped = await scrape(port)
    assert "made-up" not in scraped.label_values(PUSHED, "gen_ai_provider_name")  # an unknown name is "other"
    assert scraped.value(PUSHED, gen_ai_provider_name="other", gen_ai_token_type="output") >= 9


@pytest.mark.parametrize(
    ("headers", "body", "status"),
    [
        ({"content-type": "text/plain"}, b"hello", 415),
        ({"content-type": "application/x-protobuf"}, b"\xff\xff\xff not protobuf", 400),
        ({"content-type": "application/json"}, b"{not json", 400),
        ({"content-type": "application/json", "content-encoding": "gzip"}, b"not gzip at all", 400),
        ({"content-type": "application/json", "content-encoding": "br"}, b"x", 415),
        # 8 MiB of zeros, 8 KiB compressed: refused once decoding passes 4 MiB.
        ({"content-type": "application/json", "content-encoding": "gzip"}, gzip.compress(b"0" * (8 << 20)), 413),
    ],
)
async def test_bad_pushes_get_a_clear_error(
    pushed: tuple[str, int], headers: dict[str, str], body: bytes, status: int
) -> None:
    url, _ = pushed
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"{url}/v1/metrics", content=body, headers=headers)
    assert answer.status_code == status, answer.text
    assert answer.json()["error"]["message"]


async def test_the_opentelemetry_sdk_pushes_through_it(pushed: tuple[str, int]) -> None:
    """The standard OTLP/HTTP exporter (protobuf, gzip), with delta temporality, as a CLI would set it up."""
    from opentelemetry.exporter.otlp.proto.http import Compression
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.sdk.metrics import Counter, MeterProvider
    from opentelemetry.sdk.metrics.export import AggregationTemporality, PeriodicExportingMetricReader
    from opentelemetry.sdk.resources import Resource

    url, port = pushed
    before = (await scrape(port)).value(PUSHED, source="sdk-cli", gen_ai_token_type="input")
    exporter = OTLPMetricExporter(
        endpoint=f"{url}/v1/metrics",
        compression=Compression.Gzip,
        preferred_temporality={Counter: AggregationTemporality.DELTA},
    )
    reader = PeriodicExportingMetricReader(exporter, export_interval_millis=60_000)
    provider = MeterProvider(metric_readers=[reader], resource=Resource.create({"service.name": "sdk-cli"}))
    counter = provider.get_meter("cli").create_counter("gen_ai.client.token.usage")
    counter.add(300, {"gen_ai.token.type": "input", "gen_ai.provider.name": "openai"})
    counter.add(200, {"gen_ai.token.type": "input", "gen_ai.provider.name": "openai"})
    # The SDK's exporter blocks: it runs on a thread while the gateway serves on this loop.
    assert await asyncio.to_thread(provider.force_flush, 10_000)
    await asyncio.to_thread(provider.shutdown)
    after = (await scrape(port)).value(
        PUSHED, source="sdk-cli", gen_ai_token_type="input", gen_ai_provider_name="openai"
    )
    assert after - before == 500


@pytest.mark.parametrize(
    "env",
    [
        {"TELEMETRY_ENABLED": "true"},  # metrics on, pushing off
        {"TELEMETRY_METRICS_PUSH_ENABLED": "true"},  # pushing on, but no metrics to add to
    ],
)
async def test_pushing_is_refused_unless_enabled(gateway_with: GatewayFactory, env: dict[str, str]) -> None:
    async with gateway_with(**env, TELEMETRY_METRICS_PORT=str(free_port())) as url, httpx.AsyncClient() as http:
        answer = await http.post(f"{url}/v1/metrics", json=export(point(1, "input")))
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "metrics_push_disabled"
