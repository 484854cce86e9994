"""An alias's fallbacks on the routes beyond chat: embeddings, messages (relayed natively or
translated), responses and completions; the fakes on loopback, the official SDKs as clients."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import anthropic
import openai
import pytest
import pytest_asyncio

from .conftest import GatewayFactory
from .fakes import FakeProviders

ROUTING = """
models:
  vectors:
    strategy: priority
    deployments:
      - {provider: openai, model: error-503}
      - {provider: anthropic, model: echo}        # serves no embeddings: skipped
      - {provider: mistral, model: mistral-embed}
  claude:
    strategy: priority
    deployments:
      - {provider: anthropic, model: error-529}   # Anthropic's own refusal, relayed natively
      - {provider: openai, model: echo}           # translated through chat
  picky:
    strategy: priority
    deployments:
      - {provider: anthropic, model: error-400}
      - {provider: openai, model: echo}
  replies:
    strategy: priority
    deployments:
      - {provider: openai, model: error-502}
      - {provider: groq, model: echo}
  completer:
    strategy: priority
    deployments:
      - {provider: openai, model: error-500}
      - {provider: ollama, model: echo}
"""


@pytest_asyncio.fixture
async def gateway(gateway_with: GatewayFactory, tmp_path: Path) -> AsyncIterator[str]:
    path = tmp_path / "routing.yaml"
    path.write_text(ROUTING)
    async with gateway_with(ROUTING_ENABLED="true", ROUTING_CONFIG_PATH=str(path)) as url:
        yield url


def oai(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)


def claude(url: str) -> anthropic.AsyncAnthropic:
    return anthropic.AsyncAnthropic(base_url=url, api_key="x", max_retries=0)


HI = [{"role": "user", "content": "hi"}]


def posts(fake: FakeProviders, since: int) -> list[str]:
    return [s.path.split("/")[1] for s in fake.seen[since:] if s.method == "POST"]


async def test_embeddings_fall_back_to_a_deployment_that_embeds(gateway: str, fake: FakeProviders) -> None:
    since = len(fake.seen)
    raw = await oai(gateway).embeddings.with_raw_response.create(model="vectors", input="hello")
    assert len(raw.parse().data) == 1 and raw.parse().data[0].embedding
    assert (raw.headers["x-selected-provider"], raw.headers["x-selected-model"]) == ("mistral", "mistral-embed")
    assert posts(fake, since) == ["openai", "mistral"]


@pytest.mark.parametrize("stream", [False, True])
async def test_messages_fall_back_from_a_native_refusal_to_a_translated_deployment(
    gateway: str, fake: FakeProviders, stream: bool
) -> None:
    since = len(fake.seen)
    client = claude(gateway)
    if stream:
        async with client.messages.stream(model="claude", max_tokens=50, messages=HI) as events:  # type: ignore[arg-type]
            text = "".join([t async for t in events.text_stream])
    else:
        raw = await client.messages.with_raw_response.create(model="claude", max_tokens=50, messages=HI)  # type: ignore[arg-type]
        assert raw.headers["x-selected-provider"] == "openai"
        block = (await raw.parse()).content[0]
        assert block.type == "text"
        text = block.text
    assert text == "You said: hi"
    assert posts(fake, since) == ["anthropic", "openai"]


async def test_a_callers_mistake_on_messages_is_not_sent_elsewhere(gateway: str, fake: FakeProviders) -> None:
    since = len(fake.seen)
    with pytest.raises(anthropic.BadRequestError):
        await claude(gateway).messages.create(model="picky", max_tokens=50, messages=HI)  # type: ignore[arg-type]
    assert posts(fake, since) == ["anthropic"]


async def test_responses_and_completions_fall_back(gateway: str, fake: FakeProviders) -> None:
    since = len(fake.seen)
    raw = await oai(gateway).responses.with_raw_response.create(model="replies", input="hi")
    assert raw.headers["x-selected-provider"] == "groq" and raw.parse().output_text
    completion = await oai(gateway).completions.with_raw_response.create(model="completer", prompt="hi")
    assert completion.headers["x-selected-provider"] == "ollama" and completion.parse().choices
    assert posts(fake, since) == ["openai", "groq", "openai", "ollama"]
