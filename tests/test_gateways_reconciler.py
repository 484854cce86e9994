"""The reconciler between the store and the data planes: the status lifecycle (READY, ERROR retried
back to READY by itself, FAILED terminal until a PATCH, DELETING then removed), a restart
rebuilding everything from the store, and two replicas on one PostgreSQL applying the same
gateways and recording each transition once.

Each gateway is a real one (``create_app`` with GATEWAYS_ENABLED, tests/data_planes.py): its
reconciler drives the real ``GatewayRuntime``, and what it did is checked at the endpoints."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from gateway.gateways import lifecycle
from gateway.gateways.spec import GatewaySpec, WandbAuth
from gateway.gateways.store import Record, Store
from gateway.gateways.store.record import now, seconds

from .data_planes import Served, serve_gateways
from .fake_wandb import FakeWandb
from .fakes import FakeProviders
from .postgres_server import PostgresServer, postgres_server


@pytest_asyncio.fixture(scope="module")
async def postgres() -> AsyncIterator[PostgresServer]:
    async with postgres_server() as server:
        yield server


@pytest_asyncio.fixture
async def served(fake: FakeProviders) -> AsyncIterator[Served]:
    async with serve_gateways(fake) as gateway:
        gateway.service.reconciler.first_retry = 0.05  # retries within the test's patience
        yield gateway


def new_spec(**fields: object) -> GatewaySpec:
    return GatewaySpec(id=str(uuid.uuid4()), name="team-a", organization_id="acme", **fields)  # type: ignore[arg-type]


async def create(store: Store, spec: GatewaySpec) -> None:
    await store.create(Record(spec, lifecycle.creating(seconds(now()))))


async def patch(store: Store, spec: GatewaySpec) -> None:
    await store.update(spec.id, lambda r: Record(spec, lifecycle.updating(r.status, seconds(now())), r.revision))


async def eventually(check: Callable[[], Awaitable[bool]], what: str, timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not await check():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


def status_is(store: Store, gateway_id: str, status: str) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        record = await store.get(gateway_id)
        return record is not None and record.status.status == status

    return check


async def _true(value: bool) -> bool:
    return value


async def models(url: str, **headers: str) -> httpx.Response:
    """GET <url>/models: what a gateway's endpoint answers (through the dispatch)."""
    async with httpx.AsyncClient() as http:
        return await http.get(f"{url}/models", headers=headers)


async def test_unavailable_is_an_error_retried_until_ready(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="polyrelay")
    store, reconciler = served.service.store, served.service.reconciler
    wandb = FakeWandb()
    await wandb.start()
    await wandb.down()  # the gateway's auth server does not answer
    try:
        spec = new_spec(auth="wandb", wandb=WandbAuth("c" * 40, wandb.url))
        await create(store, spec)
        reconciler.kick(spec.id)
        await eventually(status_is(store, spec.id, "STATUS_ERROR"), "never STATUS_ERROR")
        record = await store.get(spec.id)
        assert record is not None
        (condition,) = record.status.conditions
        assert (condition.type, condition.status, condition.reason) == ("Ready", "False", "AuthServerUnreachable")
        assert condition.message.startswith(f"The W&B server at {wandb.url} does not answer")
        assert condition.message.endswith("; retrying.")
        assert (await models(f"{served.url}/gateways/{spec.id}/v1")).status_code == 404  # serves nothing yet

        # Retried, and logged once for the spell (each retry at DEBUG).
        def attempts() -> list[logging.LogRecord]:
            return [r for r in caplog.records if f"{spec.id} cannot serve yet" in r.getMessage()]

        await eventually(lambda: _true(len(attempts()) >= 3), "not retried")
        assert [r.levelno for r in attempts()[:3]] == [logging.WARNING, logging.DEBUG, logging.DEBUG]

        await wandb.up()
        await eventually(status_is(store, spec.id, "STATUS_READY"), "never back to STATUS_READY")
        record = await store.get(spec.id)
        endpoint = f"{served.url}/gateways/{spec.id}/v1"
        assert record is not None and record.status.endpoints == (endpoint,)
        assert served.runtime.table.by_id[spec.id].spec == spec
        wandb.add_user("a" * 40, "ml-team")
        listed = await models(endpoint, Authorization=f"Bearer {'a' * 40}")
        assert listed.status_code == 200, listed.text  # a W&B user's key is checked at the server now up
    finally:
        await wandb.stop()


async def test_a_refused_spec_fails_for_good_until_a_patch(served: Served, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="polyrelay")
    store, planes = served.service.store, served.runtime.table
    first, second = new_spec(additional_dns=("a.example",)), new_spec(additional_dns=("a.example",))
    await create(store, first)
    await eventually(status_is(store, first.id, "STATUS_READY"), "the first never ready")
    await create(store, second)
    await eventually(status_is(store, second.id, "STATUS_FAILED"), "the second never failed")
    record = await store.get(second.id)
    assert record is not None and record.status.conditions[0].reason == "Invalid"
    assert f"a.example is already served by gateway {first.id}" in record.status.conditions[0].message

    def failures() -> int:
        return sum(f"{second.id} failed" in r.getMessage() for r in caplog.records)

    revision = record.revision
    await asyncio.sleep(0.3)
    assert failures() == 1  # terminal: not retried
    assert (await store.get(second.id)).revision == revision  # type: ignore[union-attr]
    assert second.id not in planes.by_id and planes.by_host["a.example"].spec.id == first.id
    assert (await models(f"{served.url}/gateways/{second.id}/v1")).status_code == 404

    await patch(store, replace(second, additional_dns=("b.example",)))  # what the API does on a PATCH
    await eventually(status_is(store, second.id, "STATUS_READY"), "the patched one never ready")
    assert planes.by_host["b.example"].spec == replace(second, additional_dns=("b.example",))
    assert (await models(f"{served.url}/v1", Host="b.example")).status_code == 200
    assert (await models(f"{served.url}/gateways/{second.id}/v1")).status_code == 200


async def test_a_restart_rebuilds_every_gateway_from_the_store(fake: FakeProviders, tmp_path: Path) -> None:
    # The same public URL on both runs (each listens on a port of its own): the same endpoints.
    env = {"GATEWAYS_DATABASE_URL": f"sqlite:///{tmp_path}/gateways.db", "GATEWAYS_PUBLIC_URL": "http://gw.test"}
    specs = [new_spec() for _ in range(3)]
    async with serve_gateways(fake, **env) as first:
        store = first.service.store
        for spec in specs:
            await create(store, spec)
        for spec in specs:
            first.service.reconciler.kick(spec.id)
        for spec in specs:
            await eventually(status_is(store, spec.id, "STATUS_READY"), "never ready")
        await first.service.reconciler.idle()
        revisions = [r.revision for r in await store.list()]

    async with serve_gateways(fake, **env) as again:
        # Applied from the store before the server took its first request.
        assert set(again.runtime.table.by_id) == {spec.id for spec in specs}
        for spec in specs:
            assert (await models(f"{again.url}/gateways/{spec.id}/v1")).status_code == 200
        await again.service.reconciler.idle()
        assert [r.revision for r in await again.service.store.list()] == revisions  # nothing new to record


async def test_two_replicas_share_one_postgres(fake: FakeProviders, postgres: PostgresServer) -> None:
    # Replicas behind one address: the same public URL, so the same endpoints from either.
    env = {"GATEWAYS_DATABASE_URL": await postgres.database(), "GATEWAYS_PUBLIC_URL": "http://gw.test"}
    async with serve_gateways(fake, **env) as one, serve_gateways(fake, **env) as two:
        replicas = (one, two)
        spec = new_spec()
        started = time.monotonic()
        await create(one.service.store, spec)  # through one replica's store: the other hears of it
        await eventually(lambda: _true(all(spec.id in r.runtime.table.by_id for r in replicas)), "not on both")
        assert time.monotonic() - started < 1.0
        for replica in replicas:
            assert (await models(f"{replica.url}/gateways/{spec.id}/v1")).status_code == 200
        await eventually(status_is(two.service.store, spec.id, "STATUS_READY"), "never ready")
        await asyncio.gather(*(r.service.reconciler.idle() for r in replicas))
        record = await two.service.store.get(spec.id)
        assert record is not None and record.revision == 2  # created, then READY recorded once

        deleting = lambda r: replace(r, status=lifecycle.deleting(r.status, seconds(now())))  # noqa: E731
        await two.service.store.update(spec.id, deleting)
        await eventually(lambda: _true(not any(spec.id in r.runtime.table.by_id for r in replicas)), "not removed")
        for replica in replicas:
            assert (await models(f"{replica.url}/gateways/{spec.id}/v1")).status_code == 404
        await eventually(lambda: _none(one.service.store.get(spec.id)), "the row was not removed")


async def _none(result: Awaitable[object]) -> bool:
    return await result is None
