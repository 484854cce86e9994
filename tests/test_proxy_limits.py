"""Rate limits on the model-less routes: ``/proxy/{provider}/...`` (the caller's request limits,
global, and a provider's ``<provider>/*`` rule) and ``/v1/messages/count_tokens`` (requests only)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import anthropic
import httpx
import openai
import pytest

from .conftest import GatewayFactory
from .fakes import FakeProviders
from .test_limits import KEYS, limited

pytestmark = pytest.mark.timeout(45)


def models_path(fake: FakeProviders, pid: str) -> str:
    """The provider's model list through the raw proxy, as its own SDK would ask for it."""
    return f"/proxy/{pid}" + urlsplit(fake.url_for(fake.registry[pid])).path + "/models"


async def test_the_proxy_and_count_tokens_take_from_the_callers_request_limits(
    gateway_with: GatewayFactory, fake: FakeProviders
) -> None:
    rules = {"default": {"requests_per_minute": 3, "tokens_per_minute": 1000}}
    async with gateway_with(**limited(rules)) as url, httpx.AsyncClient(base_url=url) as http:
        alice = {"Authorization": f"Bearer {KEYS['alice']}"}
        proxied = await http.get(models_path(fake, "openai"), headers=alice)
        assert proxied.status_code == 200 and proxied.json()["data"]
        claude = anthropic.AsyncAnthropic(base_url=url, api_key=KEYS["alice"], max_retries=0)
        messages: Any = [{"role": "user", "content": "hi"}]
        counted = await claude.messages.with_raw_response.count_tokens(
            model="anthropic/claude-sonnet-4-5", messages=messages
        )
        # A count and a proxied call are requests, and cost no tokens.
        assert [int(r.headers["x-ratelimit-remaining-requests"]) for r in (proxied, counted)] == [2, 1]
        assert int(counted.headers["x-ratelimit-remaining-tokens"]) == 1000
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=KEYS["alice"], max_retries=0)
        await client.chat.completions.create(model="openai/echo", messages=messages)
        refused = await http.get(models_path(fake, "openai"), headers=alice)
        assert refused.status_code == 429 and 1 <= int(refused.headers["retry-after"]) <= 20
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
        assert refused.headers["x-ratelimit-remaining-requests"] == "0"
        with pytest.raises(anthropic.RateLimitError):
            await claude.messages.count_tokens(model="anthropic/claude-sonnet-4-5", messages=messages)


async def test_a_providers_rule_holds_its_proxy_and_its_models(
    gateway_with: GatewayFactory, fake: FakeProviders
) -> None:
    rules = {"models": {"groq/*": {"requests_per_minute": 2}}}
    async with gateway_with(**limited(rules)) as url, httpx.AsyncClient(base_url=url) as http:
        bob = {"Authorization": f"Bearer {KEYS['bob']}"}
        first = await http.get(models_path(fake, "groq"), headers=bob)
        assert first.status_code == 200 and first.headers["x-ratelimit-remaining-requests"] == "1"
        assert (await http.get(models_path(fake, "openai"), headers=bob)).status_code == 200  # another provider
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=KEYS["alice"], max_retries=0)
        await client.chat.completions.create(model="groq/echo", messages=[{"role": "user", "content": "hi"}])
        refused = await http.get(models_path(fake, "groq"), headers=bob)  # shared by every caller
        assert refused.status_code == 429
        assert "the provider groq is limited to 2 requests per minute" in refused.json()["error"]["message"]
