"""One suite over every registry entry: a new provider is tested by adding it to the registry."""

from __future__ import annotations

import openai
import pytest

from providers.registry import load_registry

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
