"""A real PostgreSQL server for the tests (Debian's ``postgresql``): a cluster made by ``initdb`` in
a temporary directory, started on a free loopback port with nothing synced to disk, and a fresh
database per test; ``stop`` then ``resume`` is an outage (the same cluster, the same port).
PostgreSQL refuses to run as root: as root, the cluster belongs to the ``postgres`` system user
(the package's) and its programs run as that user. ``make test`` installs the package when it is
missing."""

from __future__ import annotations

import asyncio
import glob
import os
import shutil
import signal
import tempfile
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from .processes import free_port


def _bindir() -> str:
    found = shutil.which("pg_ctl")
    if found:
        return os.path.dirname(os.path.realpath(found))
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    if not versions:
        pytest.fail("PostgreSQL is not installed: apt-get install -y postgresql (make test does it)")
    return os.path.dirname(versions[-1])


class PostgresServer:
    def __init__(self, directory: str) -> None:
        self.directory = directory
        self.data = os.path.join(directory, "data")
        self.port = free_port()
        self.bin = _bindir()
        self.process: asyncio.subprocess.Process | None = None

    @property
    def admin_url(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _owner(self) -> dict[str, Any]:
        """As root, run as the cluster's owner: the process is postgres itself, so it gets our signals."""
        return {"user": "postgres", "group": "postgres", "extra_groups": []} if os.geteuid() == 0 else {}

    async def start(self) -> None:
        if os.geteuid() == 0:
            shutil.chown(self.directory, "postgres", "postgres")
        initdb = await asyncio.create_subprocess_exec(
            *(f"{self.bin}/initdb", "-D", self.data, "-U", "postgres", "--auth=trust", "-E", "UTF8"),
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            **self._owner(),
        )
        output, _ = await initdb.communicate()
        assert initdb.returncode == 0, f"initdb failed: {output.decode(errors='replace')}"
        await self.resume()

    async def resume(self) -> None:
        """Run the server on the cluster made by ``start`` (again after ``stop``: an outage), on the same port."""
        self.process = await asyncio.create_subprocess_exec(
            *(
                f"{self.bin}/postgres",
                "-D",
                self.data,
                "-h",
                "127.0.0.1",
                "-p",
                str(self.port),
                "-k",
                self.directory,  # its Unix socket stays in the temporary directory
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
            **self._owner(),
        )
        import asyncpg

        async with asyncio.timeout(20):
            while True:
                assert self.process.returncode is None, "postgres exited at start"
                try:
                    connection = await asyncpg.connect(self.admin_url, timeout=2)
                except (OSError, asyncpg.PostgresError):
                    await asyncio.sleep(0.05)
                    continue
                await connection.close()
                return

    async def database(self) -> str:
        """A new, empty database; its URL."""
        import asyncpg

        name = f"t_{uuid.uuid4().hex[:12]}"
        connection = await asyncpg.connect(self.admin_url)
        try:
            await connection.execute(f"CREATE DATABASE {name}")
        finally:
            await connection.close()
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGINT)  # a fast shutdown: sessions are ended at once
            try:
                async with asyncio.timeout(10):
                    await self.process.wait()
            except TimeoutError:
                self.process.kill()
                await self.process.wait()
        self.process = None


@asynccontextmanager
async def postgres_server() -> AsyncIterator[PostgresServer]:
    with tempfile.TemporaryDirectory(prefix="polyrelay-pg-") as directory:
        server = PostgresServer(directory)
        try:
            await server.start()
            yield server
        finally:
            await server.stop()
