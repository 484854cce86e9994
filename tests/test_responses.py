"""``POST /v1/responses`` with the openai SDK as the client: relayed to OpenAI's fake (which serves
the Responses API), translated through chat for an OpenAI-compatible provider without it (DeepSeek),
Gemini and Anthropic. Answers and events are validated with the SDK's own Responses types."""

from __future__ import annotations

import asyncio
import base64
import random
from typing import Any

import httpx
import openai
import orjson
import pydantic
import pytest
from openai.types.responses import Response, ResponseStreamEvent

from providers.registry import load_registry

from .conftest import GatewayFactory
from .fake_responses import ARGUMENTS
from .fakes import RESPONSES, FakeProviders, fake_key
from .test_metrics import TOKENS, free_port, until

RELAYED = ["openai", "groq"]
TRANSLATED = ["deepseek", "google", "anthropic"]
EVERY = RELAYED + TRANSLATED
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": True,
}
EVENTS = pydantic.TypeAdapter(ResponseStreamEvent)
PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n fake").decode()


async def created(client: openai.AsyncOpenAI, **params: Any) -> Response:
    """A JSON answer, validated from its bytes by the SDK's ``Response`` type."""
    raw = await client.responses.with_raw_response.create(**params)
    return Response.model_validate_json(raw.http_response.content)


async def events(gateway: str, body: dict[str, Any]) -> list[Any]:
    """A stream's events as sent, each validated by ``ResponseStreamEvent``, numbered from 0 in order,
    its ``event:`` line naming its type."""
    out = []
    url = f"{gateway}/v1/responses"
    async with httpx.AsyncClient(timeout=10) as http, http.stream("POST", url, json={**body, "stream": True}) as answer:
        assert answer.status_code == 200, await answer.aread()
        assert answer.headers["content-type"].startswith("text/event-stream")
        text = (await answer.aread()).decode()
    for block in text.split("\n\n"):
        if not block.strip():
            continue
        lines = dict(line.split(": ", 1) for line in block.split("\n"))
        event = EVENTS.validate_json(lines["data"])
        assert lines["event"] == event.type
        out.append(event)
    assert [e.sequence_number for e in out] == list(range(len(out)))
    return out


@pytest.mark.parametrize("pid", EVERY)
async def test_a_text_answer_is_a_response_object(client: openai.AsyncOpenAI, pid: str) -> None:
    answer = await created(client, model=f"{pid}/echo", input="Hello there", instructions="Be brief.")
    assert answer.object == "response" and answer.status == "completed"
    assert answer.output_text == "You said: Hello there"
    assert answer.output[0].type == "message" and answer.output[0].role == "assistant"
    assert answer.usage is not None and answer.usage.input_tokens > 0 and answer.usage.output_tokens > 0
    assert answer.usage.total_tokens == answer.usage.input_tokens + answer.usage.output_tokens


@pytest.mark.parametrize("pid", TRANSLATED)
async def test_instructions_and_input_items_become_chat_messages(
    client: openai.AsyncOpenAI, fake: FakeProviders, pid: str
) -> None:
    given = [
        {"role": "developer", "content": "Answer in French."},
        {"role": "user", "content": [{"type": "input_text", "text": "Hi"}]},
        {
            "type": "message",
            "role": "assistant",
            "content": [{"type": "output_text", "text": "Bonjour", "annotations": []}],
        },
        {"role": "user", "content": [{"type": "input_text", "text": "How"}, {"type": "input_text", "text": "are you"}]},
    ]
    answer = await created(client, model=f"{pid}/echo", input=given, instructions="Be brief.", max_output_tokens=50)
    assert answer.output_text == "You said: How are you"
    assert answer.instructions == "Be brief." and answer.max_output_tokens == 50
    if pid == "deepseek":  # its native protocol is chat: what it received is the translation itself
        assert fake.last_post("deepseek").json["messages"] == [
            {"role": "system", "content": "Be brief."},
            {"role": "system", "content": "Answer in French."},
            {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
            {"role": "assistant", "content": "Bonjour"},
            {"role": "user", "content": [{"type": "text", "text": "How"}, {"type": "text", "text": "are you"}]},
        ]
        assert fake.last_post("deepseek").json["max_tokens"] == 50


@pytest.mark.parametrize("pid", EVERY)
async def test_a_stream_has_the_events_of_the_api_and_the_helper_reads_it(
    client: openai.AsyncOpenAI, gateway: str, pid: str
) -> None:
    sent = await events(gateway, {"model": f"{pid}/echo", "input": "Hello there"})
    kinds = [e.type for e in sent]
    assert kinds[:2] == ["response.created", "response.in_progress"] and kinds[-1] == "response.completed"
    for kind in ("response.output_item.added", "response.content_part.added", "response.output_text.done"):
        assert kind in kinds
    assert "".join(e.delta for e in sent if e.type == "response.output_text.delta") == "You said: Hello there"
    final = sent[-1].response
    assert final.id == sent[0].response.id and final.usage is not None and final.usage.total_tokens > 0
    async with client.responses.stream(model=f"{pid}/echo", input="Hello there") as stream:
        response = await stream.get_final_response()
    assert response.output_text == "You said: Hello there" and response.status == "completed"


@pytest.mark.parametrize("pid", EVERY)
@pytest.mark.parametrize("streamed", [False, True])
async def test_a_function_call_and_its_output_round_trip(
    client: openai.AsyncOpenAI, fake: FakeProviders, pid: str, streamed: bool
) -> None:
    question = {"role": "user", "content": "What is the weather in Paris?"}
    if streamed:
        async with client.responses.stream(model=f"{pid}/tool", input=[question], tools=[WEATHER]) as stream:
            first: Response = await stream.get_final_response()
    else:
        first = await created(client, model=f"{pid}/tool", input=[question], tools=[WEATHER])
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1 and calls[0].name == "get_weather"
    assert orjson.loads(calls[0].arguments) == {"city": "Paris"}
    history = [
        question,
        calls[0].model_dump(exclude_none=True),
        {"type": "function_call_output", "call_id": calls[0].call_id, "output": "22C"},
    ]
    second = await created(client, model=f"{pid}/echo", input=history, tools=[WEATHER])
    if pid == "deepseek":  # the chat fake echoes the user; what matters is the turn it received
        messages = fake.last_post("deepseek").json["messages"]
        assert messages[1]["tool_calls"][0]["id"] == calls[0].call_id
        assert messages[2] == {"role": "tool", "tool_call_id": calls[0].call_id, "content": "22C"}
    else:
        assert second.output_text == "Tool said: 22C"


@pytest.mark.parametrize("pid", ["google", "anthropic"])
async def test_a_json_schema_format_is_parsed_by_the_sdk(client: openai.AsyncOpenAI, pid: str) -> None:
    class Weather(pydantic.BaseModel):
        city: str

    parsed = await client.responses.parse(model=f"{pid}/echo", input="Weather as JSON", text_format=Weather)
    assert parsed.output_parsed == Weather(city="Paris")
    async with client.responses.stream(model=f"{pid}/echo", input="Weather as JSON", text_format=Weather) as stream:
        final = await stream.get_final_response()
    assert final.output_parsed == Weather(city="Paris")


async def test_text_format_reasoning_and_sampling_reach_chat(client: openai.AsyncOpenAI, fake: FakeProviders) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    await created(
        client,
        model="deepseek/echo",
        input="hi",
        text={"format": {"type": "json_schema", "name": "weather", "schema": schema, "strict": True}},
        reasoning={"effort": "low"},
        temperature=0.3,
        top_p=0.9,
        tools=[WEATHER],
        tool_choice={"type": "function", "name": "get_weather"},
        parallel_tool_calls=False,
    )
    sent = fake.last_post("deepseek").json
    assert sent["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "weather", "schema": schema, "strict": True},
    }
    assert sent["reasoning_effort"] == "low" and sent["temperature"] == 0.3 and sent["top_p"] == 0.9
    assert sent["tools"] == [
        {
            "type": "function",
            "function": {k: WEATHER[k] for k in ("name", "description", "parameters", "strict")},
        }
    ]
    assert sent["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert sent["parallel_tool_calls"] is False and sent["model"] == "echo"


@pytest.mark.parametrize("pid", ["openai", "google", "anthropic"])
async def test_images_pass_when_vision_is_on_and_are_refused_when_off(
    client: openai.AsyncOpenAI, gateway_with: GatewayFactory, pid: str
) -> None:
    content = [
        {"type": "input_text", "text": "What is this?"},
        {"type": "input_image", "image_url": PNG, "detail": "auto"},
    ]
    given = [{"role": "user", "content": content}]
    with pytest.raises(openai.BadRequestError) as refused:
        await client.responses.create(model=f"{pid}/echo", input=given)  # type: ignore[arg-type]
    assert refused.value.code == "vision_disabled"
    async with gateway_with(ENABLE_VISION="true") as url:
        seeing = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        answer = await created(seeing, model=f"{pid}/echo", input=given)
    assert answer.output_text == "You said: What is this? [1 images]"


@pytest.mark.parametrize(
    ("params", "code", "param"),
    [
        ({"input": "hi", "tools": [{"type": "web_search"}]}, "unsupported_tool", "tools[0].type"),
        ({"input": "hi", "previous_response_id": "resp_1"}, "state_not_supported", "previous_response_id"),
        ({"input": "hi", "conversation": "conv_1"}, "state_not_supported", "conversation"),
        ({"input": "hi", "background": True}, "state_not_supported", "background"),
        ({"input": [{"type": "item_reference", "id": "msg_1"}]}, "state_not_supported", "input[0]"),
        ({"input": [{"type": "web_search_call", "id": "ws_1"}]}, "unsupported_item", "input[0].type"),
        (
            {"input": [{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}]},
            "unsupported_content",
            None,
        ),
        ({"input": "hi", "tool_choice": {"type": "web_search_preview"}}, "unsupported_tool", "tool_choice"),
        ({}, None, "input"),
        ({"input": [{"role": "robot", "content": "hi"}]}, None, "input[0].role"),
        ({"input": "hi", "max_output_tokens": 0}, None, "max_output_tokens"),
        ({"input": "hi", "text": {"format": {"type": "json_schema", "name": "x"}}}, None, "text.format.schema"),
    ],
)
async def test_what_translation_cannot_serve_is_a_clear_400(
    client: openai.AsyncOpenAI, params: dict[str, Any], code: str | None, param: str | None
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        await client.responses.create(model="anthropic/echo", **params)
    body = refused.value.body
    assert isinstance(body, dict) and set(body) == {"message", "type", "code", "param"}
    assert body["type"] == "invalid_request_error" and body["message"].endswith(".")
    if code is not None:
        assert body["code"] == code
    if param is not None:
        assert body["param"] == param


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        (b"not json", None, None),
        (b"[]", None, "invalid_json"),
        (b'{"input": "hi"}', "model", None),
        (b'{"model": "echo", "input": "hi"}', "model", "unknown_provider"),
        (b'{"model": "nowhere/echo", "input": "hi"}', "model", "unknown_provider"),
        (b'{"model": "openai/echo", "input": "hi", "stream": "yes"}', "stream", None),
    ],
)
async def test_a_bad_body_is_a_400_in_the_envelope(
    gateway: str, body: bytes, param: str | None, code: str | None
) -> None:
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"{gateway}/v1/responses", content=body, headers={"Content-Type": "application/json"})
    assert answer.status_code == 400
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "code", "param"} and error["param"] == param
    if code is not None:
        assert error["code"] == code


async def test_a_body_over_the_limit_is_a_413(gateway_with: GatewayFactory) -> None:
    async with gateway_with(SERVER_MAX_REQUEST_BODY_SIZE="1000") as url, httpx.AsyncClient() as http:
        answer = await http.post(f"{url}/v1/responses", json={"model": "openai/echo", "input": "x" * 2000})
    assert answer.status_code == 413 and answer.json()["error"]["code"] == "request_too_large"


@pytest.mark.parametrize("pid", EVERY)
@pytest.mark.parametrize(("status", "error"), [(429, openai.RateLimitError), (500, openai.InternalServerError)])
async def test_upstream_errors_keep_their_status_in_the_envelope(
    client: openai.AsyncOpenAI, pid: str, status: int, error: type[openai.APIStatusError]
) -> None:
    for stream in (False, True):
        with pytest.raises(error) as raised:
            await client.responses.create(model=f"{pid}/error-{status}", input="hi", stream=stream)  # type: ignore[call-overload]
        assert raised.value.status_code == status
        assert isinstance(raised.value.body, dict) and str(status) in raised.value.body["message"]


async def test_the_relay_rewrites_only_the_model_and_sends_the_gateways_credential(
    gateway: str, fake: FakeProviders
) -> None:
    body = {
        "model": "openai/echo",
        "input": [{"role": "user", "content": "hi"}],
        "include": ["reasoning.encrypted_content"],
        "store": False,
        "previous_response_id": "resp_earlier",
        "metadata": {"team": "blue"},
        "truncation": "auto",
    }
    caller = {"Authorization": "Bearer caller-secret", "x-api-key": "caller-secret", "OpenAI-Organization": "org-x"}
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"{gateway}/v1/responses", json=body, headers=caller)
    assert answer.status_code == 200
    Response.model_validate_json(answer.content)
    seen = fake.last_post("openai")
    assert seen.path.endswith("/v1/responses")
    assert seen.json == {**body, "model": "echo"}
    assert seen.headers["authorization"] == f"Bearer {fake_key('openai')}"
    assert "caller-secret" not in str(seen.headers) and "openai-organization" not in seen.headers


async def test_a_translated_call_never_carries_the_callers_credential(gateway: str, fake: FakeProviders) -> None:
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{gateway}/v1/responses",
            json={"model": "deepseek/echo", "input": "hi"},
            headers={"Authorization": "Bearer caller-secret"},
        )
    assert answer.status_code == 200
    seen = fake.last_post("deepseek")
    assert seen.headers["authorization"] == f"Bearer {fake_key('deepseek')}"
    assert "caller-secret" not in str(seen.headers)


@pytest.mark.parametrize("pid", ["openai", "deepseek"])
async def test_the_providers_key_never_reaches_the_client(gateway: str, pid: str) -> None:
    async with httpx.AsyncClient() as http:
        answer = await http.post(f"{gateway}/v1/responses", json={"model": f"{pid}/leak", "input": "hi"})
        async with http.stream(
            "POST", f"{gateway}/v1/responses", json={"model": f"{pid}/leak", "input": "hi", "stream": True}
        ) as streamed:
            text = (await streamed.aread()).decode()
    assert answer.status_code == 200
    assert fake_key(pid) not in answer.text and fake_key(pid) not in text
    assert "***" in Response.model_validate_json(answer.content).output_text and "***" in text


async def test_a_relayed_stream_cut_off_ends_with_an_error_event(gateway: str) -> None:
    sent = await events(gateway, {"model": "openai/broken-stream", "input": "hi"})
    assert [e.type for e in sent[:4]] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert sent[-1].type == "error" and sent[-1].code == "upstream_unreachable"


@pytest.mark.parametrize("model", ["broken-stream", "midstream-error"])
async def test_a_translated_stream_that_fails_ends_with_response_failed(gateway: str, model: str) -> None:
    sent = await events(gateway, {"model": f"deepseek/{model}", "input": "hi there you"})
    assert sent[0].type == "response.created" and sent[-1].type == "response.failed"
    failed = sent[-1].response
    assert failed.status == "failed" and failed.error is not None and failed.error.code == "server_error"
    if model == "midstream-error":
        assert "fake mid-stream failure" in failed.error.message


@pytest.mark.parametrize("pid", ["openai", "deepseek"])
async def test_a_client_that_leaves_cancels_the_upstream(gateway: str, fake: FakeProviders, pid: str) -> None:
    seen = RESPONSES.disconnects if pid == "openai" else fake.disconnects
    before = seen.count("hang")
    async with (
        httpx.AsyncClient() as http,
        http.stream(
            "POST", f"{gateway}/v1/responses", json={"model": f"{pid}/hang", "input": "hi", "stream": True}
        ) as answer,
    ):
        async for line in answer.aiter_lines():
            if line.startswith("data:"):
                break
    for _ in range(200):
        if seen.count("hang") > before:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the upstream call went on after the client left")


async def test_a_length_finish_is_an_incomplete_response(client: openai.AsyncOpenAI, gateway: str) -> None:
    answer = await created(client, model="anthropic/long", input="hi")
    assert answer.status == "incomplete" and answer.incomplete_details is not None
    assert answer.incomplete_details.reason == "max_output_tokens"
    sent = await events(gateway, {"model": "google/long", "input": "hi"})
    assert sent[-1].type == "response.incomplete"


@pytest.mark.parametrize("pid", ["google", "anthropic"])
async def test_reasoning_is_a_reasoning_item(client: openai.AsyncOpenAI, gateway: str, pid: str) -> None:
    answer = await created(client, model=f"{pid}/thinking", input="hi")
    assert [item.type for item in answer.output] == ["reasoning", "message"]
    reasoning = answer.output[0]
    assert reasoning.type == "reasoning" and reasoning.content and "think" in reasoning.content[0].text
    sent = await events(gateway, {"model": f"{pid}/thinking", "input": "hi"})
    assert any(e.type == "response.reasoning_text.delta" for e in sent)
    assert [item.type for item in sent[-1].response.output] == ["reasoning", "message"]


async def test_arguments_stream_as_deltas(gateway: str) -> None:
    sent = await events(gateway, {"model": "anthropic/tool", "input": "hi", "tools": [WEATHER]})
    deltas = [e.delta for e in sent if e.type == "response.function_call_arguments.delta"]
    assert len(deltas) > 1 and orjson.loads("".join(deltas)) == orjson.loads(ARGUMENTS)
    done = next(e for e in sent if e.type == "response.function_call_arguments.done")
    assert orjson.loads(done.arguments) == {"city": "Paris"}


@pytest.mark.parametrize(("pid", "tokens"), [("openai", (13, 6)), ("deepseek", (11, 7)), ("anthropic", (11, 7))])
@pytest.mark.parametrize("streamed", [False, True])
async def test_telemetry_counts_a_responses_call_as_chat_with_its_usage(
    gateway_with: GatewayFactory, pid: str, tokens: tuple[int, int], streamed: bool
) -> None:
    port = free_port()
    model = f"metered-{'stream' if streamed else 'json'}"
    series = {
        "gen_ai_provider_name": pid,
        "gen_ai_request_model": model,
        "gen_ai_response_model": model,
        "gen_ai_operation_name": "chat",
    }
    async with gateway_with(TELEMETRY_ENABLED="true", TELEMETRY_METRICS_PORT=str(port)) as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        if streamed:
            async with client.responses.stream(model=f"{pid}/{model}", input="hi") as stream:
                await stream.get_final_response()
        else:
            await client.responses.create(model=f"{pid}/{model}", input="hi")
        after = await until(port, "gen_ai_server_request_duration_seconds_count", 1, **series)
    assert after.value(TOKENS, gen_ai_token_type="input", **series) == tokens[0]
    assert after.value(TOKENS, gen_ai_token_type="output", **series) == tokens[1]


async def test_model_policy_and_routing_apply_as_for_chat(gateway_with: GatewayFactory, fake: FakeProviders) -> None:
    async with gateway_with(DISALLOWED_MODELS="deepseek/echo, openai/echo") as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        for model in ("deepseek/echo", "openai/echo"):
            with pytest.raises(openai.PermissionDeniedError):
                await client.responses.create(model=model, input="hi")
        answer = await client.responses.create(model="echo-2", input="hi", extra_query={"provider": "deepseek"})
        assert answer.output_text == "You said: hi" and fake.last_post("deepseek").json["model"] == "echo-2"
    async with gateway_with(ROUTING_STRATEGY="header", ROUTING_HEADER_NAME="X-Model") as url:
        routed = openai.AsyncOpenAI(
            base_url=f"{url}/v1", api_key="x", max_retries=0, default_headers={"X-Model": "mistral/echo"}
        )
        await routed.responses.create(model="openai/echo", input="hi")
        assert fake.last_post("mistral").json["model"] == "echo"
    async with gateway_with(ROUTING_STRATEGY="path") as url:
        in_path = openai.AsyncOpenAI(base_url=f"{url}/anthropic%2Fecho/v1", api_key="x", max_retries=0)
        answer = await in_path.responses.create(model="ignored", input="hi")
        assert answer.output_text == "You said: hi" and fake.last_post("anthropic").json["model"] == "echo"
        async with in_path.responses.stream(model="ignored", input="hi") as stream:
            assert (await stream.get_final_response()).output_text == "You said: hi"


@pytest.mark.parametrize("pid", list(load_registry()))
async def test_every_registry_entry_answers_responses(
    client: openai.AsyncOpenAI, fake: FakeProviders, pid: str
) -> None:
    """Relayed where the entry lists ``responses``, translated through chat elsewhere: the same answer."""
    answer = await created(client, model=f"{pid}/model-a", input="ping")
    assert answer.output_text == "You said: ping"
    sent = fake.last_post(pid)
    relayed = fake.registry[pid].endpoints.get("responses")
    assert sent.path.endswith(relayed) if relayed else "input" not in sent.json
    async with client.responses.stream(model=f"{pid}/model-a", input="ping") as stream:
        final = await stream.get_final_response()
    assert final.output_text == "You said: ping"
    # Usage comes with a relayed stream, and a translated one where the provider takes stream_options.
    assert (final.usage is not None) is (bool(relayed) or "stream_options" not in fake.registry[pid].drop_params)


async def test_a_key_quoted_in_a_relayed_error_is_masked(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.AuthenticationError) as refused:
        await client.responses.create(model="openai/error-401", input="hi")
    assert "Bearer ***" in str(refused.value.body) and fake_key("openai") not in str(refused.value.body)


async def test_a_relayed_stream_ending_in_failure_is_relayed_and_counted_as_failed(
    gateway_with: GatewayFactory,
) -> None:
    port = free_port()
    outcome = {"route": "/v1/responses", "outcome": "upstream_error"}
    async with gateway_with(TELEMETRY_ENABLED="true", TELEMETRY_METRICS_PORT=str(port)) as url:
        sent = await events(url, {"model": "openai/failed-stream", "input": "hi"})
        await until(port, "polyrelay_streams_total", 1, **outcome)
    assert [e.type for e in sent] == ["response.created", "response.in_progress", "response.failed"]
    assert sent[-1].response.error is not None and sent[-1].response.error.message == "The model failed."


async def test_a_refusal_is_refusal_content(client: openai.AsyncOpenAI, gateway: str) -> None:
    answer = await created(client, model="deepseek/refusal", input="hi")
    assert answer.output[0].type == "message"
    assert [(c.type, getattr(c, "refusal", None)) for c in answer.output[0].content] == [
        ("refusal", "I cannot help with that.")
    ]
    sent = await events(gateway, {"model": "deepseek/refusal", "input": "hi"})
    assert "".join(e.delta for e in sent if e.type == "response.refusal.delta") == "I cannot help with that."
    done = next(e for e in sent if e.type == "response.refusal.done")
    assert done.refusal == "I cannot help with that." and sent[-1].response.output[0].content[0].type == "refusal"


async def test_store_is_accepted_and_nothing_is_stored(gateway: str) -> None:
    async with httpx.AsyncClient() as http:
        answer = await http.post(
            f"{gateway}/v1/responses", json={"model": "anthropic/echo", "input": "hi", "store": True}
        )
        later = await http.post(
            f"{gateway}/v1/responses",
            json={"model": "anthropic/echo", "input": "and?", "previous_response_id": answer.json()["id"]},
        )
    assert answer.status_code == 200 and answer.json()["store"] is False
    assert later.status_code == 400 and later.json()["error"]["code"] == "state_not_supported"


def _junk(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON value, shaped a little like the fields it replaces."""
    kinds = ["str", "int", "float", "bool", "null", "list", "dict", "part"] if depth < 3 else ["str", "int", "null"]
    kind = rng.choice(kinds)
    if kind == "str":
        return rng.choice(["", "x", "function", "message", "user", "input_text", "input_image", "auto", "data:"])
    if kind == "int":
        return rng.choice([-1, 0, 1, 2**70])
    if kind == "float":
        return 0.5
    if kind == "bool":
        return rng.random() < 0.5
    if kind == "null":
        return None
    if kind == "list":
        return [_junk(rng, depth + 1) for _ in range(rng.randint(0, 3))]
    keys = ["type", "role", "content", "text", "name", "call_id", "arguments", "output", "image_url", "format"]
    if kind == "part":
        return {"type": rng.choice(["input_text", "input_image", "function_call", "function_call_output", "message"])}
    return {rng.choice(keys): _junk(rng, depth + 1) for _ in range(rng.randint(0, 4))}


@pytest.mark.parametrize("model", ["deepseek/echo", "anthropic/tool", "google/echo"])
async def test_hostile_requests_get_a_400_never_a_5xx(gateway: str, model: str) -> None:
    rng = random.Random(model)
    fields = ["input", "instructions", "tools", "tool_choice", "text", "reasoning", "max_output_tokens", "temperature"]
    async with httpx.AsyncClient() as http:
        for _ in range(60):
            body: dict[str, Any] = {"model": model, "input": "hi"}
            for field in rng.sample(fields, rng.randint(1, 4)):
                body[field] = _junk(rng)
            body["stream"] = rng.random() < 0.3
            answer = await http.post(f"{gateway}/v1/responses", json=body)
            assert answer.status_code in (200, 400), (body, answer.text)
            if answer.status_code == 400:
                assert set(answer.json()["error"]) == {"message", "type", "code", "param"}


async def test_images_translation_cannot_pass_are_a_clear_400(gateway_with: GatewayFactory) -> None:
    stored = {"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}
    in_output = {"type": "function_call_output", "call_id": "c", "output": [{"type": "input_image", "image_url": PNG}]}
    async with gateway_with(ENABLE_VISION="true") as url:
        client = openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0)
        for given, code, param in [
            (stored, "unsupported_content", "input[0].content[0].file_id"),
            (in_output, None, "input[0].output[0]"),
        ]:
            with pytest.raises(openai.BadRequestError) as refused:
                await client.responses.create(model="anthropic/echo", input=[given])  # type: ignore[list-item]
            assert refused.value.code == code and refused.value.param == param


@pytest.mark.parametrize("pid", ["openai", "deepseek"])
async def test_a_client_that_leaves_before_a_json_answer_cancels_the_upstream(
    gateway: str, fake: FakeProviders, pid: str
) -> None:
    seen = RESPONSES.disconnects if pid == "openai" else fake.disconnects
    before = seen.count("slow")
    async with httpx.AsyncClient(timeout=0.3) as http:
        with pytest.raises(httpx.ReadTimeout):
            await http.post(f"{gateway}/v1/responses", json={"model": f"{pid}/slow", "input": "hi"})
    for _ in range(300):
        if seen.count("slow") > before:
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the upstream call went on after the client left")
