"""Gateway resources' data planes: a real gateway on loopback with GATEWAYS_ENABLED, gateways applied to
its runtime (what the reconciler does), called with the openai SDK at their endpoints."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote

import anthropic
import httpx
import openai
import pytest

from gateway import Settings, SettingsError, create_app
from gateway.gateways.runtime import GatewayRuntime
from gateway.gateways.spec import GatewaySpec, GatewayUnavailable, WandbAuth
from gateway.gateways.zones import provider_zones

from .data_planes import serve_gateways
from .fake_wandb import FakeWandb
from .fakes import FakeProviders, fake_key

HELLO = [{"role": "user", "content": "hello there friend"}]
CALLER_KEY = "pr-caller-key-0123456789abcdef"


@asynccontextmanager
async def gateways(fake: FakeProviders, **env: str) -> AsyncIterator[tuple[str, GatewayRuntime]]:
    """A gateway with gateway resources on, on a free port (its own address makes the endpoints)."""
    async with serve_gateways(fake, **env) as served:
        yield served.url, served.runtime


def spec(**fields: Any) -> GatewaySpec:
    return GatewaySpec(id=str(uuid.uuid4()), name="team", organization_id="org-1", **fields)


def sdk(base_url: str, api_key: str = "not-checked", **options: Any) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url, api_key=api_key, max_retries=0, **options)


async def test_a_header_routed_gateway_serves_chat_and_streams_at_its_endpoint(
    fake: FakeProviders, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with gateways(fake) as (url, runtime):
        gateway = spec(routing="header", header_name="X-Target-Model")
        endpoints = await runtime.apply(gateway)
        assert endpoints == (f"{url}/gateways/{gateway.id}/v1",)
        client = sdk(endpoints[0], default_headers={"X-Target-Model": "openai/gpt-4o"})
        # The header names the model; the body's (the SDK requires one) is not the one used.
        answer = await client.chat.completions.create(model="mistral/unused", messages=HELLO)  # type: ignore[arg-type]
        assert answer.choices[0].message.content == "You said: hello there friend"
        assert fake.last_post("openai").json["model"] == "gpt-4o"
        stream = await client.chat.completions.create(model="x", messages=HELLO, stream=True)  # type: ignore[arg-type]
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "You said: hello there friend"
        # The request log names the path the client called.
        assert f"POST /gateways/{gateway.id}/v1/chat/completions 200" in caplog.text
        # The default gateway keeps its body routing: the same header changes nothing there.
        default = sdk(f"{url}/v1", default_headers={"X-Target-Model": "openai/gpt-4o"})
        await default.chat.completions.create(model="mistral/mistral-small", messages=HELLO)  # type: ignore[arg-type]
        assert fake.last_post("mistral").json["model"] == "mistral-small"


async def test_path_and_body_routed_gateways(fake: FakeProviders) -> None:
    async with gateways(fake) as (_url, runtime):
        by_path = spec(routing="path")
        (endpoint,) = await runtime.apply(by_path)
        base = endpoint.removesuffix("/v1") + "/" + quote("openai/gpt-4o-mini", safe="") + "/v1"
        answer = await sdk(base).chat.completions.create(model="ignored", messages=HELLO)  # type: ignore[arg-type]
        assert answer.choices[0].message.content == "You said: hello there friend"
        assert fake.last_post("openai").json["model"] == "gpt-4o-mini"
        by_body = spec(routing="body")
        (endpoint,) = await runtime.apply(by_body)
        await sdk(endpoint).chat.completions.create(model="mistral/mistral-large", messages=HELLO)  # type: ignore[arg-type]
        assert fake.last_post("mistral").json["model"] == "mistral-large"
        # The body-routed gateway has no path routes, like a default gateway with body routing.
        with pytest.raises(openai.NotFoundError):
            await sdk(base.replace(by_path.id, by_body.id)).chat.completions.create(model="x", messages=HELLO)  # type: ignore[arg-type]
        models = await sdk(endpoint).models.list()
        assert "openai/model-a" in {m.id for m in models.data}


async def test_an_unknown_gateway_is_a_404_in_openais_envelope(fake: FakeProviders) -> None:
    async with gateways(fake) as (url, _):
        with pytest.raises(openai.NotFoundError) as caught:
            await sdk(f"{url}/gateways/{uuid.uuid4()}/v1").chat.completions.create(model="openai/x", messages=HELLO)  # type: ignore[arg-type]
        assert caught.value.code == "gateway_not_found"
        assert "does not exist or was deleted" in caught.value.message


async def test_without_gateways_enabled_there_is_no_dispatch(fake: FakeProviders) -> None:
    settings = Settings.load(fake.env())
    app = create_app(settings)
    assert app.state.gateways is None
    assert all(m.cls.__name__ != "Dispatch" for m in app.user_middleware)  # type: ignore[attr-defined]


async def test_an_extra_host_serves_v1_directly_and_belongs_to_one_gateway(fake: FakeProviders) -> None:
    async with gateways(fake) as (url, runtime):
        gateway = spec(routing="header", header_name="X-Model", additional_dns=("team.example.com",))
        endpoints = await runtime.apply(gateway)
        port = url.rsplit(":", 1)[1]
        assert endpoints[1] == f"http://team.example.com:{port}/v1"
        async with httpx.AsyncClient(base_url=url) as http:
            body = {"model": "mistral/unused", "messages": HELLO}
            # Host matched in any case, its port ignored: the gateway's header routing applies.
            headers = {"Host": "Team.Example.COM:443", "X-Model": "openai/gpt-4o"}
            answered = await http.post("/v1/chat/completions", json=body, headers=headers)
            assert answered.status_code == 200, answered.text
            assert fake.last_post("openai").json["model"] == "gpt-4o"
            # Any other host is the default gateway (body routing).
            answered = await http.post("/v1/chat/completions", json=body, headers={"X-Model": "openai/gpt-4o"})
            assert answered.status_code == 200
            assert fake.last_post("mistral").json["model"] == "unused"
        # Re-applying keeps the host; another gateway claiming it fails for good.
        await runtime.apply(gateway)
        with pytest.raises(ValueError, match=r"team\.example\.com is already served by gateway"):
            await runtime.apply(spec(additional_dns=("team.example.com",)))
        await runtime.remove(gateway.id)
        await runtime.apply(spec(additional_dns=("team.example.com",)))  # free once it is gone


async def test_an_eu_only_gateway_routes_only_to_eu_providers(fake: FakeProviders) -> None:
    async with gateways(fake) as (_url, runtime):
        assert runtime.zones() == ("eu-west", "us-east")
        (endpoint,) = await runtime.apply(spec(zones=("eu-west",)))
        client = sdk(endpoint)
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model="openai/gpt-4o", messages=HELLO)  # type: ignore[arg-type]
        assert caught.value.code == "provider_outside_zones"
        assert caught.value.response.json()["error"]["message"] == (
            "Provider 'openai' is outside this gateway's zones (eu-west): it is in zone 'us-east'. "
            "Providers this gateway routes to: mistral."
        )
        with pytest.raises(openai.BadRequestError, match="it is in no zone"):
            await client.chat.completions.create(model="groq/llama", messages=HELLO)  # type: ignore[arg-type]
        answer = await client.chat.completions.create(model="mistral/mistral-small", messages=HELLO)  # type: ignore[arg-type]
        assert answer.choices[0].message.content == "You said: hello there friend"
        listed = {m.id for m in (await client.models.list()).data}
        assert listed == {"mistral/model-a", "mistral/model-b"}
        # The raw proxy holds to the zones too.
        async with httpx.AsyncClient() as http:
            proxied = await http.get(endpoint.removesuffix("/v1") + "/proxy/openai/v1/models")
        assert proxied.status_code == 400
        assert proxied.json()["error"]["code"] == "provider_outside_zones"


async def test_apply_swaps_while_a_stream_finishes_on_the_old_plane(fake: FakeProviders) -> None:
    async with gateways(fake) as (_url, runtime):
        gateway = spec()
        (endpoint,) = await runtime.apply(gateway)
        client = sdk(endpoint)
        stream = await client.chat.completions.create(model="openai/paced", messages=HELLO, stream=True)  # type: ignore[arg-type]
        chunks = aiter(stream)
        first = await anext(chunks)
        old = runtime.table.by_id[gateway.id]
        assert old.in_flight == 1
        # The same gateway, now EU-only: new requests see the new plane at once.
        await runtime.apply(GatewaySpec(**{**_fields(gateway), "zones": ("eu-west",)}))
        assert runtime.table.by_id[gateway.id] is not old
        with pytest.raises(openai.BadRequestError, match="outside this gateway's zones"):
            await client.chat.completions.create(model="openai/gpt-4o", messages=HELLO)  # type: ignore[arg-type]
        rest = [c async for c in chunks]
        text = "".join(c.choices[0].delta.content or "" for c in [first, *rest] if c.choices)
        assert text == "You said: hello there friend"
        assert rest[-1].choices[0].finish_reason == "stop"
        for _ in range(100):
            if old.closing and not old.in_flight:
                break
            await asyncio.sleep(0.01)
        assert old.closing and old.in_flight == 0


async def test_remove_refuses_new_requests_at_once_and_waits_for_those_in_flight(fake: FakeProviders) -> None:
    async with gateways(fake) as (_url, runtime):
        gateway = spec()
        (endpoint,) = await runtime.apply(gateway)
        client = sdk(endpoint)
        stream = await client.chat.completions.create(model="openai/paced", messages=HELLO, stream=True)  # type: ignore[arg-type]
        chunks = aiter(stream)
        await anext(chunks)
        removal = asyncio.create_task(runtime.remove(gateway.id))
        await asyncio.sleep(0.05)
        with pytest.raises(openai.NotFoundError):
            await client.chat.completions.create(model="openai/gpt-4o", messages=HELLO)  # type: ignore[arg-type]
        assert not removal.done()  # still waiting on the stream
        rest = [c async for c in chunks]
        assert rest[-1].choices[0].finish_reason == "stop"
        await asyncio.wait_for(removal, 2)
        await runtime.remove(gateway.id)  # unknown now: nothing to do


async def test_remove_cuts_a_stream_still_open_at_the_drain_deadline(fake: FakeProviders) -> None:
    async with gateways(fake, SERVER_DRAIN_TIMEOUT="0.3s") as (_url, runtime):
        gateway = spec()
        (endpoint,) = await runtime.apply(gateway)
        async with httpx.AsyncClient() as http:
            body = {"model": "openai/hang", "messages": HELLO, "stream": True}
            async with http.stream("POST", f"{endpoint}/chat/completions", json=body) as answer:
                lines = aiter(answer.aiter_lines())
                assert (await anext(lines)).startswith("data: ")
                await asyncio.wait_for(runtime.remove(gateway.id), 5)
                rest = [line async for line in lines if line]
        # The stream's client learns the answer was cut: an error event, then the end.
        assert rest[-1] == "data: [DONE]"
        assert '"code":"shutting_down"' in rest[-2]


async def test_coreweave_auth_takes_the_process_credentials_and_none_reaches_a_provider(
    fake: FakeProviders, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="polyrelay")
    digest = hashlib.sha256(CALLER_KEY.encode()).hexdigest()
    async with gateways(fake, AUTH_ENABLED="true", AUTH_API_KEYS=f"team:{digest}") as (_url, runtime):
        (endpoint,) = await runtime.apply(spec(auth="coreweave"))
        with pytest.raises(openai.AuthenticationError):
            await sdk(endpoint, api_key="wrong-key").chat.completions.create(model="openai/gpt-4o", messages=HELLO)  # type: ignore[arg-type]
        async with httpx.AsyncClient() as http:
            answer = await http.post(
                f"{endpoint}/chat/completions",
                json={"model": "openai/leak", "messages": HELLO},
                headers={"Authorization": f"Bearer {CALLER_KEY}"},
            )
        assert answer.status_code == 200
        seen = fake.last_post("openai")
        assert seen.headers["authorization"] == f"Bearer {fake_key('openai')}"  # the provider's key, only
        assert CALLER_KEY not in repr(seen.headers) and CALLER_KEY.encode() not in seen.body
        received = answer.content + repr(answer.headers).encode()
        assert fake_key("openai").encode() not in received  # the fake quoted it; the gateway masked it
    assert CALLER_KEY not in caplog.text and fake_key("openai") not in caplog.text


async def test_a_wandb_gateway_admits_wandb_keys_limits_per_entity_and_reports_usage(fake: FakeProviders) -> None:
    wandb = FakeWandb()
    await wandb.start()
    wandb.add_user("a" * 40, "ml-team")
    wandb.add_user("b" * 40, "other-team")
    wandb.add_user("c" * 40, "gateway-owner")
    auth = WandbAuth("c" * 40, wandb.url, enable_usage_reports=True, enable_rate_limiting=True)
    limits = '{"default": {"requests_per_minute": 2}}'
    try:
        async with gateways(fake, LIMITS=limits) as (url, runtime):
            gateway = spec(auth="wandb", wandb=auth, routing="header", header_name="X-Model", zones=("eu-west",))
            (endpoint,) = await runtime.apply(gateway)
            team = sdk(endpoint, api_key="a" * 40, default_headers={"X-Model": "mistral/mistral-small"})
            for _ in range(2):
                await team.chat.completions.create(model="x", messages=HELLO)  # type: ignore[arg-type]
                seen = fake.last_post("mistral")
                assert seen.headers["authorization"] == f"Bearer {fake_key('mistral')}"
                assert "a" * 40 not in repr(seen.headers)
            with pytest.raises(openai.RateLimitError):  # two a minute, per W&B entity
                await team.chat.completions.create(model="x", messages=HELLO)  # type: ignore[arg-type]
            other = sdk(endpoint, api_key="b" * 40, default_headers={"X-Model": "mistral/mistral-small"})
            await other.chat.completions.create(model="x", messages=HELLO)  # type: ignore[arg-type]
            with pytest.raises(openai.AuthenticationError):
                await sdk(endpoint, api_key="d" * 40).chat.completions.create(model="mistral/x", messages=HELLO)  # type: ignore[arg-type]
            # The default gateway counts its own callers (here by address): the W&B gateway's count nothing there.
            default = sdk(f"{url}/v1")
            for _ in range(2):
                await default.chat.completions.create(model="mistral/mistral-small", messages=HELLO)  # type: ignore[arg-type]
            await runtime.remove(gateway.id)  # the queued usage is sent as the gateway closes
        entities = sorted(r["entity"] for r in wandb.records)
        assert entities == ["ml-team", "ml-team", "other-team"]
        assert {(r["gateway_id"], r["provider"], r["total_tokens"]) for r in wandb.records} == {
            (gateway.id, "mistral", 18)
        }
    finally:
        await wandb.stop()


async def test_a_wandb_gateway_waits_for_its_server(fake: FakeProviders) -> None:
    wandb = FakeWandb()
    await wandb.start()
    url = wandb.url
    await wandb.stop()
    async with gateways(fake) as (_, runtime):
        gateway = spec(auth="wandb", wandb=WandbAuth("c" * 40, url))
        with pytest.raises(GatewayUnavailable) as caught:
            await runtime.apply(gateway)
        assert caught.value.reason == "AuthServerUnreachable"
        assert gateway.id not in runtime.table.by_id


def _fields(gateway: GatewaySpec) -> dict[str, Any]:
    return {name: getattr(gateway, name) for name in GatewaySpec.__dataclass_fields__}


def test_a_provider_zone_comes_from_its_entry_the_environment_or_the_config_file(tmp_path: Path) -> None:
    registry = tmp_path / "providers.yaml"
    registry.write_text(
        "providers:\n"
        "  openai: {url: 'https://api.openai.com/v1', zone: US-East}\n"
        "  mistral: {url: 'https://api.mistral.ai/v1'}\n"
    )
    env = {"PROVIDERS_REGISTRY": str(registry), "OPENAI_API_KEY": "k", "MISTRAL_API_KEY": "k"}
    assert Settings.load(env).providers["openai"].zone == "us-east"
    assert Settings.load(env).providers["mistral"].zone == ""
    assert Settings.load({**env, "OPENAI_ZONE": "EU-West"}).providers["openai"].zone == "eu-west"
    config = tmp_path / "gateway.yaml"
    config.write_text("providers:\n  mistral: {zone: eu-west}\n")
    settings = Settings.load(env, config)
    assert settings.providers["mistral"].zone == "eu-west"
    assert provider_zones(settings.providers) == ("eu-west", "us-east")
    config.write_text("providers:\n  mistral: {region: eu-west}\n")
    with pytest.raises(SettingsError, match=r"providers\.mistral\.region is unknown; use api_url, api_key or zone"):
        Settings.load(env, config)


async def test_anthropics_sdk_speaks_messages_to_a_gateway_and_hears_its_envelope(fake: FakeProviders) -> None:
    async with gateways(fake) as (url, runtime):
        gateway = spec(zones=("eu-west",))
        await runtime.apply(gateway)
        claude = anthropic.AsyncAnthropic(base_url=f"{url}/gateways/{gateway.id}", api_key="-", max_retries=0)
        message = await claude.messages.create(
            model="mistral/mistral-small", max_tokens=64, messages=[{"role": "user", "content": "hello there friend"}]
        )
        assert message.content[0].type == "text" and message.content[0].text == "You said: hello there friend"
        with pytest.raises(anthropic.BadRequestError, match="outside this gateway's zones"):
            await claude.messages.create(
                model="openai/gpt-4o", max_tokens=64, messages=[{"role": "user", "content": "x"}]
            )
        gone = anthropic.AsyncAnthropic(base_url=f"{url}/gateways/{uuid.uuid4()}", api_key="-", max_retries=0)
        with pytest.raises(anthropic.NotFoundError) as caught:
            await gone.messages.create(model="mistral/x", max_tokens=64, messages=[{"role": "user", "content": "x"}])
        assert caught.value.body == {
            "type": "error",
            "error": {"type": "not_found_error", "message": caught.value.body["error"]["message"]},  # type: ignore[index]
        }
