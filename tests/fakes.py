"""A fake of every registry provider, served over real HTTP on loopback.

Each provider lives under ``/<provider id>/`` + the path of its real URL, answers its model list in
its native format (two pages where the real API pages), and speaks OpenAI's chat protocol and the
other endpoints its registry entry lists (``fake_endpoints``, ``fake_embeddings``). It checks
credentials the way the real one does and records every request it receives.

What a chat answer does is chosen by the requested model name:

    echo               "You said: <last user text>" (the default for any other name)
    tool               a call to the first tool offered, arguments {"city": "Paris"}
    refusal            a refusal ("refusal" instead of "content", streamed as refusal deltas)
    stop-sequence      the echo cut before the first of the request's stop sequences it holds,
                       which the choice's stop_reason names (as vLLM does)
    error-<status>     an OpenAI-style error answer with that status (429 adds Retry-After)
    slow               waits 5 s before answering
    broken-stream      two chunks, then the connection is cut
    no-done            a complete stream that never sends [DONE]
    midstream-error        one chunk, then an in-stream error event
    hang               one chunk, then silence until the client leaves
    late-eof           a normal stream whose HTTP body ends 50 ms after [DONE]
    *-tight            (streams) events written "data:{...}", without the optional space
    leak               "Your key is <the Authorization received>", also in an X-Seen-Key header; a
                       stream writes each event holding the key in two TCP writes cut mid-key
    leak-error         a 429 quoting the credential in its message and Retry-After; streaming, one
                       chunk then an in-stream error event quoting it
    agent, agent-loop  the tools the prompt names ("call mcp_add {...}; call ..."), then "Done: <results>"
    refusal            a refusal ("I can't help with that."), as OpenAI's structured outputs give one
                       (agent-loop calls them again every turn)
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import openai
import orjson
from aiohttp import web
from anthropic._constants import ANTHROPIC_API_VERSION

from providers.redact import MIN_SECRET_LENGTH
from providers.registry import ProviderSpec

from .fake_embeddings import openai_embeddings
from .fake_endpoints import HANDLERS as ENDPOINT_FAKES
from .fake_responses import OpenAIResponses
from .native_fake_cohere import Cohere
from .native_fakes import Anthropic, Google, received_credential, received_key, write_split

# The native protocol each translating adapter speaks, by the registry's adapter name.
PROTOCOLS: dict[str, Any] = {"anthropic": Anthropic(), "google": Google(), "cohere": Cohere()}
RESPONSES = OpenAIResponses()  # /responses, for the entries that list it

ACCOUNT = "acct-123"

# Upstream error statuses and the exception the openai SDK raises for each, for every suite.
ERROR_CLASSES = [
    (400, openai.BadRequestError),
    (401, openai.AuthenticationError),
    (404, openai.NotFoundError),
    (429, openai.RateLimitError),
    (500, openai.InternalServerError),
    (503, openai.InternalServerError),
]


def fake_key(pid: str) -> str:
    """The key the fake expects of ``pid``: key-<id>, padded to the length below which the gateway
    takes a key for a placeholder and does not mask it (real keys are much longer)."""
    return f"key-{pid}".ljust(MIN_SECRET_LENGTH, "0")


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    peer: tuple[str, int]  # the gateway's side of the connection: equal peers mean a reused connection
    complete: bool = True  # the whole body arrived

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


@dataclass
class FakeProviders:
    registry: dict[str, ProviderSpec]
    seen: list[Seen] = field(default_factory=list)
    disconnects: list[str] = field(default_factory=list)  # models whose stream lost its client
    quote_keys: bool = False  # model lists then also hold a model named after the credential received
    extra_models: list[str] = field(default_factory=list)  # more models in every list
    keys: dict[str, str] = field(default_factory=dict)  # a provider's expected key, when not fake_key's
    base: str = ""
    _runner: web.AppRunner | None = None

    def url_for(self, spec: ProviderSpec) -> str:
        path = urlsplit(spec.url).path.replace("{ACCOUNT_ID}", ACCOUNT).rstrip("/")
        return f"{self.base}/{spec.id}{path}"

    def env(self) -> dict[str, str]:
        """Settings that point every registry provider at this fake, each with its own key. Retries
        are off: the fake's failures are answered once, as each test expects; tests/test_retries.py
        turns them on."""
        env = {"UPSTREAM_RETRIES": "0"}
        for spec in self.registry.values():
            env[f"{spec.env_prefix}_API_URL"] = self.url_for(spec)
            if spec.needs_key:
                env[f"{spec.env_prefix}_API_KEY"] = self.keys.get(spec.id) or fake_key(spec.id)
        return env

    def last(self, path_suffix: str = "") -> Seen:
        return next(s for s in reversed(self.seen) if s.path.endswith(path_suffix))

    def last_post(self, pid: str) -> Seen:
        return next(s for s in reversed(self.seen) if s.method == "POST" and s.path.startswith(f"/{pid}/"))

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{pid}/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.base = f"http://127.0.0.1:{port}"

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        chunks: list[bytes] = []
        try:
            async for chunk in request.content.iter_any():
                chunks.append(chunk)
        finally:  # a body cut off midway (the gateway stopped an upload) is recorded as received so far
            body = b"".join(chunks)
            seen = Seen(
                request.method,
                request.path,
                dict(request.query),
                {k.lower(): v for k, v in request.headers.items()},
                body,
                request.transport.get_extra_info("peername") if request.transport else ("", 0),
                complete=request.content.at_eof() and request.content.exception() is None,
            )
            self.seen.append(seen)
        pid = request.match_info["pid"]
        spec = self.registry.get(pid)
        if spec is None:
            return _error(404, f"unknown fake provider {pid}")
        if (denied := _check_auth(spec, request, self.keys.get(pid) or fake_key(pid))) is not None:
            return denied
        tail = "/" + request.match_info["tail"]
        prefix = urlsplit(self.url_for(spec)).path.removeprefix(f"/{pid}")
        local = tail.removeprefix(prefix) if tail.startswith(prefix) else None
        if local == spec.models_path and request.method == "GET":
            page = _model_page(spec.models_format, request.query)
            if self.quote_keys:
                _add_model(page, spec.models_format, f"model-{received_key(request)}")
            for name in self.extra_models:
                _add_model(page, spec.models_format, name)
            return web.json_response(page)
        if spec.adapter != "openai":  # native protocols match their full real paths (/v1/messages...)
            answer = await PROTOCOLS[spec.adapter].handle(request, tail, body)
            if answer is not None:
                return answer
        elif local is not None and local == spec.endpoints.get("responses") and request.method == "POST":
            return await RESPONSES.handle(request, body)
        elif local == spec.chat_path and request.method == "POST":
            payload = orjson.loads(body)
            if (refused := _refused_tool_call_ids(spec.id, payload)) is not None:
                return refused
            return await self._chat(request, payload)
        elif local is not None and local == spec.endpoints.get("embeddings") and request.method == "POST":
            try:
                return await openai_embeddings(orjson.loads(body), received_credential(request))
            except asyncio.CancelledError:
                self.disconnects.append("embeddings")
                raise
        elif request.method == "POST" and (name := _endpoint_at(spec, local)) in ENDPOINT_FAKES:
            return await ENDPOINT_FAKES[name](request, body, self.disconnects)
        return await _proxy_target(request, tail, body)

    async def _chat(self, request: web.Request, payload: dict[str, Any]) -> web.StreamResponse:
        try:
            return await self._answer_chat(request, payload)
        except (asyncio.CancelledError, ConnectionResetError):
            self.disconnects.append(payload["model"])
            raise

    async def _answer_chat(self, request: web.Request, payload: dict[str, Any]) -> web.StreamResponse:
        model = payload["model"]
        if model.startswith("error-"):
            status = int(model.removeprefix("error-"))
            # A 429 as OpenAI sends it: when to retry, and the key's limits.
            headers = (
                {
                    "Retry-After": "7",
                    "x-ratelimit-limit-requests": "500",
                    "x-ratelimit-remaining-requests": "0",
                    "x-ratelimit-reset-requests": "7s",
                }
                if status == 429
                else None
            )
            # Like some real providers, the 401 quotes the key it got: the gateway must not pass it on.
            said = f" (key {request.headers.get('Authorization', '')})" if status == 401 else ""
            return _error(status, f"fake upstream refused with {status}{said}", headers=headers)
        said = received_credential(request)
        if model == "leak-error" and not payload.get("stream"):
            return _error(429, f"fake upstream refused the key {said}", headers={"Retry-After": said})
        if model == "slow":
            await asyncio.sleep(5)
        message = _answer(model, payload)
        if model == "leak":
            message = {"role": "assistant", "content": f"Your key is {said}"}
        stopped = _stop_matched(model, payload, message)
        if not payload.get("stream"):
            return web.json_response(_completion(model, message, stopped), headers={"X-Seen-Key": said})
        return await self._stream(request, model, message, payload, stopped)

    async def _stream(
        self,
        request: web.Request,
        model: str,
        message: dict[str, Any],
        payload: dict[str, Any],
        stopped: str | None = None,
    ) -> web.StreamResponse:
        said = received_credential(request)
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Seen-Key": said})
        await response.prepare(request)
        usage = bool((payload.get("stream_options") or {}).get("include_usage"))
        chunks = _chunks(model, message, include_usage=usage, stopped=stopped)
        key = received_key(request) if model.startswith("leak") else None
        for index, chunk in enumerate(chunks):
            if model == "paced" and index:  # a stream still in flight for a while (about a second)
                await asyncio.sleep(0.15)
            # Some providers write "data:" with no space after the colon, which SSE allows.
            prefix = b"data:" if model.endswith("-tight") else b"data: "
            await write_split(response, prefix + orjson.dumps(chunk) + b"\n\n", key)
            if model == "broken-stream" and index == 1:
                request.transport.close()  # type: ignore[union-attr]
                return response
            if model.startswith("midstream-error") or model == "leak-error":
                failure = f"fake mid-stream failure for {said}" if key else "fake mid-stream failure"
                error = orjson.dumps({"error": {"message": failure, "type": "server_error"}})
                await write_split(response, prefix + error + b"\n\n", key)
                return response
            if model == "hang":
                await asyncio.sleep(3600)
        if model != "no-done":
            await response.write(b"data: [DONE]\n\n")
        if model == "late-eof":  # the body's end arrives well after [DONE], in a packet of its own
            await asyncio.sleep(0.05)
        return response


def _endpoint_at(spec: ProviderSpec, local: str | None) -> str | None:
    """The registry endpoint an entry serves at ``local`` (its path below the entry's URL)."""
    return next((name for name, path in spec.endpoints.items() if path == local), None)


def _stop_matched(model: str, payload: dict[str, Any], message: dict[str, Any]) -> str | None:
    """The stop-sequence scenario, as vLLM answers: the text cut before the first stop sequence it
    holds, which the choice's ``stop_reason`` names."""
    stop = payload.get("stop")
    content = message.get("content")
    if model != "stop-sequence" or not isinstance(stop, list) or not isinstance(content, str):
        return None
    for sequence in stop:
        if sequence in content:
            message["content"] = content.split(sequence, 1)[0]
            return str(sequence)
    return None


def _check_auth(spec: ProviderSpec, request: web.Request, key: str) -> web.Response | None:
    if spec.auth == "bearer" and request.headers.get("Authorization") != f"Bearer {key}":
        return _error(401, "Incorrect API key provided.")
    # Google also takes its key as ?key=, which its curl examples use.
    query_key = request.query.get("key") if spec.auth == "x-goog-api-key" else None
    if spec.auth not in ("bearer", "none") and key not in (request.headers.get(spec.auth), query_key):
        return _error(401, f"missing or wrong {spec.auth}")
    for name, value in spec.headers.items():
        if request.headers.get(name) not in VERSIONS.get(name, {value}):
            return _error(400, f"missing header {name}")
    return None


# The API versions a provider accepts in a header the registry fixes; a caller may send its own
# (Anthropic's: the two it publishes, and the one this SDK sends), any other is refused.
VERSIONS = {"anthropic-version": {"2023-01-01", "2023-06-01", ANTHROPIC_API_VERSION}}


# Tool-call ids the providers refuse, written out here (not read from the registry) so a wrong
# registry rule fails the tests: OpenAI caps them at 40 characters, Mistral wants exactly 9 letters
# and digits. Every provider wants a tool result to answer a call made before it.
MISTRAL_TOOL_CALL_ID = re.compile(r"[a-zA-Z0-9]{9}")


def _refused_tool_call_ids(pid: str, payload: dict[str, Any]) -> web.Response | None:
    called: set[str] = set()
    for index, message in enumerate(payload.get("messages") or []):
        ids = [
            (f"messages[{index}].tool_calls[{i}].id", c.get("id"))
            for i, c in enumerate(message.get("tool_calls") or [])
        ]
        if message.get("role") == "tool":
            if message.get("tool_call_id") not in called:
                return _error(
                    400,
                    "Invalid parameter: messages with role 'tool' must be a response to a preceeding message with "
                    "'tool_calls'.",
                    param=f"messages[{index}].role",
                )
            ids.append((f"messages[{index}].tool_call_id", message["tool_call_id"]))
        for where, call_id in ids:
            call_id = str(call_id)
            if pid == "openai" and where.endswith(".id") and len(call_id) > 40:
                return _error(
                    400,
                    f"Invalid '{where}': string too long. Expected a string with maximum length 40, but got a "
                    f"string with length {len(call_id)} instead.",
                    param=where,
                    code="string_above_max_length",
                )
            if pid == "mistral" and MISTRAL_TOOL_CALL_ID.fullmatch(call_id) is None:
                body = {
                    "object": "error",
                    "message": f"Tool call id was {call_id} but must be a-z, A-Z, 0-9, with a length of 9.",
                    "type": "invalid_function_call",
                    "param": None,
                    "code": "3280",
                }
                return web.json_response(body, status=400)
            called.add(call_id)
    return None


def _error(
    status: int, message: str, headers: dict[str, str] | None = None, *, param: str | None = None, code: str = ""
) -> web.Response:
    body = {
        "error": {
            "message": message,
            "type": "invalid_request_error" if status < 500 else "server_error",
            "code": code or f"fake_{status}",
            "param": param,
        }
    }
    return web.json_response(body, status=status, headers=headers)


def _model_page(fmt: str, query: Any) -> dict[str, Any]:
    """Models model-a and model-b in the format's native shape, one per page where it pages."""
    second = any(k in query for k in ("after_id", "page_token", "pageToken")) or query.get("page") == "2"
    name = "model-b" if second else "model-a"
    if fmt == "openai":
        return {
            "object": "list",
            "data": [
                {"id": "model-b", "object": "model", "created": 1700000001, "owned_by": "acme"},
                {"id": "model-a", "object": "model", "created": 1700000000, "owned_by": "acme"},
            ],
        }
    if fmt == "anthropic":
        return {
            "data": [{"type": "model", "id": name, "display_name": name.title(), "created_at": "2025-02-19T00:00:00Z"}],
            "has_more": not second,
            "first_id": name,
            "last_id": name,
        }
    if fmt == "cohere":
        return {
            "models": [{"name": name, "endpoints": ["chat"], "context_length": 128000}],
            **({} if second else {"next_page_token": "page-2"}),
        }
    if fmt == "cloudflare":
        return {
            "success": True,
            "errors": [],
            "messages": [],
            "result": [
                {
                    "id": f"id-{name}",
                    "name": name,
                    "task": {"name": "Text Generation"},
                    "created_at": "2024-01-01 00:00:00",
                }
            ],
            "result_info": {"page": 2 if second else 1, "per_page": 1, "count": 1, "total_count": 2},
        }
    if fmt == "google":
        return {
            "models": [{"name": f"models/{name}", "displayName": name}],
            **({} if second else {"nextPageToken": "p2"}),
        }
    raise AssertionError(f"no fake for model format {fmt}")


def _add_model(page: dict[str, Any], fmt: str, name: str) -> None:
    """One more model in a page of the format's native list."""
    if fmt == "openai":
        page["data"].append({"id": name, "object": "model", "created": 1700000002, "owned_by": name})
    elif fmt == "anthropic":
        page["data"].append({"type": "model", "id": name, "display_name": name, "created_at": "2025-02-19T00:00:00Z"})
    elif fmt == "cohere":
        page["models"].append({"name": name, "endpoints": ["chat"], "context_length": 128000})
    elif fmt == "cloudflare":
        entry = {"id": name, "name": name, "task": {"name": "Text Generation"}, "created_at": "2024-01-01 00:00:00"}
        page["result"].append(entry)
    else:
        page["models"].append({"name": f"models/{name}", "displayName": name})


def _last_user_text(payload: dict[str, Any]) -> str:
    for message in reversed(payload["messages"]):
        if message.get("role") == "user":
            content = message.get("content")
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
            return str(content)
    return ""


def agent_directives(text: str) -> list[tuple[str, str]]:
    """``call <tool> <json arguments>`` directives, separated by ';', from a prompt."""
    calls = []
    for part in text.split(";"):
        words = part.strip().split(" ", 2)
        if len(words) >= 2 and words[0] == "call":
            calls.append((words[1], words[2] if len(words) > 2 else "{}"))
    return calls


def agent_turn(model: str, prompt: str, results: list[str], turn: int) -> tuple[list[tuple[str, str]], str]:
    """What the "agent" models do: call the tools the prompt names (every turn for agent-loop), then
    report the results. Returns (calls, text)."""
    if not results or model == "agent-loop":
        return agent_directives(prompt), ""
    return [], "Done: " + " | ".join(results)


def _answer(model: str, payload: dict[str, Any]) -> dict[str, Any]:
    if model.startswith("agent"):
        messages = payload["messages"]
        last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
        results = [str(m.get("content")) for m in messages[last_user:] if m["role"] == "tool"]
        turn = sum(m["role"] == "assistant" for m in messages)
        calls, text = agent_turn(model, _last_user_text(payload), results, turn)
        if calls:
            tool_calls = [
                {"id": f"call_{turn}_{i}", "type": "function", "function": {"name": n, "arguments": a}}
                for i, (n, a) in enumerate(calls)
            ]
            return {"role": "assistant", "content": None, "tool_calls": tool_calls}
        return {"role": "assistant", "content": text}
    if model == "refusal":  # OpenAI's structured refusal: no content, the reason in "refusal"
        return {"role": "assistant", "content": None, "refusal": "I cannot help with that."}
    if model == "tool" and payload.get("tools"):
        name = payload["tools"][0]["function"]["name"]
        call = {"id": "call_1", "type": "function", "function": {"name": name, "arguments": '{"city": "Paris"}'}}
        return {"role": "assistant", "content": None, "tool_calls": [call]}
    return {"role": "assistant", "content": f"You said: {_last_user_text(payload)}"}


USAGE = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}


def _completion(model: str, message: dict[str, Any], stopped: str | None = None) -> dict[str, Any]:
    return {
        "id": "chatcmpl-fake",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": message,
                "finish_reason": "tool_calls" if message.get("tool_calls") else "stop",
                **({"stop_reason": stopped} if stopped else {}),
            }
        ],
        "usage": USAGE,
    }


def _chunks(
    model: str, message: dict[str, Any], *, include_usage: bool, stopped: str | None = None
) -> list[dict[str, Any]]:
    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {
            "id": "chatcmpl-fake",
            "object": "chat.completion.chunk",
            "created": 1700000000,
            "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }

    out = [chunk({"role": "assistant", "content": ""})]
    if message.get("tool_calls"):
        for index, call in enumerate(message["tool_calls"]):
            function = call["function"]
            start = {
                "index": index,
                "id": call["id"],
                "type": "function",
                "function": {"name": function["name"], "arguments": ""},
            }
            out.append(chunk({"tool_calls": [start]}))
            arguments = function["arguments"]
            for piece in (arguments[:8], arguments[8:]):
                out.append(chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]}))
        out.append(chunk({}, "tool_calls"))
    elif message.get("refusal"):
        words = message["refusal"].split(" ")
        out += [chunk({"refusal": w if i == 0 else " " + w}) for i, w in enumerate(words)]
        out.append(chunk({}, "stop"))
    else:
        field = "refusal" if message.get("refusal") else "content"
        words = message[field].split(" ")
        out += [chunk({field: w if i == 0 else " " + w}) for i, w in enumerate(words)]
        out.append(chunk({}, "stop"))
        if stopped:
            out[-1]["choices"][0]["stop_reason"] = stopped
    if include_usage:
        out.append(
            {
                "id": "chatcmpl-fake",
                "object": "chat.completion.chunk",
                "created": 1700000000,
                "model": model,
                "choices": [],
                "usage": USAGE,
            }
        )
    return out


async def _proxy_target(request: web.Request, tail: str, body: bytes) -> web.StreamResponse:
    """Paths the proxy tests reach: /echo (the default), /status/<n>, /stream/<n>, and /slowlist/ (a
    model list that takes 5 s), /delay/<seconds>, /gzip, /cut (a body cut off midway)."""
    if "/slowlist/" in tail:
        await asyncio.sleep(5)
    # /leak/<n>: status n, the credential quoted in the body and an X-Seen-Key header;
    # /leak-stream: a body quoting it, written cut mid-key; /coded/<coding>: a body marked with that coding.
    said = received_credential(request)
    if "/leak/" in tail:
        status = int(tail.rsplit("/", 1)[1])
        return web.json_response(
            {"error": {"message": f"you sent {said}"}}, status=status, headers={"X-Seen-Key": said}
        )
    if tail.endswith("/leak-stream"):
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "X-Seen-Key": said})
        await response.prepare(request)
        await write_split(response, f"data: you sent {said}\n\n".encode(), received_key(request))
        await response.write_eof()
        return response
    if "/coded/" in tail:  # a body marked with a content coding it does not really have
        return web.Response(body=b"not really coded", headers={"Content-Encoding": tail.rsplit("/", 1)[1]})
    if tail.endswith("/gzip"):
        response = web.json_response({"compressed": True, "accept-encoding": request.headers.get("Accept-Encoding")})
        response.enable_compression(web.ContentCoding.gzip)
        return response
    if "/delay/" in tail:
        await asyncio.sleep(float(tail.rsplit("/", 1)[1]))
    if "/status/" in tail:
        return web.json_response(
            {"status": int(tail.rsplit("/", 1)[1])},
            status=int(tail.rsplit("/", 1)[1]),
            headers={
                "X-Upstream": "yes",
                "Set-Cookie": "session=upstream",
                # What OpenAI and Anthropic say of the account a key belongs to: the gateway's.
                "OpenAI-Organization": "org-gateway",
                "OpenAI-Project": "proj_gateway",
                "Anthropic-Organization-Id": "b6e8f0aa-0000-4000-8000-000000000000",
            },
        )
    if tail.endswith("/cut"):  # a body announced at 1 MB, cut off after its first bytes
        response = web.StreamResponse(headers={"Content-Type": "application/json", "Content-Length": "1000000"})
        await response.prepare(request)
        await response.write(b'{"partial": "' + b"x" * 1000)
        await asyncio.sleep(0.05)
        request.transport.close()  # type: ignore[union-attr]
        return response
    if "/stream/" in tail:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for i in range(int(tail.rsplit("/", 1)[1])):
            await response.write(f"data: {i}\n\n".encode())
            await asyncio.sleep(0.01)
        await response.write_eof()
        return response
    return web.json_response(
        {
            "repeated": request.headers.getall("X-Repeated", []),
            "method": request.method,
            "path": request.raw_path.split("?")[0],
            "query": request.raw_path.partition("?")[2],  # as sent, still percent-encoded
            "headers": {k.lower(): v for k, v in request.headers.items()},
            "body": body.decode("utf-8", "replace"),
        },
        headers={"X-Upstream": "yes"},
    )
