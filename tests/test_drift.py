"""One suite over every registry entry: a new provider is tested by adding it to the registry."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import openai
import orjson
import pytest
import pytest_asyncio
from openai.types import Completion, ImagesResponse, ModerationCreateResponse
from openai.types.audio import Transcription, Translation

from gateway.relayed import ANSWERS, UPLOADS
from providers.registry import load_registry

from .conftest import GatewayFactory
from .fake_endpoints import heard, speech_audio
from .fakes import FakeProviders

PROVIDERS = list(load_registry())


@pytest.mark.parametrize("pid", PROVIDERS)
async def test_provider_lists_models_and_chats(pid: str, client: openai.AsyncOpenAI, fake: FakeProviders) -> None:
    spec = fake.registry[pid]
    page = await client.models.with_raw_response.list(extra_query={"provider": pid})
    document = page.http_response.json()
    assert document["provider"] == pid
    assert [m["id"] for m in document["data"]] == [f"{pid}/model-a", f"{pid}/model-b"]

    answer = await client.chat.completions.create(
        model=f"{pid}/model-a", messages=[{"role": "user", "content": "ping"}]
    )
    assert answer.choices[0].message.content == "You said: ping"
    sent = fake.last_post(pid)
    # The provider's own model name reaches it, in the body or (Gemini) in the path.
    assert sent.json.get("model") == "model-a" or "/model-a:" in sent.path

    stream = await client.chat.completions.create(
        model=f"{pid}/model-a",
        messages=[{"role": "user", "content": "ping"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
    assert text == "You said: ping"
    for param in spec.drop_params:
        assert param not in fake.last_post(pid).json


# -- the endpoints beyond chat each entry lists, relayed (the other routes have suites of their own)

RELAYED = (*ANSWERS, *UPLOADS)


async def completions(client: openai.AsyncOpenAI, model: str) -> None:
    raw = await client.completions.with_raw_response.create(model=model, prompt="ping")
    assert Completion.model_validate(orjson.loads(raw.http_response.content)).choices[0].text == "You said: ping"
    stream = await client.completions.create(model=model, prompt="ping", stream=True)
    assert "".join([c.choices[0].text async for c in stream if c.choices]) == "You said: ping"


async def moderations(client: openai.AsyncOpenAI, model: str) -> None:
    raw = await client.moderations.with_raw_response.create(model=model, input="hello")
    answer = ModerationCreateResponse.model_validate(orjson.loads(raw.http_response.content))
    assert not answer.results[0].flagged


async def images(client: openai.AsyncOpenAI, model: str) -> None:
    raw = await client.images.with_raw_response.generate(model=model, prompt="a cat", response_format="b64_json")
    answer = ImagesResponse.model_validate(orjson.loads(raw.http_response.content))
    assert answer.data and answer.data[0].b64_json


async def speech(client: openai.AsyncOpenAI, model: str) -> None:
    audio = await client.audio.speech.create(model=model, voice="alloy", input="ping")
    assert audio.content == speech_audio("You said: ping", "alloy", "mp3")


async def transcriptions(client: openai.AsyncOpenAI, model: str) -> None:
    answer = await client.audio.transcriptions.create(model=model, file=("a.wav", b"RIFF"))
    assert Transcription.model_validate(answer.model_dump()).text == heard(4, "a.wav", "transcribe")


async def translations(client: openai.AsyncOpenAI, model: str) -> None:
    answer = await client.audio.translations.create(model=model, file=("a.wav", b"RIFF"), response_format="json")
    assert Translation.model_validate(answer.model_dump()).text == heard(4, "a.wav", "translate")


CALLS: dict[str, Callable[[openai.AsyncOpenAI, str], Awaitable[None]]] = {
    "completions": completions,
    "moderations": moderations,
    "images": images,
    "speech": speech,
    "transcriptions": transcriptions,
    "translations": translations,
}
LISTED = [(pid, name) for pid, spec in load_registry().items() for name in spec.endpoints if name in RELAYED]


@pytest_asyncio.fixture(scope="session")
async def every_route(gateway_with: GatewayFactory) -> AsyncIterator[openai.AsyncOpenAI]:
    async with gateway_with(ENABLE_IMAGES="true") as url:
        yield openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="not-checked", max_retries=0)


def test_every_relayed_endpoint_has_a_drift_check() -> None:
    assert set(CALLS) == set(RELAYED)
    # Relayed means sent as OpenAI's shapes: only an OpenAI-compatible entry may list one.
    registry = load_registry()
    assert all(registry[pid].adapter == "openai" for pid, _ in LISTED)


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # the SDK marks translations.create so
@pytest.mark.parametrize(("pid", "endpoint"), LISTED)
async def test_listed_endpoint_is_served(
    pid: str, endpoint: str, every_route: openai.AsyncOpenAI, fake: FakeProviders
) -> None:
    await CALLS[endpoint](every_route, f"{pid}/model-a")
    sent = fake.last_post(pid)
    assert sent.path.endswith(fake.registry[pid].endpoints[endpoint])
    assert sent.json.get("model") == "model-a" if sent.body.startswith(b"{") else b"model-a\r\n" in sent.body
