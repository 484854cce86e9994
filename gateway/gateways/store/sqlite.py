"""The default store: one SQLite file, created on first start, in WAL mode (readers never wait for
the writer), used through the standard library on a worker thread.

Several processes may share the file (the workers of one host): every write is a ``BEGIN IMMEDIATE``
transaction, and appends to ``gateway_changes``, which each process polls every half second
(``changes``). SQLite has one writer at a time, so sequence numbers commit in order and a poll
never skips one. Old changes are pruned after an hour; a process that slept through the pruning
compares everything instead.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import AsyncGenerator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

from . import Change, DuplicateId, Record, Store, StoreError
from .health import StoreHealth
from .record import from_row, now, precise, to_row

__all__ = ["MIGRATIONS", "SQLiteStore"]

T = TypeVar("T")

POLL_INTERVAL = 0.5  # seconds between polls of gateway_changes
RESYNC_INTERVAL = 30.0  # seconds between "compare everything"
KEEP_CHANGES = timedelta(hours=1)

_COLUMNS = "id, organization_id, spec, status, revision, created_at, updated_at"

# Numbered migrations, applied in order, each in one transaction with its number recorded.
MIGRATIONS: tuple[tuple[int, str], ...] = (
    (
        1,
        """
        CREATE TABLE gateways (
            id TEXT PRIMARY KEY,
            organization_id TEXT NOT NULL,
            spec TEXT NOT NULL,
            status TEXT NOT NULL,
            revision INTEGER NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        );
        """,
    ),
    (
        2,
        """
        CREATE INDEX gateways_by_organization ON gateways (organization_id, updated_at);
        CREATE TABLE gateway_changes (
            seq INTEGER PRIMARY KEY AUTOINCREMENT,
            gateway_id TEXT NOT NULL,
            at TEXT NOT NULL
        );
        """,
    ),
)


class SQLiteStore(Store):
    """``SQLiteStore("sqlite:///gateways.db")``: a path relative to the working directory, or
    absolute with four slashes (``sqlite:////var/lib/polyrelay/gateways.db``)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = Path(url.removeprefix("sqlite:///"))
        self.health = StoreHealth()
        self._db: sqlite3.Connection | None = None
        self._lock = threading.Lock()  # one statement at a time on the shared connection
        self._seen = 0  # the last change this process has reported

    # -- lifecycle --------------------------------------------------------------------------------

    async def open(self) -> None:
        await asyncio.to_thread(self._open)

    def _open(self) -> None:
        try:
            if self.path.parent != Path():
                self.path.parent.mkdir(parents=True, exist_ok=True)
            # It holds W&B keys: made readable by its owner only (SQLite gives -wal and -shm the same mode).
            os.close(os.open(self.path, os.O_CREAT | os.O_RDWR, 0o600))
            db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False, timeout=10.0)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # a committed change survives a power cut
            db.execute("CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at TEXT)")
            self._db = db
            self._migrate(db)
            self._seen = int(db.execute("SELECT COALESCE(MAX(seq), 0) FROM gateway_changes").fetchone()[0])
        except (sqlite3.Error, OSError) as exc:
            raise StoreError(
                f"cannot open the gateways database {self.path} ({exc}). Set GATEWAYS_DATABASE_URL to a file "
                "in a directory polyrelay can create and write (sqlite:////absolute/path for an absolute one)."
            ) from exc

    def _migrate(self, db: sqlite3.Connection) -> None:
        known = max(version for version, _ in MIGRATIONS)
        db.execute("BEGIN IMMEDIATE")  # one process migrates; the others wait, then find it done
        try:
            applied = {row[0] for row in db.execute("SELECT version FROM schema_migrations")}
            if applied and max(applied) > known:
                raise StoreError(
                    f"The gateways database {self.path} has schema version {max(applied)}, newer than this "
                    f"polyrelay knows ({known}): run a newer polyrelay, or point GATEWAYS_DATABASE_URL elsewhere."
                )
            for version, script in MIGRATIONS:
                if version not in applied:
                    for statement in filter(str.strip, script.split(";")):
                        db.execute(statement)
                    db.execute("INSERT INTO schema_migrations VALUES (?, ?)", (version, precise(now())))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def close(self) -> None:
        if self._db is not None:
            db, self._db = self._db, None
            await asyncio.to_thread(self._locked, db.close)

    # -- reads ------------------------------------------------------------------------------------

    async def get(self, gateway_id: str, organization_id: str | None = None) -> Record | None:
        sql, args = f"SELECT {_COLUMNS} FROM gateways WHERE id = ?", [gateway_id]
        if organization_id is not None:
            sql, args = sql + " AND organization_id = ?", [*args, organization_id]
        rows = await self._run(lambda db: db.execute(sql, args).fetchall())
        return from_row(rows[0]) if rows else None

    async def list(self, organization_id: str | None = None, updated_after: datetime | None = None) -> list[Record]:
        where, args = [], []
        if organization_id is not None:
            where, args = ["organization_id = ?"], [organization_id]
        if updated_after is not None:
            where, args = [*where, "updated_at > ?"], [*args, precise(updated_after)]
        sql = f"SELECT {_COLUMNS} FROM gateways"
        sql += f" WHERE {' AND '.join(where)}" if where else ""
        rows = await self._run(lambda db: db.execute(sql + " ORDER BY created_at, id", args).fetchall())
        return [from_row(row) for row in rows]

    # -- writes -----------------------------------------------------------------------------------

    async def create(self, record: Record) -> Record:
        record = Record(record.spec, record.status, revision=1)
        row = to_row(record, now())

        def insert(db: sqlite3.Connection) -> None:
            try:
                db.execute(f"INSERT INTO gateways ({_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)", row)
            except sqlite3.IntegrityError:
                raise DuplicateId(record.spec.id) from None
            self._changed(db, record.spec.id)

        await self._run(insert, write=True)
        return record

    async def update(self, gateway_id: str, change: Change, organization_id: str | None = None) -> Record | None:
        def apply(db: sqlite3.Connection) -> Record | None:
            sql, args = f"SELECT {_COLUMNS} FROM gateways WHERE id = ?", [gateway_id]
            if organization_id is not None:
                sql, args = sql + " AND organization_id = ?", [*args, organization_id]
            row = db.execute(sql, args).fetchone()
            if row is None:
                return None
            current = from_row(row)
            changed = change(current)
            if changed is None:
                return current
            written = Record(changed.spec, changed.status, revision=current.revision + 1)
            new = to_row(written, now())
            db.execute(
                "UPDATE gateways SET spec = ?, status = ?, revision = ?, updated_at = ? WHERE id = ?",
                (new[2], new[3], new[4], new[6], gateway_id),
            )
            self._changed(db, gateway_id)
            return written

        return await self._run(apply, write=True)

    async def remove(self, gateway_id: str, revision: int) -> bool:
        def delete(db: sqlite3.Connection) -> bool:
            deleted = db.execute("DELETE FROM gateways WHERE id = ? AND revision = ?", (gateway_id, revision))
            if deleted.rowcount:
                self._changed(db, gateway_id)
            return bool(deleted.rowcount)

        return await self._run(delete, write=True)

    def _changed(self, db: sqlite3.Connection, gateway_id: str) -> None:
        moment = now()
        db.execute("INSERT INTO gateway_changes (gateway_id, at) VALUES (?, ?)", (gateway_id, precise(moment)))
        db.execute("DELETE FROM gateway_changes WHERE at < ?", (precise(moment - KEEP_CHANGES),))

    # -- the feed ---------------------------------------------------------------------------------

    async def changes(self) -> AsyncGenerator[set[str] | None, None]:
        loop = asyncio.get_running_loop()
        resync_at = loop.time() + RESYNC_INTERVAL
        while True:
            await asyncio.sleep(POLL_INTERVAL)
            changed = await self._run(self._poll)
            if changed:
                yield changed
            if changed is None or loop.time() >= resync_at:
                resync_at = loop.time() + RESYNC_INTERVAL
                yield None

    def _poll(self, db: sqlite3.Connection) -> set[str] | None:
        sql = "SELECT seq, gateway_id FROM gateway_changes WHERE seq > ? ORDER BY seq"
        rows = db.execute(sql, (self._seen,)).fetchall()
        if not rows:
            return set()
        first, last = rows[0][0], rows[-1][0]
        # Changes this process never read were pruned (it slept for an hour): compare everything.
        missed = first > self._seen + 1
        self._seen = last
        return None if missed else {row[1] for row in rows}

    # -- plumbing ---------------------------------------------------------------------------------

    def _locked(self, call: Callable[[], T]) -> T:
        with self._lock:
            return call()

    async def _run(self, call: Callable[[sqlite3.Connection], T], *, write: bool = False) -> T:
        db = self._db
        if db is None:
            raise StoreError("The gateways store is closed.")

        def work() -> T:
            with self._lock:
                if not write:
                    return call(db)
                db.execute("BEGIN IMMEDIATE")
                try:
                    result = call(db)
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
                return result

        try:
            result = await asyncio.to_thread(work)
        except sqlite3.Error as exc:
            self.health.failed(exc)
            raise StoreError(f"The gateways database {self.path} failed: {exc}.") from exc
        self.health.ok()
        return result
