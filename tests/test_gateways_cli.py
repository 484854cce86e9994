"""``polyrelay gateways ...`` run as a user runs it, against a real management API on loopback."""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from .gateways_runtime import management

ROOT = Path(__file__).parent.parent
TOKEN = "pr-cli-admin"


@pytest_asyncio.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    database = tmp_path_factory.mktemp("cli") / "gateways.db"
    keys = f"cli:{hashlib.sha256(TOKEN.encode()).hexdigest()}::admin"
    async with management(f"sqlite:///{database}", AUTH_ENABLED="true", AUTH_API_KEYS=keys) as (url, _):
        yield url


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


async def test_create_list_get_delete(api: str, tmp_path: Path) -> None:
    spec = tmp_path / "spec.json"
    spec.write_text(
        json.dumps({"name": "from-cli", "coreWeaveAuth": {}, "headerBasedRouting": {"headerName": "X-Model"}})
    )
    code, out, err = await polyrelay("--url", api, "create", "--file", str(spec))
    assert code == 0, err
    gateway = json.loads(out)["gateway"]
    gateway_id = gateway["spec"]["id"]
    assert gateway["spec"]["headerBasedRouting"] == {"headerName": "X-Model"}

    code, out, _ = await polyrelay("--url", api, "list")
    assert code == 0 and gateway_id in [g["spec"]["id"] for g in json.loads(out)["gateways"]]
    code, out, _ = await polyrelay("--url", api, "get", gateway_id)
    assert code == 0 and json.loads(out)["gateway"]["spec"]["name"] == "from-cli"
    code, out, _ = await polyrelay("--url", api, "parameters")
    assert code == 0 and json.loads(out) == {"zones": ["eu-west", "on-prem", "us-east"]}
    code, out, _ = await polyrelay("--url", api, "delete", gateway_id)
    assert code == 0 and json.loads(out)["gateway"]["status"]["status"] == "STATUS_DELETING"


async def test_refusals_go_to_stderr_with_exit_code_1(api: str, tmp_path: Path) -> None:
    code, out, err = await polyrelay("--url", api, "create", "--file", "-", stdin=b'{"name": "Bad Name"}')
    assert (code, out) == (1, "") and err.startswith("polyrelay: 400: name 'Bad Name' is not valid")
    code, _, err = await polyrelay("--url", api, "get", "0b6c3d9e-4f1a-4b8e-9c2d-7e5f6a1b2c3d")
    assert code == 1 and "404: No gateway has the id" in err
    code, _, err = await polyrelay("--url", api, "list", token="pr-wrong")
    assert code == 1 and "401: The API key is not valid." in err
    code, _, err = await polyrelay("--url", api, "create", "--file", str(tmp_path / "missing.json"))
    assert code == 1 and "No such file" in err
    code, _, err = await polyrelay("--url", "http://127.0.0.1:9", "list")
    assert code == 1 and "cannot reach the management API" in err
