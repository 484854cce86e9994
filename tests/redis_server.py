"""A real ``redis-server`` for the tests: started in a temporary directory on a free loopback port,
with nothing saved to disk, stoppable and restartable on the same port (to show what the gateway
does while its Redis is down). ``make test`` installs the Debian package when it is missing."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest

from .processes import free_port


class RedisServer:
    def __init__(self, directory: str, password: str = "") -> None:
        self.directory = directory
        self.password = password
        self.port = free_port()
        self.process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    async def start(self) -> None:
        executable = shutil.which("redis-server")
        if executable is None:
            pytest.fail("redis-server is not installed: apt-get install -y redis-server (make test does it)")
        self.process = await asyncio.create_subprocess_exec(
            executable,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            self.directory,
            *(("--requirepass", self.password) if self.password else ()),
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.DEVNULL,
        )
        async with asyncio.timeout(10):
            while not await self._answers():
                assert self.process.returncode is None, "redis-server exited at start"
                await asyncio.sleep(0.02)

    async def stop(self) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.kill()
            await self.process.wait()
        self.process = None

    async def _answers(self) -> bool:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
        except OSError:
            return False
        try:
            if self.password:
                writer.write(b"AUTH %s\r\n" % self.password.encode())
            writer.write(b"PING\r\n")
            await writer.drain()
            if self.password:
                await reader.readline()
            return await reader.readline() == b"+PONG\r\n"
        except OSError:
            return False
        finally:
            writer.close()


@asynccontextmanager
async def redis_server(password: str = "") -> AsyncIterator[RedisServer]:
    with tempfile.TemporaryDirectory(prefix="polyrelay-redis-") as directory:
        server = RedisServer(directory, password)
        await server.start()
        try:
            yield server
        finally:
            await server.stop()
