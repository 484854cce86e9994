"""A gateway's status lifecycle: each transition as a new ``GatewayStatus`` with its ``Ready``
condition (reason, message, time).

    STATUS_CREATING --apply--> STATUS_READY --PATCH--> STATUS_UPDATING --apply--> STATUS_READY
           |                        ^                                 |
           +--GatewayUnavailable--> STATUS_ERROR (retried) ------------+
           +--ValueError----------> STATUS_FAILED (terminal until the next PATCH)
    any --DELETE--> STATUS_DELETING --drained--> removed

The management API writes the first three (create, PATCH, DELETE); the reconciler the others.
One condition per type is kept, as Kubernetes does: the last transition's.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Literal

from .spec import Condition, GatewayStatus, Status

__all__ = ["READY", "creating", "deleting", "errored", "failed", "ready", "updating"]

READY = "Ready"  # the condition type


def _moved(
    status: GatewayStatus,
    to: Status,
    truth: Literal["True", "False", "Unknown"],
    reason: str,
    message: str,
    at: str,
    *,
    endpoints: tuple[str, ...] | None = None,
    generation: int | None = None,
) -> GatewayStatus:
    condition = Condition(READY, truth, reason, message, at)
    others = tuple(c for c in status.conditions if c.type != READY)
    return replace(
        status,
        status=to,
        updated_at=at,
        conditions=(*others, condition),
        endpoints=status.endpoints if endpoints is None else endpoints,
        generation=status.generation if generation is None else generation,
    )


def creating(at: str) -> GatewayStatus:
    blank = GatewayStatus(status="STATUS_CREATING", created_at=at, updated_at=at)
    return _moved(blank, "STATUS_CREATING", "Unknown", "Accepted", "The gateway is being created.", at)


def updating(status: GatewayStatus, at: str) -> GatewayStatus:
    message = "The new specification is being applied."
    return _moved(status, "STATUS_UPDATING", "Unknown", "SpecChanged", message, at, generation=status.generation + 1)


def deleting(status: GatewayStatus, at: str) -> GatewayStatus:
    message = "The gateway takes no new requests; those in flight are finishing."
    return _moved(status, "STATUS_DELETING", "False", "Deleting", message, at, endpoints=())


def ready(status: GatewayStatus, endpoints: tuple[str, ...], at: str) -> GatewayStatus:
    return _moved(status, "STATUS_READY", "True", "Applied", "The gateway serves requests.", at, endpoints=endpoints)


def errored(status: GatewayStatus, reason: str, message: str, at: str) -> GatewayStatus:
    return _moved(status, "STATUS_ERROR", "False", reason, f"{message.rstrip('.')}; retrying.", at)


def failed(status: GatewayStatus, message: str, at: str) -> GatewayStatus:
    return _moved(status, "STATUS_FAILED", "False", "Invalid", message, at, endpoints=())
