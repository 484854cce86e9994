"""A real gateway process for the tests: ``python -m gateway serve`` on a free loopback port, its
output (stdout and stderr, in order) collected line by line as it comes, so a test can wait for a
line and the pipe never fills; and reading a raw connection to its end."""

from __future__ import annotations

import asyncio
import os
import re
import socket
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from .fakes import FakeProviders


async def read_all(reader: asyncio.StreamReader) -> bytes:
    """Everything a raw connection receives until the server closes it."""
    chunks = []
    try:
        while chunk := await reader.read(65536):
            chunks.append(chunk)
    except ConnectionError:
        pass
    return b"".join(chunks)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class GatewayProcess:
    def __init__(self, process: asyncio.subprocess.Process, url: str) -> None:
        self.process = process
        self.url = url
        self.lines: list[str] = []
        self._more = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.lines.append(line.decode(errors="replace").rstrip("\n"))
            self._more.set()

    async def line_matching(self, pattern: str, *, count: int = 1, timeout: float = 5.0) -> re.Match[str]:
        """The ``count``-th line of output matching ``pattern`` (a regex), once it has been written."""
        async with asyncio.timeout(timeout):
            while True:
                matches = [m for line in self.lines if (m := re.search(pattern, line))]
                if len(matches) >= count:
                    return matches[count - 1]
                self._more.clear()
                await self._more.wait()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


def _environ(fake: FakeProviders, port: int, env: dict[str, str]) -> dict[str, str]:
    return {
        **os.environ,
        **fake.env(),
        "SERVER_PORT": str(port),
        "SERVER_ACCESS_LOG": "false",
        "SERVER_DRAIN_DELAY": "0s",  # a test that sends SIGTERM waits for the delay it asks for only
        "PYTHONPATH": os.pathsep.join(sys.path),
        **env,
    }


async def failed_start(fake: FakeProviders, timeout: float = 20.0, **env: str) -> tuple[int, str]:
    """A gateway process that is expected not to start: its exit code and its output."""
    process = await asyncio.create_subprocess_exec(
        *(sys.executable, "-m", "gateway", "serve"),
        env=_environ(fake, free_port(), env),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        async with asyncio.timeout(timeout):
            output, _ = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, output.decode(errors="replace")


@asynccontextmanager
async def gateway_process(fake: FakeProviders, **env: str) -> AsyncIterator[GatewayProcess]:
    """A gateway process against the fake providers, once its ``/health`` answers; killed at the end."""
    port = free_port()
    environ = _environ(fake, port, env)
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "gateway",
        "serve",
        env=environ,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    running = GatewayProcess(process, f"http://127.0.0.1:{port}")
    try:
        async with httpx.AsyncClient() as http:
            for _ in range(400):
                try:
                    if (await http.get(f"{running.url}/health")).status_code == 200:
                        break
                except httpx.TransportError:
                    assert process.returncode is None, running.output
                    await asyncio.sleep(0.05)
        yield running
    finally:
        if process.returncode is None:
            process.kill()
        await process.wait()
        await running._reader
