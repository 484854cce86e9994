"""Where gateways are kept: one table of specs and statuses, and a feed of what changed.

    Store           the interface the API and the reconciler use (below)
    sqlite.SQLiteStore     the default: one file (``sqlite:///path``), WAL, polled for changes
    postgres.PostgresStore for several replicas (``postgresql://...``): LISTEN/NOTIFY, plus a
                           slow poll in case a notification is lost
    record          a stored gateway (``Record``) and its row
    health          its outages in the log: once when it goes, a reminder a minute, once when back

Every write is one transaction (a crash leaves the old row or the new one) and bumps the row's
``revision``; ``update`` reads and writes under the row's lock, so a change computed from what was
read cannot overwrite another replica's. Migrations are numbered and run at ``open``.

    store = open_store("sqlite:///var/lib/polyrelay/gateways.db")
    await store.open()
    async for changed in store.changes():   # ids, or None: "compare everything"
        ...
"""

from __future__ import annotations

import abc
from collections.abc import AsyncGenerator, Callable
from datetime import datetime

from .health import StoreHealth
from .record import Record

__all__ = ["Change", "DuplicateId", "Record", "Store", "StoreError", "open_store"]

# What ``update`` applies to the row it read: the record to write, or None to leave it as it is.
Change = Callable[[Record], Record | None]


class StoreError(Exception):
    """The store cannot be used (unreachable, a bad URL, a newer schema than this build knows)."""


class DuplicateId(StoreError):
    """A gateway with this id exists already."""


class Store(abc.ABC):
    """A store of gateways. ``organization_id`` None means every organization (the reconciler)."""

    url: str
    health: StoreHealth  # logs its outages, once per spell

    @abc.abstractmethod
    async def open(self) -> None:
        """Connect, create the database if new, and run the migrations it lacks."""

    @abc.abstractmethod
    async def close(self) -> None: ...

    @abc.abstractmethod
    async def create(self, record: Record) -> Record:
        """Insert a new gateway; raises ``DuplicateId``."""

    @abc.abstractmethod
    async def get(self, gateway_id: str, organization_id: str | None = None) -> Record | None: ...

    @abc.abstractmethod
    async def list(self, organization_id: str | None = None, updated_after: datetime | None = None) -> list[Record]:
        """Gateways by creation time, those written strictly after ``updated_after`` if given."""

    @abc.abstractmethod
    async def update(self, gateway_id: str, change: Change, organization_id: str | None = None) -> Record | None:
        """Apply ``change`` to the current row under its lock, atomically; returns the record as it
        is afterwards (None: no such gateway). ``change`` may raise to refuse, and is called once."""

    @abc.abstractmethod
    async def remove(self, gateway_id: str, revision: int) -> bool:
        """Delete the row if it is still at ``revision`` (what the caller drained); True if deleted."""

    @abc.abstractmethod
    def changes(self) -> AsyncGenerator[set[str] | None, None]:
        """The ids of gateways written since the last item (by any process), within about a
        second; None from time to time, meaning "compare everything" (the safety net)."""


def open_store(url: str) -> Store:
    """The store for ``GATEWAYS_DATABASE_URL``: ``sqlite:///relative/or//absolute/path`` or
    ``postgresql://user:password@host:port/db`` (asyncpg, imported only then)."""
    if url.startswith("sqlite:///"):
        from .sqlite import SQLiteStore

        return SQLiteStore(url)
    if url.startswith(("postgresql://", "postgres://")):
        from .postgres import PostgresStore

        return PostgresStore(url)
    raise StoreError(f"{url!r} is not a sqlite:///path or postgresql:// URL.")
