"""The store for several replicas: PostgreSQL through asyncpg (imported only when a
``postgresql://`` URL is configured).

Each write is one transaction that reads the row ``FOR UPDATE``, writes it, and sends
``pg_notify('polyrelay_gateways', id)``, which PostgreSQL delivers to every listening replica at
commit. Each process keeps one connection listening (``changes``), looked at every second and
reconnected when the server dropped it (an outage); a lost notification (while it reconnects) is
covered by a "compare everything" then, and every 10 s in any case. Migrations run under an
advisory lock, so replicas starting together migrate once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncGenerator
from datetime import datetime
from typing import TYPE_CHECKING, Any

from . import Change, DuplicateId, Record, Store, StoreError
from .health import StoreHealth
from .record import from_row, now, precise, to_row

if TYPE_CHECKING:
    import asyncpg

__all__ = ["CHANNEL", "MIGRATIONS", "PostgresStore"]

log = logging.getLogger("polyrelay")

CHANNEL = "polyrelay_gateways"
RESYNC_INTERVAL = 10.0  # seconds between "compare everything", the safety net under NOTIFY
LIVENESS_CHECK = 1.0  # seconds between looks at the listening connection
_LOCK_ID = 0x706F6C79  # the advisory lock migrations hold ("poly")
_COLUMNS = "id, organization_id, spec, status, revision, created_at, updated_at"

MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE gateways (
            id TEXT PRIMARY KEY,
            organization_id TEXT NOT NULL,
            spec TEXT NOT NULL,
            status TEXT NOT NULL,
            revision BIGINT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )
        """,
    ),
    (2, "CREATE INDEX gateways_by_organization ON gateways (organization_id, updated_at)"),
)


class PostgresStore(Store):
    """``PostgresStore("postgresql://polyrelay:secret@db:5432/polyrelay")``."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.health = StoreHealth()
        self._pool: asyncpg.Pool | None = None

    async def open(self) -> None:
        try:
            import asyncpg
        except ImportError as exc:
            raise StoreError("A postgresql:// GATEWAYS_DATABASE_URL needs asyncpg: pip install asyncpg.") from exc
        try:
            # No floor of idle connections: during an outage asyncpg would retry it, logging a traceback each time.
            self._pool = await asyncpg.create_pool(self.url, min_size=0, max_size=4, timeout=10)
            async with self._pool.acquire() as db, db.transaction():
                await self._migrate(db)
        except (TimeoutError, OSError, asyncpg.PostgresError) as exc:
            await self.close()
            raise StoreError(
                f"cannot open the gateways database ({type(exc).__name__}: {exc}). Start that PostgreSQL "
                "server or make it reachable from here, or set GATEWAYS_DATABASE_URL to one that answers."
            ) from exc

    async def _migrate(self, db: asyncpg.Connection) -> None:
        await db.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_ID)
        await db.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT NOT NULL)"
        )
        applied = {row[0] for row in await db.fetch("SELECT version FROM schema_migrations")}
        known = max(version for version, _ in MIGRATIONS)
        if applied and max(applied) > known:
            raise StoreError(
                f"The gateways database has schema version {max(applied)}, newer than this polyrelay knows "
                f"({known}): run a newer polyrelay."
            )
        for version, statement in MIGRATIONS:
            if version not in applied:
                await db.execute(statement)
                await db.execute("INSERT INTO schema_migrations VALUES ($1, $2)", version, precise(now()))

    async def close(self) -> None:
        if self._pool is not None:
            pool, self._pool = self._pool, None
            await pool.close()

    def _db(self) -> asyncpg.Pool:
        if self._pool is None:
            raise StoreError("The gateways store is closed.")
        return self._pool

    # -- reads ------------------------------------------------------------------------------------

    async def get(self, gateway_id: str, organization_id: str | None = None) -> Record | None:
        sql, args = f"SELECT {_COLUMNS} FROM gateways WHERE id = $1", [gateway_id]
        if organization_id is not None:
            sql, args = sql + " AND organization_id = $2", [*args, organization_id]
        row = await self._call("fetchrow", sql, *args)
        return from_row(row) if row is not None else None

    async def list(self, organization_id: str | None = None, updated_after: datetime | None = None) -> list[Record]:
        where: list[str] = []
        args: list[Any] = []
        if organization_id is not None:
            args.append(organization_id)
            where.append(f"organization_id = ${len(args)}")
        if updated_after is not None:
            args.append(precise(updated_after))
            where.append(f"updated_at > ${len(args)}")
        sql = f"SELECT {_COLUMNS} FROM gateways"
        sql += f" WHERE {' AND '.join(where)}" if where else ""
        rows = await self._call("fetch", sql + " ORDER BY created_at, id", *args)
        return [from_row(row) for row in rows]

    # -- writes -----------------------------------------------------------------------------------

    async def create(self, record: Record) -> Record:
        import asyncpg

        record = Record(record.spec, record.status, revision=1)
        row = to_row(record, now())
        try:
            async with self._db().acquire() as db, db.transaction():
                await db.execute(f"INSERT INTO gateways ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)", *row)
                await db.execute("SELECT pg_notify($1, $2)", CHANNEL, record.spec.id)
        except asyncpg.UniqueViolationError:
            raise DuplicateId(record.spec.id) from None
        except _failures() as exc:
            raise self._failed(exc) from exc
        self.health.ok()
        return record

    async def update(self, gateway_id: str, change: Change, organization_id: str | None = None) -> Record | None:

        sql, args = f"SELECT {_COLUMNS} FROM gateways WHERE id = $1", [gateway_id]
        if organization_id is not None:
            sql, args = sql + " AND organization_id = $2", [*args, organization_id]
        try:
            async with self._db().acquire() as db, db.transaction():
                row = await db.fetchrow(sql + " FOR UPDATE", *args)
                self.health.ok()
                if row is None:
                    return None
                current = from_row(row)
                changed = change(current)
                if changed is None:
                    return current
                written = Record(changed.spec, changed.status, revision=current.revision + 1)
                new = to_row(written, now())
                await db.execute(
                    "UPDATE gateways SET spec = $1, status = $2, revision = $3, updated_at = $4 WHERE id = $5",
                    new[2],
                    new[3],
                    new[4],
                    new[6],
                    gateway_id,
                )
                await db.execute("SELECT pg_notify($1, $2)", CHANNEL, gateway_id)
                return written
        except _failures() as exc:
            raise self._failed(exc) from exc

    async def remove(self, gateway_id: str, revision: int) -> bool:

        try:
            async with self._db().acquire() as db, db.transaction():
                status: str = await db.execute(
                    "DELETE FROM gateways WHERE id = $1 AND revision = $2", gateway_id, revision
                )
                self.health.ok()
                deleted = status.endswith(" 1")
                if deleted:
                    await db.execute("SELECT pg_notify($1, $2)", CHANNEL, gateway_id)
                return deleted
        except _failures() as exc:
            raise self._failed(exc) from exc

    async def _call(self, method: str, sql: str, *args: Any) -> Any:

        try:
            result = await getattr(self._db(), method)(sql, *args)
        except _failures() as exc:
            raise self._failed(exc) from exc
        self.health.ok()
        return result

    def _failed(self, exc: BaseException) -> StoreError:
        self.health.failed(exc)
        return StoreError(f"The gateways database failed: {type(exc).__name__}: {exc}.")

    # -- the feed ---------------------------------------------------------------------------------

    async def changes(self) -> AsyncGenerator[set[str] | None, None]:
        import asyncpg

        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[str | None] = asyncio.Queue()
        lost = lambda _: queue.put_nowait(None)  # noqa: E731  the listener's connection closed

        def heard(_connection: Any, _pid: int, _channel: str, payload: str) -> None:
            queue.put_nowait(payload)

        listener: asyncpg.Connection | None = None
        try:
            while True:
                if listener is None or listener.is_closed():
                    try:
                        listener = await asyncpg.connect(self.url, timeout=10)
                        await listener.add_listener(CHANNEL, heard)
                        listener.add_termination_listener(lost)
                        self.health.ok()
                    except _failures() as exc:
                        self.health.failed(exc)  # retried every second, told once per outage
                        listener = None
                        await asyncio.sleep(1.0)
                        yield None
                        continue
                    yield None  # whatever happened while nobody listened
                deadline = loop.time() + RESYNC_INTERVAL
                changed: set[str] = set()
                item: str | None = None
                heard_one = False
                # In slices: a connection the server dropped is not always told to its termination
                # listener, and while it goes unnoticed every notification is lost.
                while not heard_one and loop.time() < deadline and not listener.is_closed():
                    try:
                        async with asyncio.timeout(min(LIVENESS_CHECK, deadline - loop.time())):
                            item = await queue.get()
                        heard_one = True
                    except TimeoutError:
                        pass
                if not heard_one:
                    yield None  # the resync is due, or the listener is gone (it reconnects above)
                    continue
                while True:  # what arrived together is reported together
                    if item is None:
                        break
                    changed.add(item)
                    if queue.empty():
                        break
                    item = queue.get_nowait()
                if changed:
                    yield changed
                if item is None:
                    yield None
        finally:
            if listener is not None:
                with contextlib.suppress(Exception):
                    await listener.close()


def _failures() -> tuple[type[BaseException], ...]:
    """What asyncpg raises when the database is away or refuses: a connection refused or reset
    (OSError), a timeout, an error PostgreSQL sent, or asyncpg's own "the connection is gone"."""
    import asyncpg

    return (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)
