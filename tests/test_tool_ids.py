"""Tool-call ids cross providers: whatever made them, the ids each provider gets fit its rules, and
a tool result still names its call. The fakes refuse ids the real APIs refuse."""

from __future__ import annotations

import re
from typing import Any

import httpx
import openai
import pytest

from providers.registry import load_registry

from .fakes import FakeProviders

GEMINI_ID = "call_0123456789abcdef01234567~c2lnbmF0dXJlLW9mLXRoZS1jYWxs+/9="  # what google/* hands out
LONG_ID = "call_" + "x" * 120
ODD_ID = "id with~+/=.|"
PLAIN_ID = "abcDEF123"  # fits every rule: must arrive as it is
IDS = [GEMINI_ID, LONG_ID, ODD_ID, PLAIN_ID]
TOOLS = [{"type": "function", "function": {"name": f"f{i}", "parameters": {"type": "object"}}} for i in range(4)]
HISTORY: list[dict[str, Any]] = [
    {"role": "user", "content": "hi"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": call_id, "type": "function", "function": {"name": f"f{i}", "arguments": "{}"}}
            for i, call_id in enumerate(IDS)
        ],
    },
    *({"role": "tool", "tool_call_id": call_id, "content": f"result {i}"} for i, call_id in enumerate(IDS)),
]
RULES = {
    "openai": re.compile(r".{1,40}", re.S),
    "mistral": re.compile(r"[a-zA-Z0-9]{9}"),
    "anthropic": re.compile(r"[a-zA-Z0-9_-]{1,64}"),
}


def sent_ids(pid: str, body: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The call ids and the result ids of the request a provider got, in order."""
    if pid == "anthropic":
        blocks = [b for m in body["messages"] if isinstance(m["content"], list) for b in m["content"]]
        return [b["id"] for b in blocks if b["type"] == "tool_use"], [
            b["tool_use_id"] for b in blocks if b["type"] == "tool_result"
        ]
    calls = [c["id"] for m in body["messages"] for c in m.get("tool_calls") or []]
    return calls, [m["tool_call_id"] for m in body["messages"] if m["role"] == "tool"]


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("pid", ["openai", "anthropic", "mistral", "cohere"])
async def test_ids_from_any_provider_reach_each_provider_as_it_takes_them(
    client: openai.AsyncOpenAI, fake: FakeProviders, pid: str, stream: bool
) -> None:
    answer = await client.chat.completions.create(  # type: ignore[call-overload]
        model=f"{pid}/echo", messages=HISTORY, tools=TOOLS, stream=stream
    )
    if stream:
        text = "".join([c.choices[0].delta.content or "" async for c in answer if c.choices])
    else:
        text = answer.choices[0].message.content
    assert text in ("Tool said: result 3", "You said: hi")  # the OpenAI fake echoes the last user text
    calls, results = sent_ids(pid, fake.last_post(pid).json)
    assert calls == results and len(set(calls)) == len(IDS)  # each result still names its call
    assert calls[-1] == PLAIN_ID
    rule = RULES.get(pid)
    if rule is None:  # Cohere takes any id: they go as the client sent them
        assert calls == IDS
    else:
        assert all(rule.fullmatch(call_id) for call_id in calls), calls
        assert all(
            call_id == original for call_id, original in zip(calls, IDS, strict=True) if rule.fullmatch(original)
        )


async def test_the_mapping_is_the_same_on_every_request(client: openai.AsyncOpenAI, fake: FakeProviders) -> None:
    seen = []
    for _ in range(2):
        await client.chat.completions.create(model="mistral/echo", messages=HISTORY)  # type: ignore[arg-type]
        seen.append(sent_ids("mistral", fake.last_post("mistral").json))
    assert seen[0] == seen[1]


async def test_a_conversation_without_tool_calls_is_relayed_as_sent(fake: FakeProviders, gateway: str) -> None:
    raw = b'{"model": "mistral/echo", "messages": [{"role": "user", "content": "say \\"tool_call_id\\""}]}'
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{gateway}/v1/chat/completions", content=raw)
    assert response.status_code == 200
    assert fake.last_post("mistral").json["messages"] == [{"role": "user", "content": 'say "tool_call_id"'}]


@pytest.mark.parametrize(
    ("pid", "call_id", "message"),
    [
        ("openai", LONG_ID, "string too long. Expected a string with maximum length 40"),
        ("mistral", "call_abc", "but must be a-z, A-Z, 0-9, with a length of 9."),
    ],
)
async def test_the_openai_style_fakes_refuse_ids_their_provider_refuses(
    fake: FakeProviders, pid: str, call_id: str, message: str
) -> None:
    """Without these refusals the tests above could not fail."""
    history = [
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "tool_calls": [{"id": call_id, "type": "function", "function": {"name": "f", "arguments": "{}"}}],
        },
        {"role": "tool", "tool_call_id": call_id, "content": "done"},
    ]
    spec = load_registry()[pid]
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{fake.url_for(spec)}/chat/completions",
            json={"model": "echo", "messages": history},
            headers={"Authorization": f"Bearer key-{pid}"},
        )
        orphan = await http.post(
            f"{fake.url_for(spec)}/chat/completions",
            json={"model": "echo", "messages": [history[0], {**history[2], "tool_call_id": "abcDEF123"}]},
            headers={"Authorization": f"Bearer key-{pid}"},
        )
    assert response.status_code == 400 and message in response.text
    assert orphan.status_code == 400 and "must be a response to a preceeding message" in orphan.text


@pytest.mark.parametrize("call_id", [GEMINI_ID, ODD_ID, "t" * 65])
async def test_the_anthropic_fake_refuses_ids_anthropic_refuses(fake: FakeProviders, call_id: str) -> None:
    messages = [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": [{"type": "tool_use", "id": call_id, "name": "f", "input": {}}]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call_id, "content": "done"}]},
    ]
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{fake.base}/anthropic/v1/messages",
            json={"model": "claude-opus-4-7", "max_tokens": 8, "messages": messages},
            headers={"x-api-key": "key-anthropic", "anthropic-version": "2023-06-01"},
        )
    assert response.status_code == 400
    message = response.json()["error"]["message"]
    assert message.endswith(("String should match pattern '^[a-zA-Z0-9_-]+$'", "at most 64 characters"))


def test_the_rules_are_registry_data() -> None:
    registry = load_registry()
    openai_ids, mistral_ids = registry["openai"].tool_call_ids, registry["mistral"].tool_call_ids
    assert openai_ids is not None and mistral_ids is not None
    assert openai_ids.conform(PLAIN_ID) == PLAIN_ID and len(openai_ids.conform(LONG_ID)) <= 40
    assert mistral_ids.conform(GEMINI_ID) == mistral_ids.conform(GEMINI_ID) != mistral_ids.conform(LONG_ID)
    assert registry["google"].tool_call_ids is None  # Gemini reads its signatures back from its own ids
    messages = [{"role": "user", "content": "hi"}]
    assert mistral_ids.conform_messages(messages) is None  # nothing to change: nothing copied
