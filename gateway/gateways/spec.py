"""A gateway's specification and status: the contract between the store, the management API, the
reconciler and the runtime.

The API's JSON (``{"name", "zones", "coreWeaveAuth": {}, "headerBasedRouting": {"headerName"}, ...}``)
is parsed and validated into a ``GatewaySpec`` by the management API; the store keeps it with its
``GatewayStatus``; the runtime builds a data plane from the spec alone.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Protocol

__all__ = [
    "AuthKind",
    "Condition",
    "GatewaySpec",
    "GatewayStatus",
    "GatewayUnavailable",
    "RoutingKind",
    "Runtime",
    "Status",
    "WandbAuth",
]

AuthKind = Literal["coreweave", "wandb"]  # coreWeaveAuth | weightsAndBiasesAuth
RoutingKind = Literal["body", "header", "path"]  # bodyBasedRouting | headerBasedRouting | pathBasedRouting
Status = Literal[
    "STATUS_CREATING", "STATUS_READY", "STATUS_UPDATING", "STATUS_DELETING", "STATUS_ERROR", "STATUS_FAILED"
]


@dataclass(frozen=True, slots=True)
class WandbAuth:
    """weightsAndBiasesAuth: callers present a W&B API key, checked against ``server_url``;
    ``api_key`` is the gateway's own credential there (for usage reports), never shown back whole."""

    api_key: str
    server_url: str
    enable_usage_reports: bool = False
    enable_rate_limiting: bool = False

    def __repr__(self) -> str:
        reports, limiting = self.enable_usage_reports, self.enable_rate_limiting
        return f"WandbAuth(server_url={self.server_url!r}, usage_reports={reports}, rate_limiting={limiting})"


@dataclass(frozen=True, slots=True)
class GatewaySpec:
    """One gateway as created or last changed (a PATCH replaces the whole spec)."""

    id: str  # a UUID, lower case
    name: str
    organization_id: str
    zones: tuple[str, ...] = ()  # lower case; empty: every zone
    auth: AuthKind = "coreweave"
    wandb: WandbAuth | None = None  # set exactly when auth == "wandb"
    routing: RoutingKind = "body"
    header_name: str = ""  # set exactly when routing == "header"
    api_type: str = "API_TYPE_OPENAI"  # bodyBasedRouting.apiType
    additional_dns: tuple[str, ...] = ()  # extra host names (lower case) serving /v1/... directly


@dataclass(frozen=True, slots=True)
class Condition:
    type: str  # e.g. "Ready"
    status: Literal["True", "False", "Unknown"]
    reason: str  # CamelCase, e.g. "Applied", "AuthServerUnreachable"
    message: str
    last_update_time: str  # RFC 3339, UTC, seconds: 2026-12-01T17:00:00Z
    zone: str = ""


@dataclass(frozen=True, slots=True)
class GatewayStatus:
    status: Status
    created_at: str
    updated_at: str
    conditions: tuple[Condition, ...] = ()
    endpoints: tuple[str, ...] = ()  # filled once READY
    generation: int = 1  # bumped by every change of the spec; the reconciler applies the newest
    spec_hash: str = field(default="", compare=False)


class GatewayUnavailable(Exception):
    """A gateway cannot serve yet for a reason that may pass (its auth server unreachable):
    ``STATUS_ERROR``, retried until it serves. ``reason`` is CamelCase for the condition."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class Runtime(Protocol):
    """What the reconciler drives in each process: the data planes of the gateways."""

    async def apply(self, spec: GatewaySpec) -> tuple[str, ...]:
        """Build or rebuild the gateway's data plane and check its dependencies answer; returns its
        endpoints (from GATEWAYS_PUBLIC_URL). Raises ``GatewayUnavailable`` (recoverable) or
        ``ValueError`` (terminal: ``STATUS_FAILED``, e.g. a host already served by another gateway)."""
        ...

    async def remove(self, gateway_id: str) -> None:
        """Stop taking new requests for it at once (they get 404), wait (bounded) for those in
        flight to finish, then close it. Unknown ids are a no-op."""
        ...

    def zones(self) -> tuple[str, ...]:
        """The zones the configured providers are in (for ``GET /gateways/parameters``)."""
        ...
