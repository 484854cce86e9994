"""The /metrics endpoint: Prometheus text on a port of its own (TELEMETRY_METRICS_PORT, bound to
SERVER_HOST), never on the API's port, so an ingress in front of the API cannot expose it.

    LoopMetricsServer  one process: /metrics on the gateway's own event loop (aiohttp), no thread
    MetricsServer    prometheus-client's HTTP server on a thread of its own, for the supervisor of
                     several workers (it has no event loop, and serves no requests)
    WorkersMetrics   with several worker processes: prometheus-client's multiprocess mode. The
                     supervisor makes a fresh directory (PROMETHEUS_MULTIPROC_DIR) before the
                     workers start, each worker writes its values there, the supervisor serves
                     their sum, and forgets a dead worker's in-flight gauges

    server = await LoopMetricsServer.start(registry, "0.0.0.0", 9464)
    await server.aclose()

    with WorkersMetrics(settings) as metrics:          # in the supervisor, before any worker
        Supervisor(config, [sock], on_worker_gone=metrics.worker_gone).run()
"""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from ..settings import Settings

__all__ = ["MULTIPROCESS_DIR", "LoopMetricsServer", "MetricsPortError", "MetricsServer", "WorkersMetrics"]

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"  # prometheus-client's own variable, read at its import


class MetricsPortError(OSError):
    """The metrics endpoint could not listen: start-up stops, naming the setting to change."""

    @classmethod
    def of(cls, host: str, port: int, exc: OSError) -> MetricsPortError:
        reason = os.strerror(exc.errno) if exc.errno else str(exc)  # aiohttp rewrites the message
        return cls(
            f"The metrics endpoint cannot listen on {host}:{port} (TELEMETRY_METRICS_PORT={port}): "
            f"{reason}. Set TELEMETRY_METRICS_PORT to a free port, or stop what holds this one.",
        )


class MetricsServer:
    def __init__(self, httpd: Any, thread: threading.Thread) -> None:
        self.httpd = httpd
        self.thread = thread

    @classmethod
    def start(cls, registry: CollectorRegistry, host: str, port: int) -> MetricsServer:
        from prometheus_client import start_http_server

        try:
            httpd, thread = start_http_server(port, addr=host, registry=registry)
        except OSError as exc:
            raise MetricsPortError.of(host, port, exc) from exc
        return cls(httpd, thread)

    def stop(self) -> None:
        self.httpd.shutdown()  # returns once serve_forever has noticed (within its 0.5 s poll)
        self.httpd.server_close()
        self.thread.join()


class LoopMetricsServer:
    """/metrics served by the gateway's own event loop (aiohttp's server, which the gateway already
    has): no thread to start and join, and it closes at once (the threaded server polls every
    0.5 s). Idle, either costs the API nothing measurable. A scrape renders on the loop (about a
    millisecond for a few hundred series, every 15 s or so)."""

    def __init__(self, runner: Any, port: int) -> None:
        self.runner = runner
        self.port = port

    @classmethod
    async def start(cls, registry: CollectorRegistry, host: str, port: int) -> LoopMetricsServer:
        from aiohttp import web
        from prometheus_client.exposition import choose_encoder

        async def metrics(request: web.Request) -> web.Response:
            encode, content_type = choose_encoder(request.headers.get("Accept", ""))
            return web.Response(body=encode(registry), headers={"Content-Type": content_type})

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        runner = web.AppRunner(app, access_log=None, handle_signals=False)
        await runner.setup()
        site = web.TCPSite(runner, host, port, reuse_address=True)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            raise MetricsPortError.of(host, port, exc) from exc
        bound = runner.addresses[0][1] if runner.addresses else port
        return cls(runner, int(bound))

    async def aclose(self) -> None:
        await self.runner.cleanup()

    def __str__(self) -> str:
        return f"port {self.port}"


class WorkersMetrics:
    """The supervisor's side of metrics over several workers (see the module docstring). The
    process collector is left out: the supervisor's own memory and CPU would pass for the
    gateway's, and prometheus-client does not sum those of the workers."""

    def __init__(self, settings: Settings) -> None:
        self.host = settings.server_host
        self.port = settings.telemetry_metrics_port
        self.directory = ""
        self.server: MetricsServer | None = None

    def __enter__(self) -> WorkersMetrics:
        # Set before any worker starts (they inherit it) and before prometheus-client is imported
        # here, so every process agrees on where the values are.
        self.directory = tempfile.mkdtemp(prefix="polyrelay-metrics-")
        os.environ[MULTIPROCESS_DIR] = self.directory
        from prometheus_client import CollectorRegistry
        from prometheus_client.multiprocess import MultiProcessCollector

        registry = CollectorRegistry()
        MultiProcessCollector(registry, path=self.directory)  # type: ignore[no-untyped-call]
        try:
            self.server = MetricsServer.start(registry, self.host, self.port)
        except BaseException:
            self._clean()
            raise
        return self

    def worker_gone(self, pid: int) -> None:
        """A worker ended (died and was replaced, or stopped): its in-flight gauges no longer
        count, while its counters and histograms stay in the sum."""
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid, self.directory)  # type: ignore[no-untyped-call]

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self.server is not None:
            self.server.stop()
            self.server = None
        self._clean()

    def _clean(self) -> None:
        os.environ.pop(MULTIPROCESS_DIR, None)
        shutil.rmtree(self.directory, ignore_errors=True)
