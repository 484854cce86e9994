"""``POST /v1/embeddings`` with the openai SDK: relayed to OpenAI-compatible providers, translated
for Gemini (``batchEmbedContents``) and Cohere (``/v2/embed``), against fakes of each native API.

Every answer is checked with the SDK's own ``CreateEmbeddingResponse``; the vectors are the fakes'
``vector_of`` of each input, so a test sees that each vector belongs to its input, in order.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from array import array
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import jsonschema
import openai
import orjson
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from openai.types import CreateEmbeddingResponse

from gateway.embeddings import validate_embeddings
from providers.errors import InvalidRequest
from providers.registry import load_registry

from .conftest import GatewayFactory
from .fake_embeddings import vector_of
from .fakes import ERROR_CLASSES, FakeProviders, fake_key
from .otlp_receiver import OTLPReceiver
from .test_metrics import DURATION, TOKENS, free_port, scrape, until
from .test_secrets import assert_no_key, stars
from .test_telemetry import request_lines

REGISTRY = load_registry()
EMBEDDERS = [pid for pid, spec in REGISTRY.items() if "embeddings" in spec.endpoints]
# A real embedding model of each kind of upstream, and the size of the fake's vectors for it.
MODELS = {"google": "gemini-embedding-001", "cohere": "embed-v4.0"}
SIZES = {"google": 3072, "cohere": 1536}
UPSTREAMS = ["openai", "google", "cohere"]  # relayed, then each translating adapter


def model_of(pid: str) -> str:
    return f"{pid}/{MODELS.get(pid, 'text-embedding-3-small')}"


def size_of(pid: str) -> int:
    return SIZES.get(pid, 1536)


async def create(client: openai.AsyncOpenAI, **kwargs: Any) -> CreateEmbeddingResponse:
    """The SDK's call, its answer checked with the SDK's type as it came over the wire (a base64
    vector decoded as the SDK decodes it: little-endian float32)."""
    raw = await client.embeddings.with_raw_response.create(**kwargs)
    document = raw.http_response.json()
    for item in document["data"]:
        if isinstance(item["embedding"], str):
            item["embedding"] = array("f", base64.b64decode(item["embedding"], validate=True)).tolist()
    checked = CreateEmbeddingResponse.model_validate(document)
    answer = raw.parse()
    assert answer.model_dump() == checked.model_dump()
    return answer


def embedded_posts(fake: FakeProviders, pid: str, since: int) -> list[Any]:
    return [s.json for s in fake.seen[since:] if s.method == "POST" and s.path.startswith(f"/{pid}/")]


@pytest.mark.parametrize("pid", EMBEDDERS)
async def test_every_provider_that_lists_embeddings_embeds_a_string_and_a_list(
    pid: str, client: openai.AsyncOpenAI, fake: FakeProviders
) -> None:
    one = await create(client, model=model_of(pid), input="hello world", encoding_format="float")
    assert [d.embedding for d in one.data] == [vector_of("hello world", size_of(pid))]
    # No encoding_format: the SDK asks for base64 and decodes it.
    many = await create(client, model=model_of(pid), input=["first text", "second", "third one here"])
    assert [d.index for d in many.data] == [0, 1, 2]
    assert [d.embedding for d in many.data] == [
        vector_of(t, size_of(pid)) for t in ("first text", "second", "third one here")
    ]
    sent = fake.last_post(pid)
    if REGISTRY[pid].adapter == "openai":  # relayed: the provider's own model name, the rest as sent
        assert sent.json == {
            "model": model_of(pid).split("/", 1)[1],
            "input": ["first text", "second", "third one here"],
            "encoding_format": "base64",
        }
        assert many.model == model_of(pid).split("/", 1)[1]


async def test_a_relayed_answer_is_the_providers_bytes(fake: FakeProviders, gateway: str) -> None:
    body = {"model": "openai/text-embedding-3-small", "input": ["a b", "c"], "encoding_format": "base64"}
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"{gateway}/v1/embeddings", json=body)
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    data = answer.json()
    assert data["usage"] == {"prompt_tokens": 3, "total_tokens": 3}
    for item, text in zip(data["data"], ["a b", "c"], strict=True):
        assert isinstance(item["embedding"], str)
        assert array("f", base64.b64decode(item["embedding"])).tolist() == vector_of(text, 1536)


@pytest.mark.parametrize("pid", ["google", "cohere"])
async def test_translated_answers_in_float_and_base64(pid: str, gateway: str) -> None:
    texts = ["one", "two words"]
    async with httpx.AsyncClient() as http:
        floats = await http.post(f"{gateway}/v1/embeddings", json={"model": model_of(pid), "input": texts})
        packed = await http.post(
            f"{gateway}/v1/embeddings", json={"model": model_of(pid), "input": texts, "encoding_format": "base64"}
        )
    assert floats.status_code == packed.status_code == 200
    assert [d["embedding"] for d in floats.json()["data"]] == [vector_of(t, size_of(pid)) for t in texts]
    # As OpenAI writes it: each vector's little-endian float32 bytes, base64-encoded.
    for item, text in zip(packed.json()["data"], texts, strict=True):
        raw = base64.b64decode(item["embedding"], validate=True)
        assert len(raw) == 4 * size_of(pid)
        decoded = array("f", raw)
        assert decoded.tolist() == vector_of(text, size_of(pid))
    assert floats.json()["model"] == MODELS[pid]


@pytest.mark.parametrize("pid", UPSTREAMS)
async def test_dimensions_are_mapped_to_the_providers_field(
    pid: str, client: openai.AsyncOpenAI, fake: FakeProviders
) -> None:
    answer = await create(client, model=model_of(pid), input=["short"], dimensions=256)
    assert [d.embedding for d in answer.data] == [vector_of("short", 256)]
    sent = fake.last_post(pid).json
    if pid == "google":
        assert [r["outputDimensionality"] for r in sent["requests"]] == [256]
    elif pid == "cohere":
        assert sent["output_dimension"] == 256
    else:
        assert sent["dimensions"] == 256


async def test_a_dimension_the_provider_refuses_is_its_400(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match=r"cohere: .*output_dimension 256 is not supported"):
        await client.embeddings.create(model="cohere/embed-english-v3.0", input="x", dimensions=256)
    with pytest.raises(openai.BadRequestError, match=r"google: .*output_dimensionality"):
        await client.embeddings.create(model="google/gemini-embedding-001", input="x", dimensions=64)
    with pytest.raises(openai.BadRequestError, match="does not support specifying dimensions"):
        await client.embeddings.create(model="openai/text-embedding-ada-002", input="x", dimensions=64)


async def test_input_type_says_what_the_texts_are_for(client: openai.AsyncOpenAI, fake: FakeProviders) -> None:
    await client.embeddings.create(model="cohere/embed-v4.0", input="stored")
    assert fake.last_post("cohere").json["input_type"] == "search_document"  # the default, documented
    assert fake.last_post("cohere").json["embedding_types"] == ["float"]
    await client.embeddings.create(model="cohere/embed-v4.0", input="query", extra_body={"input_type": "search_query"})
    assert fake.last_post("cohere").json["input_type"] == "search_query"
    await client.embeddings.create(model="google/gemini-embedding-001", input="stored")
    assert "taskType" not in fake.last_post("google").json["requests"][0]  # Gemini's own default
    await client.embeddings.create(
        model="google/gemini-embedding-001", input="query", extra_body={"input_type": "search_query"}
    )
    assert fake.last_post("google").json["requests"][0]["taskType"] == "RETRIEVAL_QUERY"
    for pid in ("google", "cohere"):
        with pytest.raises(openai.BadRequestError, match="'input_type' must be one of search_document") as refused:
            await client.embeddings.create(model=model_of(pid), input="x", extra_body={"input_type": "query"})
        assert refused.value.body["param"] == "input_type"  # type: ignore[index]


@pytest.mark.parametrize(("pid", "batches"), [("google", [100, 50]), ("cohere", [96, 54])])
async def test_long_inputs_go_in_the_providers_batches_and_come_back_in_order(
    pid: str, batches: list[int], client: openai.AsyncOpenAI, fake: FakeProviders
) -> None:
    texts = [f"text number {i}" for i in range(sum(batches))]
    since = len(fake.seen)
    answer = await create(client, model=model_of(pid), input=texts, encoding_format="float", dimensions=256)
    assert [d.index for d in answer.data] == list(range(len(texts)))
    assert [d.embedding for d in answer.data] == [vector_of(t, 256) for t in texts]
    posts = embedded_posts(fake, pid, since)
    sizes = sorted((len(p["requests"]) if pid == "google" else len(p["texts"]) for p in posts), reverse=True)
    assert sizes == batches
    if pid == "cohere":
        assert answer.usage.prompt_tokens == 3 * len(texts)  # the calls' counts added up


async def test_a_failed_batch_fails_the_request(client: openai.AsyncOpenAI) -> None:
    texts = [f"text {i}" for i in range(250)]
    texts[120] = "refuse this batch"  # the second of three batches
    with pytest.raises(openai.BadRequestError, match=r"google: .*requests\[20\]\.content: fake gemini refused"):
        await client.embeddings.create(model="google/gemini-embedding-001", input=texts, dimensions=128)


@pytest.mark.parametrize("pid", ["google", "cohere"])
async def test_token_ids_are_refused_by_providers_that_read_text(
    pid: str, client: openai.AsyncOpenAI, fake: FakeProviders
) -> None:
    since = len(fake.seen)
    for tokens in ([1, 2, 3], [[1, 2], [3]]):
        with pytest.raises(openai.BadRequestError, match="embeds text only") as refused:
            await client.embeddings.create(model=model_of(pid), input=tokens)
        assert refused.value.body["param"] == "input" and refused.value.code == "unsupported_input"  # type: ignore[index]
    assert embedded_posts(fake, pid, since) == []


async def test_token_ids_are_relayed_to_openai_compatible_providers(
    client: openai.AsyncOpenAI, fake: FakeProviders
) -> None:
    answer = await create(client, model="openai/text-embedding-3-small", input=[[1, 2], [3]], encoding_format="float")
    assert [d.embedding for d in answer.data] == [vector_of("1 2", 1536), vector_of("3", 1536)]
    assert fake.last_post("openai").json["input"] == [[1, 2], [3]]
    answer = await create(client, model="openai/text-embedding-3-small", input=[5, 6, 7])
    assert [d.embedding for d in answer.data] == [vector_of("5 6 7", 1536)]


async def test_usage_is_the_providers_count_and_zero_when_gemini_gives_none(client: openai.AsyncOpenAI) -> None:
    texts = ["three words here", "two words"]
    relayed = await create(client, model="openai/text-embedding-3-small", input=texts)
    cohere = await create(client, model="cohere/embed-v4.0", input=texts)
    assert relayed.usage.prompt_tokens == relayed.usage.total_tokens == 5
    assert cohere.usage.prompt_tokens == cohere.usage.total_tokens == 5  # meta.billed_units.input_tokens
    gemini = await create(client, model="google/gemini-embedding-001", input=texts)
    assert gemini.usage.prompt_tokens == gemini.usage.total_tokens == 0  # not counted: documented
    counted = await create(client, model="google/counted", input=texts)  # an answer with usageMetadata
    assert counted.usage.prompt_tokens == counted.usage.total_tokens == 26 // 4 + 1


# -- refusals ----------------------------------------------------------------------------------

BAD_REQUESTS = [
    ({"input": "x"}, "model"),
    ({"model": "", "input": "x"}, "model"),
    ({"model": "openai/m"}, "input"),
    ({"model": "openai/m", "input": ""}, "input"),
    ({"model": "openai/m", "input": []}, "input"),
    ({"model": "openai/m", "input": None}, "input"),
    ({"model": "openai/m", "input": {"text": "x"}}, "input"),
    ({"model": "openai/m", "input": ["a", ""]}, "input[1]"),
    ({"model": "openai/m", "input": ["a", 3]}, "input[1]"),
    ({"model": "openai/m", "input": [1, -2]}, "input[1]"),
    ({"model": "openai/m", "input": [1, True]}, "input[1]"),
    ({"model": "openai/m", "input": [[1], []]}, "input[1]"),
    ({"model": "openai/m", "input": [[1], [2.5]]}, "input[1][0]"),
    ({"model": "openai/m", "input": [[1], "a"]}, "input[1]"),
    ({"model": "openai/m", "input": [None]}, "input[0]"),
    ({"model": "openai/m", "input": ["x"] * 2049}, "input"),
    ({"model": "openai/m", "input": "x", "encoding_format": "int8"}, "encoding_format"),
    ({"model": "openai/m", "input": "x", "dimensions": 0}, "dimensions"),
    ({"model": "openai/m", "input": "x", "dimensions": "256"}, "dimensions"),
    ({"model": "openai/m", "input": "x", "dimensions": True}, "dimensions"),
    ({"model": "openai/m", "input": "x", "dimensions": 25.6}, "dimensions"),
    ({"model": "openai/m", "input": "x", "input_type": ["query"]}, "input_type"),
    ({"model": "nobody/m", "input": "x"}, "model"),
    ({"model": "m", "input": "x"}, "model"),
]


@pytest.mark.parametrize(("body", "param"), BAD_REQUESTS)
async def test_a_bad_request_is_a_400_naming_its_field(
    body: dict[str, Any], param: str, gateway: str, fake: FakeProviders
) -> None:
    since = len(fake.seen)
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"{gateway}/v1/embeddings", json=body)
    assert answer.status_code == 400, answer.text
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "code", "param"} and error["type"] == "invalid_request_error"
    assert error["param"] == param and error["message"].endswith(".")
    assert len(fake.seen) == since  # nothing reached a provider


async def test_not_json_and_not_an_object_are_400s(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        for content in (b"{", b"[1]"):
            answer = await http.post(f"{gateway}/v1/embeddings", content=content)
            assert answer.status_code == 400 and answer.json()["error"]["code"] == "invalid_json"


@pytest.mark.parametrize("pid", ["anthropic", "groq", "deepseek"])
async def test_a_provider_without_embeddings_is_a_400_naming_those_with(
    pid: str, client: openai.AsyncOpenAI, fake: FakeProviders
) -> None:
    since = len(fake.seen)
    with pytest.raises(openai.BadRequestError, match=f"Provider '{pid}' does not serve /v1/embeddings") as refused:
        await client.embeddings.create(model=f"{pid}/some-model", input="x")
    assert refused.value.code == "endpoint_not_supported"
    assert ", ".join(sorted(EMBEDDERS)) in refused.value.message
    assert len(fake.seen) == since


@pytest.mark.parametrize("pid", UPSTREAMS)
@pytest.mark.parametrize(("status", "error_class"), ERROR_CLASSES)
async def test_a_provider_error_keeps_its_status_in_the_envelope(
    pid: str, status: int, error_class: type[openai.APIStatusError], client: openai.AsyncOpenAI
) -> None:
    with pytest.raises(error_class) as raised:
        await client.embeddings.create(model=f"{pid}/error-{status}", input="x")
    assert raised.value.status_code == status
    assert raised.value.body["message"].startswith(f"{pid}: fake")  # type: ignore[index]


async def test_policy_and_body_limit_apply(gateway_with: GatewayFactory, fake: FakeProviders) -> None:
    async with gateway_with(DISALLOWED_MODELS="cohere/embed-v4.0", SERVER_MAX_REQUEST_BODY_SIZE="2000") as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        with pytest.raises(openai.PermissionDeniedError, match=r"'cohere/embed-v4\.0' is not allowed"):
            await client.embeddings.create(model="cohere/embed-v4.0", input="x")
        with pytest.raises(openai.APIStatusError, match="SERVER_MAX_REQUEST_BODY_SIZE") as raised:
            await client.embeddings.create(model="openai/text-embedding-3-small", input=["word"] * 500)
        assert raised.value.status_code == 413
        answer = await client.embeddings.create(model="google/gemini-embedding-001", input="allowed")
        assert len(answer.data) == 1


async def test_the_routing_header_names_the_model(gateway_with: GatewayFactory, fake: FakeProviders) -> None:
    async with gateway_with(ROUTING_STRATEGY="header") as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        answer = await create(
            client,
            model="ignored",
            input="routed",
            encoding_format="float",
            extra_headers={"X-Model": "cohere/embed-v4.0"},
        )
    assert answer.data[0].embedding == vector_of("routed", 1536)
    assert fake.last_post("cohere").json["model"] == "embed-v4.0"


async def test_a_client_that_leaves_cancels_the_upstream_call(gateway: str, fake: FakeProviders) -> None:
    before = fake.disconnects.count("embeddings")
    client = openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key="x", max_retries=0, timeout=0.3)
    with pytest.raises(openai.APITimeoutError):
        await client.embeddings.create(model="openai/slow", input="x")
    for _ in range(100):
        if fake.disconnects.count("embeddings") > before:
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the provider's call was not cancelled when the client left")


# -- secrets -----------------------------------------------------------------------------------


@pytest.mark.parametrize("pid", UPSTREAMS)
async def test_no_provider_key_in_an_error_that_quotes_it(
    pid: str, gateway: str, caplog: pytest.LogCaptureFixture, fake: FakeProviders
) -> None:
    secrets = [v.encode() for k, v in fake.env().items() if k.endswith("_API_KEY")]
    caplog.set_level(logging.DEBUG)
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"{gateway}/v1/embeddings", json={"model": f"{pid}/leak-error", "input": "x"})
    assert answer.status_code == 429 and stars(pid) in answer.json()["error"]["message"]
    assert_no_key(answer, secrets)
    assert all(s.decode() not in caplog.text for s in secrets)


async def test_no_provider_key_in_a_relayed_answer_that_quotes_it(gateway: str, fake: FakeProviders) -> None:
    secrets = [v.encode() for k, v in fake.env().items() if k.endswith("_API_KEY")]
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"{gateway}/v1/embeddings", json={"model": "openai/leak", "input": "x"})
    assert answer.status_code == 200 and answer.json()["model"] == f"model-for-Bearer {stars('openai')}"
    assert_no_key(answer, secrets)


async def test_the_callers_credential_never_reaches_a_provider(
    gateway_with: GatewayFactory, fake: FakeProviders
) -> None:
    caller = "pr-embeddings-caller-key-0123456789"
    digest = hashlib.sha256(caller.encode()).hexdigest()
    async with gateway_with(AUTH_ENABLED="true", AUTH_API_KEYS=f"embedder:{digest}") as url:
        anonymous = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="wrong", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            await anonymous.embeddings.create(model="openai/text-embedding-3-small", input="x")
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=caller, max_retries=0)
        since = len(fake.seen)
        for pid in UPSTREAMS:
            await client.embeddings.create(model=model_of(pid), input="x")
    seen = fake.seen[since:]
    assert {s.path.split("/")[1] for s in seen} == set(UPSTREAMS)
    assert all(caller not in str(s.headers) and caller.encode() not in s.body for s in seen)
    assert fake.last_post("openai").headers["authorization"] == f"Bearer {fake_key('openai')}"


# -- telemetry ---------------------------------------------------------------------------------


async def test_the_request_line_names_the_provider_model_and_input_tokens(
    gateway: str, caplog: pytest.LogCaptureFixture
) -> None:
    client = openai.AsyncOpenAI(base_url=f"{gateway}/v1", api_key="x", max_retries=0)
    with request_lines(caplog) as lines:
        await client.embeddings.create(model="cohere/embed-v4.0", input=["one two", "three"])
        await client.embeddings.create(model="google/gemini-embedding-001", input="uncounted")
    cohere, google = lines
    assert cohere["route"] == "/v1/embeddings" and cohere["status"] == 200
    assert (cohere["provider"], cohere["model"], cohere["tokens_in"], cohere["tokens_out"]) == (
        "cohere",
        "embed-v4.0",
        3,
        0,
    )
    assert cohere["response_model"] == "embed-v4.0"
    assert google["provider"] == "google" and "tokens_in" not in google  # Gemini counted none


async def test_metrics_count_embeddings_as_their_own_operation(gateway_with: GatewayFactory) -> None:
    port = free_port()
    async with gateway_with(TELEMETRY_ENABLED="true", TELEMETRY_METRICS_PORT=str(port)) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        series = {"gen_ai_operation_name": "embeddings", "gen_ai_request_model": "text-embedding-3-small"}
        await client.embeddings.create(model="openai/text-embedding-3-small", input=["a b c", "d"])
        after = await until(port, DURATION, 1, gen_ai_provider_name="openai", **series)
        assert after.value(TOKENS, gen_ai_token_type="input", **series) == 4
        with pytest.raises(openai.BadRequestError):
            await client.embeddings.create(model="openai/error-400", input="x")
        failed = await until(port, DURATION, 1, error_type="400", gen_ai_operation_name="embeddings")
        assert failed.value(DURATION, gen_ai_operation_name="chat") == 0
        assert (await scrape(port)).value("polyrelay_http_requests_total", route="/v1/embeddings") == 2


# -- the contract ------------------------------------------------------------------------------

GOOD_REQUESTS = [
    {"model": "openai/m", "input": "x"},
    {"model": "openai/m", "input": ["x", "y"], "encoding_format": "base64", "dimensions": 8, "user": "u"},
    {"model": "openai/m", "input": [0, 1, 2], "encoding_format": "float"},
    {"model": "openai/m", "input": [[1], [2, 3]]},
    {"model": "openai/m", "input": ["x"] * 2048},
    {"model": "openai/m", "input": "x", "input_type": "passage"},  # relayed as sent to OpenAI-style providers
]


_SPEC = yaml.safe_load((Path(__file__).parent.parent / "openapi.yaml").read_text())
REQUEST_SCHEMA = jsonschema.Draft202012Validator(
    {"$ref": "#/components/schemas/EmbeddingRequest", "components": _SPEC["components"]}
)


@pytest.mark.parametrize(
    "body", GOOD_REQUESTS + [b for b, _ in BAD_REQUESTS if b.get("model") not in ("nobody/m", "m")]
)
def test_openapi_and_the_validator_agree_on_requests(body: dict[str, Any]) -> None:
    documented = REQUEST_SCHEMA.is_valid(body)
    try:
        validate_embeddings(orjson.dumps(body))
        accepted = True
    except InvalidRequest:
        accepted = False
    assert documented == accepted == (body in GOOD_REQUESTS)


async def test_with_tracing_each_provider_call_is_an_embeddings_span(
    gateway_with: GatewayFactory, fake: FakeProviders
) -> None:
    with OTLPReceiver() as receiver:
        async with gateway_with(TELEMETRY_TRACING_ENABLED="true", TELEMETRY_TRACING_OTLP_ENDPOINT=receiver.url) as url:
            client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
            answer = await client.embeddings.create(model="cohere/embed-v4.0", input=["a b", "c"], dimensions=256)
            with pytest.raises(openai.RateLimitError):
                await client.embeddings.create(model="google/error-429", input="x")
            seen = fake.last_post("cohere")
        span = receiver.span("embeddings embed-v4.0")
        failed = receiver.span("embeddings error-429")
        servers = {s.span_id: s for s in receiver.named("POST /v1/embeddings")}
    server = servers[span.parent_id]
    assert span.kind == "client" and span.trace_id == server.trace_id and server.kind == "server"
    assert servers[failed.parent_id].attributes["http.response.status_code"] == 429
    assert span.attributes == {
        "gen_ai.operation.name": "embeddings",
        "gen_ai.provider.name": "cohere",
        "server.address": "127.0.0.1",
        "server.port": int(fake.base.rsplit(":", 1)[1]),
        "gen_ai.request.model": "embed-v4.0",
        "gen_ai.request.encoding_formats": ["base64"],
        "gen_ai.embeddings.dimension.count": 256,
        "gen_ai.usage.input_tokens": answer.usage.prompt_tokens,
        "gen_ai.response.model": "embed-v4.0",
    }
    assert seen.headers["traceparent"].split("-")[2] == span.span_id
    assert (failed.status, failed.attributes["error.type"]) == ("error", "429")


# -- the fakes, as the providers' own SDKs see them ----------------------------------------------


async def test_the_fakes_embed_for_the_providers_own_sdks(fake: FakeProviders) -> None:
    import cohere
    from google import genai
    from google.genai import types

    async with aiohttp.ClientSession() as session:  # the test's own, closed here
        options = types.HttpOptions(base_url=f"{fake.base}/google", api_version="v1beta", aiohttp_client=session)
        gemini = genai.Client(api_key=fake_key("google"), http_options=options)
        config = types.EmbedContentConfig(output_dimensionality=128, task_type="RETRIEVAL_QUERY")
        answer = await gemini.aio.models.embed_content(model="gemini-embedding-001", contents=["a", "b"], config=config)
    assert [e.values for e in answer.embeddings or []] == [vector_of("a", 128), vector_of("b", 128)]

    async with httpx.AsyncClient() as http:  # the test's own, closed here
        client = cohere.AsyncClientV2(api_key=fake_key("cohere"), base_url=f"{fake.base}/cohere", httpx_client=http)
        embedded = await client.embed(
            model="embed-v4.0",
            texts=["a b"],
            input_type="search_query",
            embedding_types=["float"],
            output_dimension=256,
        )
        assert embedded.embeddings.float_ == [vector_of("a b", 256)]
        assert embedded.meta is not None and embedded.meta.billed_units is not None
        assert embedded.meta.billed_units.input_tokens == 2
        with pytest.raises(cohere.BadRequestError):
            await client.embed(
                model="embed-v4.0", texts=["x"] * 97, input_type="search_query", embedding_types=["float"]
            )


# Any JSON, with a bias to the shapes ``input`` takes. Floats are never integral: JSON Schema counts
# 2.0 as an integer, the gateway (like orjson, which reads it as a float) does not.
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.floats(allow_nan=False, allow_infinity=False).filter(lambda f: not f.is_integer())
    | st.text(max_size=3)
)
_JSON = st.recursive(
    _SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=2)
)
_INPUTS = (
    _JSON
    | st.lists(st.text(max_size=3), max_size=4)
    | st.lists(st.integers(-1, 9), max_size=4)
    | st.lists(st.lists(st.integers(-1, 9), max_size=3), max_size=3)
)


@settings(max_examples=400, deadline=None)
@given(
    value=_INPUTS,
    extra=st.dictionaries(
        st.sampled_from(["encoding_format", "dimensions", "input_type", "user"]),
        _JSON | st.sampled_from(["float", "base64", 7]),
    ),
)
def test_openapi_and_the_validator_agree_on_any_json(value: Any, extra: dict[str, Any]) -> None:
    body = {"model": "openai/m", "input": value, **extra}
    documented = REQUEST_SCHEMA.is_valid(body)
    try:
        validate_embeddings(orjson.dumps(body))
    except InvalidRequest as exc:
        assert not documented, (body, exc.message)
        assert exc.param is not None and exc.param.split("[")[0] in {"input", *extra}
        return
    assert documented, body
