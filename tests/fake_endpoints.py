"""OpenAI's endpoints beyond chat, as the fake of every OpenAI-compatible registry entry serves them.

An entry serves the endpoints its ``endpoints:`` map lists, at those paths, in the real API's
shapes (checked in the tests with the openai SDK's own types), refusing what the real API
refuses: no ``model``, no ``prompt`` / ``input`` / ``voice`` / ``file``, an unknown
``response_format``. The model name chooses a behaviour, as for chat:

    error-<status>   an OpenAI-style error answer with that status
    leak             an answer quoting the credential received (the gateway must mask it)
    hang             (completions stream, speech) the first chunk, then silence until the client leaves
    slow             (completions) waits 5 s before answering
    anything else    a normal answer: "You said: <prompt>", audio made from the input, "Heard <n> bytes..."
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Callable, Coroutine
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any

import orjson
from aiohttp import web

from .native_fakes import received_credential

Handler = Callable[[web.Request, bytes, "Disconnects"], Coroutine[Any, Any, web.StreamResponse]]
Disconnects = list[str]

USAGE = {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}

# The smallest valid PNG (one transparent pixel), what b64_json images hold.
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
AUDIO_TYPES = {
    "mp3": "audio/mpeg",
    "opus": "audio/opus",
    "aac": "audio/aac",
    "flac": "audio/flac",
    "wav": "audio/wav",
    "pcm": "audio/pcm",
}
MODERATION_CATEGORIES = (
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
)
TRANSCRIPT_FORMATS = ("json", "text", "srt", "verbose_json", "vtt")


def speech_audio(text: str, voice: str, fmt: str) -> bytes:
    """The "audio" the fake speaks: 64 KiB made from the request, so a test can tell it is whole."""
    seed = f"{fmt}|{voice}|{text}|".encode()
    return (seed * (65536 // len(seed) + 1))[:65536]


def heard(size: int, filename: str, task: str) -> str:
    return f"{task}: heard {size} bytes of {filename}"


def _error(
    status: int, message: str, *, param: str | None = None, code: str | None = None, kind: str | None = None
) -> web.Response:
    body = {
        "error": {
            "message": message,
            "type": kind or ("invalid_request_error" if status < 500 else "server_error"),
            "param": param,
            "code": code,
        }
    }
    return web.json_response(body, status=status)


def _missing(name: str) -> web.Response:
    if name == "model":
        return _error(400, "you must provide a model parameter", param=None)
    return _error(400, f"Missing required parameter: '{name}'.", param=name, code="missing_required_parameter")


def _scripted(model: str, request: web.Request) -> web.Response | None:
    """The answer of the error-<status> models; ``None`` for the others."""
    if model.startswith("error-"):
        status = int(model.removeprefix("error-"))
        return _error(status, f"fake upstream refused with {status} (key {received_credential(request)})")
    return None


def _said(model: str, request: web.Request, text: str) -> str:
    return f"Your key is {received_credential(request)}" if model == "leak" else f"You said: {text}"


async def completions(request: web.Request, body: bytes, disconnects: Disconnects) -> web.StreamResponse:
    payload = orjson.loads(body)
    model = payload.get("model")
    if not model:
        return _missing("model")
    prompt = payload.get("prompt")
    if prompt is None:
        return _missing("prompt")
    if (scripted := _scripted(model, request)) is not None:
        return scripted
    if model == "slow":
        await asyncio.sleep(5)
    prompts = prompt if isinstance(prompt, list) else [prompt]
    texts = [_said(model, request, str(p)) for p in prompts]
    created = int(time.time())
    if not payload.get("stream"):
        choices = [
            {"text": text, "index": i, "logprobs": None, "finish_reason": "stop"} for i, text in enumerate(texts)
        ]
        return web.json_response(
            {
                "id": "cmpl-fake",
                "object": "text_completion",
                "created": created,
                "model": model,
                "choices": choices,
                "usage": USAGE,
            }
        )

    def chunk(choices: list[dict[str, Any]], usage: dict[str, int] | None = None) -> bytes:
        event = {"id": "cmpl-fake", "object": "text_completion", "created": created, "model": model, "choices": choices}
        if usage is not None:
            event["usage"] = usage
        return b"data: " + orjson.dumps(event) + b"\n\n"

    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    try:
        for i, text in enumerate(texts):
            for n, word in enumerate(text.split(" ")):
                piece = word if n == 0 else " " + word
                await response.write(chunk([{"text": piece, "index": i, "logprobs": None, "finish_reason": None}]))
                if model == "hang":
                    await asyncio.sleep(3600)
            await response.write(chunk([{"text": "", "index": i, "logprobs": None, "finish_reason": "stop"}]))
        if (payload.get("stream_options") or {}).get("include_usage"):
            await response.write(chunk([], USAGE))
        await response.write(b"data: [DONE]\n\n")
    except (asyncio.CancelledError, ConnectionResetError):
        disconnects.append(model)
        raise
    return response


async def moderations(request: web.Request, body: bytes, disconnects: Disconnects) -> web.StreamResponse:
    payload = orjson.loads(body)
    inputs = payload.get("input")
    if inputs is None:
        return _missing("input")
    model = payload.get("model") or "omni-moderation-latest"
    if (scripted := _scripted(model, request)) is not None:
        return scripted
    results = []
    for item in inputs if isinstance(inputs, list) else [inputs]:
        text = item if isinstance(item, str) else str(item.get("text", "")) if isinstance(item, dict) else ""
        violent = "kill" in text.lower()
        results.append(
            {
                "flagged": violent,
                "categories": {c: violent and c == "violence" for c in MODERATION_CATEGORIES},
                "category_scores": {c: 0.9 if violent and c == "violence" else 0.001 for c in MODERATION_CATEGORIES},
                "category_applied_input_types": {c: ["text"] for c in MODERATION_CATEGORIES},
            }
        )
    return web.json_response({"id": "modr-fake", "model": model, "results": results})


async def images(request: web.Request, body: bytes, disconnects: Disconnects) -> web.StreamResponse:
    payload = orjson.loads(body)
    model = payload.get("model") or "dall-e-2"
    prompt = payload.get("prompt")
    if not prompt:
        return _missing("prompt")
    if (scripted := _scripted(model, request)) is not None:
        return scripted
    fmt = payload.get("response_format") or "url"
    if fmt not in ("url", "b64_json"):
        return _error(
            400,
            f"Invalid value: '{fmt}'. Supported values are: 'url' and 'b64_json'.",
            param="response_format",
            code="invalid_value",
        )
    n = payload.get("n") or 1
    if not isinstance(n, int) or not 1 <= n <= 10:
        return _error(400, f"{n} is not valid for 'n': it must be between 1 and 10.", param="n")
    if fmt == "b64_json":
        data = [{"b64_json": base64.b64encode(PNG).decode(), "revised_prompt": prompt} for _ in range(n)]
    else:
        data = [{"url": f"https://images.fake.test/{model}/{i}.png", "revised_prompt": prompt} for i in range(n)]
    return web.json_response({"created": int(time.time()), "data": data})


async def speech(request: web.Request, body: bytes, disconnects: Disconnects) -> web.StreamResponse:
    payload = orjson.loads(body)
    for name in ("model", "input", "voice"):
        if not payload.get(name):
            return _missing(name)
    model, text, voice = payload["model"], payload["input"], payload["voice"]
    if (scripted := _scripted(model, request)) is not None:
        return scripted
    if len(text) > 4096:
        return _error(400, "Input is too long: at most 4096 characters.", param="input", code="string_above_max_length")
    fmt = payload.get("response_format") or "mp3"
    if fmt not in AUDIO_TYPES:
        return _error(400, f"Invalid value: '{fmt}'.", param="response_format", code="invalid_value")
    audio = speech_audio(_said(model, request, text), voice, fmt)
    response = web.StreamResponse(headers={"Content-Type": AUDIO_TYPES[fmt]})
    await response.prepare(request)
    try:
        for at in range(0, len(audio), 16384):  # the real API sends audio as it is made
            await response.write(audio[at : at + 16384])
            if model == "hang":
                await asyncio.sleep(3600)
            await asyncio.sleep(0)
    except (asyncio.CancelledError, ConnectionResetError):
        disconnects.append(model)
        raise
    return response


def form_fields(request: web.Request, body: bytes) -> list[Message] | None:
    """The parts of a multipart/form-data body, or ``None`` when it is not one."""
    kind = request.headers.get("Content-Type", "")
    if not kind.startswith("multipart/form-data"):
        return None
    message = BytesParser(policy=HTTP).parsebytes(b"Content-Type: " + kind.encode() + b"\r\n\r\n" + body)
    if not message.is_multipart():
        return None
    return [part for part in message.iter_parts()]  # type: ignore[attr-defined]


def _uploads(task: str) -> Handler:
    async def handle(request: web.Request, body: bytes, disconnects: Disconnects) -> web.StreamResponse:
        parts = form_fields(request, body)
        if parts is None:
            return _error(400, "Invalid Content-Type header: expected multipart/form-data.")
        fields = {part.get_param("name", header="content-disposition"): part for part in parts}
        upload = fields.get("file")
        if upload is None or upload.get_filename() is None:
            return _missing("file")
        if "model" not in fields:
            return _missing("model")
        model = str(fields["model"].get_content()).strip()
        if (scripted := _scripted(model, request)) is not None:
            return scripted
        fmt = str(fields["response_format"].get_content()) if "response_format" in fields else "json"
        if fmt not in TRANSCRIPT_FORMATS:
            return _error(400, f"Invalid value: '{fmt}'.", param="response_format", code="invalid_value")
        audio = upload.get_payload(decode=True)
        assert isinstance(audio, bytes)
        text = heard(len(audio), str(upload.get_filename()), task)
        if model == "leak":
            text = _said(model, request, text)
        if "stream" in fields and str(fields["stream"].get_content()).strip() == "true":
            return await _transcript_events(request, text)
        if fmt == "json":
            return web.json_response({"text": text})
        if fmt == "verbose_json":
            segment = {"id": 0, "seek": 0, "start": 0.0, "end": 1.5, "text": text, "tokens": [1, 2]}
            segment |= {"temperature": 0.0, "avg_logprob": -0.2, "compression_ratio": 1.0, "no_speech_prob": 0.01}
            language = str(fields["language"].get_content()) if "language" in fields else "english"
            return web.json_response(
                {"task": task, "language": language, "duration": 1.5, "text": text, "segments": [segment]}
            )
        if fmt == "srt":
            text = f"1\n00:00:00,000 --> 00:00:01,500\n{text}\n"
        elif fmt == "vtt":
            text = f"WEBVTT\n\n00:00:00.000 --> 00:00:01.500\n{text}\n"
        return web.Response(text=text + "\n", content_type="text/plain")

    return handle


async def _transcript_events(request: web.Request, text: str) -> web.StreamResponse:
    """A streamed transcript: its text in deltas, then the whole (the real API sends no [DONE])."""
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
    await response.prepare(request)
    for n, word in enumerate(text.split(" ")):
        delta = {"type": "transcript.text.delta", "delta": word if n == 0 else " " + word}
        await response.write(b"data: " + orjson.dumps(delta) + b"\n\n")
    done = {"type": "transcript.text.done", "text": text}
    await response.write(b"data: " + orjson.dumps(done) + b"\n\n")
    return response


HANDLERS: dict[str, Handler] = {
    "completions": completions,
    "moderations": moderations,
    "images": images,
    "speech": speech,
    "transcriptions": _uploads("transcribe"),
    "translations": _uploads("translate"),
}
