"""What the gateways tests share: ``RecordingRuntime``, a data-plane runtime for the reconciler
that keeps the gateways applied to it (``specs``) and can be told to fail as a real one does
(``unavailable``: its auth server is down; an ``additionalDns`` host already served by another
gateway: ``ValueError``); ``management``, the management API served on loopback over a store;
and ``wait_for_status``, a poll as a client does."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx

from gateway.auth import ApiKeys
from gateway.gateways.service import Gateways
from gateway.gateways.spec import GatewaySpec, GatewayUnavailable
from gateway.settings import Settings

from .processes import free_port

BASE = "/v1alpha1/inference/gateways"


class RecordingRuntime:
    """Implements ``spec.Runtime``: apply records the spec, remove forgets it."""

    def __init__(
        self, zones: tuple[str, ...] = ("us-east", "eu-west", "on-prem"), base: str = "http://dp.test"
    ) -> None:
        self._zones = zones
        self.base = base
        self.specs: dict[str, GatewaySpec] = {}
        self.applies: list[str] = []
        self.removed: list[str] = []
        self.unavailable: GatewayUnavailable | None = None  # raised by apply while set

    async def apply(self, spec: GatewaySpec) -> tuple[str, ...]:
        self.applies.append(spec.id)
        await asyncio.sleep(0)  # a real one awaits its dependencies
        if self.unavailable is not None:
            raise self.unavailable
        for other in self.specs.values():
            taken = set(other.additional_dns) & set(spec.additional_dns)
            if other.id != spec.id and taken:
                raise ValueError(f"The host {sorted(taken)[0]} is served by the gateway {other.id} already.")
        self.specs[spec.id] = spec
        return (f"{self.base}/gateways/{spec.id}/v1", *(f"https://{host}/v1" for host in spec.additional_dns))

    async def remove(self, gateway_id: str) -> None:
        self.removed.append(gateway_id)
        self.specs.pop(gateway_id, None)

    def zones(self) -> tuple[str, ...]:
        return self._zones


@asynccontextmanager
async def management(
    database_url: str, runtime: RecordingRuntime | None = None, *, oidc: Any = None, **env: str
) -> AsyncIterator[tuple[str, Gateways]]:
    """The management API on a free loopback port over ``database_url``; yields its base URL."""
    port = free_port()
    settings = Settings.load(
        {"GATEWAYS_ENABLED": "true", "GATEWAYS_PORT": str(port), "GATEWAYS_DATABASE_URL": database_url, **env}
    )
    runtime = runtime or RecordingRuntime()
    service = Gateways.from_settings(settings, runtime, keys=ApiKeys(settings.auth_api_keys), oidc=oidc)
    await service.start()
    try:
        yield f"http://127.0.0.1:{port}", service
    finally:
        await service.close()


async def wait_for_status(
    http: httpx.AsyncClient, url: str, gateway_id: str, status: str, timeout: float = 5.0, **headers: Any
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        answer = await http.get(f"{url}{BASE}/{gateway_id}", headers=headers)
        document = answer.json()
        if answer.status_code == 200 and document["gateway"]["status"]["status"] == status:
            gateway: dict[str, Any] = document["gateway"]
            return gateway
        assert time.monotonic() < deadline, f"{gateway_id} never reached {status}: {answer.status_code} {document}"
        await asyncio.sleep(0.02)
