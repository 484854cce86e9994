"""Rate limits and quotas, end to end: real gateways on loopback in front of the fake providers, the
in-memory store and a real ``redis-server`` (two gateway processes sharing one limit through it;
Redis killed mid-test). Each fake answer reports 18 tokens of usage (11 in, 7 out)."""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from multidict import CIMultiDict

from gateway import Settings
from gateway.auth import Identity
from gateway.limits import parse_limits
from gateway.limits.limiter import Limits, RateLimited, format_reset
from gateway.limits.redis_store import RedisStore
from gateway.limits.store import MemoryStore
from gateway.settings import SettingsError
from providers.rate_limits import rate_limit_headers

from .conftest import GatewayFactory
from .fakes import FakeProviders
from .processes import gateway_process
from .redis_server import redis_server

pytestmark = pytest.mark.timeout(45)

KEYS = {"alice": "sk-alice-0123456789abcdef", "bob": "sk-bob-0123456789abcdef"}
USED = 18  # the fakes' usage: prompt 11 + completion 7


def limited(limits: dict[str, Any], **env: str) -> dict[str, str]:
    keys = ",".join(f"{name}:{hashlib.sha256(key.encode()).hexdigest()}" for name, key in KEYS.items())
    return {"AUTH_ENABLED": "true", "AUTH_API_KEYS": keys, "LIMITS": json.dumps(limits), **env}


def body(max_tokens: int | None = None, model: str = "openai/echo", **extra: Any) -> bytes:
    payload: dict[str, Any] = {"model": model, "messages": [{"role": "user", "content": "hi"}], **extra}
    if max_tokens is not None:
        payload["max_tokens"] = max_tokens
    return orjson.dumps(payload)


def estimate(content: bytes) -> int:
    """What the gateway reserves at admission: the body's bytes / 4, plus max_tokens."""
    return len(content) // 4 + int(orjson.loads(content).get("max_tokens") or 0)


async def chat(http: httpx.AsyncClient, url: str, who: str, content: bytes) -> httpx.Response:
    headers = {"Authorization": f"Bearer {KEYS[who]}", "Content-Type": "application/json"}
    return await http.post(f"{url}/v1/chat/completions", content=content, headers=headers)


def seconds(reset: str) -> float:
    """OpenAI's reset notation back into seconds: 20ms, 1.5s, 6m0s, 3h2m1s."""
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:([\d.]+)s)?(?:(\d+)ms)?", reset)
    assert match and reset, reset
    h, m, s, ms = (float(g) if g else 0.0 for g in match.groups())
    return h * 3600 + m * 60 + s + ms / 1000


def trio(response: httpx.Response, measure: str) -> tuple[int, int, float]:
    h = response.headers
    return (
        int(h[f"x-ratelimit-limit-{measure}"]),
        int(h[f"x-ratelimit-remaining-{measure}"]),
        seconds(h[f"x-ratelimit-reset-{measure}"]),
    )


def test_reset_notation() -> None:
    assert [format_reset(s) for s in (0.02, 1.5, 30, 59.9995, 60, 360, 3721)] == [
        "20ms",
        "1.5s",
        "30s",
        "60s",
        "1m0s",
        "6m0s",
        "1h2m1s",
    ]


async def test_no_limits_no_headers(gateway_with: GatewayFactory) -> None:
    async with gateway_with(**limited({})) as url, httpx.AsyncClient() as http:
        response = await chat(http, url, "alice", body())
        assert response.status_code == 200
        assert not [k for k in response.headers if k.startswith("x-ratelimit")]
        ready = (await http.get(f"{url}/ready")).json()
        assert "limits" not in ready["checks"]


async def test_a_key_is_refused_at_its_requests_per_minute(gateway_with: GatewayFactory) -> None:
    env = limited({"default": {"requests_per_minute": 2}})
    async with gateway_with(**env) as url, httpx.AsyncClient() as http:
        first = await chat(http, url, "alice", body())
        assert first.status_code == 200
        assert trio(first, "requests") == (2, 1, 30.0)  # a bucket of 2, one back every 30 s
        assert "x-ratelimit-limit-tokens" not in first.headers  # no token limit configured
        second = await chat(http, url, "alice", body())
        limit, remaining, reset = trio(second, "requests")
        assert (limit, remaining) == (2, 0) and 59 < reset <= 60

        sdk = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=KEYS["alice"], max_retries=0)
        with pytest.raises(openai.RateLimitError) as refused:
            await sdk.chat.completions.create(model="openai/echo", messages=[{"role": "user", "content": "hi"}])
        error = refused.value
        assert error.status_code == 429 and error.code == "rate_limit_exceeded" and error.type == "requests"
        assert "2 requests per minute" in error.message
        assert 29 <= int(error.response.headers["retry-after"]) <= 30
        assert trio(error.response, "requests")[:2] == (2, 0)
        assert len(error.response.headers.get_list("x-ratelimit-limit-requests")) == 1

        other = await chat(http, url, "bob", body())  # every caller has counters of its own
        assert other.status_code == 200 and trio(other, "requests")[1] == 1


async def test_a_key_is_refused_at_its_tokens_per_minute_reserved_then_settled(gateway_with: GatewayFactory) -> None:
    env = limited({"identities": {"alice": {"tokens_per_minute": 100}}})
    async with gateway_with(**env) as url, httpx.AsyncClient() as http:
        asked = body(max_tokens=40)
        reserved = estimate(asked)
        started = time.monotonic()
        first = await chat(http, url, "alice", asked)
        assert first.status_code == 200
        assert trio(first, "tokens")[:2] == (100, 100 - reserved)  # the estimate is held while it runs
        assert "x-ratelimit-limit-requests" not in first.headers

        second = await chat(http, url, "alice", asked)  # the first now counts 18 tokens, not its estimate
        refilled = (time.monotonic() - started) / 0.6 + 1  # 100 per minute: one token back every 0.6 s
        remaining = trio(second, "tokens")[1]
        assert 100 - USED - reserved <= remaining <= 100 - USED - reserved + refilled

        greedy = body(max_tokens=70)
        refused = await chat(http, url, "alice", greedy)
        assert refused.status_code == 429
        error = refused.json()["error"]
        assert error["type"] == "tokens" and error["code"] == "rate_limit_exceeded"
        assert "100 tokens per minute" in error["message"]
        left = int(refused.headers["x-ratelimit-remaining-tokens"])  # nothing was taken by the refusal
        assert 100 - 2 * USED - 1 <= left <= 100 - 2 * USED + refilled + 1
        wait = int(refused.headers["retry-after"])
        assert wait >= 1 and abs(wait - (estimate(greedy) - left) * 0.6) <= 2

        small = await chat(http, url, "alice", body(max_tokens=1))  # fits what the settlements gave back
        assert small.status_code == 200

        alone = await chat(http, url, "alice", body(max_tokens=500))
        assert alone.status_code == 429 and "This request alone" in alone.json()["error"]["message"]

        bob = await chat(http, url, "bob", body(max_tokens=500))  # bob has no limit: no headers either
        assert bob.status_code == 200 and not [k for k in bob.headers if k.startswith("x-ratelimit")]


async def test_concurrent_requests(gateway_with: GatewayFactory) -> None:
    env = limited({"default": {"concurrent_requests": 1}})
    async with gateway_with(**env) as url, httpx.AsyncClient() as http:
        headers = {"Authorization": f"Bearer {KEYS['alice']}", "Content-Type": "application/json"}
        stream = body(model="openai/hang", stream=True)
        async with http.stream("POST", f"{url}/v1/chat/completions", content=stream, headers=headers) as held:
            assert held.status_code == 200
            events = held.aiter_bytes()  # kept: a dropped iterator would close the stream
            await anext(events)  # the first event: the request is in flight
            refused = await chat(http, url, "alice", body())
            assert refused.status_code == 429
            assert refused.headers["retry-after"] == "1"
            assert "1 concurrent requests" in refused.json()["error"]["message"]
            assert (await chat(http, url, "bob", body())).status_code == 200
        # The client left the stream: the gateway cancels it and frees the slot.
        async with asyncio.timeout(5):
            while (response := await chat(http, url, "alice", body())).status_code == 429:
                await asyncio.sleep(0.02)
        assert response.status_code == 200
        for _ in range(3):  # a finished answer frees its slot before its last byte reaches the caller
            assert (await chat(http, url, "alice", body())).status_code == 200


async def test_tokens_per_day_is_a_quota(gateway_with: GatewayFactory) -> None:
    env = limited({"default": {"tokens_per_day": 50, "requests_per_minute": 100}})
    async with gateway_with(**env) as url, httpx.AsyncClient() as http:
        asked = body(max_tokens=1)
        reserved = estimate(asked)
        assert 50 - 2 * USED < reserved <= 50 - USED  # the third request is the one that does not fit
        midnight = 86400 - time.time() % 86400
        first = await chat(http, url, "alice", asked)
        limit, remaining, reset = trio(first, "tokens")
        assert (limit, remaining) == (50, 50 - reserved) and abs(reset - midnight) < 5
        assert trio(first, "requests")[:2] == (100, 99)
        second = await chat(http, url, "alice", asked)
        assert second.status_code == 200 and trio(second, "tokens")[1] == 50 - USED - reserved
        third = await chat(http, url, "alice", asked)
        assert third.status_code == 429
        error = third.json()["error"]
        assert error["type"] == "insufficient_quota" and error["code"] == "insufficient_quota"
        assert "50 tokens per day" in error["message"]
        assert abs(int(third.headers["retry-after"]) - midnight) < 5
        assert trio(third, "tokens")[1] == 50 - 2 * USED


async def test_limits_per_model_or_alias_and_global(gateway_with: GatewayFactory) -> None:
    env = limited({"models": {"openai/echo": {"requests_per_minute": 2}}, "global": {"requests_per_minute": 3}})
    async with gateway_with(**env) as url, httpx.AsyncClient() as http:
        assert (await chat(http, url, "alice", body())).status_code == 200
        assert (await chat(http, url, "bob", body())).status_code == 200
        refused = await chat(http, url, "alice", body())  # the model's 2 are shared by every caller
        assert refused.status_code == 429 and "the model openai/echo" in refused.json()["error"]["message"]
        other = await chat(http, url, "alice", body(model="openai/other"))
        assert other.status_code == 200 and trio(other, "requests")[:2] == (3, 0)
        closed = await chat(http, url, "bob", body(model="openai/third"))
        assert closed.status_code == 429 and "this gateway" in closed.json()["error"]["message"]


async def test_two_processes_share_one_limit_through_redis(fake: FakeProviders) -> None:
    env = limited({"identities": {"alice": {"requests_per_minute": 3}, "bob": {"tokens_per_minute": 100}}})
    async with (
        redis_server() as redis,
        gateway_process(fake, **env, REDIS_URL=redis.url) as one,
        gateway_process(fake, **env, REDIS_URL=redis.url) as two,
        httpx.AsyncClient() as http,
    ):
        remaining = []
        for gateway in (one, two, one):
            response = await chat(http, gateway.url, "alice", body())
            assert response.status_code == 200
            remaining.append(trio(response, "requests")[1])
        assert remaining == [2, 1, 0]
        refused = await chat(http, two.url, "alice", body())
        assert refused.status_code == 429 and refused.json()["error"]["code"] == "rate_limit_exceeded"
        assert 19 <= int(refused.headers["retry-after"]) <= 20 and trio(refused, "requests")[:2] == (3, 0)

        asked = body(max_tokens=40)
        reserved = estimate(asked)
        started = time.monotonic()
        first = await chat(http, one.url, "bob", asked)
        assert trio(first, "tokens")[:2] == (100, 100 - reserved)
        second = await chat(http, two.url, "bob", asked)  # sees the first's settlement, made by the other
        refilled = (time.monotonic() - started) / 0.6 + 1
        assert 100 - USED - reserved <= trio(second, "tokens")[1] <= 100 - USED - reserved + refilled
        refused = await chat(http, one.url, "bob", body(max_tokens=70))
        assert refused.status_code == 429 and refused.json()["error"]["type"] == "tokens"

        ready = (await http.get(f"{two.url}/ready")).json()
        assert ready["checks"]["limits"] == {"store": "redis", "state": "ok"}


async def test_redis_down_fails_open(gateway_with: GatewayFactory, caplog: pytest.LogCaptureFixture) -> None:
    async with redis_server(password="redis-secret-7f3a9c") as redis:
        env = limited({"default": {"requests_per_minute": 100}}, REDIS_URL=redis.url)
        async with gateway_with(**env) as url, httpx.AsyncClient() as http:
            assert trio(await chat(http, url, "alice", body()), "requests")[1] == 99
            await redis.stop()
            with caplog.at_level("ERROR", logger="polyrelay"):
                response = await chat(http, url, "alice", body())
            assert response.status_code == 200  # served, unlimited, and said so in the log
            assert not [k for k in response.headers if k.startswith("x-ratelimit")]
            assert [r for r in caplog.records if "is unreachable" in r.message and "unlimited" in r.message]
            assert f"127.0.0.1:{redis.port}" in caplog.text and "redis-secret" not in caplog.text
            ready = await http.get(f"{url}/ready")
            assert ready.status_code == 200 and ready.json()["status"] == "ready"
            assert ready.json()["checks"]["limits"] == {"store": "redis", "state": "down, failing open"}

            await redis.start()  # same port, empty: the counters start again
            ready = await http.get(f"{url}/ready")
            assert ready.json()["checks"]["limits"]["state"] == "ok"
            assert trio(await chat(http, url, "alice", body()), "requests")[1] == 99


async def test_redis_down_fails_closed(gateway_with: GatewayFactory) -> None:
    async with redis_server() as redis:
        env = limited({"default": {"requests_per_minute": 100}}, REDIS_URL=redis.url, LIMITS_FAIL_MODE="closed")
        async with gateway_with(**env) as url, httpx.AsyncClient() as http:
            assert (await chat(http, url, "alice", body())).status_code == 200
            await redis.stop()
            refused = await chat(http, url, "alice", body())
            assert refused.status_code == 503 and refused.headers["retry-after"] == "1"
            assert refused.json()["error"]["code"] == "limits_unavailable"
            ready = await http.get(f"{url}/ready")
            assert ready.status_code == 503 and ready.json()["status"] == "limits_down"
            assert ready.json()["checks"]["limits"]["state"] == "down, failing closed"

            await redis.start()
            assert (await http.get(f"{url}/ready")).status_code == 200
            assert (await chat(http, url, "alice", body())).status_code == 200


async def test_concurrency_and_quota_in_redis(gateway_with: GatewayFactory) -> None:
    """The Lua scripts' other two counters: a slot held by a stream, and the daily sum settled."""
    async with redis_server() as redis:
        env = limited(
            {"identities": {"alice": {"concurrent_requests": 1}, "bob": {"tokens_per_day": 50}}}, REDIS_URL=redis.url
        )
        async with gateway_with(**env) as url, httpx.AsyncClient() as http:
            headers = {"Authorization": f"Bearer {KEYS['alice']}", "Content-Type": "application/json"}
            stream = body(model="openai/hang", stream=True)
            async with http.stream("POST", f"{url}/v1/chat/completions", content=stream, headers=headers) as held:
                events = held.aiter_bytes()  # kept: a dropped iterator would close the stream
                await anext(events)
                assert (await chat(http, url, "alice", body())).status_code == 429
            async with asyncio.timeout(5):
                while (response := await chat(http, url, "alice", body())).status_code == 429:
                    await asyncio.sleep(0.02)
            assert response.status_code == 200

            asked = body(max_tokens=1)
            reserved = estimate(asked)
            assert trio(await chat(http, url, "bob", asked), "tokens")[:2] == (50, 50 - reserved)
            assert trio(await chat(http, url, "bob", asked), "tokens")[1] == 50 - USED - reserved
            third = await chat(http, url, "bob", asked)
            assert third.status_code == 429 and third.json()["error"]["code"] == "insufficient_quota"
            assert trio(third, "tokens")[1] == 50 - 2 * USED


async def test_admissions_at_once_through_redis_each_get_their_own_verdict() -> None:
    """Scripts called while others are on the wire go to Redis together: each caller still gets
    the verdict of its own script, and a server that lost the scripts (flushed) is given them again."""
    async with redis_server() as redis:
        store = RedisStore(redis.url)
        limits = Limits(parse_limits('{"default": {"requests_per_minute": 40}}'), store, fail_open=False)
        alice = Identity("alice", "api_key")

        async def remaining() -> int:
            scope: dict[str, Any] = {"state": {"identity": alice}}
            await limits.admit(scope, {"model": "openai/echo"}, 0, "openai", "echo")
            return int(dict(scope["state"]["limits"].headers)[b"x-ratelimit-remaining-requests"])

        try:
            assert sorted(await asyncio.gather(*(remaining() for _ in range(20)))) == list(range(20, 40))
            flusher = aioredis.Redis.from_url(redis.url)
            await flusher.script_flush()
            await flusher.aclose()
            assert sorted(await asyncio.gather(*(remaining() for _ in range(20)))) == list(range(20))
            with pytest.raises(RateLimited):
                await remaining()
        finally:
            await store.close()


def test_the_config_files_limits_block(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        "limits:\n"
        "  fail_mode: closed\n"
        "  identity_claim: team\n"
        "  default: {requests_per_minute: 60, tokens_per_minute: 1000}\n"
        "  identities:\n"
        "    research: {tokens_per_minute: null, tokens_per_day: 5000}\n"
        "  models:\n"
        "    fast: {concurrent_requests: 2}\n"
    )
    settings = Settings.load({}, config)
    assert settings.limits_fail_mode == "closed" and settings.limits_identity_claim == "team"
    names = {c.key: c.limit for c in settings.limits.counters("research", ("fast", "groq/llama"))}
    assert names == {
        "id:research:requests_per_minute": 60,
        "id:research:tokens_per_day": 5000,
        "model:fast:concurrent_requests": 2,
    }
    assert {c.key for c in settings.limits.counters("someone", ())} == {
        "id:someone:requests_per_minute",
        "id:someone:tokens_per_minute",
    }
    # The environment's JSON wins over the file, as for every setting.
    assert not Settings.load({"LIMITS": "{}"}, config).limits


@pytest.mark.parametrize(
    ("env", "named"),
    [
        ({"LIMITS": '{"default": {"requests_per_hour": 5}}'}, "default.requests_per_hour is unknown"),
        ({"LIMITS": '{"models": {"fast": {"tokens_per_minute": 0}}}'}, "models.fast.tokens_per_minute must be"),
        ({"LIMITS": '{"callers": {}}'}, "unknown key 'callers'"),
        ({"LIMITS": "[1, 2]"}, "expected a mapping"),
        ({"LIMITS_FAIL_MODE": "maybe"}, "LIMITS_FAIL_MODE"),
        ({"REDIS_URL": "http://redis:6379"}, "REDIS_URL must be"),
    ],
)
def test_bad_limits_stop_start_up(env: dict[str, str], named: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(named)):
        Settings.load(env)


def test_callers_are_counted_by_the_configured_claim() -> None:
    limits = Limits(
        parse_limits('{"default": {"requests_per_minute": 1}}'), MemoryStore(), fail_open=True, claim="team"
    )

    def caller(identity: Identity | None) -> str:
        return limits.caller({"state": {"identity": identity}, "client": ("10.1.2.3", 5000)})

    assert caller(Identity("u1", "oidc", claims={"team": "research"})) == "research"
    assert caller(Identity("u2", "oidc", claims={"team": True})) == "u2"  # not a name: the subject
    assert caller(Identity("ci-bot", "api_key")) == "ci-bot"
    assert caller(None) == "address:10.1.2.3"


async def test_an_alias_has_limits_of_its_own(gateway_with: GatewayFactory, tmp_path: Path) -> None:
    routing = tmp_path / "routing.yaml"
    routing.write_text("models:\n  fast:\n    deployments:\n      - {provider: groq, model: llama-3.3-70b-versatile}\n")
    env = limited(
        {"models": {"fast": {"requests_per_minute": 1}}}, ROUTING_ENABLED="true", ROUTING_CONFIG_PATH=str(routing)
    )
    async with gateway_with(**env) as url, httpx.AsyncClient() as http:
        served = await chat(http, url, "alice", body(model="fast"))
        assert served.status_code == 200 and served.headers["x-selected-provider"] == "groq"
        refused = await chat(http, url, "bob", body(model="fast"))
        assert refused.status_code == 429 and "the model fast" in refused.json()["error"]["message"]
        direct = await chat(http, url, "bob", body(model="groq/llama-3.3-70b-versatile"))
        assert direct.status_code == 200 and "x-ratelimit-limit-requests" not in direct.headers


async def test_a_stream_is_settled_from_its_usage_event(gateway_with: GatewayFactory) -> None:
    env = limited({"default": {"tokens_per_day": 1000}})
    async with gateway_with(**env) as url:
        sdk = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=KEYS["alice"], max_retries=0)
        messages: Any = [{"role": "user", "content": "hi"}]
        raw = await sdk.chat.completions.with_raw_response.create(
            model="openai/echo", messages=messages, stream=True, stream_options={"include_usage": True}, max_tokens=300
        )
        reserved = 1000 - int(raw.headers["x-ratelimit-remaining-tokens"])
        assert reserved > 300  # the prompt's estimate and max_tokens, held while it streams
        chunks = [chunk async for chunk in raw.parse()]
        assert chunks[-1].usage is not None and chunks[-1].usage.total_tokens == USED
        async with httpx.AsyncClient() as http:
            after = await chat(http, url, "alice", body())
        assert trio(after, "tokens")[1] == 1000 - USED - estimate(body())  # 18 charged, not the reservation


async def test_a_cap_on_calls_in_flight_to_a_provider(gateway_with: GatewayFactory, tmp_path: Path) -> None:
    routing = tmp_path / "routing.yaml"
    routing.write_text(
        "models:\n  pool:\n    deployments:\n"
        "      - {provider: groq, model: echo}\n      - {provider: openai, model: echo}\n"
    )
    env = {
        "GROQ_MAX_IN_FLIGHT": "1",
        "UPSTREAM_RETRIES": "2",
        "ROUTING_ENABLED": "true",
        "ROUTING_CONFIG_PATH": str(routing),
    }
    async with gateway_with(**env) as url, httpx.AsyncClient() as http:
        headers = {"Content-Type": "application/json"}

        async def ask(content: bytes) -> httpx.Response:
            return await http.post(f"{url}/v1/chat/completions", content=content, headers=headers)

        # Errors, retried ones included, give their slot back.
        assert (await ask(body(model="groq/error-400"))).status_code == 400
        assert (await ask(body(model="groq/error-503"))).status_code == 503
        stream = body(model="groq/hang", stream=True)
        async with http.stream("POST", f"{url}/v1/chat/completions", content=stream, headers=headers) as held:
            events = held.aiter_bytes()  # kept: a dropped iterator would close the stream
            await anext(events)
            full = await ask(body(model="groq/echo"))
            assert full.status_code == 503 and full.headers["retry-after"] == "1"
            error = full.json()["error"]
            assert error["code"] == "upstream_capacity" and "GROQ_MAX_IN_FLIGHT" in error["message"]
            assert (await ask(body(model="openai/echo"))).status_code == 200  # other providers: no cap
            covered = await ask(body(model="pool"))  # the alias's next deployment serves at once
            assert covered.status_code == 200 and covered.headers["x-selected-provider"] == "openai"
        async with asyncio.timeout(5):
            while (response := await ask(body(model="groq/echo"))).status_code == 503:
                await asyncio.sleep(0.02)
        assert response.status_code == 200
        for _ in range(3):
            assert (await ask(body(model="groq/echo", stream=True))).status_code == 200
            assert (await ask(body(model="groq/echo"))).status_code == 200


OPENAI_LIMITED = {
    "x-ratelimit-limit-requests": "500",
    "x-ratelimit-remaining-requests": "0",
    "x-ratelimit-reset-requests": "120ms",
    "x-ratelimit-limit-tokens": "30000",
    "x-ratelimit-remaining-tokens": "29000",
    "x-ratelimit-reset-tokens": "2s",
    "retry-after": "20",
}


async def test_a_providers_own_429_is_relayed_with_its_rate_limit_headers(gateway_with: GatewayFactory) -> None:
    """OpenAI's own refusal, as its API sends it: the caller sees its status, message and headers,
    after the retries gave up (Retry-After beyond UPSTREAM_RETRY_AFTER_MAX), and not ours on top."""

    async def refuse(request: web.Request) -> web.Response:
        error = {"message": "Rate limit reached for gpt-4o on requests per min (RPM)", "type": "requests"}
        return web.json_response(
            {"error": {**error, "code": "rate_limit_exceeded", "param": None}}, status=429, headers=OPENAI_LIMITED
        )

    app = web.Application()
    app.router.add_post("/v1/chat/completions", refuse)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    env = limited(
        {"default": {"requests_per_minute": 50}},
        OPENAI_API_URL=f"http://127.0.0.1:{port}/v1",
        UPSTREAM_RETRIES="2",
        UPSTREAM_RETRY_AFTER_MAX="1s",
    )
    try:
        async with gateway_with(**env) as url, httpx.AsyncClient() as http:
            refused = await chat(http, url, "alice", body(model="openai/gpt-4o"))
            assert refused.status_code == 429
            assert {k: refused.headers.get_list(k) for k in OPENAI_LIMITED} == {
                k: [v] for k, v in OPENAI_LIMITED.items()
            }
            assert refused.json()["error"]["code"] == "rate_limit_exceeded"
            served = await chat(http, url, "alice", body(model="groq/echo"))
            assert trio(served, "requests")[:2] == (50, 48)  # the refused call counted as a request
    finally:
        await runner.cleanup()


def test_anthropics_rate_limit_headers_in_openais_names() -> None:
    soon = (datetime.now(UTC) + timedelta(seconds=30)).isoformat().replace("+00:00", "Z")
    relayed = rate_limit_headers(
        CIMultiDict(
            {
                "Anthropic-RateLimit-Requests-Limit": "50",
                "anthropic-ratelimit-requests-remaining": "0",
                "anthropic-ratelimit-requests-reset": soon,
                "anthropic-ratelimit-tokens-limit": "40000",
            }
        )
    )
    reset = relayed.pop("x-ratelimit-reset-requests")
    assert relayed == {
        "x-ratelimit-limit-requests": "50",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-limit-tokens": "40000",
    }
    assert 28 <= seconds(reset) <= 30


async def test_one_callers_limit_counts_on_every_model_route(gateway_with: GatewayFactory) -> None:
    """Chat, embeddings, the Responses API and Anthropic's Messages API take from the same counters;
    a refusal on /v1/messages comes in Anthropic's envelope, which its SDK reads as a rate limit."""
    async with gateway_with(**limited({"default": {"requests_per_minute": 4}})) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=KEYS["alice"], max_retries=0)
        messages: Any = [{"role": "user", "content": "hi"}]
        chat = await client.chat.completions.with_raw_response.create(model="openai/echo", messages=messages)
        embedded = await client.embeddings.with_raw_response.create(model="openai/text-embedding-3-small", input="x")
        answered = await client.responses.with_raw_response.create(model="openai/echo", input="hi")
        claude = anthropic.AsyncAnthropic(base_url=url, api_key=KEYS["alice"], max_retries=0)
        message = await claude.messages.with_raw_response.create(
            model="anthropic/claude-sonnet-4-5", max_tokens=16, messages=messages
        )
        left = [int(r.headers["x-ratelimit-remaining-requests"]) for r in (chat, embedded, answered, message)]
        assert left == [3, 2, 1, 0]
        with pytest.raises(anthropic.RateLimitError) as refused:
            await claude.messages.create(model="anthropic/claude-sonnet-4-5", max_tokens=16, messages=messages)
        assert refused.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
        assert "4 requests per minute" in refused.value.message
        assert 14 <= int(refused.value.response.headers["retry-after"]) <= 15
        with pytest.raises(openai.RateLimitError):
            await client.responses.create(model="openai/echo", input="hi")


async def test_the_relayed_routes_take_from_the_same_counters(gateway_with: GatewayFactory) -> None:
    """Completions, moderations and audio uploads are admitted like chat (an upload reserves no
    tokens for its audio)."""
    async with gateway_with(**limited({"default": {"requests_per_minute": 3}})) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=KEYS["alice"], max_retries=0)
        completed = await client.completions.with_raw_response.create(
            model="openai/gpt-3.5-turbo-instruct", prompt="hi"
        )
        moderated = await client.moderations.with_raw_response.create(model="openai/omni-moderation-latest", input="hi")
        heard = await client.audio.transcriptions.with_raw_response.create(
            model="openai/whisper-1", file=("a.wav", b"RIFF0000WAVEfmt ", "audio/wav")
        )
        left = [int(r.headers["x-ratelimit-remaining-requests"]) for r in (completed, moderated, heard)]
        assert left == [2, 1, 0]
        with pytest.raises(openai.RateLimitError):
            await client.completions.create(model="openai/gpt-3.5-turbo-instruct", prompt="hi")
