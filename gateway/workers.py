"""``SERVER_WORKERS`` > 1: a parent process supervising worker processes that share one socket.

uvicorn's own supervisor (``uvicorn.supervisors.Multiprocess``) runs plain ``uvicorn.Server``
workers and sends each one SIGTERM, once, whatever it received: its workers would neither withdraw
readiness for the drain delay nor hear a second signal. This one reuses uvicorn's worker process
(spawned, pinged for health) with a ``GatewayServer`` in it, and passes every SIGTERM and SIGINT it
receives on to every worker, so each follows the same shutdown timeline as a single process (see
``server``). While the gateway runs, a worker that dies or stops answering its pings is replaced;
one that cannot start stops the gateway, since every other would fail the same way. uvicorn's
SIGHUP (restart every worker) and SIGTTIN/SIGTTOU (one worker more or fewer) are not offered: in a
container, the orchestrator restarts and scales.

    config = uvicorn_config(settings, "gateway.app:app_from_environment", factory=True, workers=4)
    Supervisor(config, [config.bind_socket()]).run()
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import signal
import socket
from collections.abc import Callable
from types import FrameType
from typing import cast

from uvicorn.config import STARTUP_FAILURE
from uvicorn.supervisors.multiprocess import Process

from .server import GatewayConfig, GatewayServer

__all__ = ["Supervisor", "Worker"]

log = logging.getLogger("polyrelay")

_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_CHECK_EVERY = 0.5  # seconds between health checks of the workers


class Worker(Process):
    """uvicorn's worker process, serving with ``GatewayServer``."""

    signals_sent = 0

    @property
    def server(self) -> GatewayServer:
        if self._server is None:
            self._server = GatewayServer(cast(GatewayConfig, self.config))
        return cast(GatewayServer, self._server)

    def signal(self, sig: int) -> None:
        self.signals_sent += 1
        if self.pid is not None and self.exitcode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, sig)


class Supervisor:
    """Starts ``config.workers`` workers on ``sockets`` and keeps them running until a signal, which
    every worker then gets too; ``run`` returns once all have ended."""

    def __init__(
        self,
        config: GatewayConfig,
        sockets: list[socket.socket],
        *,
        on_worker_gone: Callable[[int], None] | None = None,
    ) -> None:
        self.config = config
        self.sockets = sockets
        self.on_worker_gone = on_worker_gone  # told the pid of each worker that has ended
        self.workers: list[Worker] = []
        self.stopping = False
        self.failed = False
        self._received = 0  # signals received so far: each worker must be sent as many
        self._signals: queue.SimpleQueue[int] = queue.SimpleQueue()  # from the handler to the loop

    def run(self) -> int:
        """Supervise until every worker has ended: 0, or uvicorn's start-up failure code (3)."""
        previous = {sig: signal.signal(sig, self._on_signal) for sig in _SIGNALS}
        try:
            log.info("supervisor [%d]: starting %d workers", os.getpid(), self.config.workers)
            self.workers = [self._spawn() for _ in range(self.config.workers)]
            while self.workers:
                with contextlib.suppress(queue.Empty):
                    self._after_signal(self._signals.get(timeout=_CHECK_EVERY))
                self._check()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        log.info("supervisor [%d]: every worker has ended", os.getpid())
        return STARTUP_FAILURE if self.failed else 0

    def _on_signal(self, sig: int, frame: FrameType | None) -> None:
        # Passed on from the handler itself: the loop may be waiting for seconds on the health ping
        # of a worker still starting, and readiness must be withdrawn at once.
        self._received += 1
        self._pass_on(sig)
        self._signals.put(sig)

    def _pass_on(self, sig: int) -> None:
        self.stopping = True
        for worker in self.workers:
            worker.signal(sig)

    def _after_signal(self, sig: int) -> None:
        if self.sockets:
            log.info("supervisor: %s, passed on to %d workers", signal.Signals(sig).name, len(self.workers))
            # The workers hold the socket too; once they close it at the end of the delay, new
            # connections are refused instead of waiting in a backlog that nobody accepts from.
            for sock in self.sockets:
                sock.close()
            self.sockets = []
        for worker in self.workers:  # one started just as the signal came may have missed it
            while worker.signals_sent < self._received:
                worker.signal(sig)

    def _gone(self, worker: Worker) -> None:
        if self.on_worker_gone is not None and worker.pid is not None:
            self.on_worker_gone(worker.pid)

    def _spawn(self) -> Worker:
        worker = Worker(self.config, self.sockets)
        worker.start()
        return worker

    def _check(self) -> None:
        """Forget the workers that have ended while stopping; replace the dead ones otherwise."""
        kept = []
        for worker in self.workers:
            if self.stopping:
                if worker.process.is_alive():
                    kept.append(worker)
                else:
                    worker.join()
                    self._gone(worker)
                continue
            if worker.is_alive(timeout=self.config.timeout_worker_healthcheck):
                kept.append(worker)
                continue
            worker.kill()  # dead, or alive but no longer answering
            worker.join()
            self._gone(worker)
            if worker.exitcode == STARTUP_FAILURE:
                log.error("supervisor: worker [%s] could not start; stopping the gateway", worker.pid)
                self.failed = True
                self._pass_on(signal.SIGTERM)
                continue
            log.warning("supervisor: worker [%s] ended (exit code %s); starting another", worker.pid, worker.exitcode)
            kept.append(self._spawn())
        self.workers = kept
