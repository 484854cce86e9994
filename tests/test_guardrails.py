"""Guardrails end to end: real Rego policy files (compiled by regopy), a real external detector on
loopback, real MCP servers for the tool checks, the fakes as providers, the openai SDK as client."""

from __future__ import annotations

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import openai
import orjson
import pytest
import pytest_asyncio
from aiohttp import web

from gateway import Settings
from gateway.guardrails import PolicyError
from gateway.guardrails.redact import redact_body
from gateway.settings import SettingsError

from .conftest import GatewayFactory
from .fakes import FakeProviders, fake_key
from .mcp_servers import TOKEN, MCPTestServer

# One policy for every phase, as an operator would write it (Rego v1 syntax).
POLICY = """
package guardrails

import rego.v1

default main := {"action": "allow"}

body := input.request.body

main := {"action": "block", "message": "card numbers may not be sent"} if {
    input.phase == "pre_call"
    contains(body, "4111")
}

main := {"action": "block", "message": sprintf("%v may not use %v", [input.identity.sub, input.request.model])} if {
    input.phase == "pre_call"
    input.identity.sub == "intern"
    input.request.model == "openai/expensive"
}

main := {"action": "redact"} if {
    input.phase == "pre_call"
    contains(body, "api_key=")
}

main := {"action": "block", "message": "that answer is withheld"} if {
    input.phase == "post_call"
    contains(body, "forbidden-answer")
}

main := {"action": "block", "message": "numbers over 100 are not for this tool"} if {
    input.phase == "tool_args"
    input.path == "mcp_add"
    args := json.unmarshal(body)
    args.a > 100
}

main := {"action": "redact"} if {
    input.phase == "tool_output"
    contains(body, "sk-")
}
"""
# Two rules for one input with different values: an evaluation error, for the fail modes.
CONFLICT = """
package guardrails

import rego.v1

main := {"action": "allow"} if { contains(input.request.body, "conflict") }
main := {"action": "block"} if { contains(input.request.body, "conflict") }
"""
CALLER_KEY = "caller-secret-key-0001"
INTERN_KEY = "intern-secret-key-0002"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
def policies(tmp_path: Path) -> Iterator[Path]:
    (tmp_path / "main.rego").write_text(POLICY)
    (tmp_path / "README.txt").write_text("not a policy: ignored")
    yield tmp_path


def sdk(url: str, key: str = "x") -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0)


def said(text: str) -> list[dict[str, Any]]:
    return [{"role": "user", "content": text}]


def posts_to(fake: FakeProviders, pid: str) -> int:
    return sum(1 for seen in fake.seen if seen.method == "POST" and seen.path.startswith(f"/{pid}/"))


async def test_a_request_a_policy_blocks_never_reaches_the_provider(
    gateway_with: GatewayFactory, fake: FakeProviders, policies: Path
) -> None:
    async with gateway_with(GUARDRAILS_ENABLED="true", GUARDRAILS_POLICY_DIR=str(policies)) as url:
        before = posts_to(fake, "openai")
        with pytest.raises(openai.PermissionDeniedError) as refused:
            await sdk(url).chat.completions.create(model="openai/m", messages=said("card 4111 1111 1111 1111"))
        assert refused.value.status_code == 403
        body = refused.value.body
        assert isinstance(body, dict) and body["code"] == "guardrail_blocked"
        assert body["message"] == "card numbers may not be sent"
        assert posts_to(fake, "openai") == before
        answer = await sdk(url).chat.completions.create(model="openai/m", messages=said("hello"))
        assert answer.choices[0].message.content == "You said: hello"
        # The raw proxy is checked too.
        async with httpx.AsyncClient() as http:
            proxied = await http.post(f"{url}/proxy/openai/echo", json={"note": "4111"})
        assert proxied.status_code == 403 and proxied.json()["error"]["code"] == "guardrail_blocked"


async def test_policies_see_who_is_calling(gateway_with: GatewayFactory, policies: Path) -> None:
    env = {
        "GUARDRAILS_ENABLED": "true",
        "GUARDRAILS_POLICY_DIR": str(policies),
        "AUTH_ENABLED": "true",
        "AUTH_API_KEYS": f"service:{sha(CALLER_KEY)},intern:{sha(INTERN_KEY)}",
    }
    async with gateway_with(**env) as url:
        with pytest.raises(openai.PermissionDeniedError, match="intern may not use openai/expensive"):
            await sdk(url, INTERN_KEY).chat.completions.create(model="openai/expensive", messages=said("hi"))
        answer = await sdk(url, CALLER_KEY).chat.completions.create(model="openai/expensive", messages=said("hi"))
        assert answer.choices[0].message.content == "You said: hi"
        answer = await sdk(url, INTERN_KEY).chat.completions.create(model="openai/cheap", messages=said("hi"))
        assert answer.choices[0].message.content == "You said: hi"


async def test_a_redact_decision_rewrites_what_the_provider_gets(
    gateway_with: GatewayFactory, fake: FakeProviders, policies: Path
) -> None:
    async with gateway_with(GUARDRAILS_ENABLED="true", GUARDRAILS_POLICY_DIR=str(policies)) as url:
        answer = await sdk(url).chat.completions.create(
            model="openai/m", messages=said("deploy with api_key=abcdef1234567890 please")
        )
    sent = fake.last_post("openai")
    assert sent.json["messages"][0]["content"] == "deploy with api_key=[REDACTED] please"
    assert int(sent.headers["content-length"]) == len(sent.body)
    assert answer.choices[0].message.content == "You said: deploy with api_key=[REDACTED] please"


async def test_an_answer_a_policy_blocks_is_withheld_but_streams_pass(
    gateway_with: GatewayFactory, policies: Path
) -> None:
    async with gateway_with(GUARDRAILS_ENABLED="true", GUARDRAILS_POLICY_DIR=str(policies)) as url:
        with pytest.raises(openai.PermissionDeniedError, match="that answer is withheld"):
            await sdk(url).chat.completions.create(model="openai/m", messages=said("forbidden-answer"))
        # As in inference-gateway, an event stream is the client's as it is sent: not held.
        stream = await sdk(url).chat.completions.create(
            model="openai/m", messages=said("forbidden-answer"), stream=True
        )
        text = "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])
        assert text == "You said: forbidden-answer"


@pytest.mark.parametrize(("mode", "status"), [("closed", 403), ("open", 200)])
async def test_a_check_that_fails_follows_the_fail_mode(
    gateway_with: GatewayFactory, tmp_path: Path, mode: str, status: int
) -> None:
    (tmp_path / "conflict.rego").write_text(CONFLICT)
    env = {"GUARDRAILS_ENABLED": "true", "GUARDRAILS_POLICY_DIR": str(tmp_path), "GUARDRAILS_FAIL_MODE": mode}
    async with gateway_with(**env) as url, httpx.AsyncClient() as http:
        response = await http.post(
            f"{url}/v1/chat/completions", json={"model": "openai/m", "messages": said("a conflict")}
        )
        assert response.status_code == status, response.text
        if status == 403:
            assert response.json()["error"]["code"] == "guardrail_blocked"
        calm = await http.post(f"{url}/v1/chat/completions", json={"model": "openai/m", "messages": said("calm")})
        assert calm.status_code == 200


class Detector:
    """An external guardrail service: blocks bodies that mention "forbidden-topic", hangs on "slow"."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.raw: list[bytes] = []
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        raw = await request.read()
        self.raw.append(raw + str(dict(request.headers)).encode())
        document = orjson.loads(raw)
        self.seen.append(document)
        body = document["request"]["body"]
        if "slow" in body:
            await asyncio.sleep(3)
        if "broken" in body:
            return web.Response(status=500, text="detector down")
        if "forbidden-topic" in body:
            return web.json_response({"action": "block", "message": "the detector says no"})
        return web.json_response({"action": "allow"})

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Detector]:
        app = web.Application()
        app.router.add_post("/check", self.handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}/check"  # type: ignore[union-attr]
        try:
            yield self
        finally:
            await runner.cleanup()


@pytest.mark.timeout(30)
async def test_the_external_detector_is_asked_and_bounded(gateway_with: GatewayFactory) -> None:
    async with Detector().running() as detector:
        env = {
            "GUARDRAILS_ENABLED": "true",
            "GUARDRAILS_EXTERNAL_URL": detector.url,
            "GUARDRAILS_EXTERNAL_TIMEOUT": "300ms",
            "AUTH_ENABLED": "true",
            "AUTH_API_KEYS": f"service:{sha(CALLER_KEY)}",
        }
        async with gateway_with(**env) as url:
            client = sdk(url, CALLER_KEY)
            with pytest.raises(openai.PermissionDeniedError, match="the detector says no"):
                await client.chat.completions.create(model="openai/m", messages=said("a forbidden-topic"))
            answer = await client.chat.completions.create(model="openai/m", messages=said("fine"))
            assert answer.choices[0].message.content == "You said: fine"
            for trouble in ("slow", "broken"):  # closed by default: a detector that fails refuses
                with pytest.raises(openai.PermissionDeniedError, match="could not be checked"):
                    await client.chat.completions.create(model="openai/m", messages=said(trouble))
    phases = [(d["phase"], d["path"]) for d in detector.seen]
    assert ("pre_call", "/v1/chat/completions") in phases and ("post_call", "/v1/chat/completions") in phases
    pre = next(d for d in detector.seen if d["phase"] == "pre_call")
    assert pre["method"] == "POST" and pre["request"]["model"] == "openai/m"
    assert pre["identity"]["sub"] == "service"
    # The detector is told what was asked and by whom, never a credential.
    leaked = b"".join(detector.raw)
    assert CALLER_KEY.encode() not in leaked and fake_key("openai").encode() not in leaked


@pytest_asyncio.fixture(scope="module")
async def calc() -> AsyncIterator[MCPTestServer]:
    server = await MCPTestServer("stateful", token=True).start()
    yield server
    await server.stop()


async def test_mcp_tool_calls_are_checked_before_and_after_they_run(
    gateway_with: GatewayFactory, calc: MCPTestServer, policies: Path
) -> None:
    env = {
        "GUARDRAILS_ENABLED": "true",
        "GUARDRAILS_POLICY_DIR": str(policies),
        "MCP_ENABLED": "true",
        "MCP_EXPOSE": "true",
        "MCP_SERVERS": f"main={calc.url}",
        "MCP_SERVER_HEADERS": json.dumps({"main": {"Authorization": f"Bearer {TOKEN}"}}),
    }
    async with gateway_with(**env) as url, httpx.AsyncClient() as http:
        for _ in range(300):  # the server connects in the background
            if (await http.get(f"{url}/v1/mcp/tools")).json()["data"]:
                break
            await asyncio.sleep(0.02)
        client = sdk(url)
        allowed = await client.chat.completions.create(
            model="openai/agent", messages=said('call mcp_add {"a": 1, "b": 2}')
        )
        assert allowed.choices[0].message.content == "Done: 3"
        calls_before = len(calc.metas)
        blocked = await client.chat.completions.create(
            model="openai/agent", messages=said('call mcp_add {"a": 500, "b": 2}')
        )
        content = blocked.choices[0].message.content or ""
        assert "numbers over 100 are not for this tool" in content
        assert len(calc.metas) == calls_before  # the tool never ran
        echoed = await client.chat.completions.create(
            model="openai/agent", messages=said('call mcp_echo {"text": "token sk-abcdefghijklmnopqrstuvwxyz"}')
        )
        assert echoed.choices[0].message.content == "Done: token [REDACTED]"


def test_a_policy_that_does_not_compile_stops_start_up(tmp_path: Path, fake: FakeProviders) -> None:
    from gateway import create_app

    (tmp_path / "broken.rego").write_text("package guardrails\nmain := {")
    with pytest.raises(PolicyError, match="do not compile"):
        create_app(Settings.load({**fake.env(), "GUARDRAILS_ENABLED": "true", "GUARDRAILS_POLICY_DIR": str(tmp_path)}))


def test_a_missing_policy_directory_is_refused(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere"
    with pytest.raises(SettingsError, match="GUARDRAILS_POLICY_DIR"):
        Settings.load({"GUARDRAILS_ENABLED": "true", "GUARDRAILS_POLICY_DIR": str(missing)})


def test_regopy_loads_only_when_guardrails_are_on() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from gateway import create_app, Settings; create_app(Settings.load({})); "
        "print('regopy' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (b'{"a": "Bearer abcdefghijklmnopqrstuvwxyz123"}', {"a": "Bearer [REDACTED]"}),
        (
            b'{"a": ["card 4242-4242-4242-4242", "order 1234567890123"]}',
            {"a": ["card [REDACTED]", "order 1234567890123"]},
        ),
        (b'{"k": "secret: hunter2hunter2"}', {"k": "secret: [REDACTED]"}),
    ],
)
def test_redaction_keeps_json_whole(body: bytes, expected: Any) -> None:
    assert orjson.loads(redact_body(body)) == expected


def test_the_readmes_policy_compiles_and_blocks(tmp_path: Path) -> None:
    from gateway.guardrails.policy import Policies

    readme = (Path(__file__).parent.parent / "README.md").read_text()
    policy = readme.split("```rego\n", 1)[1].split("```", 1)[0]
    (tmp_path / "cards.rego").write_text(policy)
    policies = Policies.load(tmp_path)
    assert policies is not None

    def decide(body: str) -> str:
        return policies.decide({"phase": "pre_call", "request": {"body": body}}).action

    assert decide("pay with 4111 1111 1111 1111") == "block" and decide("hello") == "allow"
