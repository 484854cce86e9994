"""``polyrelay gateways ...`` run as a user runs it, against a real management API on loopback."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from gateway.__main__ import main

from .data_planes import serve_gateways
from .fakes import FakeProviders

ROOT = Path(__file__).parent.parent
TOKEN = "pr-cli-admin"


@pytest_asyncio.fixture(scope="module")
async def api(fake: FakeProviders) -> AsyncIterator[str]:
    keys = f"cli:{hashlib.sha256(TOKEN.encode()).hexdigest()}::admin"
    async with serve_gateways(fake, GROQ_ZONE="on-prem", AUTH_ENABLED="true", AUTH_API_KEYS=keys) as served:
        yield served.management


async def polyrelay(*args: str, token: str = TOKEN, stdin: bytes = b"") -> tuple[int, str, str]:
    env = {**os.environ, "POLYRELAY_GATEWAYS_TOKEN": token, "PYTHONPATH": os.pathsep.join(sys.path)}
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "gateways",
        *args,
        env=env,
        cwd=ROOT,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await process.communicate(stdin)
    assert process.returncode is not None
    return process.returncode, out.decode(), err.decode()


async def cli(*args: str, token: str = TOKEN, stdin: str = "") -> tuple[int, str, str]:
    """``polyrelay gateways ...`` in this process (on a thread: it blocks on its HTTP calls)."""

    def run() -> tuple[int, str, str]:
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            saved, sys.stdin = sys.stdin, io.StringIO(stdin)
            try:
                code = main(["gateways", *args], {"POLYRELAY_GATEWAYS_TOKEN": token})
            finally:
                sys.stdin = saved
        return code, out.getvalue(), err.getvalue()

    return await asyncio.to_thread(run)


async def test_the_command_creates_a_gateway(api: str, tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    routing = {"headerName": "X-Model"}
    spec.write_text(json.dumps({"name": "from-cli", "coreWeaveAuth": {}, "headerBasedRouting": routing}))
    code, out, err = await polyrelay("--url", api, "create", "--file", str(spec))  # the installed command
    assert code == 0, err
    gateway = json.loads(out)["gateway"]
    assert gateway["spec"]["headerBasedRouting"] == {"headerName": "X-Model"}


async def test_list_get_update_delete(api: str, tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps({"name": "second", "coreWeaveAuth": {}, "pathBasedRouting": {}}))
    code, out, err = await cli("--url", api, "create", "--file", str(spec))
    assert code == 0, err
    gateway_id = json.loads(out)["gateway"]["spec"]["id"]

    code, out, _ = await cli("--url", api, "list")
    assert code == 0 and gateway_id in [g["spec"]["id"] for g in json.loads(out)["gateways"]]
    code, out, _ = await cli("--url", api, "list", "--updated-after", "2999-01-01T00:00:00Z")
    assert code == 0 and json.loads(out) == {"gateways": []}
    code, out, _ = await cli("--url", api, "get", gateway_id)
    assert code == 0 and json.loads(out)["gateway"]["spec"]["name"] == "second"
    changed = json.dumps({"name": "renamed", "coreWeaveAuth": {}, "pathBasedRouting": {}})
    code, out, _ = await cli("--url", api, "update", gateway_id, "--file", "-", stdin=changed)
    assert code == 0 and json.loads(out)["gateway"]["spec"]["name"] == "renamed"
    code, out, _ = await cli("--url", api, "parameters")
    assert code == 0 and json.loads(out) == {"zones": ["eu-west", "on-prem", "us-east"]}
    code, out, _ = await cli("--url", api, "delete", gateway_id)
    assert code == 0 and json.loads(out)["gateway"]["status"]["status"] == "STATUS_DELETING"


async def test_refusals_go_to_stderr_with_exit_code_1(api: str, tmp_path: Path) -> None:
    code, out, err = await polyrelay("--url", api, "create", "--file", "-", stdin=b'{"name": "Bad Name"}')
    assert (code, out) == (1, "") and err.startswith("polyrelay: 400: name 'Bad Name' is not valid")
    code, _, err = await cli("--url", api, "get", "0b6c3d9e-4f1a-4b8e-9c2d-7e5f6a1b2c3d")
    assert code == 1 and "404: No gateway has the id" in err
    code, _, err = await cli("--url", api, "list", token="pr-wrong")
    assert code == 1 and "401: The API key is not valid." in err
    code, _, err = await cli("--url", api, "create", "--file", str(tmp_path / "missing.json"))
    assert code == 1 and "No such file" in err
    code, _, err = await cli("--url", api, "create", "--file", "-", stdin="{not json")
    assert code == 1 and "is not JSON" in err
    code, _, err = await cli("--url", "http://127.0.0.1:9", "list")
    assert code == 1 and "cannot reach the management API" in err
