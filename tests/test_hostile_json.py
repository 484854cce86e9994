"""Hostile JSON over raw HTTP: deep nesting and integers beyond 64 bits get a 400, never a 500 or a float."""

from __future__ import annotations

import logging

import httpx
import pytest

from .fakes import FakeProviders

# One OpenAI-compatible provider relayed as is, one translated (Anthropic Messages).
MODELS = ["openai/echo", "anthropic/echo"]


def deep_body(model: str, depth: int) -> bytes:
    """A chat request whose JSON nests ``depth`` levels (the request object is level 1), the nesting
    in a response_format schema: at the same depth in OpenAI's request and in Anthropic's."""
    levels = depth - 3  # request -> response_format -> json_schema -> schema (level 4)
    schema = b'{"a":' * (levels - 1) + b"{}" + b"}" * (levels - 1)
    return (
        b'{"model": "' + model.encode() + b'", "messages": [{"role": "user", "content": "hi"}], '
        b'"response_format": {"type": "json_schema", "json_schema": {"name": "deep", "schema": ' + schema + b"}}}"
    )


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize(
    ("depth", "status"), [(200, 200), (254, 200), (255, 400), (600, 400), (1023, 400), (1025, 400)]
)
async def test_deep_json_gets_400_past_254_levels(
    gateway: str, model: str, depth: int, status: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{gateway}/v1/chat/completions",
            content=deep_body(model, depth),
            headers={"content-type": "application/json"},
        )
    assert response.status_code == status, response.text[:300]
    if status == 400:
        error = response.json()["error"]
        assert error["type"] == "invalid_request_error" and error["code"] == "invalid_json"
        assert "more than 254 levels deep" in error["message"]
    assert "Traceback" not in caplog.text
    assert not [r for r in caplog.records if r.exc_info]


def big_int_body(model: str, number: str, where: str) -> bytes:
    messages = b'[{"role": "user", "content": "hi"}]'
    if where == "schema":
        schema = b'{"type": "object", "properties": {"n": {"type": "integer", "maximum": ' + number.encode() + b"}}}"
        extra = b', "response_format": {"type": "json_schema", "json_schema": {"name": "n", "schema": ' + schema + b"}}"
    else:  # in a tool call's arguments, a JSON string the translating adapters parse
        arguments = b'{\\"n\\": ' + number.encode() + b"}"
        messages = (
            b'[{"role": "user", "content": "hi"}, {"role": "assistant", "content": null, "tool_calls": '
            b'[{"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "' + arguments + b'"}}]}, '
            b'{"role": "tool", "tool_call_id": "call_1", "content": "ok"}]'
        )
        extra = b', "tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]'
    return b'{"model": "' + model.encode() + b'", "messages": ' + messages + extra + b"}"


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("number", ["18446744073709551616", "-9223372036854775809", "1" * 400])
async def test_integers_beyond_64_bits_are_refused(gateway: str, model: str, number: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{gateway}/v1/chat/completions", content=big_int_body(model, number, "schema"))
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["code"] in ("integer_out_of_range", "invalid_json")  # 400 digits: orjson refuses it outright
    assert "64-bit" in error["message"] or "not valid JSON" in error["message"]


async def test_a_big_integer_inside_tool_arguments_is_refused_by_a_translating_adapter(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        body = big_int_body("anthropic/echo", "18446744073709551616", "arguments")
        response = await http.post(f"{gateway}/v1/chat/completions", content=body)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "integer_out_of_range"


@pytest.mark.parametrize(("model", "pid"), [("openai/echo", "openai"), ("anthropic/echo", "anthropic")])
@pytest.mark.parametrize("number", ["18446744073709551615", "-9223372036854775808"])
async def test_integers_at_the_64_bit_edges_reach_the_provider_exactly(
    gateway: str, fake: FakeProviders, model: str, pid: str, number: str
) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{gateway}/v1/chat/completions", content=big_int_body(model, number, "schema"))
    assert response.status_code == 200, response.text
    assert b'"maximum":' + number.encode() + b"}" in fake.last_post(pid).body


async def test_long_digit_runs_inside_strings_are_not_numbers(gateway: str) -> None:
    digits = "123456789012345678901234567890"
    body = b'{"model": "openai/echo", "messages": [{"role": "user", "content": "call -' + digits.encode() + b'"}]}'
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{gateway}/v1/chat/completions", content=body)
    assert response.status_code == 200, response.text
    assert digits in response.json()["choices"][0]["message"]["content"]
