"""The reconciler between the store and a runtime: the status lifecycle (READY, ERROR retried
back to READY by itself, FAILED terminal until a PATCH, DELETING then removed), a restart
rebuilding everything from the store, and two replicas on one PostgreSQL applying the same
gateways and recording each transition once.

The runtime is ``RecordingRuntime`` (tests/gateways_runtime.py): it implements ``spec.Runtime``,
keeps what was applied, and fails as a data plane does when told to."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from pathlib import Path

import pytest_asyncio

from gateway.gateways import lifecycle
from gateway.gateways.reconciler import Reconciler
from gateway.gateways.spec import GatewaySpec, GatewayUnavailable
from gateway.gateways.store import Record, Store, open_store
from gateway.gateways.store.record import now, seconds

from .gateways_runtime import RecordingRuntime
from .postgres_server import PostgresServer, postgres_server


@pytest_asyncio.fixture(scope="module")
async def postgres() -> AsyncIterator[PostgresServer]:
    async with postgres_server() as server:
        yield server


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = open_store(f"sqlite:///{tmp_path}/gateways.db")
    await opened.open()
    yield opened
    await opened.close()


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


async def test_unavailable_is_an_error_retried_until_ready(store: Store) -> None:
    runtime = RecordingRuntime()
    runtime.unavailable = GatewayUnavailable("AuthServerUnreachable", "The W&B server does not answer.")
    reconciler = Reconciler(store, runtime, first_retry=0.05)
    await reconciler.start()
    try:
        spec = new_spec()
        await create(store, spec)
        reconciler.kick(spec.id)
        await eventually(status_is(store, spec.id, "STATUS_ERROR"), "never STATUS_ERROR")
        record = await store.get(spec.id)
        assert record is not None
        (condition,) = record.status.conditions
        assert (condition.type, condition.status, condition.reason) == ("Ready", "False", "AuthServerUnreachable")
        assert condition.message == "The W&B server does not answer; retrying."
        await eventually(lambda: _true(len(runtime.applies) >= 3), "not retried")
        runtime.unavailable = None
        await eventually(status_is(store, spec.id, "STATUS_READY"), "never back to STATUS_READY")
        record = await store.get(spec.id)
        assert record is not None and record.status.endpoints == (f"http://dp.test/gateways/{spec.id}/v1",)
        assert runtime.specs[spec.id] == spec
    finally:
        await reconciler.close()


async def _true(value: bool) -> bool:
    return value


async def test_a_refused_spec_fails_for_good_until_a_patch(store: Store) -> None:
    runtime = RecordingRuntime()
    reconciler = Reconciler(store, runtime, first_retry=0.05)
    await reconciler.start()
    try:
        first, second = new_spec(additional_dns=("a.example",)), new_spec(additional_dns=("a.example",))
        await create(store, first)
        await eventually(status_is(store, first.id, "STATUS_READY"), "the first never ready")
        await create(store, second)
        await eventually(status_is(store, second.id, "STATUS_FAILED"), "the second never failed")
        record = await store.get(second.id)
        assert record is not None and record.status.conditions[0].reason == "Invalid"
        assert "a.example is served by the gateway" in record.status.conditions[0].message
        attempts = runtime.applies.count(second.id)
        await asyncio.sleep(0.3)
        assert runtime.applies.count(second.id) == attempts  # terminal: not retried
        assert second.id not in runtime.specs

        await patch(store, replace(second, additional_dns=("b.example",)))  # what the API does on a PATCH
        await eventually(status_is(store, second.id, "STATUS_READY"), "the patched one never ready")
        assert runtime.specs[second.id].additional_dns == ("b.example",)
    finally:
        await reconciler.close()


async def test_a_restart_rebuilds_every_gateway_from_the_store(store: Store) -> None:
    specs = [new_spec() for _ in range(3)]
    for spec in specs:
        await create(store, spec)
    first = Reconciler(store, RecordingRuntime())
    await first.start()  # applies what is stored before it returns
    await first.close()
    revisions = [r.revision for r in await store.list()]
    assert all(r.status.status == "STATUS_READY" for r in await store.list())

    fresh = RecordingRuntime()
    again = Reconciler(store, fresh)
    await again.start()
    try:
        assert set(fresh.specs) == {spec.id for spec in specs}
        assert [r.revision for r in await store.list()] == revisions  # nothing new to record
    finally:
        await again.close()


async def test_two_replicas_share_one_postgres(postgres: PostgresServer) -> None:
    url = await postgres.database()
    stores = [open_store(url), open_store(url)]
    runtimes = [RecordingRuntime(), RecordingRuntime()]
    reconcilers = [Reconciler(s, r) for s, r in zip(stores, runtimes, strict=True)]
    for replica in stores:
        await replica.open()
    for reconciler in reconcilers:
        await reconciler.start()
    try:
        spec = new_spec()
        started = time.monotonic()
        await create(stores[0], spec)  # through one replica's store: the other hears of it
        await eventually(lambda: _true(all(spec.id in r.specs for r in runtimes)), "not applied on both")
        assert time.monotonic() - started < 1.0
        await eventually(status_is(stores[1], spec.id, "STATUS_READY"), "never ready")
        await asyncio.gather(*(r.idle() for r in reconcilers))
        record = await stores[1].get(spec.id)
        assert record is not None and record.revision == 2  # created, then READY recorded once

        await stores[1].update(spec.id, lambda r: replace(r, status=lifecycle.deleting(r.status, seconds(now()))))
        await eventually(lambda: _true(not any(spec.id in r.specs for r in runtimes)), "not removed on both")
        await eventually(lambda: _none(stores[0].get(spec.id)), "the row was not removed")
    finally:
        for reconciler in reconcilers:
            await reconciler.close()
        for replica in stores:
            await replica.close()


async def _none(result: Awaitable[object]) -> bool:
    return await result is None
