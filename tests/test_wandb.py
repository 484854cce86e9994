"""W&B authentication of a gateway: the key verifier, its middleware and the usage reporter, against
a fake W&B server on loopback (tests/fake_wandb.py)."""

from __future__ import annotations

import asyncio
import base64
import logging
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import anthropic
import openai
import pytest
import pytest_asyncio
import uvicorn
from prometheus_client import generate_latest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from gateway.auth import identity_of
from gateway.gateways.spec import GatewayUnavailable, WandbAuth
from gateway.gateways.wandb import (
    NoUsageReports,
    UsageReporter,
    WandbAuthMiddleware,
    WandbVerifier,
    usage_reporter,
)
from gateway.telemetry.exchange import Exchange
from gateway.telemetry.metrics import Metrics
from providers import HttpClient
from providers.errors import AuthenticationFailed, ServiceUnavailable

from .fake_wandb import FakeWandb

KEY = "0123456789abcdef0123456789abcdef01234567"  # W&B's classic shape: 40 hex characters
OTHER_KEY = "wandb_v1_" + "k" * 77  # the newer shape, 86 characters
GATEWAY_KEY = "local-" + "9" * 40  # the gateway's own key (an on-prem shape)
GATEWAY_ID = "5f0c6d1e-2b7a-4c39-9d41-8e2f3a6b7c10"


@pytest_asyncio.fixture
async def wandb() -> AsyncIterator[FakeWandb]:
    server = FakeWandb()
    server.add_user(KEY, "ml-team", "alice")
    server.add_user(OTHER_KEY, "vision", "bob")
    server.add_user(GATEWAY_KEY, "polyrelay-gateway")
    await server.start()
    yield server
    await server.stop()


@pytest_asyncio.fixture(scope="module")
async def http() -> AsyncIterator[HttpClient]:
    client = HttpClient()
    await client.start()
    yield client
    await client.close()


def auth_at(server: FakeWandb, *, reports: bool = False, key: str = GATEWAY_KEY) -> WandbAuth:
    return WandbAuth(api_key=key, server_url=server.url + "/", enable_usage_reports=reports)


# -- the verifier ---------------------------------------------------------------------------------


async def test_a_valid_key_is_the_w_and_b_entity(wandb: FakeWandb, http: HttpClient) -> None:
    identity = await WandbVerifier(auth_at(wandb), http).verify(KEY)
    assert (identity.subject, identity.method) == ("ml-team", "wandb")
    assert dict(identity.claims) == {"entity": "ml-team", "username": "alice", "id": wandb.users[KEY]["id"]}
    assert wandb.seen_authorization == ["Basic " + base64.b64encode(f"api:{KEY}".encode()).decode()]
    assert (await WandbVerifier(auth_at(wandb), http).verify(OTHER_KEY)).subject == "vision"


async def test_an_unknown_key_is_401_and_not_cached(wandb: FakeWandb, http: HttpClient) -> None:
    verifier = WandbVerifier(auth_at(wandb), http)
    for _ in range(2):
        with pytest.raises(AuthenticationFailed) as refused:
            await verifier.verify("f" * 40)
        assert (refused.value.status, refused.value.code) == (401, "invalid_api_key")
    assert wandb.graphql_calls == 2


@pytest.mark.parametrize("key", ["k" * 257, "abc\x00def", "key with spaces", "clé-non-ascii", "tab\tkey"])
async def test_malformed_keys_are_refused_before_any_call(wandb: FakeWandb, http: HttpClient, key: str) -> None:
    with pytest.raises(AuthenticationFailed) as refused:
        await WandbVerifier(auth_at(wandb), http).verify(key)
    assert refused.value.code == "invalid_api_key"
    assert wandb.graphql_calls == 0


async def test_a_storm_with_one_key_makes_one_call_and_expiry_refetches(wandb: FakeWandb, http: HttpClient) -> None:
    wandb.delay = 0.05  # so the 50 arrive while the first lookup is still out
    verifier = WandbVerifier(auth_at(wandb), http, ttl=0.3)
    identities = await asyncio.gather(*(verifier.verify(KEY) for _ in range(50)))
    assert {identity.subject for identity in identities} == {"ml-team"}
    assert wandb.graphql_calls == 1
    await verifier.verify(KEY)
    assert wandb.graphql_calls == 1  # cached
    await asyncio.sleep(0.35)
    await verifier.verify(KEY)
    assert wandb.graphql_calls == 2  # expired: asked again


async def test_the_cache_is_bounded(wandb: FakeWandb, http: HttpClient) -> None:
    verifier = WandbVerifier(auth_at(wandb), http, max_entries=2)
    for key in (KEY, OTHER_KEY, GATEWAY_KEY):
        await verifier.verify(key)
    assert wandb.graphql_calls == 3
    await verifier.verify(GATEWAY_KEY)
    await verifier.verify(OTHER_KEY)
    assert wandb.graphql_calls == 3
    await verifier.verify(KEY)  # the least recently used: evicted
    assert wandb.graphql_calls == 4


async def test_a_server_down_slow_or_failing_is_503_and_not_cached(wandb: FakeWandb, http: HttpClient) -> None:
    verifier = WandbVerifier(auth_at(wandb), http, timeout=0.3)
    await wandb.down()
    with pytest.raises(ServiceUnavailable) as down:
        await verifier.verify(KEY)
    assert down.value.status == 503 and down.value.headers["Retry-After"] == "5"
    await wandb.up()
    wandb.graphql_status = 500
    with pytest.raises(ServiceUnavailable):
        await verifier.verify(KEY)
    wandb.graphql_status = 429
    with pytest.raises(ServiceUnavailable):
        await verifier.verify(KEY)
    wandb.graphql_status, wandb.delay = None, 1.0
    with pytest.raises(ServiceUnavailable):
        await verifier.verify(KEY)
    wandb.delay = 0
    assert (await verifier.verify(KEY)).subject == "ml-team"  # nothing was cached meanwhile


async def test_the_key_never_reaches_a_log(
    wandb: FakeWandb, http: HttpClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    bad = "e" * 40
    verifier = WandbVerifier(auth_at(wandb), http, timeout=0.3)
    await verifier.verify(KEY)
    with pytest.raises(AuthenticationFailed):
        await verifier.verify(bad)
    await wandb.down()
    with pytest.raises(ServiceUnavailable):
        await WandbVerifier(auth_at(wandb), http).verify(OTHER_KEY)
    with pytest.raises(GatewayUnavailable):
        await verifier.check()
    await wandb.up()
    async with served(WandbAuthMiddleware(echo_app(), verifier=verifier)) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=bad, max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            await client.models.list()
    logged = caplog.text
    assert "W&B server" in logged  # the down server was logged...
    for secret in (KEY, bad, OTHER_KEY, GATEWAY_KEY):  # ...and no key, plain or encoded
        assert secret not in logged
        assert base64.b64encode(f"api:{secret}".encode()).decode() not in logged
    assert repr(auth_at(wandb)).count(GATEWAY_KEY) == 0


async def test_check_says_whether_the_server_answers(wandb: FakeWandb, http: HttpClient) -> None:
    await WandbVerifier(auth_at(wandb, reports=True), http).check()
    await WandbVerifier(auth_at(wandb, key="0" * 40), http).check()  # the gateway's key unused: fine
    with pytest.raises(GatewayUnavailable) as rejected:
        await WandbVerifier(auth_at(wandb, reports=True, key="0" * 40), http).check()
    assert rejected.value.reason == "UsageReportKeyRejected"
    wandb.graphql_status = 503
    with pytest.raises(GatewayUnavailable) as failing:
        await WandbVerifier(auth_at(wandb), http).check()
    assert failing.value.reason == "AuthServerUnreachable" and "HTTP 503" in failing.value.message
    wandb.graphql_status = None
    await wandb.down()
    with pytest.raises(GatewayUnavailable) as down:
        await WandbVerifier(auth_at(wandb), http).ping()
    assert down.value.reason == "AuthServerUnreachable"


# -- the middleware, in a real Starlette app on loopback -----------------------------------------------


def echo_app() -> Starlette:
    async def echo(request: Request) -> JSONResponse:
        identity = identity_of(request.scope)
        assert identity is not None
        return JSONResponse(
            {
                "object": "list",
                "data": [{"id": identity.subject, "object": "model", "created": 0, "owned_by": identity.method}],
                "forwarded": sorted({k.decode() for k, _ in request.scope["headers"]} & {"authorization", "x-api-key"}),
            }
        )

    async def health(request: Request) -> JSONResponse:
        return JSONResponse({"status": "ok"})

    routes = [Route("/v1/models", echo), Route("/v1/messages", echo, methods=["POST"]), Route("/health", health)]
    return Starlette(routes=routes)


@asynccontextmanager
async def served(app: ASGIApp) -> AsyncIterator[str]:
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", loop="none", lifespan="off"))
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    task = asyncio.create_task(server.serve(sockets=[sock]))
    while not server.started:
        await asyncio.sleep(0.005)
    try:
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"
    finally:
        server.should_exit = True
        await task


async def test_the_middleware_admits_w_and_b_keys_only(wandb: FakeWandb, http: HttpClient) -> None:
    verifier = WandbVerifier(auth_at(wandb), http, timeout=0.3)
    async with served(WandbAuthMiddleware(echo_app(), verifier=verifier)) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=KEY, max_retries=0)
        page = await client.models.with_raw_response.list()
        body = page.http_response.json()
        assert body["data"][0]["id"] == "ml-team" and body["forwarded"] == []  # the key stays here

        stranger = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="d" * 40, max_retries=0)
        with pytest.raises(openai.AuthenticationError) as refused:
            await stranger.models.list()
        assert refused.value.code == "invalid_api_key"
        assert refused.value.response.headers["WWW-Authenticate"] == "Bearer"
        envelope = refused.value.response.json()["error"]
        assert envelope["type"] == "authentication_error" and "W&B API key" in envelope["message"]
        assert wandb.url not in envelope["message"]  # the server's address is the operator's

        async with aiohttp.ClientSession() as session:
            async with session.get(f"{url}/v1/models") as missing:
                assert missing.status == 401
                assert (await missing.json())["error"]["code"] == "missing_credentials"
            async with session.get(f"{url}/health") as health:
                assert health.status == 200  # probes need no key

        await wandb.down()
        with pytest.raises(openai.InternalServerError) as unavailable:
            await openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=OTHER_KEY, max_retries=0).models.list()
        assert unavailable.value.status_code == 503
        assert unavailable.value.response.json()["error"]["code"] == "service_unavailable"
        assert unavailable.value.response.headers["Retry-After"] == "5"
        assert wandb.url not in unavailable.value.response.text
        # The cached key still passes while the server is away.
        assert (await client.models.list()).data[0].id == "ml-team"


async def test_the_middleware_speaks_anthropic_on_messages(wandb: FakeWandb, http: HttpClient) -> None:
    verifier = WandbVerifier(auth_at(wandb), http)
    async with served(WandbAuthMiddleware(echo_app(), verifier=verifier)) as url:
        async with (
            aiohttp.ClientSession() as session,
            session.post(f"{url}/v1/messages", headers={"x-api-key": OTHER_KEY}, json={}) as ok,
        ):
            body = await ok.json()
            assert ok.status == 200 and body["data"][0]["id"] == "vision" and body["forwarded"] == []
        client = anthropic.AsyncAnthropic(base_url=url, api_key="c" * 40, max_retries=0)
        with pytest.raises(anthropic.AuthenticationError) as refused:
            await client.messages.create(model="m", max_tokens=1, messages=[{"role": "user", "content": "hi"}])
        assert refused.value.body == {
            "type": "error",
            "error": {"type": "authentication_error", "message": refused.value.body["error"]["message"]},  # type: ignore[index]
        }


# -- the usage reporter ----------------------------------------------------------------------------------


def reporter_at(server: FakeWandb, http: HttpClient, **options: Any) -> UsageReporter:
    reporter = usage_reporter(auth_at(server, reports=True), GATEWAY_ID, http, **options)
    assert isinstance(reporter, UsageReporter)
    return reporter


async def until(condition: Any, timeout: float = 3.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_usage_arrives_in_batches_with_the_right_totals(wandb: FakeWandb, http: HttpClient) -> None:
    reporter = reporter_at(wandb, http, batch_size=10, interval=0.3)
    await reporter.start()
    for n in range(25):
        reporter.record("ml-team" if n % 2 else "vision", "openai", "gpt-4o", n, 2 * n, f"req-{n}")
    await until(lambda: len(wandb.batches) == 2)  # two full batches at once...
    assert [len(batch["records"]) for batch in wandb.batches] == [10, 10]
    await until(lambda: len(wandb.records) == 25)  # ...and the rest after the interval
    await reporter.close()
    records = wandb.records
    assert [record["request_id"] for record in records] == [f"req-{n}" for n in range(25)]
    assert sum(record["prompt_tokens"] for record in records) == sum(range(25))
    assert sum(record["completion_tokens"] for record in records) == 2 * sum(range(25))
    assert all(record["total_tokens"] == record["prompt_tokens"] + record["completion_tokens"] for record in records)
    assert {record["entity"] for record in records} == {"ml-team", "vision"}
    first = records[0]
    assert (first["gateway_id"], first["provider"], first["model"]) == (GATEWAY_ID, "openai", "gpt-4o")
    assert first["time"].endswith("Z") and len(first["time"]) == len("2026-12-01T17:00:00.000Z")
    for batch, headers in zip(wandb.batches, wandb.usage_headers, strict=True):
        assert headers["Idempotency-Key"] == batch["batch_id"]
        assert headers["Authorization"] == "Basic " + base64.b64encode(f"api:{GATEWAY_KEY}".encode()).decode()
    assert reporter.dropped == 0


async def test_a_failed_batch_is_retried(wandb: FakeWandb, http: HttpClient) -> None:
    wandb.usage_failures = 2
    reporter = reporter_at(wandb, http, batch_size=3, backoff=0.05)
    await reporter.start()
    for n in range(3):
        reporter.record("ml-team", "anthropic", "claude", 5, 7, f"r{n}")
    await until(lambda: len(wandb.batches) == 1)
    await reporter.close()
    assert wandb.usage_attempts == 3 and len(wandb.records) == 3 and reporter.dropped == 0


async def test_a_full_queue_drops_and_counts(wandb: FakeWandb, http: HttpClient) -> None:
    metrics = Metrics(provider_names={})
    reporter = reporter_at(wandb, http, max_queue=5, batch_size=100, interval=60, dropped=metrics.wandb_usage_dropped)
    await reporter.start()
    for n in range(8):
        reporter.record("ml-team", "openai", "gpt-4o", 1, 1, f"r{n}")
    scraped = generate_latest(metrics.registry).decode()  # type: ignore[arg-type]
    line = f'polyrelay_wandb_usage_dropped_total{{gateway="{GATEWAY_ID}",reason="queue_full"}} 3.0'
    assert line in scraped
    await reporter.close()  # the five queued ones are still delivered
    assert len(wandb.records) == 5 and reporter.dropped == 3


async def test_close_flushes_what_is_queued(wandb: FakeWandb, http: HttpClient) -> None:
    reporter = reporter_at(wandb, http, batch_size=100, interval=60)
    await reporter.start()
    for n in range(7):
        reporter.record("vision", "google", "gemini", 3, 4, f"r{n}")
    await asyncio.sleep(0.05)
    assert wandb.batches == []  # neither full nor due
    await reporter.close()
    assert len(wandb.batches) == 1 and len(wandb.records) == 7
    reporter.record("vision", "google", "gemini", 3, 4, "late")  # after close: dropped, counted
    assert reporter.dropped == 1


async def test_close_gives_up_on_a_server_that_stays_down(wandb: FakeWandb, http: HttpClient) -> None:
    metrics = Metrics(provider_names={})
    await wandb.down()
    reporter = reporter_at(wandb, http, close_timeout=0.3, backoff=0.05, dropped=metrics.wandb_usage_dropped)
    await reporter.start()
    for n in range(4):
        reporter.record("vision", "openai", "gpt-4o", 1, 1, f"r{n}")
    await reporter.close()
    assert reporter.dropped == 4
    scraped = generate_latest(metrics.registry).decode()  # type: ignore[arg-type]
    assert f'polyrelay_wandb_usage_dropped_total{{gateway="{GATEWAY_ID}",reason="shutdown"}} 4.0' in scraped


async def test_a_refused_batch_is_dropped_not_retried(wandb: FakeWandb, http: HttpClient) -> None:
    wandb.usage_status = 400
    reporter = reporter_at(wandb, http, batch_size=2, backoff=0.05)
    await reporter.start()
    reporter.record("vision", "openai", "gpt-4o", 1, 1, "a")
    reporter.record("vision", "openai", "gpt-4o", 1, 1, "b")
    await until(lambda: reporter.dropped == 2)
    await asyncio.sleep(0.1)
    await reporter.close()
    assert wandb.usage_attempts == 1


async def test_an_exchange_is_recorded_from_its_answer(wandb: FakeWandb, http: HttpClient) -> None:
    reporter = reporter_at(wandb, http, interval=60)
    await reporter.start()
    exchange = Exchange(None, "req-42", "POST", "/v1/chat/completions", None)
    exchange.provider, exchange.model = "openai", "gpt-4o"
    exchange.answered(b'{"id":"c1","model":"gpt-4o-2024-08-06","usage":{"prompt_tokens":11,"completion_tokens":5}}')
    reporter.record_exchange(exchange, entity="ml-team")
    reporter.record_exchange(Exchange(None, "no-usage", "POST", "/v1/chat/completions", None), entity="ml-team")
    await reporter.close()
    assert [(r["request_id"], r["model"], r["prompt_tokens"], r["completion_tokens"]) for r in wandb.records] == [
        ("req-42", "gpt-4o-2024-08-06", 11, 5)
    ]


async def test_no_reports_unless_enabled(wandb: FakeWandb, http: HttpClient) -> None:
    reporter = usage_reporter(auth_at(wandb, reports=False), GATEWAY_ID, http)
    assert isinstance(reporter, NoUsageReports)
    await reporter.start()
    reporter.record("ml-team", "openai", "gpt-4o", 1, 1, "r")
    await reporter.close()
    assert wandb.usage_attempts == 0
