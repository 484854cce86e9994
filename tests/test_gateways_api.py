"""The gateways management API over HTTP on loopback, as a client sees it: CoreWeave's shapes,
every validation rule, the status lifecycle, and the errors in ``{"code", "message", "details"}``."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
import pytest_asyncio
import yaml

from gateway.gateways.service import Gateways

from .gateways_runtime import BASE, RecordingRuntime, management, wait_for_status

WANDB_KEY = "wandb-local-0123456789abcdef"
COMPONENTS = yaml.safe_load((Path(__file__).parent.parent / "openapi.yaml").read_text())["components"]


def conforms(document: Any, schema: str) -> None:
    """``document`` is what openapi.yaml's ``schema`` declares."""
    jsonschema.validate(document, {"$ref": f"#/components/schemas/{schema}", "components": COMPONENTS})


def spec(**fields: Any) -> dict[str, Any]:
    """A valid create request, with ``fields`` replacing (``None``: removing) its own."""
    body: dict[str, Any] = {"name": "team-a", "zones": ["eu-west"], "coreWeaveAuth": {}, "bodyBasedRouting": {}}
    for key, value in fields.items():
        if value is None:
            body.pop(key, None)
        else:
            body[key] = value
    return body


@pytest_asyncio.fixture(scope="module")
async def api(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[tuple[str, Gateways, RecordingRuntime]]:
    runtime = RecordingRuntime()
    database = tmp_path_factory.mktemp("gateways") / "gateways.db"
    async with management(f"sqlite:///{database}", runtime) as (url, service):
        yield url, service, runtime


@pytest_asyncio.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=10) as client:
        yield client


def assert_error(answer: httpx.Response, status: int, fragment: str) -> None:
    assert answer.status_code == status, answer.text
    document = answer.json()
    conforms(document, "CoreWeaveError")
    assert set(document) == {"code", "message", "details"}
    assert document["code"] == status and document["details"] == []
    assert fragment in document["message"], document["message"]


async def test_the_lifecycle_of_a_header_routed_wandb_eu_only_gateway(
    api: tuple[str, Gateways, RecordingRuntime], http: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    url, _, runtime = api
    body = spec(
        name="eu-team",
        zones=["EU-West"],
        coreWeaveAuth=None,
        weightsAndBiasesAuth={"apiKey": WANDB_KEY, "enableUsageReports": True},
        bodyBasedRouting=None,
        headerBasedRouting={"headerName": "X-Model"},
        endpointConfiguration={"additionalDns": ["EU.Inference.Example.com"]},
    )
    conforms(body, "GatewayRequest")
    created = await http.post(f"{url}{BASE}", json=body)
    assert created.status_code == 200, created.text
    conforms(created.json(), "GatewayAnswer")
    gateway = created.json()["gateway"]
    assert set(created.json()) == {"gateway"} and set(gateway) == {"spec", "status"}
    gateway_id = gateway["spec"]["id"]
    assert uuid.UUID(gateway_id).version == 4
    assert gateway["spec"] == {
        "id": gateway_id,
        "name": "eu-team",
        "zones": ["eu-west"],
        "weightsAndBiasesAuth": {
            "apiKey": "****cdef",
            "serverUrl": "https://api.wandb.ai",
            "enableUsageReports": True,
            "enableRateLimiting": False,
        },
        "organizationId": "default",
        "endpointConfiguration": {"additionalDns": ["eu.inference.example.com"]},
        "headerBasedRouting": {"headerName": "X-Model"},
    }
    status = gateway["status"]
    assert status["status"] == "STATUS_CREATING" and status["endpoints"] == []
    assert set(status) == {"createdAt", "updatedAt", "conditions", "endpoints", "status"}
    datetime.strptime(status["createdAt"], "%Y-%m-%dT%H:%M:%SZ")
    assert set(status["conditions"][0]) == {"type", "lastUpdateTime", "reason", "message", "zone", "status"}

    ready = await wait_for_status(http, url, gateway_id, "STATUS_READY")
    conforms({"gateway": ready}, "GatewayAnswer")
    assert ready["status"]["endpoints"] == [
        f"http://dp.test/gateways/{gateway_id}/v1",
        "https://eu.inference.example.com/v1",
    ]
    assert ready["status"]["conditions"][0]["reason"] == "Applied"
    applied = runtime.specs[gateway_id]
    assert applied.wandb is not None and applied.wandb.api_key == WANDB_KEY  # the runtime has the key whole
    assert applied.routing == "header" and applied.header_name == "X-Model" and applied.zones == ("eu-west",)

    conforms((await http.get(f"{url}{BASE}")).json(), "GatewayList")
    listed = (await http.get(f"{url}{BASE}")).json()["gateways"]
    assert gateway_id in [g["spec"]["id"] for g in listed]
    assert WANDB_KEY not in (await http.get(f"{url}{BASE}")).text

    deleted = await http.delete(f"{url}{BASE}/{gateway_id}")
    assert deleted.status_code == 200
    assert deleted.json()["gateway"]["status"]["status"] == "STATUS_DELETING"
    assert deleted.json()["gateway"]["spec"]["id"] == gateway_id
    for _ in range(200):
        if (await http.get(f"{url}{BASE}/{gateway_id}")).status_code == 404:
            break
        await asyncio.sleep(0.02)
    assert_error(await http.get(f"{url}{BASE}/{gateway_id}"), 404, gateway_id)
    assert gateway_id not in runtime.specs and gateway_id in runtime.removed
    assert "eu-team" in caplog.text and WANDB_KEY not in caplog.text  # logged, without the key


async def test_a_patch_is_applied_and_the_masked_key_keeps_the_stored_one(
    api: tuple[str, Gateways, RecordingRuntime], http: httpx.AsyncClient
) -> None:
    url, _, runtime = api
    body = spec(coreWeaveAuth=None, weightsAndBiasesAuth={"apiKey": WANDB_KEY})
    gateway_id = (await http.post(f"{url}{BASE}", json=body)).json()["gateway"]["spec"]["id"]
    shown = (await wait_for_status(http, url, gateway_id, "STATUS_READY"))["spec"]

    # The spec as read, with a change: the masked key stands for the stored one.
    changed = {k: v for k, v in shown.items() if k != "organizationId"}
    changed["bodyBasedRouting"] = None
    changed["pathBasedRouting"] = {}
    answer = await http.patch(f"{url}{BASE}/{gateway_id}", json=changed)
    assert answer.status_code == 200, answer.text
    assert answer.json()["gateway"]["status"]["status"] == "STATUS_UPDATING"
    assert answer.json()["gateway"]["spec"]["pathBasedRouting"] == {}
    await wait_for_status(http, url, gateway_id, "STATUS_READY")
    assert runtime.specs[gateway_id].routing == "path"
    assert runtime.specs[gateway_id].wandb.api_key == WANDB_KEY  # type: ignore[union-attr]

    changed["weightsAndBiasesAuth"] = {"apiKey": "another-key-9876543210"}
    assert (await http.patch(f"{url}{BASE}/{gateway_id}", json=changed)).status_code == 200
    await wait_for_status(http, url, gateway_id, "STATUS_READY")
    assert runtime.specs[gateway_id].wandb.api_key == "another-key-9876543210"  # type: ignore[union-attr]

    # The same spec again changes nothing: no new generation to apply.
    applies = len(runtime.applies)
    again = await http.patch(f"{url}{BASE}/{gateway_id}", json=changed)
    assert again.json()["gateway"]["status"]["status"] == "STATUS_READY"
    await asyncio.sleep(0.1)
    assert len(runtime.applies) == applies

    assert_error(
        await http.patch(f"{url}{BASE}/{uuid.uuid4()}", json=changed), 404, "No gateway has the id"
    )  # the body's id differs, but the path's gateway does not exist
    other_id = str(uuid.uuid4())
    assert_error(await http.patch(f"{url}{BASE}/{gateway_id}", json={**changed, "id": other_id}), 400, "differs")


async def test_a_failed_gateway_is_applied_anew_by_the_same_spec(
    api: tuple[str, Gateways, RecordingRuntime], http: httpx.AsyncClient
) -> None:
    url, _, _ = api
    body = spec(endpointConfiguration={"additionalDns": ["shared.example"]})
    holder = (await http.post(f"{url}{BASE}", json=body)).json()["gateway"]["spec"]["id"]
    await wait_for_status(http, url, holder, "STATUS_READY")
    second = (await http.post(f"{url}{BASE}", json=body)).json()["gateway"]["spec"]["id"]
    failed = await wait_for_status(http, url, second, "STATUS_FAILED")
    assert "shared.example is served by the gateway" in failed["status"]["conditions"][0]["message"]
    assert failed["status"]["endpoints"] == []

    await http.delete(f"{url}{BASE}/{holder}")
    while (await http.get(f"{url}{BASE}/{holder}")).status_code != 404:  # drained and removed
        await asyncio.sleep(0.02)
    answer = await http.patch(f"{url}{BASE}/{second}", json=body)
    assert answer.json()["gateway"]["status"]["status"] == "STATUS_UPDATING"
    await wait_for_status(http, url, second, "STATUS_READY")


async def test_a_duplicate_id_is_409(api: tuple[str, Gateways, RecordingRuntime], http: httpx.AsyncClient) -> None:
    url, _, _ = api
    gateway_id = str(uuid.uuid4()).upper()
    first = await http.post(f"{url}{BASE}", json=spec(id=gateway_id))
    assert first.status_code == 200 and first.json()["gateway"]["spec"]["id"] == gateway_id.lower()
    assert_error(await http.post(f"{url}{BASE}", json=spec(id=gateway_id.lower())), 409, "exists already")


async def test_updated_after(api: tuple[str, Gateways, RecordingRuntime], http: httpx.AsyncClient) -> None:
    url, _, _ = api
    before = (await http.post(f"{url}{BASE}", json=spec(name="before"))).json()["gateway"]["spec"]["id"]
    await wait_for_status(http, url, before, "STATUS_READY")
    await asyncio.sleep(0.01)
    moment = datetime.now(UTC)
    after = (await http.post(f"{url}{BASE}", json=spec(name="after"))).json()["gateway"]["spec"]["id"]
    listed = await http.get(f"{url}{BASE}", params={"updatedAfter": moment.isoformat()})
    ids = [g["spec"]["id"] for g in listed.json()["gateways"]]
    assert after in ids and before not in ids
    zulu = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert after in [g["spec"]["id"] for g in (await http.get(f"{url}{BASE}?updatedAfter={zulu}")).json()["gateways"]]
    future = (await http.get(f"{url}{BASE}", params={"updatedAfter": "2999-01-01T00:00:00Z"})).json()
    assert future == {"gateways": []}
    assert_error(await http.get(f"{url}{BASE}", params={"updatedAfter": "yesterday"}), 400, "updatedAfter")


async def test_parameters_list_the_runtimes_zones(
    api: tuple[str, Gateways, RecordingRuntime], http: httpx.AsyncClient
) -> None:
    url, _, _ = api
    answer = await http.get(f"{url}{BASE}/parameters")
    conforms(answer.json(), "GatewayParameters")
    assert answer.json() == {"zones": ["eu-west", "on-prem", "us-east"]}


LONG = "x" * 101
VALIDATION = [
    (spec(name=None), "name is required"),
    (spec(name=""), "name is required"),
    (spec(name="Team A"), "DNS label"),
    (spec(name="a" * 64), "DNS label"),
    (spec(name="-team"), "DNS label"),
    (spec(name=7), "name must be a string"),
    (spec(id="not-a-uuid"), "is not a UUID"),
    (spec(zones=["mars"]), "'mars' is not a known zone; known zones: eu-west, on-prem, us-east"),
    (spec(zones="eu-west"), "zones must be an array"),
    (spec(zones=[1]), "zones must hold strings only"),
    (spec(coreWeaveAuth=None), "Exactly one of coreWeaveAuth or weightsAndBiasesAuth"),
    (spec(weightsAndBiasesAuth={"apiKey": "k" * 20}), "2 were given (coreWeaveAuth, weightsAndBiasesAuth)"),
    (spec(bodyBasedRouting=None), "Exactly one of bodyBasedRouting, headerBasedRouting or pathBasedRouting"),
    (spec(pathBasedRouting={}), "2 were given"),
    (spec(bodyBasedRouting=None, headerBasedRouting={}), "headerName is required"),
    (spec(bodyBasedRouting=None, headerBasedRouting={"headerName": LONG}), "101 characters long; at most 100"),
    (spec(bodyBasedRouting=None, headerBasedRouting={"headerName": "X Model"}), "not a valid HTTP header name"),
    (spec(bodyBasedRouting=None, headerBasedRouting={"headerName": "X-Modèl"}), "not a valid HTTP header name"),
    (spec(bodyBasedRouting={"apiType": "API_TYPE_GRPC"}), "use API_TYPE_OPENAI"),
    (spec(coreWeaveAuth={"token": "x"}), "coreWeaveAuth has an unknown field 'token'"),
    (spec(pathBasedRouting={}, bodyBasedRouting=None, extra=True), "unknown field 'extra'"),
    (spec(coreWeaveAuth=None, weightsAndBiasesAuth={}), "apiKey is required"),
    (spec(coreWeaveAuth=None, weightsAndBiasesAuth={"apiKey": "****cdef"}), "masked value"),
    (spec(coreWeaveAuth=None, weightsAndBiasesAuth={"apiKey": "k" * 20, "serverUrl": "ftp://x"}), "http(s) URL"),
    (
        spec(coreWeaveAuth=None, weightsAndBiasesAuth={"apiKey": "k" * 20, "enableUsageReports": "yes"}),
        "enableUsageReports must be true or false",
    ),
    (spec(coreWeaveAuth=[]), "coreWeaveAuth must be a JSON object, not an array"),
    (spec(endpointConfiguration={"additionalDns": ["bad_host.example.com"]}), "not a valid host name"),
    (spec(endpointConfiguration={"additionalDns": ["10.0.0.1"]}), "an IP address is not a host name"),
    (spec(endpointConfiguration={"additionalDns": ["*.example.com"]}), "not a valid host name"),
    (spec(endpointConfiguration={"additionalDns": ["a.example", "A.example"]}), "listed twice"),
    (spec(endpointConfiguration={"additionalDns": ["h" * 64 + ".example"]}), "not a valid host name"),
    (spec(endpointConfiguration={"hosts": []}), "unknown field 'hosts'"),
    ([spec()], "the request body must be a JSON object, not an array"),
]


@pytest.mark.parametrize(("body", "message"), VALIDATION, ids=[m[:40] for _, m in VALIDATION])
async def test_each_rule_refuses_with_a_400(
    api: tuple[str, Gateways, RecordingRuntime], http: httpx.AsyncClient, body: Any, message: str
) -> None:
    url, _, _ = api
    assert_error(await http.post(f"{url}{BASE}", json=body), 400, message)


async def test_what_is_not_a_spec_is_refused_in_the_same_shape(
    api: tuple[str, Gateways, RecordingRuntime], http: httpx.AsyncClient
) -> None:
    url, _, _ = api
    assert_error(
        await http.post(f"{url}{BASE}", content=b"{not json", headers={"content-type": "application/json"}),
        400,
        "not valid JSON",
    )
    assert_error(
        await http.post(f"{url}{BASE}", content=b"name=a", headers={"content-type": "text/plain"}),
        415,
        "application/json",
    )
    big = b'{"name": "' + b"a" * 70_000 + b'"}'
    assert_error(
        await http.post(f"{url}{BASE}", content=big, headers={"content-type": "application/json"}), 413, "larger than"
    )
    assert_error(await http.get(f"{url}{BASE}/not-a-uuid"), 400, "is not a UUID")
    assert_error(await http.get(f"{url}{BASE}/{uuid.uuid4()}"), 404, "No gateway has the id")
    assert_error(await http.put(f"{url}{BASE}/{uuid.uuid4()}", json=spec()), 405, "PUT is not allowed")
    assert_error(await http.get(f"{url}/v1alpha1/inference/deployments"), 404, "the management API is under")


def test_a_stored_spec_reads_back_even_when_its_zone_is_gone(tmp_path: Path) -> None:
    from gateway.gateways.schema import parse_spec, render_spec, stored_spec

    parsed = parse_spec(spec(zones=["eu-west"]), organization_id="acme", known_zones={"eu-west"})
    assert stored_spec(render_spec(parsed, reveal=True)) == parsed
