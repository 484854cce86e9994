"""The gateways management API over HTTP on loopback, as a client sees it: CoreWeave's shapes,
every validation rule, the status lifecycle, and the errors in ``{"code", "message", "details"}``.

The gateway is a real one (``create_app`` with GATEWAYS_ENABLED, tests/data_planes.py) against the
fake providers and a fake W&B server: what the API says of a gateway is checked against what its
endpoint really does."""

from __future__ import annotations

import asyncio
import base64
import logging
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import httpx
import jsonschema
import openai
import pytest
import pytest_asyncio
import yaml

from gateway.gateways.api import BASE

from .data_planes import Served, serve_gateways, wait_for_status
from .fake_wandb import FakeWandb
from .fakes import FakeProviders

WANDB_KEY = "wandb-local-0123456789abcdef"  # the gateway's own key at W&B (its usage reports)
CALLER_KEY = "e" * 40  # a W&B user's key, presented by a caller of the gateway
HELLO = [{"role": "user", "content": "hello there friend"}]
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
async def wandb() -> AsyncIterator[FakeWandb]:
    server = FakeWandb()
    server.add_user(WANDB_KEY, "gateway-owner")
    server.add_user(CALLER_KEY, "ml-team")
    await server.start()
    yield server
    await server.stop()


@pytest_asyncio.fixture(scope="module")
async def api(fake: FakeProviders) -> AsyncIterator[tuple[str, Served]]:
    """(the management API's URL, the gateway); providers in three zones (groq in on-prem)."""
    async with serve_gateways(fake, GROQ_ZONE="on-prem") as served:
        yield served.management, served


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


def sdk(base_url: str, **headers: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=base_url, api_key=CALLER_KEY, max_retries=0, default_headers=headers)


async def test_the_lifecycle_of_a_header_routed_wandb_eu_only_gateway(
    api: tuple[str, Served],
    wandb: FakeWandb,
    fake: FakeProviders,
    http: httpx.AsyncClient,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    url, served = api
    body = spec(
        name="eu-team",
        zones=["EU-West"],
        coreWeaveAuth=None,
        weightsAndBiasesAuth={"apiKey": WANDB_KEY, "serverUrl": wandb.url, "enableUsageReports": True},
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
            "serverUrl": wandb.url,
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
    port = served.url.rsplit(":", 1)[1]
    endpoint = f"{served.url}/gateways/{gateway_id}/v1"
    assert ready["status"]["endpoints"] == [endpoint, f"http://eu.inference.example.com:{port}/v1"]
    assert ready["status"]["conditions"][0]["reason"] == "Applied"
    # Its endpoint serves: header routing, W&B keys, EU only, as the spec says.
    client = sdk(endpoint, **{"X-Model": "mistral/mistral-small"})
    answer = await client.chat.completions.create(model="ignored", messages=HELLO)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "You said: hello there friend"
    assert fake.last_post("mistral").json["model"] == "mistral-small"
    with pytest.raises(openai.BadRequestError, match="outside this gateway's zones"):
        await sdk(endpoint, **{"X-Model": "openai/gpt-4o"}).chat.completions.create(model="x", messages=HELLO)  # type: ignore[arg-type]
    with pytest.raises(openai.AuthenticationError):  # not a W&B user's key
        await client.with_options(api_key="f" * 40).chat.completions.create(model="x", messages=HELLO)  # type: ignore[arg-type]
    # And its extra host, matched in any case, serves /v1 directly.
    headers = {"Host": "eu.INFERENCE.example.com", "Authorization": f"Bearer {CALLER_KEY}", "X-Model": "mistral/m"}
    by_host = await http.post(
        f"{served.url}/v1/chat/completions", json={"model": "x", "messages": HELLO}, headers=headers
    )
    assert by_host.status_code == 200, by_host.text
    assert fake.last_post("mistral").json["model"] == "m"

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
    # Removed from the data plane: its endpoint is a 404, its host the default gateway's again.
    with pytest.raises(openai.NotFoundError) as caught:
        await client.chat.completions.create(model="x", messages=HELLO)  # type: ignore[arg-type]
    assert caught.value.code == "gateway_not_found"
    assert gateway_id not in served.runtime.table.by_id and not served.runtime.table.by_host
    # Its usage reached W&B as it closed, sent with the gateway's own key, whole.
    reported = [r for r in wandb.records if r["gateway_id"] == gateway_id]
    assert [(r["entity"], r["provider"]) for r in reported] == [("ml-team", "mistral")] * 2
    owner = "Basic " + base64.b64encode(f"api:{WANDB_KEY}".encode()).decode()
    assert owner in {h["Authorization"] for h in wandb.usage_headers}
    assert "eu-team" in caplog.text and WANDB_KEY not in caplog.text  # logged, without the key
    assert CALLER_KEY not in caplog.text


async def test_a_patch_is_applied_and_the_masked_key_keeps_the_stored_one(
    api: tuple[str, Served], wandb: FakeWandb, fake: FakeProviders, http: httpx.AsyncClient
) -> None:
    url, served = api
    planes = served.runtime.table
    body = spec(zones=None, coreWeaveAuth=None, weightsAndBiasesAuth={"apiKey": WANDB_KEY, "serverUrl": wandb.url})
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
    # Path routing now: the model is the first segment of the path.
    base = f"{served.url}/gateways/{gateway_id}/{quote('openai/gpt-4o-mini', safe='')}/v1"
    answer = await sdk(base).chat.completions.create(model="ignored", messages=HELLO)  # type: ignore[arg-type]
    assert answer.choices[0].message.content == "You said: hello there friend"
    assert fake.last_post("openai").json["model"] == "gpt-4o-mini"
    assert planes.by_id[gateway_id].spec.wandb.api_key == WANDB_KEY  # type: ignore[union-attr]  # the plane's

    changed["weightsAndBiasesAuth"] = {"apiKey": "another-key-9876543210", "serverUrl": wandb.url}
    assert (await http.patch(f"{url}{BASE}/{gateway_id}", json=changed)).status_code == 200
    await wait_for_status(http, url, gateway_id, "STATUS_READY")
    assert planes.by_id[gateway_id].spec.wandb.api_key == "another-key-9876543210"  # type: ignore[union-attr]

    # The same spec again changes nothing: no new generation, so no new plane is built.
    plane = planes.by_id[gateway_id]
    again = await http.patch(f"{url}{BASE}/{gateway_id}", json=changed)
    assert again.json()["gateway"]["status"]["status"] == "STATUS_READY"
    await asyncio.sleep(0.1)
    assert planes.by_id[gateway_id] is plane and not plane.closing

    assert_error(
        await http.patch(f"{url}{BASE}/{uuid.uuid4()}", json=changed), 404, "No gateway has the id"
    )  # the body's id differs, but the path's gateway does not exist
    other_id = str(uuid.uuid4())
    assert_error(await http.patch(f"{url}{BASE}/{gateway_id}", json={**changed, "id": other_id}), 400, "differs")


async def test_a_failed_gateway_is_applied_anew_by_the_same_spec(
    api: tuple[str, Served], http: httpx.AsyncClient
) -> None:
    url, served = api
    body = spec(endpointConfiguration={"additionalDns": ["shared.example"]})
    holder = (await http.post(f"{url}{BASE}", json=body)).json()["gateway"]["spec"]["id"]
    await wait_for_status(http, url, holder, "STATUS_READY")
    second = (await http.post(f"{url}{BASE}", json=body)).json()["gateway"]["spec"]["id"]
    failed = await wait_for_status(http, url, second, "STATUS_FAILED")
    message = failed["status"]["conditions"][0]["message"]
    assert f"shared.example is already served by gateway {holder}" in message
    assert failed["status"]["endpoints"] == []
    planes = served.runtime.table
    assert second not in planes.by_id and planes.by_host["shared.example"].spec.id == holder

    await http.delete(f"{url}{BASE}/{holder}")
    while (await http.get(f"{url}{BASE}/{holder}")).status_code != 404:  # drained and removed
        await asyncio.sleep(0.02)
    answer = await http.patch(f"{url}{BASE}/{second}", json=body)
    assert answer.json()["gateway"]["status"]["status"] == "STATUS_UPDATING"
    await wait_for_status(http, url, second, "STATUS_READY")
    assert planes.by_host["shared.example"].spec.id == second
    listed = await http.get(f"{served.url}/v1/models", headers={"Host": "shared.example"})
    assert listed.status_code == 200 and "mistral/model-a" in {m["id"] for m in listed.json()["data"]}


async def test_a_duplicate_id_is_409(api: tuple[str, Served], http: httpx.AsyncClient) -> None:
    url, _ = api
    gateway_id = str(uuid.uuid4()).upper()
    first = await http.post(f"{url}{BASE}", json=spec(id=gateway_id))
    assert first.status_code == 200 and first.json()["gateway"]["spec"]["id"] == gateway_id.lower()
    assert_error(await http.post(f"{url}{BASE}", json=spec(id=gateway_id.lower())), 409, "exists already")


async def test_updated_after(api: tuple[str, Served], http: httpx.AsyncClient) -> None:
    url, _ = api
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


async def test_parameters_list_the_runtimes_zones(api: tuple[str, Served], http: httpx.AsyncClient) -> None:
    url, _ = api
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
    api: tuple[str, Served], http: httpx.AsyncClient, body: Any, message: str
) -> None:
    url, _ = api
    assert_error(await http.post(f"{url}{BASE}", json=body), 400, message)


async def test_what_is_not_a_spec_is_refused_in_the_same_shape(
    api: tuple[str, Served], http: httpx.AsyncClient
) -> None:
    url, _ = api
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


def test_weights_and_biases_auth_defaults_to_wandbs_public_server() -> None:
    from gateway.gateways.schema import parse_spec, render_spec

    body = spec(coreWeaveAuth=None, weightsAndBiasesAuth={"apiKey": WANDB_KEY})
    shown = render_spec(parse_spec(body, organization_id="acme", known_zones={"eu-west"}))
    assert shown["weightsAndBiasesAuth"] == {
        "apiKey": "****cdef",
        "serverUrl": "https://api.wandb.ai",
        "enableUsageReports": False,
        "enableRateLimiting": False,
    }
