"""Sampling fields per model: the registry's rules decide what reaches the provider, and the
Anthropic fake refuses what the real API refuses, so a request that passes here passes there."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from providers.registry import RegistryError, load_registry

from .fakes import FakeProviders

HELLO = [{"role": "user", "content": "hi"}]
SAMPLING = ("temperature", "top_p", "top_k")


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("model", "sent"),
    [
        # Claude 3 takes all three together.
        ("claude-3-haiku-20240307", {"temperature": 0.5, "top_p": 0.9, "top_k": 40}),
        ("claude-3-7-sonnet-latest", {"temperature": 0.5, "top_p": 0.9, "top_k": 40}),
        # Claude 4 up to 4.6 refuses temperature with top_p: temperature is kept.
        ("claude-sonnet-4-5-20250929", {"temperature": 0.5, "top_k": 40}),
        ("claude-opus-4-1-20250805", {"temperature": 0.5, "top_k": 40}),
        ("claude-opus-4-6", {"temperature": 0.5, "top_k": 40}),
        # Models after Opus 4.6 take none of them.
        ("claude-opus-4-7", {}),
        ("claude-sonnet-5", {}),
        ("claude-opus-5-5", {}),
    ],
)
async def test_openai_clients_sampling_reaches_each_model_as_it_takes_it(
    client: openai.AsyncOpenAI, fake: FakeProviders, model: str, sent: dict[str, Any], stream: bool
) -> None:
    answer = await client.chat.completions.create(  # type: ignore[call-overload]
        model=f"anthropic/{model}",
        messages=HELLO,
        temperature=0.5,
        top_p=0.9,
        extra_body={"top_k": 40},
        stream=stream,
    )
    if stream:
        text = "".join([c.choices[0].delta.content or "" async for c in answer if c.choices])
    else:
        text = answer.choices[0].message.content
    assert text == "You said: hi"
    body = fake.last_post("anthropic").json
    assert body["model"] == model
    assert {k: body[k] for k in SAMPLING if k in body} == sent


async def test_top_p_alone_reaches_a_claude_4_model(client: openai.AsyncOpenAI, fake: FakeProviders) -> None:
    await client.chat.completions.create(model="anthropic/claude-haiku-4-5", messages=HELLO, top_p=0.8)  # type: ignore[arg-type]
    body = fake.last_post("anthropic").json
    assert body["top_p"] == 0.8 and "temperature" not in body


@pytest.mark.parametrize(
    ("model", "fields", "message"),
    [
        ("claude-opus-4-7", {"temperature": 0.5}, "`temperature` is deprecated for this model."),
        ("claude-sonnet-5", {"top_k": 5}, "`top_k` is deprecated for this model."),
        (
            "claude-sonnet-4-5",
            {"temperature": 0.5, "top_p": 0.9},
            "`temperature` and `top_p` cannot both be specified for this model. Please use only one.",
        ),
    ],
)
async def test_the_fake_refuses_what_anthropic_refuses(
    fake: FakeProviders, model: str, fields: dict[str, Any], message: str
) -> None:
    """Without these refusals the test above could not fail."""
    body = {"model": model, "max_tokens": 8, "messages": HELLO, **fields}
    headers = {"x-api-key": "key-anthropic", "anthropic-version": "2023-06-01"}
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{fake.base}/anthropic/v1/messages", json=body, headers=headers)
        accepted = await http.post(
            f"{fake.base}/anthropic/v1/messages", json={**body, "model": "claude-3-5-haiku-latest"}, headers=headers
        )
    assert response.status_code == 400
    assert response.json() == {"type": "error", "error": {"type": "invalid_request_error", "message": message}}
    assert accepted.status_code == 200


def write_registry(tmp_path: Path, anthropic_extra: str) -> Path:
    path = tmp_path / "providers.yaml"
    path.write_text(
        "providers:\n  anthropic:\n    url: https://api.anthropic.com/v1\n    adapter: anthropic\n" + anthropic_extra
    )
    return path


@pytest.mark.parametrize(
    ("extra", "names"),
    [
        ("    sampling: {models: ['*']}\n", "'sampling' must be a list"),
        ("    sampling: [{accepts: [temperature]}]\n", "sampling[0].models"),
        ("    sampling: [{models: ['*'], accepts: [temperature, seed]}]\n", "sampling[0].accepts"),
        ("    sampling: [{models: ['*'], accepts: [top_p], exclusive: [temperature, top_p]}]\n", "exclusive"),
        ("    sampling: [{models: ['*'], accepts: [], default: true}]\n", "sampling[0] must be"),
        ("    tool_call_ids: {max_length: 0}\n", "tool_call_ids.max_length"),
        ("    tool_call_ids: {alphabet: 'z-a'}\n", "tool_call_ids.alphabet"),
        ("    tool_call_ids: {length: 9, max_length: 9}\n", "not both"),
        ("    tool_call_ids: {size: 9}\n", "'tool_call_ids' must be"),
    ],
)
def test_the_registry_loader_checks_the_rules(tmp_path: Path, extra: str, names: str) -> None:
    with pytest.raises(RegistryError, match="provider 'anthropic'") as caught:
        load_registry(write_registry(tmp_path, extra))
    assert names in str(caught.value)


def test_a_rule_with_no_match_leaves_the_fields_alone(tmp_path: Path) -> None:
    from providers.sampling import sampled

    path = write_registry(tmp_path, "    sampling: [{models: ['claude-9*'], accepts: []}]\n")
    spec = load_registry(path)["anthropic"]
    payload = {"temperature": 0.3, "top_p": 0.5, "messages": []}
    assert sampled(payload, spec.sampling, "claude-8") is payload
    assert sampled(payload, spec.sampling, "claude-9-1") == {"messages": []}
