"""``GatewayRuntime``: this process's data planes of the gateway resources (``spec.Runtime``).

Each gateway's data plane is ``gateway.plane.data_plane`` (the code that serves the default gateway)
run on settings derived from its spec: its routing strategy and header, its zones' providers (the
others withheld, see ``zones``), its authentication, and its own rate-limit counters. Each ``Plane``
counts its requests in flight and has a drain of its own, chained to the process's, so a SIGTERM
still drains it and removing it alone can cut what it holds.

    runtime = GatewayRuntime(settings, shared)            # built by create_app; Dispatch reads .table
    endpoints = await runtime.apply(spec)                 # build, check dependencies, swap in
    await runtime.remove(spec.id)                         # 404 at once, drain (bounded), close

``apply`` on an existing id swaps the new plane in with one assignment: requests in flight finish on
the old plane, which is closed once they have (in the background). A host already served by another
gateway is a ``ValueError``: the gateway is ``STATUS_FAILED`` until its spec changes.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from urllib.parse import urlsplit

from starlette.middleware import Middleware
from starlette.types import ASGIApp, Receive, Scope, Send

from providers.errors import NotFound

from ..drain import Drain, Interruptible
from ..errors import error_response
from ..limits.limiter import Limits
from ..limits.rules import Counter
from ..limits.store import Store, Verdict
from ..plane import Shared, data_plane, process_auth
from ..relay import DRAIN_EXTENSION
from ..settings import Settings
from .spec import GatewaySpec, GatewayUnavailable
from .zones import aliases_in, in_zones, provider_zones

__all__ = ["GatewayRuntime", "Plane", "RoutingTable"]

log = logging.getLogger("polyrelay")

_CUT_GRACE = 2.0  # after a plane's drain deadline, how long the cut requests get to write their end
_KEYS_CACHED = 4096

Closer = Callable[[], Awaitable[None]]


class _ChainedDrain(Drain):
    """A plane's drain: what it watches is watched by the process's drain too (a SIGTERM cuts it)."""

    def __init__(self, timeout: float) -> None:
        super().__init__(timeout)
        self.parent: Drain | None = None

    def add(self, watch: Interruptible) -> None:
        super().add(watch)
        if self.parent is not None:
            self.parent.add(watch)

    def discard(self, watch: Interruptible) -> None:
        super().discard(watch)
        if self.parent is not None:
            self.parent.discard(watch)


class Plane:
    """One gateway's data plane: its app, its requests in flight, and what closes with it."""

    def __init__(self, spec: GatewaySpec, app: ASGIApp, closers: Sequence[Closer], drain_timeout: float) -> None:
        self.spec = spec
        self.app = app
        self.closers = closers
        self.in_flight = 0
        self.closing = False
        self.drain = _ChainedDrain(drain_timeout)
        self._idle: asyncio.Event | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.closing:  # looked up just before its removal
            await error_response(_gone(self.spec.id), scope["path"])(scope, receive, send)
            return
        self.in_flight += 1
        extensions = scope.get("extensions") or {}
        if self.drain.parent is None:
            self.drain.parent = extensions.get(DRAIN_EXTENSION)
        scope["extensions"] = {**extensions, DRAIN_EXTENSION: self.drain}  # scope: the dispatch's copy
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1
            if not self.in_flight and self._idle is not None:
                self._idle.set()

    async def retire(self) -> None:
        """Refuse new requests, give those in flight the drain timeout, cut the rest, then close."""
        self.closing = True
        if self.in_flight:
            self._idle = asyncio.Event()
            try:
                async with asyncio.timeout(self.drain.timeout):
                    await self._idle.wait()
            except TimeoutError:
                log.warning("gateway %s: cutting %d request(s) still in flight", self.spec.id, self.in_flight)
                self.drain.cut()
                try:
                    async with asyncio.timeout(_CUT_GRACE):
                        await self._idle.wait()
                except TimeoutError:
                    pass
        for close in self.closers:
            try:
                await close()
            except Exception:
                log.exception("gateway %s: closing a dependency failed", self.spec.id)


class RoutingTable:
    """The planes by id and by extra host; each dict is replaced whole, never changed in place."""

    def __init__(self) -> None:
        self.by_id: Mapping[str, Plane] = {}
        self.by_host: Mapping[str, Plane] = {}


class GatewayRuntime:
    def __init__(self, settings: Settings, shared: Shared) -> None:
        self.settings = settings
        self.shared = shared
        self.table = RoutingTable()
        self.drain_timeout = settings.server_drain_timeout or 30.0
        self.base_url = settings.gateways_public_base
        self._retiring: set[asyncio.Task[None]] = set()

    def zones(self) -> tuple[str, ...]:
        return provider_zones(self.settings.providers)

    async def apply(self, spec: GatewaySpec) -> tuple[str, ...]:
        self._check_hosts(spec)
        plane = await self._build(spec)
        try:
            self._check_hosts(spec)  # again: another gateway may have taken a host while this one was built
        except ValueError:
            await plane.retire()
            raise
        table = self.table
        old = table.by_id.get(spec.id)
        hosts = {h: p for h, p in table.by_host.items() if p.spec.id != spec.id}
        hosts.update(dict.fromkeys(spec.additional_dns, plane))
        table.by_id, table.by_host = {**table.by_id, spec.id: plane}, hosts  # no await between: atomic
        if old is not None:
            task = asyncio.get_running_loop().create_task(old.retire())
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        log.info("gateway %s (%s) applied: %s routing, zones %s", spec.id, spec.name, spec.routing, spec.zones or "all")
        return self.endpoints(spec)

    async def remove(self, gateway_id: str) -> None:
        table = self.table
        plane = table.by_id.get(gateway_id)
        if plane is None:
            return
        table.by_id = {k: p for k, p in table.by_id.items() if k != gateway_id}
        table.by_host = {h: p for h, p in table.by_host.items() if p is not plane}
        await plane.retire()
        log.info("gateway %s removed", gateway_id)

    async def close(self) -> None:
        """At shutdown (the server has drained): close every plane and wait for those retiring."""
        planes = list(self.table.by_id.values())
        self.table.by_id, self.table.by_host = {}, {}
        for plane in planes:
            plane.closing = True
        # At once: each closer is bounded (a usage reporter flushes for at most a few seconds).
        await asyncio.gather(*(close() for plane in planes for close in plane.closers), return_exceptions=True)
        if self._retiring:
            await asyncio.gather(*self._retiring, return_exceptions=True)

    def endpoints(self, spec: GatewaySpec) -> tuple[str, ...]:
        """``<base>/gateways/<id>/v1``, and per extra host the base's scheme and port with that host:
        the host names the same listener, behind the same TLS (or not) as the base."""
        base = urlsplit(self.base_url)
        port = f":{base.port}" if base.port else ""
        hosts = tuple(f"{base.scheme}://{host}{port}/v1" for host in spec.additional_dns)
        return (f"{self.base_url}/gateways/{spec.id}/v1", *hosts)

    def _check_hosts(self, spec: GatewaySpec) -> None:
        for host in spec.additional_dns:
            owner = self.table.by_host.get(host)
            if owner is not None and owner.spec.id != spec.id:
                raise ValueError(
                    f"The host {host} is already served by gateway {owner.spec.id} ({owner.spec.name}); "
                    "remove it from one of them."
                )

    async def _build(self, spec: GatewaySpec) -> Plane:
        settings, shared = self.settings, self.shared
        providers = in_zones(settings.providers, spec.zones)
        derived = dataclasses.replace(
            settings,
            routing_strategy=spec.routing,
            routing_header_name=spec.header_name or settings.routing_header_name,
            providers=providers,
            aliases=aliases_in(settings.aliases, providers),
        )
        closers: list[Closer] = []
        if spec.auth == "coreweave":
            if shared.oidc is not None and not shared.oidc.ready:
                raise GatewayUnavailable(
                    "OIDCKeysNotLoaded",
                    f"The OIDC issuer {settings.auth_oidc_issuer} has not given its signing keys yet; "
                    "the gateway serves once it has.",
                )
            auth = process_auth(settings, shared)
            limits = self._limits(spec)
        else:
            auth, limits = await self._wandb(spec, closers)
        app = data_plane(derived, shared, auth=auth, limits=limits, mounted=True)
        return Plane(spec, app, closers, self.drain_timeout)

    async def _wandb(self, spec: GatewaySpec, closers: list[Closer]) -> tuple[list[Middleware], Limits | None]:
        """The W&B key check (its server must answer first), usage reports and per-entity limits."""
        from .usage import UsageMiddleware
        from .wandb import WandbAuthMiddleware, WandbVerifier, usage_reporter

        wandb = spec.wandb
        if wandb is None:
            raise ValueError("weightsAndBiasesAuth needs its apiKey and serverUrl.")
        http = self.shared.http
        verifier = WandbVerifier(wandb, http)
        await verifier.check()  # GatewayUnavailable while the server does not answer
        auth = [Middleware(WandbAuthMiddleware, verifier=verifier)]
        if wandb.enable_usage_reports:
            metrics = self.shared.telemetry.metrics
            dropped = metrics.wandb_usage_dropped if metrics is not None else None
            reporter = usage_reporter(wandb, spec.id, http, dropped=dropped)
            await reporter.start()
            closers.append(reporter.close)
            auth.append(Middleware(UsageMiddleware, reporter=reporter))
        return auth, self._limits(spec) if wandb.enable_rate_limiting else None

    def _limits(self, spec: GatewaySpec) -> Limits | None:
        """The process's limit rules over counters of this gateway's own (``None``: none configured)."""
        limits = self.shared.limits
        if limits is None:
            return None
        store = _GatewayCounters(limits.store, spec.id)
        return Limits(limits.rules, store, fail_open=limits.fail_open, claim=limits.claim)


class _GatewayCounters:
    """The process's limits store, with every counter's key under ``gateway:<id>:``: a gateway's
    callers (and its ``global`` limit) are counted apart from the default gateway's and each other's."""

    def __init__(self, store: Store, gateway_id: str) -> None:
        self.store = store
        self.name = store.name
        self.location = store.location
        self.prefix = f"gateway:{gateway_id}:"
        self._keys: dict[Counter, Counter] = {}

    def _scoped(self, counters: Sequence[Counter]) -> list[Counter]:
        keys = self._keys
        if len(keys) > _KEYS_CACHED:
            keys.clear()
        return [keys.get(c) or keys.setdefault(c, dataclasses.replace(c, key=self.prefix + c.key)) for c in counters]

    async def admit(self, counters: Sequence[Counter], costs: Sequence[int], lease: str) -> Verdict:
        return await self.store.admit(self._scoped(counters), costs, lease)

    async def settle(self, counters: Sequence[Counter], deltas: Sequence[int], lease: str) -> None:
        await self.store.settle(self._scoped(counters), deltas, lease)

    async def ping(self) -> None:
        await self.store.ping()

    async def close(self) -> None:
        """The store is the process's: it closes with the process."""


def _gone(gateway_id: str) -> NotFound:
    return NotFound(f"The gateway '{gateway_id}' is being deleted and takes no new requests.", code="gateway_not_found")
