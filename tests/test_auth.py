"""Authentication against a real OIDC issuer on loopback, static API keys, and every attack refused."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import pytest
import pytest_asyncio
from joserfc.jwk import RSAKey

from gateway.settings import Settings, SettingsError

from .conftest import GatewayFactory
from .fakes import FakeProviders
from .issuer import AUDIENCE, Issuer

HELLO = [{"role": "user", "content": "hi"}]
SERVICE_KEY = "pr-service-key-0123456789"
LIMITED_KEY = "pr-limited-key-9876543210"


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@pytest_asyncio.fixture(scope="module")
async def issuer() -> AsyncIterator[Issuer]:
    server = Issuer()
    await server.start()
    yield server
    await server.stop()


def auth_env(issuer: Issuer, **extra: str) -> dict[str, str]:
    return {
        "AUTH_ENABLED": "true",
        "AUTH_OIDC_ISSUER": issuer.url,
        "AUTH_OIDC_CLIENT_ID": AUDIENCE,
        "AUTH_API_KEYS": f"service:{sha(SERVICE_KEY)},limited:{sha(LIMITED_KEY)}:openai/echo|tool",
        **extra,
    }


async def ready(url: str, token: str) -> None:
    """Wait for the gateway's background discovery to load the keys."""
    async with httpx.AsyncClient() as http:
        for _ in range(200):
            response = await http.get(f"{url}/v1/models?provider=openai", headers={"Authorization": f"Bearer {token}"})
            if response.status_code != 503:
                return
            await asyncio.sleep(0.02)
    raise AssertionError("the gateway never loaded the issuer's keys")


@pytest_asyncio.fixture(scope="module")
async def secured(gateway_with: GatewayFactory, issuer: Issuer) -> AsyncIterator[str]:
    async with gateway_with(**auth_env(issuer)) as url:
        await ready(url, issuer.token())
        yield url


async def call(
    url: str, authorization: str | list[str] | None, path: str = "/v1/models?provider=openai"
) -> httpx.Response:
    headers: list[tuple[str, str]] = []
    if isinstance(authorization, str):
        headers.append(("Authorization", authorization))
    elif authorization:
        headers += [("Authorization", value) for value in authorization]
    async with httpx.AsyncClient() as http:
        return await http.get(f"{url}{path}", headers=headers)


def assert_refused(response: httpx.Response, contains: str = "") -> None:
    assert response.status_code == 401, response.text
    assert response.headers["www-authenticate"].startswith("Bearer")
    error = response.json()["error"]
    assert error["type"] == "authentication_error" and contains in error["message"]


# -- accepted ------------------------------------------------------------------------------------


async def test_valid_rs256_and_es256_tokens_are_accepted(secured: str, issuer: Issuer) -> None:
    for key in (issuer.rsa, issuer.ec):
        response = await call(secured, f"Bearer {issuer.token(key)}")
        assert response.status_code == 200, response.text


async def test_the_openai_sdk_with_a_token(secured: str, issuer: Issuer) -> None:
    client = openai.AsyncOpenAI(base_url=f"{secured}/v1", api_key=issuer.token(), max_retries=0)
    answer = await client.chat.completions.create(model="openai/echo", messages=HELLO)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "You said: hi"


async def test_health_needs_no_credential(secured: str) -> None:
    assert (await call(secured, None, "/health")).status_code == 200


async def test_api_keys_are_accepted(secured: str) -> None:
    assert (await call(secured, f"Bearer {SERVICE_KEY}")).status_code == 200
    assert_refused(await call(secured, f"Bearer {SERVICE_KEY}x"))


# -- refused -------------------------------------------------------------------------------------


def forged(issuer: Issuer, header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    now = int(time.time())
    payload = {"iss": issuer.url, "aud": AUDIENCE, "sub": "mallory", "exp": now + 60, **claims}
    return f"{b64(json.dumps(header).encode())}.{b64(json.dumps(payload).encode())}.{b64(signature)}"


async def test_alg_none(secured: str, issuer: Issuer) -> None:
    assert_refused(await call(secured, f"Bearer {forged(issuer, {'alg': 'none', 'kid': 'rsa-1'}, {})}"), "algorithm")


async def test_hs256_signed_with_the_public_key(secured: str, issuer: Issuer) -> None:
    public_pem = issuer.rsa.as_pem(private=False)
    unsigned = forged(issuer, {"alg": "HS256", "kid": "rsa-1", "typ": "JWT"}, {}).rsplit(".", 1)[0]
    signature = hmac.new(public_pem, unsigned.encode(), hashlib.sha256).digest()
    assert_refused(await call(secured, f"Bearer {unsigned}.{b64(signature)}"), "algorithm")


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"exp": int(time.time()) - 3600}, "expired"),
        ({"nbf": int(time.time()) + 3600}, ""),
        ({"exp": None}, "exp"),
        ({"iss": "https://evil.example"}, "iss"),
        ({"aud": "some-other-client"}, "aud"),
    ],
    ids=["expired", "not-yet-valid", "missing-exp", "wrong-issuer", "wrong-audience"],
)
async def test_bad_claims(secured: str, issuer: Issuer, claims: dict[str, Any], reason: str) -> None:
    assert_refused(await call(secured, f"Bearer {issuer.token(**claims)}"), reason)


async def test_unknown_kid_refetches_at_most_once_per_interval(secured: str, issuer: Issuer) -> None:
    stranger = RSAKey.generate_key(2048, parameters={"kid": "never-published"})
    before = issuer.jwks_fetches
    for _ in range(3):
        results = await asyncio.gather(*(call(secured, f"Bearer {issuer.token(stranger)}") for _ in range(5)))
        for response in results:
            assert_refused(response, "does not publish")
    assert issuer.jwks_fetches - before <= 1  # one shared fetch at most, then the interval holds


async def test_a_key_the_issuer_never_published(secured: str, issuer: Issuer) -> None:
    impostor = RSAKey.generate_key(2048, parameters={"kid": issuer.rsa.kid})  # the right kid, the wrong key
    assert_refused(await call(secured, f"Bearer {issuer.token(impostor)}"), "signature")


async def test_tampered_payload(secured: str, issuer: Issuer) -> None:
    header, _, signature = issuer.token().split(".")
    payload = b64(json.dumps({"iss": issuer.url, "aud": AUDIENCE, "sub": "admin", "exp": 9999999999}).encode())
    assert_refused(await call(secured, f"Bearer {header}.{payload}.{signature}"), "signature")


async def test_tampered_header(secured: str, issuer: Issuer) -> None:
    _, payload, signature = issuer.token().split(".")
    header = b64(json.dumps({"alg": "RS256", "kid": "rsa-1", "typ": "JOSE"}).encode())
    assert_refused(await call(secured, f"Bearer {header}.{payload}.{signature}"), "signature")


async def test_oversized_token(secured: str, issuer: Issuer) -> None:
    assert_refused(await call(secured, f"Bearer {issuer.token(padding='x' * 9000)}"), "8 KiB")


@pytest.mark.parametrize(
    ("authorization", "contains"),
    [
        (None, "Authentication is required"),
        ("{token}", "Bearer scheme"),
        ("Basic {token}", "Bearer scheme"),
        ("Bearer", "empty"),
        ("Bearer not.a.jwt", "not valid"),
        ("Bearer garbage", "not valid"),
        (["Bearer {token}", "Bearer {token}"], "one Authorization header"),
    ],
    ids=["missing", "no-bearer-prefix", "basic", "empty", "garbage-dots", "garbage", "two-headers"],
)
async def test_malformed_credentials(secured: str, issuer: Issuer, authorization: Any, contains: str) -> None:
    token = issuer.token()
    if isinstance(authorization, str):
        authorization = authorization.format(token=token)
    elif isinstance(authorization, list):
        authorization = [a.format(token=token) for a in authorization]
    assert_refused(await call(secured, authorization), contains)


async def test_rotation_is_picked_up(gateway_with: GatewayFactory, issuer: Issuer) -> None:
    async with gateway_with(**auth_env(issuer, AUTH_OIDC_JWKS_REFRESH_INTERVAL="0s")) as url:
        await ready(url, issuer.token())
        old = issuer.rsa
        new = issuer.rotate()
        try:
            assert (await call(url, f"Bearer {issuer.token(new)}")).status_code == 200
            assert_refused(await call(url, f"Bearer {issuer.token(old)}"), "does not publish")  # withdrawn
        finally:
            issuer.published = [old, issuer.ec]


async def test_discovery_failure_is_503_then_recovers(gateway_with: GatewayFactory, issuer: Issuer) -> None:
    issuer.down = True
    try:
        async with gateway_with(**auth_env(issuer, AUTH_OIDC_RETRY_INTERVAL="100ms")) as url:
            waiting = await call(url, f"Bearer {issuer.token()}")
            assert waiting.status_code == 503 and waiting.headers["retry-after"]
            assert (await call(url, f"Bearer {SERVICE_KEY}")).status_code == 200  # keys need no issuer
            issuer.down = False
            await ready(url, issuer.token())
            assert (await call(url, f"Bearer {issuer.token()}")).status_code == 200
    finally:
        issuer.down = False


async def test_a_withdrawn_key_stops_verifying_within_the_refresh_interval(
    gateway_with: GatewayFactory, issuer: Issuer
) -> None:
    """Every token names a known kid, so nothing but the periodic refresh can notice the withdrawal."""
    async with gateway_with(**auth_env(issuer, AUTH_OIDC_JWKS_REFRESH_INTERVAL="200ms")) as url:
        await ready(url, issuer.token())
        token = issuer.token(issuer.rsa)
        assert (await call(url, f"Bearer {token}")).status_code == 200
        issuer.withdraw(issuer.rsa)
        try:
            withdrawn_at = time.monotonic()
            for _ in range(100):
                response = await call(url, f"Bearer {token}")
                if response.status_code != 200:
                    break
                await asyncio.sleep(0.02)
            took = time.monotonic() - withdrawn_at
            assert_refused(response, "does not publish")
            assert took < 1.0, f"refused only after {took:.2f}s"
            assert (await call(url, f"Bearer {issuer.token(issuer.ec)}")).status_code == 200
        finally:
            issuer.published = [issuer.rsa, issuer.ec]


async def test_a_failed_refresh_keeps_the_keys_and_warns(
    gateway_with: GatewayFactory, issuer: Issuer, caplog: pytest.LogCaptureFixture
) -> None:
    def refreshers() -> int:  # the gateways run in this process: their background tasks are visible here
        return sum(1 for t in asyncio.all_tasks() if t.get_coro().__qualname__ == "OIDCVerifier._run")  # type: ignore[union-attr]

    elsewhere = refreshers()  # other tests' gateways still serving
    async with gateway_with(**auth_env(issuer, AUTH_OIDC_JWKS_REFRESH_INTERVAL="100ms")) as url:
        await ready(url, issuer.token())
        with caplog.at_level("WARNING", logger="polyrelay"):
            issuer.jwks_down = True
            try:
                before = issuer.jwks_fetches
                for _ in range(100):
                    if issuer.jwks_fetches - before >= 2:
                        break
                    await asyncio.sleep(0.02)
                assert issuer.jwks_fetches - before >= 2, "the JWKS was not refreshed periodically"
                # Waiting costs one sleeping task, not a loop: a failing issuer is asked once per interval.
                assert refreshers() == elsewhere + 1
                counted = issuer.jwks_fetches
                await asyncio.sleep(0.3)
                assert issuer.jwks_fetches - counted <= 5
                assert (await call(url, f"Bearer {issuer.token()}")).status_code == 200
            finally:
                issuer.jwks_down = False
            failed = issuer.jwks_fetches - before
        warnings = [r for r in caplog.records if "fetching the JWKS" in r.message]
        assert 1 <= len(warnings) <= failed  # one line per failed fetch, no traceback
        assert all(r.exc_info is None for r in warnings)


@pytest.mark.parametrize(
    ("document", "how"),
    [("jwks", "announced"), ("jwks", "streamed"), ("discovery", "streamed")],
)
async def test_oversized_issuer_documents_are_refused(
    gateway_with: GatewayFactory, issuer: Issuer, caplog: pytest.LogCaptureFixture, document: str, how: str
) -> None:
    issuer.oversized, issuer.streamed_bytes = (document, how), 0
    try:
        with caplog.at_level("ERROR", logger="polyrelay"):
            async with gateway_with(**auth_env(issuer, AUTH_OIDC_RETRY_INTERVAL="100ms")) as url:
                for _ in range(100):
                    if any("1 MiB limit" in r.message for r in caplog.records):
                        break
                    await asyncio.sleep(0.02)
                assert any("1 MiB limit" in r.message for r in caplog.records), caplog.text
                waiting = await call(url, f"Bearer {issuer.token()}")
                assert waiting.status_code == 503 and waiting.headers["retry-after"]
                # The gateway stopped reading at the cap: what got through is the cap plus socket buffers.
                assert issuer.streamed_bytes < 16 * 1024 * 1024, issuer.streamed_bytes
                issuer.oversized = None  # the issuer is fixed: the retry picks it up
                await ready(url, issuer.token())
    finally:
        issuer.oversized = None


@pytest.mark.parametrize(
    "typ", ["id+jwt", "logout+jwt", "secevent+jwt", "dpop+jwt", "JOSE", "application/id+jwt", "JWS"]
)
async def test_tokens_whose_header_type_is_not_an_access_token(secured: str, issuer: Issuer, typ: str) -> None:
    assert_refused(await call(secured, f"Bearer {issuer.token(header={'typ': typ})}"), "not an access token")


@pytest.mark.parametrize("typ", [None, "JWT", "jwt", "at+jwt", "AT+JWT", "application/at+jwt"])
async def test_access_token_header_types_are_accepted(secured: str, issuer: Issuer, typ: str | None) -> None:
    token = issuer.token(header={"typ": typ})  # None: no typ at all
    assert json.loads(base64.urlsafe_b64decode(token.split(".")[0] + "==")).get("typ") == typ
    assert (await call(secured, f"Bearer {token}")).status_code == 200


@pytest.mark.parametrize(
    ("claims", "reason"),
    [
        ({"typ": "ID"}, "'ID' token"),
        ({"typ": "Refresh"}, "'Refresh' token"),
        ({"at_hash": "x1Yq3S2z"}, "at_hash"),
        ({"c_hash": "LDktKdoQak"}, "c_hash"),
        ({"nonce": "n-0S6_WzA2Mj"}, "nonce"),
        ({"typ": "ID", "nonce": "n-0S6_WzA2Mj", "at_hash": "x1Yq3S2z"}, "ID"),
    ],
    ids=["keycloak-id", "keycloak-refresh", "at_hash", "c_hash", "nonce", "keycloak-id-token"],
)
async def test_id_tokens_presented_as_access_tokens(
    secured: str, issuer: Issuer, claims: dict[str, Any], reason: str
) -> None:
    assert_refused(await call(secured, f"Bearer {issuer.token(**claims)}"), reason)


async def test_keycloak_access_tokens_are_accepted(secured: str, issuer: Issuer) -> None:
    assert (await call(secured, f"Bearer {issuer.token(typ='Bearer')}")).status_code == 200
    # Keycloak before 25 copied the login's nonce into access tokens, marked typ "Bearer".
    assert (await call(secured, f"Bearer {issuer.token(typ='Bearer', nonce='n-0S6')}")).status_code == 200


# -- what reaches the providers -------------------------------------------------------------------


async def test_the_callers_credential_never_reaches_a_provider(
    secured: str, issuer: Issuer, fake: FakeProviders
) -> None:
    token = issuer.token()
    client = openai.AsyncOpenAI(base_url=f"{secured}/v1", api_key=token, max_retries=0)
    await client.chat.completions.create(model="openai/echo", messages=HELLO)  # type: ignore[arg-type]
    assert fake.last_post("openai").headers["authorization"] == "Bearer key-openai"
    proxied = await call(secured, f"Bearer {token}", "/proxy/openai/openai/v1/echo")
    assert proxied.status_code == 200 and fake.last("/v1/echo").headers["authorization"] == "Bearer key-openai"
    assert token not in json.dumps([s.headers for s in fake.seen[-3:]])


# -- model policy per key and per gateway ----------------------------------------------------------


async def test_a_limited_key_sees_and_uses_only_its_models(secured: str) -> None:
    client = openai.AsyncOpenAI(base_url=f"{secured}/v1", api_key=LIMITED_KEY, max_retries=0)
    listed = await client.models.list()
    assert sorted(m.id for m in listed.data) == []  # the fakes list model-a/model-b: none is allowed
    answer = await client.chat.completions.create(model="openai/echo", messages=HELLO)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "You said: hi"
    await client.chat.completions.create(model="groq/tool", messages=HELLO)  # type: ignore[arg-type]  # bare "tool"
    with pytest.raises(openai.PermissionDeniedError, match="key 'limited' may not use"):
        await client.chat.completions.create(model="groq/echo", messages=HELLO)  # type: ignore[arg-type]
    proxied = await call(secured, f"Bearer {LIMITED_KEY}", "/proxy/openai/openai/v1/echo")
    assert proxied.status_code == 403 and proxied.json()["error"]["code"] == "proxy_not_allowed"


async def test_gateway_policy_filters_lists_and_refuses_chats(gateway_with: GatewayFactory) -> None:
    async with gateway_with(ALLOWED_MODELS="OpenAI/Model-A, model-b", DISALLOWED_MODELS="openai/model-a") as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        ids = {m.id for m in (await client.models.list()).data}
        assert "openai/model-a" in ids and "groq/model-b" in ids and "groq/model-a" not in ids
        with pytest.raises(openai.PermissionDeniedError, match="not allowed on this gateway"):
            await client.chat.completions.create(model="groq/model-a", messages=HELLO)  # type: ignore[arg-type]
    async with gateway_with(DISALLOWED_MODELS="model-a") as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        ids = {m.id for m in (await client.models.list()).data}
        assert not any(i.endswith("/model-a") for i in ids) and "openai/model-b" in ids


async def test_a_provider_prefixed_entry_matches_that_provider_only(secured: str, fake: FakeProviders) -> None:
    """The limited key may use openai/echo: not the model 'openai/echo' at another provider."""
    client = openai.AsyncOpenAI(base_url=f"{secured}/v1", api_key=LIMITED_KEY, max_retries=0)
    before = len(fake.seen)
    with pytest.raises(openai.PermissionDeniedError, match="key 'limited' may not use"):
        await client.chat.completions.create(model="ollama/openai/echo", messages=HELLO)  # type: ignore[arg-type]
    with pytest.raises(openai.PermissionDeniedError, match="key 'limited' may not use"):
        await client.chat.completions.create(
            model="openai/echo",
            messages=HELLO,  # type: ignore[arg-type]
            extra_query={"provider": "ollama"},
        )
    assert len(fake.seen) == before
    for spelling in ("OpenAI/echo", " openai/echo ", "OPENAI/ECHO"):  # the same entry, however it is written
        await client.chat.completions.create(model=spelling, messages=HELLO)  # type: ignore[arg-type]
        assert fake.last_post("openai").json["model"] == spelling.strip().split("/", 1)[1]


async def test_bare_and_provider_entries(gateway_with: GatewayFactory, fake: FakeProviders) -> None:
    allowed = "groq/openai/gpt-oss-120b, meta-llama/Llama-3, @cf/meta/llama-3.1-8b-instruct"
    async with gateway_with(ALLOWED_MODELS=allowed) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        await client.chat.completions.create(model="groq/openai/gpt-oss-120b", messages=HELLO)  # type: ignore[arg-type]
        assert fake.last_post("groq").json["model"] == "openai/gpt-oss-120b"
        for model in ("openai/gpt-oss-120b", "ollama/openai/gpt-oss-120b"):  # the entry names groq
            with pytest.raises(openai.PermissionDeniedError):
                await client.chat.completions.create(model=model, messages=HELLO)  # type: ignore[arg-type]
        for pid in ("ollama", "nvidia"):  # no provider is called meta-llama: a bare name, at any provider
            await client.chat.completions.create(model=f"{pid}/meta-llama/llama-3", messages=HELLO)  # type: ignore[arg-type]
            assert fake.last_post(pid).json["model"] == "meta-llama/llama-3"
        await client.chat.completions.create(model="cloudflare/@cf/meta/llama-3.1-8b-instruct", messages=HELLO)  # type: ignore[arg-type]
        assert fake.last_post("cloudflare").json["model"] == "@cf/meta/llama-3.1-8b-instruct"


async def test_a_deny_list_cannot_be_dodged(gateway_with: GatewayFactory, fake: FakeProviders) -> None:
    async with gateway_with(DISALLOWED_MODELS="openai/echo, tool") as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        before = len(fake.seen)
        for model in ("openai/echo ", "OPENAI/echo", " OpenAI/ECHO", "groq/TOOL", "ollama/tool "):
            with pytest.raises(openai.PermissionDeniedError, match="not allowed on this gateway"):
                await client.chat.completions.create(model=model, messages=HELLO)  # type: ignore[arg-type]
        with pytest.raises(openai.PermissionDeniedError):
            await client.chat.completions.create(model="echo", messages=HELLO, extra_query={"provider": " OpenAI"})  # type: ignore[arg-type]
        assert len(fake.seen) == before
        await client.chat.completions.create(model="groq/echo", messages=HELLO)  # type: ignore[arg-type]  # groq's is not denied


MALFORMED = [
    "openai//echo",
    "/openai/echo",
    "openai/echo/",
    "openai/",
    "openai/ec ho",
    "openai/ec\tho",
    "openai/echo\x00",
    "openai/echo\x1b[31m",
    "openai/echo\x7f",
    "openai/echo\u200b",
    "openai/\u200becho",
    "openai/ech\ufeffo",
    "openai/\u202eohce",
    "openai/echo\u2066",
    "openai/ec\u2060ho",
    "openai/ec\u00adho",
    "openai/ec\u00a0ho",
    "openai/e\u034fcho",
    "openai/echo\ufe0f",
    "openai/echo\U000e0001",
    "openai/../echo",
    "google/../../v1beta/files",
    "openai/echo?alt=sse",
    "openai/echo#x",
    "openai/%65cho",
]


@pytest.mark.parametrize("model", MALFORMED, ids=[ascii(m) for m in MALFORMED])
async def test_malformed_model_names_are_400_and_never_forwarded(gateway: str, fake: FakeProviders, model: str) -> None:
    client = openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key="x", max_retries=0)
    before = len(fake.seen)
    with pytest.raises(openai.BadRequestError) as caught:
        await client.chat.completions.create(model=model, messages=HELLO)  # type: ignore[arg-type]
    assert caught.value.code == "invalid_model" and caught.value.param == "model", caught.value.message
    assert "not a valid name" in caught.value.message
    with pytest.raises(openai.BadRequestError) as caught:  # the same name after ?provider=
        await client.chat.completions.create(model=model, messages=HELLO, extra_query={"provider": "openai"})  # type: ignore[arg-type]
    assert caught.value.code == "invalid_model"
    assert len(fake.seen) == before


async def test_malformed_provider_parameter_is_400(gateway: str, fake: FakeProviders) -> None:
    client = openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key="x", max_retries=0)
    before = len(fake.seen)
    for provider in ("open\u200bai", "openai\x00", "open ai"):
        with pytest.raises(openai.BadRequestError) as caught:
            await client.chat.completions.create(model="echo", messages=HELLO, extra_query={"provider": provider})  # type: ignore[arg-type]
        assert caught.value.code == "invalid_model" and caught.value.param == "provider"
        async with httpx.AsyncClient() as http:
            listed = await http.get(f"{gateway}/v1/models", params={"provider": provider})
        assert listed.status_code == 400 and listed.json()["error"]["param"] == "provider"
    assert len(fake.seen) == before


LEGIT = [
    ("cloudflare/@cf/meta/llama-3.1-8b-instruct", "cloudflare", "@cf/meta/llama-3.1-8b-instruct"),
    ("ollama/llama3.2:latest", "ollama", "llama3.2:latest"),
    ("nvidia/accounts/fireworks/models/x", "nvidia", "accounts/fireworks/models/x"),
    ("groq/openai/gpt-oss-120b", "groq", "openai/gpt-oss-120b"),
    ("OpenAI/GPT-4o-2024-08-06", "openai", "GPT-4o-2024-08-06"),
    ("openai/ft:gpt-4o-mini-2024-07-18:acme::A1b2C3", "openai", "ft:gpt-4o-mini-2024-07-18:acme::A1b2C3"),
    ("ollama/hf.co/org/Model-GGUF:Q4_K_M", "ollama", "hf.co/org/Model-GGUF:Q4_K_M"),
    ("mistral/model+v2@2025", "mistral", "model+v2@2025"),
    ("openai/gpt-\u00e9t\u00e9", "openai", "gpt-\u00e9t\u00e9"),  # printable letters beyond ASCII are names too
]


@pytest.mark.parametrize(("model", "pid", "upstream"), LEGIT, ids=[m for m, _, _ in LEGIT])
async def test_real_model_names_go_through(
    gateway: str, fake: FakeProviders, model: str, pid: str, upstream: str
) -> None:
    client = openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key="x", max_retries=0)
    answer = await client.chat.completions.create(model=model, messages=HELLO)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "You said: hi"
    assert fake.last_post(pid).json["model"] == upstream


async def test_gemini_model_names_keep_their_models_prefix(gateway: str, fake: FakeProviders) -> None:
    client = openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key="x", max_retries=0)
    await client.chat.completions.create(model="google/models/gemini-2.0-flash", messages=HELLO)  # type: ignore[arg-type]
    assert fake.last_post("google").path.endswith("/models/gemini-2.0-flash:generateContent")


async def test_malformed_routed_models_are_400(gateway_with: GatewayFactory, fake: FakeProviders) -> None:
    before = len(fake.seen)
    async with gateway_with(ROUTING_STRATEGY="header") as url:
        for routed in ("openai//echo", "openai/ec ho", "/echo"):
            client = openai.AsyncOpenAI(
                base_url=f"{url}/v1", api_key="x", max_retries=0, default_headers={"X-Model": routed}
            )
            with pytest.raises(openai.BadRequestError) as caught:
                await client.chat.completions.create(model="openai/echo", messages=HELLO)  # type: ignore[arg-type]
            assert caught.value.code == "invalid_model"
    async with gateway_with(ROUTING_STRATEGY="path") as url:
        for routed in ("openai%2F%2Fecho", "openai%2Fecho%E2%80%8B", "openai%2Fech%00o"):
            client = openai.AsyncOpenAI(base_url=f"{url}/{routed}/v1", api_key="x", max_retries=0)
            with pytest.raises(openai.BadRequestError) as caught:
                await client.chat.completions.create(model="openai/echo", messages=HELLO)  # type: ignore[arg-type]
            assert caught.value.code == "invalid_model"
    assert len(fake.seen) == before


async def test_malformed_policy_entries_are_refused_at_start_up() -> None:
    for env in (
        {"DISALLOWED_MODELS": "openai//echo"},
        {"ALLOWED_MODELS": "openai/echo\u200b"},
        {"AUTH_API_KEYS": f"k:{sha('x')}:openai/ec ho"},
    ):
        with pytest.raises(SettingsError, match="not a valid name"):
            Settings.load(env)


# -- routing strategies ----------------------------------------------------------------------------


async def test_path_strategy_with_the_openai_sdk(gateway_with: GatewayFactory, fake: FakeProviders) -> None:
    async with gateway_with(ROUTING_STRATEGY="path") as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/openai%2Fecho/v1", api_key="x", max_retries=0)
        answer = await client.chat.completions.create(model="ignored", messages=HELLO)  # type: ignore[arg-type]
        assert answer.choices[0].message.content == "You said: hi"
        assert fake.last_post("openai").json["model"] == "echo"
        stream = await client.chat.completions.create(model="ignored", messages=HELLO, stream=True)  # type: ignore[arg-type]
        assert "".join([c.choices[0].delta.content or "" async for c in stream if c.choices]) == "You said: hi"
        plain = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        answer = await plain.chat.completions.create(model="groq/echo", messages=HELLO)  # type: ignore[arg-type]
        assert answer.choices[0].message.content == "You said: hi"


async def test_header_strategy_with_the_openai_sdk(gateway_with: GatewayFactory, fake: FakeProviders) -> None:
    async with gateway_with(ROUTING_STRATEGY="header", ROUTING_HEADER_NAME="X-Model") as url:
        client = openai.AsyncOpenAI(
            base_url=f"{url}/v1", api_key="x", max_retries=0, default_headers={"X-Model": "mistral/echo"}
        )
        await client.chat.completions.create(model="openai/echo", messages=HELLO)  # type: ignore[arg-type]
        assert fake.last_post("mistral").json["model"] == "echo"
        without = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        await without.chat.completions.create(model="deepseek/echo", messages=HELLO)  # type: ignore[arg-type]
        assert fake.last_post("deepseek").json["model"] == "echo"


# -- cross-origin and start-up ----------------------------------------------------------------------


async def test_cors_only_for_listed_origins(gateway_with: GatewayFactory) -> None:
    preflight = {
        "Origin": "https://app.example",
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "authorization,content-type",
    }
    async with gateway_with(CORS_ALLOWED_ORIGINS="https://app.example") as url, httpx.AsyncClient() as http:
        allowed = await http.options(f"{url}/v1/chat/completions", headers=preflight)
        other = await http.options(
            f"{url}/v1/chat/completions", headers={**preflight, "Origin": "https://evil.example"}
        )
    assert allowed.status_code == 200 and allowed.headers["access-control-allow-origin"] == "https://app.example"
    assert "access-control-allow-origin" not in other.headers
    async with gateway_with() as url, httpx.AsyncClient() as http:
        off = await http.options(f"{url}/v1/chat/completions", headers=preflight)
    assert "access-control-allow-origin" not in off.headers


async def test_warning_when_open_on_a_public_address(
    gateway_with: GatewayFactory, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level("WARNING", logger="polyrelay"):
        async with gateway_with(SERVER_HOST="0.0.0.0"):
            pass
    assert any("Authentication is off" in r.message for r in caplog.records)
    caplog.clear()
    with caplog.at_level("WARNING", logger="polyrelay"):
        async with gateway_with(SERVER_HOST="127.0.0.1"):
            pass
    assert not any("Authentication is off" in r.message for r in caplog.records)
