"""/v1/models: every configured provider at once, or one with ?provider=."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx
import openai
import orjson
import pytest
from openai.types import Model

from gateway import Settings
from providers.model_facts import FIELDS, facts_for, parse_facts
from providers.registry import ProviderSpec, load_registry

from .conftest import GatewayFactory, serve
from .fakes import FakeProviders


async def get_models(url: str, query: str = "") -> httpx.Response:
    async with httpx.AsyncClient(timeout=10) as http:
        return await http.get(f"{url}/v1/models{query}")


async def test_all_providers_listed_in_order(gateway: str, fake: FakeProviders) -> None:
    response = await get_models(gateway)
    assert response.status_code == 200
    document = response.json()
    assert document["object"] == "list" and "provider" not in document
    ids = [m["id"] for m in document["data"]]
    expected = [f"{pid}/model-{x}" for pid in sorted(fake.registry) for x in "ab"]
    assert ids == expected
    for entry in document["data"]:
        assert set(entry) == {"id", "object", "created", "owned_by", "served_by"}
        assert entry["object"] == "model" and entry["served_by"] == entry["id"].split("/")[0]


async def test_the_openai_sdk_lists_models(client: openai.AsyncOpenAI) -> None:
    page = await client.models.list()
    openai_models = [m for m in page.data if m.id.startswith("openai/")]
    assert [(m.id, m.created, m.owned_by) for m in openai_models] == [
        ("openai/model-a", 1700000000, "acme"),
        ("openai/model-b", 1700000001, "acme"),
    ]


async def test_provider_filter(gateway: str) -> None:
    document = (await get_models(gateway, "?provider=anthropic")).json()
    assert document["provider"] == "anthropic"
    assert [(m["id"], m["created"], m["owned_by"]) for m in document["data"]] == [
        ("anthropic/model-a", 1739923200, "anthropic"),
        ("anthropic/model-b", 1739923200, "anthropic"),
    ]


async def test_failing_provider_is_left_out_of_the_full_list(gateway_with: GatewayFactory) -> None:
    async with gateway_with(OPENAI_API_URL="http://127.0.0.1:9/v1") as url:
        response = await get_models(url)
        assert response.status_code == 200
        assert not any(m["id"].startswith("openai/") for m in response.json()["data"])
        assert any(m["id"].startswith("groq/") for m in response.json()["data"])
        error = await get_models(url, "?provider=openai")
    assert error.status_code == 502 and "Could not connect" in error.json()["error"]["message"]


async def test_slow_provider_is_left_out_and_504_alone(gateway_with: GatewayFactory, fake: FakeProviders) -> None:
    slow = f"{fake.base}/groq/slowlist/v1"
    async with gateway_with(GROQ_API_URL=slow, CLIENT_RESPONSE_HEADER_TIMEOUT="300ms") as url:
        listed = await get_models(url)
        alone = await get_models(url, "?provider=groq")
    assert listed.status_code == 200 and not any(m["id"].startswith("groq/") for m in listed.json()["data"])
    assert alone.status_code == 504 and alone.json()["error"]["type"] == "api_error"


async def test_upstream_refusal_is_502_with_its_message(gateway_with: GatewayFactory) -> None:
    async with gateway_with(OPENAI_API_KEY="wrong") as url:
        response = await get_models(url, "?provider=openai")
    assert response.status_code == 502
    assert "Incorrect API key" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("query", "contains"), [("?provider=nosuch", "Unknown provider"), ("?provider=groq", "GROQ_API_KEY")]
)
async def test_unknown_or_unconfigured_provider_is_400(gateway_with: GatewayFactory, query: str, contains: str) -> None:
    async with gateway_with(GROQ_API_KEY="") as url:
        response = await get_models(url, query)
    assert response.status_code == 400 and contains in response.json()["error"]["message"]


async def test_google_native_list_is_paged_and_unprefixed(fake: FakeProviders) -> None:
    spec = ProviderSpec(id="gemini_native", url="https://example.invalid/v1beta", models_format="google")
    registry = {**fake.registry, spec.id: spec}
    fake.registry[spec.id] = spec
    try:
        settings = Settings.load({**fake.env(), "GEMINI_NATIVE_API_KEY": "key-gemini_native"}, registry=registry)
        async with serve(settings) as url:
            document = (await get_models(url, "?provider=gemini_native")).json()
    finally:
        del fake.registry[spec.id]
    assert [m["id"] for m in document["data"]] == ["gemini_native/model-a", "gemini_native/model-b"]
    assert fake.last("/models").query == {"pageSize": "1000", "pageToken": "p2"}


# -- GET /v1/models/{model} ----------------------------------------------------------------------


async def test_the_sdk_retrieves_a_listed_model(client: openai.AsyncOpenAI) -> None:
    raw = await client.models.with_raw_response.retrieve("openai/model-b")
    model = Model.model_validate(orjson.loads(raw.http_response.content))
    assert (model.id, model.created, model.owned_by, model.object) == ("openai/model-b", 1700000001, "acme", "model")
    listed = await client.models.list()
    assert raw.http_response.json() == next(
        m.model_dump(exclude_unset=True) for m in listed.data if m.id == "openai/model-b"
    )
    bare = await client.models.retrieve("model-a", extra_query={"provider": "anthropic"})
    assert bare.id == "anthropic/model-a"


async def test_ids_with_slashes_are_retrieved(client: openai.AsyncOpenAI, gateway: str, fake: FakeProviders) -> None:
    fake.extra_models.append("@cf/meta/llama-3.1-8b-instruct")
    try:
        model = await client.models.retrieve("cloudflare/@cf/meta/llama-3.1-8b-instruct")  # sent as %2F
        async with httpx.AsyncClient() as http:  # and with the slashes as they are
            plain = await http.get(f"{gateway}/v1/models/cloudflare/@cf/meta/llama-3.1-8b-instruct")
    finally:
        fake.extra_models.clear()
    assert model.id == "cloudflare/@cf/meta/llama-3.1-8b-instruct" and model.served_by == "cloudflare"  # type: ignore[attr-defined]
    assert plain.status_code == 200 and plain.json()["id"] == model.id


@pytest.mark.parametrize(
    "model", ["openai/no-such-model", "nosuch/model-a", "model-a", "openai/MODEL-A", "groq/model-a/extra"]
)
async def test_an_unknown_model_is_404_model_not_found(client: openai.AsyncOpenAI, model: str) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await client.models.retrieve(model)
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "model_not_found" and error["param"] == "model"
    assert "GET /v1/models" in error["message"]


async def test_a_model_the_policy_hides_is_not_found(gateway_with: GatewayFactory) -> None:
    async with gateway_with(DISALLOWED_MODELS="openai/model-a", GROQ_API_KEY="") as url:
        hidden = await get_models(url, "/openai/model-a")
        shown = await get_models(url, "/openai/model-b")
        unconfigured = await get_models(url, "/groq/model-a")
        malformed = await get_models(url, "/openai//model-a")
    assert hidden.status_code == 404 and hidden.json()["error"]["code"] == "model_not_found"
    assert shown.status_code == 200 and shown.json()["id"] == "openai/model-b"
    assert unconfigured.status_code == 404
    assert malformed.status_code == 400 and malformed.json()["error"]["code"] == "invalid_model"


async def test_a_failing_provider_fails_the_retrieval(gateway_with: GatewayFactory) -> None:
    async with gateway_with(OPENAI_API_KEY="wrong") as url:
        response = await get_models(url, "/openai/model-a")
    assert response.status_code == 502 and "Incorrect API key" in response.json()["error"]["message"]


# -- models' facts (?include=), from the registry's model_info -------------------------------------


@pytest.fixture
async def described(fake: FakeProviders) -> AsyncIterator[str]:
    """A gateway whose registry describes openai's model-a (and not model-b)."""
    rules = parse_facts(
        [
            {
                "models": ["model-a*"],
                "context_window": 128000,
                "max_output_tokens": 16384,
                "modalities": {"input": ["text", "image"], "output": ["text"]},
                "capabilities": ["tools", "vision"],
            }
        ],
        "openai",
    )
    registry = {**fake.registry, "openai": replace(fake.registry["openai"], model_info=rules)}
    async with serve(Settings.load(fake.env(), registry=registry)) as url:
        yield url


async def test_facts_only_when_asked_for(described: str) -> None:
    plain = (await get_models(described, "?provider=openai")).json()["data"]
    assert all(set(m) == {"id", "object", "created", "owned_by", "served_by"} for m in plain)
    full = (await get_models(described, "?provider=openai&include=all")).json()["data"]
    assert full[0] == {
        **plain[0],
        "context_window": 128000,
        "max_output_tokens": 16384,
        "modalities": {"input": ["text", "image"], "output": ["text"]},
        "capabilities": {"tools": True, "vision": True, "reasoning": False},
        "pricing": None,  # inference-gateway's key, taken for its clients: the gateway keeps no prices
    }
    # A model no rule describes has its facts unknown; the entry keeps OpenAI's shape either way.
    assert full[1] == {**plain[1], **dict.fromkeys(FIELDS), "pricing": None}
    assert Model.model_validate(full[0]).id == "openai/model-a"


async def test_include_names_the_facts(described: str) -> None:
    some = (await get_models(described, "?include=context_window&include=capabilities,modalities")).json()["data"]
    entry = next(m for m in some if m["id"] == "openai/model-a")
    assert [k for k in entry if k in FIELDS] == ["context_window", "modalities", "capabilities"]
    one = (await get_models(described, "/openai/model-a?include=max_output_tokens")).json()
    assert one["max_output_tokens"] == 16384 and "context_window" not in one
    wrong = await get_models(described, "?include=price")
    assert wrong.status_code == 400 and wrong.json()["error"]["param"] == "include"
    assert "context_window, max_output_tokens, modalities, capabilities" in wrong.json()["error"]["message"]


@pytest.mark.parametrize(
    ("rule", "problem"),
    [
        ({"models": ["x"], "context_window": 0}, "positive integers"),
        ({"models": ["x"], "capabilities": ["flying"]}, "capabilities"),
        ({"models": ["x"], "modalities": {"input": ["smell"]}}, "modalities"),
        ({"models": [], "context_window": 1}, "non-empty list"),
        ({"models": ["x"], "price": 1}, "mapping of models"),
    ],
)
def test_bad_model_info_is_refused_at_start_up(rule: dict[str, Any], problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        parse_facts([rule], "openai")


def test_the_shipped_registry_describes_known_models() -> None:
    registry = load_registry()
    gpt4o = facts_for(registry["openai"].model_info, "gpt-4o")
    assert gpt4o is not None and gpt4o.context_window == 128000 and "vision" in gpt4o.capabilities
    assert facts_for(registry["openai"].model_info, "gpt-4o-mini-tts") is None  # a speech model, not gpt-4o
