"""/proxy to the native APIs, as the README shows it and as the providers' own SDKs call it, against
fakes that accept what the real APIs accept (string content, no role, either Gemini version)."""

from __future__ import annotations

import re
from pathlib import Path

import anthropic
import httpx
import pytest
from google import genai
from google.genai import types

README = Path(__file__).resolve().parent.parent / "README.md"
# The fake serves each provider under /<id>/ + its real path, so /proxy/<id>/<id>/... reaches it.
ANTHROPIC = "/proxy/anthropic/anthropic"
GOOGLE = "/proxy/google/google"


def readme_proxy_example() -> tuple[str, bytes]:
    """The path and body of the README's proxy curl example."""
    match = re.search(r"curl -s localhost:8080(/proxy/\S+) .*?-d '([^']+)'", README.read_text(), re.S)
    assert match is not None, "the README's proxy example moved"
    return match.group(1), match.group(2).encode()


async def test_the_readmes_proxy_example_works(gateway: str) -> None:
    path, body = readme_proxy_example()
    assert path == "/proxy/anthropic/v1/messages"
    async with httpx.AsyncClient() as http:
        response = await http.post(
            gateway + path.replace("/proxy/anthropic", ANTHROPIC),
            content=body,
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 200, response.text
    answer = anthropic.types.Message.model_validate(response.json())
    assert [b.text for b in answer.content if b.type == "text"] == ["You said: hi"]


async def test_anthropics_sdk_through_the_proxy(gateway: str) -> None:
    client = anthropic.AsyncAnthropic(base_url=gateway + ANTHROPIC, api_key="caller-key", max_retries=0)
    answer = await client.messages.create(
        model="claude-sonnet-5",
        max_tokens=64,
        system="Be brief.",
        messages=[{"role": "user", "content": "hi"}],
    )
    assert [b.text for b in answer.content if b.type == "text"] == ["You said: hi"]


@pytest.mark.parametrize("version", ["v1", "v1beta"])
async def test_gemini_generate_content_through_the_proxy(gateway: str, version: str) -> None:
    body = {"contents": [{"parts": [{"text": "hi"}]}], "generation_config": {"temperature": 0.2}}  # as Google's curl
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{gateway}{GOOGLE}/{version}/models/gemini-2.5-flash:generateContent", json=body)
    assert response.status_code == 200, response.text
    answer = types.GenerateContentResponse.model_validate(response.json())
    assert answer.text == "You said: hi"


@pytest.mark.parametrize("version", ["v1", "v1beta"])
async def test_google_genai_sdk_through_the_proxy(gateway: str, version: str) -> None:
    options = types.HttpOptions(base_url=gateway + GOOGLE, api_version=version)
    client = genai.Client(api_key="caller-key", http_options=options)
    answer = await client.aio.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert answer.text == "You said: hi"


async def test_anthropic_takes_consecutive_turns_of_one_role(gateway: str) -> None:
    """The API combines them into one turn (its reference says so), so the fake does too."""
    client = anthropic.AsyncAnthropic(base_url=gateway + ANTHROPIC, api_key="caller-key", max_retries=0)
    answer = await client.messages.create(
        model="claude-sonnet-5",
        max_tokens=64,
        messages=[
            {"role": "user", "content": "first"},
            {"role": "user", "content": [{"type": "text", "text": "second"}]},
        ],
    )
    assert [b.text for b in answer.content if b.type == "text"] == ["You said: first second"]
