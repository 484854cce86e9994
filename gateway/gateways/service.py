"""The gateway resources of one process, assembled: the store, the reconciler and the management
API on its own port. ``create_app`` builds it when ``GATEWAYS_ENABLED``, with the data planes'
``Runtime``, and its lifespan starts and closes it.

    gateways = Gateways.from_settings(settings, runtime, keys=ApiKeys(settings.auth_api_keys), oidc=verifier)
    await gateways.start()    # migrate, apply every stored gateway, then listen on GATEWAYS_PORT
    await gateways.close()
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from starlette.applications import Starlette

from ..auth import ApiKeys
from ..server import PortError, SideServer
from ..settings import Settings
from ..startup import StartupError
from .api import management_app
from .reconciler import Reconciler
from .spec import GatewaySpec, GatewayUnavailable, Runtime
from .store import Store, StoreError, open_store

if TYPE_CHECKING:
    from ..oidc import OIDCVerifier

__all__ = ["Gateways", "NoDataPlanes"]

log = logging.getLogger("polyrelay")


class Gateways:
    def __init__(
        self, store: Store, runtime: Runtime, reconciler: Reconciler, app: Starlette, server: SideServer | None
    ) -> None:
        self.store = store
        self.runtime = runtime
        self.reconciler = reconciler
        self.app = app
        self.server = server

    @classmethod
    def from_settings(
        cls, settings: Settings, runtime: Runtime, *, keys: ApiKeys, oidc: OIDCVerifier | None, serve: bool = True
    ) -> Gateways:
        """``serve`` False: no port of its own (the app is mounted or called by the caller)."""
        store = open_store(settings.gateways_database_url)
        if settings.gateways_database_url.startswith("postgres") and not settings.gateways_public_url:
            # Each replica writes the endpoints it builds: from its own address they would differ.
            log.warning(
                "GATEWAYS_PUBLIC_URL is not set: each replica sharing this PostgreSQL store reports the "
                "gateways' endpoints from its own address (%s). Set it to the address callers use.",
                settings.gateways_public_base,
            )
        reconciler = Reconciler(store, runtime)
        app = management_app(
            store,
            runtime,
            changed=reconciler.kick,
            enabled=settings.auth_enabled,
            keys=keys,
            oidc=oidc,
            roles_claim=settings.gateways_roles_claim,
            organization_claim=settings.gateways_organization_claim,
            default_organization=settings.gateways_default_organization,
        )
        server = SideServer(settings, app, port=settings.gateways_port, setting="GATEWAYS_PORT") if serve else None
        return cls(store, runtime, reconciler, app, server)

    async def start(self) -> None:
        """Raises ``StartupError`` (one line for the operator) if the store cannot be opened or the
        port taken; what it opened is closed again."""
        try:
            await self.store.open()
        except StoreError as exc:
            password = urlsplit(self.store.url).password
            reason = str(exc).replace(password, "***") if password else str(exc)  # a driver may quote the URL
            raise StartupError(f"GATEWAYS_DATABASE_URL={_redacted(self.store.url)}: {reason}") from exc
        try:
            await self.reconciler.start()
            if self.server is not None:
                await self.server.start()
        except BaseException as exc:
            await self.reconciler.close()
            await self.store.close()
            if isinstance(exc, PortError):
                raise StartupError(str(exc)) from exc
            raise
        where = f" on port {self.server.port}" if self.server is not None else ""
        log.info("gateways: the management API serves%s; store %s", where, _redacted(self.store.url))

    async def close(self) -> None:
        if self.server is not None:
            await self.server.stop()
        await self.reconciler.close()
        await self.store.close()


def _redacted(url: str) -> str:
    """The store's URL without its password (it goes to the log)."""
    scheme, sep, rest = url.partition("://")
    credentials, at, host = rest.rpartition("@")
    if not at:
        return url
    user = credentials.split(":", 1)[0]
    return f"{scheme}{sep}{user}:***@{host}"


class NoDataPlanes:
    """The ``Runtime`` where no data planes are wired in: gateways are kept and shown, none serves
    (each stays ``STATUS_ERROR``, reason ``NoDataPlane``, retried, so it becomes ready by itself
    once a build with data planes runs on the same store); no zones."""

    async def apply(self, spec: GatewaySpec) -> tuple[str, ...]:
        raise GatewayUnavailable("NoDataPlane", "This polyrelay process serves no gateway data planes.")

    async def remove(self, gateway_id: str) -> None:
        return None

    def zones(self) -> tuple[str, ...]:
        return ()
