"""The gateways store, one suite over both backends (SQLite in a temporary file, a real PostgreSQL
started by ``postgres_server``): round trips, organizations, ``updatedAfter``, atomic
read-modify-write across two instances, the change feed seen by another instance within a
second, and migrations of a database made by an older schema."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import orjson
import pytest
import pytest_asyncio

from gateway.gateways import lifecycle
from gateway.gateways.spec import GatewaySpec, WandbAuth
from gateway.gateways.store import DuplicateId, Record, Store, StoreError, open_store
from gateway.gateways.store import postgres as pg_store
from gateway.gateways.store import sqlite as sqlite_store
from gateway.gateways.store.record import now, seconds, to_row

from .postgres_server import PostgresServer, postgres_server


@pytest_asyncio.fixture(scope="session")
async def postgres() -> AsyncIterator[PostgresServer]:
    async with postgres_server() as server:
        yield server


@pytest_asyncio.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path, postgres: PostgresServer) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/gateways.db"
    return await postgres.database()


@pytest_asyncio.fixture
async def opened(database_url: str) -> AsyncIterator[Callable[[], Store]]:
    """Opens stores on the test's database (as many as asked for); all closed at the end."""
    stores: list[Store] = []

    def make() -> Store:
        store = open_store(database_url)
        stores.append(store)
        return store

    yield make
    for store in stores:
        await store.close()


def record(name: str = "team-a", organization: str = "acme", **fields: object) -> Record:
    import uuid

    spec = GatewaySpec(id=str(uuid.uuid4()), name=name, organization_id=organization, **fields)  # type: ignore[arg-type]
    return Record(spec, lifecycle.creating(seconds(now())))


async def test_round_trip_and_organizations(opened: Callable[[], Store]) -> None:
    store = opened()
    await store.open()
    wandb = WandbAuth(api_key="secret-key-1234", server_url="https://api.wandb.ai", enable_usage_reports=True)
    first = await store.create(
        record(
            auth="wandb",
            wandb=wandb,
            routing="header",
            header_name="X-Model",
            zones=("eu-west",),
            additional_dns=("a.example",),
        )
    )
    other = await store.create(record("team-b", organization="globex"))
    assert first.revision == 1
    assert await store.get(first.spec.id) == first
    assert await store.get(first.spec.id, "acme") == first
    assert await store.get(first.spec.id, "globex") is None
    assert [r.spec.id for r in await store.list("acme")] == [first.spec.id]
    assert {r.spec.id for r in await store.list()} == {first.spec.id, other.spec.id}
    with pytest.raises(DuplicateId):
        await store.create(first)

    changed = await store.update(first.spec.id, lambda r: replace(r, spec=replace(r.spec, name="renamed")))
    assert changed is not None and changed.revision == 2 and changed.spec.name == "renamed"
    assert await store.update(first.spec.id, lambda r: None) == changed  # nothing to write
    assert await store.update(first.spec.id, lambda r: r, "globex") is None  # another organization's
    with pytest.raises(ValueError):
        await store.update(first.spec.id, _refuse)
    assert await store.get(first.spec.id) == changed  # the refused change left nothing behind

    assert not await store.remove(first.spec.id, revision=1)  # not what is stored any more
    assert await store.remove(first.spec.id, revision=2)
    assert await store.get(first.spec.id) is None


def _refuse(current: Record) -> Record:
    raise ValueError("refused")


async def test_updated_after(opened: Callable[[], Store]) -> None:
    store = opened()
    await store.open()
    early = await store.create(record("early"))
    await asyncio.sleep(0.002)
    moment = datetime.now(UTC)
    late = await store.create(record("late"))
    assert [r.spec.id for r in await store.list("acme", moment)] == [late.spec.id]
    assert [r.spec.id for r in await store.list("acme", moment - timedelta(hours=1))] == [early.spec.id, late.spec.id]
    await store.update(early.spec.id, lambda r: replace(r, status=lifecycle.ready(r.status, (), seconds(now()))))
    assert {r.spec.id for r in await store.list("acme", moment)} == {early.spec.id, late.spec.id}


async def test_changes_are_atomic_across_instances(opened: Callable[[], Store]) -> None:
    one, two = opened(), opened()
    await one.open()
    await two.open()
    created = await one.create(record())

    def bump(current: Record) -> Record:
        return replace(current, status=replace(current.status, generation=current.status.generation + 1))

    await asyncio.gather(*(store.update(created.spec.id, bump) for store in (one, two) for _ in range(10)))
    final = await one.get(created.spec.id)
    assert final is not None and final.status.generation == 21 and final.revision == 21  # no write was lost


async def test_another_instance_sees_each_change_within_a_second(opened: Callable[[], Store]) -> None:
    writer, reader = opened(), opened()
    await writer.open()
    await reader.open()
    feed = reader.changes()
    seen: list[set[str]] = []

    async def follow() -> None:
        async for changed in feed:
            if changed:
                seen.append(changed)

    follower = asyncio.create_task(follow())
    await asyncio.sleep(0.2)  # listening
    try:
        for step in ("create", "update", "remove"):
            started, count = time.monotonic(), len(seen)
            if step == "create":
                created = await writer.create(record())
            elif step == "update":
                updated = await writer.update(created.spec.id, lambda r: replace(r, spec=replace(r.spec, name="b")))
            else:
                assert updated is not None and await writer.remove(created.spec.id, updated.revision)
            while not any(created.spec.id in ids for ids in seen[count:]):
                assert time.monotonic() - started < 1.0, f"the {step} was not seen within a second"
                await asyncio.sleep(0.01)
    finally:
        follower.cancel()
        await asyncio.gather(follower, return_exceptions=True)
        await feed.aclose()


async def test_a_sqlite_database_of_the_first_schema_is_migrated(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT)")
    old.executescript(sqlite_store.MIGRATIONS[0][1])
    old.execute("INSERT INTO schema_migrations VALUES (1, '2026-01-01T00:00:00.000000Z')")
    kept = record("kept")
    old.execute("INSERT INTO gateways VALUES (?, ?, ?, ?, ?, ?, ?)", to_row(replace(kept, revision=1), now()))
    old.commit()
    old.close()

    store = open_store(f"sqlite:///{path}")
    await store.open()
    try:
        assert await store.get(kept.spec.id) == replace(kept, revision=1)
        assert (await store.create(record("new"))).revision == 1  # the change log of schema 2 is there
        versions = sqlite3.connect(path).execute("SELECT version FROM schema_migrations ORDER BY 1").fetchall()
        assert versions == [(1,), (2,)]
    finally:
        await store.close()
    again = open_store(f"sqlite:///{path}")
    await again.open()  # nothing left to migrate
    await again.close()


async def test_a_new_sqlite_file_is_its_owners_alone(tmp_path: Path) -> None:
    store = open_store(f"sqlite:///{tmp_path}/deeper/gateways.db")
    await store.open()
    await store.close()
    assert (tmp_path / "deeper" / "gateways.db").stat().st_mode & 0o777 == 0o600


async def test_a_postgres_database_of_the_first_schema_is_migrated(postgres: PostgresServer) -> None:
    import asyncpg

    url = await postgres.database()
    old = await asyncpg.connect(url)
    await old.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)")
    await old.execute(pg_store.MIGRATIONS[0][1])
    await old.execute("INSERT INTO schema_migrations VALUES (1, '2026-01-01T00:00:00.000000Z')")
    kept = record("kept")
    await old.execute(
        "INSERT INTO gateways VALUES ($1, $2, $3, $4, $5, $6, $7)", *to_row(replace(kept, revision=1), now())
    )
    stores = [open_store(url), open_store(url)]
    try:
        await asyncio.gather(*(store.open() for store in stores))  # two replicas starting together
        assert await stores[0].get(kept.spec.id) == replace(kept, revision=1)
        assert [r[0] for r in await old.fetch("SELECT version FROM schema_migrations ORDER BY 1")] == [1, 2]
        assert await old.fetchval("SELECT count(*) FROM pg_indexes WHERE indexname = 'gateways_by_organization'") == 1
    finally:
        for store in stores:
            await store.close()
        await old.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    store = open_store(f"sqlite:///{path}")
    await store.open()
    await store.close()
    db = sqlite3.connect(path)
    db.execute("INSERT INTO schema_migrations VALUES (99, '2030-01-01T00:00:00.000000Z')")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="schema version 99, newer than this polyrelay knows"):
        await open_store(f"sqlite:///{path}").open()


async def test_bad_urls_and_unreachable_servers_are_clear() -> None:
    with pytest.raises(StoreError, match="not a sqlite:///path or postgresql:// URL"):
        open_store("mysql://localhost/db")
    from .processes import free_port

    with pytest.raises(StoreError, match="cannot open the gateways database"):
        await open_store(f"postgresql://postgres@127.0.0.1:{free_port()}/none").open()


def test_the_stored_spec_is_json_with_the_key_whole() -> None:
    wandb = WandbAuth(api_key="secret-key-1234", server_url="https://api.wandb.ai")
    row = to_row(record(auth="wandb", wandb=wandb), now())
    assert orjson.loads(row[2])["weightsAndBiasesAuth"]["apiKey"] == "secret-key-1234"
