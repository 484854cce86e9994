"""Who may use the gateways management API, on a real gateway (its data plane and the management
port) with a real OIDC issuer on loopback: viewer reads, admin writes, organizations see only
their own gateways, refusals in CoreWeave's shape; and without authentication, a loopback bind
only."""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio

from gateway.__main__ import main
from gateway.gateways.api import BASE
from gateway.settings import Settings, SettingsError

from .conftest import GatewayFactory
from .issuer import AUDIENCE, Issuer
from .processes import free_port

ADMIN_KEY, VIEWER_KEY, PLAIN_KEY = "pr-admin-key", "pr-viewer-key", "pr-plain-key"
SPEC = {"name": "team-a", "coreWeaveAuth": {}, "pathBasedRouting": {}}


def sha(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@pytest_asyncio.fixture(scope="module")
async def issuer() -> AsyncIterator[Issuer]:
    server = Issuer()
    await server.start()
    yield server
    await server.stop()


@pytest_asyncio.fixture(scope="module")
async def secured(
    gateway_with: GatewayFactory, issuer: Issuer, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[str, str]]:
    """(the data plane's URL, the management API's URL)."""
    port = free_port()
    database = tmp_path_factory.mktemp("access") / "gateways.db"
    env = {
        "AUTH_ENABLED": "true",
        "AUTH_OIDC_ISSUER": issuer.url,
        "AUTH_OIDC_CLIENT_ID": AUDIENCE,
        "AUTH_API_KEYS": f"ops:{sha(ADMIN_KEY)}:admin,dash:{sha(VIEWER_KEY)}:viewer,ci:{sha(PLAIN_KEY)}:openai/echo",
        "GATEWAYS_ENABLED": "true",
        "GATEWAYS_PORT": str(port),
        "GATEWAYS_DATABASE_URL": f"sqlite:///{database}",
    }
    async with gateway_with(**env) as url:
        management = f"http://127.0.0.1:{port}"
        async with httpx.AsyncClient() as http:  # until the verifier has the issuer's keys
            for _ in range(200):
                answer = await http.get(f"{management}{BASE}", headers=bearer(issuer.token(roles=["viewer"])))
                if answer.status_code != 503:
                    break
                await asyncio.sleep(0.02)
        yield url, management


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def assert_error(answer: httpx.Response, status: int, fragment: str) -> dict[str, Any]:
    assert answer.status_code == status, answer.text
    document: dict[str, Any] = answer.json()
    assert set(document) == {"code", "message", "details"} and document["code"] == status
    assert fragment in document["message"], document["message"]
    return document


async def test_a_credential_is_required(secured: tuple[str, str], http: httpx.AsyncClient) -> None:
    _, management = secured
    answer = await http.get(f"{management}{BASE}")
    assert_error(answer, 401, "Authentication is required")
    assert answer.headers["www-authenticate"] == "Bearer"
    assert_error(await http.get(f"{management}{BASE}", headers=bearer("pr-wrong")), 401, "not valid")
    assert_error(await http.post(f"{management}{BASE}", json=SPEC), 401, "Authentication is required")


async def test_api_keys_by_role(secured: tuple[str, str], http: httpx.AsyncClient) -> None:
    _, management = secured
    created = await http.post(f"{management}{BASE}", json=SPEC, headers=bearer(ADMIN_KEY))
    assert created.status_code == 200, created.text
    gateway = created.json()["gateway"]["spec"]
    assert gateway["organizationId"] == "default"

    listed = await http.get(f"{management}{BASE}", headers=bearer(VIEWER_KEY))
    assert gateway["id"] in [g["spec"]["id"] for g in listed.json()["gateways"]]
    assert (await http.get(f"{management}{BASE}/parameters", headers=bearer(VIEWER_KEY))).status_code == 200
    for method in ("POST", "PATCH", "DELETE"):
        target = f"{management}{BASE}" if method == "POST" else f"{management}{BASE}/{gateway['id']}"
        answer = await http.request(method, target, json=SPEC, headers=bearer(VIEWER_KEY))
        assert_error(answer, 403, "may not change gateways: that needs the admin role")
    assert_error(await http.get(f"{management}{BASE}", headers=bearer(PLAIN_KEY)), 403, "needs the viewer role")
    deleted = await http.delete(f"{management}{BASE}/{gateway['id']}", headers=bearer(ADMIN_KEY))
    assert deleted.json()["gateway"]["status"]["status"] == "STATUS_DELETING"


async def test_tokens_by_role_and_organization(
    secured: tuple[str, str], http: httpx.AsyncClient, issuer: Issuer
) -> None:
    _, management = secured
    acme_admin = bearer(issuer.token(roles=["admin"], org_id="acme"))
    globex_viewer = bearer(issuer.token(roles="viewer", org_id="globex"))
    created = await http.post(f"{management}{BASE}", json=SPEC, headers=acme_admin)
    assert created.status_code == 200, created.text
    gateway_id = created.json()["gateway"]["spec"]["id"]
    assert created.json()["gateway"]["spec"]["organizationId"] == "acme"

    assert (await http.get(f"{management}{BASE}/{gateway_id}", headers=acme_admin)).status_code == 200
    # Another organization's gateway does not exist for a caller: 404, absent from lists, untouchable.
    assert_error(await http.get(f"{management}{BASE}/{gateway_id}", headers=globex_viewer), 404, gateway_id)
    assert gateway_id not in (await http.get(f"{management}{BASE}", headers=globex_viewer)).text
    assert gateway_id not in (await http.get(f"{management}{BASE}", headers=bearer(VIEWER_KEY))).text
    globex_admin = bearer(issuer.token(roles=["viewer", "admin"], org_id="globex"))
    assert_error(await http.delete(f"{management}{BASE}/{gateway_id}", headers=globex_admin), 404, gateway_id)
    assert (await http.get(f"{management}{BASE}/{gateway_id}", headers=acme_admin)).status_code == 200

    no_role = bearer(issuer.token(org_id="acme"))
    assert_error(await http.get(f"{management}{BASE}", headers=no_role), 403, "roles claim has it")
    wrong_org = bearer(issuer.token(roles=["admin"], org_id=["acme"]))
    assert_error(await http.get(f"{management}{BASE}", headers=wrong_org), 403, "not an organization id")
    expired = bearer(issuer.token(roles=["admin"], exp=1))
    assert_error(await http.get(f"{management}{BASE}", headers=expired), 401, "expired")


async def test_the_management_api_is_on_its_own_port_only(secured: tuple[str, str], http: httpx.AsyncClient) -> None:
    data_plane, _ = secured
    answer = await http.get(f"{data_plane}{BASE}", headers=bearer(ADMIN_KEY))
    assert answer.status_code == 404 and "error" in answer.json()  # the data plane's own 404


def test_without_authentication_only_a_loopback_bind() -> None:
    with pytest.raises(SettingsError, match=r"set AUTH_ENABLED=true .* or bind SERVER_HOST to 127\.0\.0\.1"):
        Settings.load({"GATEWAYS_ENABLED": "true", "SERVER_HOST": "0.0.0.0"})
    assert Settings.load({"GATEWAYS_ENABLED": "true", "SERVER_HOST": "::1"}).gateways_enabled
    with pytest.raises(SettingsError, match="GATEWAYS_PORT must differ"):
        Settings.load({"GATEWAYS_ENABLED": "true", "GATEWAYS_PORT": "8080"})
    with pytest.raises(SettingsError, match="GATEWAYS_DATABASE_URL must be"):
        Settings.load({"GATEWAYS_ENABLED": "true", "GATEWAYS_DATABASE_URL": "/tmp/x.db"})


def test_api_keys_keep_their_old_form_and_gain_a_role() -> None:
    digest = sha("k")
    keys = Settings.load(
        {"AUTH_API_KEYS": f"a:{digest},b:{digest}:ollama/llama3:8b,c:{digest}:openai/x|y:viewer,d:{digest}::admin"}
    ).auth_api_keys
    assert [(k.name, k.models, k.role) for k in keys] == [
        ("a", (), ""),
        ("b", ("ollama/llama3:8b",), ""),
        ("c", ("openai/x", "y"), "viewer"),
        ("d", (), "admin"),
    ]


def test_a_role_in_the_config_file_and_from_new_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(f"auth:\n  api_keys:\n    - {{name: ops, sha256: {sha('k')}, role: admin}}\n")
    assert Settings.load({}, config).auth_api_keys[0].role == "admin"
    config.write_text(f"auth:\n  api_keys:\n    - {{name: ops, sha256: {sha('k')}, role: root}}\n")
    with pytest.raises(SettingsError, match="role 'root' is not admin or viewer"):
        Settings.load({}, config)

    assert main(["new-key", "dash", "--role", "viewer"]) == 0
    printed = capsys.readouterr().out
    key = printed.split("it is not stored anywhere): ", 1)[1].split()[0]
    variable = printed.split("AUTH_API_KEYS=", 1)[1].split()[0]
    (parsed,) = Settings.load({"AUTH_API_KEYS": variable}).auth_api_keys
    assert (parsed.name, parsed.role, parsed.sha256) == ("dash", "viewer", sha(key))
