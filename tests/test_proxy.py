"""/proxy/{provider}/{path}: the provider's own API, with the gateway's credential injected."""

from __future__ import annotations

import asyncio
from urllib.parse import urlsplit

import httpx
import openai
import pytest

from gateway.proxy import _joined
from providers.registry import load_registry

from .conftest import GatewayFactory
from .fakes import FakeProviders

# The fake serves each provider under /<id>/<path of its URL>; the proxy appends to the origin.
OPENAI = "/proxy/openai/openai/v1"


async def test_method_query_body_and_headers_pass_through(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{gateway}{OPENAI}/files?purpose=batch&x=1",
            content=b'{"a": 1}',
            headers={"content-type": "application/json", "x-custom": "kept"},
        )
    assert response.status_code == 200 and response.headers["x-upstream"] == "yes"
    echoed = response.json()
    assert echoed["method"] == "POST" and echoed["path"] == "/openai/v1/files"
    assert echoed["query"] == "purpose=batch&x=1" and echoed["body"] == '{"a": 1}'
    assert echoed["headers"]["x-custom"] == "kept" and echoed["headers"]["content-type"] == "application/json"


@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE", "OPTIONS", "TRACE"])
async def test_every_method_passes_through(gateway: str, method: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.request(method, f"{gateway}{OPENAI}/things/1")
    assert response.json()["method"] == method


async def test_head_passes_through(gateway: str, fake: FakeProviders) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.head(f"{gateway}{OPENAI}/things/1")
    assert response.status_code == 200 and fake.last("/openai/v1/things/1").method == "HEAD"


@pytest.mark.parametrize("pid", list(load_registry()))
@pytest.mark.parametrize("form", ["under the host", "under the base URL"])
async def test_both_path_forms_reach_the_same_url(gateway: str, fake: FakeProviders, pid: str, form: str) -> None:
    """/proxy/<id>/<base path>/x (a provider SDK's form) and /proxy/<id>/x (inference-gateway's)
    both reach <base URL>/x: OpenAI's /v1, Groq's /openai/v1, Cloudflare's account path..."""
    base_path = urlsplit(fake.url_for(fake.registry[pid])).path  # /<id> + the real URL's path
    asked = f"/proxy/{pid}{base_path}/echo/x" if form == "under the host" else f"/proxy/{pid}/echo/x"
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{gateway}{asked}?q=1")
    assert response.status_code == 200, response.text
    seen = fake.last("/echo/x")
    assert seen.path == f"{base_path}/echo/x" and seen.query == {"q": "1"}


@pytest.mark.parametrize(
    ("base", "asked", "reached"),
    [
        ("/v1", "models", "/v1/models"),
        ("/v1", "v1/models", "/v1/models"),
        ("/v1", "v1beta/x", "/v1beta/x"),  # another version of the API, chosen by the caller's SDK
        ("/v1beta", "v1/models/m:generateContent", "/v1/models/m:generateContent"),
        ("/v1", "v1.json", "/v1/v1.json"),  # whole segments only
        ("/openai/v1", "models", "/openai/v1/models"),
        ("/openai/v1", "openai/v1/models", "/openai/v1/models"),
        ("/openai/v1", "v1/models", "/openai/v1/v1/models"),  # as inference-gateway joins it
        ("/client/v4/accounts/abc/ai", "v1/chat/completions", "/client/v4/accounts/abc/ai/v1/chat/completions"),
        ("/client/v4/accounts/abc/ai", "client/v4/accounts/abc/ai/run/m", "/client/v4/accounts/abc/ai/run/m"),
        ("/api/paas/v4", "chat/completions", "/api/paas/v4/chat/completions"),
        ("", "v2/chat", "/v2/chat"),
    ],
)
def test_how_a_proxied_path_is_joined(base: str, asked: str, reached: str) -> None:
    assert _joined("https://api.example", base, asked) == "https://api.example" + reached


async def test_callers_credentials_are_replaced_by_the_providers(gateway: str, fake: FakeProviders) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(
            f"{gateway}/proxy/anthropic/anthropic/v1/echo",
            headers={"authorization": "Bearer caller-token", "x-api-key": "caller-key", "cookie": "session=caller"},
        )
    assert response.status_code == 200
    headers = fake.last("/anthropic/v1/echo").headers
    assert headers["x-api-key"] == "key-anthropic" and headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in headers and "cookie" not in headers
    assert "caller" not in str(headers)


async def test_bearer_credential_injected(gateway: str, fake: FakeProviders) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{gateway}{OPENAI}/echo", headers={"authorization": "Bearer caller-token"})
    assert response.status_code == 200 and fake.last("/openai/v1/echo").headers["authorization"] == "Bearer key-openai"


async def test_upstream_status_and_headers_pass_through_without_cookies(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{gateway}{OPENAI}/status/418")
    assert response.status_code == 418 and response.json() == {"status": 418}
    assert response.headers["x-upstream"] == "yes" and "set-cookie" not in response.headers
    # The account behind the gateway's key is the gateway's business.
    for name in ("openai-organization", "openai-project", "anthropic-organization-id"):
        assert name not in response.headers


async def test_response_streams(gateway: str) -> None:
    async with httpx.AsyncClient() as http, http.stream("GET", f"{gateway}{OPENAI}/stream/5") as response:
        assert response.headers["content-type"] == "text/event-stream"
        chunks = [chunk async for chunk in response.aiter_text()]
    assert "".join(chunks) == "".join(f"data: {i}\n\n" for i in range(5))


async def test_request_body_streams(gateway: str) -> None:
    async def upload():  # type: ignore[no-untyped-def]
        for i in range(50):
            yield f"part-{i};".encode()
            await asyncio.sleep(0)

    async with httpx.AsyncClient() as http:
        response = await http.post(f"{gateway}{OPENAI}/upload", content=upload())
    assert response.json()["body"] == "".join(f"part-{i};" for i in range(50)), response.text


async def test_providers_own_sdk_works_through_the_proxy(gateway: str) -> None:
    client = openai.AsyncOpenAI(base_url=f"{gateway}{OPENAI}", api_key="caller-token", max_retries=0)
    answer = await client.chat.completions.create(model="echo", messages=[{"role": "user", "content": "via proxy"}])
    assert answer.choices[0].message.content == "You said: via proxy"


@pytest.mark.parametrize(
    "path",
    [
        "/proxy/openai/openai/../../secret",
        "/proxy/openai/%2e%2e/secret",
        "/proxy/openai/openai/%2E%2E%2Fsecret",
        "/proxy/openai/..%2fsecret",
        "/proxy/openai/openai/%252e%252e/secret",
        "/proxy/openai/openai/..\\secret",
    ],
)
async def test_path_escape_is_refused(gateway: str, fake: FakeProviders, path: str) -> None:
    host, port = gateway.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(f"GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
    response = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    assert response.startswith(b"HTTP/1.1 400"), response
    assert b"'..'" in response
    assert not any("secret" in seen.path for seen in fake.seen)


async def test_unknown_and_unconfigured_providers_are_400(gateway_with: GatewayFactory) -> None:
    async with gateway_with(GROQ_API_KEY="") as url, httpx.AsyncClient() as http:
        unknown = await http.get(f"{url}/proxy/nosuch/v1/models")
        unconfigured = await http.get(f"{url}/proxy/groq/openai/v1/models")
    assert unknown.status_code == 400 and "Unknown provider" in unknown.json()["error"]["message"]
    assert unconfigured.status_code == 400 and "GROQ_API_KEY" in unconfigured.json()["error"]["message"]


async def test_unreachable_provider_is_502(gateway_with: GatewayFactory) -> None:
    async with gateway_with(OPENAI_API_URL="http://127.0.0.1:9/v1") as url, httpx.AsyncClient() as http:
        response = await http.get(f"{url}/proxy/openai/v1/models")
    assert response.status_code == 502 and response.json()["error"]["code"] == "upstream_unreachable"


async def test_bodies_over_the_limit_get_413(gateway_with: GatewayFactory, fake: FakeProviders) -> None:
    async def chunks():  # type: ignore[no-untyped-def]
        for _ in range(30):
            yield b"x" * 100

    async with gateway_with(SERVER_MAX_REQUEST_BODY_SIZE="1000") as url, httpx.AsyncClient() as http:
        chunked = await http.post(f"{url}{OPENAI}/too-big-chunked", content=chunks())
        declared = await http.post(f"{url}{OPENAI}/too-big-declared", content=b"x" * 1001)
    assert chunked.status_code == 413 and chunked.json()["error"]["code"] == "request_too_large"
    assert declared.status_code == 413
    assert not any("too-big-declared" in seen.path for seen in fake.seen)


async def test_slow_answer_is_bounded_by_client_timeout_not_the_stream_idle_bound(gateway_with: GatewayFactory) -> None:
    async with gateway_with(SERVER_WRITE_TIMEOUT="100ms", CLIENT_TIMEOUT="2s") as url, httpx.AsyncClient() as http:
        assert (await http.get(f"{url}{OPENAI}/delay/0.4")).status_code == 200
    async with gateway_with(CLIENT_TIMEOUT="200ms") as url, httpx.AsyncClient() as http:
        late = await http.get(f"{url}{OPENAI}/delay/1")
    assert late.status_code == 504 and late.json()["error"]["code"] == "upstream_timeout"


async def test_answers_are_asked_uncompressed_and_decompressed_when_they_are_not(gateway: str) -> None:
    # The gateway must read the bytes to mask the provider's key, so it asks for none; a provider
    # that compresses anyway is decoded, and the caller gets plain bytes without a stale coding or length.
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{gateway}{OPENAI}/gzip", headers={"accept-encoding": "gzip"})
    assert "content-encoding" not in response.headers and "content-length" not in response.headers
    assert response.json() == {"compressed": True, "accept-encoding": "identity"}


async def test_repeated_headers_kept_and_connection_listed_ones_dropped(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(
            f"{gateway}/proxy/anthropic/anthropic/v1/echo",
            headers=[
                ("x-repeated", "1"),
                ("x-repeated", "2"),
                ("connection", "keep-alive, x-hop"),
                ("x-hop", "secret"),
                ("anthropic-version", "caller"),
            ],
        )
    echoed = response.json()
    assert echoed["repeated"] == ["1", "2"] and "x-hop" not in echoed["headers"]
    assert echoed["headers"]["anthropic-version"] == "2023-06-01"


async def test_overhead_header_leaves_out_the_upstreams_time(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        slow = await http.get(f"{gateway}{OPENAI}/delay/0.4")
        chat = await http.post(
            f"{gateway}/v1/chat/completions",
            json={"model": "openai/echo", "messages": [{"role": "user", "content": "x"}]},
        )
    for response in (slow, chat):
        assert float(response.headers["x-gateway-overhead-ms"]) >= 0
    # The 400 ms the provider took are not the gateway's: what is left is its own work.
    assert float(slow.headers["x-gateway-overhead-ms"]) < 400


async def test_credentials_in_the_query_string_are_stripped_and_the_rest_kept_as_is(
    gateway: str, fake: FakeProviders
) -> None:
    query = "a=1&key=caller&b=%20x+y&api-key=c&API_KEY=d&apikey=e&access_token=f&%6Bey=g&keep=key&&c"
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{gateway}/proxy/google/google/v1beta/echo?{query}")
        only = await http.get(f"{gateway}{OPENAI}/echo?key=caller")
    assert response.json()["query"] == "a=1&b=%20x+y&keep=key&&c"
    assert fake.last("/google/v1beta/echo").headers["x-goog-api-key"] == "key-google"
    assert only.json()["query"] == "" and fake.last("/openai/v1/echo").query == {}


CALLER_HEADERS = {
    "forwarded": "for=203.0.113.7",
    "x-forwarded-for": "203.0.113.7",
    "x-forwarded-host": "gateway.example",
    "x-forwarded-proto": "https",
    "x-real-ip": "203.0.113.7",
    "via": "1.1 ingress",
    "true-client-ip": "203.0.113.7",
    "cf-connecting-ip": "203.0.113.7",
    "origin": "https://app.example",
    "referer": "https://app.example/page?token=t",
    "openai-organization": "org-caller",
    "openai-project": "proj-caller",
    "x-model": "openai/echo",
    "x-mcp-bypass": "true",
    "anthropic-api-key": "caller-key",
    "azure-api-key": "caller-key",
    "ocp-apim-subscription-key": "caller-key",
    "proxy-connection": "keep-alive",
    "accept-encoding": "gzip, br",
}


async def test_headers_about_the_caller_and_for_the_gateway_are_not_forwarded(
    gateway: str, fake: FakeProviders
) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(
            f"{gateway}/proxy/anthropic/anthropic/v1/echo",
            headers={**CALLER_HEADERS, "anthropic-beta": "kept", "x-stainless-lang": "python"},
        )
    assert response.status_code == 200
    received = fake.last("/anthropic/v1/echo").headers
    assert received["anthropic-beta"] == "kept" and received["x-stainless-lang"] == "python"
    assert received["x-api-key"] == "key-anthropic" and received["accept-encoding"] == "identity"
    assert not set(CALLER_HEADERS) - {"accept-encoding"} & set(received), received
    assert "caller" not in str(received) and "203.0.113.7" not in str(received)


async def test_answers_carry_one_date_and_not_the_upstreams_server(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        plain = await http.get(f"{gateway}{OPENAI}/echo")
        streamed = await http.get(f"{gateway}{OPENAI}/stream/2")
    for response in (plain, streamed):
        assert len(response.headers.get_list("date")) == 1
        # The fake (aiohttp) names itself in Server; the test gateway's uvicorn adds its own.
        assert not any("aiohttp" in s for s in response.headers.get_list("server")), response.headers


async def test_an_answer_in_a_coding_the_gateway_cannot_decode_is_a_502(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.get(f"{gateway}{OPENAI}/coded/compress")
    assert response.status_code == 502 and "Content-Encoding 'compress'" in response.json()["error"]["message"]
