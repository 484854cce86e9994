"""OpenAI's endpoints beyond chat, relayed to the providers that serve them, through the openai SDK."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import AsyncIterator

import httpx
import openai
import orjson
import pytest
from openai.types import Completion, ImagesResponse, ModerationCreateResponse
from openai.types.audio import (
    Transcription,
    TranscriptionTextDeltaEvent,
    TranscriptionTextDoneEvent,
    TranscriptionVerbose,
    Translation,
)

from gateway.relayed.multipart import FormHead

from .conftest import GatewayFactory
from .fake_endpoints import PNG, heard, speech_audio
from .fakes import FakeProviders, Seen, fake_key


def sdk(url: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key="caller-secret-token", max_retries=0)


def caller_credential_kept(seen: Seen, pid: str = "openai") -> None:
    """The provider got the gateway's key, never the caller's token."""
    assert seen.headers["authorization"] == f"Bearer {fake_key(pid)}"
    assert b"caller-secret-token" not in seen.body and "caller-secret-token" not in str(seen.headers)


# -- completions ---------------------------------------------------------------------------------


async def test_completion_is_relayed_with_the_providers_model_name(
    client: openai.AsyncOpenAI, fake: FakeProviders
) -> None:
    raw = await client.completions.with_raw_response.create(model="openai/model-a", prompt="ping", max_tokens=5)
    completion = Completion.model_validate(orjson.loads(raw.http_response.content))
    assert completion.choices[0].text == "You said: ping" and completion.usage is not None
    assert completion.usage.total_tokens == 9
    sent = fake.last("/v1/completions")
    assert sent.json == {"model": "model-a", "prompt": "ping", "max_tokens": 5}


async def test_completion_stream_ends_in_one_done(client: openai.AsyncOpenAI, gateway: str) -> None:
    stream = await client.completions.create(
        model="ollama/model-a", prompt="stream me", stream=True, stream_options={"include_usage": True}
    )
    chunks = [chunk async for chunk in stream]
    assert all(isinstance(c, Completion) for c in chunks)
    assert "".join(c.choices[0].text for c in chunks if c.choices) == "You said: stream me"
    assert chunks[-1].usage is not None and chunks[-1].usage.prompt_tokens == 5
    async with httpx.AsyncClient() as http:
        body = {"model": "openai/model-a", "prompt": "x", "stream": True}
        raw = await http.post(f"{gateway}/v1/completions", json=body)
    assert raw.headers["content-type"].startswith("text/event-stream")
    assert raw.content.endswith(b"data: [DONE]\n\n") and raw.content.count(b"[DONE]") == 1


async def test_bare_model_with_provider_query(client: openai.AsyncOpenAI, fake: FakeProviders) -> None:
    completion = await client.completions.create(model="model-b", prompt="q", extra_query={"provider": "llamacpp"})
    assert completion.choices[0].text == "You said: q"
    assert fake.last_post("llamacpp").json["model"] == "model-b"


async def test_a_provider_without_the_endpoint_gets_400_naming_those_with_it(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await client.completions.create(model="groq/model-a", prompt="ping")
    error = caught.value.body
    assert isinstance(error, dict) and error["code"] == "endpoint_not_supported" and error["param"] == "model"
    assert "groq" in error["message"] and "/v1/completions" in error["message"]
    assert "deepseek, llamacpp, ollama, openai" in error["message"]


async def test_the_providers_refusal_keeps_its_status_and_message(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as limited:
        await client.completions.create(model="openai/error-429", prompt="ping")
    assert "fake upstream refused with 429" in limited.value.message
    with pytest.raises(openai.BadRequestError) as refused:
        await client.completions.create(model="openai/model-a", prompt=None)  # type: ignore[arg-type]
    assert "Missing required parameter: 'prompt'" in refused.value.message


@pytest.mark.parametrize(
    ("body", "param", "contains"),
    [
        ({"prompt": "x"}, "model", "'model' is required"),
        ({"model": "", "prompt": "x"}, "model", "'model' is required"),
        ({"model": "gpt-4o", "prompt": "x"}, "model", "names no provider"),
        ({"model": "nosuch/m", "prompt": "x"}, "model", "unknown provider"),
    ],
)
async def test_bad_requests_get_400_in_the_envelope(
    gateway: str, body: dict[str, str], param: str, contains: str
) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(f"{gateway}/v1/completions", json=body)
        not_json = await http.post(f"{gateway}/v1/moderations", content=b"[1, 2]")
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param and contains in error["message"] and error["type"] == "invalid_request_error"
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "invalid_json"


async def test_model_policy_applies(gateway_with: GatewayFactory) -> None:
    async with gateway_with(DISALLOWED_MODELS="openai/model-a") as url:
        with pytest.raises(openai.PermissionDeniedError) as caught:
            await sdk(url).moderations.create(model="openai/model-a", input="hi")
    assert isinstance(caught.value.body, dict) and caught.value.body["code"] == "model_not_allowed"


@pytest.mark.parametrize(
    ("route", "body"),
    [
        ("/v1/completions", {"model": "openai/hang", "prompt": "x", "stream": True}),
        ("/v1/audio/speech", {"model": "openai/hang", "input": "x", "voice": "alloy"}),
    ],
)
async def test_client_leaving_cancels_the_upstream_call(
    gateway: str, fake: FakeProviders, route: str, body: dict[str, object]
) -> None:
    before = fake.disconnects.count("hang")
    async with httpx.AsyncClient() as http, http.stream("POST", f"{gateway}{route}", json=body) as response:
        async for _ in response.aiter_bytes():
            break  # the first bytes came; leave
    for _ in range(100):
        if fake.disconnects.count("hang") > before:
            break
        await asyncio.sleep(0.02)
    assert fake.disconnects.count("hang") == before + 1


async def test_a_slow_provider_is_bounded_by_client_timeout(gateway_with: GatewayFactory) -> None:
    async with gateway_with(CLIENT_TIMEOUT="300ms") as url:
        with pytest.raises(openai.APIStatusError) as caught:
            await sdk(url).completions.create(model="openai/slow", prompt="x")
    assert caught.value.status_code == 504


# -- moderations ---------------------------------------------------------------------------------


async def test_moderation(client: openai.AsyncOpenAI, fake: FakeProviders) -> None:
    raw = await client.moderations.with_raw_response.create(
        model="openai/omni-moderation-latest", input=["I will kill the process", "hello"]
    )
    answer = ModerationCreateResponse.model_validate(orjson.loads(raw.http_response.content))
    assert [r.flagged for r in answer.results] == [True, False]
    assert answer.results[0].categories.violence and answer.model == "omni-moderation-latest"
    caller_credential_kept(fake.last("/v1/moderations"))


# -- images --------------------------------------------------------------------------------------


async def test_images_are_off_by_default(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        await client.images.generate(model="openai/dall-e-3", prompt="a cat")
    assert isinstance(caught.value.body, dict) and caught.value.body["type"] == "not_found_error"


async def test_images_with_enable_images(gateway_with: GatewayFactory, fake: FakeProviders) -> None:
    async with gateway_with(ENABLE_IMAGES="true") as url:
        client = sdk(url)
        raw = await client.images.with_raw_response.generate(
            model="openai/dall-e-3", prompt="a cat", response_format="b64_json", n=2
        )
        encoded = ImagesResponse.model_validate(orjson.loads(raw.http_response.content))
        linked = await client.images.generate(model="openai/dall-e-3", prompt="a cat", response_format="url")
        with pytest.raises(openai.BadRequestError) as refused:
            await client.images.generate(model="openai/dall-e-3", prompt="a cat", response_format="png")  # type: ignore[arg-type]
        with pytest.raises(openai.BadRequestError) as lacking:
            await client.images.generate(model="groq/x", prompt="a cat")
    assert encoded.data is not None and len(encoded.data) == 2
    assert all(base64.b64decode(image.b64_json or "") == PNG for image in encoded.data)
    assert linked.data is not None and linked.data[0].url == "https://images.fake.test/dall-e-3/0.png"
    assert refused.value.param == "response_format"  # type: ignore[attr-defined]
    assert "/v1/images/generations" in lacking.value.message
    assert fake.last("/v1/images/generations").json["model"] == "dall-e-3"


# -- speech --------------------------------------------------------------------------------------


async def test_speech_streams_the_providers_audio_with_its_type(
    client: openai.AsyncOpenAI, fake: FakeProviders
) -> None:
    async with client.audio.speech.with_streaming_response.create(
        model="openai/tts-1", voice="alloy", input="hello there"
    ) as response:
        assert response.headers["content-type"] == "audio/mpeg"
        pieces = [piece async for piece in response.iter_bytes()]
    assert b"".join(pieces) == speech_audio("You said: hello there", "alloy", "mp3")
    wav = await client.audio.speech.create(model="groq/tts", voice="nova", input="hi", response_format="wav")
    assert wav.response.headers["content-type"] == "audio/wav"
    assert wav.content == speech_audio("You said: hi", "nova", "wav")
    assert fake.last("/audio/speech").json == {"model": "tts", "voice": "nova", "input": "hi", "response_format": "wav"}
    caller_credential_kept(fake.last("/audio/speech"), "groq")


async def test_speech_refusals(client: openai.AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as missing:
        await client.audio.speech.create(model="openai/tts-1", voice="alloy", input="")
    assert "'input'" in missing.value.message
    with pytest.raises(openai.BadRequestError) as lacking:
        await client.audio.speech.create(model="ollama/tts", voice="alloy", input="x")
    assert isinstance(lacking.value.body, dict) and lacking.value.body["code"] == "endpoint_not_supported"


# -- transcriptions and translations -------------------------------------------------------------

AUDIO = bytes(range(256)) * 400  # 100 KiB of "audio", every byte value in it


async def test_transcription_uploads_the_file_with_the_providers_model_name(
    client: openai.AsyncOpenAI, fake: FakeProviders
) -> None:
    raw = await client.audio.transcriptions.with_raw_response.create(
        model="openai/whisper-1", file=("talk.wav", AUDIO, "audio/wav"), language="en"
    )
    transcription = Transcription.model_validate(orjson.loads(raw.http_response.content))
    assert transcription.text == heard(len(AUDIO), "talk.wav", "transcribe")
    sent = fake.last("/v1/audio/transcriptions")
    assert sent.complete and sent.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert b'name="model"\r\n\r\nwhisper-1\r\n' in sent.body and AUDIO in sent.body
    assert int(sent.headers["content-length"]) == len(sent.body)  # its length, not a chunked body
    caller_credential_kept(sent)


async def test_transcription_formats(client: openai.AsyncOpenAI) -> None:
    verbose = await client.audio.transcriptions.with_raw_response.create(
        model="openai/whisper-1", file=("a.mp3", b"abc"), response_format="verbose_json"
    )
    parsed = TranscriptionVerbose.model_validate(orjson.loads(verbose.http_response.content))
    assert parsed.text == heard(3, "a.mp3", "transcribe") and parsed.segments
    text = await client.audio.transcriptions.create(
        model="openai/whisper-1", file=("a.mp3", b"abc"), response_format="text"
    )
    assert text.strip() == heard(3, "a.mp3", "transcribe")
    srt = await client.audio.transcriptions.with_raw_response.create(
        model="openai/whisper-1", file=("a.mp3", b"abc"), response_format="srt"
    )
    assert srt.http_response.headers["content-type"].startswith("text/plain")
    assert srt.http_response.text.startswith("1\n00:00:00,000 --> ")


async def test_a_streamed_transcription_is_relayed_as_it_comes(client: openai.AsyncOpenAI) -> None:
    stream = await client.audio.transcriptions.create(
        model="openai/gpt-4o-transcribe", file=("a.wav", AUDIO), stream=True
    )
    events = [event async for event in stream]
    deltas = [e.delta for e in events if isinstance(e, TranscriptionTextDeltaEvent)]
    (done,) = [e for e in events if isinstance(e, TranscriptionTextDoneEvent)]
    assert "".join(deltas) == done.text == heard(len(AUDIO), "a.wav", "transcribe")


async def test_a_stream_is_refused_where_it_is_not_relayed(gateway_with: GatewayFactory) -> None:
    async with gateway_with(ENABLE_IMAGES="true") as url, httpx.AsyncClient() as http:
        body = {"model": "openai/gpt-image-1", "prompt": "a cat", "stream": True}
        response = await http.post(f"{url}/v1/images/generations", json=body)
    assert response.status_code == 400 and response.json()["error"]["param"] == "stream"


@pytest.mark.filterwarnings("ignore:deprecated:DeprecationWarning")  # the SDK marks translations.create so
async def test_translation(client: openai.AsyncOpenAI, fake: FakeProviders) -> None:
    answer = await client.audio.translations.create(
        model="groq/whisper-large-v3", file=("fr.ogg", AUDIO), response_format="json"
    )
    translation = Translation.model_validate(answer.model_dump())
    assert translation.text == heard(len(AUDIO), "fr.ogg", "translate")
    assert b"whisper-large-v3\r\n" in fake.last("/audio/translations").body


def form(boundary: str, *parts: tuple[str, str | None, bytes]) -> bytes:
    """A multipart/form-data body of (name, filename, content) parts, in the order given."""
    out = b""
    for name, filename, content in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + content + b"\r\n"
    return out + f"--{boundary}--\r\n".encode()


async def test_a_model_field_after_the_file_is_found_and_rewritten(gateway: str, fake: FakeProviders) -> None:
    # curl -F file=@talk.wav -F model=... sends the file first.
    body = form(
        "xyz", ("file", "talk.wav", AUDIO), ("model", None, b"openai/whisper-1"), ("response_format", None, b"json")
    )
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{gateway}/v1/audio/transcriptions",
            content=body,
            headers={"Content-Type": "multipart/form-data; boundary=xyz"},
        )
    assert response.status_code == 200, response.text
    assert response.json() == {"text": heard(len(AUDIO), "talk.wav", "transcribe")}
    assert fake.last("/v1/audio/transcriptions").body == body.replace(b"openai/whisper-1", b"whisper-1")


async def read_in_pieces(body: bytes, size: int) -> tuple[str, bytes]:
    """What FormHead finds in ``body`` read ``size`` bytes at a time, and the body it relays."""
    pieces = [body[i : i + size] for i in range(0, len(body), size)]

    async def chunks() -> AsyncIterator[bytes]:
        for piece in pieces:
            yield piece

    stream = chunks()
    head = FormHead(b"cut")
    await head.read(stream)
    return head.model, head.rewritten("m") + b"".join([p async for p in stream])


async def test_the_model_field_is_found_across_any_chunk_boundary() -> None:
    body = form(
        "cut", ("file", "a.wav", b"--cu\r\n--cu" * 20), ("model", None, b"groq/whisper"), ("language", None, b"fr")
    )
    expected = body.replace(b"groq/whisper", b"m")
    for size in (1, 2, 3, 5, 7, 11, 64, len(body)):
        assert await read_in_pieces(body, size) == ("groq/whisper", expected), size


@pytest.mark.parametrize(
    ("content_type", "body", "status", "contains"),
    [
        ("application/json", b'{"model": "openai/whisper-1"}', 400, "multipart/form-data"),
        ("multipart/form-data; boundary=b", form("b", ("file", "a.wav", b"x")), 400, "'model' is required"),
        ("multipart/form-data; boundary=b", form("b", ("model", None, b"openai/whisper-1")), 400, "'file'"),
        ("multipart/form-data; boundary=b", form("b", ("model", None, b"cohere/x"), ("file", "a", b"x")), 400, "serve"),
        ("multipart/form-data; boundary=b", b"--b\r\nno headers end", 400, "'model' is required"),
        ("multipart/form-data; boundary=b", b"--bXX", 400, "malformed"),
    ],
)
async def test_upload_refusals(gateway: str, content_type: str, body: bytes, status: int, contains: str) -> None:
    async with httpx.AsyncClient() as http:
        response = await http.post(
            f"{gateway}/v1/audio/transcriptions", content=body, headers={"Content-Type": content_type}
        )
    assert response.status_code == status
    assert contains in response.json()["error"]["message"]


async def test_an_upload_over_the_limit_is_stopped_midway(gateway_with: GatewayFactory, fake: FakeProviders) -> None:
    limit = 200_000
    head = form("lim", ("model", None, b"openai/whisper-1")).removesuffix(b"--lim--\r\n")
    head += b'--lim\r\nContent-Disposition: form-data; name="file"; filename="big.wav"\r\n\r\n'

    async def chunks() -> AsyncIterator[bytes]:
        yield head
        for _ in range(40):  # 640 KiB, over the limit by far
            yield AUDIO[:16384]
            await asyncio.sleep(0.002)

    async with gateway_with(SERVER_MAX_REQUEST_BODY_SIZE=str(limit)) as url:
        with pytest.raises(openai.APIStatusError) as declared:
            await sdk(url).audio.transcriptions.create(model="openai/whisper-1", file=("big.wav", AUDIO * 3))
        before = len(fake.seen)
        async with httpx.AsyncClient() as http:
            chunked = await http.post(
                f"{url}/v1/audio/transcriptions",
                content=chunks(),
                headers={"Content-Type": "multipart/form-data; boundary=lim"},
            )
    assert declared.value.status_code == 413  # its Content-Length said so: nothing was sent upstream
    assert chunked.status_code == 413 and chunked.json()["error"]["code"] == "request_too_large"
    for _ in range(100):
        uploads = [s for s in fake.seen[before:] if s.path.endswith("/audio/transcriptions")]
        if uploads:
            break
        await asyncio.sleep(0.01)
    (upload,) = uploads
    # The upload had begun (the model field, rewritten, came first) and was cut before its end.
    assert not upload.complete and upload.body.startswith(head.replace(b"openai/whisper-1", b"whisper-1"))
    assert len(upload.body) <= limit


async def test_no_provider_key_in_relayed_answers(client: openai.AsyncOpenAI, fake: FakeProviders) -> None:
    key = fake_key("openai")
    completion = await client.completions.with_raw_response.create(model="openai/leak", prompt="x")
    assert key not in completion.http_response.text and "Bearer ***" in completion.http_response.text
    with pytest.raises(openai.AuthenticationError) as refused:
        await client.completions.create(model="openai/error-401", prompt="x")
    assert key not in refused.value.message and key not in str(refused.value.body)
    stream = await client.completions.with_raw_response.create(model="openai/leak", prompt="x", stream=True)
    assert key.encode() not in await stream.http_response.aread()
    speech = await client.audio.speech.create(model="openai/leak", voice="alloy", input="x")
    assert key.encode() not in speech.content
    transcript = await client.audio.transcriptions.with_raw_response.create(model="openai/leak", file=("a", b"x"))
    assert key not in transcript.http_response.text and "***" in transcript.http_response.text


async def test_telemetry_names_the_operation_and_counts_the_tokens(gateway_with: GatewayFactory) -> None:
    from .test_metrics import DURATION, TOKENS, free_port, scrape, until

    port = free_port()
    series = {"gen_ai_provider_name": "openai", "gen_ai_request_model": "model-a"}
    async with gateway_with(TELEMETRY_ENABLED="true", TELEMETRY_METRICS_PORT=str(port)) as url:
        await sdk(url).completions.create(model="openai/model-a", prompt="ping")
        await sdk(url).moderations.create(model="openai/model-a", input="ping")
        await sdk(url).models.retrieve("openai/model-a")
        after = await until(port, DURATION, 1, gen_ai_operation_name="text_completion", **series)
        scraped = await scrape(port)
    assert after.value(TOKENS, gen_ai_token_type="input", gen_ai_operation_name="text_completion", **series) == 5
    routes = scraped.label_values("polyrelay_http_requests_total", "route")
    assert {"/v1/completions", "/v1/moderations", "/v1/models/{model}"} <= routes
